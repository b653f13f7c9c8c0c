import ArgumentParser
import Foundation
import OfflineEvaluation
import RouterBenchmarks
import RouterConfig
import RouterEngine
import RouterEvaluation
import TextEncoder
import TrainingRows

/// `routerctl bench-coldstart`: ``ColdStartReplay`` (RouterBenchmarks), with the learned router's
/// AIQ on the untouched test share evaluated in-process (``CostEvaluation``) at each checkpoint.
struct BenchColdStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-coldstart",
        abstract: "Start a many-model router with no data, teach it by replaying prompts with one outcome each, and report AIQ on untouched prompts.",
        discussion: """
            The test share (by stable prompt hash) is never replayed; AIQ there is the area under the quality–cost curve \
            as `routerctl eval --prices` draws it. Needs the built plugins (run from the package root) and the encoder model.
            """)

    @Option(help: "A per-prompt quality file, {prompt, quality: {model: value}}.") var quality: String =
        "../shared/data/train/mmlu-pro.quality.jsonl"
    @Option(help: "The model catalogue with prices.") var prices: String = "etc/routerd/models.yaml"
    @Option(help: "The router's λ (quality − λ × USD) while it replays.") var lambda: Double = 17
    @Option(help: "The router's exploration ε while it replays (with --thompson, the most of the traffic that follows a posterior draw).")
    var epsilon: Double = 0.2
    @Flag(help: "Explore by Thompson sampling from the router's posterior instead of ε-greedy.") var thompson = false
    @Flag(name: .customLong("full-information"), help: "Report every model's outcome on each prompt (the comparison), instead of the chosen one's.")
    var fullInformation = false
    @Option(name: .customLong("max-prompts"), help: "Replay at most this many prompts (a quick run).") var maxPrompts: Int?
    @Option(help: "Checkpoints, as shares of the replay (comma-separated).") var checkpoints = "0,0.1,0.25,0.5,1"
    @Option(help: "A folder for the daemon's config, socket and feedback (default: a new temporary one).") var work: String?
    @Option(
        name: .customLong("holdout-band"),
        help: "Choose settings without the test share: replay split positions from HIGH and evaluate [LOW, HIGH), e.g. 0.3,0.45.")
    var holdoutBand: String?
    @Option(help: "Write the quality–cost curves at each checkpoint here, as SVG (and PNG beside it).") var plot: String?
    @Option(help: "The router's sw_ranking params, a YAML flow mapping.") var params: String = "{gamma: 10, weight_unit: prompt}"
    @Flag(help: "At the end, also train and evaluate the kNN (k = 100) and logistic baselines on every model's outcomes.")
    var baselines = false

    func run() async throws {
        BLASKernels.reexecWithBestCoreIfNeeded()
        var replay = ColdStartReplay(
            quality: quality, prices: prices, work: work ?? NSTemporaryDirectory() + "routerctl-bench-coldstart-\(getpid())",
            routerd: siblingExecutable("routerd"))
        replay.lambda = lambda
        replay.epsilon = epsilon
        replay.thompson = thompson
        replay.fullInformation = fullInformation
        replay.maxPrompts = maxPrompts
        replay.checkpoints = checkpoints.split(separator: ",").compactMap { Double($0) }
        replay.params = params
        var band = (low: 0.0, high: replay.testShare)
        if let holdoutBand {
            let bounds = holdoutBand.split(separator: ",").compactMap { Double($0) }
            guard bounds.count == 2, bounds[0] >= replay.testShare, bounds[1] > bounds[0], bounds[1] < 1 else {
                throw ValidationError("--holdout-band takes LOW,HIGH above the test share (\(replay.testShare)), e.g. 0.3,0.45")
            }
            band = (bounds[0], bounds[1])
            replay.replayFrom = bounds[1]
        }
        let catalogue: ModelCatalogue
        do {
            catalogue = try ConfigLoader.loadCatalogue(file: prices)
        } catch {
            printError("routerctl bench-coldstart: \(error)")
            throw ExitCode(1)
        }
        let widths = [9, 9, 9, 25, 14, 12]
        var header = false
        var hull: Double?
        var curves: [(name: String, hull: [CostQuality])] = []
        var frame: (singles: [CostQuality], oracle: CostQuality)?
        let outcome: ColdStartReplay.Outcome
        do {
            outcome = try await replay.run(log: { print($0) }) { progress in
                let generation = try InProcessRouters.load(config: progress.config, command: "bench-coldstart")
                let report = try CostEvaluation(file: quality, catalogue: catalogue, band: band, baselines: false, reference: nil)
                    .run(routers: [generation.routers["cold"]!])
                guard let row = report.rows.first else {
                    throw BenchmarkRunError("router 'cold' was not evaluated: \(report.skipped.map(\.reason).joined(separator: "; "))")
                }
                curves.append((name: "after \(progress.prompts) prompts", hull: row.summary.hull))
                if !header {
                    frame = (report.singles, report.oracle)
                    hull = report.singleSummary.aiq
                    print(
                        String(
                            format:
                                "evaluated on %d prompts (split band [%g, %g)); the single models' hull has AIQ %.4f; reference %@ (quality %.3f)",
                            report.testPrompts, band.low, band.high,
                            report.singleSummary.aiq, report.reference.label, report.reference.quality))
                    print(table(header: ["PROMPTS", "OUTCOMES", "EXPLORED", "AIQ [95% CI]", "Q AT REF COST", "TOP MODEL"], rows: [], widths: widths))
                    header = true
                }
                let top =
                    progress.choices.max { $0.value < $1.value }.map {
                        "\($0.key) \(String(format: "%.0f%%", Double($0.value) / Double(max(1, progress.prompts)) * 100))"
                    } ?? "-"
                print(
                    table(
                        header: [
                            "\(progress.prompts)", "\(progress.outcomes)", "\(progress.explored)",
                            String(format: "%.4f [%.4f, %.4f]", row.summary.aiq, row.interval.low, row.interval.high),
                            String(format: "%.4f", row.summary.qualityAtReferenceCost), top,
                        ], rows: [], widths: widths))
            }
        } catch let error as BenchmarkRunError {
            printError("routerctl bench-coldstart: \(error)")
            throw ExitCode(1)
        } catch let error as EvaluationRunError {
            printError("routerctl bench-coldstart: \(error)")
            throw ExitCode(1)
        }
        print(
            String(
                format: "%d models, %d prompts replayed at %.0f outcomes/s (routing, embedding new prompts and feedback); learned state %d bytes",
                outcome.models.count,
                outcome.replayPrompts, outcome.outcomesPerSecond, outcome.learnedStateBytes))
        if let plot, let frame {
            let svg = CostPlot.svg(
                title: "A router started with no data, taught by one outcome per prompt",
                subtitle:
                    "\((quality as NSString).lastPathComponent): \(outcome.models.count) models at list prices · sw_ranking without an index · λ \(lambda)\(fullInformation ? ", every model's outcome" : ", ε \(epsilon)")",
                singles: frame.singles, oracle: frame.oracle, curves: curves)
            try svg.write(toFile: plot, atomically: true, encoding: .utf8)
            try PNGRender.write(svg: svg, to: (plot as NSString).deletingPathExtension + ".png")
            print("wrote \(plot) and its PNG")
        }
        if baselines {
            let report = try CostEvaluation(file: quality, catalogue: catalogue, band: band, baselines: true, reference: nil).run(routers: [])
            for row in report.rows {
                print(String(format: "baseline %@ (trained on every model's outcome beyond the test share): AIQ %.4f", row.name, row.summary.aiq))
            }
            if let hull { print(String(format: "single models' hull: AIQ %.4f", hull)) }
        }
    }
}
