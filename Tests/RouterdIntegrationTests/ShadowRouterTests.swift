import Foundation
import RouterdTestSupport
import Testing

/// Shadow routers in the real daemon: logged beside the live decision, counted in `stats` and
/// the metrics, and never waited for.
@Suite(.timeLimit(.minutes(10))) struct ShadowRouterTests {
    @Test func shadowDecisionsAreLoggedBesideTheLiveOnesAndNeverDelayAReply() throws {
        let directory = try TemporaryDirectory()
        let plugins = try PluginTests.buildConstantPlugin(in: directory, flags: ["-DFAULTS"])
        let port = ObservabilityTests.freePort()
        let log = directory.path + "/decisions.jsonl"
        // The C plugin scores every prompt 0.9 (so it always picks the strong model), sleeps 2 s on
        // prompts starting "hang" and fails on those starting "mute".
        let routers = """
            \(TestConfig.randomRouter(name: "live", seed: 7))
                shadow: [constant]
              constant:
                plugin: constant
                threshold: 0.5
                strong_model: \(TestConfig.strong)
                weak_model: \(TestConfig.weak)
                params:
                  score: 0.9
            """
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(
                    socket: $0, routers: routers, searchPaths: [Package.root + "/plugins", plugins],
                    extra: "decision_log:\n  path: \(log)\nmetrics:\n  listen: 127.0.0.1:\(port)")
            })
        let connection = try daemon.connect()
        func shadowStats() throws -> [String: Any]? {
            let stats = try connection.request(#"{"op":"stats"}"#).result
            return ((stats["routers"] as? [String: Any])?["live"] as? [String: Any])?["shadows"] as? [String: Any]
        }
        func eventually(_ condition: () throws -> Bool) throws {
            let deadline = ContinuousClock.now + .seconds(60)
            while try !condition() {
                guard ContinuousClock.now < deadline else { throw HarnessError("timed out waiting for the shadow") }
                Thread.sleep(forTimeInterval: 0.01)
            }
        }
        func constant(_ shadows: [String: Any]?) -> [String: Any]? { (shadows?["routers"] as? [String: Any])?["constant"] as? [String: Any] }

        var strong = 0
        var ids: [String: String] = [:]
        for index in 0..<40 {
            let decision = try connection.request(#"{"op":"route","router":"live","prompt":"question \#(index)"}"#).result
            ids[try #require(decision["decision_id"] as? String)] = decision["model"] as? String
            if decision["model"] as? String == TestConfig.strong { strong += 1 }
        }
        try eventually { constant(try shadowStats())?["decisions"] as? Int == 40 }
        let counted = try #require(constant(try shadowStats()))
        #expect(counted["agreements"] as? Int == strong && counted["errors"] as? Int == 0, "\(counted)")
        #expect(abs((counted["agreement"] as? Double ?? -1) - Double(strong) / 40) < 1e-9)
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map { try JSON.object(String($0)) }
        let shadowLines = lines.filter { $0["shadow_of"] != nil }
        #expect(lines.count == 80 && shadowLines.count == 40)
        for line in shadowLines {
            let live = try #require(ids[line["shadow_of"] as? String ?? ""], "names a live decision: \(line)")
            #expect(line["router"] as? String == "constant" && line["live_router"] as? String == "live")
            #expect(line["model"] as? String == TestConfig.strong && line["live_model"] as? String == live)
            #expect(line["agrees"] as? Bool == (live == TestConfig.strong) && line["score"] as? Double == 0.9)
        }
        let activity = try #require(try connection.request(#"{"op":"stats"}"#).result["routers"] as? [String: Any])
        #expect((activity["constant"] as? [String: Any])?["decisions"] as? Int ?? 0 == 0, "a shadow's decisions are not its traffic")

        // The shadow sleeps 2 s on this prompt: the live reply comes first, with the shadow still deciding.
        #expect(try connection.request(#"{"op":"route","router":"live","prompt":"hang on"}"#).ok)
        #expect(constant(try shadowStats())?["decisions"] as? Int == 40, "the reply did not wait for the shadow")
        try eventually { constant(try shadowStats())?["decisions"] as? Int == 41 }

        let muted = try connection.request(#"{"op":"route","router":"live","prompt":"mute now"}"#)
        #expect(muted.ok, "a failing shadow fails nothing live")
        try eventually { constant(try shadowStats())?["errors"] as? Int == 1 }
        let failed = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map { try JSON.object(String($0)) }
            .first { $0["shadow_of"] as? String == muted.result["decision_id"] as? String }
        #expect(failed?["shadow_of"] != nil && failed?["model"] == nil && (failed?["error"] as? String)?.isEmpty == false, "\(failed ?? [:])")

        let metrics = try ObservabilityTests.get(port: port, path: "/metrics").body
        #expect(metrics.contains(#"routerd_shadow_decisions_total{router="live",shadow="constant"} 41"#), "\(metrics)")
        #expect(metrics.contains(#"routerd_shadow_agreements_total{router="live",shadow="constant"} "#))
        #expect(metrics.contains(#"routerd_shadow_errors_total{router="live",shadow="constant"} 1"#))
        #expect(metrics.contains(#"routerd_shadow_dropped_total{router="live"} 0"#))
    }
}
