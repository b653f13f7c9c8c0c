import Foundation
import RouterVocabulary
import SimilarityRanking

/// Builds the battle index RouteLLM's similarity-weighted ranking scores against (`routerctl train sw_ranking`).
///
/// Nothing is fitted ahead of time: the index holds each distinct prompt's embedding and its
/// weighted wins (a tie is half a win each way), and the plugin fits Bradley–Terry ratings per
/// query. The score quantiles stored for calibration come from scoring each training prompt with
/// its own battles left out.
public struct RankingIndexJob {
    /// The ranking settings stored with the index, for its quantiles and for validation.
    public var settings = RankingSettings(gamma: 10, prior: 1, neighbors: nil, weightUnit: .battle)
    /// Seed for drawing pairs from quality files.
    public var seed: UInt64 = 42
    /// The pair whose score quantiles are stored.
    public var strong: String
    public var weak: String
    public var output: String

    public init(output: String, strong: String, weak: String) {
        self.output = output
        self.strong = strong
        self.weak = weak
    }

    public struct Outcome {
        public var ranker: SimilarityRanker
        public var modelIndex: [String: Int]
        public var promptIndex: [String: Int]

        /// P(`pair[0]` beats `pair[1]`) for each prompt, each scored with its own battles left out
        /// when it is in the index; nil when either model is not in the index.
        public func scores(pair: [String], prompts: [String], embeddings: [[Float]]) -> [Double]? {
            guard let a = modelIndex[pair[0]], let b = modelIndex[pair[1]] else { return nil }
            return zip(prompts, embeddings).map { prompt, vector in
                vector.withUnsafeBufferPointer { ranker.winProbability(embedding: $0, strong: a, weak: b, excluding: promptIndex[prompt]) }
            }
        }
    }

    /// `quantiles(done, total, seconds)` is told how far scoring the training prompts has got.
    public func run(
        _ inputs: TrainingInputs, log: (String) -> Void, quantiles: (_ done: Int, _ total: Int, _ seconds: Double) -> Void = { _, _, _ in }
    ) throws -> Outcome {
        if let problem = settings.problem { throw TrainingDataError(problem) }
        let loaded = try inputs.load(seed: seed, minBattles: 1, log: log)
        let embeddings = try inputs.embed(loaded.prompts)
        let wins = loaded.battles.flatMap { battle in
            battle.wins.map {
                RankingIndex.Win(
                    prompt: loaded.promptIndex[battle.prompt]!, winner: loaded.modelIndex[$0.winner]!, loser: loaded.modelIndex[$0.loser]!,
                    weight: $0.weight)
            }
        }
        let index = try RankingIndex(models: loaded.models, embeddings: embeddings, wins: wins)
        let ranker = SimilarityRanker(index: index, settings: settings)
        log("index: \(index.promptCount) prompts, \(index.wins.count) (prompt, winner, loser) entries, \(index.models.count) models")

        var metadata: [String: String] = [
            "encoder": "all-MiniLM-L6-v2", "long_text": inputs.policy.rawValue,
            "training": try TrainingInputs.json(["files": inputs.fileNames, "battles": loaded.battles.count, "prompts": index.promptCount]),
        ]
        if let a = loaded.modelIndex[strong], let b = loaded.modelIndex[weak] {
            let start = Date()
            var scores: [Double] = []
            for (prompt, vector) in embeddings.enumerated() {
                scores.append(vector.withUnsafeBufferPointer { ranker.winProbability(embedding: $0, strong: a, weak: b, excluding: prompt) })
                if prompt % 256 == 255 || prompt == embeddings.count - 1 { quantiles(prompt + 1, embeddings.count, Date().timeIntervalSince(start)) }
            }
            metadata[MetadataKey.scoreQuantiles] = try TrainingInputs.json(CalibrationMetadata.percentiles(scores))
            metadata[MetadataKey.quantilePair] = try TrainingInputs.json([strong, weak])
            metadata[RankingSettings.metadataKey] = try settings.stored()
        } else {
            log("no score quantiles stored: \(strong) or \(weak) is not among the models; routers must set `threshold:`")
        }
        try TrainingInputs.createParentDirectory(of: output)
        try index.write(to: output, metadata: metadata)
        log("wrote \(output)")
        return Outcome(ranker: ranker, modelIndex: loaded.modelIndex, promptIndex: loaded.promptIndex)
    }
}
