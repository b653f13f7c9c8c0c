import ArgumentParser
import Foundation
import RouterEvaluation
import RouterPluginKit
import RouterTraining
import RouterVocabulary
import SimilarityRanking
import TextEncoder

/// `routerctl train sw_ranking`: builds the battle index RouteLLM's similarity-weighted ranking scores against.
struct TrainSWRanking: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sw_ranking", abstract: "Build the sw_ranking router's battle index from battles files (docs/TRAINING.md).",
        discussion: """
            Nothing is fitted ahead of time: the index holds each distinct prompt's embedding and its weighted wins \
            (a tie is half a win each way), and the plugin fits Bradley–Terry ratings per query. The score quantiles \
            stored for calibration come from scoring each training prompt with its own battles left out.
            """)

    @OptionGroup var data: TrainingData
    @Option(name: [.short, .long], help: "Where to write the index (safetensors).") var output: String = "weights/sw-ranking-minilm.safetensors"
    @Option(help: "γ of the similarity weighting, for the stored quantiles and validation.") var gamma: Double = 10
    @Option(help: "The prior (virtual tied games), for the stored quantiles and validation.") var prior: Double = 1
    @Option(help: "Count only the N most similar indexed prompts, for the stored quantiles and validation (default: all).")
    var neighbors: Int?
    @Option(
        name: .customLong("weight-unit"),
        help: "What one similarity weight applies to: 'battle' (RouteLLM) or 'prompt' (a prompt's battles share it).")
    var weightUnit: RankingSettings.WeightUnit = .battle
    @Option(
        name: .customLong("validate-with"),
        help: "Report APGR on this quality file's prompts, each scored with its own battles left out; FILE or FILE@STRONG,WEAK (repeatable).")
    var validateWith: [String] = []
    @Option(help: "Seed for drawing pairs from quality files.") var seed: UInt64 = 42
    @Option(help: "Strong model for the stored score quantiles.") var strong: String = "gpt-4-1106-preview"
    @Option(help: "Weak model for the stored score quantiles.") var weak: String = "mistralai/Mixtral-8x7B-Instruct-v0.1"

    func run() throws {
        try runTrainer("sw_ranking", build)
    }

    private func build() throws {
        let loaded = try data.load(seed: seed, minBattles: 1)
        let embeddings = try data.embed(loaded.prompts)
        let wins = loaded.battles.flatMap { battle in
            battle.wins.map {
                RankingIndex.Win(
                    prompt: loaded.promptIndex[battle.prompt]!, winner: loaded.modelIndex[$0.winner]!, loser: loaded.modelIndex[$0.loser]!,
                    weight: $0.weight)
            }
        }
        let index = try RankingIndex(models: loaded.models, embeddings: embeddings, wins: wins)
        let settings = RankingSettings(gamma: gamma, prior: prior, neighbors: neighbors, weightUnit: weightUnit)
        if let problem = settings.problem { throw ValidationError(problem) }
        let ranker = SimilarityRanker(index: index, settings: settings)
        print("index: \(index.promptCount) prompts, \(index.wins.count) (prompt, winner, loser) entries, \(index.models.count) models")

        var metadata: [String: String] = [
            "encoder": "all-MiniLM-L6-v2", "long_text": try data.policy.rawValue,
            "training": try jsonString([
                "files": try data.files.map { ($0 as NSString).lastPathComponent }, "battles": loaded.battles.count, "prompts": index.promptCount,
            ]),
        ]
        if let a = loaded.modelIndex[strong], let b = loaded.modelIndex[weak] {
            let start = Date()
            var scores: [Double] = []
            for (prompt, vector) in embeddings.enumerated() {
                scores.append(vector.withUnsafeBufferPointer { ranker.winProbability(embedding: $0, strong: a, weak: b, excluding: prompt) })
                if prompt % 256 == 255 || prompt == embeddings.count - 1 {
                    Progress.line(
                        String(
                            format: "  quantiles %@ %d/%d prompts scored (own battles left out), %.1f s",
                            Progress.bar(fraction: Double(prompt + 1) / Double(embeddings.count), width: 20), prompt + 1, embeddings.count,
                            Date().timeIntervalSince(start)))
                }
            }
            Progress.finish()
            metadata[MetadataKey.scoreQuantiles] = try jsonString(CalibrationMetadata.percentiles(scores))
            metadata[MetadataKey.quantilePair] = try jsonString([strong, weak])
            metadata[RankingSettings.metadataKey] = try settings.stored()
        } else {
            print("no score quantiles stored: \(strong) or \(weak) is not among the models; routers must set `threshold:`")
        }
        try createParentDirectory(of: output)
        try index.write(to: output, metadata: metadata)
        print("wrote \(output)")

        for entry in validateWith {
            let (file, pair, benchmark) = try TrainingData.validationBenchmark(entry, defaultPair: [strong, weak])
            guard let a = loaded.modelIndex[pair[0]], let b = loaded.modelIndex[pair[1]] else {
                throw ValidationError("--validate-with \(entry): both models must be in the index")
            }
            let vectors = try data.embed(benchmark.prompts)
            let scores = zip(benchmark.prompts, vectors).map { prompt, vector in
                vector.withUnsafeBufferPointer { ranker.winProbability(embedding: $0, strong: a, weak: b, excluding: loaded.promptIndex[prompt]) }
            }
            printHeldOut(
                RoutingCurve(scores: scores, strong: benchmark.strong, weak: benchmark.weak), file: file, prompts: benchmark.prompts.count, pair: pair
            )
        }
    }
}

extension RankingSettings.WeightUnit: ExpressibleByArgument {}
