import Foundation
import RouterConfig
import RouterdTestSupport
import Testing

@testable import RouterEngine

/// ε-greedy exploration with logged propensities (issue 24), in-process on the real plugins: the
/// share explored, the propensity of every choice, the cost bound, and sessions keeping their model.
@Suite(.timeLimit(.minutes(5))) struct ExplorationTests {
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
        ] {
            let directory = try TemporaryDirectory()
            let error = #expect(throws: (any Error).self) { try PolicyTests.engine(routers: Self.router(explore: explore), in: directory) }
            #expect("\(error.map { "\($0)" } ?? "")".contains(message), "\(explore): \(String(describing: error))")
        }
    }
}
