import ArgumentParser
import Foundation
import PromptFeatures
import QualityModel
import RouterEvaluation
import RouterPluginKit
import RouterTraining
import RouterVocabulary
import TextEncoder
import TrainingRows

/// `routerctl train quality`: per-model quality for many candidates, served by the `classifier` plugin.
struct TrainQuality: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quality",
        abstract: "Train per-model quality prediction (the classifier router for many candidates) from quality and battles files.",
        discussion: """
            Quality files ({prompt, quality: {model: value}}) give a pointwise loss on every observed entry: a missing \
            model is missing, not a failure. Values outside [0, 1] (a judge's 1 to 10, say) are rescaled by the file's \
            range. Battles files ({prompt, model_a, model_b, winner}) add a pairwise Bradley–Terry loss on the same \
            outputs. The input is the MiniLM embedding plus cheap prompt features (length, numbers, code, options). \
            Prompts in the test share (--test-split, by prompt hash, as `routerctl eval --test-split` uses) are never \
            read; a validation share of the rest stops training early.
            """)

    @Argument(help: "Quality files and battles files.") var arguments: [String] = []
    @OptionGroup var feedback: FeedbackSource
    @Option(name: [.short, .long], help: "Where to write the weights (safetensors).") var output: String = "weights/quality-minilm.safetensors"
    @Option(help: "Rename a model, FROM=TO (repeatable).") var alias: [String] = []
    @Option(help: "Hidden units shared by the models; 0 trains logistic regression per model.") var hidden: Int = 0
    @Flag(name: .customLong("no-features"), help: "Read the embedding alone, without prompt features.") var noFeatures = false
    @Option(help: "Most epochs.") var epochs: Int = 60
    @Option(name: .customLong("learning-rate")) var learningRate: Float = 2e-3
    @Option(name: .customLong("weight-decay")) var weightDecay: Float = 1e-4
    @Option(help: "Standard deviation of the noise added to embeddings while training.") var noise: Float = 0.01
    @Option(name: .customLong("battle-weight"), help: "Weight of a battle's pairwise loss against one observed quality.")
    var battleWeight: Float = 1
    @Option(name: .customLong("test-split"), help: "Share of prompts (by hash) never trained on, kept for evaluation.")
    var testSplit: Double = PromptSplit.defaultTestShare
    @Option(help: "Share of the remaining prompts held out to stop training early.") var validation: Double = 0.15
    @Option(help: "Epochs without improvement before stopping.") var patience: Int = 6
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Option(
        name: .customLong("validate-with"),
        help: """
            After training, report APGR on the prompts of this quality file that were not trained on (the test share and \
            the validation share); FILE or FILE@STRONG,WEAK (repeatable).
            """)
    var validateWith: [String] = []
    @Option(help: "The encoder model folder.") var model: String = "models/all-MiniLM-L6-v2"
    @Option(help: "The on-disk embedding cache.") var cache: String = CachedEmbeddings.defaultPath(.head)
    @Option(help: "Strong model for the stored score quantiles (when both models are trained).") var strong: String = "gpt-4-1106-preview"
    @Option(help: "Weak model for the stored score quantiles.") var weak: String = "mistralai/Mixtral-8x7B-Instruct-v0.1"

    func run() throws {
        try runTrainer("quality", train)
    }

    private func train() throws {
        var aliases: [String: String] = [:]
        for entry in alias {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--alias takes FROM=TO, found '\(entry)'") }
            aliases[parts[0]] = parts[1]
        }
        let files = try feedback.files(adding: arguments)
        let examples = try Self.load(files: files, aliases: aliases, testSplit: testSplit)
        let observed = examples.quality.reduce(0) { $0 + $1.compactMap { $0 }.count }
        print(
            "\(examples.prompts.count) prompts (test share \(testSplit) left out), \(examples.models.count) models, \(observed) qualities, \(examples.battles.count) battles"
        )
        var embedded = examples
        // Training and held-out prompts alike go through the on-disk cache.
        let embed = { (prompts: [String]) throws -> [[Float]] in
            try CachedEmbeddings.embed(prompts, cache: cache, policy: .head, progress: Progress.embedding) {
                try SentenceEncoder(modelDirectory: model)
            }
        }
        embedded.embeddings = try embed(examples.prompts)
        var options = QualityTrainingOptions()
        options.hidden = hidden
        options.features = !noFeatures
        options.epochs = epochs
        options.learningRate = learningRate
        options.weightDecay = weightDecay
        options.noise = noise
        options.battleWeight = battleWeight
        options.patience = patience
        options.seed = seed
        let validationPrompts = TrainingSet.validationPrompts(examples.prompts, fraction: validation)
        let trainer = QualityTrainer(examples: embedded, validationPrompts: validationPrompts, options: options)
        let (trained, best) = trainer.run { report in
            print(
                String(
                    format: "epoch %3d  train loss %.4f  validation loss %.4f%@", report.epoch, report.trainLoss, report.validationLoss,
                    report.isBest ? "  *" : ""))
        }
        let summary: [String: Any] = [
            "files": files, "prompts": examples.prompts.count, "models": examples.models.count, "battles": examples.battles.count,
            "hidden": hidden, "features": options.features ? PromptFeatures.names : [], "test_split": testSplit, "validation": validation,
            "epoch": best.epoch, "validation_loss": best.validationLoss, "seed": seed,
        ]
        let training = String(decoding: try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]), as: UTF8.self)
        var metadata = [MetadataKey.encoder: "all-MiniLM-L6-v2", MetadataKey.longText: "head", MetadataKey.training: training]
        if let strongRow = examples.models.firstIndex(of: strong), let weakRow = examples.models.firstIndex(of: weak) {
            // The classifier's P(strong wins) for the pair over the training prompts: what strong_fraction calibrates with.
            let pair = trained.selecting(rows: [strongRow, weakRow])
            let scores = zip(embedded.embeddings, examples.prompts).map { embedding, prompt in
                let z = pair.logits(input: pair.input(embedding: embedding, text: prompt))
                return QualityModel.pairScore(z[0], z[1])
            }
            metadata[MetadataKey.scoreQuantiles] = try jsonString(CalibrationMetadata.percentiles(scores))
            metadata[MetadataKey.quantilePair] = String(decoding: try JSONEncoder().encode([strong, weak]), as: UTF8.self)
            print("score quantiles stored for \(strong) against \(weak)")
        }
        try FileManager.default.createDirectory(atPath: (output as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try trained.write(to: output, metadata: metadata)
        print(
            "wrote \(output): \(examples.models.count) models, best epoch \(best.epoch), validation loss \(String(format: "%.4f", best.validationLoss))"
        )

        // Routing quality on prompts the model never trained on: the test share was never read,
        // and the validation share only stopped training.
        let trainedPrompts = Set(examples.prompts.indices.filter { !validationPrompts.contains($0) }.map { examples.prompts[$0] })
        try TrainingData.reportHeldOut(
            validateWith, defaultPair: [strong, weak], trained: trainedPrompts, embed: embed
        ) { pair, prompts, embeddings in
            guard let a = examples.models.firstIndex(of: pair[0]), let b = examples.models.firstIndex(of: pair[1]) else {
                throw ValidationError("--validate-with: \(pair.joined(separator: ", ")) must both be among the trained models")
            }
            let selected = trained.selecting(rows: [a, b])
            return zip(embeddings, prompts).map { embedding, prompt in
                let z = selected.logits(input: selected.input(embedding: embedding, text: prompt))
                return QualityModel.pairScore(z[0], z[1])
            }
        }
    }

    /// Quality rows and battles of the training share, by prompt.
    static func load(files: [String], aliases: [String: String], testSplit: Double) throws -> QualityExamples {
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
