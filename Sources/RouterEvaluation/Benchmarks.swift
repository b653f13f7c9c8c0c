import CSV
import Foundation
import StableHash
import TrainingRows

/// A problem reading a benchmark, naming the file.
public struct BenchmarkError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Prompts with each model's quality on them: correctness (0/1) or a judge's score.
public struct Benchmark: Sendable {
    public var name: String
    public var strongModel: String
    public var weakModel: String
    public var prompts: [String]
    public var strong: [Double]
    public var weak: [Double]
    /// Prompts dropped as contaminated (too close to training data).
    public var dropped: Int
}

/// Reads RouteLLM's benchmark files as they are (../shared/data/eval), and the
/// generic per-prompt format `{prompt, quality: {model: value}}`.
public enum BenchmarkLoader {
    public static let names = ["mt-bench", "gsm8k", "mmlu"]

    public static func load(_ name: String, from folder: String, strong: String, weak: String) throws(BenchmarkError) -> Benchmark {
        switch name {
        case "mt-bench": return try mtBench(folder + "/mt_bench", strong: strong, weak: weak)
        case "gsm8k":
            return try csvBenchmark(
                name, files: [folder + "/gsm8k/gsm8k_responses.csv"], contaminated: folder + "/gsm8k/contaminated_prompts.jsonl", strong: strong,
                weak: weak)
        case "mmlu":
            let responses = folder + "/mmlu/responses"
            guard let files = try? FileManager.default.contentsOfDirectory(atPath: responses) else {
                throw BenchmarkError("cannot list \(responses)")
            }
            return try csvBenchmark(
                name, files: files.filter { $0.hasSuffix(".csv") }.sorted().map { responses + "/" + $0 },
                contaminated: folder + "/mmlu/contaminated_prompts.jsonl", strong: strong, weak: weak)
        default:
            throw BenchmarkError("unknown benchmark '\(name)' (known: \(names.joined(separator: ", ")))")
        }
    }

    /// A generic per-prompt file (see ``QualityFile``) for one strong/weak pair. Lines that lack either model are skipped.
    public static func generic(file: String, strong: String, weak: String) throws(BenchmarkError) -> Benchmark {
        let name = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
        var benchmark = Benchmark(name: name, strongModel: strong, weakModel: weak, prompts: [], strong: [], weak: [], dropped: 0)
        let records: [QualityRecord]
        do {
            records = try QualityFile.read(file)
        } catch {
            throw BenchmarkError(error.message)
        }
        for record in records {
            guard let strongValue = record.quality[strong], let weakValue = record.quality[weak] else {
                benchmark.dropped += 1
                continue
            }
            benchmark.prompts.append(record.prompt)
            benchmark.strong.append(strongValue)
            benchmark.weak.append(weakValue)
        }
        guard !benchmark.prompts.isEmpty else { throw BenchmarkError("\(file): no prompt has a quality for both \(strong) and \(weak)") }
        return benchmark
    }

