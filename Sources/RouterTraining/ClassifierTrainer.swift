import CBLAS
import ClassifierHead
import Foundation
import StableHash

/// Settings of classifier-head training.
public struct ClassifierTrainingOptions: Sendable {
    /// Hidden units; 0 trains softmax regression.
    public var hidden = 64
    public var epochs = 100
    public var batchSize = 64
    public var learningRate: Float = 1e-3
    public var weightDecay: Float = 1e-5
    /// Standard deviation of the Gaussian noise added to prompt embeddings during training.
    public var noise: Float = 0.01
    /// Epochs without a better validation loss before stopping.
    public var patience = 5
    public var seed: UInt64 = 42

    public init() {}
}

/// One example: a prompt (an index into the embeddings) and its class: 0 the
/// stronger model won, 1 tie, 2 the weaker model won.
public struct ClassifierSample: Sendable {
    public var prompt: Int
    public var label: Int

    public init(prompt: Int, label: Int) {
        self.prompt = prompt
        self.label = label
    }
}

/// Trains a ``ClassifierHead`` with cross-entropy: Gaussian noise on the
/// embeddings, Adam with weight decay, early stopping on the loss of held-out
/// prompts. Matrix products go through BLAS.
public final class ClassifierTrainer {
    public let embeddings: [[Float]]
    public let train: [ClassifierSample]
    public let validation: [ClassifierSample]
    public let options: ClassifierTrainingOptions
    let embeddingDimension: Int

    public init(embeddings: [[Float]], samples: [ClassifierSample], validationPrompts: Set<Int>, options: ClassifierTrainingOptions) {
        self.embeddings = embeddings
        self.train = samples.filter { !validationPrompts.contains($0.prompt) }
        self.validation = samples.filter { validationPrompts.contains($0.prompt) }
        self.options = options
        self.embeddingDimension = embeddings.first?.count ?? 0
    }

    public func run(report: (EpochReport) -> Void) -> (head: ClassifierHead, best: EpochReport) {
        var random = SplitMix64(seed: options.seed)
        let e = embeddingDimension
        let h = options.hidden
        let k = h > 0 ? h : e
        // PyTorch's Linear initialisation: U(±1/√fan_in).
        var head = ClassifierHead(
            embeddingDimension: e, hidden: h,
            w1: (0..<h * e).map { _ in random.uniform(-1 / Float(e).squareRoot(), 1 / Float(e).squareRoot()) },
            b1: (0..<h).map { _ in random.uniform(-1 / Float(e).squareRoot(), 1 / Float(e).squareRoot()) },
            w2: (0..<3 * k).map { _ in random.uniform(-1 / Float(k).squareRoot(), 1 / Float(k).squareRoot()) },
            b2: (0..<3).map { _ in random.uniform(-1 / Float(k).squareRoot(), 1 / Float(k).squareRoot()) })
        var adam = (w1: Adam(count: h * e), b1: Adam(count: h), w2: Adam(count: 3 * k), b2: Adam(count: 3))
        var best = EpochReport(epoch: 0, trainLoss: .infinity, validationLoss: .infinity, validationAccuracy: 0, isBest: true)
        var bestHead = head
        var order = Array(train.indices)
        let batch = options.batchSize
        var stale = 0
        for epoch in 1...max(1, options.epochs) {
            order.shuffle(using: &random)
            var lossSum = 0.0
            for begin in stride(from: 0, to: order.count, by: batch) {
                let rows = order[begin..<min(begin + batch, order.count)].map { train[$0] }
                var inputs = [Float](repeating: 0, count: rows.count * e)
                for (row, sample) in rows.enumerated() {
                    let embedding = embeddings[sample.prompt]
                    for column in 0..<e { inputs[row * e + column] = embedding[column] + options.noise * random.gaussian() }
                }
                let pass = Self.forward(head, inputs: inputs, count: rows.count)
                // d(loss)/d(logits) = softmax − one-hot, averaged over the batch.
                var dLogits = pass.probabilities
                for (row, sample) in rows.enumerated() {
                    lossSum -= log(max(Double(pass.probabilities[row * 3 + sample.label]), 1e-12))
                    dLogits[row * 3 + sample.label] -= 1
                }
                let scale = 1 / Float(rows.count)
                for index in dLogits.indices { dLogits[index] *= scale }
                let gradients = DenseNetwork.gradients(
                    Self.network(head), dLogits: dLogits, inputs: inputs, hidden: pass.features, count: rows.count)
                if h > 0 {
                    adam.w1.step(&head.w1, gradient: gradients.w1, rate: options.learningRate, decay: options.weightDecay)
                    adam.b1.step(&head.b1, gradient: gradients.b1, rate: options.learningRate, decay: 0)
                }
                adam.w2.step(&head.w2, gradient: gradients.w2, rate: options.learningRate, decay: options.weightDecay)
                adam.b2.step(&head.b2, gradient: gradients.b2, rate: options.learningRate, decay: 0)
            }
            let (validationLoss, accuracy) = evaluate(head, on: validation.isEmpty ? train : validation)
            var current = EpochReport(
                epoch: epoch, trainLoss: lossSum / Double(max(train.count, 1)), validationLoss: validationLoss, validationAccuracy: accuracy,
                isBest: false)
            if validationLoss < best.validationLoss {
                current.isBest = true
                best = current
                bestHead = head
                stale = 0
            } else {
                stale += 1
            }
            report(current)
            if stale >= options.patience { break }
        }
        return (bestHead, best)
    }

