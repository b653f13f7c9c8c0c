import Foundation
import Logging
import RouterConfig
import RouterdTestSupport
import Testing

@testable import RouterEngine

/// Who may report on what (issue 23, finding 4), in-process: a decision is its requester's; a
/// trusted reporter (root, `feedback.allow`) may name any decision and a prompt by router;
/// anyone else is told a foreign decision is unknown, exactly as an id never issued.
@Suite struct FeedbackTrustTests {
    static func engine(in directory: TemporaryDirectory) throws -> Engine {
        try VirtualTimeTests.engine(
            extra: "feedback:\n  directory: \(directory.path)/feedback", routers: VirtualTimeTests.twoModels + "\n" + TestConfig.randomRouter(),
            clock: ManualClock(), in: directory)
    }

    @Test func aDecisionIsReportedOnOnlyByItsRequesterOrATrustedPeer() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.engine(in: directory)
        let decision = try engine.route(router: "random", prompt: "mine", requester: 1000, on: engine.current)
        let report = FeedbackReport(subject: .decision(id: decision.id), model: TestConfig.strong, value: .pointwise(1))

        #expect(try engine.outcome(of: report, from: Reporter(uid: 1000, trusted: false), on: engine.current).prompt == "mine")
        #expect(try engine.outcome(of: report, from: Reporter(uid: 4242, trusted: true), on: engine.current).prompt == "mine")
        // Another uid learns nothing: the same error, word for word, as for an id never issued.
        let foreign = #expect(throws: EngineError.self) {
            try engine.outcome(of: report, from: Reporter(uid: 1001, trusted: false), on: engine.current)
        }
        let never = FeedbackReport(subject: .decision(id: String(repeating: "0", count: 32)), model: TestConfig.strong, value: .pointwise(1))
        let unknown = #expect(throws: EngineError.self) {
            try engine.outcome(of: never, from: Reporter(uid: 1001, trusted: false), on: engine.current)
        }
        #expect(foreign?.message.replacingOccurrences(of: decision.id, with: "ID") == unknown?.message.replacingOccurrences(of: never.id, with: "ID"))
        // A peer whose credentials could not be read owns nothing, not even decisions made without credentials.
        let anonymous = try engine.route(router: "random", prompt: "anonymous", requester: nil, on: engine.current)
        #expect(throws: EngineError.self) {
            try engine.outcome(
                of: FeedbackReport(subject: .decision(id: anonymous.id), model: TestConfig.strong, value: .pointwise(1)),
                from: Reporter(uid: nil, trusted: false), on: engine.current)
        }
    }

    @Test func aPromptByRouterNeedsATrustedReporter() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.engine(in: directory)
        let report = FeedbackReport(subject: .prompt(router: "random", text: "p"), model: TestConfig.strong, value: .pointwise(1))
        let refused = #expect(throws: EngineError.self) {
            try engine.outcome(of: report, from: Reporter(uid: 1000, trusted: false), on: engine.current)
        }
        #expect(refused?.message.contains("feedback.allow") == true)
        #expect(try engine.outcome(of: report, from: Reporter(uid: 0, trusted: true), on: engine.current).prompt == "p")
    }

    @Test func aSessionIdIsItsRequestersOwn() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.engine(in: directory)
        #expect(try engine.route(router: "r", prompt: "p", session: "s", requester: 1000, on: engine.current).affinity == .new)
        #expect(try engine.route(router: "r", prompt: "p", session: "s", requester: 1000, on: engine.current).affinity == .same)
        // Another uid naming the same session id starts its own conversation; it cannot steer the first.
        #expect(try engine.route(router: "r", prompt: "p", session: "s", requester: 1001, on: engine.current).affinity == .new)
    }

    /// A named gateway key is a principal of its own: its decisions and sessions are not another
    /// key's, nor those of a uid.
    @Test func aNamedGatewayKeyIsAPrincipalOfItsOwn() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.engine(in: directory)
        let alice = Requester.key("alice")
        let decision = try engine.route(router: "random", prompt: "alice's", requester: alice, on: engine.current)
        let report = FeedbackReport(subject: .decision(id: decision.id), model: TestConfig.strong, value: .pointwise(1))
        #expect(try engine.outcome(of: report, from: Reporter(alice, trusted: false), on: engine.current).prompt == "alice's")
        #expect(throws: EngineError.self) { try engine.outcome(of: report, from: Reporter(.key("bob"), trusted: false), on: engine.current) }
        #expect(throws: EngineError.self) { try engine.outcome(of: report, from: Reporter(uid: 0, trusted: false), on: engine.current) }
        let byRouter = #expect(throws: EngineError.self) {
            try engine.outcome(
                of: FeedbackReport(subject: .prompt(router: "random", text: "p"), model: TestConfig.strong, value: .pointwise(1)),
                from: Reporter(.key("bob"), trusted: false), on: engine.current)
        }
        #expect(byRouter?.message.contains("gateway key 'bob'") == true, "\(String(describing: byRouter))")
        #expect(try engine.route(router: "r", prompt: "p", session: "s", requester: alice, on: engine.current).affinity == .new)
        #expect(try engine.route(router: "r", prompt: "p", session: "s", requester: .key("bob"), on: engine.current).affinity == .new)
        #expect(try engine.route(router: "r", prompt: "p", session: "s", requester: alice, on: engine.current).affinity == .same)
    }
}

extension FeedbackReport {
    fileprivate var id: String {
        if case .decision(let id) = subject { return id }
        return ""
    }
}
