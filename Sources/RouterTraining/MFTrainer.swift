import CBLAS
import Foundation
import MatrixFactorization
import StableHash

/// Settings of matrix-factorisation training (RouteLLM's defaults where it has them).
public struct MFTrainingOptions: Sendable {
    public enum Ties: String, Sendable, CaseIterable {
        /// Ties are dropped (RouteLLM).
        case drop
        /// A tie counts as label 0.5.
        case half
    }

    public var dimension = 128
    public var epochs = 100
    public var batchSize = 64
    public var learningRate: Float = 3e-4
    public var weightDecay: Float = 1e-5
    /// Standard deviation of the Gaussian noise added to prompt embeddings during training.
    public var noise: Float = 0.01
    /// Share of prompts held out for validation (the split is by prompt, not by battle).
    public var validationFraction = 0.1
    /// Epochs without a better validation loss before stopping.
    public var patience = 5
    public var seed: UInt64 = 42
    public var ties = Ties.drop

    public init() {}
}

/// One training example: the prompt (an index into the embeddings), the two models, and P(a wins).
public struct MFSample: Sendable {
    public var prompt: Int
    public var modelA: Int
    public var modelB: Int
    public var label: Float

    public init(prompt: Int, modelA: Int, modelB: Int, label: Float) {
        self.prompt = prompt
        self.modelA = modelA
        self.modelB = modelB
        self.label = label
    }
}

/// What one epoch achieved.
public struct EpochReport: Sendable {
    public var epoch: Int
    public var trainLoss: Double
    public var validationLoss: Double
    public var validationAccuracy: Double
    public var isBest: Bool
}

/// Trains RouteLLM's MF router: BCE on σ(δ(a) − δ(b)) against who won, with
/// Gaussian noise on the prompt embeddings, Adam with weight decay, and early
/// stopping on the loss of held-out prompts. Matrix products go through BLAS.
public final class MFTrainer {
    public let models: [String]
    public let embeddings: [[Float]]
    public let train: [MFSample]
    public let validation: [MFSample]
    public let options: MFTrainingOptions
    let embeddingDimension: Int

    /// - Parameters:
    ///   - embeddings: one per distinct prompt, indexed by `MFSample.prompt`.
    ///   - validationPrompts: the prompt indices held out for validation.
    public init(models: [String], embeddings: [[Float]], samples: [MFSample], validationPrompts: Set<Int>, options: MFTrainingOptions) {
        self.models = models
        self.embeddings = embeddings
        self.train = samples.filter { !validationPrompts.contains($0.prompt) }
        self.validation = samples.filter { validationPrompts.contains($0.prompt) }
        self.options = options
        self.embeddingDimension = embeddings.first?.count ?? 0
    }

