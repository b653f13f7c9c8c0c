import Foundation
import RouterJSON

/// Which model a decision picked.
public enum Tier: String, Codable, Sendable {
    case strong, weak
}

/// One candidate's figures in a `route` result.
public struct CandidateInfo: Codable, Sendable, Hashable {
    public var model: String
    /// Predicted quality, on the router's scale (see `routers`).
    public var quality: Double
    /// Expected cost of this prompt on this model, in USD; absent without a catalogue.
    public var cost: Double?

    public init(model: String, quality: Double, cost: Double?) {
        self.model = model
        self.quality = quality
        self.cost = cost
    }
}

/// The result of `route`.
public struct Decision: Codable, Sendable, Hashable {
    /// Names this decision in a later `feedback`.
    public var decisionID: String
    /// The model to call.
    public var model: String
    /// For a router of two candidates: whether `model` is the strong or the weak one.
    public var tier: Tier?
    /// The policy that decided: threshold, strong_fraction, lambda, cheapest_within or budget.
    public var policy: String
    /// P(strong model wins), in [0, 1], under a threshold policy.
    public var score: Double?
    /// The threshold applied: strong when score ≥ threshold.
    public var threshold: Double?
    /// The λ of quality − λ × cost (lambda and budget policies).
    public var lambda: Double?
    /// The ε of cheapest_within.
    public var epsilon: Double?
    /// Every candidate's predicted quality and expected cost.
    public var candidates: [CandidateInfo]
    /// How the request's session shaped the decision: new, same, kept or escalated.
    public var affinity: String?
    public var router: String
    /// The config generation whose router decided.
    public var generation: UInt64
    /// Time spent deciding inside the daemon, in microseconds.
    public var elapsedMicroseconds: Double
    /// With exploration (`explore:`): the probability with which `model` was chosen, and whether
    /// the decision explored.
    public var propensity: Double?
    public var explored: Bool?
    /// With `novelty:`: how familiar the prompt is to the router, in [0, 1], and whether that is
    /// below the router's threshold (a novel prompt).
    public var familiarity: Double?
    public var novel: Bool?

    public init(
        decisionID: String, model: String, tier: Tier?, policy: String, score: Double?, threshold: Double?, lambda: Double? = nil,
        epsilon: Double? = nil,
        candidates: [CandidateInfo] = [], affinity: String? = nil, router: String, generation: UInt64, elapsedMicroseconds: Double,
        propensity: Double? = nil, explored: Bool? = nil, familiarity: Double? = nil, novel: Bool? = nil
    ) {
        self.familiarity = familiarity
        self.novel = novel
        self.propensity = propensity
        self.explored = explored
        self.decisionID = decisionID
        self.model = model
        self.tier = tier
        self.policy = policy
        self.score = score
        self.threshold = threshold
        self.lambda = lambda
        self.epsilon = epsilon
        self.candidates = candidates
        self.affinity = affinity
        self.router = router
        self.generation = generation
        self.elapsedMicroseconds = elapsedMicroseconds
    }

    /// The wire name of each field, defined once: the Codable conformance, the
    /// hot-path writer (`ResponseCodec.success(_:id:)`) and the decision log use these.
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case elapsedMicroseconds = "elapsed_us"
        case decisionID = "decision_id"
        case affinity, candidates, epsilon, explored, familiarity, generation, lambda, model, novel, policy, propensity, router, score, threshold,
            tier
    }

    /// Writes the fields into an open JSON object, keys in sorted order; absent optionals are left out.
    public func writeFields(into writer: inout JSONWriter) {
        if let affinity {
            writer.key(CodingKeys.affinity)
            writer.string(affinity)
        }
        writer.key(CodingKeys.candidates)
        writer.beginArray()
        for candidate in candidates {
            writer.beginObject()
            if let cost = candidate.cost {
                writer.key("cost")
                writer.number(cost)
            }
            writer.key("model")
            writer.string(candidate.model)
            writer.key("quality")
            writer.number(candidate.quality)
            writer.endObject()
        }
        writer.endArray()
        writer.key(CodingKeys.decisionID)
        writer.string(decisionID)
        writer.key(CodingKeys.elapsedMicroseconds)
        writer.number(elapsedMicroseconds)
        if let epsilon {
            writer.key(CodingKeys.epsilon)
            writer.number(epsilon)
        }
        if let explored {
            writer.key(CodingKeys.explored)
            writer.bool(explored)
        }
        if let familiarity {
            writer.key(CodingKeys.familiarity)
            writer.number(familiarity)
        }
        writer.key(CodingKeys.generation)
        writer.number(generation)
        if let lambda {
            writer.key(CodingKeys.lambda)
            writer.number(lambda)
        }
        writer.key(CodingKeys.model)
        writer.string(model)
        if let novel {
            writer.key(CodingKeys.novel)
            writer.bool(novel)
        }
        writer.key(CodingKeys.policy)
        writer.string(policy)
        if let propensity {
            writer.key(CodingKeys.propensity)
            writer.number(propensity)
        }
        writer.key(CodingKeys.router)
        writer.string(router)
        if let score {
            writer.key(CodingKeys.score)
            writer.number(score)
        }
        if let threshold {
            writer.key(CodingKeys.threshold)
            writer.number(threshold)
        }
        if let tier {
            writer.key(CodingKeys.tier)
            writer.string(tier.rawValue)
        }
    }

    /// The fields as a JSON object's members, for records that add fields of their own.
    public var fields: [String: JSONValue] {
        var members: [String: JSONValue] = [
            CodingKeys.decisionID.rawValue: .string(decisionID),
            CodingKeys.elapsedMicroseconds.rawValue: .number(elapsedMicroseconds), CodingKeys.generation.rawValue: .integer(Int64(generation)),
            CodingKeys.model.rawValue: .string(model), CodingKeys.policy.rawValue: .string(policy), CodingKeys.router.rawValue: .string(router),
            CodingKeys.candidates.rawValue: .array(
                candidates.map { candidate in
                    var object: [String: JSONValue] = ["model": .string(candidate.model), "quality": .number(candidate.quality)]
                    if let cost = candidate.cost { object["cost"] = .number(cost) }
                    return .object(object)
                }),
        ]
        if let tier { members[CodingKeys.tier.rawValue] = .string(tier.rawValue) }
        if let score { members[CodingKeys.score.rawValue] = .number(score) }
        if let threshold { members[CodingKeys.threshold.rawValue] = .number(threshold) }
        if let lambda { members[CodingKeys.lambda.rawValue] = .number(lambda) }
        if let epsilon { members[CodingKeys.epsilon.rawValue] = .number(epsilon) }
        if let affinity { members[CodingKeys.affinity.rawValue] = .string(affinity) }
        if let propensity { members[CodingKeys.propensity.rawValue] = .number(propensity) }
        if let explored { members[CodingKeys.explored.rawValue] = .bool(explored) }
        if let familiarity { members[CodingKeys.familiarity.rawValue] = .number(familiarity) }
        if let novel { members[CodingKeys.novel.rawValue] = .bool(novel) }
        return members
    }
}

