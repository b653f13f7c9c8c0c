import CBLAS
import Foundation
import PromptFeatures
import QualityModel
import StableHash

/// Settings of per-model quality training.
public struct QualityTrainingOptions: Sendable {
    /// Hidden units shared by all models; 0 trains logistic regression per model.
    public var hidden = 0
    /// Feed the ``PromptFeatures`` beside the embedding.
    public var features = true
    public var epochs = 60
    public var batchSize = 128
    public var learningRate: Float = 2e-3
    public var weightDecay: Float = 1e-4
    /// Standard deviation of the Gaussian noise added to embeddings during training.
    public var noise: Float = 0.01
    /// How much a battle's pairwise loss weighs against one observed quality.
    public var battleWeight: Float = 1
    /// Epochs without a better validation loss before stopping.
    public var patience = 6
    public var seed: UInt64 = 42

    public init() {}
}

/// Labels for per-model quality training, by prompt.
public struct QualityExamples: Sendable {
    /// One embedding per prompt.
    public var embeddings: [[Float]]
    public var prompts: [String]
    public var models: [String]
    /// `quality[i][m]`: prompt i's quality for model m in [0, 1], nil where not observed.
    public var quality: [[Float?]]
    /// Pairwise outcomes: prompt, model a, model b, and 1 (a won), 0.5 (tie) or 0 (b won).
    public var battles: [(prompt: Int, a: Int, b: Int, outcome: Float)]

    public init(embeddings: [[Float]], prompts: [String], models: [String], quality: [[Float?]], battles: [(Int, Int, Int, Float)]) {
        self.embeddings = embeddings
        self.prompts = prompts
        self.models = models
        self.quality = quality
        self.battles = battles.map { (prompt: $0.0, a: $0.1, b: $0.2, outcome: $0.3) }
    }
}

/// Trains a ``QualityModel``: binary cross-entropy on every observed (prompt, model) quality,
/// missing entries left out rather than counted as failures, plus a Bradley–Terry loss
/// σ(z_a − z_b) on battles; Adam with weight decay, embedding noise, early stopping on the
/// held-out prompts' quality loss. Matrix products go through BLAS.
public final class QualityTrainer {
    public let examples: QualityExamples
    public let options: QualityTrainingOptions
    let train: [Int]
    let validation: [Int]
    /// Inputs [prompts × inputs]: embedding, then standardised features.
    let inputs: [Float]
    let inputCount: Int
    let featureMean: [Float]
    let featureScale: [Float]
    /// Battles grouped by prompt.
    let battlesByPrompt: [Int: [(a: Int, b: Int, outcome: Float)]]

    public init(examples: QualityExamples, validationPrompts: Set<Int>, options: QualityTrainingOptions) {
        self.examples = examples
        self.options = options
        let count = examples.prompts.count
        train = (0..<count).filter { !validationPrompts.contains($0) }
        validation = (0..<count).filter { validationPrompts.contains($0) }
        let dimension = examples.embeddings.first?.count ?? 0
        let featureCount = options.features ? PromptFeatures.count : 0
        inputCount = dimension + featureCount
        var raw = options.features ? examples.prompts.map(PromptFeatures.values) : []
        var mean = [Float](repeating: 0, count: featureCount)
        var scale = [Float](repeating: 1, count: featureCount)
        if featureCount > 0 {
            // Standardise with the training prompts only.
            for f in 0..<featureCount {
                let values = train.map { raw[$0][f] }
                let m = values.reduce(0, +) / Float(max(values.count, 1))
                let variance = values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Float(max(values.count, 1))
                mean[f] = m
                scale[f] = max(variance.squareRoot(), 1e-3)
            }
            for i in raw.indices { for f in 0..<featureCount { raw[i][f] = (raw[i][f] - mean[f]) / scale[f] } }
        }
        var x = [Float](repeating: 0, count: count * inputCount)
        for i in 0..<count {
            for (column, value) in examples.embeddings[i].enumerated() { x[i * inputCount + column] = value }
            for f in 0..<featureCount { x[i * inputCount + dimension + f] = raw[i][f] }
        }
        inputs = x
        featureMean = mean
        featureScale = scale
        battlesByPrompt = Dictionary(grouping: examples.battles, by: \.prompt).mapValues { $0.map { (a: $0.a, b: $0.b, outcome: $0.outcome) } }
    }

    public struct Report: Sendable {
        public var epoch: Int
        public var trainLoss: Double
        public var validationLoss: Double
        public var isBest: Bool
    }

