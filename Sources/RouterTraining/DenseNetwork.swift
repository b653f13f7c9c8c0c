import CBLAS

/// The network both classifier trainers fit: one hidden ReLU layer (or none, a linear layer),
/// on BLAS. The 3-way head and per-model quality differ only in their outputs and loss, so the
/// forward pass and the gradients of a batch live here once.
enum DenseNetwork {
    /// A network's weights, row-major: `w1` [hidden × inputs], `w2` [outputs × (hidden or inputs)].
    struct Weights {
        var inputs: Int
        var hidden: Int
        var outputs: Int
        var w1: [Float]
        var b1: [Float]
        var w2: [Float]
        var b2: [Float]

        /// What the output layer reads: the hidden layer, or the inputs.
        var width: Int { hidden > 0 ? hidden : inputs }
    }

    /// The hidden activations after ReLU (the inputs themselves without a hidden layer) and the
    /// output logits of a batch of `count` rows.
    static func forward(_ weights: Weights, _ x: [Float], count: Int) -> (hidden: [Float], logits: [Float]) {
        let k = weights.width
        var hidden = x
        if weights.hidden > 0 {
            hidden = [Float](repeating: 0, count: count * k)
            for row in 0..<count { for c in 0..<k { hidden[row * k + c] = weights.b1[c] } }
            gemm(transposeA: false, transposeB: true, m: count, n: k, k: weights.inputs, x, weights.w1, into: &hidden, accumulate: true)
            for index in hidden.indices where hidden[index] < 0 { hidden[index] = 0 }
        }
        let m = weights.outputs
        var logits = [Float](repeating: 0, count: count * m)
        for row in 0..<count { for c in 0..<m { logits[row * m + c] = weights.b2[c] } }
        gemm(transposeA: false, transposeB: true, m: count, n: m, k: k, hidden, weights.w2, into: &logits, accumulate: true)
        return (hidden, logits)
    }

    /// The gradients of a batch's loss with respect to every weight, given d(loss)/d(logits)
    /// (`dLogits`, [count × outputs]) and the batch's inputs and hidden activations from ``forward(_:_:count:)``.
    /// `w1`/`b1` are empty without a hidden layer.
    static func gradients(
        _ weights: Weights, dLogits: [Float], inputs x: [Float], hidden: [Float], count: Int
    ) -> (w1: [Float], b1: [Float], w2: [Float], b2: [Float]) {
        let (m, k, h) = (weights.outputs, weights.width, weights.hidden)
        var gW2 = [Float](repeating: 0, count: m * k)
        gemm(transposeA: true, transposeB: false, m: m, n: k, k: count, dLogits, hidden, into: &gW2)
        var gB2 = [Float](repeating: 0, count: m)
        for row in 0..<count { for c in 0..<m { gB2[c] += dLogits[row * m + c] } }
        guard h > 0 else { return ([], [], gW2, gB2) }
        var dHidden = [Float](repeating: 0, count: count * h)
        gemm(transposeA: false, transposeB: false, m: count, n: h, k: m, dLogits, weights.w2, into: &dHidden)
        for index in dHidden.indices where hidden[index] <= 0 { dHidden[index] = 0 }
        var gW1 = [Float](repeating: 0, count: h * weights.inputs)
        gemm(transposeA: true, transposeB: false, m: h, n: weights.inputs, k: count, dHidden, x, into: &gW1)
        var gB1 = [Float](repeating: 0, count: h)
        for row in 0..<count { for c in 0..<h { gB1[c] += dHidden[row * h + c] } }
        return (gW1, gB1, gW2, gB2)
    }

    /// C [m × n] (+)= op(A) op(B), row-major; op transposes when asked.
    static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, _ a: [Float], _ b: [Float], into c: inout [Float], accumulate: Bool = false
    ) {
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a,
            Int32(transposeA ? m : k), b, Int32(transposeB ? k : n), accumulate ? 1 : 0, &c, Int32(n))
    }
}
