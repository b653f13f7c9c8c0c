import Foundation

/// Bradley–Terry strengths from weighted wins, by minorisation–maximisation
/// (Hunter 2004): each model's strength is its wins over its expected games.
///
/// RouteLLM fits the same model as Elo ratings with a logistic regression over
/// every battle; with wins aggregated per model pair the fit touches only the
/// few models involved, which is what makes `sw_ranking` fast.
public enum BradleyTerry {
    /// Log-strengths θ, so that P(i beats j) = σ(θᵢ − θⱼ).
    ///
    /// `wins[i * models + j]` is the weight of i beating j (a tie counts ½ each
    /// way). `prior` is the weight of one virtual tied game each model plays
    /// against a reference of strength 1: it keeps models with no losses (or no
    /// games) finite and pulls sparse evidence toward the middle.
    public static func fit(wins: [Double], models: Int, prior: Double, iterations: Int = 1000, tolerance: Double = 1e-7) -> [Double] {
        precondition(wins.count == models * models && prior > 0)
        var totalWins = [Double](repeating: prior / 2, count: models)
        for i in 0..<models { for j in 0..<models { totalWins[i] += wins[i * models + j] } }
        var strength = [Double](repeating: 1, count: models)
        for _ in 0..<iterations {
            var change = 0.0
            for i in 0..<models {
                var expected = prior / (strength[i] + 1)
                for j in 0..<models where j != i {
                    let games = wins[i * models + j] + wins[j * models + i]
                    if games > 0 { expected += games / (strength[i] + strength[j]) }
                }
                let updated = totalWins[i] / expected
                change = max(change, abs(updated - strength[i]) / strength[i])
                strength[i] = updated
            }
            // Relative change, not log change: a log per model per iteration was a third of a query's time.
            if change < tolerance { break }
        }
        return strength.map { log($0) }
    }

    /// P(a beats b) from log-strengths.
    public static func winProbability(_ theta: [Double], _ a: Int, _ b: Int) -> Double {
        1 / (1 + exp(theta[b] - theta[a]))
    }
}
