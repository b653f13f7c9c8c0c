import StableHash

/// An estimate and its bootstrap percentile interval.
public struct Interval: Sendable, Hashable {
    public var value: Double
    public var low: Double
    public var high: Double

    public init(value: Double, low: Double, high: Double) {
        self.value = value
        self.low = low
        self.high = high
    }

    public func covers(_ truth: Double) -> Bool { low <= truth && truth <= high }
}

/// What another policy would have achieved on the logged decisions, by three estimators.
public struct PolicyEstimate: Sendable, Hashable {
    /// Inverse propensity scoring: the mean of reward × 1[target agrees] / propensity. Unbiased
    /// when every model the target chooses had a positive logging probability; its variance grows
    /// with the weights.
    public var inversePropensity: Interval
    /// Self-normalised IPS: the same weighted rewards over the sum of the weights. Slightly
    /// biased, far less variable when weights are large; nil when the target agreed with no decision.
    public var selfNormalised: Interval?
    /// Doubly robust: a reward model's prediction for the target's choice, corrected by the
    /// weighted residual where the target agrees with the log. Unbiased if either the
    /// propensities or the reward model is right, and less variable than IPS.
    public var doublyRobust: Interval
    /// The share of logged decisions whose model the target would have chosen too.
    public var agreement: Double
    /// Kish's effective sample size of the weights (Σw)² / Σw²: how many decisions the IPS estimate is worth.
    public var effectiveSampleSize: Double
}

/// Off-policy estimates from logged decisions with propensities, as in contextual-bandit
/// practice (Vowpal Wabbit's `--cb` evaluation, Dudík, Langford & Li 2011): the value of a
/// deterministic target policy, given the model it would have chosen on each logged decision.
///
/// The doubly robust estimate's reward model is each model's mean reported quality, weighted by
/// 1 / propensity so that it estimates the model's mean over all prompts rather than over the
/// prompts the logging policy sent it, and shrunk toward the overall mean by one decision's
/// weight so a model seldom chosen is not trusted on one outcome. It is fitted leaving each
/// decision out of its own prediction, so no decision's reward corrects itself.
///
/// Intervals come from the bootstrap: decisions are resampled with replacement `resamples`
/// times (seeded, so a run is reproducible), each estimator recomputed on each resample, and the
/// percentiles at (1 ± confidence) / 2 taken.
public struct OffPolicyEstimator: Sendable {
    public let logged: [LoggedOutcome]
    public var confidence = 0.95
    public var resamples = 1000
    public var seed: UInt64 = 1

    public init(logged: [LoggedOutcome]) {
        precondition(!logged.isEmpty, "an estimate needs at least one logged decision")
        self.logged = logged
    }

    /// The logging policy's own value: the mean reported quality.
    public func loggedValue() -> Interval {
        let rewards = logged.map(\.quality)
        var generator = SplitMix64(seed: seed)
        let values = (0..<resamples).map { _ in
            var sum = 0.0
            for _ in rewards.indices { sum += rewards[Self.draw(rewards.count, &generator)] }
            return sum / Double(rewards.count)
        }
        return interval(mean(rewards), values)
    }

    /// The value of the policy that would have chosen `choices[i]` on decision `i`.
    public func estimate(choices: [String]) -> PolicyEstimate {
        precondition(choices.count == logged.count, "one target choice per logged decision")
        let model = RewardModel(logged)
        let count = logged.count
        // Per decision: the importance weight of the target's agreement (0 where it disagrees),
        // and the doubly robust term.
        var weights = [Double](repeating: 0, count: count)
        var robust = [Double](repeating: 0, count: count)
        for (index, outcome) in logged.enumerated() {
            let agrees = choices[index] == outcome.model
            let weight = agrees ? 1 / outcome.propensity : 0
            weights[index] = weight
            let predicted = model.predict(choices[index], leavingOut: index)
            robust[index] = predicted + weight * (outcome.quality - model.predict(outcome.model, leavingOut: index))
        }
        let weighted = zip(weights, logged).map { $0 * $1.quality }
        let weightSum = weights.reduce(0, +)
        var generator = SplitMix64(seed: seed)
        var ipsValues: [Double] = []
        var snipsValues: [Double] = []
        var robustValues: [Double] = []
        for _ in 0..<resamples {
            var (ips, snipsWeight, dr) = (0.0, 0.0, 0.0)
            for _ in 0..<count {
                let index = Self.draw(count, &generator)
                ips += weighted[index]
                snipsWeight += weights[index]
                dr += robust[index]
            }
            ipsValues.append(ips / Double(count))
            if snipsWeight > 0 { snipsValues.append(ips / snipsWeight) }
            robustValues.append(dr / Double(count))
        }
        let squares = weights.reduce(0) { $0 + $1 * $1 }
        return PolicyEstimate(
            inversePropensity: interval(weighted.reduce(0, +) / Double(count), ipsValues),
            selfNormalised: weightSum > 0 ? interval(weighted.reduce(0, +) / weightSum, snipsValues) : nil,
            doublyRobust: interval(mean(robust), robustValues),
            agreement: Double(zip(choices, logged).filter { $0 == $1.model }.count) / Double(count),
            effectiveSampleSize: squares > 0 ? weightSum * weightSum / squares : 0)
    }

    /// Each model's propensity-weighted mean quality, shrunk toward the overall mean, with one
    /// decision's own outcome left out on demand.
    struct RewardModel {
        /// Per model: Σ quality / propensity and Σ 1 / propensity.
        var sums: [String: (reward: Double, weight: Double)] = [:]
        var total = 0.0
        let logged: [LoggedOutcome]
        /// How many decisions' weight the overall mean counts for.
        static let priorWeight = 1.0

        init(_ logged: [LoggedOutcome]) {
            self.logged = logged
            for outcome in logged {
                let weight = 1 / outcome.propensity
                sums[outcome.model, default: (0, 0)].reward += outcome.quality * weight
                sums[outcome.model, default: (0, 0)].weight += weight
                total += outcome.quality
            }
        }

        func predict(_ model: String, leavingOut index: Int) -> Double {
            let left = logged[index]
            let count = Double(logged.count - 1)
            let prior = count > 0 ? (total - left.quality) / count : 0.5
            var (reward, weight) = sums[model] ?? (0, 0)
            if left.model == model {
                reward -= left.quality / left.propensity
                weight -= 1 / left.propensity
            }
            return (reward + Self.priorWeight * prior) / (max(weight, 0) + Self.priorWeight)
        }
    }

    private func mean(_ values: [Double]) -> Double { values.reduce(0, +) / Double(values.count) }

    private func interval(_ value: Double, _ resampled: [Double]) -> Interval {
        let sorted = resampled.sorted()
        guard !sorted.isEmpty else { return Interval(value: value, low: value, high: value) }
        let tail = (1 - confidence) / 2
        let last = Double(sorted.count - 1)
        return Interval(
            value: value, low: sorted[Int((tail * last).rounded(.down))], high: sorted[Int(((1 - tail) * last).rounded(.up))])
    }

    private static func draw(_ count: Int, _ generator: inout SplitMix64) -> Int { Int(generator.next() % UInt64(count)) }
}
