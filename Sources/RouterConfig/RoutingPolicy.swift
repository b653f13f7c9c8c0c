/// How a router turns its predictions into a choice of model.
public enum RoutingPolicy: Sendable, Hashable {
    /// Two candidates: the strong model when P(strong wins) ≥ the threshold.
    case threshold(Double)
    /// Two candidates: the threshold that sends this share of traffic to the strong model.
    case strongFraction(Double)
    /// The candidate with the largest predicted quality − λ × expected cost (USD).
    case lambda(Double)
    /// The cheapest candidate whose predicted quality is within ε of the best.
    case cheapestWithin(Double)
    /// λ tuned online so that the traffic meets a target.
    case budget(Budget)

    /// The name `status`, replies and the docs use.
    public var name: String {
        switch self {
        case .threshold: "threshold"
        case .strongFraction: "strong_fraction"
        case .lambda: "lambda"
        case .cheapestWithin: "cheapest_within"
        case .budget: "budget"
        }
    }

    /// Whether the policy decides between a strong and a weak model by a threshold.
    public var isBinary: Bool {
        switch self {
        case .threshold, .strongFraction: true
        case .lambda, .cheapestWithin, .budget: false
        }
    }

    public static let names = ["threshold", "strong_fraction", "lambda", "cheapest_within", "budget"]
}

/// A target the budget controller holds over a sliding window of decisions.
public struct Budget: Sendable, Hashable {
    public enum Target: Sendable, Hashable {
        /// Mean expected cost per request, in USD.
        case meanCost(Double)
        /// The share of requests sent to one candidate.
        case share(model: String, fraction: Double)
    }

    public var target: Target
    /// The decisions the controller looks back over.
    public var window: Int
    /// λ is re-fitted after this many decisions.
    public var updateEvery: Int

    public init(target: Target, window: Int = 1000, updateEvery: Int = 16) {
        self.target = target
        self.window = window
        self.updateEvery = updateEvery
    }
}

/// The choice rules of the policies, defined once: the daemon decides with them, the budget
/// controller replays them, and `routerctl eval` sweeps them, so all three choose alike.
public enum PolicyRule {
    /// The position maximising quality − λ × cost; ties go to the cheaper candidate.
    @inlinable
    public static func bestUtility<Values: RandomAccessCollection<Double>>(qualities: Values, costs: Values, lambda: Double) -> Int
    where Values.Index == Int {
        let (q, c) = (qualities.startIndex, costs.startIndex)
        var best = 0
        var bestUtility = -Double.infinity
        for offset in 0..<qualities.count {
            let utility = qualities[q + offset] - lambda * costs[c + offset]
            if utility > bestUtility || (utility == bestUtility && costs[c + offset] < costs[c + best]) {
                best = offset
                bestUtility = utility
            }
        }
        return best
    }

    /// The cheapest position whose quality is within `epsilon` of the best.
    public static func cheapestWithin(qualities: [Double], costs: [Double], epsilon: Double) -> Int {
        let top = qualities.max() ?? 0
        var best = qualities.firstIndex(of: top) ?? 0
        for index in qualities.indices where qualities[index] >= top - epsilon {
            if costs[index] < costs[best] || (costs[index] == costs[best] && qualities[index] > qualities[best]) { best = index }
        }
        return best
    }
}
