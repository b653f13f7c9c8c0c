import Foundation
import RouterVocabulary
import SafeTensors

/// A problem with an MF weights file, naming the file.
public struct MFWeightsError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// RouteLLM's matrix-factorisation model: its weights, their file format and
/// its maths, shared by `routerctl train mf` and the `mf` plugin.
///
/// δ(m, q) = w₂ᵀ(v̂_m ⊙ W₁ e_q), with v̂_m model m's learned vector after L2
/// normalisation and e_q the prompt embedding; P(a beats b) = σ(δ(a) − δ(b)).
/// For a fixed pair that is σ(uᵀ e_q) with u = W₁ᵀ (w₂ ⊙ (v̂_a − v̂_b)), so a
/// decision is one dot product with the prompt embedding.
///
/// The file (safetensors) holds `P` [models × d], `W1` [d × e] and `w2` [d],
/// with metadata naming the models (a JSON list), the encoder and its dimension.
public struct MFModel: Sendable {
    /// The metadata `format` of an MF weights file.
    public static let format = "llm-router.mf/1"

    public var models: [String]
    /// The latent dimension d.
    public var dimension: Int
    public var embeddingDimension: Int
    /// [models × dimension], as trained: rows are normalised where they are used.
    public var p: [Float]
    /// [dimension × embeddingDimension]
    public var w1: [Float]
    /// [dimension]
    public var w2: [Float]

    public init(models: [String], dimension: Int, embeddingDimension: Int, p: [Float], w1: [Float], w2: [Float]) {
        self.models = models
        self.dimension = dimension
        self.embeddingDimension = embeddingDimension
        self.p = p
        self.w1 = w1
        self.w2 = w2
    }

    /// Model `row`'s vector, L2-normalised. A zero vector has no direction and stays zero
    /// (it ties with every model); a weights file with one is refused when read.
    public func normalizedRow(_ row: Int) -> [Float] {
        let slice = p[row * dimension..<(row + 1) * dimension]
        let norm = max(slice.reduce(0) { $0 + $1 * $1 }.squareRoot(), .leastNormalMagnitude)
        return slice.map { $0 / norm }
    }

    /// u = W₁ᵀ (w₂ ⊙ (v̂_a − v̂_b)), so that δ(a) − δ(b) = uᵀ e.
    public func direction(a: Int, b: Int) -> [Float] {
        let va = normalizedRow(a)
        let vb = normalizedRow(b)
        var u = [Float](repeating: 0, count: embeddingDimension)
        for k in 0..<dimension {
            let coefficient = w2[k] * (va[k] - vb[k])
            if coefficient == 0 { continue }
            for j in 0..<embeddingDimension { u[j] += coefficient * w1[k * embeddingDimension + j] }
        }
        return u
    }

    /// u_m = W₁ᵀ (w₂ ⊙ v̂_m) for each model row in `rows`, so that δ(m, q) = u_mᵀ e_q:
    /// every candidate's score is one dot product with the prompt embedding.
    public func scoreDirections(rows: [Int]) -> [[Float]] {
        rows.map { row in
            let v = normalizedRow(row)
            var u = [Float](repeating: 0, count: embeddingDimension)
            for k in 0..<dimension {
                let coefficient = w2[k] * v[k]
                if coefficient == 0 { continue }
                for j in 0..<embeddingDimension { u[j] += coefficient * w1[k * embeddingDimension + j] }
            }
            return u
        }
    }

    /// δ(m, q) for each of `directions` (from ``scoreDirections(rows:)``) on a prompt embedding.
    public static func scores(directions: [[Float]], embedding: some Collection<Float>) -> [Double] {
        directions.map { direction in
            var total: Float = 0
            for (weight, value) in zip(direction, embedding) { total += weight * value }
            return Double(total)
        }
    }

    /// σ(uᵀ e): P(a beats b) on a prompt embedding, for a pair's ``direction(a:b:)``.
    public static func winProbability(direction: [Float], embedding: some Collection<Float>) -> Double {
        var logit: Float = 0
        for (weight, value) in zip(direction, embedding) { logit += weight * value }
        return 1 / (1 + exp(-Double(logit)))
    }

    /// P(model a beats model b) for each embedding.
    public func winProbabilities(_ embeddings: [[Float]], a: Int, b: Int) -> [Double] {
        let direction = self.direction(a: a, b: b)
        return embeddings.map { Self.winProbability(direction: direction, embedding: $0) }
    }

    // MARK: The file format

    /// Reads and validates an MF weights file.
    public init(file: SafeTensorsFile) throws(MFWeightsError) {
        func fail(_ message: String) -> MFWeightsError { MFWeightsError("\(file.path): \(message)") }
        guard let models = file.metadataJSON(MetadataKey.models, as: [String].self), !models.isEmpty
        else { throw fail("metadata '\(MetadataKey.models)' must be a JSON list of model names; is this an mf weights file?") }
        guard let p = file.tensors["P"], p.shape.count == 2, p.shape[0] == models.count else {
            throw fail("tensor 'P' must have shape [\(models.count) models, d]")
        }
        let dimension = p.shape[1]
        guard let w1 = file.tensors["W1"], w1.shape.count == 2, w1.shape[0] == dimension else {
            throw fail("tensor 'W1' must have shape [\(dimension), embedding dimension]")
        }
        if let declared = file.metadata[MetadataKey.embeddingDimension].flatMap(Int.init), declared != w1.shape[1] {
            throw fail("metadata says \(MetadataKey.embeddingDimension) \(declared) but 'W1' is [\(dimension), \(w1.shape[1])]")
        }
        do {
            self.init(
                models: models, dimension: dimension, embeddingDimension: w1.shape[1], p: try file.floats("P"), w1: try file.floats("W1"),
                w2: try file.floats("w2", shape: [dimension]))
        } catch {
            throw MFWeightsError("\(error)")
        }
        for (name, values) in [("P", self.p), ("W1", self.w1), ("w2", self.w2)] where values.contains(where: { !$0.isFinite }) {
            throw fail("tensor '\(name)' contains NaN or infinite values")
        }
        if let row = zeroRow { throw fail("model '\(models[row])' has a zero vector in 'P'") }
    }

    /// The first model whose vector is zero, if any.
    private var zeroRow: Int? {
        (0..<models.count).first { row in p[row * dimension..<(row + 1) * dimension].allSatisfy { $0 == 0 } }
    }

    /// Writes the weights atomically, with `metadata` (encoder, calibration, training summary) beside the format's own.
    public func write(to path: String, metadata extra: [String: String]) throws {
        if let row = zeroRow { throw MFWeightsError("model '\(models[row])' has a zero vector; it cannot be routed") }
        var metadata = extra
        metadata[MetadataKey.format] = Self.format
        metadata[MetadataKey.models] = String(decoding: try JSONEncoder().encode(models), as: UTF8.self)
        metadata[MetadataKey.embeddingDimension] = String(embeddingDimension)
        try SafeTensorsWriter.write(
            [
                .init(name: "P", shape: [models.count, dimension], values: p),
                .init(name: "W1", shape: [dimension, embeddingDimension], values: w1),
                .init(name: "w2", shape: [dimension], values: w2),
            ], metadata: metadata, to: path)
    }
}
