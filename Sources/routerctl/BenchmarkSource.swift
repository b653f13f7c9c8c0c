import ArgumentParser
import Foundation
import RouterEvaluation

/// A benchmark a command names: one of RouteLLM's by name (`--benchmarks`), or a generic quality
/// file (`--file`), loaded where the command reaches it.
enum BenchmarkSource {
    case named(String)
    case file(String)

    /// `--benchmarks`' comma-separated names, then the files.
    static func list(names: String, files: [String]) -> [BenchmarkSource] {
        names.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map(BenchmarkSource.named)
            + files.map(BenchmarkSource.file)
    }

    /// The benchmark, with `pair` for a named one and `filePair` for a file; a failure exits 1
    /// with the command's name and where the data lives.
    func load(data: String, pair: (strong: String, weak: String), filePair: (strong: String, weak: String), command: String) throws
        -> Benchmark
    {
        do {
            switch self {
            case .named(let name): return try BenchmarkLoader.load(name, from: data, strong: pair.strong, weak: pair.weak)
            case .file(let file): return try BenchmarkLoader.generic(file: file, strong: filePair.strong, weak: filePair.weak)
            }
        } catch {
            printError("routerctl \(command): \(error) (the evaluation data lives in ../shared/data/eval; see docs/TRAINING.md)")
            throw ExitCode(1)
        }
    }
}
