import Foundation
import RouterConfig
import RouterdTestSupport
import Testing

@testable import RouterEngine

/// ε-greedy exploration with logged propensities (issue 24), in-process on the real plugins: the
/// share explored, the propensity of every choice, the cost bound, and sessions keeping their model.
@Suite(.timeLimit(.minutes(10))) struct ExplorationTests {
    static func router(explore: String?) -> String {
        PolicyTests.threeModels("{lambda: 50}") + (explore.map { "\n    explore: \($0)" } ?? "")
    }

    static let prompts = (0..<3000).map { "prompt \($0) on \(["maths", "poetry", "code"][$0 % 3])" }

    @Test func aShareNearEpsilonExploresAndEveryChoiceCarriesItsPropensity() throws {
        let directory = try TemporaryDirectory()
        let greedy = try PolicyTests.engine(routers: Self.router(explore: nil), in: directory)
        let exploring = try PolicyTests.engine(routers: Self.router(explore: "{epsilon: 0.2, seed: 3}"), in: try TemporaryDirectory())
        var explored = 0
        for prompt in Self.prompts {
            let policy = try greedy.route(router: "many", prompt: prompt, on: greedy.current)
            let decision = try exploring.route(router: "many", prompt: prompt, on: exploring.current)
            #expect(policy.propensity == nil && policy.explored == nil, "a router that does not explore logs no propensity")
            if decision.explored == true {
                explored += 1
                #expect(decision.model != policy.model, "an explored decision goes to another candidate")
                #expect(abs(decision.propensity! - 0.2 / 2) < 1e-12, "ε spread over the two other candidates")
            } else {
                #expect(decision.model == policy.model && abs(decision.propensity! - 0.8) < 1e-12)
            }
        }
        let share = Double(explored) / Double(Self.prompts.count)
        #expect(abs(share - 0.2) < 0.03, "explored \(share) of the traffic with ε 0.2")
        let stats = try #require(exploring.statsSnapshot(on: exploring.current).routers["many"])
        #expect(stats.drawn == UInt64(Self.prompts.count) && stats.explored == UInt64(explored))
    }

    @Test func anExploredDecisionCostsNoMoreThanTheBoundAboveTheGreedyOne() throws {
        let directory = try TemporaryDirectory()
        let engine = try PolicyTests.engine(routers: Self.router(explore: "{epsilon: 0.5, max_extra_cost: 0, seed: 5}"), in: directory)
        let greedy = try PolicyTests.engine(routers: Self.router(explore: nil), in: try TemporaryDirectory())
        var explored = 0
        for prompt in Self.prompts.prefix(600) {
            let decision = try engine.route(router: "many", prompt: prompt, on: engine.current)
            let policy = try greedy.route(router: "many", prompt: prompt, on: greedy.current)
            let cost = { (model: String) in decision.candidates.first { $0.model == model }!.cost! }
            #expect(cost(decision.model) <= cost(policy.model), "\(decision.model) explored from \(policy.model)")
            if decision.explored == true { explored += 1 }
            if policy.model == "cheap" { #expect(decision.explored == false && decision.propensity == 1, "nothing is cheaper to explore") }
        }
        #expect(explored > 0)
        let stats = try #require(engine.statsSnapshot(on: engine.current).routers["many"])
        #expect(stats.exploreExtraCost <= 0)
    }

    @Test func aSessionKeepsItsModelAndItsLaterDecisionsAreCertain() throws {
        let directory = try TemporaryDirectory()
        let engine = try PolicyTests.engine(routers: Self.router(explore: "{epsilon: 0.5, seed: 9}"), in: directory)
        let first = try engine.route(router: "many", prompt: "the first turn", session: "s", on: engine.current)
        #expect(first.affinity == .new && first.propensity != nil)
        var model = first.model
        for turn in 0..<50 {
            let next = try engine.route(router: "many", prompt: "turn \(turn)", session: "s", on: engine.current)
            #expect(next.explored == false && next.propensity == 1, "a session's later turns do not explore")
            // The session's model stays, or moves up when the policy's own choice is dearer; a draw never moves it.
            if next.affinity != .escalated { #expect(next.model == model, "turn \(turn): \(next.model) after \(model)") }
            model = next.model
        }
    }

    @Test func badExploreSettingsAreRejected() throws {
        for (explore, message) in [
            ("{epsilon: 0.9}", "explore.epsilon"), ("{max_extra_cost: 1}", "explore needs epsilon"), ("{epsilon: 0.1, rate: 2}", "rate"),
            ("{strategy: greedy}", "explore.strategy"), ("{strategy: thompson, epsilon: 0.1}", "bound is max_share"),
            ("{strategy: thompson, draws: 3}", "explore.draws"), ("{strategy: thompson, max_share: 0}", "explore.max_share"),
            ("{epsilon: 0.1, max_share: 0.2}", "explore.max_share is for strategy thompson"),
            // The random plugin has no posterior to draw from.
            ("{strategy: thompson}", "Thompson sampling needs a plugin that draws from its posterior"),
        ] {
            let directory = try TemporaryDirectory()
            let error = #expect(throws: (any Error).self) { try PolicyTests.engine(routers: Self.router(explore: explore), in: directory) }
            #expect("\(error.map { "\($0)" } ?? "")".contains(message), "\(explore): \(String(describing: error))")
        }
    }
}

/// Thompson sampling (issue 24), in-process on the real sw_ranking plugin starting cold: each
/// decision follows one posterior draw, and the propensity it logs is the share of draws that
/// choose its model, so logged propensities match how often each model is really chosen.
@Suite(.timeLimit(.minutes(10)), .requires(.encoderModel)) struct ThompsonSamplingTests {
    static func engine(explore: String, in directory: TemporaryDirectory) throws -> Engine {
        let routers = """
              cold:
                plugin: sw_ranking
                policy: {lambda: 2}
                candidates: [cheap, middle, dear]
                encoder: minilm
                explore: \(explore)
            """
        let config = try directory.write(
            "routerd.yaml",
            TestConfig.yaml(
                socket: directory.path + "/unused.sock", routers: routers, encoders: EncoderFixture.encoders(), models: TestConfig.catalogue))
        return try Engine(configFile: config, executableDirectory: Package.binDirectory, logger: PolicyTests.logger)
    }

    @Test func loggedPropensitiesMatchHowOftenEachModelIsChosen() throws {
        let engine = try Self.engine(explore: "{strategy: thompson, seed: 4}", in: try TemporaryDirectory())
        var chosen: [String: Int] = [:]
        var propensities: [String: Double] = [:]
        let decisions = 1500
        for _ in 0..<decisions {
            let decision = try engine.route(router: "cold", prompt: "Prove that there are infinitely many primes.", on: engine.current)
            let propensity = try #require(decision.propensity)
            #expect(propensity > 0 && propensity <= 1)
            chosen[decision.model, default: 0] += 1
            propensities[decision.model, default: 0] += propensity
        }
        // Cold, the posterior is the prior alone: wide enough that every model wins some draws.
        #expect(chosen.count == 3, "\(chosen)")
        for (model, count) in chosen {
            let frequency = Double(count) / Double(decisions)
            let logged = propensities[model]! / Double(count)
            // Within 0.04: binomial noise (±0.025 at 2 standard errors) plus the Monte Carlo estimate's
            // own bias, at most 1/draws since the draw followed is one of those counted.
            #expect(abs(frequency - logged) < 0.04, "\(model): chosen \(frequency) of the time, logged propensity \(logged) on average")
        }
    }

    @Test func aShareBoundAndACostBoundHold() throws {
        let prompts = (0..<600).map { "Question \($0): what is \($0) times \($0 + 3)?" }
        for bound in ["", ", max_extra_cost: 0"] {
            let engine = try Self.engine(explore: "{strategy: thompson, max_share: 0.3, seed: 8\(bound)}", in: try TemporaryDirectory())
            let router = try #require(engine.current.routers["cold"])
            var explored = 0
            for prompt in prompts {
                let decision = try engine.route(router: "cold", prompt: prompt, on: engine.current)
                // The greedy choice: the same router, for evaluation (no exploration). Cold, it is the cheapest.
                let policy = try engine.route(router, prompt: prompt, forEvaluation: true, on: engine.current)
                #expect(policy.model == "cheap")
                if decision.explored == true {
                    explored += 1
                    #expect(decision.propensity! <= 0.3 + 1e-12, "an explored choice is only ever a draw's: at most the share")
                } else {
                    #expect(decision.model == policy.model && decision.propensity! >= 0.7 - 1e-12)
                }
            }
            let share = Double(explored) / Double(prompts.count)
            let stats = try #require(engine.statsSnapshot(on: engine.current).routers["cold"])
            #expect(stats.drawn == UInt64(prompts.count) && stats.explored == UInt64(explored))
            if bound.isEmpty {
                #expect(share > 0.1 && share <= 0.3 + 0.05, "explored \(share) with max_share 0.3")
                #expect(stats.exploreExtraCost > 0)
            } else {
                #expect(explored == 0 && stats.exploreExtraCost == 0, "nothing is cheaper than the greedy choice to explore")
            }
        }
    }
}