    public func run(report: (EpochReport) -> Void) -> (model: MFModel, best: EpochReport) {
        var random = SplitMix64(seed: options.seed)
        let d = options.dimension
        let e = embeddingDimension
        let n = models.count
        // PyTorch's initialisations: Embedding ~ N(0, 1); Linear ~ U(±1/√fan_in).
        var model = MFModel(
            models: models, dimension: d, embeddingDimension: e,
            p: (0..<n * d).map { _ in random.gaussian() },
            w1: (0..<d * e).map { _ in random.uniform(-1 / Float(e).squareRoot(), 1 / Float(e).squareRoot()) },
            w2: (0..<d).map { _ in random.uniform(-1 / Float(d).squareRoot(), 1 / Float(d).squareRoot()) })
        var adamP = Adam(count: n * d)
        var adamW1 = Adam(count: d * e)
        var adamW2 = Adam(count: d)

        var best = EpochReport(epoch: 0, trainLoss: .infinity, validationLoss: .infinity, validationAccuracy: 0, isBest: true)
        var bestModel = model
        var order = Array(train.indices)
        let batch = options.batchSize
        var inputs = [Float](repeating: 0, count: batch * e)
        var projected = [Float](repeating: 0, count: batch * d)
        var projectedGradient = [Float](repeating: 0, count: batch * d)
        var w1Gradient = [Float](repeating: 0, count: d * e)

        for epoch in 1...max(1, options.epochs) {
            order.shuffle(using: &random)
            var lossSum = 0.0
            for start in stride(from: 0, to: order.count, by: batch) {
                let members = order[start..<min(start + batch, order.count)].map { train[$0] }
                let count = members.count
                // Inputs: prompt embeddings plus noise.
                for (row, sample) in members.enumerated() {
                    let embedding = embeddings[sample.prompt]
                    for column in 0..<e { inputs[row * e + column] = embedding[column] + options.noise * random.gaussian() }
                }
                // Z = E · W1ᵀ
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(d), Int32(e), 1, inputs, Int32(e), model.w1, Int32(e), 0, &projected,
                    Int32(d))
                let normalized = (0..<n).map { model.normalizedRow($0) }
                var vectorGradients = [[Float]](repeating: [Float](repeating: 0, count: d), count: n)
                var w2Gradient = [Float](repeating: 0, count: d)
                for (row, sample) in members.enumerated() {
                    let va = normalized[sample.modelA]
                    let vb = normalized[sample.modelB]
                    var logit: Float = 0
                    for k in 0..<d { logit += model.w2[k] * (va[k] - vb[k]) * projected[row * d + k] }
                    let probability = 1 / (1 + exp(-logit))
                    lossSum += Self.crossEntropy(Double(probability), Double(sample.label))
                    let g = (probability - sample.label) / Float(count)
                    for k in 0..<d {
                        let z = projected[row * d + k]
                        let difference = va[k] - vb[k]
                        projectedGradient[row * d + k] = g * model.w2[k] * difference
                        w2Gradient[k] += g * difference * z
                        vectorGradients[sample.modelA][k] += g * model.w2[k] * z
                        vectorGradients[sample.modelB][k] -= g * model.w2[k] * z
                    }
                }
                // dW1 = GZᵀ · E
                cblas_sgemm(
                    CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(e), Int32(count), 1, projectedGradient, Int32(d), inputs, Int32(e), 0,
                    &w1Gradient, Int32(e))
                // Through the row normalisation: dL/dv = (dL/dv̂ − v̂ (v̂ · dL/dv̂)) / ‖v‖.
                var pGradient = [Float](repeating: 0, count: n * d)
                for row in 0..<n {
                    let raw = model.p[row * d..<(row + 1) * d]
                    let norm = max(raw.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
                    let v = normalized[row]
                    let gv = vectorGradients[row]
                    var dot: Float = 0
                    for k in 0..<d { dot += v[k] * gv[k] }
                    for k in 0..<d { pGradient[row * d + k] = (gv[k] - v[k] * dot) / norm }
                }
                adamP.step(&model.p, gradient: pGradient, rate: options.learningRate, decay: options.weightDecay)
                adamW1.step(&model.w1, gradient: w1Gradient, rate: options.learningRate, decay: options.weightDecay)
                adamW2.step(&model.w2, gradient: w2Gradient, rate: options.learningRate, decay: options.weightDecay)
            }
            let (validationLoss, accuracy) = evaluate(model, on: validation.isEmpty ? train : validation)
            let isBest = validationLoss < best.validationLoss - 1e-6
            let epochReport = EpochReport(
                epoch: epoch, trainLoss: lossSum / Double(max(train.count, 1)), validationLoss: validationLoss, validationAccuracy: accuracy,
                isBest: isBest)
            if isBest {
                best = epochReport
                bestModel = model
            }
            report(epochReport)
            if epoch - best.epoch >= options.patience { break }
        }
        return (bestModel, best)
    }

    /// Mean BCE and accuracy (on decisive samples) without noise.
    func evaluate(_ model: MFModel, on samples: [MFSample]) -> (loss: Double, accuracy: Double) {
        guard !samples.isEmpty else { return (.nan, .nan) }
        var directions: [Int: [Float]] = [:]
        var loss = 0.0
        var correct = 0
        var decisive = 0
        for sample in samples {
            let key = sample.modelA * models.count + sample.modelB
            let direction = directions[key] ?? model.direction(a: sample.modelA, b: sample.modelB)
            directions[key] = direction
            var logit: Float = 0
            let embedding = embeddings[sample.prompt]
            for index in 0..<embeddingDimension { logit += direction[index] * embedding[index] }
            let probability = 1 / (1 + exp(-Double(logit)))
            loss += Self.crossEntropy(probability, Double(sample.label))
            if sample.label != 0.5 {
                decisive += 1
                if (probability >= 0.5) == (sample.label > 0.5) { correct += 1 }
            }
        }
        return (loss / Double(samples.count), decisive == 0 ? .nan : Double(correct) / Double(decisive))
    }

    static func crossEntropy(_ probability: Double, _ label: Double) -> Double {
        let p = min(max(probability, 1e-7), 1 - 1e-7)
        return -(label * log(p) + (1 - label) * log(1 - p))
    }
}

/// Adam as PyTorch's torch.optim.Adam: weight decay is added to the gradient.
struct Adam {
    var first: [Float]
    var second: [Float]
    var step = 0
    let beta1: Float = 0.9
    let beta2: Float = 0.999
    let epsilon: Float = 1e-8

    init(count: Int) {
        first = [Float](repeating: 0, count: count)
        second = [Float](repeating: 0, count: count)
    }

    mutating func step(_ parameters: inout [Float], gradient: [Float], rate: Float, decay: Float) {
        step += 1
        let correction1 = 1 - pow(beta1, Float(step))
        let correction2 = 1 - pow(beta2, Float(step))
        for index in parameters.indices {
            let g = gradient[index] + decay * parameters[index]
            first[index] = beta1 * first[index] + (1 - beta1) * g
            second[index] = beta2 * second[index] + (1 - beta2) * g * g
            let mean = first[index] / correction1
            let variance = second[index] / correction2
            parameters[index] -= rate * mean / (variance.squareRoot() + epsilon)
        }
    }
}
