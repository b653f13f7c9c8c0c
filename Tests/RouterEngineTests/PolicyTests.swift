import Foundation
import Logging
import RouterConfig
import RouterEngine
import RouterdTestSupport
import Testing

/// Many candidates, prices and cost policies, in-process on the real plugins.
@Suite(.timeLimit(.minutes(10))) struct PolicyTests {
    static let logger = Logger(label: "policy-tests")

    static func engine(routers: String, in directory: TemporaryDirectory, models: String = TestConfig.catalogue) throws -> Engine {
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/unused.sock", routers: routers, models: models))
        return try Engine(configFile: config, executableDirectory: Package.binDirectory, logger: logger)
    }

    /// A seeded random router over cheap, middle and dear with `policy`.
    static func threeModels(_ policy: String, name: String = "many") -> String {
        """
          \(name):
            plugin: random
            policy: \(policy)
            candidates: [middle, cheap, dear]
            params:
              seed: 11
        """
    }

    static let prompts = (0..<200).map { "prompt number \($0) about \(["maths", "poetry", "code", "history"][$0 % 4])" }

    @Test func lambdaChoosesTheBestQualityNetOfCostAndTheReplyShowsWhy() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.engine(routers: Self.threeModels("{lambda: 50}"), in: directory)
        let router = try #require(engine.current.routers["many"])
        #expect(router.candidates.map(\.name) == ["middle", "cheap", "dear"])
        #expect(router.candidates.map(\.rank) == [1, 0, 2], "ranked by price")
        #expect(router.strongModel == "dear" && router.weakModel == "cheap", "unnamed, strong and weak are the dearest and the cheapest")
        var chosen: [String: UInt64] = [:]
        for prompt in Self.prompts {
            let decision = try engine.route(router: "many", prompt: prompt, on: engine.current)
            #expect(decision.policy == "lambda" && decision.lambda == 50 && decision.tier == nil && decision.score == nil)
            #expect(decision.candidates.map(\.model) == ["middle", "cheap", "dear"])
            // Recompute the rule from the figures the reply gives.
            let utilities = decision.candidates.map { $0.quality - 50 * $0.cost! }
            let best = decision.candidates[utilities.indices.max { utilities[$0] < utilities[$1] }!]
            #expect(decision.model == best.model, "\(decision)")
            // The cost is the catalogue's price of this prompt: chars/4 prompt tokens plus 100 output tokens.
            let tokens = Double(max(1, (prompt.unicodeScalars.count + 3) / 4))
            #expect(abs(decision.candidates[2].cost! - (tokens * 10 + 100 * 30) / 1e6) < 1e-15)
            chosen[decision.model, default: 0] += 1
        }
        #expect(chosen.count == 3, "with λ = 50 every model wins somewhere: \(chosen)")
        #expect(engine.stats.snapshot().routers["many"]?.models == chosen)
    }

    @Test func lambdaZeroIsBestQualityAndAHugeLambdaIsCheapest() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.engine(routers: Self.threeModels("{lambda: 0}"), in: directory)
        for prompt in Self.prompts.prefix(50) {
            let decision = try engine.route(router: "many", prompt: prompt, on: engine.current)
            #expect(decision.model == decision.candidates.max { $0.quality < $1.quality }!.model)
            // The model name carries λ for a lambda router: router-many-1e9 is price alone.
            let cheapest = try engine.route(router: "many", prompt: prompt, override: .knob(1e9), on: engine.current)
            #expect(cheapest.model == "cheap" && cheapest.lambda == 1e9)
        }
    }

    @Test func cheapestWithinTakesTheCheapestNearTheBest() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.engine(routers: Self.threeModels("{cheapest_within: 0.2}"), in: directory)
        var notBest = 0
        for prompt in Self.prompts {
            let decision = try engine.route(router: "many", prompt: prompt, on: engine.current)
            #expect(decision.epsilon == 0.2 && decision.policy == "cheapest_within")
            let top = decision.candidates.map(\.quality).max()!
            let eligible = decision.candidates.filter { $0.quality >= top - 0.2 }
            #expect(decision.model == eligible.min { $0.cost! < $1.cost! }!.model, "\(decision)")
            if decision.candidates.first(where: { $0.model == decision.model })!.quality < top { notBest += 1 }
        }
        #expect(notBest > 0, "ε lets a cheaper, slightly worse model win")
        // A per-request ε of 1 is price alone; of 0, quality alone.
        let any = Self.prompts[0]
        #expect(try engine.route(router: "many", prompt: any, override: .cheapestWithin(1), on: engine.current).model == "cheap")
        let strict = try engine.route(router: "many", prompt: any, override: .cheapestWithin(0), on: engine.current)
        #expect(strict.model == strict.candidates.max { $0.quality < $1.quality }!.model)
    }

    @Test func overridesThatDoNotFitTheRouterAreTypedErrors() throws {
        let directory = try TemporaryDirectory()
        let routers = Self.threeModels("{lambda: 1}") + "\n" + TestConfig.randomRouter()
        // Without a catalogue a cost policy cannot load at all.
        #expect(throws: GenerationError.self) { try Self.engine(routers: routers, in: directory, models: "") }
        let priced = try Self.engine(routers: routers, in: directory)
        #expect(throws: EngineError.self) {
            try priced.route(router: "many", prompt: "x", override: .threshold(0.5), on: priced.current)
        }
        #expect(throws: EngineError.self) { try priced.route(router: "many", prompt: "x", override: .knob(-1), on: priced.current) }
        #expect(throws: EngineError.self) { try priced.route(router: "random", prompt: "x", override: .knob(1.5), on: priced.current) }
        // The binary router's candidates are priced too, so it takes a λ for one request.
        let binary = try priced.route(router: "random", prompt: "x", override: .lambda(0), on: priced.current)
        #expect(binary.policy == "lambda" && binary.candidates.count == 2)
        #expect(binary.model == (binary.candidates[0].quality >= binary.candidates[1].quality ? TestConfig.strong : TestConfig.weak))
    }
}
