import ClassifierHead
import Foundation
import RouterVocabulary
import SafeTensors
import SimilarityRanking
import TextEncoder
import TrainingRows

/// The 3-way classifier head that plays RouteLLM's BERT router, on the frozen MiniLM embedding
/// (`routerctl train classifier`).
///
/// Each battle becomes one example labelled "stronger model won", "tie" or "weaker model won",
/// where stronger means the higher Bradley–Terry rating over all the training battles.
public struct ClassifierTrainingJob {
    /// Hidden sizes to try (0 is softmax regression); the one with the lower validation loss is kept.
    public var hiddenSizes = [0, 64]
    /// Battles whose two models' ratings differ by less than this are skipped.
    public var minGap = 0.0
    public var options = ClassifierTrainingOptions()
    /// Share of prompts held out for validation.
    public var validation = 0.1
    public var output: String

    public init(output: String) {
        self.output = output
    }

    public struct Outcome {
        public var head: ClassifierHead
        /// Each model's log-strength, strongest first.
        public var ratings: [(model: String, rating: Double)]
        public var trainedPrompts: Set<String>
        public var best: EpochReport

        /// P(strong wins) for each embedding: the head scores prompts, not pairs, so any pair gets the same scores.
        public func scores(embeddings: [[Float]]) -> [Double] {
            ClassifierTrainer.strongWinProbabilities(head, embeddings)
        }
    }

    public func run(_ inputs: TrainingInputs, log: (String) -> Void, epoch: (EpochReport) -> Void) throws -> Outcome {
        let loaded = try inputs.load(seed: options.seed, minBattles: 1, log: log)
        let embeddings = try inputs.embed(loaded.prompts)

        // Which side of a battle is the stronger model: global Bradley–Terry ratings over every battle.
        let count = loaded.models.count
        var wins = [Double](repeating: 0, count: count * count)
        for battle in loaded.battles {
            for win in battle.wins { wins[loaded.modelIndex[win.winner]! * count + loaded.modelIndex[win.loser]!] += Double(win.weight) }
        }
        let theta = BradleyTerry.fit(wins: wins, models: count, prior: 1)
        let ratings = theta.indices.sorted { theta[$0] > theta[$1] }.map { (model: loaded.models[$0], rating: theta[$0]) }
        log("model ratings (log-strength, strongest first):")
        for (model, rating) in ratings { log(String(format: "  %+.3f  %@", rating, model)) }
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
        log(
            "\(samples.count) examples (stronger won \(labelCounts[0]), tie \(labelCounts[1]), weaker won \(labelCounts[2])); \(skipped) battles under --min-gap skipped"
        )
        guard !samples.isEmpty else { throw TrainingDataError("no battles left to train on; lower --min-gap") }

        let validationPrompts = TrainingSet.validationPrompts(loaded.prompts, fraction: validation)
        SentenceEncoder.setThreads(1)
        var chosen: (head: ClassifierHead, best: EpochReport)?
        for size in hiddenSizes {
            var options = self.options
            options.hidden = size
            let trainer = ClassifierTrainer(embeddings: embeddings, samples: samples, validationPrompts: validationPrompts, options: options)
            log(
                "\(size == 0 ? "softmax regression" : "MLP with \(size) hidden units"): training on \(trainer.train.count) examples, validating on \(trainer.validation.count) (\(validationPrompts.count) held-out prompts)"
            )
            let result = trainer.run(report: epoch)
            log(
                String(
                    format: "best epoch %d: val loss %.4f, val acc %.1f%%", result.best.epoch, result.best.validationLoss,
                    result.best.validationAccuracy * 100))
            if chosen == nil || result.best.validationLoss < chosen!.best.validationLoss { chosen = result }
        }
        guard let (head, best) = chosen else { throw TrainingDataError("no hidden size to train") }
        if hiddenSizes.count > 1 {
            log("kept the \(head.hidden == 0 ? "softmax regression" : "MLP (\(head.hidden) hidden units)"): lower validation loss")
        }

        let summary: [String: Any] = [
            "files": inputs.fileNames, "battles": loaded.battles.count, "examples": samples.count,
            "labels": labelCounts, "hidden": head.hidden, "min_gap": minGap, "noise": Double(options.noise),
            "learning_rate": Double(options.learningRate), "weight_decay": Double(options.weightDecay), "best_epoch": best.epoch,
            "validation_loss": best.validationLoss, "validation_accuracy": best.validationAccuracy, "seed": options.seed,
            "ratings": Dictionary(uniqueKeysWithValues: zip(loaded.models, theta)),
        ]
        let metadata: [String: String] = [
            MetadataKey.format: ClassifierHead.format, MetadataKey.encoder: "all-MiniLM-L6-v2",
            MetadataKey.embeddingDimension: String(head.embeddingDimension), MetadataKey.longText: inputs.policy.rawValue,
            "classes": try TrainingInputs.json(ClassifierHead.classes), MetadataKey.training: try TrainingInputs.json(summary),
            // The head does not depend on the pair, so its quantiles hold for any strong/weak names.
            MetadataKey.scoreQuantiles: try TrainingInputs.json(
                CalibrationMetadata.percentiles(ClassifierTrainer.strongWinProbabilities(head, embeddings))),
        ]
        try TrainingInputs.createParentDirectory(of: output)
        try SafeTensorsWriter.write(head.tensors, metadata: metadata, to: output)
        log("wrote \(output)")
        let trained = Set(loaded.prompts.indices.filter { !validationPrompts.contains($0) }.map { loaded.prompts[$0] })
        return Outcome(head: head, ratings: ratings, trainedPrompts: trained, best: best)
    }
}
