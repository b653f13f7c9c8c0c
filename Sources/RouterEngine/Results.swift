import RouterVocabulary
import TextEncoder

/// Which model a decision picked.
public enum RoutingTier: String, Sendable, Hashable {
    case strong, weak
}

/// One `route` decision, as the engine made it.
public struct RoutingDecision: Sendable, Hashable {
    /// Names this decision in a later `feedback`.
    public var id: String
    /// The model to call, as the router's config names it.
    public var model: String
    /// For a router of two candidates: whether `model` is its strong or its weak one.
    public var tier: RoutingTier?
    /// The policy that decided (`threshold`, `strong_fraction`, `lambda`, `cheapest_within`, `budget`),
    /// or the kind of a request's override.
    public var policy: String
    /// P(strong model wins), in [0, 1], under a threshold policy.
    public var score: Double?
    /// Strong when score ≥ threshold, under a threshold policy.
    public var threshold: Double?
    /// The λ of quality − λ × cost, under the lambda and budget policies.
    public var lambda: Double?
    /// The ε of cheapest_within.
    public var epsilon: Double?
    /// Every candidate's predicted quality and expected cost, in the router's order.
    public var candidates: [CandidateEstimate]
    /// How the request's session shaped the decision, when it named one.
    public var affinity: SessionAffinity?
    public var router: String
    /// The generation whose router decided.
    public var generation: UInt64
    /// Time spent deciding, in microseconds.
    public var elapsedMicroseconds: Double
    /// With exploration configured: the probability with which `model` was chosen, and whether
    /// the draw explored (chose other than the policy's greedy choice).
    public var propensity: Double? = nil
    public var explored: Bool? = nil
    /// With `novelty:`: how familiar the prompt is to the router, and whether it counts as novel.
    public var familiarity: Double? = nil
    public var novel: Bool? = nil
    /// The decision's place in its router's budget window, when a budget held it: the gateway
    /// settles the real cost there.
    public var budgetTicket: BudgetTicket? = nil
}

/// Embeddings of texts by one encoder.
public struct Embeddings: Sendable {
    public var encoder: String
    public var dimension: Int
    /// One L2-normalised vector per text, in order.
    public var vectors: [[Float]]
    /// The token ids the model saw, when asked for.
    public var tokens: [[Int32]]?
    public var policy: LongTextPolicy
}

/// What a reload did.
public struct ReloadOutcome: Sendable, Hashable {
    /// The generation now serving; after a dry run, still the previous one.
    public var generation: UInt64
    public var previousGeneration: UInt64
    /// The new generation's routers, in config order.
    public var routers: [String]
    /// Routers whose plugin instance carried over unchanged.
    public var reused: [String]
    public var dryRun: Bool
}

/// What a `set` did.
public struct SetOutcome: Sendable, Hashable {
    public var router: String
    public var threshold: Double
    /// The strong share the threshold was derived from, when one was given.
    public var strongFraction: Double?
    public var generation: UInt64
    public var previousGeneration: UInt64
}
