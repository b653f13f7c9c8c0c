import Foundation

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

    /// The `score_quantiles` a plugin publishes in its description, if any:
    /// scores at 0, 1, …, 100% of its calibration prompts.
    public static func quantiles(fromDescription json: String?) -> [Double]? {
        guard let json, let object = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any],
            let values = object["score_quantiles"] as? [NSNumber], values.count >= 2
        else { return nil }
        let quantiles = values.map(\.doubleValue)
        guard zip(quantiles, quantiles.dropFirst()).allSatisfy({ $0 <= $1 }), quantiles.allSatisfy({ (0...1).contains($0) }) else { return nil }
        return quantiles
    }
}
