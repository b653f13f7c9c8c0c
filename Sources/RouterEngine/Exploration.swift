import RouterConfig
import StableHash
import Synchronization

/// A router's ε-greedy exploration: which candidate a decision explores, and the probability
/// with which its model was chosen (its propensity), logged with the decision so that a later
/// estimate can weigh its outcome by 1 / propensity (off-policy evaluation).
///
/// With probability ε the decision goes to another candidate, drawn uniformly from those whose
/// expected cost is within `max_extra_cost` of the greedy choice's; so each of k eligible
/// candidates has propensity ε / k, and the greedy choice 1 − ε. With none eligible the greedy
/// choice is certain (propensity 1).
final class Explorer: Sendable {
    let settings: DaemonConfig.Exploration
    private let generator: Mutex<SplitMix64>

    init(_ settings: DaemonConfig.Exploration) {
        self.settings = settings
        generator = Mutex(SplitMix64(seed: settings.seed ?? UInt64.random(in: 0...UInt64.max)))
    }

    /// What the draw made of a greedy choice.
    struct Choice: Equatable {
        var chosen: Int
        var propensity: Double
        var explored: Bool
        /// Expected USD above the greedy choice's, when explored with prices.
        var extraCost: Double
    }

    /// The candidate a decision goes to, given the greedy one and the candidates' expected costs (nil without prices).
    func choose(greedy: Int, candidates: Int, costs: [Double]?) -> Choice {
        let epsilon = settings.epsilon
        let eligible = (0..<candidates).filter { other in
            guard other != greedy else { return false }
            guard let bound = settings.maxExtraCost, let costs else { return true }
            return costs[other] - costs[greedy] <= bound
        }
        guard !eligible.isEmpty else { return Choice(chosen: greedy, propensity: 1, explored: false, extraCost: 0) }
        let draw = generator.withLock { $0.unit() }
        guard draw < epsilon else { return Choice(chosen: greedy, propensity: 1 - epsilon, explored: false, extraCost: 0) }
        let other = eligible[min(eligible.count - 1, Int(draw / epsilon * Double(eligible.count)))]
        let extra = costs.map { $0[other] - $0[greedy] } ?? 0
        return Choice(chosen: other, propensity: epsilon / Double(eligible.count), explored: true, extraCost: extra)
    }
}
