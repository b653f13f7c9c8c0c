import CRouterPlugin
import ClassifierHead
import Foundation
import QualityCorrection
import QualityModel
import RouterJSON
import RouterPluginKit
import RouterVocabulary
import SafeTensors
import StableHash
import Synchronization

/// The classifier router: RouteLLM's BERT role, played by a head on the frozen shared
/// embedding. Its weights are one of two kinds:
///
/// - ``ClassifierHead`` (`routerctl train classifier`): a 3-way head that learned whether the
///   stronger model of a battle wins. It classifies the prompt, not the pair, so any strong/weak
///   pair may be configured, and its score quantiles hold for all; two candidates only.
/// - ``QualityModel`` (`routerctl train quality`): P(good answer) for every model it was trained
///   on, from the embedding and the prompt's features, so it routes among many candidates; for a
///   strong/weak pair its score is σ(z_strong − z_weak), as its pairwise loss reads it.
///
/// A quality router learns online (ABI revision 3) from one-sided outcomes: ``LearnedCorrections``
/// corrects each candidate's predicted quality by a ridge fit of the outcomes' residuals on the
/// embedding, the trained weights its prior. The state is `learned.safetensors` in the state folder, written crash-safely and
/// published by a swap. A 3-way head does not learn online.
///
/// A quality router draws from its posterior (ABI revision 5) for Thompson sampling: each
/// candidate's correction from the ridge fits' Gaussian posteriors (``LearnedCorrections/Correction``).
final class ClassifierRouter: QualityPredictingRouter, OnlineLearningRouter, PosteriorSamplingRouter {
    static let name = "classifier"
    static let version = "2.1.0"

    private enum Weights {
        case head(ClassifierHead)
        /// The model cut down to the candidates' outputs, and the strong and weak model's positions among them.
        case quality(QualityModel, strong: Int, weak: Int)
    }

    private let weights: Weights
    private let weightsPath: String
    private let encoder: String
    private let quantiles: [Double]?
    private let embeddingDimension: Int
    /// What scoring reads of the outcomes learned online, swapped whole at each publish.
    private let learned: Mutex<LearnedCorrections>
    private let correction: CorrectionSettings
    /// Where the learned state is kept; nil when the host offers no learning.
    private let learnedFile: LearnedStateFile?
    private let maxLearnedBytes: Int
    static let defaultMaxLearnedBytes = 128 << 20
    private let host: HostServices

