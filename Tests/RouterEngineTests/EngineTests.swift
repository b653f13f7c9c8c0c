import Foundation
import Logging
import RouterConfig
import RouterEngine
import RouterPluginKit
import RouterdTestSupport
import Synchronization
import Testing

/// The engine in-process, without a socket: real configs, real plugins built by this package.
@Suite(.timeLimit(.minutes(10))) struct EngineTests {
    static let logger = Logger(label: "engine-tests")

    /// An engine on `routers`, with its config in a temporary folder.
    static func engine(routers: String? = nil, encoders: String = "", in directory: TemporaryDirectory) throws -> Engine {
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/unused.sock", routers: routers, encoders: encoders))
        return try Engine(configFile: config, executableDirectory: Package.binDirectory, logger: logger)
    }

    @Test func aDecisionIsADomainValueOnTheGenerationAsked() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.engine(in: directory)
        let generation = engine.current
        let decision = try engine.route(router: "random", prompt: "hello", on: generation)
        #expect(decision.generation == 1)
        #expect(decision.router == "random")
        let score = try #require(decision.score)
        #expect(decision.tier == (score >= 0.5 ? RoutingTier.strong : .weak))
        #expect(decision.policy == "threshold")
        #expect(decision.candidates.map(\.model) == [TestConfig.strong, TestConfig.weak])
        #expect(decision.candidates.map(\.quality) == [score, 1 - score])
        #expect(decision.model == (decision.tier == .strong ? TestConfig.strong : TestConfig.weak))
        // The seeded random router scores a prompt the same every time; a threshold override decides with it.
        let again = try engine.route(router: "random", prompt: "hello", override: .threshold(0), on: generation)
        #expect(again.score == decision.score)
        #expect(again.tier == .strong)
        #expect(engine.stats.snapshot().routers["random"]?.decisions == 2)
    }

    @Test func unknownNamesAreTypedErrorsThatListTheKnownOnes() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.engine(in: directory)
        #expect(throws: EngineError.unknownRouter(name: "ghost", known: ["random"])) {
            try engine.route(router: "ghost", prompt: "x", on: engine.current)
        }
        #expect(throws: EngineError.noEncoders) {
            try engine.embed(["x"], encoder: nil, policy: nil, tokens: false, on: engine.current)
        }
        #expect(EngineError.unknownRouter(name: "ghost", known: ["a", "b"]).message == "unknown router 'ghost' (routers: a, b)")
    }

    @Test func setDerivesAThresholdFromTheDescribedQuantiles() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.engine(in: directory)
        // The random plugin describes uniform quantiles, so a 25% strong share is threshold 0.75.
        #expect(engine.current.routers["random"]?.description.scoreQuantiles?.count == 101)
        let outcome = try engine.set(router: "random", threshold: nil, strongFraction: 0.25)
        #expect(abs(outcome.threshold - 0.75) < 1e-12)
        #expect(outcome.generation == 2)
        #expect(engine.current.routers["random"]?.threshold == outcome.threshold)
    }

    @Test func aReloadThatItsPreparationRejectsChangesNothing() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.engine(in: directory)
        let before = engine.current
        struct Refused: Error {}
        #expect(throws: EngineError.reloadRejected(generation: 1, problems: ["the log cannot be opened"], dryRun: false)) {
            try engine.reload(trigger: "test") { _ throws(GenerationError) in throw GenerationError(problems: ["the log cannot be opened"]) }
        }
        #expect(engine.current === before)
        let dryRun = try engine.reload(trigger: "test", dryRun: true)
        #expect(dryRun.dryRun && dryRun.generation == 1 && dryRun.reused == ["random"])
        #expect(engine.current === before)
        let real = try engine.reload(trigger: "test")
        #expect(real.generation == 2 && real.reused == ["random"])
        #expect(engine.stats.snapshot().history.map(\.accepted) == [false, true])
    }

    /// Building a generation has no side effects: the process-wide settings (OpenBLAS's
    /// thread count) are applied only when a generation is swapped in.
    @Test func processSettingsAreAppliedOnlyWhenAGenerationIsSwappedIn() throws {
        let directory = try TemporaryDirectory()
        let applied = Applied()
        let file = try directory.write("routerd.yaml", TestConfig.yaml(socket: directory.path + "/unused.sock"))
        let engine = try Engine(
            configFile: file, executableDirectory: Package.binDirectory, logger: Self.logger,
            processSettings: ProcessSettings { config in applied.record(config.file) })
        #expect(applied.count == 1, "generation 1 is applied as it starts serving")
        _ = try Engine.check(configFile: file, executableDirectory: Package.binDirectory, logger: Self.logger)
        _ = try engine.reload(trigger: "test", dryRun: true)
        #expect(applied.count == 1, "a check and a dry run change nothing in the process")
        _ = try engine.reload(trigger: "test")
        #expect(applied.count == 2)
        _ = try? engine.reload(trigger: "test") { _ throws(GenerationError) in throw GenerationError(problems: ["no"]) }
        #expect(applied.count == 2, "a rejected reload changes nothing")
    }

    final class Applied: Sendable {
        private let files = Mutex<[String]>([])
        func record(_ file: String) { files.withLock { $0.append(file) } }
        var count: Int { files.withLock { $0.count } }
    }
}
