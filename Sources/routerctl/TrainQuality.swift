import ArgumentParser
import Foundation
import RouterTraining
import RouterVocabulary
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
        var job = QualityTrainingJob(files: try feedback.files(adding: arguments), output: output, strong: strong, weak: weak)
        job.aliases = try aliases(alias)
        job.options.hidden = hidden
        job.options.features = !noFeatures
        job.options.epochs = epochs
        job.options.learningRate = learningRate
        job.options.weightDecay = weightDecay
        job.options.noise = noise
        job.options.battleWeight = battleWeight
        job.options.patience = patience
        job.options.seed = seed
        job.testSplit = testSplit
        job.validation = validation
        job.encoderModel = model
        job.cache = cache
        job.progress = Progress.embedding
        let validations = try heldOutValidations(validateWith, defaultPair: [strong, weak])
        let outcome = try job.run(log: { print($0) }) { report in
            print(
                String(
                    format: "epoch %3d  train loss %.4f  validation loss %.4f%@", report.epoch, report.trainLoss, report.validationLoss,
                    report.isBest ? "  *" : ""))
        }
        // Routing quality on prompts the model never trained on.
        try reportHeldOut(validations, trained: outcome.trainedPrompts, embed: job.embed) { pair, prompts, embeddings in
            outcome.scores(pair: pair, prompts: prompts, embeddings: embeddings)
        }
    }
}
