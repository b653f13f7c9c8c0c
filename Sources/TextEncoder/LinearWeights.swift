import CBLAS
import CPackedLinear
import RouterVocabulary

extension EncoderPrecision {
    var packed: pl_precision {
        switch self {
        case .fp32: PL_FP32
        case .int8: PL_INT8
        case .bf16: PL_BF16
        }
    }

    /// Why this CPU cannot run the precision, or nil if it can.
    public var unsupportedReason: String? {
        var why = [CChar](repeating: 0, count: 256)
        if pl_supports(packed, &why, why.count) != 0 { return nil }
        return cString(why)
    }

    /// oneDNN's best instruction set here ("avx2", "avx512_core_bf16", ...), chosen at run time.
    public static var cpuInstructionSet: String { String(cString: pl_cpu_isa()) }
}

/// One linear layer's weight, [inputs × outputs], held the way its kernel wants it.
final class LinearWeights: @unchecked Sendable {
    // Immutable after init; oneDNN's primitive may be executed from several threads at once.
    let inputs: Int
    let outputs: Int
    private let plain: [Float]
    private let packed: OpaquePointer?

    /// `weight` is [inputs × outputs] row-major (PyTorch's Linear weight, transposed). For int8,
    /// `inputRange` is the largest |value| each input channel took on calibration texts.
    init(_ weight: [Float], inputs: Int, outputs: Int, kernel: LinearKernel, precision: EncoderPrecision, inputRange: [Float]? = nil)
        throws(EncoderError)
    {
        self.inputs = inputs
        self.outputs = outputs
        switch kernel {
        case .openblas:
            if let refusal = LinearKernel.openblas.refusal(of: precision) { throw EncoderError(refusal) }
            plain = weight
            packed = nil
        case .onednn:
            var message = [CChar](repeating: 0, count: 256)
            let handle = inputRange.withOptionalPointer { range in
                pl_create(weight, Int32(inputs), Int32(outputs), precision.packed, range, &message, message.count)
            }
            guard let handle else { throw EncoderError("\(cString(message)); set the encoder's kernel to openblas or its precision to fp32") }
            plain = []
            packed = handle
        }
    }

    deinit { if let packed { pl_destroy(packed) } }

    var kernel: LinearKernel { packed == nil ? .openblas : .onednn }

    /// oneDNN's name for its implementation, or "openblas sgemm".
    var implementation: String { packed.map { String(cString: pl_implementation($0)) } ?? "openblas sgemm" }

    /// Bytes the weights take in their packed form.
    var bytes: Int { packed.map { Int(pl_weight_bytes($0)) } ?? plain.count * MemoryLayout<Float>.size }

    /// output[rows × outputs] = input[rows × inputs] · weight.
    func apply(_ input: UnsafePointer<Float>, rows: Int, into output: UnsafeMutablePointer<Float>) {
        if let packed {
            let status = pl_apply(packed, input, Int32(rows), output)
            // Only an allocation failure inside oneDNN gets here; an embedding must not be wrong.
            precondition(status == 0, "oneDNN matmul failed with status \(status)")
            return
        }
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(outputs), Int32(inputs), 1, input, Int32(inputs), plain,
            Int32(outputs), 0, output, Int32(outputs))
    }
}

/// The text of a NUL-terminated buffer.
private func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension Optional where Wrapped == [Float] {
    fileprivate func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .some(let values): values.withUnsafeBufferPointer { body($0.baseAddress) }
        case .none: body(nil)
        }
    }
}

/// Attention's two products on oneDNN, every head of a text at once (the linear layers' kernel
/// `onednn`); with `openblas` they stay two sgemm calls per head.
final class AttentionProducts: @unchecked Sendable {
    // Immutable after init; the primitives may be executed from several threads at once.
    private let handle: OpaquePointer

    init(heads: Int, headSize: Int, scale: Float) throws(EncoderError) {
        var message = [CChar](repeating: 0, count: 256)
        guard let handle = pl_attention_create(Int32(heads), Int32(headSize), scale, &message, message.count) else {
            throw EncoderError("\(cString(message)); set the encoder's kernel to openblas")
        }
        self.handle = handle
    }

    deinit { pl_attention_destroy(handle) }

    /// context = softmax(scale · Q·Kᵀ)·V for one text's `tokens` rows of QKV; `scores` is scratch of
    /// heads × tokens × tokens.
    func apply(qkv: UnsafePointer<Float>, tokens: Int, scores: UnsafeMutablePointer<Float>, context: UnsafeMutablePointer<Float>) {
        let status = pl_attention_apply(handle, qkv, Int32(tokens), scores, context)
        precondition(status == 0, "oneDNN attention failed with status \(status)")
    }
}
