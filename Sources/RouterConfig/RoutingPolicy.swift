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
