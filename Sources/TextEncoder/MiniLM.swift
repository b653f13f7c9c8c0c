import CBLAS
import CEncoderKernels
import Foundation
import RouterVocabulary
import SafeTensors

/// The all-MiniLM-L6-v2 transformer: a 6-layer, 384-wide, 12-head BERT encoder.
///
/// Weights are loaded once and never mutated, so one model serves any number
/// of threads. A batch is packed without padding: the dense layers run on all
/// tokens of all texts as one matrix, and attention runs per text over its own
/// rows, so no compute is spent on pad tokens and no mask is needed.
final class MiniLM: Sendable {
    static let hidden = 384
    static let heads = 12
    static let headSize = 32
    static let intermediate = 1536
    static let layerCount = 6
    static let maxPositions = 512
    static let layerNormEpsilon: Float = 1e-12

    struct Layer: Sendable {
        /// Query, key and value stacked and transposed: [384, 3·384] (in × out), as every weight here.
        let qkvWeight: LinearWeights
        let qkvBias: [Float]
        let outputWeight: LinearWeights
        let outputBias: [Float]
        let attentionNormWeight: [Float]
        let attentionNormBias: [Float]
        let intermediateWeight: LinearWeights
        let intermediateBias: [Float]
        let ffnOutputWeight: LinearWeights
        let ffnOutputBias: [Float]
        let outputNormWeight: [Float]
        let outputNormBias: [Float]
    }

    let vocabularySize: Int
    let wordEmbeddings: [Float]
    let positionEmbeddings: [Float]
    let tokenTypeEmbedding: [Float]
    let embeddingNormWeight: [Float]
    let embeddingNormBias: [Float]
    let layers: [Layer]
    /// Attention's products on oneDNN, or nil for OpenBLAS's per-head sgemm (kernel `openblas`).
    let attention: AttentionProducts?

    /// For each layer, the largest |value| each input channel of its four linear layers (QKV,
    /// attention output, intermediate, FFN output) took: what int8 calibrates on.
    typealias InputRanges = [[[Float]]]

    /// Throws SafeTensorsError for a bad weights file, EncoderError if the kernel refuses the weights.
    /// `inputRanges` (from `inputRanges(of:)` on an fp32 model) calibrates int8.
    init(weights file: SafeTensorsFile, kernel: LinearKernel, precision: EncoderPrecision, inputRanges: InputRanges? = nil) throws {
        let h = Self.hidden
        guard let words = file.tensors["embeddings.word_embeddings.weight"] else {
            throw SafeTensorsError(file: file.path, message: "missing tensor 'embeddings.word_embeddings.weight'; is this a BERT model?")
        }
        guard words.shape.count == 2, words.shape[1] == h else {
            throw SafeTensorsError(
                file: file.path, message: "embeddings.word_embeddings.weight has shape \(words.shape), expected [vocabulary, \(h)]")
        }
        vocabularySize = words.shape[0]
        wordEmbeddings = try file.floats("embeddings.word_embeddings.weight")
        positionEmbeddings = try file.floats("embeddings.position_embeddings.weight", shape: [Self.maxPositions, h])
        tokenTypeEmbedding = Array(try file.floats("embeddings.token_type_embeddings.weight", shape: [2, h])[0..<h])
        embeddingNormWeight = try file.floats("embeddings.LayerNorm.weight", shape: [h])
        embeddingNormBias = try file.floats("embeddings.LayerNorm.bias", shape: [h])
        var layers: [Layer] = []
        for index in 0..<Self.layerCount {
            let prefix = "encoder.layer.\(index)."
            func tensor(_ name: String, _ shape: [Int]) throws(SafeTensorsError) -> [Float] { try file.floats(prefix + name, shape: shape) }
            func linear(_ name: String, inputs: Int, outputs: Int, slot: Int) throws -> LinearWeights {
                try LinearWeights(
                    Self.transposed(try tensor(name, [outputs, inputs]), outputs: outputs, inputs: inputs), inputs: inputs, outputs: outputs,
                    kernel: kernel, precision: precision, inputRange: inputRanges?[index][slot])
            }
            let qkvWeight =
                try tensor("attention.self.query.weight", [h, h]) + tensor("attention.self.key.weight", [h, h])
                + tensor("attention.self.value.weight", [h, h])
            let qkvBias =
                try tensor("attention.self.query.bias", [h]) + tensor("attention.self.key.bias", [h]) + tensor("attention.self.value.bias", [h])
            layers.append(
                Layer(
                    qkvWeight: try LinearWeights(
                        Self.transposed(qkvWeight, outputs: 3 * h, inputs: h), inputs: h, outputs: 3 * h, kernel: kernel,
                        precision: precision, inputRange: inputRanges?[index][0]),
                    qkvBias: qkvBias,
                    outputWeight: try linear("attention.output.dense.weight", inputs: h, outputs: h, slot: 1),
                    outputBias: try tensor("attention.output.dense.bias", [h]),
                    attentionNormWeight: try tensor("attention.output.LayerNorm.weight", [h]),
                    attentionNormBias: try tensor("attention.output.LayerNorm.bias", [h]),
                    intermediateWeight: try linear("intermediate.dense.weight", inputs: h, outputs: Self.intermediate, slot: 2),
                    intermediateBias: try tensor("intermediate.dense.bias", [Self.intermediate]),
                    ffnOutputWeight: try linear("output.dense.weight", inputs: Self.intermediate, outputs: h, slot: 3),
                    ffnOutputBias: try tensor("output.dense.bias", [h]),
                    outputNormWeight: try tensor("output.LayerNorm.weight", [h]),
                    outputNormBias: try tensor("output.LayerNorm.bias", [h])))
        }
        self.layers = layers
        attention =
            kernel == .onednn ? try AttentionProducts(heads: Self.heads, headSize: Self.headSize, scale: 1 / Float(Self.headSize).squareRoot()) : nil
        for (name, values) in [("word embeddings", wordEmbeddings), ("position embeddings", positionEmbeddings)]
        where values.contains(where: { !$0.isFinite }) {
            throw SafeTensorsError(file: file.path, message: "\(name) contain NaN or infinite values")
        }
    }

