import RouterConfig
import StableHash
import Synchronization

/// A router's exploration: which candidate a decision explores, and the probability with which
/// its model was chosen (its propensity), logged with the decision so that a later estimate can
/// weigh its outcome by 1 / propensity (off-policy evaluation).
///
/// ε-greedy: with probability ε the decision goes to another candidate, drawn uniformly from
/// those whose expected cost is within `max_extra_cost` of the greedy choice's; so each of k
/// eligible candidates has propensity ε / k, and the greedy choice 1 − ε. With none eligible the
/// greedy choice is certain (propensity 1).
///
/// Thompson sampling (``thompson(greedy:choices:costs:)``): with probability s (`max_share`) the
/// decision takes the policy's choice under one draw from the router's posterior, else the greedy
/// one. A candidate's propensity is (1 − s)·[greedy] + s·f, f its share of the draws' choices:
/// a Monte Carlo estimate of the probability that a draw chooses it, exact as draws grow.
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

    /// A seed for one decision's posterior draws.
    func nextSeed() -> UInt64 { generator.withLock { $0.next() } }

    /// The candidate a Thompson-sampling decision goes to, given the greedy one and the policy's
    /// choice under each posterior draw (`choices`, the first the one the decision follows). A
    /// draw choosing a candidate dearer than `max_extra_cost` above the greedy one counts as greedy.
    func thompson(greedy: Int, choices: [Int], costs: [Double]?) -> Choice {
        precondition(!choices.isEmpty)
        let share = settings.epsilon
        let bounded = choices.map { choice in
            guard let bound = settings.maxExtraCost, let costs, costs[choice] - costs[greedy] > bound else { return choice }
            return greedy
        }
        let follows = generator.withLock { $0.unit() } < share
        let chosen = follows ? bounded[0] : greedy
        let frequency = Double(bounded.count { $0 == chosen }) / Double(bounded.count)
        let propensity = (chosen == greedy ? 1 - share : 0) + share * frequency
        let extra = chosen == greedy ? 0 : costs.map { $0[chosen] - $0[greedy] } ?? 0
        return Choice(chosen: chosen, propensity: propensity, explored: chosen != greedy, extraCost: extra)
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
