/// Thresholds from a share of traffic: operators think in "send 30% to the
/// strong model", routers decide with "score ≥ threshold".
public enum Calibration {
    /// The threshold that sends `fraction` of prompts to the strong model, given
    /// sorted scores (or a table of score quantiles at evenly spaced levels):
    /// the (1 − fraction) quantile, linearly interpolated.
    public static func threshold(strongFraction fraction: Double, sortedScores scores: [Double]) -> Double {
        precondition(!scores.isEmpty)
        let position = (1 - min(max(fraction, 0), 1)) * Double(scores.count - 1)
        let lower = Int(position.rounded(.down))
        let upper = min(lower + 1, scores.count - 1)
        return scores[lower] + (scores[upper] - scores[lower]) * (position - Double(lower))
    }
}
