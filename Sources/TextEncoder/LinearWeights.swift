import CBLAS
import CPackedLinear

/// Which library runs the encoder's linear layers (the four products per layer that take most of
/// its time). Attention's small per-head products stay on OpenBLAS either way.
public enum LinearKernel: String, Sendable, CaseIterable {
    /// oneDNN's matmul with the weights packed once at load (the default).
    case onednn
    /// OpenBLAS's sgemm, which packs its weight operand again on every call.
    case openblas
}

/// One linear layer's weight, [inputs × outputs], held the way its kernel wants it.
final class LinearWeights: @unchecked Sendable {
    // Immutable after init; oneDNN's primitive may be executed from several threads at once.
    let inputs: Int
    let outputs: Int
    private let plain: [Float]
    private let packed: OpaquePointer?

    /// `weight` is [inputs × outputs] row-major (PyTorch's Linear weight, transposed).
    init(_ weight: [Float], inputs: Int, outputs: Int, kernel: LinearKernel) throws(EncoderError) {
        self.inputs = inputs
        self.outputs = outputs
        switch kernel {
        case .openblas:
            plain = weight
            packed = nil
        case .onednn:
            var message = [CChar](repeating: 0, count: 256)
            guard let handle = pl_create(weight, Int32(inputs), Int32(outputs), &message, message.count) else {
                throw EncoderError(
                    "\(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)); set the encoder's kernel to openblas"
                )
            }
            plain = []
            packed = handle
        }
    }

    deinit { if let packed { pl_destroy(packed) } }

    var kernel: LinearKernel { packed == nil ? .openblas : .onednn }

    /// oneDNN's name for its implementation, or "openblas sgemm".
    var implementation: String { packed.map { String(cString: pl_implementation($0)) } ?? "openblas sgemm" }

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
