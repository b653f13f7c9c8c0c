import ArgumentParser
import Foundation
import Logging
import RouterEngine
import RouterTraining
import TextEncoder

/// Routers built in this process from a config: the same plugins and encoder
/// as the daemon, for `eval` and `calibrate`.
enum InProcessRouters {
    static func load(config: String, command: String) throws -> Generation {
        var logger = Logger(label: "routerctl")
        logger.logLevel = .warning
        do {
            return try Engine.check(configFile: config, executableDirectory: PluginLibrary.executableDirectory, logger: logger)
        } catch {
            printError("routerctl \(command): \(config):\n  " + error.problems.joined(separator: "\n  "))
            throw ExitCode(1)
        }
    }

    /// Scores prompts with a router, embedding them through the on-disk cache when it has an encoder.
    static func score(_ prompts: [String], with router: RouterInstance) throws -> [Double] {
        let embeddings = try router.encoder.map { instance in
            try CachedEmbeddings.embed(prompts, cache: CachedEmbeddings.defaultPath(instance.policy), policy: instance.policy) { instance.encoder }
        }
        var scores: [Double] = []
        for begin in stride(from: 0, to: prompts.count, by: 256) {
            let range = begin..<min(begin + 256, prompts.count)
            do {
                scores += try router.score(Array(prompts[range]), embeddings: embeddings.map { Array($0[range]) })
            } catch {
                throw ValidationError("router '\(router.name)': \(error.message)")
            }
        }
        return scores
    }
}

/// `routerctl calibrate`: the threshold that sends a given share of traffic to the strong model.
struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the threshold that sends a given share of prompts to the strong model.",
        discussion: """
            With --prompts (one prompt per line, or JSON lines with a "prompt" field), the router scores those prompts \
            and the threshold is their (1 − fraction) quantile. Without it, the quantiles the plugin publishes are used \
            (for mf: the training prompts' scores, stored in the weights).
            """)

    @Option(name: [.short, .long], help: "The config that defines the router.") var config: String = "etc/routerd/routerd.yaml"
    @Option(name: [.short, .long], help: "The router.") var router: String = "mf"
    @Option(name: .customLong("strong-fraction"), help: "Share of prompts to send to the strong model, 0 to 1.") var strongFraction: Double
    @Option(help: "Prompts to calibrate on.") var prompts: String?

    func run() throws {
        BLASKernels.reexecWithBestCoreIfNeeded()
        guard (0...1).contains(strongFraction) else { throw ValidationError("--strong-fraction must be between 0 and 1") }
        let generation = try InProcessRouters.load(config: config, command: "calibrate")
        guard let instance = generation.routers[router] else {
            throw ValidationError("router '\(router)' is not in \(config) (routers: \(generation.routerNames.joined(separator: ", ")))")
        }
        let threshold: Double
        let basis: String
        if let prompts {
            guard let data = FileManager.default.contents(atPath: prompts) else { throw ValidationError("cannot read \(prompts)") }
            let texts = data.split(separator: UInt8(ascii: "\n")).compactMap { line -> String? in
                if let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any], let prompt = object["prompt"] as? String {
                    return prompt
                }
                let text = String(decoding: line, as: UTF8.self)
                return text.isEmpty ? nil : text
            }
            guard !texts.isEmpty else { throw ValidationError("\(prompts) holds no prompts") }
            SentenceEncoder.setThreads(2)
            let scores = try InProcessRouters.score(texts, with: instance).sorted()
            threshold = Calibration.threshold(strongFraction: strongFraction, sortedScores: scores)
            let share = Double(scores.filter { $0 >= threshold }.count) / Double(scores.count)
            basis = String(format: "%.1f%% of the %d prompts in %@", share * 100, scores.count, prompts)
        } else {
            guard let quantiles = Calibration.quantiles(fromDescription: instance.describe()) else {
                printError("routerctl calibrate: router '\(router)' publishes no score quantiles for its strong/weak pair; pass --prompts FILE")
                throw ExitCode(1)
            }
            threshold = Calibration.threshold(strongFraction: strongFraction, sortedScores: quantiles)
            basis = "the plugin's published score quantiles"
        }
        print(
            String(
                format: "router %@: threshold %.6f sends %.0f%% to %@ (measured on %@)", router, threshold, strongFraction * 100,
                instance.strongModel, basis))
        print("in routerd.yaml: `threshold: \(String(format: "%.6f", threshold))`, or `strong_fraction: \(strongFraction)` to derive it at load")
    }
}

/// Prompt embeddings through the on-disk cache (`EmbeddingStore`), shared by training,
/// evaluation and calibration: only prompts not cached yet run the encoder, which is
/// loaded on first need.
enum CachedEmbeddings {
    static func defaultPath(_ policy: LongTextPolicy) -> String { ".cache/embeddings-minilm-\(policy.rawValue).bin" }

    static func embed(_ prompts: [String], cache path: String, policy: LongTextPolicy, encoder: () throws -> SentenceEncoder) throws -> [[Float]] {
        let store = try EmbeddingStore(path: path, dimension: SentenceEncoder.dimension)
        let missing = Array(Set(prompts.filter { store[$0] == nil })).sorted()
        if !missing.isEmpty {
            let encoder = try encoder()
            SentenceEncoder.setThreads(2)
            print("embedding \(missing.count) prompts (\(store.count) cached in \(store.path))")
            let start = Date()
            for begin in stride(from: 0, to: missing.count, by: 32) {
                let chunk = Array(missing[begin..<min(begin + 32, missing.count)])
                for (text, vector) in zip(chunk, encoder.embed(chunk, policy: policy)) { store.insert(vector, for: text) }
                let done = min(begin + 32, missing.count)
                Progress.line(
                    String(
                        format: "  %@ %d/%d prompts, %.0f s", Progress.bar(fraction: Double(done) / Double(missing.count), width: 20), done,
                        missing.count, Date().timeIntervalSince(start)))
                if done % 1024 == 0 { try store.save() }
            }
            Progress.finish()
            try store.save()
        }
        return prompts.map { store[$0]! }
    }
}
