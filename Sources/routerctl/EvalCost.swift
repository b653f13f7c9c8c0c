import Foundation
import OfflineEvaluation
import RouterEngine
import RouterEvaluation

/// The many-model half of `routerctl eval`: runs ``CostEvaluation`` on a file, prints its table,
/// and writes its plot. Returns the records for results.json.
func evaluateCost(_ evaluation: CostEvaluation, routers: [RouterInstance], out: String) throws -> [[String: Any]] {
    var evaluation = evaluation
    evaluation.progress = Progress.embedding
    let report = try evaluation.run(routers: routers)
    let file = evaluation.file
    let band = evaluation.band
    let what = band.low == 0 ? "test share \(band.high)" : "held-out band [\(band.low), \(band.high))"
    print(
        "\n\(file): \(report.testPrompts) prompts evaluated (\(what) by prompt hash), \(report.trainPrompts) beyond it for the baselines; \(report.models.count) models"
            + (report.dropped.isEmpty ? "" : "; rated on under 95% of rows, left out: \(report.dropped.joined(separator: ", "))")
            + (report.unpriced.isEmpty ? "" : "; no price: \(report.unpriced.joined(separator: ", "))")
            + (report.incompleteRows > 0 ? "; \(report.incompleteRows) rows missing one of them left out" : ""))
    for (router, reason) in report.skipped { print("  \(router): \(reason)") }
    let reference = report.reference
    print(
        String(
            format: "  reference %@: quality %.3f at $%.6f per prompt; oracle %.3f at %.1f%% of its cost", reference.label, reference.quality,
            reference.cost, report.oracle.quality, report.oracle.cost / reference.cost * 100))
    let widths = [26, 22, 14, 16]
    print(table(header: ["  ROUTER", "AIQ [95% CI]", "Q AT REF COST", "COST TO MATCH REF"], rows: [], widths: widths))
    func row(_ name: String, _ summary: QualityCostEvaluation.Summary, interval: (low: Double, high: Double)?) {
        let aiq = String(format: "%.3f", summary.aiq) + (interval.map { String(format: " [%.3f, %.3f]", $0.low, $0.high) } ?? "")
        let match = summary.costToMatchReference.map { String(format: "%.1f%%", $0 * 100) } ?? "never"
        print(table(header: ["  " + name, aiq, String(format: "%.3f", summary.qualityAtReferenceCost), match], rows: [], widths: widths))
    }
    row("single models (hull)", report.singleSummary, interval: nil)
    for router in report.rows {
        row(router.name, router.summary, interval: router.interval)
        if let lambda = router.lambda {
            print(
                String(
                    format: "    λ reaching %@'s quality at the least cost: %.4g per USD (quality %.3f at %.1f%% of its cost)", reference.label,
                    lambda.lambda, lambda.point.quality, lambda.point.cost / reference.cost * 100))
        }
    }
    if !out.isEmpty {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let name = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
        let svg = CostPlot.svg(
            title: "\(name): \(report.testPrompts) held-out prompts, \(report.models.count) models",
            subtitle: "mean quality against mean cost per prompt (USD, log scale); hulls of each router's λ sweep",
            singles: report.singles, oracle: report.oracle,
            curves: [("single models", report.singleSummary.hull)] + report.rows.map { ($0.name, $0.summary.hull) })
        try svg.write(toFile: "\(out)/\(name).cost.svg", atomically: true, encoding: .utf8)
        try PNGRender.write(svg: svg, to: "\(out)/\(name).cost.png")
        print("  wrote \(out)/\(name).cost.svg and .png")
    }
    return report.records
}
