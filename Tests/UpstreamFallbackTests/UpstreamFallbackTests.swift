import Testing
import UpstreamFallback

@Suite struct AttemptFailureTests {
    @Test func upstreamTroubleIsRetriedAndTheRequestsOwnFaultIsNot() {
        for failure: AttemptFailure in [
            .connection, .timeout, .malformed, .status(429, retryAfter: 1), .status(500, retryAfter: nil), .status(503, retryAfter: nil),
        ] {
            #expect(failure.isRetryable, "\(failure)")
        }
        for failure: AttemptFailure in [.status(400, retryAfter: nil), .status(401, retryAfter: nil), .status(404, retryAfter: nil), .midStream] {
            #expect(!failure.isRetryable, "\(failure)")
        }
        #expect(AttemptFailure.status(429, retryAfter: nil).errorClass == "rate_limited")
        #expect(AttemptFailure.status(502, retryAfter: nil).errorClass == "server_error")
        #expect(AttemptFailure.status(422, retryAfter: nil).errorClass == "client_error")
    }
}

@Suite struct FallbackRunTests {
    /// Runs a request against upstreams that fail as `outcome` says, on virtual time; returns the
    /// calls made (model, at) and how it ended.
    static func run(
        _ candidates: [String], settings: FallbackSettings, cooling: Set<String> = [], jitter: Double = 0.5,
        outcome: (String, Double) -> AttemptFailure?
    ) -> (calls: [(String, Double)], ended: String) {
        var run = FallbackRun(candidates: candidates, settings: settings, start: 0, cooling: cooling.contains)
        var now = 0.0
        var calls: [(String, Double)] = []
        var step = run.first()
        while case .call(let model, let after) = step {
            now += after
            calls.append((model, now))
            guard let failure = outcome(model, now) else { return (calls, "answered by \(model)") }
            now += 0.01  // the failed call's own time
            step = run.next(after: failure, at: now, jitter: jitter)
        }
        guard case .giveUp(let reason) = step else { return (calls, "?") }
        return (calls, reason)
    }

    @Test func aFailingChoiceIsRetriedWithBackoffThenTheNextCandidateAnswers() {
        let settings = FallbackSettings(maxAttempts: 5, retriesPerCandidate: 2, baseDelay: 0.1, maxDelay: 2)
        let (calls, ended) = Self.run(["a", "b", "c"], settings: settings, jitter: 1) { model, _ in model == "a" ? .status(500, retryAfter: nil) : nil
        }
        #expect(calls.map(\.0) == ["a", "a", "a", "b"])
        // Retries wait 0.1 then 0.2 (doubling; jitter 1 keeps the full delay); the fallback goes at once.
        #expect(abs(calls[1].1 - 0.11) < 1e-9 && abs(calls[2].1 - 0.32) < 1e-9 && abs(calls[3].1 - 0.33) < 1e-9, "\(calls)")
        #expect(ended == "answered by b")
    }

    @Test func jitterSpreadsTheDelayBetweenHalfAndAll() {
        let settings = FallbackSettings(retriesPerCandidate: 1, baseDelay: 1, maxDelay: 5)
        for jitter in [0.0, 0.5, 0.999] {
            var run = FallbackRun(candidates: ["a", "b"], settings: settings, start: 0, cooling: { _ in false })
            _ = run.first()
            #expect(run.next(after: .connection, at: 0, jitter: jitter) == .call(model: "a", after: 0.5 + 0.5 * jitter))
        }
    }