/// The result of `score`.
public struct ScoreResult: Codable, Sendable, Hashable {
    public var router: String
    public var generation: UInt64
    /// P(strong model wins) for each prompt, in request order.
    public var scores: [Double]
    public var elapsedMicroseconds: Double

    public init(router: String, generation: UInt64, scores: [Double], elapsedMicroseconds: Double) {
        self.router = router
        self.generation = generation
        self.scores = scores
        self.elapsedMicroseconds = elapsedMicroseconds
    }

    enum CodingKeys: String, CodingKey {
        case router, generation, scores
        case elapsedMicroseconds = "elapsed_us"
    }
}

/// The result of `embed`.
public struct EmbedResult: Codable, Sendable, Hashable {
    public var encoder: String
    public var dimension: Int
    /// One L2-normalised vector per text, in request order.
    public var embeddings: [[Float]]
    /// The token ids the model saw ([CLS] … [SEP]), when asked for.
    public var tokens: [[Int32]]?
    public var longText: String
    public var elapsedMicroseconds: Double

    public init(encoder: String, dimension: Int, embeddings: [[Float]], tokens: [[Int32]]?, longText: String, elapsedMicroseconds: Double) {
        self.encoder = encoder
        self.dimension = dimension
        self.embeddings = embeddings
        self.tokens = tokens
        self.longText = longText
        self.elapsedMicroseconds = elapsedMicroseconds
    }

    enum CodingKeys: String, CodingKey {
        case encoder, dimension, embeddings, tokens
        case longText = "long_text"
        case elapsedMicroseconds = "elapsed_us"
    }
}

/// An encoder's embedding cache and batcher in `stats`.
///
/// The counters sum every user's traffic, so only an admin peer gets them: to anyone else they
/// are absent (nil), and only the capacity and the kernel are shown.
public struct EncoderStats: Codable, Sendable, Hashable {
    public var hits: UInt64?
    public var misses: UInt64?
    public var entries: Int?
    public var capacity: Int
    /// hits / (hits + misses), or 0 before any lookup.
    public var hitRate: Double?
    /// Passes through the encoder, the texts they embedded, and the requests they served: more
    /// requests than batches means concurrent requests shared passes.
    public var batches: UInt64?
    public var batchedTexts: UInt64?
    public var batchedRequests: UInt64?
    /// The most texts one pass has taken.
    public var largestBatch: Int?
    /// The library running the linear layers and the precision it runs them in.
    public var kernel: String?
    public var precision: String?

    public init(
        hits: UInt64, misses: UInt64, entries: Int, capacity: Int, batches: UInt64 = 0, batchedTexts: UInt64 = 0, batchedRequests: UInt64 = 0,
        largestBatch: Int = 0, kernel: String? = nil, precision: String? = nil
    ) {
        self.kernel = kernel
        self.precision = precision
        self.hits = hits
        self.misses = misses
        self.entries = entries
        self.capacity = capacity
        hitRate = hits + misses == 0 ? 0 : Double(hits) / Double(hits + misses)
        self.batches = batches
        self.batchedTexts = batchedTexts
        self.batchedRequests = batchedRequests
        self.largestBatch = largestBatch
    }

