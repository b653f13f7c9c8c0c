import ArgumentParser
import Foundation
import RouterBenchmarks
import RouterEvaluation
import TrainingRows

/// `routerctl bench-learning`: ``LearningReplay`` (RouterBenchmarks) from the command line, its curve printed and plotted.
struct BenchLearning: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-learning",
        abstract: "Replay outcomes through a routerd it starts, and report APGR on an untouched split as a router learns online.",
        discussion: """
            Tune nothing on the reported figures: the split is the same stable prompt hash every evaluation uses, \
            and the test share is only scored. Needs the built plugins (run from the package root) and the encoder model.
            """)

    @Option(help: "Per-prompt quality files, {prompt, quality: {model: value}} (repeatable).") var quality: [String] = []
    @Option(help: "A judge-scores file, {question_id, model, score} lines, with --questions ({question_id, prompt}).") var scores: String?
    @Option(help: "The questions of --scores.") var questions: String?
    @Option(name: .customLong("max-prompts"), help: "Use at most this many prompts (a quick run).") var maxPrompts: Int?
    @Option(help: "The strong model.") var strong: String
    @Option(help: "The weak model.") var weak: String
    @Option(help: "Divide the files' values by this to make qualities in [0, 1] (10 for 1–10 judge scores).") var scale: Double = 1
    @Option(name: .customLong("test-share"), help: "The share of prompts held out, by stable hash.") var testShare = PromptSplit.defaultTestShare
    @Option(name: .customLong("seed-prompts"), help: "Replay prompts the starting index is built from.") var seedPrompts = 20
    @Option(help: "Checkpoints, as shares of the replay (comma-separated).") var checkpoints = "0,0.01,0.02,0.05,0.1,0.2,0.4,0.7,1"
    @Option(help: "Connections that send feedback at once.") var connections = 4
    @Option(name: .customLong("publish-every"), help: "feedback.learning.publish_every of the daemon.") var publishEvery = 100
    @Option(help: "The encoder model folder.") var model: String = "models/all-MiniLM-L6-v2"
    @Option(help: "The plugin descriptors' folder.") var plugins: String = "plugins"
    @Option(help: "The trainer's embedding cache (default: .cache/embeddings-minilm-head.bin).") var cache: String?
    @Option(help: "A folder for the daemon's config, socket, feedback and indexes (default: a new temporary one).") var work: String?
    @Option(help: "Also write the curve as CSV here, and as SVG beside it (.svg).") var csv: String?
    @Option(
        name: .customLong("one-sided"),
        help:
            "Report one model's quality per prompt, as a service sees it: 'random' (a coin flip per prompt), 'routed' (the learning router's choice), 'explore' (its route decision, exploring with ε 0.2) or 'thompson' (its route decision, exploring by Thompson sampling). Default: both models'."
    )
    var oneSided: LearningReplay.OneSided?
    @Option(
        help:
            "Learn with the classifier over these quality weights (trained elsewhere: its prior) instead of sw_ranking from seed prompts; --as-strong and --as-weak name the router's models."
    )
    var classifier: String?
    @Option(name: .customLong("as-strong"), help: "With --classifier: the weights' model that --strong's outcomes are reported as.") var asStrong:
        String?
    @Option(name: .customLong("as-weak"), help: "With --classifier: the weights' model that --weak's outcomes are reported as.") var asWeak: String?
    @Option(help: "The learning router's own parameters, a YAML flow mapping, e.g. '{sharpness: 10, prior: 1}'.") var params: String?
    @Option(
        name: .customLong("holdout-band"),
        help: "Choose settings without the test share: replay split positions from HIGH and score those in [LOW, HIGH), e.g. 0.3,0.45.")
    var holdoutBand: String?

    func run() async throws {
        var replay = LearningReplay(
            strong: strong, weak: weak, work: work ?? NSTemporaryDirectory() + "routerctl-bench-learning-\(getpid())",
            routerd: siblingExecutable("routerd"))
        replay.quality = quality
        replay.scores = scores
        replay.questions = questions
        replay.maxPrompts = maxPrompts
        replay.scale = scale
        replay.testShare = testShare
        replay.seedPrompts = seedPrompts
        replay.checkpoints = checkpoints.split(separator: ",").compactMap { Double($0) }
        replay.connections = connections
        replay.publishEvery = publishEvery
        replay.model = model
        replay.plugins = plugins
        replay.cache = cache
        replay.oneSided = oneSided
        replay.params = params
        if let classifier {
            replay.learner = .classifier(weights: classifier, strong: asStrong ?? strong, weak: asWeak ?? weak)
        } else if asStrong != nil || asWeak != nil {
            throw ValidationError("--as-strong and --as-weak name a classifier's models: give --classifier too")
        }
        if let holdoutBand {
            let bounds = holdoutBand.split(separator: ",").compactMap { Double($0) }
            guard bounds.count == 2, bounds[0] >= testShare, bounds[1] > bounds[0], bounds[1] < 1 else {
                throw ValidationError("--holdout-band takes LOW,HIGH above the test share (\(testShare)), e.g. 0.3,0.45")
            }
            replay.band = (bounds[0], bounds[1])
            replay.replayFrom = bounds[1]
        }
        let outcome: LearningReplay.Outcome
        do {
            // Written at once, so a run into a file shows each checkpoint as it happens.
            outcome = try await replay.run { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) }
        } catch let error as BenchmarkRunError {
            printError("routerctl bench-learning: \(error)")
            throw ExitCode(1)
        }
        let online = outcome.checkpoints.last!.apgr
        let sent = outcome.outcomesSent
        print("")
        print(String(format: "online after the whole replay  APGR %.4f", online))
        if classifier == nil {
            print(
                String(
                    format: "offline index, same rows       APGR %.4f   (online − offline %+.4f; offline training took %.1f s)", outcome.offlineAPGR,
                    online - outcome.offlineAPGR, outcome.offlineTrainingSeconds))
        } else {
            print(
                String(
                    format: "frozen weights (the start)     APGR %.4f   (online − frozen %+.4f)", outcome.offlineAPGR, online - outcome.offlineAPGR))
        }
        print(
            String(
                format: "feedback throughput            %.0f outcomes/s over %d connections (acknowledged, fdatasync'd)", outcome.outcomesPerSecond,
                connections))
        if let worst = outcome.publishMilliseconds.max(), let last = outcome.publishMilliseconds.last {
            print(
                String(
                    format: "publish (fold, persist, swap)  last %.1f ms, largest seen %.1f ms, publishing every %d outcomes", last, worst,
                    publishEvery))
        }
        if let worst = outcome.embedMilliseconds.max(), let last = outcome.embedMilliseconds.last {
            print(String(format: "embedding a batch before it    last %.1f ms, largest seen %.1f ms (fresh prompts: encoder passes)", last, worst))
        }
        if let lag = outcome.lagSeconds.max() {
            print(String(format: "last ack → published           %.2f s at most over the checkpoints", lag))
        }
        print(
            String(
                format: "learned state                  %d bytes for %d outcomes (%.0f bytes per outcome)", outcome.learnedStateBytes, sent,
                Double(outcome.learnedStateBytes) / Double(max(1, sent))))
        let (learning, frozen) = outcome.routeMicroseconds
        if let p50 = Quantile.nearestRank(learning, 0.5), let p99 = Quantile.nearestRank(learning, 0.99),
            let frozen50 = Quantile.nearestRank(frozen, 0.5),
            let frozen99 = Quantile.nearestRank(frozen, 0.99)
        {
            print(
                String(
                    format:
                        "route, embeddings cached       p50 %.0f µs, p99 %.0f µs learning; p50 %.0f µs, p99 %.0f µs %@ (×%.2f at p50, %d decisions each)",
                    p50, p99, frozen50, frozen99, classifier == nil ? "offline index" : "frozen", p50 / frozen50, learning.count))
        }
        if let csv {
            try createParentDirectory(of: csv)
            let rows = outcome.checkpoints
            let text =
                "outcomes,prompts,apgr,last_publish_ms,learned_prompts\n"
                + rows.map { "\($0.events),\($0.prompts),\($0.apgr),\($0.lastPublishMilliseconds.map { "\($0)" } ?? ""),\($0.learnedPrompts)" }
                .joined(separator: "\n") + "\n"
                + "\(classifier == nil ? "offline" : "frozen"),\(oneSided == nil ? sent / 2 : sent),\(outcome.offlineAPGR),,\n"
            try Data(text.utf8).write(to: URL(fileURLWithPath: csv))
            let plot = LearningPlot.svg(
                title: "\(classifier == nil ? "sw_ranking" : "classifier") learning online: \(strong) vs \(weak)",
                subtitle: "APGR on \(outcome.testPrompts) held-out prompts (share \(testShare)) after each share of \(sent) replayed outcomes",
                points: rows.map { ($0.events, $0.apgr) }, offline: outcome.offlineAPGR,
                reference: classifier == nil ? "offline, same rows" : "frozen weights")
            try Data(plot.utf8).write(to: URL(fileURLWithPath: (csv as NSString).deletingPathExtension + ".svg"))
        }
    }
}

extension LearningReplay.OneSided: ExpressibleByArgument {}
