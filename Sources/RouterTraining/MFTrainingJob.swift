import Foundation
import MatrixFactorization
import RouterVocabulary
import TextEncoder
import TrainingRows

/// RouteLLM's matrix factorisation, trained on the local encoder's embeddings and written as a
/// weights file with its training summary and score quantiles (`routerctl train mf`).
public struct MFTrainingJob {
    public var options = MFTrainingOptions()
    /// Models in fewer battles than this are refused.
    public var minBattles = 2
    /// The pair whose score quantiles are stored for calibration.
    public var strong: String
    public var weak: String
    /// Where the weights go (safetensors).
    public var output: String

    public init(output: String, strong: String, weak: String) {
        self.output = output
        self.strong = strong
        self.weak = weak
    }

    /// The trained model, what it was trained on, and its best epoch.
    public struct Outcome {
        public var model: MFModel
        public var modelIndex: [String: Int]
        /// The prompts trained on (the validation share left out).
        public var trainedPrompts: Set<String>
        public var best: EpochReport

        /// P(`pair[0]` beats `pair[1]`) for each embedding; nil when either model was not trained.
        public func scores(pair: [String], embeddings: [[Float]]) -> [Double]? {
            guard let a = modelIndex[pair[0]], let b = modelIndex[pair[1]] else { return nil }
            return model.winProbabilities(embeddings, a: a, b: b)
        }
    }

    /// Loads, embeds, trains and writes the weights. `log` is told what happens, a line at a time;
    /// `epoch` each epoch's losses.
    public func run(_ inputs: TrainingInputs, log: (String) -> Void, epoch: (EpochReport) -> Void) throws -> Outcome {
        let loaded = try inputs.load(seed: options.seed, minBattles: minBattles, log: log)
        let embeddings = try inputs.embed(loaded.prompts)
        var samples: [MFSample] = []
        for battle in loaded.battles {
            let label: Float
            switch (battle.softLabel, battle.outcome) {
            case (let soft?, _): label = soft
            case (nil, .modelA): label = 1
            case (nil, .modelB): label = 0
            case (nil, .tie):
                guard options.ties == .half else { continue }
                label = 0.5
            }
            samples.append(
                MFSample(
                    prompt: loaded.promptIndex[battle.prompt]!, modelA: loaded.modelIndex[battle.modelA]!, modelB: loaded.modelIndex[battle.modelB]!,
                    label: label))
        }
        let validationPrompts = TrainingSet.validationPrompts(loaded.prompts, fraction: options.validationFraction)
        SentenceEncoder.setThreads(1)
        let trainer = MFTrainer(
            models: loaded.models, embeddings: embeddings, samples: samples, validationPrompts: validationPrompts, options: options)
        log("training on \(trainer.train.count) samples, validating on \(trainer.validation.count) (\(validationPrompts.count) held-out prompts)")
        let (model, best) = trainer.run(report: epoch)

        var metadata: [String: String] = [MetadataKey.encoder: "all-MiniLM-L6-v2", MetadataKey.longText: inputs.policy.rawValue]
        let summary: [String: Any] = [
            "files": inputs.fileNames, "battles": loaded.battles.count, "prompts": loaded.prompts.count, "samples": samples.count,
            "ties": options.ties.rawValue, "dimension": options.dimension, "noise": Double(options.noise),
            "learning_rate": Double(options.learningRate), "weight_decay": Double(options.weightDecay), "best_epoch": best.epoch,
            "validation_loss": best.validationLoss, "validation_accuracy": best.validationAccuracy, "seed": options.seed,
        ]
        metadata[MetadataKey.training] = try TrainingInputs.json(summary)
        if let strongIndex = loaded.modelIndex[strong], let weakIndex = loaded.modelIndex[weak] {
            // Quantiles of P(strong wins) over the training prompts: `routerctl calibrate` turns a strong share into a threshold with them.
            let quantiles = CalibrationMetadata.percentiles(model.winProbabilities(embeddings, a: strongIndex, b: weakIndex))
            metadata[MetadataKey.scoreQuantiles] = try TrainingInputs.json(quantiles)
            metadata[MetadataKey.quantilePair] = String(decoding: try JSONEncoder().encode([strong, weak]), as: UTF8.self)
        }
        try TrainingInputs.createParentDirectory(of: output)
        try model.write(to: output, metadata: metadata)
        log("wrote \(output)")
        let trained = Set(loaded.prompts.indices.filter { !validationPrompts.contains($0) }.map { loaded.prompts[$0] })
        return Outcome(model: model, modelIndex: loaded.modelIndex, trainedPrompts: trained, best: best)
    }
}