    @Test func retryAfterIsHonouredUnlessItAsksTooMuch() {
        let settings = FallbackSettings(retriesPerCandidate: 1, baseDelay: 0.1, maxDelay: 2)
        var run = FallbackRun(candidates: ["a", "b"], settings: settings, start: 0, cooling: { _ in false })
        _ = run.first()
        #expect(run.next(after: .status(429, retryAfter: 1.5), at: 0, jitter: 0) == .call(model: "a", after: 1.5))
        var impatient = FallbackRun(candidates: ["a", "b"], settings: settings, start: 0, cooling: { _ in false })
        _ = impatient.first()
        #expect(
            impatient.next(after: .status(429, retryAfter: 60), at: 0, jitter: 0) == .call(model: "b", after: 0),
            "a minute's wait: the next candidate instead")
    }

    @Test func theRunEndsOnTheRequestsOwnFaultOnMaxAttemptsAndOnTheDeadline() {
        let settings = FallbackSettings(maxAttempts: 3, retriesPerCandidate: 0, deadline: 10)
        let badRequest = Self.run(["a", "b"], settings: settings) { _, _ in .status(400, retryAfter: nil) }
        #expect(badRequest.calls.count == 1 && badRequest.ended.contains("another attempt cannot fix"), "\(badRequest)")
        let allDown = Self.run(["a", "b", "c", "d"], settings: settings) { _, _ in .connection }
        #expect(allDown.calls.map(\.0) == ["a", "b", "c"] && allDown.ended.contains("3 attempts made"), "\(allDown)")
        let exhausted = Self.run(["a", "b"], settings: FallbackSettings(maxAttempts: 9, retriesPerCandidate: 0)) { _, _ in .timeout }
        #expect(exhausted.calls.map(\.0) == ["a", "b"] && exhausted.ended.contains("no candidate left"), "\(exhausted)")
        // Each call hangs 6 s: after the first, the deadline (10 s) leaves room for one more, not two.
        var slow = FallbackRun(candidates: ["a", "b", "c"], settings: settings, start: 0, cooling: { _ in false })
        _ = slow.first()
        #expect(slow.next(after: .timeout, at: 6, jitter: 0) == .call(model: "b", after: 0))
        guard case .giveUp(let reason) = slow.next(after: .timeout, at: 12, jitter: 0) else {
            Issue.record("past the deadline a run gives up")
            return
        }
        #expect(reason.contains("deadline"))
        // A timeout is not retried on its model, whatever the retries: the next candidate at once.
        let hung = Self.run(["a", "b"], settings: FallbackSettings(maxAttempts: 5, retriesPerCandidate: 2)) { model, _ in
            model == "a" ? .timeout : nil
        }
        #expect(hung.calls.map(\.0) == ["a", "b"], "\(hung)")
        let midStream = Self.run(["a", "b"], settings: settings) { _, _ in .midStream }
        #expect(midStream.calls.count == 1, "nothing falls back once the client has bytes")
    }

    @Test func coolingModelsAreTriedLast() {
        let settings = FallbackSettings(maxAttempts: 4, retriesPerCandidate: 0)
        let (calls, ended) = Self.run(["a", "b", "c"], settings: settings, cooling: ["a"]) { model, _ in model == "b" ? .connection : nil }
        #expect(calls.map(\.0) == ["b", "c"] && ended == "answered by c")
        let allCooling = Self.run(["a", "b"], settings: settings, cooling: ["a", "b"]) { _, _ in nil }
        #expect(allCooling.calls.map(\.0) == ["a"], "when every candidate cools, the policy's order still stands")
    }
}

@Suite struct CoolDownTests {
    @Test func aModelThatKeepsFailingCoolsDownForItsTimeAndASuccessResetsTheCount() {
        let settings = FallbackSettings(failuresToCool: 3, coolDown: 30)
        let cool = CoolDowns()
        #expect(!cool.failed("a", .connection, at: 0, settings: settings))
        #expect(!cool.failed("a", .status(503, retryAfter: nil), at: 1, settings: settings))
        cool.succeeded("a")
        #expect(!cool.failed("a", .timeout, at: 2, settings: settings))
        #expect(!cool.failed("a", .timeout, at: 3, settings: settings))
        #expect(!cool.isCooling("a", at: 3), "a success in between: two in a row, not three")
        #expect(cool.failed("a", .midStream, at: 4, settings: settings), "the third in a row cools it")
        #expect(cool.isCooling("a", at: 4) && cool.isCooling("a", at: 33.9) && !cool.isCooling("a", at: 34))
        #expect(cool.cooling(at: 10) == ["a"] && cool.cooling(at: 40).isEmpty)
        // The request's own fault says nothing of the model.
        for time in 0..<5 { #expect(!cool.failed("b", .status(400, retryAfter: nil), at: Double(time), settings: settings)) }
        #expect(!cool.isCooling("b", at: 5))
    }
}

@Suite struct FallbackSettingsTests {
    @Test func badSettingsSayWhat() {
        #expect(FallbackSettings().problem == nil)
        #expect(FallbackSettings(maxAttempts: 0).problem?.contains("max_attempts") == true)
        #expect(FallbackSettings(baseDelay: 3, maxDelay: 1).problem?.contains("max_retry_delay") == true)
        #expect(FallbackSettings(deadline: 0).problem?.contains("deadline") == true)
        #expect(FallbackSettings(failuresToCool: 0).problem?.contains("cool_down_after") == true)
    }
}
