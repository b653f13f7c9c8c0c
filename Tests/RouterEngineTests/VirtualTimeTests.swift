import Foundation
import Logging
import RouterConfig
import RouterdTestSupport
import Testing

@testable import RouterEngine

/// The engine's timed logic on virtual time (``ManualClock``): session and decision expiry and
/// when the online learner publishes. In-process, no sleeps; the daemon tests prove the wiring.
@Suite(.timeLimit(.minutes(10))) struct VirtualTimeTests {
    static let logger = Logger(label: "virtual-time-tests")

    static func engine(extra: String, routers: String? = nil, clock: ManualClock, in directory: TemporaryDirectory) throws -> Engine {
        let config = try directory.write(
            "routerd.yaml",
            TestConfig.yaml(socket: directory.path + "/unused.sock", routers: routers, models: TestConfig.catalogue + "\n" + extra))
        return try Engine(configFile: config, executableDirectory: Package.binDirectory, logger: logger, clock: clock)
    }

    static let twoModels = """
          r:
            plugin: random
            policy: {lambda: 0}
            candidates: [cheap, dear]
            params:
              seed: 5
        """

    @Test func aSessionLastsItsTTLAfterItsLastTurnAndThenStartsAnew() throws {
        let directory = try TemporaryDirectory()
        let clock = ManualClock()
        let engine = try Self.engine(extra: "sessions:\n  ttl: 3\n  max_entries: 50", routers: Self.twoModels, clock: clock, in: directory)
        func turn() throws -> SessionAffinity? {
            try engine.route(router: "r", prompt: "p", session: "s", on: engine.current).affinity
        }
        #expect(try turn() == .new)
        clock.advance(by: 2.9)
        #expect(try turn() == .same, "within the TTL of the last turn")
        clock.advance(by: 2.9)
        #expect(try turn() == .same, "the TTL counts from the last turn, not the first")
        clock.advance(by: 3.1)
        #expect(try turn() == .new, "past the TTL the session starts anew")
    }

    @Test func aDecisionCanBeNamedByFeedbackForItsTTLOnly() throws {
        let directory = try TemporaryDirectory()
        let clock = ManualClock()
        let feedback = "feedback:\n  directory: \(directory.path)/feedback\n  decisions: {ttl: 60}"
        let engine = try Self.engine(extra: feedback, clock: clock, in: directory)
        let decision = try engine.route(router: "random", prompt: "x", requester: 1000, on: engine.current)
        let report = FeedbackReport(subject: .decision(id: decision.id), model: TestConfig.strong, value: .pointwise(1))
        let requester = Reporter(uid: 1000, trusted: false)
        clock.advance(by: 59)
        #expect(try engine.outcome(of: report, from: requester, on: engine.current).prompt == "x")
        clock.advance(by: 2)
        #expect(throws: EngineError.unknownDecision(id: decision.id, ttlSeconds: 60)) {
            try engine.outcome(of: report, from: requester, on: engine.current)
        }
    }

    static func outcome(_ index: Int) -> Outcome {
        Outcome(router: "r", prompt: "p\(index)", decisionID: nil, model: "m", value: .pointwise(1))
    }

    @Test func outcomesArePublishedWhenEnoughWaitOrTheOldestHasWaitedTheInterval() {
        var queue = PublishQueue()
        var added = queue.add(Self.outcome(0), router: "r", now: 10)
        added = added && queue.add(Self.outcome(1), router: "r", now: 11)
        #expect(added)
        // Neither full (3) nor old enough (2 s): nothing is due, and the next deadline is the oldest's.
        var taken = queue.takeDue(now: 11.5, every: 3, interval: 2)
        #expect(taken.due.isEmpty && taken.next == 12)
        // At the deadline both go, though fewer than `every`.
        taken = queue.takeDue(now: 12, every: 3, interval: 2)
        #expect(taken.due.map(\.router) == ["r"] && taken.due[0].outcomes.map(\.prompt) == ["p0", "p1"])
        #expect(taken.next == nil && queue.count("r") == 0)
        // A full batch goes at once.
        for index in 0..<3 { _ = queue.add(Self.outcome(index), router: "r", now: 20) }
        let full = queue.takeDue(now: 20, every: 3, interval: 2)
        #expect(full.due.first?.outcomes.count == 3)
    }

    @Test func aFloodIsPublishedInSlicesAndAFullQueueRefuses() {
        var queue = PublishQueue()
        for index in 0..<10 { _ = queue.add(Self.outcome(index), router: "r", now: 0) }
        // At most four publishes' worth at once; the rest is due again straight away.
        let first = queue.takeDue(now: 0, every: 2, interval: 5)
        #expect(first.due.first?.outcomes.count == 8 && queue.count("r") == 2)
        let rest = queue.takeDue(now: 0, every: 2, interval: 5)
        #expect(rest.due.first?.outcomes.count == 2)
        for index in 0..<PublishQueue.maxPending { _ = queue.add(Self.outcome(index), router: "big", now: 0) }
        let refused = !queue.add(Self.outcome(-1), router: "big", now: 0)
        #expect(refused, "past maxPending an outcome is refused")
        #expect(queue.count("big") == PublishQueue.maxPending)
    }

    /// Outcomes hold their prompts, so the queue is bounded in bytes too (issue 23, finding 4):
    /// 64 prompts of a megabyte fill it, and taking a batch frees their bytes.
    @Test func aQueueOfLongPromptsIsBoundedInBytes() {
        var queue = PublishQueue()
        let megabyte = String(repeating: "x", count: 1 << 20)
        var added = 0
        for index in 0..<1000 {
            let outcome = Outcome(router: "r", prompt: "\(index) " + megabyte, decisionID: nil, model: "m", value: .pointwise(1))
            guard queue.add(outcome, router: "r", now: 0) else { break }
            added += 1
        }
        #expect(added == 63, "\(added) outcomes of a megabyte were queued")
        #expect(queue.bytes("r") <= PublishQueue.maxPendingBytes)
        let otherRouter = queue.add(Self.outcome(0), router: "other", now: 0)
        #expect(otherRouter, "another router's queue is its own")
        let taken = queue.takeDue(now: 100, every: 10, interval: 1)
        #expect(taken.due.first { $0.router == "r" }?.outcomes.count == 40)
        let roomAgain = queue.add(Self.outcome(1), router: "r", now: 100)
        #expect(queue.bytes("r") < 24 << 20 && roomAgain)
        _ = queue.takeDue(now: 200, every: 100, interval: 1)
        #expect(queue.bytes("r") == 0 && queue.bytes("other") == 0)
    }
}
