import ArgumentParser
import Foundation
import OffPolicy
import OfflineEvaluation
import RouterConfig
import RouterEngine
import RouterEvaluation
import RouterTraining
import RouterVocabulary
import TextEncoder
import TrainingRows

/// `routerctl eval`: RouteLLM's evaluation (APGR, CPT) of configured routers on MT-Bench, GSM8K and MMLU.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate routers as RouteLLM does (APGR, CPT) on MT-Bench, GSM8K and MMLU; write plots.",
        discussion: """
            The routers are built in-process from the config, with the same plugins and encoder the daemon uses. \
            Prompt embeddings go through the on-disk cache, so a second run does not re-embed.
            """)

    @Option(name: [.short, .long], help: "The config whose routers to evaluate.") var config: String = "etc/routerd/routerd.yaml"
    @Option(
        help: """
            Routers to evaluate, comma-separated (default: random,mf; with --offpolicy, the router that logged the decisions, \
            at its greedy choice, and its shadows).
            """)
    var routers: String?
    @Option(
        help: """
            Off-policy evaluation: estimate from a routerd feedback folder (its logged decisions, propensities and outcomes) \
            what each of --routers would have achieved, by IPS, self-normalised IPS and doubly robust estimates with bootstrap \
            intervals, beside the logged policy's own value. Needs feedback.include_prompt.
            """)
    var offpolicy: String?
    @Option(name: .customLong("logged-router"), help: "With --offpolicy: the router whose decisions to read, when the log holds several.")
    var loggedRouter: String?
    @Option(help: "With --offpolicy: the intervals' confidence.") var confidence: Double = 0.95
    @Option(help: "With --offpolicy: bootstrap resamples.") var resamples: Int = 1000
    @Flag(help: "With --offpolicy: print the report as JSON.") var json = false
    @Option(help: "Benchmarks, comma-separated (mt-bench, gsm8k, mmlu).") var benchmarks: String = "mt-bench,gsm8k,mmlu"
    @Option(help: "RouteLLM's eval folder.") var data: String = "../shared/data/eval"
    @Option(name: .customLong("file"), help: "Also evaluate a generic file of JSON lines {prompt, quality: {model: value}} (repeatable).")
    var files: [String] = []
    @Option(help: "Where to write <benchmark>.svg and results.json; empty to skip.") var out: String = "docs/results"
    @Option(help: "The strong model of the benchmark files.") var strong: String = "gpt-4-1106-preview"
    @Option(help: "The weak model of the benchmark files.") var weak: String = "mistralai/Mixtral-8x7B-Instruct-v0.1"
    @Option(
        help: """
            Evaluate at most N prompts per benchmark, the same deterministic subset for every router (for slow routers \
            such as causal_llm); all by default.
            """)
    var sample: Int?
    @Option(
        help: """
            A model catalogue (etc/routerd/models.yaml): evaluate each --file among many models at these prices \
            (AIQ, quality at the reference's cost, cost to match it) instead of as a strong/weak pair.
            """)
    var prices: String?
    @Option(name: .customLong("test-split"), help: "With --prices: evaluate only this share of each file's prompts (by prompt hash).")
    var testSplit: Double = PromptSplit.defaultTestShare
    @Option(
        name: .customLong("holdout-band"),
        help: """
            With --prices: evaluate the prompts whose split position is in [LOW, HIGH) instead of the test share, for \
            tuning on held-out training prompts (train with --test-split HIGH); e.g. 0.3,0.45.
            """)
    var holdoutBand: String?
    @Flag(help: "With --prices: also train and evaluate the kNN (k = 100) and logistic baselines on each file's other prompts.")
    var baselines = false
    @Option(help: "With --prices: the model to compare costs with (default: the best single model).") var reference: String?
    @Option(
        help: """
            Also score each router that has an encoder with the encoder in this precision (int8 or bf16, through the accuracy \
            gate), and print per benchmark the lowest and mean cosine of its embeddings to fp32's, the share of decisions \
            unchanged at the router's threshold, and APGR in both.
            """)
    var precision: EncoderPrecision?
    @Option(
        name: .customLong("random-seeds"),
        help: """
            Also route each benchmark with N seeded uniform routers (RouteLLM's random router) and print their mean APGR \
            and its standard deviation: the spread a router must clear to beat random.
            """)
    var randomSeeds: Int?

    func run() throws {
        do {
            try evaluate()
        } catch let error as EvaluationRunError {
            printError("routerctl eval: \(error)")
            throw ExitCode(1)
        } catch let error as OffPolicyError {
            printError("routerctl eval: \(error)")
            throw ExitCode(1)
        } catch let error as EngineError {
            printError("routerctl eval: \(error.message)")
            throw ExitCode(1)
        }
    }

    private func evaluate() throws {
        BLASKernels.reexecWithBestCoreIfNeeded()
        if let offpolicy {
            try evaluateOffPolicy(folder: offpolicy)
            return
        }
        let generation = try InProcessRouters.load(config: config, command: "eval")
        let names = (routers ?? "random,mf").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        for name in names where generation.routers[name] == nil {
            throw ValidationError("router '\(name)' is not in \(config) (routers: \(generation.routerNames.joined(separator: ", ")))")
        }
        if let randomSeeds, randomSeeds < 2 { throw ValidationError("--random-seeds needs at least 2 seeds for a standard deviation") }
        SentenceEncoder.setThreads(2)
        let reduced = try precision.map { try PrecisionComparison.reducedEncoders($0, for: names.compactMap { generation.routers[$0] }) } ?? [:]
        var comparisons: [String] = []
        var results: [[String: Any]] = []
        print(table(header: ["BENCHMARK", "ROUTER", "APGR", "CPT(20%)", "CPT(50%)", "CPT(80%)", "AUC", "PROMPTS"], rows: [], widths: Self.widths))
        for source in BenchmarkSource.list(names: benchmarks, files: prices == nil ? files : []) {
            var benchmark = try source.load(data: data, pair: (strong, weak), filePair: (strong, weak), command: "eval")
            var sampled = false
            if let sample, sample < benchmark.prompts.count {
                benchmark = benchmark.subset(size: sample)
                sampled = true
            }
            var curves: [(name: String, curve: RoutingCurve)] = []
            for name in names {
                let router = generation.routers[name]!
                let scores = try InProcessRouters.score(benchmark.prompts, with: router, progress: Progress.embedding)
                let curve = RoutingCurve(scores: scores, strong: benchmark.strong, weak: benchmark.weak)
                curves.append((name, curve))
                let cpt = [0.2, 0.5, 0.8].map { curve.callPerformanceThreshold($0).map { String(format: "%.1f%%", $0) } ?? "-" }
                print(
                    table(
                        header: [benchmark.name, name, String(format: "%.3f", curve.apgr)] + cpt + [
                            String(format: "%.4f", curve.auc), "\(benchmark.prompts.count)",
                        ],
                        rows: [], widths: Self.widths))
                if let precision, let instance = router.encoder, let encoder = reduced[instance.config.name] {
                    let comparison = try PrecisionComparison(
                        benchmark, router: router, encoder: encoder, policy: instance.policy, reference: (scores, curve))
                    comparisons.append(Self.line(comparison, benchmark: benchmark.name, router: name))
                    results.append([
                        "benchmark": benchmark.name, "router": name, "precision": precision.rawValue, "lowest_cosine": comparison.lowestCosine,
                        "mean_cosine": comparison.meanCosine, "same_decision": comparison.sameDecision, "threshold": comparison.threshold,
                        "apgr_fp32": comparison.apgrFP32, "apgr_reduced": comparison.apgrReduced,
                    ])
                }
                results.append([
                    "benchmark": benchmark.name, "router": name, "apgr": curve.apgr, "auc": curve.auc, "prompts": benchmark.prompts.count,
                    "dropped": benchmark.dropped, "strong_quality": curve.strongQuality, "weak_quality": curve.weakQuality,
                    "cpt20": curve.callPerformanceThreshold(0.2) ?? NSNull(), "cpt50": curve.callPerformanceThreshold(0.5) ?? NSNull(),
                    "cpt80": curve.callPerformanceThreshold(0.8) ?? NSNull(),
                    "points": curve.points.map { ["threshold": $0.threshold, "strong_percent": $0.strongPercent, "quality": $0.quality] },
                ])
            }
            if let randomSeeds {
                let spread = RandomRoutingSpread(seeds: randomSeeds, strong: benchmark.strong, weak: benchmark.weak)
                let summary = String(format: "%.3f ± %.3f", spread.meanAPGR, spread.standardDeviation)
                print(
                    table(
                        header: [benchmark.name, "random ×\(randomSeeds)", summary, "(mean ± sd of APGR over seeds)"], rows: [], widths: [10, 12, 13])
                )
                results.append([
                    "benchmark": benchmark.name, "router": "random (seeded sweep)", "seeds": randomSeeds, "apgr_mean": spread.meanAPGR,
                    "apgr_sd": spread.standardDeviation, "prompts": benchmark.prompts.count,
                ])
            }
            if !out.isEmpty {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                let title =
                    "\(benchmark.name): \(benchmark.prompts.count) prompts"
                    + (sampled ? " (a fixed sample; contaminated ones dropped first)" : " (\(benchmark.dropped) contaminated dropped)")
                let subtitle = "strong \(strong) · weak \(weak) · RouteLLM's thresholds at score quantiles"
                let svg = CurvePlot.svg(title: title, subtitle: subtitle, curves: curves)
                try svg.write(toFile: "\(out)/\(benchmark.name).svg", atomically: true, encoding: .utf8)
                try PNGRender.write(svg: svg, to: "\(out)/\(benchmark.name).png")
            }
        }
        if let prices {
            let catalogue: ModelCatalogue
            do {
                catalogue = try ConfigLoader.loadCatalogue(file: prices)
            } catch {
                printError("routerctl eval: \(error)")
                throw ExitCode(1)
            }
            for file in files {
                var band = (low: 0.0, high: testSplit)
                if let holdoutBand {
                    let bounds = holdoutBand.split(separator: ",").compactMap { Double($0) }
                    guard bounds.count == 2, bounds[0] >= testSplit, bounds[1] > bounds[0], bounds[1] <= 1 else {
                        throw ValidationError("--holdout-band takes LOW,HIGH above the test share (\(testSplit)), e.g. 0.3,0.45")
                    }
                    band = (bounds[0], bounds[1])
                }
                let evaluation = CostEvaluation(file: file, catalogue: catalogue, band: band, baselines: baselines, reference: reference)
                results += try evaluateCost(evaluation, routers: names.map { generation.routers[$0]! }, out: out)
            }
        }
        if !comparisons.isEmpty {
            print()
            print("the encoder in \(precision!.rawValue) against fp32 (decisions at each router's threshold; embeddings of every prompt):")
            print(table(header: Self.comparisonHeader, rows: [], widths: Self.comparisonWidths))
            comparisons.forEach { print($0) }
        }
        if !out.isEmpty {
            let json = try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys])
            try json.write(to: URL(fileURLWithPath: "\(out)/results.json"))
            print("wrote \(out)/results.json and one plot per benchmark (SVG and PNG)")
        }
    }

    static let widths = [10, 12, 6, 8, 8, 8, 7, 7]
    static let comparisonHeader = ["BENCHMARK", "ROUTER", "LOWEST COS", "MEAN COS", "SAME DECISION", "APGR FP32", "APGR LOW", "ΔAPGR"]
    static let comparisonWidths = [10, 12, 10, 8, 13, 9, 8, 7]

    /// A comparison's row of the precision table.
    static func line(_ comparison: PrecisionComparison, benchmark: String, router: String) -> String {
        table(
            header: [
                benchmark, router, String(format: "%.4f", comparison.lowestCosine), String(format: "%.4f", comparison.meanCosine),
                String(format: "%.2f%%", comparison.sameDecision * 100), String(format: "%.4f", comparison.apgrFP32),
                String(format: "%.4f", comparison.apgrReduced), String(format: "%+.4f", comparison.apgrReduced - comparison.apgrFP32),
            ], rows: [], widths: comparisonWidths)
    }
}
