import Foundation
import Synchronization

/// One router's activity since the daemon started.
public struct RouterActivity: Sendable, Hashable {
    public var decisions: UInt64 = 0
    /// Decisions of a two-candidate router for its strong and its weak model.
    public var strong: UInt64 = 0
    public var weak: UInt64 = 0
    /// Decisions by the model chosen.
    public var models: [String: UInt64] = [:]
    /// Prompts scored by the `score` op.
    public var scored: UInt64 = 0
    /// Plugin failures while scoring.
    public var errors: UInt64 = 0
    /// Events the plugin counted (e.g. causal_llm's `fallback.timeout`), by name.
    public var events: [String: UInt64] = [:]
    /// Decisions that took a fallback: the events named `fallback.*`.
    public var fallbacks: UInt64 = 0
    /// Feedback outcomes recorded, and those among them reporting a failed call (`outcome: failed`),
    /// kept apart because a failure is not a wrong answer.
    public var outcomes: UInt64 = 0
    public var failedOutcomes: UInt64 = 0
    /// With exploration: decisions drawn (explored or not), those that explored, and the expected
    /// USD the explored ones cost above the greedy choices.
    public var drawn: UInt64 = 0
    public var explored: UInt64 = 0
    public var exploreExtraCost: Double = 0
    /// With `shadow:`: per shadow router, its decisions on this router's prompts and how many
    /// chose this router's model; and the decisions the shadows had no room to take.
    public var shadows: [String: ShadowActivity] = [:]
    public var shadowsDropped: UInt64 = 0
    /// With `novelty:`: decisions whose familiarity was judged, and those found novel.
    public var judged: UInt64 = 0
    public var novel: UInt64 = 0
    /// Over the last ``RouterActivity/window`` decisions: score quantiles (p10, p50, p90)
    /// and decision latency in microseconds (p50, p99). Empty before the first decision.
    public var scoreQuantiles: [String: Double] = [:]
    public var latencyMicroseconds: [String: Double] = [:]
    /// A budget policy's state, from the generation the snapshot was taken on.
    public var budget: BudgetSnapshot?

    /// Events whose name starts with this count as fallbacks.
    public static let fallbackPrefix = "fallback."
    /// How many recent decisions the quantiles cover.
    public static let window = 1024
}

/// A shadow router's decisions beside a live router's.
public struct ShadowActivity: Sendable, Hashable {
    public var decisions: UInt64 = 0
    /// Decisions that chose the live decision's model.
    public var agreements: UInt64 = 0
    /// Decisions the shadow failed to make (a plugin error).
    public var errors: UInt64 = 0

    public init() {}
}

/// The gateway's traffic through one router or to one model, since the daemon started.
public struct GatewayActivity: Sendable, Hashable {
    /// Requests answered: served by an upstream, or failed after every attempt.
    public var requests: UInt64 = 0
    /// Requests that ended in an error to the client (every attempt failed, or the budget refused a fallback).
    public var failed: UInt64 = 0
    /// Upstream calls, retries and fallbacks included.
    public var attempts: UInt64 = 0
    /// Requests served by another model than the one first called (for a model: requests it took over).
    public var fallbacks: UInt64 = 0
    /// Failed upstream calls, by class (connection, timeout, rate_limited, server_error, client_error, malformed, mid_stream).
    public var upstreamErrors: [String: UInt64] = [:]
    /// Tokens and USD of the served answers, from their `usage` priced with the catalogue.
    public var promptTokens: UInt64 = 0
    public var completionTokens: UInt64 = 0
    public var spend: Double = 0
    /// Answers without `usage`, so without a real cost.
    public var unpriced: UInt64 = 0
    /// Seconds from a request's arrival to its first byte to the client, and to its end; sums over `requests - failed`.
    public var firstByteSeconds: Double = 0
    public var totalSeconds: Double = 0
    /// Over the last ``RouterActivity/window`` served requests: p50 and p99 of those two, in seconds
    /// (filled by ``Stats/snapshot()``).
    public var firstByteQuantiles: [String: Double] = [:]
    public var totalQuantiles: [String: Double] = [:]

    public init() {}
}

/// One request through the gateway, as `stats` counts it.
public struct GatewayRequestRecord: Sendable {
    /// The router that decided (nil: a catalogue model was named, unrouted), and the model that
    /// served (nil: none did).
    public var router: String?
    public var served: String?
    /// Whether another model than the first called served it.
    public var fellBack: Bool
    public var promptTokens: Int?
    public var completionTokens: Int?
    /// USD from usage; nil without usage.
    public var cost: Double?
    public var firstByteSeconds: Double?
    public var totalSeconds: Double

    public init(
        router: String?, served: String?, fellBack: Bool, promptTokens: Int?, completionTokens: Int?, cost: Double?, firstByteSeconds: Double?,
        totalSeconds: Double
    ) {
        self.router = router
        self.served = served
        self.fellBack = fellBack
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cost = cost
        self.firstByteSeconds = firstByteSeconds
        self.totalSeconds = totalSeconds
    }
}

