import ArgumentParser
import Foundation
import RouterBenchmarks

/// `routerctl bench-publish`: ``PublishTiming`` from the command line.
struct BenchPublish: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-publish",
        abstract: "Time one sw_ranking publish (fold a batch, build the scoring index, write the state durably) with N learned prompts.")

    @Option(help: "The base index.") var index: String = "weights/sw-ranking-minilm.safetensors"
    @Option(help: "Learned prompts already held (comma-separated for several runs).") var learned: String = "1000,10000"
    @Option(help: "Outcomes per publish.") var batch: Int = 100
    @Option(help: "Where to write the state (default: a temporary folder).") var folder: String?

    func run() throws {
        print(
            table(header: ["LEARNED PROMPTS", "FOLD ms", "BUILD ms", "WRITE ms", "TOTAL ms", "STATE BYTES"], rows: [], widths: [16, 8, 9, 9, 9, 12]))
        for count in learned.split(separator: ",").compactMap({ Int($0) }) {
            var timing = PublishTiming(
                index: index, learnedPrompts: count, folder: folder ?? NSTemporaryDirectory() + "routerctl-bench-publish-\(getpid())")
            timing.batch = batch
            let result = try timing.run()
            print(
                table(
                    header: [
                        "\(count)", String(format: "%.1f", result.fold), String(format: "%.1f", result.build), String(format: "%.1f", result.write),
                        String(format: "%.1f", result.total), "\(result.stateBytes)",
                    ], rows: [], widths: [16, 8, 9, 9, 9, 12]))
        }
    }
}
