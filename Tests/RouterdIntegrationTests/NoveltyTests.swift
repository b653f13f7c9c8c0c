import Foundation
import RouterdTestSupport
import Testing

/// Novelty through the real daemon: each decision of a router with `novelty:` says how familiar
/// its prompt is, novel prompts go where `on_novel` says, and `stats` and the metrics count them.
@Suite(.timeLimit(.minutes(10)), .requires(.encoderModel))
struct NoveltyTests {
    /// An index of two topics, 30 prompts each (k-nearest familiarity needs more than a handful):
    /// proofs, which the big model wins, and greetings, which tie.
    static let proofs = [
        "the square root of 2 is irrational", "there are infinitely many primes", "the sum of two even numbers is even",
        "every finite group of prime order is cyclic", "the harmonic series diverges", "e is irrational",
        "a continuous function on a closed interval is bounded", "the product of two odd numbers is odd",
        "every tree with n vertices has n - 1 edges", "the empty set is a subset of every set",
    ].flatMap { fact in ["Prove that \(fact).", "Give a rigorous proof that \(fact).", "Show formally that \(fact)."] }
    static let greetings = [
        "my friend", "my neighbour", "the team", "my grandmother", "a new colleague", "the class", "my brother", "the audience",
        "an old classmate", "the shopkeeper",
    ].flatMap { who in ["Say good morning to \(who).", "Write a short hello to \(who).", "Greet \(who) warmly."] }
    static let familiar = proofs + greetings

