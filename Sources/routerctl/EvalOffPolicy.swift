import ArgumentParser
import Foundation
import OffPolicy
import OfflineEvaluation
import RouterEngine

/// The off-policy half of `routerctl eval`: reads a feedback folder, runs ``OffPolicyEvaluation``
/// and prints its estimates as a table or as JSON.
extension Eval {
    func evaluateOffPolicy(folder: String) throws {
        guard (0.5..<1).contains(confidence) else { throw ValidationError("--confidence must be in [0.5, 1), found \(confidence)") }
        guard resamples >= 100 else { throw ValidationError("--resamples must be at least 100 for percentile intervals") }
        let reading = try OutcomeLog.read(folder: folder)
        let engine: Engine
        do {
            engine = try OffPolicyEvaluation.engine(config: config)
        } catch {
            printError("routerctl eval: \(config):\n  " + error.problems.joined(separator: "\n  "))
            throw ExitCode(1)
        }
        defer { engine.shutdown() }
        var evaluation = OffPolicyEvaluation()
        if !json { evaluation.progress = Progress.embedding }
        evaluation.estimator = { [confidence, resamples] in
            $0.confidence = confidence
            $0.resamples = resamples
        }
        let names = routers.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        let report = try evaluation.run(engine: engine, reading: reading, loggedRouter: loggedRouter, targets: names)
        if json {
            print(Self.json(report, reading: reading, confidence: confidence, resamples: resamples))
            return
        }
        let percent = String(format: "%.0f%%", confidence * 100)
        var notes = ["\(report.decisions) decisions with outcomes"]
        if report.withoutPromptText > 0 { notes.append("\(report.withoutPromptText) with only a prompt hash, left out") }
        if reading.replaced > 0 { notes.append("\(reading.replaced) reports replaced by a later one on the same decision") }
        if reading.withoutDecision + reading.pairwise > 0 {
            notes.append("\(reading.withoutDecision + reading.pairwise) rows by prompt or pairwise, not decisions")
        }
        if reading.withoutPropensity > 0 { notes.append("\(reading.withoutPropensity) without a propensity, taken as certain") }
        print("logged by router \(report.loggedRouter): " + notes.joined(separator: "; "))
        print(
            "  its own value: quality \(Self.text(report.loggedValue))"
                + (report.loggedCost.map { String(format: " at $%.6f per decision", $0) } ?? ""))
        print(
            table(
                header: ["ROUTER", "AGREE", "ESS", "IPS [\(percent)]", "SNIPS [\(percent)]", "DR [\(percent)]", "COST"],
                rows: report.targets.map { target in
                    let estimate = target.estimate
                    return [
                        target.router, String(format: "%.1f%%", estimate.agreement * 100), String(format: "%.0f", estimate.effectiveSampleSize),
                        Self.text(estimate.inversePropensity), estimate.selfNormalised.map(Self.text) ?? "-", Self.text(estimate.doublyRobust),
                        target.cost.map { String(format: "$%.6f", $0) } ?? "-",
                    ]
                }))
        if report.targets.contains(where: { $0.estimate.effectiveSampleSize < 0.1 * Double(report.decisions) }) {
            print(
                "  a small ESS means the log seldom made that router's choices: widen exploration (explore.epsilon) before trusting its estimate")
        }
    }

    static func text(_ interval: Interval) -> String { String(format: "%.3f [%.3f, %.3f]", interval.value, interval.low, interval.high) }

    static func json(_ report: OffPolicyEvaluation.Report, reading: OutcomeLog.Reading, confidence: Double, resamples: Int) -> String {
        func object(_ interval: Interval) -> [String: Any] { ["value": interval.value, "low": interval.low, "high": interval.high] }
        let root: [String: Any] = [
            "logged_router": report.loggedRouter, "decisions": report.decisions, "without_prompt_text": report.withoutPromptText,
            "replaced": reading.replaced, "without_decision": reading.withoutDecision, "pairwise": reading.pairwise,
            "without_propensity": reading.withoutPropensity, "confidence": confidence, "resamples": resamples,
            "logged": ["quality": object(report.loggedValue), "cost": report.loggedCost as Any? ?? NSNull()] as [String: Any],
            "targets": report.targets.map { target -> [String: Any] in
                [
                    "router": target.router, "agreement": target.estimate.agreement,
                    "effective_sample_size": target.estimate.effectiveSampleSize, "ips": object(target.estimate.inversePropensity),
                    "snips": target.estimate.selfNormalised.map(object) as Any? ?? NSNull(), "dr": object(target.estimate.doublyRobust),
                    "cost": target.cost as Any? ?? NSNull(), "choices": target.choices,
                ]
            },
        ]
        let data = (try? JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
