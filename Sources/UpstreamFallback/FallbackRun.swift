/// One request's way through its candidates: which model to call next, after how long, or that it
/// is time to give up.
///
/// The candidates come in the routing policy's own order (its choice first). Models cooling down
/// are tried last rather than never, so that a request whose every candidate is cooling still
/// gets an answer if one recovers. A retryable failure is retried on the same model up to
/// `retriesPerCandidate` times, after a delay that doubles per retry with jitter (or the
/// upstream's `retry-after`, unless it asks for longer than `maxDelay`), then the next candidate
/// is called at once (at once too after a timeout, which is not retried: another try would cost a
/// whole timeout more); a failure that is not
/// retryable ends the run, as does `maxAttempts` or the deadline.
public struct FallbackRun: Sendable {
    public enum Step: Sendable, Hashable {
        /// Call `model` after waiting `after` seconds.
        case call(model: String, after: Double)
        /// Stop: the last failure is the answer.
        case giveUp(reason: String)
    }

    public let settings: FallbackSettings
    /// The candidates in the order they will be tried.
    public let order: [String]
    /// When the request arrived.
    public let start: Double
    public private(set) var attempts = 0
    private var position = 0
    private var retries = 0

    /// - Parameters:
    ///   - candidates: the policy's order, its choice first.
    ///   - cooling: whether a model is cooling down now.
    public init(candidates: [String], settings: FallbackSettings, start: Double, cooling: (String) -> Bool) {
        precondition(!candidates.isEmpty)
        self.settings = settings
        self.start = start
        order = candidates.filter { !cooling($0) } + candidates.filter(cooling)
    }

    /// The first call: the first candidate not cooling down.
    public mutating func first() -> Step {
        attempts = 1
        return .call(model: order[0], after: 0)
    }

    /// The model the last step called.
    public var current: String { order[position] }

    /// What to do after the current model failed with `failure` at `now`; `jitter` is a draw in
    /// [0, 1) (the caller's generator, so tests choose it).
    public mutating func next(after failure: AttemptFailure, at now: Double, jitter: Double) -> Step {
        guard failure.isRetryable else { return .giveUp(reason: "\(current): \(failure), which another attempt cannot fix") }
        guard attempts < settings.maxAttempts else {
            return .giveUp(reason: "\(current): \(failure); \(attempts) attempts made (max_attempts)")
        }
        var delay = 0.0
        // An upstream that asks for a longer wait than any retry waits is left for the next candidate;
        // so is one that timed out: a retry would cost the client another whole timeout.
        var moveOn = failure == .timeout
        if case .status(_, let retryAfter?) = failure, retryAfter > settings.maxDelay { moveOn = true }
        if retries < settings.retriesPerCandidate && !moveOn {
            retries += 1
            let backoff = settings.baseDelay * Double(1 << min(retries - 1, 30)) * (0.5 + 0.5 * jitter)
            if case .status(_, let retryAfter?) = failure, retryAfter >= 0 { delay = retryAfter } else { delay = backoff }
            delay = min(delay, settings.maxDelay)
        } else if position + 1 < order.count {
            position += 1
            retries = 0
        } else {
            return .giveUp(reason: "\(current): \(failure); no candidate left to fall back to")
        }
        guard now + delay < start + settings.deadline else {
            return .giveUp(reason: "\(current): \(failure); the deadline (\(settings.deadline) s) leaves no time for another attempt")
        }
        attempts += 1
        return .call(model: current, after: delay)
    }
}
