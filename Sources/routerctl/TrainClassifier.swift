import ArgumentParser
import ClassifierHead
import Foundation
import RouterEvaluation
import RouterPluginKit
import RouterTraining
import RouterVocabulary
import SafeTensors
import SimilarityRanking
import TextEncoder
import TrainingRows

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
        let sizes: [Int]
        switch hidden {
        case "auto": sizes = [0, 64]
        default:
            guard let size = Int(hidden), size >= 0 else {
                throw ValidationError("--hidden takes a number of units (0 for softmax regression) or auto")
            }
            sizes = [size]
        }
        let loaded = try data.load(seed: seed, minBattles: 1)
        let embeddings = try data.embed(loaded.prompts)

        // Which side of a battle is the stronger model: global Bradley–Terry ratings over every battle.
        let count = loaded.models.count
        var wins = [Double](repeating: 0, count: count * count)
        for battle in loaded.battles {
            for win in battle.wins { wins[loaded.modelIndex[win.winner]! * count + loaded.modelIndex[win.loser]!] += Double(win.weight) }
        }
        let theta = BradleyTerry.fit(wins: wins, models: count, prior: 1)
        print("model ratings (log-strength, strongest first):")
        for index in theta.indices.sorted(by: { theta[$0] > theta[$1] }) {
            print(String(format: "  %+.3f  %@", theta[index], loaded.models[index]))
        }
        var samples: [ClassifierSample] = []
        var skipped = 0
        for battle in loaded.battles {
            let (a, b) = (loaded.modelIndex[battle.modelA]!, loaded.modelIndex[battle.modelB]!)
            guard abs(theta[a] - theta[b]) >= max(minGap, 1e-12) else {
                skipped += 1
                continue
            }
            let aIsStronger = theta[a] > theta[b]
            let label: Int
            switch battle.outcome {
            case .tie: label = 1
            case .modelA: label = aIsStronger ? 0 : 2
            case .modelB: label = aIsStronger ? 2 : 0
            }
            samples.append(ClassifierSample(prompt: loaded.promptIndex[battle.prompt]!, label: label))
        }
        let labelCounts = (0..<3).map { label in samples.filter { $0.label == label }.count }
        print(
            "\(samples.count) examples (stronger won \(labelCounts[0]), tie \(labelCounts[1]), weaker won \(labelCounts[2])); \(skipped) battles under --min-gap skipped"
        )
        guard !samples.isEmpty else { throw TrainingDataError("no battles left to train on; lower --min-gap") }

        let validationPrompts = TrainingSet.validationPrompts(loaded.prompts, fraction: validation)
        SentenceEncoder.setThreads(1)
        var chosen: (head: ClassifierHead, best: EpochReport)?
        for size in sizes {
            var options = ClassifierTrainingOptions()
            options.hidden = size
            options.epochs = epochs
            options.batchSize = batchSize
            options.learningRate = learningRate
            options.weightDecay = weightDecay
            options.noise = noise
            options.patience = patience
            options.seed = seed
            let trainer = ClassifierTrainer(embeddings: embeddings, samples: samples, validationPrompts: validationPrompts, options: options)
            print(
                "\(size == 0 ? "softmax regression" : "MLP with \(size) hidden units"): training on \(trainer.train.count) examples, validating on \(trainer.validation.count) (\(validationPrompts.count) held-out prompts)"
            )
            let result = trainer.run { report in
                let bar = Progress.bar(fraction: Double(report.epoch) / Double(epochs), width: 20)
                print(
                    String(
                        format: "epoch %3d/%d %@ train loss %.4f · val loss %.4f · val acc %.1f%%%@", report.epoch, epochs, bar, report.trainLoss,
                        report.validationLoss, report.validationAccuracy * 100, report.isBest ? " *" : ""))
            }
            print(
                String(
                    format: "best epoch %d: val loss %.4f, val acc %.1f%%", result.best.epoch, result.best.validationLoss,
                    result.best.validationAccuracy * 100))
            if chosen == nil || result.best.validationLoss < chosen!.best.validationLoss { chosen = result }
        }
        let (head, best) = chosen!
        if sizes.count > 1 {
            print("kept the \(head.hidden == 0 ? "softmax regression" : "MLP (\(head.hidden) hidden units)"): lower validation loss")
        }

        let summary: [String: Any] = [
            "files": try data.files.map { ($0 as NSString).lastPathComponent }, "battles": loaded.battles.count, "examples": samples.count,
            "labels": labelCounts, "hidden": head.hidden, "min_gap": minGap, "noise": Double(noise), "learning_rate": Double(learningRate),
            "weight_decay": Double(weightDecay), "best_epoch": best.epoch, "validation_loss": best.validationLoss,
            "validation_accuracy": best.validationAccuracy, "seed": seed,
            "ratings": Dictionary(uniqueKeysWithValues: zip(loaded.models, theta)),
        ]
        let metadata: [String: String] = [
            MetadataKey.format: ClassifierHead.format, MetadataKey.encoder: "all-MiniLM-L6-v2",
            MetadataKey.embeddingDimension: String(head.embeddingDimension), MetadataKey.longText: try data.policy.rawValue,
            "classes": try jsonString(ClassifierHead.classes), MetadataKey.training: try jsonString(summary),
            // The head does not depend on the pair, so its quantiles hold for any strong/weak names.
            MetadataKey.scoreQuantiles: try jsonString(CalibrationMetadata.percentiles(ClassifierTrainer.strongWinProbabilities(head, embeddings))),
        ]
        try createParentDirectory(of: output)
        try SafeTensorsWriter.write(head.tensors, metadata: metadata, to: output)
        print("wrote \(output)")

        let trained = Set(loaded.prompts.indices.filter { !validationPrompts.contains($0) }.map { loaded.prompts[$0] })
        // The head scores prompts, not pairs: the same scores serve any pair.
        try data.reportHeldOut(validateWith, defaultPair: ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"], trained: trained) {
            _, embeddings in ClassifierTrainer.strongWinProbabilities(head, embeddings)
        }
    }
}
