import ArgumentParser
import Foundation
import RouterTraining

/// `routerctl train classifier`: the 3-way classifier head that plays RouteLLM's BERT router, on the frozen MiniLM embedding.
struct TrainClassifier: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classifier", abstract: "Train the classifier router (RouteLLM's BERT role, on frozen MiniLM embeddings) from battles files.",
        discussion: """
            Each battle becomes one example labelled "stronger model won", "tie" or "weaker model won", where stronger \
            means the higher Bradley–Terry rating over all the training battles (RouteLLM groups models into tiers to the \
            same end). The head is softmax regression or a one-hidden-layer MLP; --hidden auto trains both and keeps \
            the one with the lower validation loss. P(strong wins) = 1 − P(tie) − P(weak wins).
            """)

    @OptionGroup var data: TrainingData
    @Option(name: [.short, .long], help: "Where to write the weights (safetensors).") var output: String = "weights/classifier-minilm.safetensors"
    @Option(help: "Hidden units of the MLP, 0 for softmax regression, or auto to keep whichever validates better.") var hidden: String = "auto"
    @Option(name: .customLong("min-gap"), help: "Skip battles whose two models' ratings differ by less than this (log-strength units).")
    var minGap: Double = 0
    @Option(help: "Most epochs.") var epochs: Int = 100
    @Option(name: .customLong("batch-size")) var batchSize: Int = 64
    @Option(name: .customLong("learning-rate")) var learningRate: Float = 1e-3
    @Option(name: .customLong("weight-decay")) var weightDecay: Float = 1e-5
    @Option(help: "Standard deviation of the noise added to embeddings while training.") var noise: Float = 0.01
    @Option(help: "Share of prompts held out for validation.") var validation: Double = 0.1
    @Option(help: "Epochs without improvement before stopping.") var patience: Int = 5
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Option(
        name: .customLong("validate-with"),
        help: "After training, report APGR on the prompts of this quality file that were not trained on; FILE or FILE@STRONG,WEAK (repeatable).")
    var validateWith: [String] = []

    func run() throws {
        try runTrainer("classifier", train)
    }

    private func train() throws {
        var job = ClassifierTrainingJob(output: output)
        switch hidden {
        case "auto": job.hiddenSizes = [0, 64]
        default:
            guard let size = Int(hidden), size >= 0 else {
                throw ValidationError("--hidden takes a number of units (0 for softmax regression) or auto")
            }
            job.hiddenSizes = [size]
        }
        job.minGap = minGap
        job.validation = validation
        job.options.epochs = epochs
        job.options.batchSize = batchSize
        job.options.learningRate = learningRate
        job.options.weightDecay = weightDecay
        job.options.noise = noise
        job.options.patience = patience
        job.options.seed = seed
        let validations = try heldOutValidations(validateWith, defaultPair: ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"])
        let inputs = try data.inputs
        let outcome = try job.run(inputs, log: { print($0) }, epoch: printEpoch(of: epochs))
        // The head scores prompts, not pairs: the same scores serve any pair.
        try reportHeldOut(validations, trained: outcome.trainedPrompts, embed: inputs.embed) { _, _, embeddings in
            outcome.scores(embeddings: embeddings)
        }
    }
}
