import ArgumentParser
import Foundation
import RouterBenchmarks

/// `routerctl bench-publish`: ``PublishTiming`` from the command line.
struct BenchPublish: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-publish",
        abstract:
            "Time one sw_ranking publish (fold a batch, build the scoring index, write the state durably) with N learned prompts, and what they cost a decision.",
        discussion: """
            SCORE µs is the median time to score one query with the shipped router's settings (γ 1, 100 neighbours, prompt units) \
            on the base index alone and with the learned state; the ratio is what learning costs a decision's scoring, the rest of \
            a decision (decoding, the cache, the policy) being the same for both.
            """)

    @Option(help: "The base index.") var index: String = "weights/sw-ranking-minilm.safetensors"
    @Option(help: "Learned prompts already held (comma-separated for several runs).") var learned: String = "1000,10000"
    @Option(help: "Outcomes per publish.") var batch: Int = 100
    @Option(help: "Where to write the state (default: a temporary folder).") var folder: String?
    @Option(help: "The router's learned_anchors (0: every learned prompt its own row).") var anchors: Int = 1024

    func run() throws {
        let widths = [16, 8, 9, 9, 9, 12, 8, 16, 8]
        print(
            table(
                header: ["LEARNED PROMPTS", "FOLD ms", "BUILD ms", "WRITE ms", "TOTAL ms", "STATE BYTES", "ROWS", "SCORE µs base/+", "RATIO"],
                rows: [], widths: widths))
        for count in learned.split(separator: ",").compactMap({ Int($0) }) {
            var timing = PublishTiming(
                index: index, learnedPrompts: count, folder: folder ?? NSTemporaryDirectory() + "routerctl-bench-publish-\(getpid())")
            timing.batch = batch
            timing.anchors = anchors
            let result = try timing.run()
            print(
                table(
                    header: [
                        "\(count)", String(format: "%.1f", result.fold), String(format: "%.1f", result.build), String(format: "%.1f", result.write),
                        String(format: "%.1f", result.total), "\(result.stateBytes)", "\(result.learnedRows)",
                        String(format: "%.0f/%.0f", result.scoreBase, result.scoreLearned),
                        String(format: "%.2f", result.scoreLearned / result.scoreBase),
                    ], rows: [], widths: widths))
        }
    }
}