    public func run(report: (Report) -> Void) -> (model: QualityModel, best: Report) {
        var random = SplitMix64(seed: options.seed)
        let m = examples.models.count
        let i = inputCount
        let h = options.hidden
        let k = h > 0 ? h : i
        func initial(_ count: Int, fanIn: Int) -> [Float] {
            let bound = 1 / Float(fanIn).squareRoot()
            return (0..<count).map { _ in random.uniform(-bound, bound) }
        }
        // Start each model's bias at the logit of its mean training quality.
        let b2 = (0..<m).map { model -> Float in
            let observed = train.compactMap { examples.quality[$0][model] }
            let mean = observed.isEmpty ? 0.5 : observed.reduce(0, +) / Float(observed.count)
            let clipped = min(max(mean, 0.02), 0.98)
            return log(clipped / (1 - clipped))
        }
        var model = QualityModel(
            models: examples.models, embeddingDimension: i - (options.features ? PromptFeatures.count : 0),
            features: options.features ? PromptFeatures.names : [], featureMean: featureMean, featureScale: featureScale, hidden: h,
            w1: h > 0 ? initial(h * i, fanIn: i) : [], b1: h > 0 ? initial(h, fanIn: i) : [], w2: initial(m * k, fanIn: k).map { $0 * 0.1 },
            b2: b2)
        var adam = (w1: Adam(count: h * i), b1: Adam(count: h), w2: Adam(count: m * k), b2: Adam(count: m))
        var best = Report(epoch: 0, trainLoss: .infinity, validationLoss: .infinity, isBest: true)
        var bestModel = model
        var order = train
        var stale = 0
        for epoch in 1...max(1, options.epochs) {
            order.shuffle(using: &random)
            var lossSum = 0.0
            var lossCount = 0
            for begin in stride(from: 0, to: order.count, by: options.batchSize) {
                let rows = Array(order[begin..<min(begin + options.batchSize, order.count)])
                var x = [Float](repeating: 0, count: rows.count * i)
                for (row, prompt) in rows.enumerated() {
                    for column in 0..<i {
                        x[row * i + column] =
                            inputs[prompt * i + column] + (column < model.embeddingDimension ? options.noise * random.gaussian() : 0)
                    }
                }
                let (hidden, z) = forward(model, x, count: rows.count)
                var dz = [Float](repeating: 0, count: rows.count * m)
                var observed = 0
                for (row, prompt) in rows.enumerated() {
                    for column in 0..<m {
                        guard let target = examples.quality[prompt][column] else { continue }
                        let p = 1 / (1 + exp(-z[row * m + column]))
                        dz[row * m + column] = p - target
                        lossSum -= Double(target * log(max(p, 1e-7)) + (1 - target) * log(max(1 - p, 1e-7)))
                        observed += 1
                    }
                }
                lossCount += observed
                var pairs = 0
                for prompt in rows { pairs += battlesByPrompt[prompt]?.count ?? 0 }
                let pointScale = 1 / Float(max(observed, 1))
                for index in dz.indices { dz[index] *= pointScale }
                if pairs > 0 {
                    let pairScale = options.battleWeight / Float(max(observed, pairs))
                    for (row, prompt) in rows.enumerated() {
                        for battle in battlesByPrompt[prompt] ?? [] {
                            let difference = z[row * m + battle.a] - z[row * m + battle.b]
                            lossSum += Double(options.battleWeight) * Self.crossEntropy(logit: difference, target: battle.outcome)
                            lossCount += 1
                            let p = 1 / (1 + exp(-difference))
                            let g = (p - battle.outcome) * pairScale
                            dz[row * m + battle.a] += g
                            dz[row * m + battle.b] -= g
                        }
                    }
                }
                let gradients = DenseNetwork.gradients(Self.network(model), dLogits: dz, inputs: x, hidden: hidden, count: rows.count)
                if h > 0 {
                    adam.w1.step(&model.w1, gradient: gradients.w1, rate: options.learningRate, decay: options.weightDecay)
                    adam.b1.step(&model.b1, gradient: gradients.b1, rate: options.learningRate, decay: 0)
                }
                adam.w2.step(&model.w2, gradient: gradients.w2, rate: options.learningRate, decay: options.weightDecay)
                adam.b2.step(&model.b2, gradient: gradients.b2, rate: options.learningRate, decay: 0)
            }
            var current = Report(
                epoch: epoch, trainLoss: lossSum / Double(max(lossCount, 1)),
                validationLoss: validation.isEmpty ? lossSum / Double(max(lossCount, 1)) : loss(model, on: validation), isBest: false)
            if current.validationLoss < best.validationLoss {
                current.isBest = true
                best = current
                bestModel = model
                stale = 0
            } else {
                stale += 1
            }
            report(current)
            if stale >= options.patience { break }
        }
        return (bestModel, best)
    }

    /// The training objective on `prompts`: mean binary cross-entropy of their observed qualities,
    /// plus the battles' pairwise cross-entropy weighted as in training, per observation.
    public func loss(_ model: QualityModel, on prompts: [Int]) -> Double {
        let m = examples.models.count
        var total = 0.0
        var count = 0.0
        for begin in stride(from: 0, to: prompts.count, by: 1024) {
            let rows = Array(prompts[begin..<min(begin + 1024, prompts.count)])
            var x = [Float](repeating: 0, count: rows.count * inputCount)
            for (row, prompt) in rows.enumerated() {
                for column in 0..<inputCount { x[row * inputCount + column] = inputs[prompt * inputCount + column] }
            }
            let z = forward(model, x, count: rows.count).logits
            for (row, prompt) in rows.enumerated() {
                for column in 0..<m {
                    guard let target = examples.quality[prompt][column] else { continue }
                    total += Self.crossEntropy(logit: z[row * m + column], target: target)
                    count += 1
                }
                for battle in battlesByPrompt[prompt] ?? [] {
                    let weight = Double(options.battleWeight)
                    total += weight * Self.crossEntropy(logit: z[row * m + battle.a] - z[row * m + battle.b], target: battle.outcome)
                    count += weight
                }
            }
        }
        return total / max(count, 1)
    }

    static func crossEntropy(logit: Float, target: Float) -> Double {
        let p = 1 / (1 + exp(-logit))
        return -Double(target * log(max(p, 1e-7)) + (1 - target) * log(max(1 - p, 1e-7)))
    }

    /// The model as the shared network's weights.
    static func network(_ model: QualityModel) -> DenseNetwork.Weights {
        DenseNetwork.Weights(
            inputs: model.inputCount, hidden: model.hidden, outputs: model.models.count, w1: model.w1, b1: model.b1, w2: model.w2, b2: model.b2)
    }

    /// The hidden activations (or the inputs) and the logits of a batch.
    func forward(_ model: QualityModel, _ x: [Float], count: Int) -> (hidden: [Float], logits: [Float]) {
        DenseNetwork.forward(Self.network(model), x, count: count)
    }
}
