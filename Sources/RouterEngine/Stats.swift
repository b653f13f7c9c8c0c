import Foundation
import NIOConcurrencyHelpers
import RouterProtocol

/// Counters since the daemon started. They survive reloads, keyed by name.
public final class Stats: Sendable {
    private struct Counters {
        var requests: [Op: UInt64] = [:]
        var errors: [ErrorCode: UInt64] = [:]
        var routers: [String: RouterStats] = [:]
        /// The last decisions' scores and latencies per router, for quantiles.
        var recent: [String: RecentDecisions] = [:]
        var history: [ReloadRecord] = []
        var connectionsOpen: UInt64 = 0
        var connectionsTotal: UInt64 = 0
        var connectionsRejected: UInt64 = 0
        var reloads: UInt64 = 0
        var reloadFailures: UInt64 = 0
    }

    private let counters = NIOLockedValueBox(Counters())

    public init() {}

    /// Counts one answered request; `op` is nil when the line had no valid op.
    public func recordResponse(op: Op?, error: ErrorCode?) {
        counters.withLockedValue { counters in
            if let op { counters.requests[op, default: 0] += 1 }
            if let error { counters.errors[error, default: 0] += 1 }
        }
    }

    func recordDecision(router: String, tier: Tier, score: Double, microseconds: Double) {
        counters.withLockedValue { counters in
            counters.recent[router, default: RecentDecisions()].append(score: score, microseconds: microseconds)
            counters.routers[router, default: .zero].decisions += 1
            if tier == .strong {
                counters.routers[router, default: .zero].strong += 1
            } else {
                counters.routers[router, default: .zero].weak += 1
            }
        }
    }

    func recordScored(router: String, count: Int) {
        counters.withLockedValue { counters in
            counters.routers[router, default: .zero].scored += UInt64(count)
        }
    }

    func recordPluginError(router: String) {
        counters.withLockedValue { counters in
            counters.routers[router, default: .zero].errors += 1
        }
    }

    func recordEvent(router: String, event: String) {
        counters.withLockedValue { counters in
            counters.routers[router, default: .zero].events[event, default: 0] += 1
            if event.hasPrefix(RouterStats.fallbackPrefix) { counters.routers[router, default: .zero].fallbacks += 1 }
        }
    }

    public func connectionOpened() {
        counters.withLockedValue {
            $0.connectionsOpen += 1
            $0.connectionsTotal += 1
        }
    }

    public func connectionClosed() {
        counters.withLockedValue { $0.connectionsOpen -= 1 }
    }

    public func connectionRejected() {
        counters.withLockedValue { $0.connectionsRejected += 1 }
    }

    /// How many reloads `stats` lists.
    static let historyLength = 20

    func recordReload(trigger: String, generation: UInt64, problems: [String]) {
        let record = ReloadRecord(
            time: Date().timeIntervalSince1970, trigger: trigger, outcome: problems.isEmpty ? "ok" : "rejected", generation: generation,
            problems: Array(problems.prefix(5)))
        counters.withLockedValue {
            if problems.isEmpty { $0.reloads += 1 } else { $0.reloadFailures += 1 }
            $0.history.append(record)
            if $0.history.count > Self.historyLength { $0.history.removeFirst($0.history.count - Self.historyLength) }
        }
    }

    func snapshot(uptimeSeconds: Double, generation: UInt64, encoders: [String: EncoderStats]) -> StatsResult {
        counters.withLockedValue { counters in
            StatsResult(
                uptimeSeconds: uptimeSeconds, generation: generation, connectionsOpen: counters.connectionsOpen,
                connectionsTotal: counters.connectionsTotal, connectionsRejected: counters.connectionsRejected,
                requests: Dictionary(uniqueKeysWithValues: counters.requests.map { ($0.key.rawValue, $0.value) }),
                errors: Dictionary(uniqueKeysWithValues: counters.errors.map { ($0.key.rawValue, $0.value) }),
                routers: counters.routers.reduce(into: [:]) { result, entry in
                    var router = entry.value
                    if let recent = counters.recent[entry.key] {
                        router.scoreQuantiles = recent.scoreQuantiles
                        router.latencyMicroseconds = recent.latencyQuantiles
                    }
                    result[entry.key] = router
                }, encoders: encoders, reloads: counters.reloads, reloadFailures: counters.reloadFailures, reloadHistory: counters.history)
        }
    }
}

/// A ring of the last ``RouterStats/window`` decisions of one router.
private struct RecentDecisions {
    private var scores: [Double] = []
    private var latencies: [Double] = []
    private var next = 0

    mutating func append(score: Double, microseconds: Double) {
        if scores.count < RouterStats.window {
            scores.append(score)
            latencies.append(microseconds)
        } else {
            scores[next] = score
            latencies[next] = microseconds
        }
        next = (next + 1) % RouterStats.window
    }

    var scoreQuantiles: [String: Double] { Self.quantiles(scores, ["p10": 0.1, "p50": 0.5, "p90": 0.9]) }
    var latencyQuantiles: [String: Double] { Self.quantiles(latencies, ["p50": 0.5, "p99": 0.99]) }

    /// Nearest-rank quantiles.
    private static func quantiles(_ values: [Double], _ wanted: [String: Double]) -> [String: Double] {
        guard !values.isEmpty else { return [:] }
        let sorted = values.sorted()
        return wanted.mapValues { sorted[min(sorted.count - 1, max(0, Int((Double(sorted.count) * $0).rounded(.up)) - 1))] }
    }
}

extension RouterStats {
    static let zero = RouterStats(decisions: 0, strong: 0, weak: 0, scored: 0, errors: 0)
}