    /// What a peer that is not an admin sees: the settings, none of the counters.
    public var withoutCounters: EncoderStats {
        var settings = self
        (settings.hits, settings.misses, settings.entries, settings.hitRate) = (nil, nil, nil, nil)
        (settings.batches, settings.batchedTexts, settings.batchedRequests, settings.largestBatch) = (nil, nil, nil, nil)
        return settings
    }

    enum CodingKeys: String, CodingKey {
        case hits, misses, entries, capacity, batches, kernel, precision
        case hitRate = "hit_rate"
        case batchedTexts = "batched_texts"
        case batchedRequests = "batched_requests"
        case largestBatch = "largest_batch"
    }
}

/// One router instance, as `routers` lists it.
public struct RouterInfo: Codable, Sendable, Hashable {
    public var name: String
    public var plugin: String
    public var pluginVersion: String
    /// The policy: threshold, strong_fraction, lambda, cheapest_within or budget.
    public var policy: String
    /// The models it chooses among.
    public var candidates: [String]
    /// What its candidates' predicted qualities mean: win_rate, probability or score.
    public var quality: String
    /// The threshold, under a threshold policy.
    public var threshold: Double?
    /// The λ of a lambda policy, or the one a budget holds now.
    public var lambda: Double?
    /// The ε of cheapest_within.
    public var epsilon: Double?
    public var strongModel: String
    public var weakModel: String
    public var encoder: String?
    /// The configured share of strong calls, when the threshold was derived from it.
    public var strongFraction: Double?
    public var generation: UInt64
    /// What the plugin says about the instance (its description), as a JSON object.
    public var details: [String: JSONValue]?

    public init(
        name: String, plugin: String, pluginVersion: String, policy: String, candidates: [String], quality: String, threshold: Double?,
        lambda: Double? = nil, epsilon: Double? = nil, strongModel: String, weakModel: String, encoder: String?, strongFraction: Double? = nil,
        generation: UInt64, details: [String: JSONValue]?
    ) {
        self.policy = policy
        self.candidates = candidates
        self.quality = quality
        self.lambda = lambda
        self.epsilon = epsilon
        self.encoder = encoder
        self.strongFraction = strongFraction
        self.name = name
        self.plugin = plugin
        self.pluginVersion = pluginVersion
        self.threshold = threshold
        self.strongModel = strongModel
        self.weakModel = weakModel
        self.generation = generation
        self.details = details
    }

    enum CodingKeys: String, CodingKey {
        case name, plugin, threshold, generation, details, encoder, policy, candidates, quality, lambda, epsilon
        case strongFraction = "strong_fraction"
        case pluginVersion = "plugin_version"
        case strongModel = "strong_model"
        case weakModel = "weak_model"
    }
}

/// The result of `routers`.
public struct RoutersResult: Codable, Sendable, Hashable {
    public var generation: UInt64
    public var routers: [RouterInfo]

    public init(generation: UInt64, routers: [RouterInfo]) {
        self.generation = generation
        self.routers = routers
    }
}

/// A loaded plugin library.
public struct PluginInfo: Codable, Sendable, Hashable {
    public var name: String
    public var version: String
    public var library: String
    public var abiVersion: UInt32

    public init(name: String, version: String, library: String, abiVersion: UInt32) {
        self.name = name
        self.version = version
        self.library = library
        self.abiVersion = abiVersion
    }

    enum CodingKeys: String, CodingKey {
        case name, version, library
        case abiVersion = "abi_version"
    }
}

/// The result of `health` and `status`.
public struct StatusResult: Codable, Sendable, Hashable {
    public var version: String
    public var pid: Int32
    public var uptimeSeconds: Double
    public var generation: UInt64
    public var config: String
    public var socket: String
    public var plugins: [PluginInfo]
    public var routers: [String]
    public var encoders: [String]
    /// The OpenBLAS kernels in use (e.g. SkylakeX), for the encoder's speed.
    public var blasCore: String
    /// Per encoder: the library running its linear layers, the implementation that library chose,
    /// and the precision, e.g. "onednn gemm:jit fp32".
    public var encoderKernels: [String: String]
    /// Per encoder: its precision, what the config asked for, and how it was chosen.
    public var encoderPrecision: [String: EncoderPrecisionInfo]

    public init(
        version: String, pid: Int32, uptimeSeconds: Double, generation: UInt64, config: String, socket: String, plugins: [PluginInfo],
        routers: [String], encoders: [String], blasCore: String, encoderKernels: [String: String] = [:],
        encoderPrecision: [String: EncoderPrecisionInfo] = [:]
    ) {
        self.encoderPrecision = encoderPrecision
        self.encoders = encoders
        self.encoderKernels = encoderKernels
        self.blasCore = blasCore
        self.version = version
        self.pid = pid
        self.uptimeSeconds = uptimeSeconds
        self.generation = generation
        self.config = config
        self.socket = socket
        self.plugins = plugins
        self.routers = routers
    }