/// One reload or `set`.
public struct ReloadEvent: Sendable, Hashable {
    /// Seconds since the Unix epoch.
    public var time: Double
    /// What asked for it: "SIGHUP", "reload op", "set <router> …".
    public var trigger: String
    public var accepted: Bool
    /// The generation serving afterwards.
    public var generation: UInt64
    /// Why it was rejected (the first few problems).
    public var problems: [String]
}

/// The engine's counters at one moment.
public struct StatsSnapshot: Sendable {
    public var routers: [String: RouterActivity]
    public var reloads: UInt64
    public var reloadFailures: UInt64
    /// The last reloads and `set`s, oldest first.
    public var history: [ReloadEvent]
    /// Sessions whose model is remembered.
    public var sessions: Int = 0
    /// The gateway's traffic by router (unrouted requests are not counted here) and by model.
    public var gatewayRouters: [String: GatewayActivity] = [:]
    public var gatewayModels: [String: GatewayActivity] = [:]
}

/// The engine's counters since the daemon started: decisions per router, plugin
/// events, reloads. They survive reloads, keyed by name.
public final class Stats: Sendable {
    private struct Counters {
        var routers: [String: RouterActivity] = [:]
        /// The last decisions' scores and latencies per router, for quantiles.
        var recent: [String: RecentDecisions] = [:]
        var history: [ReloadEvent] = []
        var reloads: UInt64 = 0
        var reloadFailures: UInt64 = 0
        var gatewayRouters: [String: GatewayActivity] = [:]
        var gatewayModels: [String: GatewayActivity] = [:]
        /// The last served requests' times per router and per model, for quantiles.
        var recentGatewayRouters: [String: RecentRequests] = [:]
        var recentGatewayModels: [String: RecentRequests] = [:]
    }

    private let counters = Mutex(Counters())

    public init() {}

    func recordDecision(router: String, model: String, tier: RoutingTier?, score: Double?, microseconds: Double) {
        counters.withLock { counters in
            counters.recent[router, default: RecentDecisions()].append(score: score, microseconds: microseconds)
            counters.routers[router, default: RouterActivity()].decisions += 1
            counters.routers[router, default: RouterActivity()].models[model, default: 0] += 1
            switch tier {
            case .strong?: counters.routers[router, default: RouterActivity()].strong += 1
            case .weak?: counters.routers[router, default: RouterActivity()].weak += 1
            case nil: break
            }
        }
    }

    func recordScored(router: String, count: Int) {
        counters.withLock { $0.routers[router, default: RouterActivity()].scored += UInt64(count) }
    }

    func recordPluginError(router: String) {
        counters.withLock { $0.routers[router, default: RouterActivity()].errors += 1 }
    }

    func recordExploration(router: String, explored: Bool, extraCost: Double) {
        counters.withLock { counters in
            counters.routers[router, default: RouterActivity()].drawn += 1
            if explored {
                counters.routers[router, default: RouterActivity()].explored += 1
                counters.routers[router, default: RouterActivity()].exploreExtraCost += extraCost
            }
        }
    }

    func recordShadow(router: String, shadow: String, agrees: Bool, failed: Bool) {
        counters.withLock { counters in
            var activity = counters.routers[router, default: RouterActivity()].shadows[shadow, default: ShadowActivity()]
            if failed { activity.errors += 1 } else { activity.decisions += 1 }
            if agrees { activity.agreements += 1 }
            counters.routers[router, default: RouterActivity()].shadows[shadow] = activity
        }
    }

    func recordNovelty(router: String, novel: Bool) {
        counters.withLock { counters in
            counters.routers[router, default: RouterActivity()].judged += 1
            if novel { counters.routers[router, default: RouterActivity()].novel += 1 }
        }
    }

    func recordShadowDropped(router: String) {
        counters.withLock { $0.routers[router, default: RouterActivity()].shadowsDropped += 1 }
    }

    func recordOutcome(router: String, failed: Bool) {
        counters.withLock { counters in
            counters.routers[router, default: RouterActivity()].outcomes += 1
            if failed { counters.routers[router, default: RouterActivity()].failedOutcomes += 1 }
        }
    }

    func recordEvent(router: String, event: String) {
        counters.withLock { counters in
            counters.routers[router, default: RouterActivity()].events[event, default: 0] += 1
            if event.hasPrefix(RouterActivity.fallbackPrefix) { counters.routers[router, default: RouterActivity()].fallbacks += 1 }
        }
    }

    /// One upstream call of the gateway for `router` (nil: unrouted) to `model`; `failure` is its
    /// error class when it failed.
    public func recordUpstreamAttempt(router: String?, model: String, failure: String?) {
        counters.withLock { counters in
            counters.gatewayModels[model, default: GatewayActivity()].attempts += 1
            if let failure { counters.gatewayModels[model, default: GatewayActivity()].upstreamErrors[failure, default: 0] += 1 }
            guard let router else { return }
            counters.gatewayRouters[router, default: GatewayActivity()].attempts += 1
            if let failure { counters.gatewayRouters[router, default: GatewayActivity()].upstreamErrors[failure, default: 0] += 1 }
        }
    }