    /// The largest |value| each input channel of every linear layer takes over `sequences`.
    func inputRanges(of sequences: [[Int32]]) -> InputRanges {
        var ranges: InputRanges = layers.map {
            [$0.qkvWeight, $0.outputWeight, $0.intermediateWeight, $0.ffnOutputWeight].map { [Float](repeating: 0, count: $0.inputs) }
        }
        _ = embed(sequences) { layer, slot, input, columns in
            for (offset, value) in input.enumerated() {
                ranges[layer][slot][offset % columns] = max(ranges[layer][slot][offset % columns], abs(value))
            }
        }
        return ranges
    }

    /// Sentence embeddings (mean-pooled, L2-normalised) of several token sequences, each at most 512 ids.
    /// `observe` sees each linear layer's input: layer, slot (as in `InputRanges`), rows × columns values.
    func embed(_ sequences: [[Int32]], observe: ((Int, Int, UnsafeBufferPointer<Float>, Int) -> Void)? = nil) -> [[Float]] {
        let h = Self.hidden
        let lengths = sequences.map(\.count)
        let rows = lengths.reduce(0, +)
        guard rows > 0 else { return sequences.map { _ in [Float](repeating: 0, count: h) } }
        let offsets = lengths.reduce(into: [0]) { $0.append($0.last! + $1) }
        let maxLength = lengths.max()!

        var x = [Float](repeating: 0, count: rows * h)
        var qkv = [Float](repeating: 0, count: rows * 3 * h)
        var context = [Float](repeating: 0, count: rows * h)
        var projected = [Float](repeating: 0, count: rows * h)
        var inner = [Float](repeating: 0, count: rows * Self.intermediate)
        var scores = [Float](repeating: 0, count: (attention == nil ? 1 : Self.heads) * maxLength * maxLength)

        let ids = sequences.flatMap { $0 }
        let positions = lengths.flatMap { (0..<Int32($0)).map { $0 } }
        x.withUnsafeMutableBufferPointer { x in
            ek_embed(x.baseAddress, ids, positions, rows, h, wordEmbeddings, positionEmbeddings, tokenTypeEmbedding)
            ek_layernorm(x.baseAddress, embeddingNormWeight, embeddingNormBias, rows, h, Self.layerNormEpsilon)
        }

        let scale = 1 / Float(Self.headSize).squareRoot()
        func linear(_ input: [Float], _ weight: LinearWeights, layer: Int, slot: Int, into output: inout [Float]) {
            if let observe {
                input.withUnsafeBufferPointer { observe(layer, slot, UnsafeBufferPointer(rebasing: $0[0..<rows * weight.inputs]), weight.inputs) }
            }
            Self.linear(input, weight, rows: rows, into: &output)
        }
        for (index, layer) in layers.enumerated() {
            // Q, K, V for every token at once.
            linear(x, layer.qkvWeight, layer: index, slot: 0, into: &qkv)
            qkv.withUnsafeMutableBufferPointer { ek_add_bias($0.baseAddress, layer.qkvBias, rows, 3 * h) }
            // Attention, per text and head.
            qkv.withUnsafeBufferPointer { qkv in
                context.withUnsafeMutableBufferPointer { context in
                    scores.withUnsafeMutableBufferPointer { scores in
                        for (index, length) in lengths.enumerated() where length > 0 {
                            let base = offsets[index]
                            if let attention {
                                attention.apply(
                                    qkv: qkv.baseAddress! + base * 3 * h, tokens: length, scores: scores.baseAddress!,
                                    context: context.baseAddress! + base * h)
                                continue
                            }
                            for head in 0..<Self.heads {
                                let q = qkv.baseAddress! + base * 3 * h + head * Self.headSize
                                let k = q + h
                                let v = q + 2 * h
                                let n = Int32(length)
                                cblas_sgemm(
                                    CblasRowMajor, CblasNoTrans, CblasTrans, n, n, Int32(Self.headSize), scale, q, Int32(3 * h), k, Int32(3 * h), 0,
                                    scores.baseAddress, n)
                                ek_softmax_rows(scores.baseAddress, length, length, length)
                                cblas_sgemm(
                                    CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Int32(Self.headSize), n, 1, scores.baseAddress, n, v, Int32(3 * h),
                                    0,
                                    context.baseAddress! + base * h + head * Self.headSize, Int32(h))
                            }
                        }
                    }
                }
            }
            // Output projection, residual, LayerNorm.
            linear(context, layer.outputWeight, layer: index, slot: 1, into: &projected)
            projected.withUnsafeMutableBufferPointer { projected in
                x.withUnsafeBufferPointer { x in
                    ek_bias_residual_layernorm(
                        projected.baseAddress, layer.outputBias, x.baseAddress, layer.attentionNormWeight, layer.attentionNormBias, rows, h,
                        Self.layerNormEpsilon)
                }
            }
            // Feed-forward: 384 → 1536 (GELU) → 384, residual, LayerNorm. The result becomes x.
            linear(projected, layer.intermediateWeight, layer: index, slot: 2, into: &inner)
            inner.withUnsafeMutableBufferPointer { ek_bias_gelu($0.baseAddress, layer.intermediateBias, rows, Self.intermediate) }
            linear(inner, layer.ffnOutputWeight, layer: index, slot: 3, into: &x)
            x.withUnsafeMutableBufferPointer { x in
                projected.withUnsafeBufferPointer { projected in
                    ek_bias_residual_layernorm(
                        x.baseAddress, layer.ffnOutputBias, projected.baseAddress, layer.outputNormWeight, layer.outputNormBias, rows, h,
                        Self.layerNormEpsilon)
                }
            }
        }

        return lengths.indices.map { index in
            [Float](unsafeUninitializedCapacity: h) { out, initialized in
                x.withUnsafeBufferPointer { x in
                    ek_mean_pool_normalize(x.baseAddress! + offsets[index] * h, lengths[index], h, out.baseAddress)
                }
                initialized = h
            }
        }
    }

    /// out[rows × outputs] = input[rows × inputs] · weight[inputs × outputs] (weights are stored transposed at load).
    private static func linear(_ input: [Float], _ weight: LinearWeights, rows: Int, into output: inout [Float]) {
        input.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { output in weight.apply(input.baseAddress!, rows: rows, into: output.baseAddress!) }
        }
    }

    /// PyTorch's Linear weight [outputs × inputs] as [inputs × outputs].
    static func transposed(_ weight: [Float], outputs: Int, inputs: Int) -> [Float] {
        var result = [Float](repeating: 0, count: weight.count)
        for row in 0..<outputs {
            for column in 0..<inputs { result[column * outputs + row] = weight[row * inputs + column] }
        }
        return result
    }
}
