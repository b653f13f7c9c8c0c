import ArgumentParser
import Foundation
import OfflineEvaluation
import RouterEngine
import TextEncoder
import TrainingRows

/// `routerctl bench-offpolicy`: ``OffPolicyCoverage`` from the command line.
struct BenchOffPolicy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-offpolicy",
        abstract:
            "Replay ε-greedy logs of a router on prompts whose every outcome is known, and report how often the off-policy intervals cover each router's true value.",
        discussion: """
            The prompts are the held-out share (by stable prompt hash) of a quality file; nothing is tuned on them. \
            The routers are the config's, built in-process, with their two tiers mapped to --strong and --weak.
            """)

    @Option(name: [.short, .long], help: "The config whose routers to use.") var config: String = "etc/routerd/routerd.yaml"
    @Option(help: "A quality file, {prompt, quality: {model: value}} lines.") var file: String = "../shared/data/train/mmlu-pro.quality.jsonl"
    @Option(help: "The file's model for the routers' strong tier.") var strong: String = "gpt-4o-2024-05-13"
    @Option(help: "The file's model for the routers' weak tier.") var weak: String = "Mixtral-8x7B-Instruct-v0.1"
    @Option(help: "The router whose ε-greedy decisions are logged.") var logging: String = "mf"
    @Option(help: "Routers to estimate from the log, comma-separated.") var targets: String = "mf,sw_ranking,random"
    @Option(help: "The logging policy's ε.") var epsilon: Double = 0.2
    @Option(help: "Replays.") var replays: Int = 100
    @Option(help: "Logged decisions per replay.") var sample: Int = 1000
    @Option(help: "Bootstrap resamples per estimate.") var resamples: Int = 500

    func run() throws {
        BLASKernels.reexecWithBestCoreIfNeeded()
        guard epsilon > 0, epsilon <= 0.5 else { throw ValidationError("--epsilon must be in (0, 0.5], as explore.epsilon") }
        guard FileManager.default.fileExists(atPath: file) else {
            printError("routerctl bench-offpolicy: \(file) is missing (the training data lives in ../shared/data/train; see docs/TRAINING.md)")
            throw ExitCode(1)
        }
        let engine: Engine
        do {
            engine = try OffPolicyEvaluation.engine(config: config)
        } catch {
            printError("routerctl bench-offpolicy: \(config):\n  " + error.problems.joined(separator: "\n  "))
            throw ExitCode(1)
        }
        defer { engine.shutdown() }
        var bench = OffPolicyCoverage(
            file: file, strong: strong, weak: weak, logging: logging,
            targets: targets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        bench.epsilon = epsilon
        bench.replays = replays
        bench.sample = sample
        bench.resamples = resamples
        bench.progress = Progress.embedding
        let started = ContinuousClock.now
        let report: OffPolicyCoverage.Report
        do {
            report = try bench.run(engine: engine)
        } catch let error as EvaluationRunError {
            printError("routerctl bench-offpolicy: \(error)")
            throw ExitCode(1)
        }
        print(
            "\(report.population) held-out prompts of \(file); \(replays) replays of \(sample) decisions logged by '\(logging)' with ε \(epsilon); 95% intervals from \(resamples) resamples"
        )
        print(
            table(
                header: ["ROUTER", "TRUTH", "AGREES", "IPS COVER", "SNIPS COVER", "DR COVER", "IPS WIDTH", "DR WIDTH", "IPS RMSE", "DR RMSE"],
                rows: report.rows.map { row in
                    [
                        row.router, String(format: "%.4f", row.truth), String(format: "%.1f%%", row.agreement * 100),
                        String(format: "%.0f%%", row.coverage["ips"]! * 100), String(format: "%.0f%%", row.coverage["snips"]! * 100),
                        String(format: "%.0f%%", row.coverage["dr"]! * 100), String(format: "%.4f", row.width["ips"] ?? 0),
                        String(format: "%.4f", row.width["dr"] ?? 0), String(format: "%.4f", row.rmse["ips"] ?? 0),
                        String(format: "%.4f", row.rmse["dr"] ?? 0),
                    ]
                }))
        print(String(format: "took %.1f s", Double((ContinuousClock.now - started).components.seconds)))
    }
}
