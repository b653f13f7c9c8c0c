import NIOConcurrencyHelpers
import RouterProtocol

/// Counters since the daemon started. They survive reloads, keyed by name.
public final class Stats: Sendable {
    private struct Counters {
        var requests: [Op: UInt64] = [:]
        var errors: [ErrorCode: UInt64] = [:]
        var routers: [String: RouterStats] = [:]
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

    func recordDecision(router: String, tier: Tier) {
        counters.withLockedValue { counters in
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

    func recordReload(succeeded: Bool) {
        counters.withLockedValue {
            if succeeded { $0.reloads += 1 } else { $0.reloadFailures += 1 }
        }
    }

    func snapshot(uptimeSeconds: Double, generation: UInt64, encoders: [String: EncoderStats]) -> StatsResult {
        counters.withLockedValue { counters in
            StatsResult(
                uptimeSeconds: uptimeSeconds, generation: generation, connectionsOpen: counters.connectionsOpen,
                connectionsTotal: counters.connectionsTotal, connectionsRejected: counters.connectionsRejected,
                requests: Dictionary(uniqueKeysWithValues: counters.requests.map { ($0.key.rawValue, $0.value) }),
                errors: Dictionary(uniqueKeysWithValues: counters.errors.map { ($0.key.rawValue, $0.value) }),
                routers: counters.routers, encoders: encoders, reloads: counters.reloads, reloadFailures: counters.reloadFailures)
        }
    }
}

extension RouterStats {
    static let zero = RouterStats(decisions: 0, strong: 0, weak: 0, scored: 0, errors: 0)
}
