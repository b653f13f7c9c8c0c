/// How hard the gateway tries before it gives up on a request.
public struct FallbackSettings: Sendable, Hashable {
    /// Upstream calls per request, retries and fallbacks together (at least 1).
    public var maxAttempts: Int
    /// Retries of one candidate before falling back to the next (0: fall back at once).
    public var retriesPerCandidate: Int
    /// The first retry's delay in seconds; each further retry of the candidate doubles it.
    public var baseDelay: Double
    /// No retry waits longer than this, `retry-after` included.
    public var maxDelay: Double
    /// Seconds from the request's arrival after which no new attempt starts.
    public var deadline: Double
    /// Consecutive retryable failures that cool a model down.
    public var failuresToCool: Int
    /// Seconds a cooled model is skipped by the candidates' order.
    public var coolDown: Double

    public init(
        maxAttempts: Int = 3, retriesPerCandidate: Int = 1, baseDelay: Double = 0.1, maxDelay: Double = 2, deadline: Double = 60,
        failuresToCool: Int = 3, coolDown: Double = 30
    ) {
        self.maxAttempts = maxAttempts
        self.retriesPerCandidate = retriesPerCandidate
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.deadline = deadline
        self.failuresToCool = failuresToCool
        self.coolDown = coolDown
    }

    /// What is wrong with these settings, for the config loader to report; nil when they hold.
    public var problem: String? {
        if maxAttempts < 1 { return "max_attempts must be at least 1, not \(maxAttempts)" }
        if retriesPerCandidate < 0 { return "retries must be 0 or more, not \(retriesPerCandidate)" }
        if !(baseDelay >= 0 && baseDelay.isFinite) { return "retry_delay must be 0 or more seconds, not \(baseDelay)" }
        if !(maxDelay >= baseDelay && maxDelay.isFinite) { return "max_retry_delay must be at least retry_delay (\(baseDelay) s), not \(maxDelay)" }
        if !(deadline > 0 && deadline.isFinite) { return "deadline must be a positive number of seconds, not \(deadline)" }
        if failuresToCool < 1 { return "cool_down_after must be at least 1, not \(failuresToCool)" }
        if !(coolDown >= 0 && coolDown.isFinite) { return "cool_down must be 0 or more seconds, not \(coolDown)" }
        return nil
    }
}
