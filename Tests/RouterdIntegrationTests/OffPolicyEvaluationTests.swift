import Foundation
import RouterdTestSupport
import StableHash
import Testing

/// `routerctl eval --offpolicy` on what the real daemon logged: an exploring router's decisions,
/// each with the one outcome a service would see, where every model's outcome is known to the test.
@Suite(.timeLimit(.minutes(10))) struct OffPolicyEvaluationTests {
    static let routers = """
        \(TestConfig.randomRouter(name: "live", seed: 7))
            explore: {epsilon: 0.3, seed: 4}
            shadow: [target]
        \(TestConfig.randomRouter(name: "target", threshold: 0.1, seed: 99))
        """

    /// Every model's quality on prompt `index`: the strong model is right three times in four, the weak one under half the time.
    static func quality(_ model: String, _ index: Int) -> Double {
        var random = SplitMix64(seed: UInt64(index) &* 7919 &+ (model == TestConfig.strong ? 1 : 2))
        return random.unit() < (model == TestConfig.strong ? 0.75 : 0.45) ? 1 : 0
    }

    /// The daemon of these routers with a feedback store, and the store's folder.
    static func daemon(includePrompt: Bool) throws -> (Daemon, String) {
        let directory = try TemporaryDirectory()
        let store = directory.path + "/feedback"
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(
                    socket: $0, routers: Self.routers,
                    extra: "feedback:\n  directory: \(store)\n  include_prompt: \(includePrompt)\n  sync_interval_ms: 2")
            })
        return (daemon, store)
    }

    @Test func theEstimatesOfAnotherRouterCoverItsTrueValueAndTheLoggedValueIsExact() throws {
        let (daemon, store) = try Self.daemon(includePrompt: true)
        let connection = try daemon.connect()
        let count = 500
        var reported: [Double] = []
        var agreements = (target: 0, live: 0)
        var truth = (target: 0.0, live: 0.0)
        var targetChoices: [String: Int] = [:]
        for index in 0..<count {
            let prompt = "question \(index) about \(["sums", "verbs", "maps"][index % 3])"
            let decision = try connection.request(#"{"op":"route","router":"live","prompt":"\#(prompt)"}"#).result
            let id = try #require(decision["decision_id"] as? String)
            let model = try #require(decision["model"] as? String)
            let quality = Self.quality(model, index)
            #expect(try connection.request(#"{"op":"feedback","decision_id":"\#(id)","model":"\#(model)","quality":\#(quality)}"#).ok)
            reported.append(quality)
            // The live router's greedy choice is its score against its threshold; the target's is what it answers.
            let greedy = try #require(decision["score"] as? Double) >= 0.5 ? TestConfig.strong : TestConfig.weak
            let target = try #require(try connection.request(#"{"op":"route","router":"target","prompt":"\#(prompt)"}"#).result["model"] as? String)
            truth.live += Self.quality(greedy, index) / Double(count)
            truth.target += Self.quality(target, index) / Double(count)
            if greedy == model { agreements.live += 1 }
            if target == model { agreements.target += 1 }
            targetChoices[target, default: 0] += 1
        }

        let routerctl = try Package.binary("routerctl")
        let run = try runCommand(
            routerctl, ["eval", "--config", daemon.configFile, "--offpolicy", store, "--resamples", "500", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let report = try JSON.object(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(report["logged_router"] as? String == "live" && report["decisions"] as? Int == count, "\(report)")
        let logged = try #require((report["logged"] as? [String: Any])?["quality"] as? [String: Double])
        #expect(abs(logged["value"]! - reported.reduce(0, +) / Double(count)) < 1e-9, "the logged policy's value is its mean outcome")
        let targets = try #require(report["targets"] as? [[String: Any]])
        #expect(targets.map { $0["router"] as? String } == ["live", "target"], "by default, the logged router and its shadow")
        for (estimate, (truth, agreed)) in zip(targets, [(truth.live, agreements.live), (truth.target, agreements.target)]) {
            let name = estimate["router"] as! String
            // The evaluation decided each prompt as the daemon does: it agrees with the log exactly as often.
            #expect(abs((estimate["agreement"] as? Double ?? -1) - Double(agreed) / Double(count)) < 1e-9, "\(name): \(estimate)")
            for estimator in ["ips", "snips", "dr"] {
                let interval = try #require(estimate[estimator] as? [String: Double])
                #expect(interval["low"]! <= truth && truth <= interval["high"]!, "\(name) \(estimator) \(interval) against \(truth)")
                #expect(interval["high"]! - interval["low"]! < 0.25, "\(name) \(estimator) \(interval) is informative")
            }
        }
        #expect(targets[1]["choices"] as? [String: Int] == targetChoices)
        let readable = try runCommand(routerctl, ["eval", "--config", daemon.configFile, "--offpolicy", store, "--routers", "target"])
        #expect(readable.stdout.contains("logged by router live: \(count) decisions with outcomes"), "\(readable.stdout)")
        #expect(readable.stdout.contains("DR [95%]") && readable.stdout.contains("\ntarget "), "\(readable.stdout)")
        #expect(abs(truth.target - truth.live) > 0.05, "the two policies differ, so covering both means something: \(truth)")
    }

    @Test func aLogWithoutPromptTextGetsAnActionableError() throws {
        let (daemon, store) = try Self.daemon(includePrompt: false)
        let connection = try daemon.connect()
        let decision = try connection.request(#"{"op":"route","router":"live","prompt":"hello"}"#).result
        let (id, model) = (decision["decision_id"] as! String, decision["model"] as! String)
        #expect(try connection.request(#"{"op":"feedback","decision_id":"\#(id)","model":"\#(model)","quality":1}"#).ok)
        let routerctl = try Package.binary("routerctl")
        let run = try runCommand(routerctl, ["eval", "--config", daemon.configFile, "--offpolicy", store, "--routers", "target"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("carry only prompt hashes") && run.stderr.contains("feedback.include_prompt: true"), "\(run.stderr)")
        let unknown = try runCommand(routerctl, ["eval", "--config", daemon.configFile, "--offpolicy", store, "--routers", "nope"])
        #expect(unknown.status == 1 && !unknown.stderr.isEmpty, "\(unknown.stderr)")
    }
}
