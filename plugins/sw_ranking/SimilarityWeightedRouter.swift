import CRouterPlugin
import Foundation
import RouterJSON
import RouterPluginKit
import SafeTensors
import SimilarityRanking
import Synchronization

/// RouteLLM's similarity-weighted (SW) ranking router, over an index built by
/// `routerctl train sw_ranking` (see ``SimilarityRanker`` for the method).
///
/// With more candidates, one similarity-weighted Bradley–Terry fit gives every
/// model's strength, and each candidate's quality is its win rate against the others.
///
/// It learns online (ABI revision 3): reported outcomes are folded into a copy of its
/// ``LearnedRanking``, written to `learned.safetensors` in the state folder, and published by
/// swapping in a ranker over the index followed by what was learned. The index's similarity
/// weighting treats a learned prompt like an indexed one.
///
/// It judges familiarity (ABI revision 4) by ``Familiarity``: a prompt's k-th nearest similarity
/// among the indexed and learned prompts, as a percentile of the index's own.
///
/// It draws from its posterior (ABI revision 5) for Thompson sampling: the Laplace approximation
/// of each prompt's Bradley–Terry fit.
final class SimilarityWeightedRouter: QualityPredictingRouter, OnlineLearningRouter, FamiliarityJudgingRouter, PosteriorSamplingRouter {
    static let name = "sw_ranking"
    static let version = "1.6.0"

    /// What scoring reads, swapped whole when something is learned or forgotten.
    private struct Published: Sendable {
        var ranker: SimilarityRanker
        var learned: LearnedRanking
    }

    private let index: RankingIndex
    private let settings: RankingSettings
    /// Each candidate's log-strength before any evidence (`prior_by`); empty: every candidate equal.
    private let priorStrengths: [String: Double]
    private let published: Mutex<Published>
    /// Where the learned state is kept; nil when the host offers no learning.
    private let learnedFile: LearnedStateFile?
    private let host: HostServices
    private var ranker: SimilarityRanker { published.withLock { $0.ranker } }
    private let strong: Int
    private let weak: Int
    /// The candidates' rows in the index.
    private let candidates: [Int]
    private let indexPath: String
    private let encoder: String
    private let quantiles: [Double]?
    /// The index's familiarity reference, computed on the first `familiarity` call (only routers
    /// with `novelty:` ask), so other routers never pay for it.
    private let familiarityReference = Mutex<Familiarity?>(nil)
    /// What `qualities` reports: each candidate's win rate against the others (`win_rate`), or its
    /// chance of a good answer, its odds against par (`success`; the default without an index).
    private let qualityMeaning: QualityScale.Meaning
    /// Bytes the learned state may hold; past them the oldest learned prompts are forgotten.
    private let maxLearnedBytes: Int
    /// Rows the learned prompts score as, at most (`learned_anchors`; 0: every prompt its own row).
    private let learnedAnchors: Int
    static let defaultMaxLearnedBytes = 64 << 20
    /// Rows the learned prompts score as, at most: about a seventh of the shipped 7,318-prompt index,
    /// so that learning costs a decision at most 1.2× (docs/RESULTS.md).
    static let defaultLearnedAnchors = 1024

