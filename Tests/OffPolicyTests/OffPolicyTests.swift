import Foundation
import OffPolicy
import StableHash
import Testing

/// The estimators against replays whose every outcome is known: the truth is computed, not assumed.
@Suite struct OffPolicyEstimatorTests {
    /// A world of 40 kinds of prompt and 3 models, each model with its own chance of a good answer
    /// on each kind; the logging policy is ε-greedy around a rule of its own, the target another rule.
    struct World {
        static let kinds = 40
        static let models = ["a", "b", "c"]
        let chance: [[Double]]

        init(seed: UInt64) {
            var random = SplitMix64(seed: seed)
            chance = (0..<Self.kinds).map { _ in Self.models.map { _ in 0.1 + 0.8 * random.unit() } }
        }

        /// The logging policy's greedy choice: a fixed rule that ignores the chances.
        func greedy(_ kind: Int) -> Int { kind % 3 }
        /// The target: the best model for the kind.
        func target(_ kind: Int) -> Int { chance[kind].indices.max { chance[kind][$0] < chance[kind][$1] }! }
        /// The target's true value over all prompts (kinds are equally likely).
        var truth: Double { (0..<Self.kinds).map { chance[$0][target($0)] }.reduce(0, +) / Double(Self.kinds) }

        /// `count` decisions logged ε-greedily, each with its Bernoulli outcome, and the target's choices.
        func replay(_ count: Int, epsilon: Double, seed: UInt64) -> (logged: [LoggedOutcome], choices: [String]) {
            var random = SplitMix64(seed: seed)
            var logged: [LoggedOutcome] = []
            var choices: [String] = []
            for index in 0..<count {
                let kind = Int(random.next() % UInt64(Self.kinds))
                let greedy = greedy(kind)
                var chosen = greedy
                var propensity = 1 - epsilon + epsilon / 3
                if random.unit() < epsilon {
                    chosen = Int(random.next() % 3)
                    if chosen != greedy { propensity = epsilon / 3 }
                }
                let quality: Double = random.unit() < chance[kind][chosen] ? 1 : 0
                logged.append(
                    LoggedOutcome(
                        decisionID: "\(index)", router: "live", prompt: "kind \(kind)", model: Self.models[chosen], quality: quality,
                        propensity: propensity))
                choices.append(Self.models[target(kind)])
            }
            return (logged, choices)
        }
    }

    @Test func intervalsCoverTheTrueValueOfAnotherPolicyAtLeastNineTimesInTen() {
        var covered = (ips: 0, snips: 0, robust: 0)
        var widths = (ips: 0.0, robust: 0.0)
        var estimates: [Double] = []
        let replays = 100
        for replay in 0..<replays {
            let world = World(seed: UInt64(replay))
            let (logged, choices) = world.replay(600, epsilon: 0.3, seed: 1000 + UInt64(replay))
            var estimator = OffPolicyEstimator(logged: logged)
            estimator.resamples = 400
            estimator.seed = UInt64(replay)
            let estimate = estimator.estimate(choices: choices)
            if estimate.inversePropensity.covers(world.truth) { covered.ips += 1 }
            if estimate.selfNormalised?.covers(world.truth) == true { covered.snips += 1 }
            if estimate.doublyRobust.covers(world.truth) { covered.robust += 1 }
            widths.ips += estimate.inversePropensity.high - estimate.inversePropensity.low
            widths.robust += estimate.doublyRobust.high - estimate.doublyRobust.low
            estimates.append(estimate.doublyRobust.value - world.truth)
        }
        // 95% intervals: a bias, or intervals too narrow for the estimator's spread, falls below 90.
        #expect(covered.ips >= 90 && covered.snips >= 90 && covered.robust >= 90, "covered of \(replays): \(covered)")
        // Unbiased: the errors average out (their spread over 100 replays is about 0.006).
        let meanError = estimates.reduce(0, +) / Double(replays)
        #expect(abs(meanError) < 0.015, "mean error of the doubly robust estimate \(meanError)")
        #expect(widths.robust < widths.ips, "the reward model takes variance out: \(widths)")
    }

    @Test func aBiasedEstimateIsCaught() {
        // The same replays with the propensities logged wrong (as if every decision were greedy's):
        // the check above must be able to fail.
        var covered = 0
        for replay in 0..<50 {
            let world = World(seed: UInt64(replay))
            var (logged, choices) = world.replay(600, epsilon: 0.3, seed: 1000 + UInt64(replay))
            for index in logged.indices { logged[index].propensity = 0.8 }
            choices = choices.map { _ in "a" }
            var estimator = OffPolicyEstimator(logged: logged)
            estimator.resamples = 200
            let truth = (0..<World.kinds).map { world.chance[$0][0] }.reduce(0, +) / Double(World.kinds)
            if estimator.estimate(choices: choices).inversePropensity.covers(truth) { covered += 1 }
        }
        #expect(covered < 25, "IPS with wrong propensities covered \(covered) of 50")
    }

