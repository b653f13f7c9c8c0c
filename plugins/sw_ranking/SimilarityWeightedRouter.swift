import CRouterPlugin
import Foundation
import RouterPluginKit
import SafeTensors
import SimilarityRanking

/// RouteLLM's similarity-weighted (SW) ranking router, over an index built by
/// `routerctl train sw_ranking` (see ``SimilarityRanker`` for the method).
final class SimilarityWeightedRouter: RouterPlugin {
    static let name = "sw_ranking"
    static let version = "1.0.0"

    private let ranker: SimilarityRanker
    private let strong: Int
    private let weak: Int
    private let indexPath: String
    private let encoder: String
    private let quantiles: [Double]?

    init(context: PluginContext) throws {
        guard let path = context.params.string("index") else { throw PluginError("missing parameter 'index'") }
        let gamma = context.params.double("gamma") ?? 10
        let prior = context.params.double("prior") ?? 1
        let neighbors = context.params.int("neighbors")
        guard gamma >= 1, gamma.isFinite else { throw PluginError("gamma must be a number of at least 1 (RouteLLM uses 10), not \(gamma)") }
        if let neighbors, neighbors < 1 { throw PluginError("neighbors must be at least 1, not \(neighbors); leave it out to count every prompt") }
        guard prior > 0, prior.isFinite else { throw PluginError("prior must be a positive number, not \(prior)") }
        let index: RankingIndex
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(path: path)
            index = try RankingIndex(file: file)
        } catch {
            throw PluginError("\(error)")
        }
        let dimension = try context.requireEncoder(plugin: "sw_ranking")
        encoder = file.metadata["encoder"] ?? "unknown"
        guard index.dimension == dimension else {
            throw PluginError(
                "\(path) was built from \(index.dimension)-d embeddings (encoder '\(encoder)'), but this router's encoder gives \(dimension)-d")
        }
        (strong, weak) = try context.strongAndWeak(in: index.models, source: path)
        ranker = SimilarityRanker(index: index, gamma: gamma, prior: prior, neighbors: neighbors)
        indexPath = path
        // The stored quantiles hold for the pair and settings they were computed with.
        quantiles =
            file.metadataJSON("quantile_pair", as: [String].self) == [context.strongModel, context.weakModel]
                && file.metadataJSON("quantile_settings", as: [Double].self)
                    == SimilarityRanker.settings(gamma: gamma, prior: prior, neighbors: neighbors)
            ? file.metadataJSON("score_quantiles", as: [Double].self) : nil
    }

    func score(_ prompt: Prompt) throws -> Double {
        guard let embedding = prompt.embedding, embedding.count == ranker.index.dimension else {
            throw PluginError("no prompt embedding arrived; the sw_ranking router needs an encoder")
        }
        return ranker.winProbability(embedding: embedding, strong: strong, weak: weak)
    }

    func describe() -> String? {
        var object: [String: Any] = [
            "index": indexPath, "models": ranker.index.models.count, "prompts": ranker.index.promptCount, "gamma": ranker.gamma,
            "prior": ranker.prior, "encoder": encoder,
        ]
        if let neighbors = ranker.neighbors { object["neighbors"] = neighbors }
        if let quantiles { object["score_quantiles"] = quantiles }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) }
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(SimilarityWeightedRouter.self, hostABI: hostABI, into: out, size: size)
}