    init(context: PluginContext) throws {
        guard let path = context.params.string("weights") else { throw PluginError("the classifier router needs its 'weights' parameter") }
        let format = (try? SafeTensorsFile(path: path))?.metadata[MetadataKey.format]
        if format == QualityModel.format {
            let (model, file, path) = try context.loadWeights(
                parameter: "weights", plugin: "classifier", decode: QualityModel.init(file:), dimension: \.embeddingDimension)
            let rows = try context.candidateIndices(in: model.models, source: path)
            // The host names the strong and weak model among the candidates.
            let candidates = model.selecting(rows: rows)
            let pair = try context.strongAndWeak(in: candidates.models, source: path)
            weights = .quality(candidates, strong: pair.strong, weak: pair.weak)
            embeddingDimension = model.embeddingDimension
            encoder = file.metadata[MetadataKey.encoder] ?? "unknown"
            quantiles = file.scoreQuantiles(forPair: [context.strongModel, context.weakModel])
            weightsPath = path
        } else {
            let (head, file, path) = try context.loadWeights(
                parameter: "weights", plugin: "classifier", decode: ClassifierHead.init(file:), dimension: \.embeddingDimension)
            guard context.candidates.count == 2 else {
                throw PluginError(
                    "\(path) is a strong/weak classifier (\(ClassifierHead.format)), which routes between two candidates, and the router names \(context.candidates.count); train per-model quality with `routerctl train quality`"
                )
            }
            weights = .head(head)
            embeddingDimension = head.embeddingDimension
            encoder = file.metadata[MetadataKey.encoder] ?? "unknown"
            quantiles = file.scoreQuantiles(forPair: nil)
            weightsPath = path
        }
        var correction = CorrectionSettings()
        correction.prior = context.params.double("prior") ?? correction.prior
        correction.difficultyPrior = context.params.double("difficulty_prior") ?? correction.difficultyPrior
        if let problem = correction.problem { throw PluginError(problem) }
        self.correction = correction
        maxLearnedBytes = context.params.int("max_learned_bytes") ?? Self.defaultMaxLearnedBytes
        guard maxLearnedBytes >= 0 else { throw PluginError("max_learned_bytes must be 0 or more, not \(maxLearnedBytes)") }
        host = context.host
        let models: [String]
        switch weights {
        case .quality(let model, _, _): models = model.models
        case .head:
            models = context.candidates
            if context.stateDirectory != nil {
                context.host.log(
                    .warning,
                    "\(weightsPath) is a strong/weak head, which does not learn online: outcomes reported for this router will be refused; train per-model quality weights (`routerctl train quality`) to learn, or set `learn: false`"
                )
            }
        }
        learnedFile = LearnedStateFile(stateDirectory: context.stateDirectory)
        // Residuals are against these weights: a fingerprint of the file names them in the learned state.
        let basis = FileManager.default.contents(atPath: weightsPath).map { String(FNV1a.hash(bytes: $0), radix: 16) } ?? weightsPath
        let dimension = embeddingDimension
        if learnedFile != nil, case .quality = weights, LearnedCorrections.bytes(models: models.count, dimension: dimension) > maxLearnedBytes {
            throw PluginError(
                "learning online for \(models.count) candidates on \(dimension)-d embeddings takes \(LearnedCorrections.bytes(models: models.count, dimension: dimension)) bytes, over max_learned_bytes (\(maxLearnedBytes)); raise it, or set `learn: false`"
            )
        }
        let state =
            learnedFile?.load(host: context.host) {
                try LearnedCorrections(file: $0, models: models, dimension: dimension, basis: basis, settings: correction)
            } ?? LearnedCorrections(models: models, dimension: embeddingDimension, basis: basis)
        learned = Mutex(state)
    }

    private func embedding(_ prompt: Prompt) throws -> UnsafeBufferPointer<Float> {
        guard let embedding = prompt.embedding, embedding.count == embeddingDimension else {
            throw PluginError("no prompt embedding arrived; the classifier router needs an encoder")
        }
        return embedding
    }

    func score(_ prompt: Prompt) throws -> Double {
        let embedding = try embedding(prompt)
        switch weights {
        case .head(let head):
            return head.strongWinProbability(embedding)
        case .quality(let model, let strong, let weak):
            let state = learned.withLock { $0 }
            let z = model.logits(input: model.input(embedding: embedding, text: prompt.text))
            guard state.count > 0 else { return QualityModel.pairScore(z[strong], z[weak]) }
            let q = state.correction(embedding: embedding, settings: correction).applied(to: z.map(Self.sigmoid))
            return QualityModel.pairScore(Self.logit(q[strong]), Self.logit(q[weak]))
        }
    }

    /// The candidates' qualities, corrected by what was learned near the prompt.
    private func corrected(_ model: QualityModel, embedding: UnsafeBufferPointer<Float>, text: String) -> [Double] {
        let p = model.probabilities(input: model.input(embedding: embedding, text: text))
        let state = learned.withLock { $0 }
        guard state.count > 0 else { return p }
        return state.correction(embedding: embedding, settings: correction).applied(to: p)
    }

    static func sigmoid(_ z: Double) -> Double { 1 / (1 + exp(-z)) }
    static func logit(_ p: Double) -> Double { log(p / (1 - p)) }

    func qualities(_ prompt: Prompt) throws -> [Double] {
        switch weights {
        case .head:
            let p = try score(prompt)
            return [p, 1 - p]
        case .quality(let model, _, _):
            return corrected(model, embedding: try embedding(prompt), text: prompt.text)
        }
    }

