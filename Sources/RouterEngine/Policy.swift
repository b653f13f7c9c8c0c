import RouterConfig

/// One of a router's candidate models.
public struct Candidate: Sendable, Hashable {
    /// The name as the router's config gives it (and as its plugin knows it).
    public var name: String
    /// Its catalogue entry; nil when the config has no catalogue.
    public var price: ModelCatalogue.Model?
    /// 0 for the cheapest candidate, rising with price (for two candidates without prices: weak 0, strong 1).
    /// A session never moves to a lower rank.
    public var rank: Int
}

/// One candidate's figures in a decision.
public struct CandidateEstimate: Sendable, Hashable {
    public var model: String
    /// Predicted quality on the router's scale (a win probability for two-model plugins).
    public var quality: Double
    /// Expected cost of this prompt on this model, in USD; nil without a catalogue.
    public var cost: Double?
}

/// A request's override of its router's policy.
public enum PolicyOverride: Sendable, Hashable {
    /// Strong when P(strong wins) ≥ this (two-candidate routers).
    case threshold(Double)
    /// Choose by quality − λ × cost.
    case lambda(Double)
    /// The cheapest within ε of the best predicted quality.
    case cheapestWithin(Double)
    /// The number in a `router-<name>-<number>` model name: the router's own knob, that is its
    /// threshold, λ (lambda and budget policies) or ε (cheapest_within).
    case knob(Double)
}

/// How a session shaped a decision.
public enum SessionAffinity: String, Sendable, Hashable {
    /// The session's first decision (or its first since it expired): the policy's choice, remembered.
    case new
    /// The session's model, kept although the policy chose a cheaper one.
    case kept
    /// The policy chose a dearer model than the session's; the session moves up to it.
    case escalated
    /// The policy chose the session's model.
    case same
}
