import Foundation

/// Draws quality against cost for many-model routing as an SVG: each single model as a dot,
/// the oracle as a star, and each router's non-decreasing convex hull as a line. Cost is on a
/// log scale, since list prices span three orders of magnitude.
public enum CostPlot {
    public static func svg(
        title: String, subtitle: String, singles: [CostQuality], oracle: CostQuality, curves: [(name: String, hull: [CostQuality])]
    ) -> String {
        let (width, height) = (860.0, 520.0)
        let (left, right, top, bottom) = (70.0, 250.0, 52.0, 50.0)
        let plotWidth = width - left - right
        let plotHeight = height - top - bottom
        let all = singles + [oracle] + curves.flatMap(\.hull)
        let costs = all.map(\.cost).filter { $0 > 0 }
        let lowCost = log10(costs.min() ?? 1e-6) - 0.1
        let highCost = log10(costs.max() ?? 1) + 0.1
        let qualities = all.map(\.quality)
        let span = max((qualities.max() ?? 1) - (qualities.min() ?? 0), 1e-9)
        let low = (qualities.min() ?? 0) - span * 0.05
        let high = (qualities.max() ?? 1) + span * 0.05
        func x(_ cost: Double) -> Double { left + (log10(max(cost, 1e-12)) - lowCost) / (highCost - lowCost) * plotWidth }
        func y(_ quality: Double) -> Double { top + (high - quality) / (high - low) * plotHeight }
        func f(_ value: Double) -> String { String(format: "%.1f", value) }

        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(f(left))" y="22" font-size="15" font-weight="bold">\(CurvePlot.escape(title))</text>
            <text x="\(f(left))" y="40" font-size="11" fill="#555">\(CurvePlot.escape(subtitle))</text>

            """
        var decade = ceil(lowCost)
        while decade <= highCost {
            let cost = pow(10, decade)
            svg += "<line x1=\"\(f(x(cost)))\" y1=\"\(f(top))\" x2=\"\(f(x(cost)))\" y2=\"\(f(top + plotHeight))\" stroke=\"#eee\"/>\n"
            svg += "<text x=\"\(f(x(cost)))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\">$\(String(format: "%g", cost))</text>\n"
            decade += 1
        }
        for index in 0...4 {
            let quality = low + (high - low) * Double(index) / 4
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(y(quality)))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y(quality)))\" stroke=\"#eee\"/>\n"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(y(quality) + 4))\" text-anchor=\"end\">\(String(format: "%.3g", quality))</text>\n"
        }
        svg += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" fill=\"none\" stroke=\"#444\"/>\n"
        svg += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 12))\" text-anchor=\"middle\">mean cost per prompt (USD)</text>\n"
        svg += "<text transform=\"translate(18 \(f(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">mean quality</text>\n"
        // Single models: dots; the ones on their hull are named.
        let singleHull = Set((curves.first { $0.name == "single models" }?.hull ?? []).map(\.label))
        for point in singles {
            svg += "<circle cx=\"\(f(x(point.cost)))\" cy=\"\(f(y(point.quality)))\" r=\"3.5\" fill=\"#adb5bd\"/>\n"
            if singleHull.contains(point.label) {
                svg +=
                    "<text x=\"\(f(x(point.cost) + 5))\" y=\"\(f(y(point.quality) + 12))\" font-size=\"10\" fill=\"#495057\">\(CurvePlot.escape(point.label))</text>\n"
            }
        }
        svg +=
            "<text x=\"\(f(x(oracle.cost)))\" y=\"\(f(y(oracle.quality) + 5))\" text-anchor=\"middle\" font-size=\"16\" fill=\"#e03131\">★</text>\n"
        var legend: [(label: String, color: String, dash: String)] = [("oracle (★)", "#e03131", "")]
        let palette = ["#868e96", "#1c7ed6", "#f08c00", "#7048e8", "#0ca678", "#d6336c"]
        for (index, entry) in curves.enumerated() {
            let color = palette[index % palette.count]
            let dash = index == 0 ? "6 4" : ""
            let path = entry.hull.map { "\(f(x($0.cost))),\(f(y($0.quality)))" }.joined(separator: " ")
            svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" stroke-dasharray=\"\(dash)\"/>\n"
            legend.append((entry.name, color, dash))
        }
        for (index, item) in legend.enumerated() {
            let ly = top + 10 + Double(index) * 20
            let lx = left + plotWidth + 14
            svg +=
                "<line x1=\"\(f(lx))\" y1=\"\(f(ly))\" x2=\"\(f(lx + 24))\" y2=\"\(f(ly))\" stroke=\"\(item.color)\" stroke-width=\"2\" stroke-dasharray=\"\(item.dash)\"/>\n"
            svg += "<text x=\"\(f(lx + 30))\" y=\"\(f(ly + 4))\">\(CurvePlot.escape(item.label))</text>\n"
        }
        return svg + "</svg>\n"
    }
}
