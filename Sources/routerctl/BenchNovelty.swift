import ArgumentParser
import Foundation
import OfflineEvaluation
import RouterEngine
import RouterEvaluation
import TextEncoder

/// `routerctl bench-novelty`: ``NoveltyProfile`` from the command line.
struct BenchNovelty: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-novelty",
        abstract: "How familiar each benchmark's prompts are to a router, and its APGR on the less and the more familiar half.")

    @Option(name: [.short, .long], help: "The config whose router to use.") var config: String = "etc/routerd/routerd.yaml"
    @Option(help: "The router (its plugin must judge familiarity, as sw_ranking does).") var router: String = "sw_ranking"
    @Option(help: "Benchmarks, comma-separated (mt-bench, gsm8k, mmlu).") var benchmarks: String = "mt-bench,gsm8k,mmlu"
    @Option(help: "RouteLLM's eval folder.") var data: String = "../shared/data/eval"
    @Option(name: .customLong("file"), help: "Also profile a quality file of JSON lines {prompt, quality: {model: value}} (repeatable).")
    var files: [String] = []
    @Option(help: "The strong model of the benchmark files.") var strong: String = "gpt-4-1106-preview"
    @Option(help: "The weak model of the benchmark files.") var weak: String = "mistralai/Mixtral-8x7B-Instruct-v0.1"
    @Option(help: "The strong model of --file.") var fileStrong: String = "gpt-4o-2024-05-13"
    @Option(help: "The weak model of --file.") var fileWeak: String = "Mixtral-8x7B-Instruct-v0.1"

    func run() throws {
        BLASKernels.reexecWithBestCoreIfNeeded()
        let generation = try InProcessRouters.load(config: config, command: "bench-novelty")
        guard let instance = generation.routers[router] else {
            throw ValidationError("router '\(router)' is not in \(config) (routers: \(generation.routerNames.joined(separator: ", ")))")
        }
        var profile = NoveltyProfile(router: instance)
        profile.progress = Progress.embedding
        var rows: [[String]] = []
        for source in BenchmarkSource.list(names: benchmarks, files: files) {
            let benchmark = try source.load(data: data, pair: (strong, weak), filePair: (fileStrong, fileWeak), command: "bench-novelty")
            let row: NoveltyProfile.Row
            do {
                row = try profile.run(benchmark)
            } catch let error as EvaluationRunError {
                printError("routerctl bench-novelty: \(error)")
                throw ExitCode(1)
            }
            rows.append(
                [row.benchmark, "\(row.prompts)"] + row.quantiles.map { String(format: "%.3f", $0) } + [
                    String(format: "%.1f%%", row.below5 * 100), String(format: "%.1f%%", row.below20 * 100),
                    String(format: "%.3f", row.apgrLessFamiliar), String(format: "%.3f", row.apgrMoreFamiliar),
                ])
        }
        print("familiarity of each benchmark's prompts to router '\(router)' (a percentile of its own training prompts)")
        print(
            table(
                header: ["BENCHMARK", "PROMPTS", "P10", "P50", "P90", "BELOW 0.05", "BELOW 0.2", "APGR LESS FAMILIAR", "APGR MORE FAMILIAR"],
                rows: rows))
    }
}