    enum CodingKeys: String, CodingKey {
        case version, pid, generation, config, socket, plugins, routers, encoders
        case uptimeSeconds = "uptime_seconds"
        case blasCore = "blas_core"
        case encoderKernels = "encoder_kernels"
        case encoderPrecision = "encoder_precision"
    }
}

/// An encoder's precision in `status`.
public struct EncoderPrecisionInfo: Codable, Sendable, Hashable {
    /// fp32, int8 or bf16.
    public var precision: String
    /// The config's `precision`: one of those, or auto.
    public var requested: String
    /// The accuracy gate's lowest cosine to fp32 and, under auto, each candidate's time at load.
    public var note: String

    public init(precision: String, requested: String, note: String) {
        self.precision = precision
        self.requested = requested
        self.note = note
    }
}

/// Per-router counters in `stats`.
public struct RouterStats: Codable, Sendable, Hashable {
    public var decisions: UInt64
    public var strong: UInt64
    public var weak: UInt64
    public var scored: UInt64
    public var errors: UInt64
    /// Events the plugin counted (e.g. causal_llm's `fallback.timeout`), by name.
    public var events: [String: UInt64]
    /// Decisions that took a fallback: the sum of the `fallback.*` events.
    public var fallbacks: UInt64
    /// Over the last 1,024 decisions: score quantiles (p10, p50, p90) and decision
    /// latency in microseconds (p50, p99), measured inside the daemon. Empty before the first decision.
    public var scoreQuantiles: [String: Double]
    public var latencyMicroseconds: [String: Double]
    /// Decisions by the model chosen.
    public var models: [String: UInt64]
    /// A budget policy's target, what it achieved over its window, and its λ.
    public var budget: BudgetStats?
    /// Feedback outcomes recorded, and those reporting a failed call (`outcome: failed`).
    public var outcomes: UInt64
    public var failedOutcomes: UInt64
    /// A router that explores: how much it did, and what it cost.
    public var exploration: ExplorationStats?
    /// A router with `shadow:`: each shadow's decisions on its prompts and how often they agreed.
    public var shadows: ShadowsStats?
    /// A router with `novelty:`: how much of its traffic was novel.
    public var novelty: NoveltyStats?

    public init(
        decisions: UInt64, strong: UInt64, weak: UInt64, scored: UInt64, errors: UInt64, events: [String: UInt64] = [:], fallbacks: UInt64 = 0,
        scoreQuantiles: [String: Double] = [:], latencyMicroseconds: [String: Double] = [:], models: [String: UInt64] = [:],
        outcomes: UInt64 = 0, failedOutcomes: UInt64 = 0, exploration: ExplorationStats? = nil, budget: BudgetStats? = nil,
        shadows: ShadowsStats? = nil, novelty: NoveltyStats? = nil
    ) {
        self.novelty = novelty
        self.exploration = exploration
        self.shadows = shadows
        self.outcomes = outcomes
        self.failedOutcomes = failedOutcomes
        self.models = models
        self.budget = budget
        self.decisions = decisions
        self.strong = strong
        self.weak = weak
        self.scored = scored
        self.errors = errors
        self.events = events
        self.fallbacks = fallbacks
        self.scoreQuantiles = scoreQuantiles
        self.latencyMicroseconds = latencyMicroseconds
    }

    enum CodingKeys: String, CodingKey {
        case decisions, strong, weak, scored, errors, events, fallbacks, models, budget, outcomes, exploration, shadows, novelty
        case failedOutcomes = "failed_outcomes"
        case scoreQuantiles = "score_quantiles"
        case latencyMicroseconds = "latency_us"
    }
}

/// A router's novel traffic in `stats`.
public struct NoveltyStats: Codable, Sendable, Hashable {
    /// Its configured threshold: a prompt less familiar than this is novel.
    public var threshold: Double
    /// Decisions whose familiarity was judged, those found novel, and their share.
    public var judged: UInt64
    public var novel: UInt64
    public var share: Double

    public init(threshold: Double, judged: UInt64, novel: UInt64) {
        self.threshold = threshold
        self.judged = judged
        self.novel = novel
        share = judged == 0 ? 0 : Double(novel) / Double(judged)
    }
}

/// A router's shadows in `stats`.
public struct ShadowsStats: Codable, Sendable, Hashable {
    /// Per shadow router.
    public var routers: [String: ShadowStats]
    /// Live decisions the shadows had no room to decide (their queue was full): none of the shadows saw them.
    public var dropped: UInt64

    public init(routers: [String: ShadowStats], dropped: UInt64) {
        self.routers = routers
        self.dropped = dropped
    }
}

/// One shadow router's decisions beside a live router's.
public struct ShadowStats: Codable, Sendable, Hashable {
    public var decisions: UInt64
    /// Decisions that chose the live decision's model, and their share of `decisions`.
    public var agreements: UInt64
    public var agreement: Double
    /// Decisions the shadow failed to make.
    public var errors: UInt64

    public init(decisions: UInt64, agreements: UInt64, errors: UInt64) {
        self.decisions = decisions
        self.agreements = agreements
        agreement = decisions == 0 ? 0 : Double(agreements) / Double(decisions)
        self.errors = errors
    }
}

