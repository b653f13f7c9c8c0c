import Foundation
import StableHash
import TrainingRows

/// A problem with training data, naming the file and line.
public struct TrainingDataError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One preference battle: two models answered `prompt`; `winner` says which did better.
public struct Battle: Sendable, Hashable {
    /// Who did better: the battles file's `winner`, as its codec reads it.
    public typealias Outcome = BattleWinner

    public var prompt: String
    public var modelA: String
    public var modelB: String
    public var outcome: Outcome
    /// P(model a wins) when the data says more than who won: from a quality file's two
    /// values with `softScale` (see ``QualityReader``). Trainers that can use a soft label
    /// (mf) prefer it to `outcome`.
    public var softLabel: Float? = nil
}

extension Battle {
    /// Who beat whom, and how much it counts: a win 1 for the winner, a tie ½ each way (as
    /// RouteLLM counts ties when it fits Bradley–Terry ratings).
    public var wins: [(winner: String, loser: String, weight: Float)] {
        switch outcome {
        case .modelA: return [(modelA, modelB, 1)]
        case .modelB: return [(modelB, modelA, 1)]
        case .tie: return [(modelA, modelB, 0.5), (modelB, modelA, 0.5)]
        }
    }
}

/// Reads battles files: JSON lines `{prompt, model_a, model_b, winner}` with
/// winner `model_a`, `model_b`, `tie` or `tie (bothbad)`. Other fields are
/// ignored. docs/TRAINING.md describes the format.
public enum BattlesReader {
    /// Reads every file; `aliases` renames models (e.g. to unify one model's names across files).
    public static func read(files: [String], aliases: [String: String] = [:]) throws(TrainingDataError) -> [Battle] {
        var battles: [Battle] = []
        for file in files {
            battles += try read(file: file, aliases: aliases)
        }
        return battles
    }

    public static func read(file: String, aliases: [String: String] = [:]) throws(TrainingDataError) -> [Battle] {
        let records: [BattleRecord]
        do {
            records = try BattlesFile.read(file)
        } catch {
            throw TrainingDataError(error.message)
        }
        guard !records.isEmpty else { throw TrainingDataError("\(file): no battles in the file") }
        return records.map { record in
            Battle(
                prompt: record.prompt, modelA: aliases[record.modelA] ?? record.modelA, modelB: aliases[record.modelB] ?? record.modelB,
                outcome: record.winner)
        }
    }
}

/// Turns per-prompt quality files (``QualityFile``, e.g. mmlu-pro.quality.jsonl) into
/// battles: for each prompt, pairs of models, the one with the higher value winning (equal
/// values tie). A prompt with many models would give hundreds of pairs, so at most
/// `pairsPerPrompt` are drawn, deterministically per prompt.
public enum QualityReader {
    public static func isQualityFile(_ file: String) -> Bool { QualityFile.matches(file) }

    /// With `softScale`, each battle also carries P(a wins) = σ((value_a − value_b) / softScale).
    /// With `allowingNoPairs`, a file whose prompts each have one model's value (feedback's
    /// thumbs-ups, say) gives no battles instead of an error.
    public static func read(
        file: String, aliases: [String: String] = [:], pairsPerPrompt: Int, seed: UInt64, softScale: Float? = nil, allowingNoPairs: Bool = false
    ) throws(TrainingDataError) -> [Battle] {
        let records: [QualityRecord]
        do {
            records = try QualityFile.read(file)
        } catch {
            throw TrainingDataError(error.message)
        }
        // One prompt's values may be spread over several lines (the feedback store writes one model
        // per line): gather them per prompt, a later value for a model replacing an earlier one.
        var merged: [String: [String: Double]] = [:]
        var order: [String] = []
        for record in records {
            if merged[record.prompt] == nil { order.append(record.prompt) }
            merged[record.prompt, default: [:]].merge(record.quality) { $1 }
        }
        var battles: [Battle] = []
        for record in order.map({ QualityRecord(prompt: $0, quality: merged[$0]!) }) {
            let values = record.quality.map { (aliases[$0.key] ?? $0.key, $0.value) }.sorted { $0.0 < $1.0 }
            var pairs: [(Int, Int)] = []
            for i in values.indices { for j in values.indices where j > i { pairs.append((i, j)) } }
            var random = SplitMix64(seed: seed ^ FNV1a.hash(record.prompt))
            pairs.shuffle(using: &random)
            for (i, j) in pairs.prefix(pairsPerPrompt) {
                let (a, b) = (values[i], values[j])
                let outcome: Battle.Outcome = a.1 > b.1 ? .modelA : (a.1 < b.1 ? .modelB : .tie)
                let soft = softScale.map { 1 / (1 + exp(-Float(a.1 - b.1) / $0)) }
                battles.append(Battle(prompt: record.prompt, modelA: a.0, modelB: b.0, outcome: outcome, softLabel: soft))
            }
        }
        guard !battles.isEmpty || allowingNoPairs else { throw TrainingDataError("\(file): no prompt with two or more models") }
        return battles
    }
}
