import Foundation
import PromptFeatures
import QualityModel
import RouterVocabulary
import TextEncoder
import TrainingRows

/// Per-model quality for many candidates, served by the `classifier` plugin (`routerctl train quality`).
///
/// Quality files give a pointwise loss on every observed entry (a missing model is missing, not a
/// failure); values outside [0, 1] are rescaled by the file's range. Battles files add a pairwise
/// Bradley–Terry loss on the same outputs. Prompts in the test share (by prompt hash) are never
/// read; a validation share of the rest stops training early.
public struct QualityTrainingJob {
    public var files: [String]
    public var aliases: [String: String] = [:]
    public var options = QualityTrainingOptions()
    /// Share of prompts (by hash) never trained on, kept for evaluation.
    public var testSplit = PromptSplit.defaultTestShare
    /// Share of the remaining prompts held out to stop training early.
    public var validation = 0.15
    /// The encoder model folder and the on-disk embedding cache.
    public var encoderModel = "models/all-MiniLM-L6-v2"
    public var cache = CachedEmbeddings.defaultPath(.head)
    public var progress: CachedEmbeddings.Progress = { _, _, _ in }
    /// The pair whose score quantiles are stored, when both are trained.
    public var strong: String
    public var weak: String
    public var output: String

    public init(files: [String], output: String, strong: String, weak: String) {
        self.files = files
        self.output = output
        self.strong = strong
        self.weak = weak
    }

    public struct Outcome {
        public var model: QualityModel
        public var models: [String]
        public var trainedPrompts: Set<String>
        public var best: QualityTrainer.Report

        /// P(`pair[0]` beats `pair[1]`) for each prompt; nil when either model was not trained.
        public func scores(pair: [String], prompts: [String], embeddings: [[Float]]) -> [Double]? {
            guard let a = models.firstIndex(of: pair[0]), let b = models.firstIndex(of: pair[1]) else { return nil }
            return Self.pairScores(model.selecting(rows: [a, b]), prompts: prompts, embeddings: embeddings)
        }

        static func pairScores(_ pair: QualityModel, prompts: [String], embeddings: [[Float]]) -> [Double] {
            zip(embeddings, prompts).map { embedding, prompt in
                let z = pair.logits(input: pair.input(embedding: embedding, text: prompt))
                return QualityModel.pairScore(z[0], z[1])
            }
        }
    }

    /// Embeds prompts through the job's on-disk cache (training and held-out prompts alike).
    public func embed(_ prompts: [String]) throws -> [[Float]] {
        try CachedEmbeddings.embed(prompts, cache: cache, policy: .head, progress: progress) {
            try SentenceEncoder(modelDirectory: encoderModel)
        }
    }

    public func run(log: (String) -> Void, epoch: (QualityTrainer.Report) -> Void) throws -> Outcome {
        let examples = try Self.load(files: files, aliases: aliases, testSplit: testSplit)
        let observed = examples.quality.reduce(0) { $0 + $1.compactMap { $0 }.count }
        log(
            "\(examples.prompts.count) prompts (test share \(testSplit) left out), \(examples.models.count) models, \(observed) qualities, \(examples.battles.count) battles"
        )
        var embedded = examples
        embedded.embeddings = try embed(examples.prompts)
        let validationPrompts = TrainingSet.validationPrompts(examples.prompts, fraction: validation)
        let trainer = QualityTrainer(examples: embedded, validationPrompts: validationPrompts, options: options)
        let (trained, best) = trainer.run(report: epoch)
        let summary: [String: Any] = [
            "files": files, "prompts": examples.prompts.count, "models": examples.models.count, "battles": examples.battles.count,
            "hidden": options.hidden, "features": options.features ? PromptFeatures.names : [], "test_split": testSplit, "validation": validation,
            "epoch": best.epoch, "validation_loss": best.validationLoss, "seed": options.seed,
        ]
        var metadata = [
            MetadataKey.encoder: "all-MiniLM-L6-v2", MetadataKey.longText: "head", MetadataKey.training: try TrainingInputs.json(summary),
        ]
        if let strongRow = examples.models.firstIndex(of: strong), let weakRow = examples.models.firstIndex(of: weak) {
            // The classifier's P(strong wins) for the pair over the training prompts: what strong_fraction calibrates with.
            let scores = Outcome.pairScores(
                trained.selecting(rows: [strongRow, weakRow]), prompts: examples.prompts, embeddings: embedded.embeddings)
            metadata[MetadataKey.scoreQuantiles] = try TrainingInputs.json(CalibrationMetadata.percentiles(scores))
            metadata[MetadataKey.quantilePair] = String(decoding: try JSONEncoder().encode([strong, weak]), as: UTF8.self)
            log("score quantiles stored for \(strong) against \(weak)")
        }
        try TrainingInputs.createParentDirectory(of: output)
        try trained.write(to: output, metadata: metadata)
        log(
            "wrote \(output): \(examples.models.count) models, best epoch \(best.epoch), validation loss \(String(format: "%.4f", best.validationLoss))"
        )
        // The test share was never read, and the validation share only stopped training.
        let trainedPrompts = Set(examples.prompts.indices.filter { !validationPrompts.contains($0) }.map { examples.prompts[$0] })
        return Outcome(model: trained, models: examples.models, trainedPrompts: trainedPrompts, best: best)
    }

    /// Quality rows and battles of the training share, by prompt.
    public static func load(files: [String], aliases: [String: String], testSplit: Double) throws -> QualityExamples {
        var prompts: [String] = []
        var promptIndex: [String: Int] = [:]
        var models: [String] = []
        var modelIndex: [String: Int] = [:]
        var rows: [[Int: Float]] = []
        var battles: [(Int, Int, Int, Float)] = []
        func prompt(_ text: String) -> Int {
            if let index = promptIndex[text] { return index }
            promptIndex[text] = prompts.count
            prompts.append(text)
            rows.append([:])
            return prompts.count - 1
        }
        func model(_ name: String) -> Int {
            let name = aliases[name] ?? name
            if let index = modelIndex[name] { return index }
            modelIndex[name] = models.count
            models.append(name)
            return models.count - 1
        }
        for file in files {
            if QualityFile.matches(file) {
                let records = try QualityFile.read(file)
                let values = records.flatMap { $0.quality.values }
                let (low, high) = (values.min() ?? 0, values.max() ?? 1)
                // A file already in [0, 1] is taken as is; another scale is mapped onto it.
                let rescale = low < 0 || high > 1
                for record in records where !PromptSplit.isTest(record.prompt, share: testSplit) {
                    let p = prompt(record.prompt)
                    for (name, value) in record.quality {
                        rows[p][model(name)] = Float(rescale ? (value - low) / max(high - low, 1e-9) : value)
                    }
                }
            } else {
                for battle in try BattlesReader.read(file: file, aliases: aliases) where !PromptSplit.isTest(battle.prompt, share: testSplit) {
                    let outcome: Float
                    switch battle.outcome {
                    case .modelA: outcome = 1
                    case .modelB: outcome = 0
                    case .tie: outcome = 0.5
                    }
                    battles.append((prompt(battle.prompt), model(battle.modelA), model(battle.modelB), outcome))
                }
            }
        }
        let quality = rows.map { row in (0..<models.count).map { row[$0] } }
        return QualityExamples(embeddings: [], prompts: prompts, models: models, quality: quality, battles: battles)
    }
}
