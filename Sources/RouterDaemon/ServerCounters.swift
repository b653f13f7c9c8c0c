import RouterProtocol
import Synchronization

/// The server's own counters: requests by op, error responses by code, and
/// connections. The engine counts decisions; these count what crossed the socket.
public final class ServerCounters: Sendable {
    public struct Snapshot: Sendable {
        public var requests: [Op: UInt64] = [:]
        public var errors: [ErrorCode: UInt64] = [:]
        public var connectionsOpen: UInt64 = 0
        public var connectionsTotal: UInt64 = 0
        public var connectionsRejected: UInt64 = 0
    }

    private let counters = Mutex(Snapshot())

    public init() {}

    /// Counts one answered request; `op` is nil when the line had no valid op.
    func recordResponse(op: Op?, error: ErrorCode?) {
        counters.withLock { counters in
            if let op { counters.requests[op, default: 0] += 1 }
            if let error { counters.errors[error, default: 0] += 1 }
        }
    }

    func connectionOpened() {
        counters.withLock {
            $0.connectionsOpen += 1
            $0.connectionsTotal += 1
        }
    }

    func connectionClosed() {
        counters.withLock { $0.connectionsOpen -= 1 }
    }

    func connectionRejected() {
        counters.withLock { $0.connectionsRejected += 1 }
    }

    public var snapshot: Snapshot { counters.withLock { $0 } }
}

/// Calls in progress per router, for the routers with a `timeout`.
final class RunningCalls: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    /// Counts a call in, unless `limit` are already running.
    func begin(_ router: String, limit: Int) -> Bool {
        counts.withLock { counts in
            guard counts[router, default: 0] < limit else { return false }
            counts[router, default: 0] += 1
            return true
        }
    }

    func end(_ router: String) {
        counts.withLock { $0[router, default: 1] -= 1 }
    }
}