/// A router's exploration in `stats`.
public struct ExplorationStats: Codable, Sendable, Hashable {
    /// "epsilon_greedy" or "thompson".
    public var strategy: String
    /// The most of its traffic that explores: ε-greedy's ε, or Thompson sampling's `max_share`.
    public var epsilon: Double
    /// Decisions of the router (a session's later turns, which keep its model, among them), and those that explored.
    public var drawn: UInt64
    public var explored: UInt64
    /// explored / drawn, or 0 before any draw.
    public var share: Double
    /// Expected USD the explored decisions cost above the greedy choices, in all and per decision drawn.
    public var extraCost: Double
    public var extraCostPerDecision: Double

    public init(strategy: String = "epsilon_greedy", epsilon: Double, drawn: UInt64, explored: UInt64, extraCost: Double) {
        self.strategy = strategy
        self.epsilon = epsilon
        self.drawn = drawn
        self.explored = explored
        share = drawn == 0 ? 0 : Double(explored) / Double(drawn)
        self.extraCost = extraCost
        extraCostPerDecision = drawn == 0 ? 0 : extraCost / Double(drawn)
    }

    enum CodingKeys: String, CodingKey {
        case strategy, epsilon, drawn, explored, share
        case extraCost = "extra_cost"
        case extraCostPerDecision = "extra_cost_per_decision"
    }
}

/// A budget policy in `stats`.
public struct BudgetStats: Codable, Sendable, Hashable {
    /// "mean_cost" (USD per request) or "share" (of `model`'s traffic).
    public var metric: String
    public var model: String?
    public var target: Double
    /// The metric over the decisions in the window; absent before the first.
    public var achieved: Double?
    public var lambda: Double
    /// Decisions in the window, up to `window`.
    public var decisions: Int
    public var window: Int
    /// With a fleet that shares budgets: the metric over the fleet (each host's window weighted by
    /// its decision rate), which the controller holds to the target, and the other hosts it counts.
    public var fleetAchieved: Double?
    public var fleetHosts: Int?

    public init(
        metric: String, model: String?, target: Double, achieved: Double?, lambda: Double, decisions: Int, window: Int,
        fleetAchieved: Double? = nil, fleetHosts: Int? = nil
    ) {
        self.metric = metric
        self.model = model
        self.target = target
        self.achieved = achieved
        self.lambda = lambda
        self.decisions = decisions
        self.window = window
        self.fleetAchieved = fleetAchieved
        self.fleetHosts = fleetHosts
    }

    enum CodingKeys: String, CodingKey {
        case metric, model, target, achieved, lambda, decisions, window
        case fleetAchieved = "fleet_achieved"
        case fleetHosts = "fleet_hosts"
    }
}

/// The result of `stats`: counters since the daemon started.
public struct StatsResult: Codable, Sendable, Hashable {
    public var uptimeSeconds: Double
    public var generation: UInt64
    public var connectionsOpen: UInt64
    public var connectionsTotal: UInt64
    public var connectionsRejected: UInt64
    /// Requests answered, by op name.
    public var requests: [String: UInt64]
    /// Error responses, by error code.
    public var errors: [String: UInt64]
    /// Decisions and scores, by router name.
    public var routers: [String: RouterStats]
    /// Embedding caches, by encoder name.
    public var encoders: [String: EncoderStats]
    public var reloads: UInt64
    public var reloadFailures: UInt64
    /// The last reloads and `set`s, oldest first.
    public var reloadHistory: [ReloadRecord]
    /// The decision log, when one is configured.
    public var decisionLog: DecisionLogStats?
    /// Sessions whose model is remembered (session affinity).
    public var sessions: Int
    /// The feedback store, when the config has `feedback:`.
    public var feedback: FeedbackStats?
    /// The HTTP gateway's traffic, once it has served a request.
    public var gateway: GatewayStats? = nil
    /// This daemon's part in a fleet, when the config has `fleet:` sharing outcomes.
    public var fleet: FleetStats? = nil

    public init(
        uptimeSeconds: Double, generation: UInt64, connectionsOpen: UInt64, connectionsTotal: UInt64, connectionsRejected: UInt64,
        requests: [String: UInt64], errors: [String: UInt64], routers: [String: RouterStats], encoders: [String: EncoderStats], reloads: UInt64,
        reloadFailures: UInt64, reloadHistory: [ReloadRecord] = [], decisionLog: DecisionLogStats? = nil, sessions: Int = 0,
        feedback: FeedbackStats? = nil
    ) {
        self.decisionLog = decisionLog
        self.sessions = sessions
        self.feedback = feedback
        self.reloadHistory = reloadHistory
        self.encoders = encoders
        self.uptimeSeconds = uptimeSeconds
        self.generation = generation
        self.connectionsOpen = connectionsOpen
        self.connectionsTotal = connectionsTotal
        self.connectionsRejected = connectionsRejected
        self.requests = requests
        self.errors = errors
        self.routers = routers
        self.reloads = reloads
        self.reloadFailures = reloadFailures
    }