    @Test func theLoggingPolicyEvaluatedOnItsOwnDecisionsIsItsMeanQuality() {
        let world = World(seed: 3)
        var (logged, _) = world.replay(300, epsilon: 0, seed: 5)
        for index in logged.indices { logged[index].propensity = 1 }
        let estimator = OffPolicyEstimator(logged: logged)
        let mean = logged.map(\.quality).reduce(0, +) / 300
        let own = estimator.estimate(choices: logged.map(\.model))
        #expect(own.agreement == 1 && abs(own.effectiveSampleSize - 300) < 1e-9)
        #expect(abs(own.inversePropensity.value - mean) < 1e-12 && abs(own.selfNormalised!.value - mean) < 1e-12)
        #expect(abs(own.doublyRobust.value - mean) < 1e-12, "where the target always agrees, the reward model cancels out")
        let value = estimator.loggedValue()
        #expect(value.value == mean && value.low < mean && mean < value.high)
    }

    @Test func aTargetThatNeverAgreesHasNoSelfNormalisedEstimate() {
        let logged = (0..<20).map { LoggedOutcome(decisionID: "\($0)", router: "r", prompt: nil, model: "a", quality: 1, propensity: 1) }
        let estimate = OffPolicyEstimator(logged: logged).estimate(choices: Array(repeating: "b", count: 20))
        #expect(estimate.agreement == 0 && estimate.selfNormalised == nil && estimate.inversePropensity.value == 0)
        #expect(estimate.effectiveSampleSize == 0)
    }
}

@Suite struct OutcomeLogTests {
    func folder(_ quality: String, battles: String? = nil) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("outcome-log-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try quality.write(toFile: path + "/quality.jsonl", atomically: true, encoding: .utf8)
        if let battles { try battles.write(toFile: path + "/battles.jsonl", atomically: true, encoding: .utf8) }
        return path
    }

    @Test func decisionsAreReadWithTheirPropensitiesAndTheLastReportStands() throws {
        let path = try folder(
            """
            {"prompt":"one","quality":{"a":1},"router":"r","decision_id":"d1","propensity":0.25,"explored":true,"source":"feedback"}
            {"prompt_hash":"00ff","quality":{"b":0},"router":"r","decision_id":"d2","outcome":"failed"}
            {"prompt":"by prompt","quality":{"a":1},"router":"r"}

            {"prompt":"one","quality":{"a":0.5},"router":"r","decision_id":"d1","propensity":0.25}
            """, battles: #"{"prompt":"x","model_a":"a","model_b":"b","winner":"model_a"}"# + "\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let reading = try OutcomeLog.read(folder: path)
        #expect(reading.outcomes.map(\.decisionID) == ["d1", "d2"])
        #expect(reading.outcomes[0].quality == 0.5 && reading.outcomes[0].propensity == 0.25 && reading.outcomes[0].prompt == "one")
        #expect(reading.outcomes[1].failed && reading.outcomes[1].prompt == nil && reading.outcomes[1].propensity == 1)
        #expect(reading.withoutDecision == 1 && reading.replaced == 1 && reading.pairwise == 1 && reading.withoutPropensity == 1)
    }

    @Test func aMalformedRowIsAnErrorNamingItsLine() throws {
        let cases = [
            (#"{"quality":{"a":1},"router":"r","decision_id":"d","propensity":0}"#, "'propensity' must be a number in (0, 1], found 0"),
            (#"{"quality":{"a":1.5},"router":"r","decision_id":"d"}"#, "one model's value in [0, 1]"),
            (#"{"quality":{"a":1},"decision_id":"d"}"#, "without 'router'"),
            ("not json", "not a JSON object"),
        ]
        for (row, message) in cases {
            let path = try folder(#"{"quality":{"a":1},"router":"r","decision_id":"ok"}"# + "\n" + row + "\n")
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect {
                try OutcomeLog.read(folder: path)
            } throws: { error in
                let text = "\(error)"
                return text.contains("quality.jsonl:2: ") && text.contains(message)
            }
        }
        #expect(throws: OffPolicyError.self) { try OutcomeLog.read(folder: "/nonexistent/feedback") }
    }
}
