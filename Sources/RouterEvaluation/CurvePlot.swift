import Foundation

/// Draws quality against strong-call share as an SVG: one curve per router,
/// the strong and weak models' flat lines, and the random router's diagonal.
public enum CurvePlot {
    public static func svg(title: String, subtitle: String = "", curves: [(name: String, curve: RoutingCurve)]) -> String {
        guard let first = curves.first?.curve else { return "" }
        let (width, height) = (760.0, 460.0)
        let (left, right, top, bottom) = (70.0, 230.0, 52.0, 50.0)
        let plotWidth = width - left - right
        let plotHeight = height - top - bottom
        let qualities = curves.flatMap { $0.curve.points.map(\.quality) } + [first.strongQuality, first.weakQuality]
        let span = max((qualities.max() ?? 1) - (qualities.min() ?? 0), 1e-9)
        let low = (qualities.min() ?? 0) - span * 0.05
        let high = (qualities.max() ?? 1) + span * 0.05
        func x(_ percent: Double) -> Double { left + percent / 100 * plotWidth }
        func y(_ quality: Double) -> Double { top + (high - quality) / (high - low) * plotHeight }
        func f(_ value: Double) -> String { String(format: "%.1f", value) }

        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(f(left))" y="22" font-size="15" font-weight="bold">\(escape(title))</text>
            <text x="\(f(left))" y="40" font-size="11" fill="#555">\(escape(subtitle))</text>

            """
        for tick in stride(from: 0.0, through: 100, by: 20) {
            svg += "<line x1=\"\(f(x(tick)))\" y1=\"\(f(top))\" x2=\"\(f(x(tick)))\" y2=\"\(f(top + plotHeight))\" stroke=\"#eee\"/>\n"
            svg += "<text x=\"\(f(x(tick)))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\">\(Int(tick))%</text>\n"
        }
        for index in 0...4 {
            let quality = low + (high - low) * Double(index) / 4
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(y(quality)))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y(quality)))\" stroke=\"#eee\"/>\n"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(y(quality) + 4))\" text-anchor=\"end\">\(String(format: "%.3g", quality))</text>\n"
        }
        svg += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" fill=\"none\" stroke=\"#444\"/>\n"
        svg += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 12))\" text-anchor=\"middle\">calls to the strong model (%)</text>\n"
        svg += "<text transform=\"translate(18 \(f(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">quality</text>\n"

        var legend: [(label: String, color: String, dash: String)] = []
        func line(_ q: Double, _ color: String, _ label: String) {
            svg += "<line x1=\"\(f(x(0)))\" y1=\"\(f(y(q)))\" x2=\"\(f(x(100)))\" y2=\"\(f(y(q)))\" stroke=\"\(color)\" stroke-dasharray=\"6 4\"/>\n"
            legend.append((label, color, "6 4"))
        }
        line(first.strongQuality, "#2b8a3e", "strong model")
        line(first.weakQuality, "#c92a2a", "weak model")
        svg +=
            "<line x1=\"\(f(x(0)))\" y1=\"\(f(y(first.weakQuality)))\" x2=\"\(f(x(100)))\" y2=\"\(f(y(first.strongQuality)))\" stroke=\"#868e96\" stroke-dasharray=\"2 3\"/>\n"
        legend.append(("random (APGR 0.5)", "#868e96", "2 3"))
        let palette = ["#1c7ed6", "#f08c00", "#7048e8", "#0ca678", "#d6336c"]
        for (index, entry) in curves.enumerated() {
            let color = palette[index % palette.count]
            let ordered = entry.curve.ascending
            let path = ordered.map { "\(f(x($0.strongPercent))),\(f(y($0.quality)))" }.joined(separator: " ")
            svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            for point in ordered { svg += "<circle cx=\"\(f(x(point.strongPercent)))\" cy=\"\(f(y(point.quality)))\" r=\"3\" fill=\"\(color)\"/>\n" }
            legend.append(("\(entry.name) (APGR \(String(format: "%.3f", entry.curve.apgr)))", color, ""))
        }
        for (index, item) in legend.enumerated() {
            let ly = top + 10 + Double(index) * 20
            let lx = left + plotWidth + 14
            svg +=
                "<line x1=\"\(f(lx))\" y1=\"\(f(ly))\" x2=\"\(f(lx + 24))\" y2=\"\(f(ly))\" stroke=\"\(item.color)\" stroke-width=\"2\" stroke-dasharray=\"\(item.dash)\"/>\n"
            svg += "<text x=\"\(f(lx + 30))\" y=\"\(f(ly + 4))\">\(escape(item.label))</text>\n"
        }
        return svg + "</svg>\n"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
