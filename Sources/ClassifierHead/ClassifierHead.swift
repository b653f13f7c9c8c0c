import CBLAS
import Foundation
import RouterVocabulary
import SafeTensors

/// A problem with a classifier weights file, naming the file.
public struct ClassifierHeadError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A 3-way classifier on a prompt embedding: the stronger model wins, tie, the
/// weaker model wins. It plays the role of RouteLLM's BERT classifier, with the
/// encoder frozen: P(strong wins) = 1 − P(tie) − P(weak wins).
///
/// Either softmax regression (`hidden` = 0: logits = W₂ e + b₂) or a one-hidden-layer
/// MLP (logits = W₂ relu(W₁ e + b₁) + b₂). On disk, a safetensors file with tensors
/// `W2` [3 × k], `b2` [3] and, for the MLP, `W1` [hidden × e], `b1` [hidden]; metadata
/// `format` = `llm-router.classifier/1`, `encoder`, `embedding_dim`.
public struct ClassifierHead: Sendable {
    public static let format = "llm-router.classifier/1"
    public static let classes = ["strong", "tie", "weak"]

    public let embeddingDimension: Int
    /// Hidden units; 0 for softmax regression.
    public let hidden: Int
    /// [hidden × embeddingDimension], empty when hidden = 0.
    public var w1: [Float]
    public var b1: [Float]
    /// [3 × (hidden or embeddingDimension)]
    public var w2: [Float]
    public var b2: [Float]

    public init(embeddingDimension: Int, hidden: Int, w1: [Float], b1: [Float], w2: [Float], b2: [Float]) {
        self.embeddingDimension = embeddingDimension
        self.hidden = hidden
        self.w1 = w1
        self.b1 = b1
        self.w2 = w2
        self.b2 = b2
    }

    /// The width the output layer reads: the hidden layer's, or the embedding's.
    public var featureCount: Int { hidden > 0 ? hidden : embeddingDimension }

    /// Reads and validates a weights file.
    public init(file: SafeTensorsFile) throws(ClassifierHeadError) {
        func fail(_ message: String) -> ClassifierHeadError { ClassifierHeadError("\(file.path): \(message)") }
        guard file.metadata[MetadataKey.format] == Self.format else {
            throw fail(
                "not a classifier weights file (metadata 'format' is \(file.metadata[MetadataKey.format].map { "'\($0)'" } ?? "missing"), expected '\(Self.format)'); train one with `routerctl train classifier`"
            )
        }
        guard let out = file.tensors["W2"], out.shape.count == 2, out.shape[0] == 3, out.shape[1] > 0 else {
            throw fail("tensor 'W2' must have shape [3, features]")
        }
        let hidden: Int
        let embeddingDimension: Int
        if let first = file.tensors["W1"] {
            guard first.shape.count == 2, first.shape[0] == out.shape[1] else {
                throw fail("tensor 'W1' must have shape [\(out.shape[1]), embedding dimension]")
            }
            hidden = first.shape[0]
            embeddingDimension = first.shape[1]
        } else {
            hidden = 0
            embeddingDimension = out.shape[1]
        }
        if let declared = file.metadata[MetadataKey.embeddingDimension].flatMap(Int.init), declared != embeddingDimension {
            throw fail("metadata says embedding_dim \(declared) but the tensors take \(embeddingDimension)-d embeddings")
        }
        do {
            self.init(
                embeddingDimension: embeddingDimension, hidden: hidden, w1: hidden > 0 ? try file.floats("W1") : [],
                b1: hidden > 0 ? try file.floats("b1", shape: [hidden]) : [], w2: try file.floats("W2"), b2: try file.floats("b2", shape: [3]))
        } catch {
            throw ClassifierHeadError("\(error)")
        }
        for (name, values) in [("W1", w1), ("b1", b1), ("W2", w2), ("b2", b2)] where values.contains(where: { !$0.isFinite }) {
            throw fail("tensor '\(name)' contains NaN or infinite values")
        }
    }

    /// The tensors to write with ``SafeTensorsWriter``.
    public var tensors: [SafeTensorsWriter.Tensor] {
        var tensors: [SafeTensorsWriter.Tensor] = [
            .init(name: "W2", shape: [3, featureCount], values: w2), .init(name: "b2", shape: [3], values: b2),
        ]
        if hidden > 0 {
            tensors += [.init(name: "W1", shape: [hidden, embeddingDimension], values: w1), .init(name: "b1", shape: [hidden], values: b1)]
        }
        return tensors
    }

    /// Class probabilities (strong wins, tie, weak wins) for one embedding.
    public func probabilities(_ embedding: UnsafeBufferPointer<Float>) -> (strong: Double, tie: Double, weak: Double) {
        precondition(embedding.count == embeddingDimension)
        var features = [Float](repeating: 0, count: featureCount)
        if hidden > 0 {
            features = b1
            w1.withUnsafeBufferPointer { w in
                features.withUnsafeMutableBufferPointer { out in
                    cblas_sgemv(
                        CblasRowMajor, CblasNoTrans, Int32(hidden), Int32(embeddingDimension), 1, w.baseAddress, Int32(embeddingDimension),
                        embedding.baseAddress, 1, 1, out.baseAddress, 1)
                }
            }
            for index in features.indices where features[index] < 0 { features[index] = 0 }
        } else {
            for index in 0..<embeddingDimension { features[index] = embedding[index] }
        }
        var logits = [Double](repeating: 0, count: 3)
        for row in 0..<3 {
            var sum = b2[row]
            for column in 0..<featureCount { sum += w2[row * featureCount + column] * features[column] }
            logits[row] = Double(sum)
        }
        let top = logits.max()!
        let exps = logits.map { exp($0 - top) }
        let total = exps.reduce(0, +)
        return (exps[0] / total, exps[1] / total, exps[2] / total)
    }

    /// P(strong wins) = 1 − P(tie) − P(weak wins), as in RouteLLM.
    public func strongWinProbability(_ embedding: UnsafeBufferPointer<Float>) -> Double {
        let p = probabilities(embedding)
        return max(0, min(1, 1 - p.tie - p.weak))
    }
}