    /// A failure of an upstream call already counted as an attempt: a stream that broke after its start.
    public func recordUpstreamError(router: String?, model: String, failure: String) {
        counters.withLock { counters in
            counters.gatewayModels[model, default: GatewayActivity()].upstreamErrors[failure, default: 0] += 1
            if let router { counters.gatewayRouters[router, default: GatewayActivity()].upstreamErrors[failure, default: 0] += 1 }
        }
    }

    /// One gateway request answered: served, or failed.
    public func recordGatewayRequest(_ record: GatewayRequestRecord) {
        func add(_ activity: inout GatewayActivity) {
            activity.requests += 1
            guard record.served != nil else {
                activity.failed += 1
                return
            }
            if record.fellBack { activity.fallbacks += 1 }
            activity.promptTokens += UInt64(max(0, record.promptTokens ?? 0))
            activity.completionTokens += UInt64(max(0, record.completionTokens ?? 0))
            if let cost = record.cost { activity.spend += cost } else { activity.unpriced += 1 }
            activity.firstByteSeconds += record.firstByteSeconds ?? 0
            activity.totalSeconds += record.totalSeconds
        }
        counters.withLock { counters in
            if let router = record.router { add(&counters.gatewayRouters[router, default: GatewayActivity()]) }
            if let served = record.served { add(&counters.gatewayModels[served, default: GatewayActivity()]) }
            guard let served = record.served else { return }
            if let router = record.router {
                counters.recentGatewayRouters[router, default: RecentRequests()].append(
                    firstByte: record.firstByteSeconds, total: record.totalSeconds)
            }
            counters.recentGatewayModels[served, default: RecentRequests()].append(firstByte: record.firstByteSeconds, total: record.totalSeconds)
        }
    }

    /// How many reloads `stats` lists.
    static let historyLength = 20

    func recordReload(trigger: String, generation: UInt64, problems: [String]) {
        let event = ReloadEvent(
            time: Date().timeIntervalSince1970, trigger: trigger, accepted: problems.isEmpty, generation: generation,
            problems: Array(problems.prefix(5)))
        counters.withLock {
            if problems.isEmpty { $0.reloads += 1 } else { $0.reloadFailures += 1 }
            $0.history.append(event)
            if $0.history.count > Self.historyLength { $0.history.removeFirst($0.history.count - Self.historyLength) }
        }
    }

    public func snapshot() -> StatsSnapshot {
        counters.withLock { counters in
            StatsSnapshot(
                routers: counters.routers.reduce(into: [:]) { result, entry in
                    var router = entry.value
                    if let recent = counters.recent[entry.key] {
                        router.scoreQuantiles = recent.scoreQuantiles
                        router.latencyMicroseconds = recent.latencyQuantiles
                    }
                    result[entry.key] = router
                }, reloads: counters.reloads, reloadFailures: counters.reloadFailures, history: counters.history,
                gatewayRouters: RecentRequests.withQuantiles(counters.gatewayRouters, counters.recentGatewayRouters),
                gatewayModels: RecentRequests.withQuantiles(counters.gatewayModels, counters.recentGatewayModels))
        }
    }
}

/// A ring of the last ``RouterActivity/window`` decisions of one router.
private struct RecentDecisions {
    private var scores = RecentWindow()
    private var latencies = RecentWindow()

    /// Records a decision's latency, and its score when a threshold policy made it.
    mutating func append(score: Double?, microseconds: Double) {
        latencies.append(microseconds)
        if let score { scores.append(score) }
    }

    var scoreQuantiles: [String: Double] { scores.quantiles(["p10": 0.1, "p50": 0.5, "p90": 0.9]) }
    var latencyQuantiles: [String: Double] { latencies.quantiles(["p50": 0.5, "p99": 0.99]) }
}

/// The last ``RouterActivity/window`` served gateway requests through one router or to one model.
private struct RecentRequests {
    private var firstByte = RecentWindow()
    private var total = RecentWindow()

    /// A served request's times; no first byte when the client was gone before one was sent.
    mutating func append(firstByte seconds: Double?, total totalSeconds: Double) {
        if let seconds { firstByte.append(seconds) }
        total.append(totalSeconds)
    }

    /// `activities` with their quantiles from `recent`.
    static func withQuantiles(_ activities: [String: GatewayActivity], _ recent: [String: RecentRequests]) -> [String: GatewayActivity] {
        activities.reduce(into: [:]) { result, entry in
            var activity = entry.value
            if let times = recent[entry.key] {
                activity.firstByteQuantiles = times.firstByte.quantiles(["p50": 0.5, "p99": 0.99])
                activity.totalQuantiles = times.total.quantiles(["p50": 0.5, "p99": 0.99])
            }
            result[entry.key] = activity
        }
    }
}
