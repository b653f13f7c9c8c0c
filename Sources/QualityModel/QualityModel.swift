import CBLAS
import Foundation
import PromptFeatures
import RouterVocabulary
import SafeTensors

/// A problem with a quality-model weights file, naming the file.
public struct QualityModelError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Per-model quality from a prompt: P(model m answers well) = σ(z_m), one output per model,
/// all reading one shared input. The classifier router's model for many candidates, shared by
/// `routerctl train classifier --quality` and the `classifier` plugin.
///
/// The input is the prompt embedding followed by its ``PromptFeatures``, standardised with the
/// training prompts' mean and scale. Either logistic regression per model (z = W₂ x + b₂) or
/// one shared hidden layer (z = W₂ relu(W₁ x + b₁) + b₂), which lets models share what makes
/// a prompt hard. On disk, a safetensors file with `W2` [models × k], `b2` [models],
/// `feature_mean` and `feature_scale` [features], and for the MLP `W1` [hidden × inputs],
/// `b1` [hidden]; metadata `format` = `llm-router.quality/1`, `models`, `features` (names, in
/// order), `embedding_dim`, `encoder`.
public struct QualityModel: Sendable {
    public static let format = "llm-router.quality/1"

    public var models: [String]
    public let embeddingDimension: Int
    /// The feature names in input order; empty when the model reads the embedding alone.
    public let features: [String]
    public var featureMean: [Float]
    public var featureScale: [Float]
    /// Hidden units; 0 for logistic regression per model.
    public let hidden: Int
    public var w1: [Float]
    public var b1: [Float]
    /// [models × (hidden or inputs)]
    public var w2: [Float]
    public var b2: [Float]

    public init(
        models: [String], embeddingDimension: Int, features: [String], featureMean: [Float], featureScale: [Float], hidden: Int, w1: [Float],
        b1: [Float], w2: [Float], b2: [Float]
    ) {
        self.models = models
        self.embeddingDimension = embeddingDimension
        self.features = features
        self.featureMean = featureMean
        self.featureScale = featureScale
        self.hidden = hidden
        self.w1 = w1
        self.b1 = b1
        self.w2 = w2
        self.b2 = b2
    }

    /// Embedding plus features.
    public var inputCount: Int { embeddingDimension + features.count }
    /// What the output layer reads: the hidden layer, or the inputs.
    public var width: Int { hidden > 0 ? hidden : inputCount }

    /// The input vector of a prompt: its embedding, then its standardised features.
    public func input(embedding: some Collection<Float>, text: String) -> [Float] {
        var x = Array(embedding)
        if !features.isEmpty {
            let values = PromptFeatures.values(text)
            for index in features.indices { x.append((values[index] - featureMean[index]) / featureScale[index]) }
        }
        return x
    }

    /// This model with only the outputs `rows` (indices into ``models``), in that order: what a
    /// router keeps for its candidates, so a decision computes no other model's output.
    public func selecting(rows: [Int]) -> QualityModel {
        let k = width
        var copy = self
        copy.models = rows.map { models[$0] }
        copy.w2 = rows.flatMap { w2[$0 * k..<($0 + 1) * k] }
        copy.b2 = rows.map { b2[$0] }
        return copy
    }

    /// z_m for every model on one input: one matrix–vector product (two with the hidden layer).
    public func logits(input x: [Float]) -> [Double] {
        precondition(x.count == inputCount)
        var h = x
        if hidden > 0 {
            h = b1
            w1.withUnsafeBufferPointer { w in
                h.withUnsafeMutableBufferPointer { out in
                    cblas_sgemv(
                        CblasRowMajor, CblasNoTrans, Int32(hidden), Int32(inputCount), 1, w.baseAddress, Int32(inputCount), x, 1, 1, out.baseAddress,
                        1)
                }
            }
            for index in h.indices where h[index] < 0 { h[index] = 0 }
        }
        var z = b2
        w2.withUnsafeBufferPointer { w in
            z.withUnsafeMutableBufferPointer { out in
                cblas_sgemv(
                    CblasRowMajor, CblasNoTrans, Int32(models.count), Int32(width), 1, w.baseAddress, Int32(width), h, 1, 1, out.baseAddress, 1)
            }
        }
        return z.map(Double.init)
    }

    /// P(good answer) for every model on one input.
    public func probabilities(input x: [Float]) -> [Double] {
        logits(input: x).map { 1 / (1 + exp(-$0)) }
    }

