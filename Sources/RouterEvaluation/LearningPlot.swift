import Foundation

/// Draws APGR on a held-out split against the number of outcomes learned from, as an SVG, on a
/// log axis (most of the change comes early), with a reference's APGR (the offline index, or the
/// frozen weights the router started from, as `reference` names it) and random's 0.5.
public enum LearningPlot {
    public static func svg(
        title: String, subtitle: String, points: [(outcomes: Int, apgr: Double)], offline: Double, reference: String = "offline, same rows"
    ) -> String {
        guard let most = points.map(\.outcomes).max() else { return "" }
        let (width, height) = (760.0, 420.0)
        let (left, right, top, bottom) = (70.0, 200.0, 52.0, 50.0)
        let (plotWidth, plotHeight) = (width - left - right, height - top - bottom)
        let decades = max(1.0, ceil(log10(Double(most + 1))))
        let values = points.map(\.apgr) + [offline, 0.5]
        let low = min(values.min()!, 0.5) - 0.02
        let high = values.max()! + 0.02
        func x(_ outcomes: Int) -> Double { left + log10(Double(outcomes) + 1) / decades * plotWidth }
        func y(_ apgr: Double) -> Double { top + (high - apgr) / (high - low) * plotHeight }
        func f(_ value: Double) -> String { String(format: "%.1f", value) }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(f(left))" y="22" font-size="15" font-weight="bold">\(CurvePlot.escape(title))</text>
            <text x="\(f(left))" y="40" font-size="11" fill="#555">\(CurvePlot.escape(subtitle))</text>

            """
        for decade in 0...Int(decades) {
            let outcomes = Int(pow(10, Double(decade))) - (decade == 0 ? 1 : 0)
            svg += "<line x1=\"\(f(x(outcomes)))\" y1=\"\(f(top))\" x2=\"\(f(x(outcomes)))\" y2=\"\(f(top + plotHeight))\" stroke=\"#eee\"/>\n"
            svg += "<text x=\"\(f(x(outcomes)))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\">\(outcomes)</text>\n"
        }
        for index in 0...4 {
            let apgr = low + (high - low) * Double(index) / 4
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(y(apgr)))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y(apgr)))\" stroke=\"#eee\"/>\n"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(y(apgr) + 4))\" text-anchor=\"end\">\(String(format: "%.3f", apgr))</text>\n"
        }
        svg += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" fill=\"none\" stroke=\"#444\"/>\n"
        svg += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 12))\" text-anchor=\"middle\">outcomes learned online (log scale)</text>\n"
        svg += "<text transform=\"translate(18 \(f(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">APGR, held-out prompts</text>\n"
        let legend: [(String, String, String)] = [
            ("online", "#1c7ed6", ""), (reference + String(format: " (%.3f)", offline), "#2b8a3e", "6 4"), ("random (0.5)", "#868e96", "2 3"),
        ]
        for (value, color, dash) in [(offline, "#2b8a3e", "6 4"), (0.5, "#868e96", "2 3")] {
            svg +=
                "<line x1=\"\(f(left))\" y1=\"\(f(y(value)))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y(value)))\" stroke=\"\(color)\" stroke-dasharray=\"\(dash)\"/>\n"
        }
        let path = points.map { "\(f(x($0.outcomes))),\(f(y($0.apgr)))" }.joined(separator: " ")
        svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"#1c7ed6\" stroke-width=\"2\"/>\n"
        for point in points { svg += "<circle cx=\"\(f(x(point.outcomes)))\" cy=\"\(f(y(point.apgr)))\" r=\"3\" fill=\"#1c7ed6\"/>\n" }
        for (index, item) in legend.enumerated() {
            let (ly, lx) = (top + 10 + Double(index) * 20, left + plotWidth + 14)
            svg +=
                "<line x1=\"\(f(lx))\" y1=\"\(f(ly))\" x2=\"\(f(lx + 24))\" y2=\"\(f(ly))\" stroke=\"\(item.1)\" stroke-width=\"2\" stroke-dasharray=\"\(item.2)\"/>\n"
            svg += "<text x=\"\(f(lx + 30))\" y=\"\(f(ly + 4))\">\(CurvePlot.escape(item.0))</text>\n"
        }
        return svg + "</svg>\n"
    }
}
