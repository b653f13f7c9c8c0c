import CRouterPlugin
import Foundation
import RouterJSON
import RouterPluginKit
import SafeTensors
import SimilarityRanking

/// RouteLLM's similarity-weighted (SW) ranking router, over an index built by
/// `routerctl train sw_ranking` (see ``SimilarityRanker`` for the method).
final class SimilarityWeightedRouter: RouterPlugin {
    static let name = "sw_ranking"
    static let version = "1.1.0"

    private let ranker: SimilarityRanker
    private let strong: Int
    private let weak: Int
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

    func describe() -> RouterDescription {
        var details: [String: JSONValue] = [
            "index": .string(indexPath), "prompts": .integer(Int64(ranker.index.promptCount)), "gamma": .number(ranker.settings.gamma),
            "prior": .number(ranker.settings.prior), "weight_unit": .string(ranker.settings.weightUnit.rawValue), "encoder": .string(encoder),
        ]
        if let neighbors = ranker.settings.neighbors { details["neighbors"] = .integer(Int64(neighbors)) }
        return RouterDescription(
            scoreQuantiles: quantiles, models: ranker.index.models, embeddingDimension: ranker.index.dimension, details: details)
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(SimilarityWeightedRouter.self, hostABI: hostABI, into: out, size: size)
}