    init(context: PluginContext) throws {
        var settings = RankingSettings()
        settings.gamma = context.params.double("gamma") ?? settings.gamma
        settings.prior = context.params.double("prior") ?? settings.prior
        settings.neighbors = context.params.int("neighbors")
        if let unit = context.params.string("weight_unit") {
            guard let parsed = RankingSettings.WeightUnit(rawValue: unit) else {
                throw PluginError("weight_unit must be 'battle' or 'prompt', not '\(unit)'")
            }
            settings.weightUnit = parsed
        }
        if let problem = settings.problem { throw PluginError(problem) }
        priorStrengths = try Self.priorStrengths(context: context)
        let anchors = context.params.int("learned_anchors") ?? Self.defaultLearnedAnchors
        guard anchors >= 0 else { throw PluginError("learned_anchors must be 0 or more, not \(anchors)") }
        learnedAnchors = anchors
        maxLearnedBytes = context.params.int("max_learned_bytes") ?? Self.defaultMaxLearnedBytes
        guard maxLearnedBytes >= 0 else { throw PluginError("max_learned_bytes must be 0 or more, not \(maxLearnedBytes)") }
        let index: RankingIndex
        let file: SafeTensorsFile?
        let path: String
        if context.params.string("index") != nil {
            let loaded = try context.loadWeights(parameter: "index", plugin: "sw_ranking", decode: RankingIndex.init(file:), dimension: \.dimension)
            (index, file, path) = (loaded.model, loaded.file, loaded.path)
        } else {
            // A cold start: no battles yet, the candidates as the models; every candidate starts equal and
            // everything is learned online.
            index = RankingIndex.empty(models: context.candidates, dimension: try context.requireEncoder(plugin: "sw_ranking"))
            (file, path) = (nil, "the router's candidates (no index)")
            context.host.log(.info, "no index: starting cold, every candidate equal until outcomes arrive")
        }
        encoder = file?.metadata["encoder"] ?? "unknown"
        switch context.params.string("quality") ?? (file == nil ? "success" : "win_rate") {
        case "win_rate": qualityMeaning = .winRate
        case "success": qualityMeaning = .probability
        case let other: throw PluginError("quality must be 'win_rate' or 'success', not '\(other)'")
        }
        (strong, weak) = try context.strongAndWeak(in: index.models, source: path)
        candidates = try context.candidateIndices(in: index.models, source: path)
        self.index = index
        self.settings = settings
        host = context.host
        learnedFile = LearnedStateFile(stateDirectory: context.stateDirectory)
        var learned =
            learnedFile?.load(host: context.host) {
                try LearnedRanking(file: $0, models: index.models, dimension: index.dimension, maxAnchors: anchors)
            } ?? LearnedRanking(models: index.models, dimension: index.dimension, maxAnchors: anchors)
        // A state learned under a larger bound keeps its newest prompts.
        let dropped = learned.keep(within: maxLearnedBytes)
        if dropped > 0 { context.host.log(.info, "forgot the \(dropped) oldest learned prompts to fit max_learned_bytes") }
        published = Mutex(Published(ranker: try Self.ranker(index, learned, settings, priorStrengths), learned: learned))
        indexPath = path
        // The stored quantiles hold for the pair and settings they were computed with.
        quantiles =
            file?.metadata[RankingSettings.metadataKey].flatMap(RankingSettings.decodeStored) == settings
            ? file?.scoreQuantiles(forPair: [context.strongModel, context.weakModel]) : nil
    }

    func score(_ prompt: Prompt) throws -> Double {
        let ranker = ranker
        return ranker.winProbability(embedding: try Self.embedding(of: prompt, for: ranker), strong: strong, weak: weak)
    }

    func qualities(_ prompt: Prompt) throws -> [Double] {
        let ranker = ranker
        return qualities(strengths: ranker.ratings(embedding: try Self.embedding(of: prompt, for: ranker)), in: ranker)
    }

    /// Draws from the Bradley–Terry fit's posterior (``SimilarityRanker/ratingDraws(embedding:count:seed:)``),
    /// each as P(strong wins) and the candidates' qualities.
    func samples(_ prompt: Prompt, draws: Int, seed: UInt64) throws -> [Double] {
        let ranker = ranker
        let (_, strengths) = ranker.ratingDraws(embedding: try Self.embedding(of: prompt, for: ranker), count: draws, seed: seed)
        var values: [Double] = []
        values.reserveCapacity(draws * (1 + candidates.count))
        for draw in strengths {
            values.append(BradleyTerry.winProbability(draw, strong, weak))
            values += qualities(strengths: draw, in: ranker)
        }
        return values
    }

    /// The candidates' qualities given every model's log-strength.
    private func qualities(strengths: [Double], in ranker: SimilarityRanker) -> [Double] {
        switch qualityMeaning {
        case .probability:
            // Each candidate's odds against par, the local difficulty (0 before anything is learned: the fit's reference).
            let par = ranker.index.models.last == LearnedRanking.par ? strengths[strengths.count - 1] : 0
            return candidates.map { 1 / (1 + exp(par - strengths[$0])) }
        default:
            return QualityScale.winRates(strengths: candidates.map { strengths[$0] })
        }
    }

    func familiarity(_ prompt: Prompt) throws -> Double {
        let ranker = ranker
        let embedding = try Self.embedding(of: prompt, for: ranker)
        let reference = familiarityReference.withLock { reference in
            if let reference { return reference }
            let computed = Familiarity(index: index)
            reference = computed
            return computed
        }
        return reference.familiarity(of: embedding, among: ranker.index)
    }

    /// The prompt's embedding, which every call needs, of the ranker's dimension.
    private static func embedding(of prompt: Prompt, for ranker: SimilarityRanker) throws -> UnsafeBufferPointer<Float> {
        guard let embedding = prompt.embedding, embedding.count == ranker.index.dimension else {
            throw PluginError("no prompt embedding arrived; the sw_ranking router needs an encoder")
        }
        return embedding
    }