    enum CodingKeys: String, CodingKey {
        case generation, requests, errors, routers, reloads, encoders
        case uptimeSeconds = "uptime_seconds"
        case connectionsOpen = "connections_open"
        case connectionsTotal = "connections_total"
        case connectionsRejected = "connections_rejected"
        case reloadFailures = "reload_failures"
        case reloadHistory = "reload_history"
        case decisionLog = "decision_log"
        case sessions, feedback, gateway, fleet
    }
}

/// A fleet member in `stats`: its outbox, what it shipped and learned from the others, and how late.
public struct FleetStats: Codable, Sendable, Hashable {
    public var name: String
    public var host: String
    /// This daemon's outbox in the database (host and outbox id).
    public var source: String
    public var connected: Bool
    /// Outcomes acknowledged here and not yet in the database.
    public var outboxDepth: Int64
    public var shipped: UInt64
    /// Other hosts' outcomes handed to the learner, and those no router here learns from.
    public var received: UInt64
    public var skipped: UInt64
    /// From acknowledgement on another host to this daemon's learner, over the last 1,024 received.
    public var lagP50Ms: Double?
    public var lagP99Ms: Double?
    public var lastError: String?
    /// What the fleet shares: outcomes, budgets, sessions.
    public var share: [String]
    /// Budget exchanges with the database, and the most other hosts any budget counts now.
    public var budgetExchanges: UInt64
    public var budgetHosts: Int
    /// Session decisions shipped, and other hosts' merged into this daemon's sessions.
    public var sessionsShipped: UInt64
    public var sessionsReceived: UInt64
    /// Times the outbox was rewritten without its shipped lines.
    public var compactions: UInt64

    public init(
        name: String, host: String, source: String, connected: Bool, outboxDepth: Int64, shipped: UInt64, received: UInt64, skipped: UInt64,
        lagP50Ms: Double?, lagP99Ms: Double?, lastError: String?, share: [String] = ["outcomes"], budgetExchanges: UInt64 = 0,
        budgetHosts: Int = 0, sessionsShipped: UInt64 = 0, sessionsReceived: UInt64 = 0, compactions: UInt64 = 0
    ) {
        self.name = name
        self.host = host
        self.source = source
        self.connected = connected
        self.outboxDepth = outboxDepth
        self.shipped = shipped
        self.received = received
        self.skipped = skipped
        self.lagP50Ms = lagP50Ms
        self.lagP99Ms = lagP99Ms
        self.lastError = lastError
        self.share = share
        self.budgetExchanges = budgetExchanges
        self.budgetHosts = budgetHosts
        self.sessionsShipped = sessionsShipped
        self.sessionsReceived = sessionsReceived
        self.compactions = compactions
    }

    enum CodingKeys: String, CodingKey {
        case name, host, source, connected, shipped, received, skipped, share, compactions
        case budgetExchanges = "budget_exchanges"
        case budgetHosts = "budget_hosts"
        case sessionsShipped = "sessions_shipped"
        case sessionsReceived = "sessions_received"
        case outboxDepth = "outbox_depth"
        case lagP50Ms = "lag_p50_ms"
        case lagP99Ms = "lag_p99_ms"
        case lastError = "last_error"
    }
}

/// The HTTP gateway in `stats`: its traffic by router and by the model that served.
public struct GatewayStats: Codable, Sendable, Hashable {
    public var routers: [String: GatewayTraffic]
    public var models: [String: GatewayTraffic]

    public init(routers: [String: GatewayTraffic], models: [String: GatewayTraffic]) {
        self.routers = routers
        self.models = models
    }
}

/// Gateway requests through one router, or served by one model.
public struct GatewayTraffic: Codable, Sendable, Hashable {
    /// Requests answered, and those that ended in an error to the client.
    public var requests: UInt64
    public var failed: UInt64
    /// Upstream calls (retries and fallbacks included), and requests served after a fallback.
    public var attempts: UInt64
    public var fallbacks: UInt64
    /// Failed upstream calls by class: connection, timeout, rate_limited, server_error, client_error, malformed, mid_stream.
    public var upstreamErrors: [String: UInt64]
    public var promptTokens: UInt64
    public var completionTokens: UInt64
    /// USD, from the answers' usage at the catalogue's prices; answers without usage are `unpriced`.
    public var spendUSD: Double
    public var unpriced: UInt64
    /// Mean seconds to the first byte sent to the client, and to the request's end, over served requests.
    public var meanFirstByteSeconds: Double?
    public var meanSeconds: Double?
    /// The same as p50 and p99 over the last 1,024 served requests.
    public var firstByteSeconds: [String: Double]
    public var seconds: [String: Double]