    func samples(_ prompt: Prompt, draws: Int, seed: UInt64) throws -> [Double] {
        guard case .quality(let model, let strong, let weak) = weights else {
            throw PluginError(
                "\(weightsPath) is a strong/weak head, which has no posterior to draw from; explore with strategy: epsilon_greedy, or train per-model quality weights"
            )
        }
        let embedding = try embedding(prompt)
        let p = model.probabilities(input: model.input(embedding: embedding, text: prompt.text))
        let correction = learned.withLock { $0 }.correction(embedding: embedding, settings: correction, uncertainty: true)
        var generator = SplitMix64(seed: seed)
        var values: [Double] = []
        values.reserveCapacity(draws * (1 + p.count))
        for drawn in correction.draws(draws, around: p, generator: &generator) {
            values.append(QualityModel.pairScore(Self.logit(drawn[strong]), Self.logit(drawn[weak])))
            values += drawn
        }
        return values
    }

    func learn(_ outcomes: [LearnedOutcome]) throws {
        guard let learnedFile else { throw PluginError("this router was given no state folder to learn in") }
        guard case .quality(let model, _, _) = weights else {
            throw PluginError(
                "\(weightsPath) is a strong/weak head, which does not learn online; train per-model quality weights with `routerctl train quality`, or set `learn: false` on this router"
            )
        }
        // Fold into a copy; scoring keeps reading the published state until the swap.
        var state = learned.withLock { $0 }
        var folded: [LearnedCorrections.Outcome] = []
        for outcome in outcomes {
            guard let embedding = outcome.embedding else { throw PluginError("an outcome arrived without its prompt's embedding") }
            // Residuals are against the trained model alone, so the learned state is a sum of outcomes in any order.
            let predicted = model.probabilities(input: model.input(embedding: embedding, text: outcome.prompt))
            switch outcome.value {
            case .pointwise(let quality):
                folded.append(.init(embedding: embedding, model: outcome.model, quality: quality, predicted: predicted[outcome.model]))
            case .pairwise(let against, let score):
                // A win read as a good answer and a loss as a bad one: the quality a pointwise report of each would carry.
                folded.append(.init(embedding: embedding, model: outcome.model, quality: score, predicted: predicted[outcome.model]))
                folded.append(.init(embedding: embedding, model: against, quality: 1 - score, predicted: predicted[against]))
            }
        }
        try state.fold(folded, settings: correction)
        try learnedFile.save { try state.write(to: $0) }
        learned.withLock { $0 = state }
    }

    func forget() throws {
        try learnedFile?.remove()
        learned.withLock { $0 = LearnedCorrections(models: $0.models, dimension: $0.dimension, basis: $0.basis) }
    }

    /// What was learned online, for `describe` (and `learn status`).
    private var learnedDetails: [String: JSONValue] {
        guard learnedFile != nil else { return [:] }
        let state = learned.withLock { $0 }
        return [
            "learned_outcomes": .integer(Int64(state.count)), "learned_events": .integer(Int64(state.events)),
            "learned_bytes": .integer(Int64(state.bytes)), "learned_bytes_limit": .integer(Int64(maxLearnedBytes)),
            "prior": .number(correction.prior), "difficulty_prior": .number(correction.difficultyPrior),
        ]
    }

    func describe() -> RouterDescription {
        switch weights {
        case .head(let head):
            return RouterDescription(
                scoreQuantiles: quantiles, embeddingDimension: head.embeddingDimension, quality: .winRate,
                details: [
                    "weights": .string(weightsPath), "hidden": .integer(Int64(head.hidden)), "encoder": .string(encoder),
                    "classes": .array(ClassifierHead.classes.map(JSONValue.string)),
                ].merging(learnedDetails) { first, _ in first })
        case .quality(let model, _, _):
            return RouterDescription(
                scoreQuantiles: quantiles, models: model.models, embeddingDimension: model.embeddingDimension,
                quality: QualityScale(meaning: .probability),
                details: [
                    "weights": .string(weightsPath), "hidden": .integer(Int64(model.hidden)), "encoder": .string(encoder),
                    "features": .array(model.features.map(JSONValue.string)),
                ].merging(learnedDetails) { first, _ in first })
        }
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(ClassifierRouter.self, hostABI: hostABI, into: out, size: size)
}
