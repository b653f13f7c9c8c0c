import Synchronization

/// Which upstream models are cooling down: a model that failed `failuresToCool` times in a row
/// (any failure but a 4xx other than 429, which is the request's fault) is skipped for `coolDown` seconds, so requests stop paying for its
/// failures; a success resets its count. Time is the caller's (seconds on a monotonic clock), so
/// the logic runs on virtual time in tests.
public final class CoolDowns: Sendable {
    private struct Health {
        var failures = 0
        var coolingUntil = -Double.infinity
    }

    private let state = Mutex([String: Health]())

    public init() {}

    /// Records a failure of `model` at `now`; returns true when it starts a cool-down.
    @discardableResult
    public func failed(_ model: String, _ failure: AttemptFailure, at now: Double, settings: FallbackSettings) -> Bool {
        // A 4xx other than 429 is the request's fault, not the model's.
        guard failure.errorClass != "client_error" else { return false }
        return state.withLock { models in
            var health = models[model, default: Health()]
            health.failures += 1
            let cools = health.failures >= settings.failuresToCool && health.coolingUntil <= now
            if cools {
                health.coolingUntil = now + settings.coolDown
                health.failures = 0
            }
            models[model] = health
            return cools
        }
    }

    /// Records that `model` answered.
    public func succeeded(_ model: String) {
        state.withLock { models in models[model]?.failures = 0 }
    }

    /// Whether `model` is cooling down at `now`.
    public func isCooling(_ model: String, at now: Double) -> Bool {
        state.withLock { ($0[model]?.coolingUntil ?? -.infinity) > now }
    }

    /// The models cooling down at `now`, sorted.
    public func cooling(at now: Double) -> [String] {
        state.withLock { models in models.filter { $0.value.coolingUntil > now }.map(\.key).sorted() }
    }
}
