import CRouterPlugin
import Foundation
import RouterPluginKit
import SafeTensors

/// RouteLLM's matrix-factorisation router.
///
/// δ(m, q) = w₂ᵀ(v̂_m ⊙ W₁ e_q), with v̂_m model m's learned vector after L2
/// normalisation and e_q the prompt embedding; P(strong wins) =
/// σ(δ(strong) − δ(weak)). For a fixed pair this is σ(uᵀ e_q) with
/// u = W₁ᵀ (w₂ ⊙ (v̂_strong − v̂_weak)), computed once at create, so a decision
/// is one dot product with the prompt embedding.
///
/// The weights file (safetensors) holds `P` [models × d], `W1` [d × e] and
/// `w2` [d], with metadata naming the models (`models`, a JSON list), the
/// encoder and its dimension. Any pair of the models it knows can be routed.
final class MatrixFactorizationRouter: RouterPlugin {
    static let name = "mf"
    static let version = "1.0.0"

    private let direction: [Float]
    private let weightsPath: String
    private let models: [String]
    private let strong: String
    private let weak: String
    private let encoder: String
    /// Score quantiles over the training prompts, when the weights were calibrated for this pair.
    private let quantiles: [Double]?

    init(context: PluginContext) throws {
        let (weights, file, path) = try context.loadWeights(
            parameter: "weights", plugin: "mf", decode: MFWeights.init(file:), dimension: \.embeddingDimension)
        let pairIndices = try context.strongAndWeak(in: weights.models, source: path)
        direction = weights.direction(strong: pairIndices.strong, weak: pairIndices.weak)
        weightsPath = path
        models = weights.models
        strong = context.strongModel
        weak = context.weakModel
        encoder = weights.encoder
        quantiles =
            file.metadataJSON("quantile_pair", as: [String].self) == [context.strongModel, context.weakModel]
            ? file.metadataJSON("score_quantiles", as: [Double].self) : nil
    }

    func score(_ prompt: Prompt) throws -> Double {
        guard let embedding = prompt.embedding, embedding.count == direction.count else {
            throw PluginError("no prompt embedding arrived; the mf router needs an encoder")
        }
        var logit: Float = 0
        for index in 0..<direction.count { logit += direction[index] * embedding[index] }
        return 1 / (1 + exp(-Double(logit)))
    }

    func describe() -> String? {
        var object: [String: Any] = ["weights": weightsPath, "models": models.count, "strong": strong, "weak": weak, "encoder": encoder]
        if let quantiles { object["score_quantiles"] = quantiles }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// The tensors and metadata of an MF weights file, validated.
struct MFWeights {
    let models: [String]
    let encoder: String
    let embeddingDimension: Int
    let dimension: Int
    /// [models × dimension], rows L2-normalised at load.
    let modelVectors: [Float]
    /// [dimension × embeddingDimension]
    let projection: [Float]
    /// [dimension]
    let classifier: [Float]

    init(file: SafeTensorsFile) throws {
        func fail(_ message: String) -> PluginError { PluginError("\(file.path): \(message)") }
        guard let models = file.metadataJSON("models", as: [String].self), !models.isEmpty
        else { throw fail("metadata 'models' must be a JSON list of model names; is this an mf weights file?") }
        guard let p = file.tensors["P"], p.shape.count == 2, p.shape[0] == models.count else {
            throw fail("tensor 'P' must have shape [\(models.count) models, d]")
        }
        let dimension = p.shape[1]
        guard let w1 = file.tensors["W1"], w1.shape.count == 2, w1.shape[0] == dimension else {
            throw fail("tensor 'W1' must have shape [\(dimension), embedding dimension]")
        }
        do {
            var vectors = try file.floats("P")
            let projection = try file.floats("W1")
            let classifier = try file.floats("w2", shape: [dimension])
            for (name, values) in [("P", vectors), ("W1", projection), ("w2", classifier)] where values.contains(where: { !$0.isFinite }) {
                throw fail("tensor '\(name)' contains NaN or infinite values")
            }
            for row in 0..<models.count {
                let slice = row * dimension..<(row + 1) * dimension
                let norm = vectors[slice].reduce(0) { $0 + $1 * $1 }.squareRoot()
                guard norm > 0 else { throw fail("model '\(models[row])' has a zero vector in 'P'") }
                for index in slice { vectors[index] /= norm }
            }
            self.modelVectors = vectors
            self.projection = projection
            self.classifier = classifier
        } catch let error as SafeTensorsError {
            throw PluginError("\(error)")
        }
        self.models = models
        self.dimension = dimension
        self.embeddingDimension = w1.shape[1]
        self.encoder = file.metadata["encoder"] ?? "unknown"
        if let declared = file.metadata["embedding_dim"].flatMap(Int.init), declared != w1.shape[1] {
            throw fail("metadata says embedding_dim \(declared) but 'W1' is [\(dimension), \(w1.shape[1])]")
        }
    }

    /// u = W1ᵀ (w2 ⊙ (v̂_strong − v̂_weak)), so that δ(strong) − δ(weak) = uᵀ e.
    func direction(strong: Int, weak: Int) -> [Float] {
        var u = [Float](repeating: 0, count: embeddingDimension)
        for k in 0..<dimension {
            let coefficient = classifier[k] * (modelVectors[strong * dimension + k] - modelVectors[weak * dimension + k])
            if coefficient == 0 { continue }
            for j in 0..<embeddingDimension { u[j] += coefficient * projection[k * embeddingDimension + j] }
        }
        return u
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(MatrixFactorizationRouter.self, hostABI: hostABI, into: out, size: size)
}
