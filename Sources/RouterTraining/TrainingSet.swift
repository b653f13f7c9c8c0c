import Foundation
import StableHash

/// Training data as every trainer reads it: battles from battles files and
/// per-prompt quality files, with the models and the distinct prompts numbered
/// in sorted order.
public struct TrainingSet: Sendable {
    public var battles: [Battle]
    public var models: [String]
    public var modelIndex: [String: Int]
    public var prompts: [String]
    public var promptIndex: [String: Int]

    /// Reads every file, renaming models by `aliases`; refuses models in fewer than `minBattles` battles.
    /// From a quality file, `pairsPerPrompt` battles are drawn per prompt (seeded by `seed`), labelled
    /// σ((value_a − value_b) / `softScale`) when a scale is given.
    public static func load(
        files: [String], aliases: [String: String], pairsPerPrompt: Int, seed: UInt64, softScale: Float?, minBattles: Int
    ) throws(TrainingDataError) -> TrainingSet {
        var battles: [Battle] = []
        for file in files {
            battles +=
                QualityReader.isQualityFile(file)
                ? try QualityReader.read(
                    file: file, aliases: aliases, pairsPerPrompt: pairsPerPrompt, seed: seed, softScale: softScale, allowingNoPairs: files.count > 1)
                : try BattlesReader.read(file: file, aliases: aliases)
        }
        guard !battles.isEmpty else {
            throw TrainingDataError("no battles in \(files.joined(separator: ", ")) (a quality file's prompts need values for two or more models)")
        }
        var counts: [String: Int] = [:]
        for battle in battles {
            counts[battle.modelA, default: 0] += 1
            counts[battle.modelB, default: 0] += 1
        }
        let rare = counts.filter { $0.value < minBattles }.keys.sorted()
        guard rare.isEmpty else {
            throw TrainingDataError(
                "model(s) in fewer than \(minBattles) battles cannot be learned: \(rare.joined(separator: ", ")); add data, rename them with --alias, or lower --min-battles"
            )
        }
        let models = counts.keys.sorted()
        let prompts = Array(Set(battles.map(\.prompt))).sorted()
        return TrainingSet(
            battles: battles, models: models, modelIndex: Dictionary(uniqueKeysWithValues: models.enumerated().map { ($1, $0) }),
            prompts: prompts, promptIndex: Dictionary(uniqueKeysWithValues: prompts.enumerated().map { ($1, $0) }))
    }

    /// The prompts held out for validation: whole prompts, chosen by a stable hash, so no
    /// validation prompt leaks into training.
    public static func validationPrompts(_ prompts: [String], fraction: Double) -> Set<Int> {
        Set(prompts.indices.filter { Double(FNV1a.hash(prompts[$0]) % 10_000) < fraction * 10_000 })
    }
}
