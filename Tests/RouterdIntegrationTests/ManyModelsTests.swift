import Foundation
import RouterProtocol
import RouterdTestSupport
import Testing

/// Routing among many models through the daemon: the catalogue, ABI revision 2 and its
/// compatibility with revision-1 plugins, per-request policies and session affinity.
@Suite(.timeLimit(.minutes(10))) struct ManyModelsTests {
    /// The constant C plugin over `candidates` with `policy`.
    static func constantRouter(candidates: [String], policy: String = "{lambda: 0}", score: Double = 0.8) -> String {
        """
          constant:
            plugin: constant
            policy: \(policy)
            candidates: [\(candidates.joined(separator: ", "))]
            params:
              score: \(score)
        """
    }

    static func check(_ config: String) throws -> (status: Int32, stdout: String, stderr: String) {
        try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
    }

    @Test func aPluginThatPredictsQualitiesRoutesAmongMany() throws {
        let directory = try TemporaryDirectory()
        let plugins = try PluginTests.buildConstantPlugin(in: directory, flags: ["-DSCORE_MODELS"])
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(
                    socket: $0, routers: Self.constantRouter(candidates: ["dear", "middle", "cheap"]), searchPaths: [plugins],
                    models: TestConfig.catalogue)
            })
        let connection = try daemon.connect()
        // Qualities 0.8, 0.4, 0.267 in the order the router names its candidates: λ = 0 takes the best.
        let best = try connection.decision(#"{"op":"route","router":"constant","prompt":"hello"}"#)
        #expect(best.model == "dear" && best.policy == "lambda" && best.tier == nil)
        #expect(best.candidates.map(\.model) == ["dear", "middle", "cheap"])
        #expect(zip(best.candidates.map(\.quality), [0.8, 0.4, 0.8 / 3]).allSatisfy { abs($0 - $1) < 1e-12 })
        // A λ high enough prices the dear one out: 0.4 of quality against 0.28 ¢ saved needs λ > 143 per USD.
        let thrifty = try connection.decision(#"{"op":"route","router":"constant","prompt":"hello","lambda":500}"#)
        #expect(thrifty.model == "middle", "\(thrifty.candidates)")
        #expect(try connection.decision(#"{"op":"route","model":"router-constant-1000000","prompt":"hello"}"#).model == "cheap")
        // NaN from the plugin is refused for that decision only; the daemon serves on.
        let poisoned = try connection.request(#"{"op":"route","router":"constant","prompt":"nan please"}"#)
        #expect(poisoned.errorCode == "plugin_error")
        #expect(poisoned.errorMessage.contains("qualities must be finite"), "\(poisoned.errorMessage)")
        #expect(try connection.decision(#"{"op":"route","router":"constant","prompt":"fine"}"#).model == "dear")
        // routers shows the policy, the candidates and what the qualities mean.
        let routers = try #require(try connection.request(#"{"op":"routers"}"#).result["routers"] as? [[String: Any]])
        #expect(routers[0]["policy"] as? String == "lambda")
        #expect(routers[0]["candidates"] as? [String] == ["dear", "middle", "cheap"])
        #expect(routers[0]["quality"] as? String == "win_rate")
        // stats counts decisions by model.
        let stats = try connection.request(#"{"op":"stats"}"#).result
        let models = ((stats["routers"] as? [String: Any])?["constant"] as? [String: Any])?["models"] as? [String: Int]
        #expect(models == ["dear": 2, "middle": 1, "cheap": 1], "\(String(describing: models))")
    }

    @Test func aRevisionOnePluginStillLoadsAndRoutesBetweenTwoModels() throws {
        let directory = try TemporaryDirectory()
        let plugins = try PluginTests.buildConstantPlugin(in: directory, flags: ["-DREVISION1"])
        // Three candidates need per-model predictions, which a revision-1 plugin cannot give.
        let many = try directory.write(
            "many.yaml",
            TestConfig.yaml(
                socket: directory.path + "/s.sock", routers: Self.constantRouter(candidates: ["dear", "middle", "cheap"]), searchPaths: [plugins],
                models: TestConfig.catalogue))
        let refused = try Self.check(many)
        #expect(refused.status != 0)
        #expect(
            refused.stderr.contains("plugin 'constant' predicts only P(strong wins), so it routes between exactly two candidates"),
            "\(refused.stderr)")
        // Two candidates work under every policy; their qualities are the win probabilities p and 1 − p.
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(
                    socket: $0, routers: Self.constantRouter(candidates: ["dear", "cheap"], score: 0.7), searchPaths: [plugins],
                    models: TestConfig.catalogue)
            })
        let connection = try daemon.connect()
        let decision = try connection.decision(#"{"op":"route","router":"constant","prompt":"hello"}"#)
        #expect(decision.model == "dear" && decision.tier == .strong)
        #expect(decision.candidates.map(\.quality) == [0.7, 1 - 0.7])
        let threshold = try connection.decision(#"{"op":"route","router":"constant","prompt":"hello","threshold":0.75}"#)
        #expect(threshold.model == "cheap" && threshold.score == 0.7 && threshold.policy == "threshold")
    }

    @Test func theCatalogueIsCheckedAtLoadWithTheKnownNames() throws {
        let directory = try TemporaryDirectory()
        let routers = """
              r:
                plugin: random
                policy: {cheapest_within: 0.1}
                candidates: [cheap, gpt-5, dear]
            """
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: routers, models: TestConfig.catalogue))
        let check = try Self.check(config)
        #expect(check.status != 0)
        #expect(check.stderr.contains("router 'r': model 'gpt-5' is not in the models: catalogue (known models: "), "\(check.stderr)")
        #expect(check.stderr.contains("cheap, dear, \(TestConfig.strong), mid, middle, \(TestConfig.weak)"), "\(check.stderr)")
        // An alias names the model: `mid` is `middle`, at middle's prices.
        let aliased = try directory.write(
            "aliased.yaml",
            TestConfig.yaml(
                socket: directory.path + "/s.sock", routers: routers.replacingOccurrences(of: "gpt-5", with: "mid"), models: TestConfig.catalogue))
        #expect(try Self.check(aliased).status == 0)
        let daemon = try Daemon(config: {
            TestConfig.yaml(socket: $0, routers: routers.replacingOccurrences(of: "gpt-5", with: "mid"), models: TestConfig.catalogue)
        })
        let decision = try daemon.connect().decision(#"{"op":"route","router":"r","prompt":"12345678"}"#)
        // The router keeps the name it was given, priced as the model it names.
        #expect(decision.candidates.map(\.model) == ["cheap", "mid", "dear"])
        // 8 characters are 2 prompt tokens; middle costs 1.0 in and 2.0 out per 10⁶ tokens, with 100 out.
        let middle = try #require(decision.candidates.first { $0.model == "mid" })
        let expected: Double = (2 * 1.0 + 100 * 2.0) / 1e6
        #expect(abs((middle.cost ?? -1) - expected) < 1e-15, "\(String(describing: middle.cost))")
    }

    /// The daemon loads the shipped catalogue, from the config's `models:` path (no shared data needed).
    @Test func theShippedCatalogueLoads() throws {
        let catalogue = Package.root + "/etc/routerd/models.yaml"
        let directory = try TemporaryDirectory()
        let config = try directory.write(
            "routerd.yaml",
            TestConfig.yaml(
                socket: directory.path + "/s.sock",
                routers: """
                      r:
                        plugin: random
                        policy: {lambda: 10}
                        candidates: [gpt-4o-2024-05-13, gemini-1.5-flash-002, Meta-Llama-3.1-70B-Instruct]
                    """, models: "models: \(catalogue)"))
        let check = try Self.check(config)
        #expect(check.status == 0, "\(check.stderr)")
    }

    @Test(.requires(.sharedData("prices.yaml"))) func theShippedCatalogueCoversTheSharedPriceList() throws {
        let text = try String(contentsOfFile: Package.root + "/etc/routerd/models.yaml", encoding: .utf8)
        let shared = try String(contentsOfFile: SharedData.path("prices.yaml"), encoding: .utf8)
        // Every priced model is in the catalogue, by name or alias, at the same prices.
        let line = /^\s+(\S+):\s*\{input:\s*([0-9.]+),\s*output:\s*([0-9.]+)\}/
        var checked = 0
        for entry in shared.split(separator: "\n") {
            guard let match = String(entry).firstMatch(of: line) else { continue }
            let name = String(match.1)
            let row = text.split(separator: "\n").first { $0.contains(" \(name): ") || $0.contains("aliases: [\(name)]") }
            #expect(row?.contains("input: \(match.2), output: \(match.3)") == true, "\(name)")
            checked += 1
        }
        #expect(checked > 40)
    }

    @Test func aSessionKeepsItsModelAndOnlyMovesUp() throws {
        // Random qualities per prompt, cheapest_within 0.3: the policy's choice varies from turn to turn.
        let routers = """
              r:
                plugin: random
                policy: {cheapest_within: 0.3}
                candidates: [cheap, middle, dear]
                params:
                  seed: 5
            """
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, routers: routers, models: TestConfig.catalogue) })
        let connection = try daemon.connect()
        let rank = ["cheap": 0, "middle": 1, "dear": 2]
        var sawKept = false
        var sawEscalated = false
        for session in 0..<20 {
            var current: String?
            for turn in 0..<8 {
                let free = try connection.decision(#"{"op":"route","router":"r","prompt":"s\#(session) turn \#(turn)"}"#)
                let decision = try connection.decision(
                    #"{"op":"route","router":"r","prompt":"s\#(session) turn \#(turn)","session":"conversation-\#(session)"}"#)
                #expect(free.affinity == nil)
                guard let previous = current else {
                    #expect(decision.affinity == "new" && decision.model == free.model)
                    current = decision.model
                    continue
                }
                // Never down: the session's model is the dearer of its own and the policy's choice.
                let expected = rank[free.model]! > rank[previous]! ? free.model : previous
                #expect(decision.model == expected, "session \(session) turn \(turn): \(previous) then \(free.model)")
                let affinity = free.model == previous ? "same" : (expected == free.model ? "escalated" : "kept")
                #expect(decision.affinity == affinity)
                sawKept = sawKept || affinity == "kept"
                sawEscalated = sawEscalated || affinity == "escalated"
                current = decision.model
            }
        }
        #expect(sawKept && sawEscalated, "the stream exercises both")
        let stats = try connection.request(#"{"op":"stats"}"#).result
        #expect(stats["sessions"] as? Int == 20)
        // A session id is a non-empty string.
        let bad = try connection.request(#"{"op":"route","router":"r","prompt":"x","session":""}"#)
        #expect(bad.errorCode == "bad_field")
    }

    /// Expiry is the engine's, on virtual time (VirtualTimeTests); here the daemon bounds the table.
    @Test func theSessionTableIsBounded() throws {
        let routers = """
              r:
                plugin: random
                policy: {lambda: 0}
                candidates: [cheap, dear]
                params:
                  seed: 5
            """
        let daemon = try Daemon(config: {
            TestConfig.yaml(socket: $0, routers: routers, models: TestConfig.catalogue + "\nsessions:\n  ttl: 3\n  max_entries: 50")
        })
        let connection = try daemon.connect()
        for session in 0..<200 {
            _ = try connection.decision(#"{"op":"route","router":"r","prompt":"p\#(session)","session":"s\#(session)"}"#)
        }
        #expect(try connection.request(#"{"op":"stats"}"#).result["sessions"] as? Int == 50, "the oldest are forgotten past max_entries")
        // The newest sessions are remembered, the oldest are not.
        #expect(try connection.decision(#"{"op":"route","router":"r","prompt":"p199","session":"s199"}"#).affinity == "same")
        #expect(try connection.decision(#"{"op":"route","router":"r","prompt":"p0","session":"s0"}"#).affinity == "new")
    }
}
