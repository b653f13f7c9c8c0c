import Foundation
import Logging
import RouterEngine
import RouterPluginHost
import RouterTraining
import RouterVocabulary
import TextEncoder

/// Why an offline evaluation could not go on, in words an operator can act on.
public struct EvaluationRunError: Error, CustomStringConvertible, Sendable {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Routers built in this process from a config: the same plugins and encoder as the daemon, for
/// evaluation and calibration.
public enum InProcessRouters {
    /// The config's routers, built as `routerd --check-config` builds them.
    public static func load(config: String) throws(GenerationError) -> Generation {
        var logger = Logger(label: "routerctl")
        logger.logLevel = .warning
        return try Engine.check(configFile: config, executableDirectory: PluginLibrary.executableDirectory, logger: logger)
    }

    /// Scores prompts with a router, embedding them through the on-disk cache when it has an encoder
    /// (or taking `embeddings` computed elsewhere).
    public static func score(
        _ prompts: [String], with router: RouterInstance, embeddings given: [[Float]]? = nil, progress: CachedEmbeddings.Progress = { _, _, _ in }
    ) throws -> [Double] {
        let embeddings =
            try given ?? router.encoder.map { instance in try embed(prompts, with: instance.encoder, policy: instance.policy, progress: progress) }
        var scores: [Double] = []
        for begin in stride(from: 0, to: prompts.count, by: 256) {
            let range = begin..<min(begin + 256, prompts.count)
            do {
                scores += try router.score(Array(prompts[range]), embeddings: embeddings.map { Array($0[range]) })
            } catch {
                throw EvaluationRunError("router '\(router.name)': \(error.message)")
            }
        }
        return scores
    }

    /// Embeddings of `prompts` by `encoder`, through the on-disk cache of its policy and precision.
    public static func embed(
        _ prompts: [String], with encoder: SentenceEncoder, policy: LongTextPolicy, progress: CachedEmbeddings.Progress = { _, _, _ in }
    ) throws -> [[Float]] {
        try CachedEmbeddings.embed(
            prompts, cache: CachedEmbeddings.defaultPath(policy, precision: encoder.precision), policy: policy, progress: progress
        ) {
            encoder
        }
    }
}