    /// Mean cross-entropy and accuracy of `head` on `samples`, without noise.
    public func evaluate(_ head: ClassifierHead, on samples: [ClassifierSample]) -> (loss: Double, accuracy: Double) {
        guard !samples.isEmpty else { return (.nan, .nan) }
        let e = embeddingDimension
        var loss = 0.0
        var correct = 0
        for begin in stride(from: 0, to: samples.count, by: 1024) {
            let rows = Array(samples[begin..<min(begin + 1024, samples.count)])
            var inputs = [Float](repeating: 0, count: rows.count * e)
            for (row, sample) in rows.enumerated() { for column in 0..<e { inputs[row * e + column] = embeddings[sample.prompt][column] } }
            let pass = Self.forward(head, inputs: inputs, count: rows.count)
            for (row, sample) in rows.enumerated() {
                let p = pass.probabilities[row * 3..<row * 3 + 3]
                loss -= log(max(Double(p[row * 3 + sample.label]), 1e-12))
                if p.indices.max(by: { p[$0] < p[$1] })! - row * 3 == sample.label { correct += 1 }
            }
        }
        return (loss / Double(samples.count), Double(correct) / Double(samples.count))
    }

    /// P(the stronger model wins) for each embedding.
    public static func strongWinProbabilities(_ head: ClassifierHead, _ embeddings: [[Float]]) -> [Double] {
        embeddings.map { vector in vector.withUnsafeBufferPointer { head.strongWinProbability($0) } }
    }

    /// The head as the shared network's weights.
    static func network(_ head: ClassifierHead) -> DenseNetwork.Weights {
        DenseNetwork.Weights(
            inputs: head.embeddingDimension, hidden: head.hidden, outputs: 3, w1: head.w1, b1: head.b1, w2: head.w2, b2: head.b2)
    }

    /// Features (the hidden layer after ReLU, or the inputs) and class probabilities for a batch.
    static func forward(_ head: ClassifierHead, inputs: [Float], count: Int) -> (features: [Float], probabilities: [Float]) {
        var (features, logits) = DenseNetwork.forward(network(head), inputs, count: count)
        for row in 0..<count {
            let top = max(logits[row * 3], logits[row * 3 + 1], logits[row * 3 + 2])
            var total: Float = 0
            for c in 0..<3 {
                logits[row * 3 + c] = exp(logits[row * 3 + c] - top)
                total += logits[row * 3 + c]
            }
            for c in 0..<3 { logits[row * 3 + c] /= total }
        }
        return (features, logits)
    }
}
