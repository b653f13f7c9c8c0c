import CBLAS
import Foundation
import StableHash

/// RouteLLM's similarity-weighted ranking for one prompt.
///
/// Every battle i in the index gets weight ωᵢ = γ^(1 + sᵢ / max s), with sᵢ the
/// cosine similarity of its prompt to the query (or a share of ωᵢ, and only
/// among the nearest prompts: see ``RankingSettings``); a Bradley–Terry fit on
/// the weighted wins gives P(strong wins). The paper refits a logistic
/// regression over every battle per query (2.9 requests/s); here the
/// similarities are one matrix–vector product over the distinct prompts, the
/// weighted wins are summed per model pair, and the fit runs over the few
/// models involved.
public struct SimilarityRanker: Sendable {
    public let index: RankingIndex
    public let settings: RankingSettings
    /// Each row's prompts, battle weight and summed inverse battle weights (``RankingIndex/PromptShare``).
    private let shares: [RankingIndex.PromptShare]
    /// What a row's weight is divided by under ``RankingSettings/WeightUnit/prompt``: its battle
    /// weight, or 1 for an anchor whose wins are already shared out per prompt.
    private let promptMass: [Double]
    /// Each model's log-strength before any evidence, in the index's order (nil: all 0, every model equal).
    private let centres: [Double]?

    /// - Parameter priorStrengths: log-strengths believed before any battle, by model name, which
    ///   the prior's virtual ties pull toward (0 for a model not named): a cold start's prior.
    public init(index: RankingIndex, settings: RankingSettings = RankingSettings(), priorStrengths: [String: Double] = [:]) {
        self.index = index
        self.settings = settings
        centres = priorStrengths.isEmpty ? nil : index.models.map { priorStrengths[$0] ?? 0 }
        let shares = index.rowShares
        self.shares = shares
        // An anchor of n learned prompts carries wins already shared per prompt (summing to n): it weighs as n prompts.
        promptMass = (0..<index.promptCount).map { prompt in
            index.wins[index.promptStart[prompt]..<index.promptStart[prompt + 1]].reduce(0) { $0 + Double($1.weight) } / shares[prompt].prompts
        }
    }

    /// P(`strong` beats `weak`) for a prompt embedding of the index's dimension.
    /// `excluding` leaves one indexed prompt out (to score the index's own prompts fairly).
    public func winProbability(embedding: UnsafeBufferPointer<Float>, strong: Int, weak: Int, excluding: Int? = nil) -> Double {
        let theta = ratings(embedding: embedding, excluding: excluding)
        return BradleyTerry.winProbability(theta, strong, weak)
    }

    /// Log-strengths of every model of the index, weighted by similarity to the prompt.
    public func ratings(embedding: UnsafeBufferPointer<Float>, excluding: Int? = nil) -> [Double] {
        let weighted = weightedWins(embedding: embedding, excluding: excluding)
        return BradleyTerry.fit(wins: weighted.wins, models: index.models.count, prior: weighted.prior, centres: centres)
    }

    /// The fitted log-strengths and `count` draws of them from the fit's posterior (its Laplace
    /// approximation, the weighted wins counted at their effective sample size, Kish's (Σw)² / Σw²,
    /// so a few similar prompts weigh as the few they are); the fit alone when the curvature is singular.
    public func ratingDraws(embedding: UnsafeBufferPointer<Float>, count: Int, seed: UInt64) -> (fit: [Double], draws: [[Double]]) {
        let weighted = weightedWins(embedding: embedding, excluding: nil)
        let models = index.models.count
        let fit = BradleyTerry.fit(wins: weighted.wins, models: models, prior: weighted.prior, centres: centres)
        var generator = SplitMix64(seed: seed)
        let draws = BradleyTerry.posteriorDraws(
            fit, wins: weighted.wins, models: models, prior: weighted.prior, centres: centres, scale: weighted.evidencePerWeight, count: count,
            generator: &generator)
        return (fit, draws ?? Array(repeating: fit, count: count))
    }

    /// The prompt's similarity-weighted wins between every two models, the fit's prior in the same
    /// units, and the evidence one unit of weight carries (Kish's effective sample size per unit).
    private func weightedWins(embedding: UnsafeBufferPointer<Float>, excluding: Int?) -> (wins: [Double], prior: Double, evidencePerWeight: Double) {
        precondition(embedding.count == index.dimension)
        let promptCount = index.promptCount
        let similarity = index.similarities(to: embedding)
        var maxSimilarity: Float = 0
        for prompt in 0..<promptCount where prompt != excluding { maxSimilarity = max(maxSimilarity, similarity[prompt]) }
        // Prompts less similar than the k-th most similar one are left out (ties at the cut stay in).
        var cut = -Float.infinity
        if let neighbors = settings.neighbors, neighbors < promptCount - (excluding == nil ? 0 : 1) {
            var candidates = similarity
            if let excluding { candidates.remove(at: excluding) }
            cut = Self.largest(neighbors, of: &candidates)
        }
        // With no positive similarity at all, every battle weighs the same (γ).
        let scale = maxSimilarity > 0 ? 1 / Double(maxSimilarity) : 0
        let logGamma = log(settings.gamma)
        let perPrompt = settings.weightUnit == .prompt
        let models = index.models.count
        var wins = [Double](repeating: 0, count: models * models)
        var totalWeight = 0.0
        var squaredWeight = 0.0
        var battleWeight = 0.0
        for prompt in 0..<promptCount where prompt != excluding && similarity[prompt] >= cut {
            let range = index.promptStart[prompt]..<index.promptStart[prompt + 1]
            if range.isEmpty { continue }
            let similarityWeight = exp(logGamma * (1 + Double(similarity[prompt]) * scale))
            let weight = perPrompt ? similarityWeight / promptMass[prompt] : similarityWeight
            var rowWeight = 0.0
            for position in range {
                let win = index.wins[position]
                let amount = weight * Double(win.weight)
                wins[win.winner * models + win.loser] += amount
                rowWeight += amount
            }
            totalWeight += rowWeight
            // Per prompt, Σ over its battles of amount × weight: ω²/m for a prompt whose battles weigh m.
            squaredWeight += perPrompt ? similarityWeight * similarityWeight * shares[prompt].inverseBattleWeight : rowWeight * weight
            battleWeight += shares[prompt].battleWeight
        }
        let meanWeight = battleWeight > 0 ? totalWeight / battleWeight : 1
        return (wins, settings.prior * meanWeight, squaredWeight > 0 ? totalWeight / squaredWeight : 1)
    }

    /// The k-th largest value (k ≥ 1) of `values`, by quickselect; reorders `values`.
    static func largest(_ k: Int, of values: inout [Float]) -> Float {
        var low = 0
        var high = values.count - 1
        let target = k - 1
        while low < high {
            let pivot = values[(low + high) / 2]
            var i = low
            var j = high
            while i <= j {
                while values[i] > pivot { i += 1 }
                while values[j] < pivot { j -= 1 }
                if i <= j {
                    values.swapAt(i, j)
                    i += 1
                    j -= 1
                }
            }
            if target <= j {
                high = j
            } else if target >= i {
                low = i
            } else {
                break
            }
        }
        return values[target]
    }
}