    /// RouteLLM's prompts flagged as too close to its training data: their `eval_prompt`s.
    static func contaminatedPrompts(_ file: String) throws(BenchmarkError) -> Set<String> {
        guard let data = FileManager.default.contents(atPath: file) else { throw BenchmarkError("cannot read \(file)") }
        var prompts: Set<String> = []
        for line in data.split(separator: UInt8(ascii: "\n")) {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any], let prompt = object["eval_prompt"] as? String
            else {
                throw BenchmarkError("\(file): a line without eval_prompt")
            }
            prompts.insert(prompt.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return prompts
    }

    /// MMLU and GSM8K: CSV files with a prompt column and one True/False column per model.
    static func csvBenchmark(_ name: String, files: [String], contaminated: String, strong: String, weak: String) throws(BenchmarkError) -> Benchmark
    {
        let drop = try contaminatedPrompts(contaminated)
        var benchmark = Benchmark(name: name, strongModel: strong, weakModel: weak, prompts: [], strong: [], weak: [], dropped: 0)
        for file in files {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw BenchmarkError("cannot read \(file)") }
            let reader: CSVReader
            do {
                reader = try CSVReader(string: text, hasHeaderRow: true)
            } catch {
                throw BenchmarkError("\(file): \(error)")
            }
            let header = reader.headerRow ?? []
            guard let promptColumn = header.firstIndex(of: "prompt"), let strongColumn = header.firstIndex(of: strong),
                let weakColumn = header.firstIndex(of: weak)
            else {
                throw BenchmarkError("\(file): needs columns prompt, \(strong) and \(weak); has \(header.joined(separator: ", "))")
            }
            while let row = reader.next() {
                guard row.count > max(promptColumn, strongColumn, weakColumn) else { continue }
                let prompt = row[promptColumn]
                if drop.contains(prompt.trimmingCharacters(in: .whitespacesAndNewlines)) {
                    benchmark.dropped += 1
                    continue
                }
                benchmark.prompts.append(prompt)
                benchmark.strong.append(row[strongColumn] == "True" ? 1 : 0)
                benchmark.weak.append(row[weakColumn] == "True" ? 1 : 0)
            }
        }
        guard !benchmark.prompts.isEmpty else { throw BenchmarkError("\(name): no prompts in \(files.first ?? "the files")") }
        return benchmark
    }

    /// MT-Bench: route on the first turn; quality is the mean GPT-4 judge score over both turns.
    /// Question 105 is dropped too: it near-duplicates an arena-bench-v1 training prompt.
    static func mtBench(_ folder: String, strong: String, weak: String, alsoDrop: Set<Int> = [105]) throws(BenchmarkError) -> Benchmark {
        let drop = try contaminatedPrompts(folder + "/contaminated_prompts.jsonl")
        func lines(_ file: String) throws(BenchmarkError) -> [[String: Any]] {
            guard let data = FileManager.default.contents(atPath: file) else { throw BenchmarkError("cannot read \(file)") }
            return data.split(separator: UInt8(ascii: "\n")).compactMap { (try? JSONSerialization.jsonObject(with: Data($0))) as? [String: Any] }
        }
        var totals: [Int: [String: (sum: Double, count: Int)]] = [:]
        for judgement in try lines(folder + "/judgements.jsonl") {
            guard let id = (judgement["question_id"] as? NSNumber)?.intValue, let model = judgement["model"] as? String,
                let score = (judgement["score"] as? NSNumber)?.doubleValue
            else { continue }
            var entry = totals[id, default: [:]][model] ?? (0, 0)
            entry.sum += score
            entry.count += 1
            totals[id, default: [:]][model] = entry
        }
        var benchmark = Benchmark(name: "mt-bench", strongModel: strong, weakModel: weak, prompts: [], strong: [], weak: [], dropped: 0)
        for question in try lines(folder + "/question.jsonl") {
            guard let id = (question["question_id"] as? NSNumber)?.intValue, let turns = question["turns"] as? [String], let first = turns.first
            else {
                continue
            }
            if alsoDrop.contains(id) || drop.contains(first.trimmingCharacters(in: .whitespacesAndNewlines)) {
                benchmark.dropped += 1
                continue
            }
            guard let strongScore = totals[id]?[strong], let weakScore = totals[id]?[weak] else { continue }
            benchmark.prompts.append(first)
            benchmark.strong.append(strongScore.sum / Double(strongScore.count))
            benchmark.weak.append(weakScore.sum / Double(weakScore.count))
        }
        return benchmark
    }
}

extension Benchmark {
    /// The `size` prompts with the smallest stable hashes, in their original order: the same
    /// deterministic sample for every router.
    public func subset(size: Int) -> Benchmark {
        let kept = prompts.indices.sorted { (FNV1a.hash(prompts[$0]), $0) < (FNV1a.hash(prompts[$1]), $1) }.prefix(size).sorted()
        var subset = self
        subset.prompts = kept.map { prompts[$0] }
        subset.strong = kept.map { strong[$0] }
        subset.weak = kept.map { weak[$0] }
        return subset
    }
}
