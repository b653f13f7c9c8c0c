import ArgumentParser
import Foundation
import RouterTraining
import SimilarityRanking

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
        var job = RankingIndexJob(output: output, strong: strong, weak: weak)
        job.settings = RankingSettings(gamma: gamma, prior: prior, neighbors: neighbors, weightUnit: weightUnit)
        job.seed = seed
        let validations = try heldOutValidations(validateWith, defaultPair: [strong, weak])
        let inputs = try data.inputs
        let outcome = try job.run(inputs, log: { print($0) }) { done, total, seconds in
            Progress.line(
                String(
                    format: "  quantiles %@ %d/%d prompts scored (own battles left out), %.1f s",
                    Progress.bar(fraction: Double(done) / Double(total), width: 20), done, total, seconds))
            if done == total { Progress.finish() }
        }
        // Every prompt of the file, each scored with its own battles left out.
        try reportHeldOut(validations, trained: [], embed: inputs.embed) { pair, prompts, embeddings in
            outcome.scores(pair: pair, prompts: prompts, embeddings: embeddings)
        }
    }
}

extension RankingSettings.WeightUnit: ExpressibleByArgument {}
