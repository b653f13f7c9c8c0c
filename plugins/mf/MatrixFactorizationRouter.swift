import CRouterPlugin
import Foundation
import MatrixFactorization
import RouterJSON
import RouterPluginKit
import RouterVocabulary
import SafeTensors

/// RouteLLM's matrix-factorisation router (see ``MFModel`` for the model and its file).
///
/// For the configured pair the model reduces to one direction u, computed at
/// create, so a decision is σ(uᵀ e) on the prompt embedding. Any pair of the
/// models the weights know can be routed.
///
/// With more candidates, each gets δ(m, q) as one dot product, and its quality is
/// its win rate against the other candidates (``QualityScale/winRates(strengths:)``).
final class MatrixFactorizationRouter: QualityPredictingRouter {
    static let name = "mf"
    static let version = "1.1.0"

    private let direction: [Float]
    /// δ(m, ·) as a direction in embedding space, per candidate.
    private let candidateDirections: [[Float]]
    private let weightsPath: String
    private let models: [String]
    private let strong: String
    private let weak: String
    private let encoder: String
    /// Score quantiles over the training prompts, when the weights were calibrated for this pair.
    private let quantiles: [Double]?

    init(context: PluginContext) throws {
        let (weights, file, path) = try context.loadWeights(
            parameter: "weights", plugin: "mf", decode: MFModel.init(file:), dimension: \.embeddingDimension)
        let pairIndices = try context.strongAndWeak(in: weights.models, source: path)
        direction = weights.direction(a: pairIndices.strong, b: pairIndices.weak)
        candidateDirections = weights.scoreDirections(rows: try context.candidateIndices(in: weights.models, source: path))
        weightsPath = path
        models = weights.models
        strong = context.strongModel
        weak = context.weakModel
        encoder = file.metadata[MetadataKey.encoder] ?? "unknown"
        quantiles = file.scoreQuantiles(forPair: [context.strongModel, context.weakModel])
    }

    func score(_ prompt: Prompt) throws -> Double {
        guard let embedding = prompt.embedding, embedding.count == direction.count else {
            throw PluginError("no prompt embedding arrived; the mf router needs an encoder")
        }
        return MFModel.winProbability(direction: direction, embedding: embedding)
    }

    func qualities(_ prompt: Prompt) throws -> [Double] {
        guard let embedding = prompt.embedding, embedding.count == direction.count else {
            throw PluginError("no prompt embedding arrived; the mf router needs an encoder")
        }
        return QualityScale.winRates(strengths: MFModel.scores(directions: candidateDirections, embedding: embedding))
    }

    func describe() -> RouterDescription {
        RouterDescription(
            scoreQuantiles: quantiles, models: models, embeddingDimension: direction.count, quality: .winRate,
            details: ["weights": .string(weightsPath), "strong": .string(strong), "weak": .string(weak), "encoder": .string(encoder)])
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(MatrixFactorizationRouter.self, hostABI: hostABI, into: out, size: size)
}
