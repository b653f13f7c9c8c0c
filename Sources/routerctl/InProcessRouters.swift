import ArgumentParser
import Foundation
import Logging
import RouterEngine
import RouterPluginHost
import RouterTraining
import RouterVocabulary
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

    /// Scores prompts with a router, embedding them through the on-disk cache when it has an encoder
    /// (or taking `embeddings` computed elsewhere).
    static func score(_ prompts: [String], with router: RouterInstance, embeddings given: [[Float]]? = nil) throws -> [Double] {
        let embeddings = try given ?? router.encoder.map { instance in try embed(prompts, with: instance.encoder, policy: instance.policy) }
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

    /// Embeddings of `prompts` by `encoder`, through the on-disk cache of its policy and precision.
    static func embed(_ prompts: [String], with encoder: SentenceEncoder, policy: LongTextPolicy) throws -> [[Float]] {
        try CachedEmbeddings.embed(
            prompts, cache: CachedEmbeddings.defaultPath(policy, precision: encoder.precision), policy: policy, progress: Progress.embedding
        ) { encoder }
    }
}
