import CRouterPlugin
import ClassifierHead
import Foundation
import QualityModel
import RouterJSON
import RouterPluginKit
import RouterVocabulary
import SafeTensors

/// The classifier router: RouteLLM's BERT role, played by a head on the frozen shared
/// embedding. Its weights are one of two kinds:
///
/// - ``ClassifierHead`` (`routerctl train classifier`): a 3-way head that learned whether the
///   stronger model of a battle wins. It classifies the prompt, not the pair, so any strong/weak
///   pair may be configured, and its score quantiles hold for all; two candidates only.
/// - ``QualityModel`` (`routerctl train quality`): P(good answer) for every model it was trained
///   on, from the embedding and the prompt's features, so it routes among many candidates; for a
///   strong/weak pair its score is σ(z_strong − z_weak), as its pairwise loss reads it.
final class ClassifierRouter: QualityPredictingRouter {
    static let name = "classifier"
    static let version = "2.0.0"

    private enum Weights {
        case head(ClassifierHead)
        /// The model cut down to the candidates' outputs, and the strong and weak model's positions among them.
        case quality(QualityModel, strong: Int, weak: Int)
    }

    private let weights: Weights
    private let weightsPath: String
    private let encoder: String
    private let quantiles: [Double]?
    private let embeddingDimension: Int

    init(context: PluginContext) throws {
        guard let path = context.params.string("weights") else { throw PluginError("the classifier router needs its 'weights' parameter") }
        let format = (try? SafeTensorsFile(path: path))?.metadata[MetadataKey.format]
        if format == QualityModel.format {
            let (model, file, path) = try context.loadWeights(
                parameter: "weights", plugin: "classifier", decode: QualityModel.init(file:), dimension: \.embeddingDimension)
            let rows = try context.candidateIndices(in: model.models, source: path)
            // The host names the strong and weak model among the candidates.
            let candidates = model.selecting(rows: rows)
            let pair = try context.strongAndWeak(in: candidates.models, source: path)
            weights = .quality(candidates, strong: pair.strong, weak: pair.weak)
            embeddingDimension = model.embeddingDimension
            encoder = file.metadata[MetadataKey.encoder] ?? "unknown"
            quantiles = file.scoreQuantiles(forPair: [context.strongModel, context.weakModel])
            weightsPath = path
        } else {
            let (head, file, path) = try context.loadWeights(
                parameter: "weights", plugin: "classifier", decode: ClassifierHead.init(file:), dimension: \.embeddingDimension)
            guard context.candidates.count == 2 else {
                throw PluginError(
                    "\(path) is a strong/weak classifier (\(ClassifierHead.format)), which routes between two candidates, and the router names \(context.candidates.count); train per-model quality with `routerctl train quality`"
                )
            }
            weights = .head(head)
            embeddingDimension = head.embeddingDimension
            encoder = file.metadata[MetadataKey.encoder] ?? "unknown"
            quantiles = file.scoreQuantiles(forPair: nil)
            weightsPath = path
        }
    }

    private func embedding(_ prompt: Prompt) throws -> UnsafeBufferPointer<Float> {
        guard let embedding = prompt.embedding, embedding.count == embeddingDimension else {
            throw PluginError("no prompt embedding arrived; the classifier router needs an encoder")
        }
        return embedding
    }

    func score(_ prompt: Prompt) throws -> Double {
        let embedding = try embedding(prompt)
        switch weights {
        case .head(let head):
            return head.strongWinProbability(embedding)
        case .quality(let model, let strong, let weak):
            let z = model.logits(input: model.input(embedding: embedding, text: prompt.text))
            return QualityModel.pairScore(z[strong], z[weak])
        }
    }

    func qualities(_ prompt: Prompt) throws -> [Double] {
        switch weights {
        case .head:
            let p = try score(prompt)
            return [p, 1 - p]
        case .quality(let model, _, _):
            return model.probabilities(input: model.input(embedding: try embedding(prompt), text: prompt.text))
        }
    }

    func describe() -> RouterDescription {
        switch weights {
        case .head(let head):
            return RouterDescription(
                scoreQuantiles: quantiles, embeddingDimension: head.embeddingDimension, quality: .winRate,
                details: [
                    "weights": .string(weightsPath), "hidden": .integer(Int64(head.hidden)), "encoder": .string(encoder),
                    "classes": .array(ClassifierHead.classes.map(JSONValue.string)),
                ])
        case .quality(let model, _, _):
            return RouterDescription(
                scoreQuantiles: quantiles, models: model.models, embeddingDimension: model.embeddingDimension,
                quality: QualityScale(meaning: .probability),
                details: [
                    "weights": .string(weightsPath), "hidden": .integer(Int64(model.hidden)), "encoder": .string(encoder),
                    "features": .array(model.features.map(JSONValue.string)),
                ])
        }
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(ClassifierRouter.self, hostABI: hostABI, into: out, size: size)
}