    public init(
        requests: UInt64, failed: UInt64, attempts: UInt64, fallbacks: UInt64, upstreamErrors: [String: UInt64], promptTokens: UInt64,
        completionTokens: UInt64, spendUSD: Double, unpriced: UInt64, meanFirstByteSeconds: Double?, meanSeconds: Double?,
        firstByteSeconds: [String: Double] = [:], seconds: [String: Double] = [:]
    ) {
        self.requests = requests
        self.failed = failed
        self.attempts = attempts
        self.fallbacks = fallbacks
        self.upstreamErrors = upstreamErrors
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.spendUSD = spendUSD
        self.unpriced = unpriced
        self.meanFirstByteSeconds = meanFirstByteSeconds
        self.meanSeconds = meanSeconds
        self.firstByteSeconds = firstByteSeconds
        self.seconds = seconds
    }

    enum CodingKeys: String, CodingKey {
        case requests, failed, attempts, fallbacks, unpriced, seconds
        case firstByteSeconds = "first_byte_seconds"
        case upstreamErrors = "upstream_errors"
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case spendUSD = "spend_usd"
        case meanFirstByteSeconds = "mean_first_byte_seconds"
        case meanSeconds = "mean_seconds"
    }
}

/// The decision log in `stats`.
public struct DecisionLogStats: Codable, Sendable, Hashable {
    public var path: String
    /// Lines written since the log was opened.
    public var lines: UInt64
    /// Decisions that could not be logged (disk full, an I/O error); routing went on regardless.
    public var failedWrites: UInt64

    public init(path: String, lines: UInt64, failedWrites: UInt64) {
        self.path = path
        self.lines = lines
        self.failedWrites = failedWrites
    }

    enum CodingKeys: String, CodingKey {
        case path, lines
        case failedWrites = "failed_writes"
    }
}

/// One reload, SIGHUP or `set`, as `stats` lists them.
public struct ReloadRecord: Codable, Sendable, Hashable {
    /// Seconds since the Unix epoch.
    public var time: Double
    /// What asked for it: "SIGHUP", "reload op", "set <router> …".
    public var trigger: String
    /// "ok" or "rejected".
    public var outcome: String
    /// The generation serving afterwards.
    public var generation: UInt64
    /// Why it was rejected (the first few problems).
    public var problems: [String]

    public init(time: Double, trigger: String, outcome: String, generation: UInt64, problems: [String]) {
        self.time = time
        self.trigger = trigger
        self.outcome = outcome
        self.generation = generation
        self.problems = problems
    }
}

/// The result of `reload`.
public struct ReloadResult: Codable, Sendable, Hashable {
    /// The generation now serving; with `dryRun`, still the previous one.
    public var generation: UInt64
    public var previousGeneration: UInt64
    public var routers: [String]
    /// Routers whose plugin instance carried over unchanged (same plugin, params, models, encoder and files).
    public var reused: [String]
    /// True when the config was only validated, and nothing was swapped.
    public var dryRun: Bool

    public init(generation: UInt64, previousGeneration: UInt64, routers: [String], reused: [String] = [], dryRun: Bool = false) {
        self.generation = generation
        self.previousGeneration = previousGeneration
        self.routers = routers
        self.reused = reused
        self.dryRun = dryRun
    }

    enum CodingKeys: String, CodingKey {
        case generation, routers, reused
        case previousGeneration = "previous_generation"
        case dryRun = "dry_run"
    }
}

/// The result of `feedback`, sent once the row is durable on disk.
public struct FeedbackResult: Codable, Sendable, Hashable {
    /// The decision the feedback named, when it named one.
    public var decisionID: String?
    public var router: String
    public var model: String
    /// The file the row went to: `battles` (an outcome against another model) or `quality`.
    public var recorded: String

    public init(decisionID: String?, router: String, model: String, recorded: String) {
        self.decisionID = decisionID
        self.router = router
        self.model = model
        self.recorded = recorded
    }

    enum CodingKeys: String, CodingKey {
        case decisionID = "decision_id"
        case router, model, recorded
    }
}

/// The result of `learn`: each router that learns online.
public struct LearnResult: Codable, Sendable, Hashable {
    public var routers: [LearningInfo]

    public init(routers: [LearningInfo]) { self.routers = routers }
}

/// Online learning of one router since the daemon started, and what its plugin says it holds.
public struct LearningInfo: Codable, Sendable, Hashable {
    public var router: String
    /// Where the plugin keeps its learned state.
    public var stateDirectory: String
    /// Outcomes folded in and published.
    public var events: UInt64
    /// Outcomes waiting for the next publish.
    public var pending: Int
    public var publishes: UInt64
    public var failures: UInt64
    public var dropped: UInt64
    /// How long the plugin's last publish took (fold, persist, swap), in milliseconds.
    public var lastPublishMilliseconds: Double?
    /// How long embedding that batch's prompts took first, in milliseconds.
    public var lastEmbedMilliseconds: Double?
    public var lastError: String?
    /// The plugin's own figures (`learned_*` keys of its description).
    public var learned: [String: JSONValue]

    public init(
        router: String, stateDirectory: String, events: UInt64, pending: Int, publishes: UInt64, failures: UInt64, dropped: UInt64,
        lastPublishMilliseconds: Double?, lastEmbedMilliseconds: Double? = nil, lastError: String?, learned: [String: JSONValue]
    ) {
        self.lastEmbedMilliseconds = lastEmbedMilliseconds
        self.router = router
        self.stateDirectory = stateDirectory
        self.events = events
        self.pending = pending
        self.publishes = publishes
        self.failures = failures
        self.dropped = dropped
        self.lastPublishMilliseconds = lastPublishMilliseconds
        self.lastError = lastError
        self.learned = learned
    }