    static func trainIndex(at index: String, in directory: TemporaryDirectory) throws -> (status: Int32, stdout: String, stderr: String) {
        let lines =
            proofs.map { #"{"prompt":"\#($0)","model_a":"big","model_b":"small","winner":"model_a"}"# }
            + greetings.map { #"{"prompt":"\#($0)","model_a":"big","model_b":"small","winner":"tie"}"# }
        let battles = try directory.write("battles.jsonl", lines.joined(separator: "\n") + "\n")
        return try runCommand(
            try Package.binary("routerctl"),
            [
                "train", "sw_ranking", battles, "--output", index, "--model", EncoderFixture.modelDirectory, "--cache",
                directory.path + "/cache.bin", "--strong", "big", "--weak", "small",
            ])
    }
    static let unfamiliar = [
        "Quel temps fera-t-il à Lyon demain matin ?", "List the ingredients of a classic Bolognese sauce.",
        "Translate 'Guten Abend' into Japanese.", "Which port does the RS-232 connector use for ground?",
    ]

    @Test func decisionsSayHowFamiliarTheirPromptIsAndNovelOnesFollowTheRule() throws {
        let directory = try TemporaryDirectory()
        let index = directory.path + "/sw.safetensors"
        let build = try Self.trainIndex(at: index, in: directory)
        #expect(build.status == 0, "\(build.stderr)")
        let port = ObservabilityTests.freePort()
        let threshold = 0.5
        let routers =
            TinyBattles.router("plain", plugin: "sw_ranking", params: "index: \(index)") + "\n    novelty: {threshold: \(threshold)}\n"
            + TinyBattles.router("ruled", plugin: "sw_ranking", params: "index: \(index)")
            + "\n    novelty: {threshold: \(threshold), on_novel: {model: big}}\n"
            + TinyBattles.router("unjudged", plugin: "sw_ranking", params: "index: \(index)")
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(
                    socket: $0, routers: routers, encoders: EncoderFixture.encoders(), extra: "metrics:\n  listen: 127.0.0.1:\(port)")
            })
        let connection = try daemon.connect()
        var novel = 0
        var familiarity: [String: Double] = [:]
        for prompt in Self.familiar + Self.unfamiliar {
            func route(_ router: String) throws -> [String: Any] {
                try connection.request(#"{"op":"route","router":"\#(router)","prompt":"\#(prompt)"}"#).result
            }
            let plain = try route("plain")
            let ruled = try route("ruled")
            let unjudged = try route("unjudged")
            let value = try #require(plain["familiarity"] as? Double, "\(plain)")
            familiarity[prompt] = value
            #expect(value >= 0 && value <= 1)
            #expect(plain["novel"] as? Bool == (value < threshold), "novel is familiarity below the threshold: \(plain)")
            #expect(ruled["familiarity"] as? Double == value, "the same index judges the same")
            #expect(unjudged["familiarity"] == nil && unjudged["novel"] == nil, "a router without novelty: says nothing of it")
            #expect(plain["model"] as? String == unjudged["model"] as? String, "without on_novel, the policy decides")
            if value < threshold {
                novel += 1
                #expect(ruled["model"] as? String == "big" && ruled["propensity"] as? Double == 1, "a novel prompt follows on_novel: \(ruled)")
            } else {
                #expect(ruled["model"] as? String == unjudged["model"] as? String && ruled["propensity"] == nil)
            }
        }
        // The index's own prompts spread over [0, 1] (a percentile of themselves); prompts of neither topic sit at the bottom.
        let indexed = Self.familiar.map { familiarity[$0]! }.sorted()
        let foreign = Self.unfamiliar.map { familiarity[$0]! }
        #expect(indexed[indexed.count / 2] > 0.3, "\(indexed)")
        #expect(foreign.allSatisfy { $0 < 0.1 } && foreign.reduce(0, +) / Double(foreign.count) < 0.05, "\(foreign)")
        #expect(novel >= Self.unfamiliar.count, "\(familiarity)")

        let stats = try #require(try connection.request(#"{"op":"stats"}"#).result["routers"] as? [String: Any])
        for name in ["plain", "ruled"] {
            let counted = try #require((stats[name] as? [String: Any])?["novelty"] as? [String: Any], "\(stats)")
            #expect(counted["judged"] as? Int == Self.familiar.count + Self.unfamiliar.count && counted["novel"] as? Int == novel, "\(counted)")
            #expect(counted["threshold"] as? Double == threshold)
        }
        #expect((stats["unjudged"] as? [String: Any])?["novelty"] == nil)
        let metrics = try ObservabilityTests.get(port: port, path: "/metrics").body
        #expect(metrics.contains(#"routerd_novel_decisions_total{router="ruled"} \#(novel)"#), "\(metrics)")
    }

    /// The C plugin built from the header alone, judging prompts starting "new" unfamiliar.
    static func constantRouter(novelty: String) -> String {
        """
          constant:
            plugin: constant
            threshold: 0.5
            strong_model: big
            weak_model: small
            novelty: \(novelty)
            params:
              score: 0.9
        """
    }

    @Test func onNovelExploreDrawsUniformlyAndLogsThePropensity() throws {
        let directory = try TemporaryDirectory()
        let plugins = try PluginTests.buildConstantPlugin(in: directory, flags: ["-DFAMILIARITY"])
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(
                    socket: $0, routers: Self.constantRouter(novelty: "{threshold: 0.5, on_novel: explore}"),
                    searchPaths: [Package.root + "/plugins", plugins])
            })
        let connection = try daemon.connect()
        var small = 0
        for index in 0..<200 {
            let novel = try connection.request(#"{"op":"route","router":"constant","prompt":"new topic \#(index)"}"#).result
            #expect(novel["familiarity"] as? Double == 0 && novel["novel"] as? Bool == true && novel["propensity"] as? Double == 0.5)
            #expect(novel["explored"] as? Bool == (novel["model"] as? String == "small"), "explored when it left the policy's choice: \(novel)")
            if novel["model"] as? String == "small" { small += 1 }
            let known = try connection.request(#"{"op":"route","router":"constant","prompt":"old topic \#(index)"}"#).result
            #expect(known["familiarity"] as? Double == 1 && known["novel"] as? Bool == false && known["model"] as? String == "big")
            #expect(known["propensity"] == nil && known["explored"] == nil)
        }
        #expect(small > 70 && small < 130, "a uniform draw between two candidates: \(small) of 200 to small")
        let stats = try #require(
            (try connection.request(#"{"op":"stats"}"#).result["routers"] as? [String: Any])?["constant"] as? [String: Any])
        let novelty = try #require(stats["novelty"] as? [String: Any])
        #expect(novelty["judged"] as? Int == 400 && novelty["novel"] as? Int == 200 && novelty["share"] as? Double == 0.5)
        #expect(stats["exploration"] == nil, "the novelty rule's draws are not an explore: router's")
    }

    @Test func aPluginOfAnEarlierRevisionIsRefusedNovelty() throws {
        // Built against revision 3's table size, with a bad pointer where familiarity would be: the host must not read it.
        let directory = try TemporaryDirectory()
        let plugins = try PluginTests.buildConstantPlugin(in: directory, flags: ["-DREVISION3"])
        let config = try directory.write(
            "routerd.yaml",
            TestConfig.yaml(
                socket: directory.path + "/unused.sock", routers: Self.constantRouter(novelty: "{threshold: 0.1}"),
                searchPaths: [Package.root + "/plugins", plugins]))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("novelty needs a plugin that judges how familiar a prompt is"), "\(check.stderr)")
        let without = try directory.write(
            "plain.yaml",
            TestConfig.yaml(
                socket: directory.path + "/unused.sock", routers: PluginTests.constantRouter(), searchPaths: [Package.root + "/plugins", plugins]))
        #expect(try runCommand(try Package.binary("routerd"), ["--check-config", "--config", without]).status == 0, "it loads without novelty")
    }

    @Test func aPluginThatCannotJudgeFamiliarityIsRefusedNovelty() throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write(
            "routerd.yaml",
            TestConfig.yaml(
                socket: directory.path + "/unused.sock", routers: TestConfig.randomRouter() + "\n    novelty: {threshold: 0.1}"))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(
            check.stderr.contains("novelty needs a plugin that judges how familiar a prompt is") && check.stderr.contains("'random'"),
            "\(check.stderr)")
    }
}
