import Foundation
import Logging
import RouterEngine
import RouterProtocol
import RouterdTestSupport
import Testing

@testable import RouterDaemon

/// A request is resolved once: its router instance looked up, its kind of work and where it runs.
@Suite(.timeLimit(.minutes(10))) struct RequestPlanTests {
    static func generation(in directory: TemporaryDirectory) throws -> Generation {
        let config = try directory.write(
            "routerd.yaml",
            TestConfig.yaml(
                socket: directory.path + "/unused.sock",
                routers: TestConfig.randomRouter() + "\n" + TestConfig.randomRouter(name: "slow") + "\n    timeout: 0.5"))
        return try Engine(configFile: config, executableDirectory: Package.binDirectory, logger: Logger(label: "plan-tests")).current
    }

    @Test func aRouteCarriesItsRouterInstanceAndPlace() throws {
        let directory = try TemporaryDirectory()
        let generation = try Self.generation(in: directory)
        guard case .decide(let decide) = try RequestPlan(.route(RouteRequest(router: "random", prompt: "hi")), on: generation) else {
            Issue.record("a route is a decision")
            return
        }
        #expect(decide.router === generation.routers["random"], "the generation's own instance")
        #expect(decide.prompts == ["hi"])
        guard case .eventLoop = decide.place else {
            Issue.record("a router without timeout or I/O decides on the event loop")
            return
        }
        guard case .decide(let slow) = try RequestPlan(.score(ScoreRequest(router: "slow", prompts: ["a", "b"])), on: generation),
            case .deadline(let seconds) = slow.place
        else {
            Issue.record("a router with a timeout decides behind a deadline")
            return
        }
        #expect(seconds == 0.5 && slow.prompts == ["a", "b"])
        // A score of several prompts adds up its plugin calls: not on an event loop (issue 23, finding 1).
        guard case .decide(let batch) = try RequestPlan(.score(ScoreRequest(router: "random", prompts: ["a", "b"])), on: generation),
            case .compute = batch.place
        else {
            Issue.record("a score of several prompts decides on the compute pool")
            return
        }
        guard case .decide(let one) = try RequestPlan(.score(ScoreRequest(router: "random", prompts: ["a"])), on: generation),
            case .eventLoop = one.place
        else {
            Issue.record("a score of one prompt decides on the event loop, as a route does")
            return
        }
    }

    @Test func anUnknownRouterIsAnErrorAtPlanning() throws {
        let directory = try TemporaryDirectory()
        let generation = try Self.generation(in: directory)
        #expect(throws: EngineError.unknownRouter(name: "ghost", known: ["random", "slow"])) {
            try RequestPlan(.route(RouteRequest(router: "ghost", prompt: "x")), on: generation)
        }
    }

    @Test func otherOpsRunWhereTheirCostSays() throws {
        let directory = try TemporaryDirectory()
        let generation = try Self.generation(in: directory)
        func place(_ request: Request) throws -> String {
            switch try RequestPlan(request, on: generation) {
            case .decide: "decide"
            case .feedback: "feedback"
            case .compute: "compute"
            case .admin: "admin"
            case .immediate: "immediate"
            }
        }
        // Operators' changes run on their own pool, apart from clients' embeds.
        #expect(try place(.reload(ReloadRequest(dryRun: false))) == "admin")
        #expect(try place(.embed(EmbedRequest(texts: ["x"]))) == "compute")
        #expect(try place(.learn(LearnRequest(action: .reset, router: "random"))) == "admin")
        #expect(try place(.learn(LearnRequest(action: .status, router: nil))) == "immediate")
        #expect(try place(.stats) == "immediate")
        #expect(try place(.feedback(FeedbackRequest(subject: .decision(id: "00ab"), model: "m", value: .pointwise(quality: 1)))) == "feedback")
    }
}