    enum CodingKeys: String, CodingKey {
        case router, events, pending, publishes, failures, dropped, learned
        case stateDirectory = "state_directory"
        case lastPublishMilliseconds = "last_publish_ms"
        case lastEmbedMilliseconds = "last_embed_ms"
        case lastError = "last_error"
    }
}

/// What the feedback store has done since it was opened, in `stats`.
public struct FeedbackStats: Codable, Sendable, Hashable {
    public var directory: String
    /// Rows appended and made durable.
    public var rows: UInt64
    /// `fdatasync` calls: each one acknowledges a batch of rows.
    public var syncs: UInt64
    /// Rows that could not be written (disk full, an I/O error); their senders got `feedback_unavailable`.
    public var failedWrites: UInt64
    /// Decisions remembered for feedback, and the bytes of prompt text they hold.
    public var decisionsRemembered: Int
    public var decisionBytes: Int

    public init(directory: String, rows: UInt64, syncs: UInt64, failedWrites: UInt64, decisionsRemembered: Int, decisionBytes: Int) {
        self.directory = directory
        self.rows = rows
        self.syncs = syncs
        self.failedWrites = failedWrites
        self.decisionsRemembered = decisionsRemembered
        self.decisionBytes = decisionBytes
    }

    enum CodingKeys: String, CodingKey {
        case directory, rows, syncs
        case failedWrites = "failed_writes"
        case decisionsRemembered = "decisions_remembered"
        case decisionBytes = "decision_bytes"
    }
}

/// The result of `set`.
public struct SetResult: Codable, Sendable, Hashable {
    public var router: String
    public var threshold: Double
    /// The share of strong traffic the threshold was derived from, when one was set.
    public var strongFraction: Double?
    public var generation: UInt64
    public var previousGeneration: UInt64

    public init(router: String, threshold: Double, strongFraction: Double?, generation: UInt64, previousGeneration: UInt64) {
        self.router = router
        self.threshold = threshold
        self.strongFraction = strongFraction
        self.generation = generation
        self.previousGeneration = previousGeneration
    }

    enum CodingKeys: String, CodingKey {
        case router, threshold, generation
        case strongFraction = "strong_fraction"
        case previousGeneration = "previous_generation"
    }
}

/// A response line: `{"id":…,"ok":true,"result":{…}}` or `{"error":{…},"id":…,"ok":false}`.
public enum ResponseCodec {
    private struct Success<Result: Encodable>: Encodable {
        var id: RequestID?
        var ok = true
        var result: Result
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// Encodes a success line, newline included.
    public static func success<Result: Encodable>(_ result: Result, id: RequestID?) -> [UInt8] {
        do {
            var bytes = [UInt8](try encoder.encode(Success(id: id, result: result)))
            bytes.append(0x0A)
            return bytes
        } catch {
            // Only a non-finite Double can fail here; routers never produce one.
            return failure(ProtocolError(.internalError, "could not encode the response: \(error)"), id: id)
        }
    }

    /// Encodes a `route` decision line, newline included: the hot path, written directly.
    public static func success(_ decision: Decision, id: RequestID?) -> [UInt8] {
        var writer = JSONWriter()
        writer.beginObject()
        if let id {
            writer.key("id")
            writer.id(id)
        }
        writer.key("ok")
        writer.bool(true)
        writer.key("result")
        writer.beginObject()
        decision.writeFields(into: &writer)
        writer.endObject()
        writer.endObject()
        writer.newline()
        return writer.bytes
    }

    /// Encodes an error line, newline included.
    public static func failure(_ error: ProtocolError, id: RequestID?) -> [UInt8] {
        var writer = JSONWriter()
        writer.beginObject()
        writer.key("error")
        writer.beginObject()
        writer.key("code")
        writer.string(error.code.rawValue)
        writer.key("message")
        writer.string(error.message)
        writer.endObject()
        if let id {
            writer.key("id")
            writer.id(id)
        }
        writer.key("ok")
        writer.bool(false)
        writer.endObject()
        writer.newline()
        return writer.bytes
    }

    /// The envelope of a response line, with the result left undecoded.
    public struct Envelope: Decodable, Sendable {
        public var id: RequestID?
        public var ok: Bool
        public var error: ProtocolError?
    }

    private struct ResultOnly<Result: Decodable>: Decodable {
        var result: Result
    }

    /// Decodes a response line into `Result`, or throws the ``ProtocolError`` it carries.
    public static func decode<Result: Decodable>(_ type: Result.Type, from line: Data) throws -> Result {
        let decoder = JSONDecoder()
        let envelope = try decoder.decode(Envelope.self, from: line)
        if !envelope.ok {
            throw envelope.error ?? ProtocolError(.internalError, "error response without an error object")
        }
        return try decoder.decode(ResultOnly<Result>.self, from: line).result
    }
}