    /// P(a beats b) from two logits, σ(z_a − z_b): the Bradley–Terry reading the pairwise loss trains,
    /// and, for pointwise-trained outputs, a ranking of prompts by how much likelier a is to be right.
    /// What a threshold policy compares for a strong/weak pair.
    public static func pairScore(_ a: Double, _ b: Double) -> Double {
        1 / (1 + exp(b - a))
    }

    // MARK: The file format

    /// Reads and validates a weights file.
    public init(file: SafeTensorsFile) throws(QualityModelError) {
        func fail(_ message: String) -> QualityModelError { QualityModelError("\(file.path): \(message)") }
        guard file.metadata[MetadataKey.format] == Self.format else {
            throw fail(
                "not a quality-model weights file (metadata 'format' is \(file.metadata[MetadataKey.format].map { "'\($0)'" } ?? "missing"), expected '\(Self.format)')"
            )
        }
        guard let models = file.metadataJSON(MetadataKey.models, as: [String].self), !models.isEmpty else {
            throw fail("metadata '\(MetadataKey.models)' must be a JSON list of model names")
        }
        let features = file.metadataJSON("features", as: [String].self) ?? []
        guard features.allSatisfy(PromptFeatures.names.contains), features == Array(PromptFeatures.names.prefix(features.count)) else {
            throw fail(
                "metadata 'features' \(features) is not a prefix of this build's prompt features \(PromptFeatures.names); retrain with this routerctl"
            )
        }
        guard let out = file.tensors["W2"], out.shape.count == 2, out.shape[0] == models.count else {
            throw fail("tensor 'W2' must have shape [\(models.count) models, width]")
        }
        let hidden = file.tensors["W1"]?.shape.first ?? 0
        let inputs = hidden > 0 ? (file.tensors["W1"]!.shape.last ?? 0) : out.shape[1]
        let embeddingDimension = inputs - features.count
        guard embeddingDimension > 0, hidden == 0 || out.shape[1] == hidden else {
            throw fail("tensors 'W1' and 'W2' do not fit together and the \(features.count) features")
        }
        if let declared = file.metadata[MetadataKey.embeddingDimension].flatMap(Int.init), declared != embeddingDimension {
            throw fail("metadata says embedding_dim \(declared) but the tensors take \(embeddingDimension)-d embeddings")
        }
        do {
            self.init(
                models: models, embeddingDimension: embeddingDimension, features: features,
                featureMean: features.isEmpty ? [] : try file.floats("feature_mean", shape: [features.count]),
                featureScale: features.isEmpty ? [] : try file.floats("feature_scale", shape: [features.count]), hidden: hidden,
                w1: hidden > 0 ? try file.floats("W1", shape: [hidden, inputs]) : [], b1: hidden > 0 ? try file.floats("b1", shape: [hidden]) : [],
                w2: try file.floats("W2"), b2: try file.floats("b2", shape: [models.count]))
        } catch {
            throw QualityModelError("\(error)")
        }
        for (name, values) in [("W1", w1), ("b1", b1), ("W2", w2), ("b2", b2), ("feature_mean", featureMean), ("feature_scale", featureScale)]
        where values.contains(where: { !$0.isFinite }) {
            throw fail("tensor '\(name)' contains NaN or infinite values")
        }
        if featureScale.contains(where: { $0 <= 0 }) { throw fail("tensor 'feature_scale' must be positive") }
    }

    /// Writes the weights atomically, with `metadata` beside the format's own.
    public func write(to path: String, metadata extra: [String: String]) throws {
        var metadata = extra
        metadata[MetadataKey.format] = Self.format
        metadata[MetadataKey.models] = String(decoding: try JSONEncoder().encode(models), as: UTF8.self)
        metadata["features"] = String(decoding: try JSONEncoder().encode(features), as: UTF8.self)
        metadata[MetadataKey.embeddingDimension] = String(embeddingDimension)
        var tensors: [SafeTensorsWriter.Tensor] = [
            .init(name: "W2", shape: [models.count, width], values: w2), .init(name: "b2", shape: [models.count], values: b2),
        ]
        if !features.isEmpty {
            tensors += [
                .init(name: "feature_mean", shape: [features.count], values: featureMean),
                .init(name: "feature_scale", shape: [features.count], values: featureScale),
            ]
        }
        if hidden > 0 {
            tensors += [.init(name: "W1", shape: [hidden, inputCount], values: w1), .init(name: "b1", shape: [hidden], values: b1)]
        }
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: path)
    }
}
