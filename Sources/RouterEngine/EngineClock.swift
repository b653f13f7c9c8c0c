import Foundation
import Synchronization

/// Monotonic time for the engine's timed logic: session and decision expiry, and when the online
/// learner publishes. Everything that decides by time is handed one, so that logic is tested
/// in-process on ``ManualClock`` instead of inside a sleeping daemon. (Elapsed times that are only
/// reported, such as a decision's `elapsed_us`, are measured with `ContinuousClock`.)
///
/// The budget controller needs none: its window counts decisions, not seconds.
public protocol EngineClock: Sendable {
    /// Seconds since an arbitrary origin; never decreases.
    var seconds: Double { get }
}

/// The system's monotonic clock (`CLOCK_MONOTONIC`): what the daemon runs on.
public struct SystemClock: EngineClock {
    public init() {}

    public var seconds: Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
    }
}

/// A clock that moves only when told to: virtual time for tests, as NIOEmbedded's event loop
/// gives swift-nio's. Starts at 0.
public final class ManualClock: EngineClock {
    private let now = Mutex(0.0)

    public init() {}

    public var seconds: Double { now.withLock { $0 } }

    /// Moves the clock forward by `seconds` (≥ 0).
    public func advance(by seconds: Double) {
        precondition(seconds >= 0, "a monotonic clock does not go back")
        now.withLock { $0 += seconds }
    }
}
