import CRouterPlugin
import Foundation
import RouterJSON
import RouterPluginKit
import SafeTensors
import SimilarityRanking

/// RouteLLM's similarity-weighted (SW) ranking router, over an index built by
/// `routerctl train sw_ranking` (see ``SimilarityRanker`` for the method).
///
/// With more candidates, one similarity-weighted Bradley–Terry fit gives every
/// model's strength, and each candidate's quality is its win rate against the others.
final class SimilarityWeightedRouter: QualityPredictingRouter {
    static let name = "sw_ranking"
    static let version = "1.2.0"

    private let ranker: SimilarityRanker
    private let strong: Int
    private let weak: Int
    /// The candidates' rows in the index.
    private let candidates: [Int]
    private let indexPath: String
    private let encoder: String
    private let quantiles: [Double]?

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
        let (index, file, path) = try context.loadWeights(
            parameter: "index", plugin: "sw_ranking", decode: RankingIndex.init(file:), dimension: \.dimension)
        encoder = file.metadata["encoder"] ?? "unknown"
        (strong, weak) = try context.strongAndWeak(in: index.models, source: path)
        candidates = try context.candidateIndices(in: index.models, source: path)
        ranker = SimilarityRanker(index: index, settings: settings)
        indexPath = path
        // The stored quantiles hold for the pair and settings they were computed with.
        quantiles =
            file.metadata[RankingSettings.metadataKey].flatMap(RankingSettings.decodeStored) == settings
            ? file.scoreQuantiles(forPair: [context.strongModel, context.weakModel]) : nil
    }

    func score(_ prompt: Prompt) throws -> Double {
        guard let embedding = prompt.embedding, embedding.count == ranker.index.dimension else {
            throw PluginError("no prompt embedding arrived; the sw_ranking router needs an encoder")
        }
        return ranker.winProbability(embedding: embedding, strong: strong, weak: weak)
    }

    func qualities(_ prompt: Prompt) throws -> [Double] {
        guard let embedding = prompt.embedding, embedding.count == ranker.index.dimension else {
            throw PluginError("no prompt embedding arrived; the sw_ranking router needs an encoder")
        }
        let strengths = ranker.ratings(embedding: embedding)
        return QualityScale.winRates(strengths: candidates.map { strengths[$0] })
    }

    func describe() -> RouterDescription {
        var details: [String: JSONValue] = [
            "index": .string(indexPath), "prompts": .integer(Int64(ranker.index.promptCount)), "gamma": .number(ranker.settings.gamma),
            "prior": .number(ranker.settings.prior), "weight_unit": .string(ranker.settings.weightUnit.rawValue), "encoder": .string(encoder),
        ]
        if let neighbors = ranker.settings.neighbors { details["neighbors"] = .integer(Int64(neighbors)) }
        return RouterDescription(
            scoreQuantiles: quantiles, models: ranker.index.models, embeddingDimension: ranker.index.dimension, quality: .winRate, details: details)
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(SimilarityWeightedRouter.self, hostABI: hostABI, into: out, size: size)
}