    private static func ranker(
        _ index: RankingIndex, _ learned: LearnedRanking, _ settings: RankingSettings, _ priorStrengths: [String: Double]
    ) throws -> SimilarityRanker {
        guard learned.winCount > 0 else { return SimilarityRanker(index: index, settings: settings, priorStrengths: priorStrengths) }
        // Learned outcomes bring par, the virtual opponent of one-sided outcomes, after the index's models.
        return SimilarityRanker(
            index: try learned.appended(to: index, weightUnit: settings.weightUnit), settings: settings, priorStrengths: priorStrengths)
    }

    /// The prior `prior_by` names. `uniform`: every candidate equal (and even with par). `price`:
    /// by price tier, the candidates' log-strengths spread over ±`prior_spread` in proportion to
    /// their log nominal cost, the cheapest lowest; a dearer model is believed better until
    /// outcomes say otherwise.
    static func priorStrengths(context: PluginContext) throws -> [String: Double] {
        let spread = context.params.double("prior_spread") ?? 1
        guard spread >= 0, spread.isFinite else { throw PluginError("prior_spread must be 0 or more, not \(spread)") }
        switch context.params.string("prior_by") ?? "uniform" {
        case "uniform":
            return [:]
        case "price":
            guard let costs = context.candidateCosts else {
                throw PluginError(
                    "prior_by: price needs every candidate priced; add them to the config's models: catalogue (docs/CONFIG.md), or use prior_by: uniform"
                )
            }
            let logs = costs.map { log(max($0, 1e-12)) }
            let (low, high) = (logs.min()!, logs.max()!)
            guard high > low else { return [:] }
            return Dictionary(
                uniqueKeysWithValues: zip(context.candidates, logs.map { spread * (2 * ($0 - low) / (high - low) - 1) }))
        case let other:
            throw PluginError("prior_by must be 'uniform' or 'price', not '\(other)'")
        }
    }

    func learn(_ outcomes: [LearnedOutcome]) throws {
        guard let learnedFile else { throw PluginError("this router was given no state folder to learn in") }
        // Fold into a copy; scoring keeps reading the published state until the swap.
        var learned = published.withLock { $0.learned }
        for outcome in outcomes {
            guard let embedding = outcome.embedding else { throw PluginError("an outcome arrived without its prompt's embedding") }
            let value: LearnedRanking.Outcome =
                switch outcome.value {
                case .pairwise(let against, let score): .pairwise(against: candidates[against], score: score)
                case .pointwise(let quality): .pointwise(quality)
                }
            try learned.fold(prompt: outcome.prompt, embedding: embedding, model: candidates[outcome.model], outcome: value)
        }
        let dropped = learned.keep(within: maxLearnedBytes)
        if dropped > 0 { host.log(.info, "forgot the \(dropped) oldest learned prompts to stay within max_learned_bytes") }
        let next = Published(ranker: try Self.ranker(index, learned, settings, priorStrengths), learned: learned)
        try learnedFile.save { try learned.write(to: $0) }
        published.withLock { $0 = next }
    }

    func forget() throws {
        try learnedFile?.remove()
        let empty = LearnedRanking(models: index.models, dimension: index.dimension, maxAnchors: learnedAnchors)
        let ranker = try Self.ranker(index, empty, settings, priorStrengths)
        published.withLock { $0 = Published(ranker: ranker, learned: empty) }
    }

    func describe() -> RouterDescription {
        var details: [String: JSONValue] = [
            "index": .string(indexPath), "prompts": .integer(Int64(index.promptCount)), "gamma": .number(ranker.settings.gamma),
            "prior": .number(ranker.settings.prior), "weight_unit": .string(ranker.settings.weightUnit.rawValue), "encoder": .string(encoder),
        ]
        if let neighbors = ranker.settings.neighbors { details["neighbors"] = .integer(Int64(neighbors)) }
        if learnedFile != nil {
            let learned = published.withLock { $0.learned }
            details["learned_prompts"] = .integer(Int64(learned.promptCount))
            details["learned_rows"] = .integer(Int64(learned.anchorCount))
            details["learned_rows_limit"] = .integer(Int64(learnedAnchors))
            details["learned_wins"] = .integer(Int64(learned.winCount))
            details["learned_events"] = .integer(Int64(learned.events))
            details["learned_bytes"] = .integer(Int64(learned.bytes))
            details["learned_bytes_limit"] = .integer(Int64(maxLearnedBytes))
        }
        return RouterDescription(
            scoreQuantiles: quantiles, models: ranker.index.models, embeddingDimension: ranker.index.dimension,
            quality: QualityScale(meaning: qualityMeaning), details: details)
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(SimilarityWeightedRouter.self, hostABI: hostABI, into: out, size: size)
}
