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
        let embeddings = try given ?? embeddings(of: prompts, for: router, progress: progress)
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

    /// The embeddings `router` decides `prompts` with (through the on-disk cache); nil without an encoder.
    public static func embeddings(of prompts: [String], for router: RouterInstance, progress: CachedEmbeddings.Progress = { _, _, _ in })
        throws -> [[Float]]?
    {
        try router.encoder.map { try embed(prompts, with: $0.encoder, policy: $0.policy, progress: progress) }
    }

    /// `router`'s greedy decision on each prompt, as the engine makes it without exploring
    /// (`forEvaluation`), for evaluating the router on prompts another one decided.
    public static func greedyDecisions(
        of prompts: [String], by router: RouterInstance, engine: Engine, on generation: Generation,
        progress: CachedEmbeddings.Progress = { _, _, _ in }
    ) throws -> [RoutingDecision] {
        let embeddings = try embeddings(of: prompts, for: router, progress: progress)
        return try prompts.indices.map { index in
            try engine.route(router, prompt: prompts[index], embedding: embeddings?[index], forEvaluation: true, on: generation)
        }
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
