import ArgumentParser
import Foundation
import RouterBenchmarks
import RouterEvaluation
import TrainingRows

/// `routerctl bench-learning`: ``LearningReplay`` (RouterBenchmarks) from the command line, its curve printed and plotted.
struct BenchLearning: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-learning",
        abstract: "Replay outcomes through a routerd it starts, and report APGR on an untouched split as sw_ranking learns online.",
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
            "Report one model's quality per prompt, as a service sees it: 'random' (a coin flip per prompt), 'routed' (the learning router's choice) or 'explore' (its route decision, exploring with ε 0.2). Default: both models'."
    )
    var oneSided: LearningReplay.OneSided?

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
        print(
            String(
                format: "offline index, same rows       APGR %.4f   (online − offline %+.4f; offline training took %.1f s)", outcome.offlineAPGR,
                online - outcome.offlineAPGR, outcome.offlineTrainingSeconds))
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
        if let csv {
            try createParentDirectory(of: csv)
            let rows = outcome.checkpoints
            let text =
                "outcomes,prompts,apgr,last_publish_ms,learned_prompts\n"
                + rows.map { "\($0.events),\($0.prompts),\($0.apgr),\($0.lastPublishMilliseconds.map { "\($0)" } ?? ""),\($0.learnedPrompts)" }
                .joined(separator: "\n") + "\n"
                + "offline,\(sent / 2),\(outcome.offlineAPGR),,\n"
            try Data(text.utf8).write(to: URL(fileURLWithPath: csv))
            let plot = LearningPlot.svg(
                title: "sw_ranking learning online: \(strong) vs \(weak)",
                subtitle: "APGR on \(outcome.testPrompts) held-out prompts (share \(testShare)) after each share of \(sent) replayed outcomes",
                points: rows.map { ($0.events, $0.apgr) }, offline: outcome.offlineAPGR)
            try Data(plot.utf8).write(to: URL(fileURLWithPath: (csv as NSString).deletingPathExtension + ".svg"))
        }
    }
}

extension LearningReplay.OneSided: ExpressibleByArgument {}
