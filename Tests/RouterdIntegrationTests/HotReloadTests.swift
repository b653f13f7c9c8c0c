import Foundation
import RouterProtocol
import RouterdTestSupport
import SafeTensors
import Testing

/// Reload as a transaction: reuse of unchanged instances, the smoke test, dry runs, and `set`.
@Suite(.timeLimit(.minutes(10))) struct HotReloadTests {
    func reused(_ response: [String: Any]) -> [String] { (response.result["reused"] as? [String]) ?? [] }

    @Test func unchangedRoutersKeepTheirPluginInstances() throws {
        let routers = { (threshold: Double, secondSeed: Int) in
            TestConfig.randomRouter(threshold: threshold) + "\n" + TestConfig.randomRouter(name: "second", seed: secondSeed)
        }
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, routers: routers(0.5, 8)) })
        let connection = try daemon.connect()
        let same = try connection.request(#"{"op":"reload"}"#)
        #expect(same.ok && reused(same) == ["random", "second"], "\(same)")
        // A threshold is not the plugin's business: the instance stays.
        try TestConfig.yaml(socket: daemon.socket, routers: routers(0.7, 8)).write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let threshold = try connection.request(#"{"op":"reload"}"#)
        #expect(reused(threshold) == ["random", "second"], "\(threshold)")
        #expect(try connection.decision(#"{"op":"route","router":"random","prompt":"x"}"#).threshold == 0.7)
        // New parameters make a new instance.
        try TestConfig.yaml(socket: daemon.socket, routers: routers(0.7, 9)).write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let seed = try connection.request(#"{"op":"reload"}"#)
        #expect(reused(seed) == ["random"], "\(seed)")
        #expect(seed.result["generation"] as? Int == 4)
    }

    @Test func aRouterThatFailsTheSmokeTestIsRejectedAndTheOldGenerationServes() throws {
        let directory = try TemporaryDirectory()
        let plugins = try PluginTests.buildConstantPlugin(in: directory)
        let daemon = try Daemon(
            directory: directory, config: { TestConfig.yaml(socket: $0, searchPaths: [plugins, Package.root + "/plugins"]) })
        let connection = try daemon.connect()
        // Created fine, but its scoring fails: the smoke prompt finds out before any request does.
        let broken = """
              broken:
                plugin: constant
                threshold: 0.5
                strong_model: a
                weak_model: b
                params:
                  score: 0.5
                  fail_scoring: true
            """
        try TestConfig.yaml(
            socket: daemon.socket, routers: TestConfig.randomRouter() + "\n" + broken, searchPaths: [plugins, Package.root + "/plugins"]
        )
        .write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let reload = try connection.request(#"{"op":"reload"}"#)
        #expect(reload.errorCode == "reload_failed")
        #expect(reload.errorMessage.contains("router 'broken': the smoke test prompt failed: told to fail (fail_scoring: true)"), "\(reload)")
        #expect(try connection.decision(#"{"op":"route","router":"random","prompt":"x"}"#).generation == 1)
    }

    @Test func aDryRunValidatesWithoutChangingAnything() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        try TestConfig.yaml(socket: daemon.socket, routers: TestConfig.randomRouter(threshold: 0.8)).write(
            toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let dry = try connection.request(#"{"op":"reload","dry_run":true}"#)
        #expect(dry.ok, "\(dry)")
        #expect(dry.result["dry_run"] as? Bool == true)
        #expect(dry.result["generation"] as? Int == 1)
        let decision = try connection.decision(#"{"op":"route","router":"random","prompt":"x"}"#)
        #expect(decision.generation == 1 && decision.threshold == 0.5)
        // routerctl says the same.
        let ctl = try runCommand(try Package.binary("routerctl"), ["reload", "--dry-run", "--socket", daemon.socket])
        #expect(ctl.status == 0 && ctl.stdout.contains("valid: the config would serve routers random"), "\(ctl.stdout)\(ctl.stderr)")

        try "routers: {random: {plugin: nope}}\n".write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let bad = try connection.request(#"{"op":"reload","dry_run":true}"#)
        #expect(bad.errorCode == "reload_failed")
        #expect(bad.errorMessage.contains("dry run; nothing changed"), "\(bad.errorMessage)")
        let stats = try connection.request(#"{"op":"stats"}"#).result
        #expect((stats["reload_history"] as? [Any])?.isEmpty == true, "dry runs are not reloads: \(stats)")
        #expect(stats["generation"] as? Int == 1)
    }

    @Test func setChangesAThresholdUntilTheNextReload() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        let set = try connection.request(#"{"op":"set","router":"random","threshold":0.8}"#)
        #expect(set.ok, "\(set)")
        #expect(set.result["generation"] as? Int == 2)
        let decision = try connection.decision(#"{"op":"route","router":"random","prompt":"x"}"#)
        #expect(decision.threshold == 0.8 && decision.generation == 2)
        #expect(decision.tier == (decision.strongScore >= 0.8 ? Tier.strong : .weak))
        // A strong share is turned into a threshold with the plugin's quantiles (uniform for random).
        let fraction = try connection.request(#"{"op":"set","router":"random","strong_fraction":0.25}"#)
        #expect(abs((fraction.result["threshold"] as? Double ?? 0) - 0.75) < 1e-9, "\(fraction)")
        #expect(fraction.result["strong_fraction"] as? Double == 0.25)
        // Bad requests are refused and change nothing.
        #expect(try connection.request(#"{"op":"set","router":"random","threshold":0.5,"strong_fraction":0.5}"#).errorCode == "bad_field")
        #expect(try connection.request(#"{"op":"set","router":"random","threshold":1.5}"#).errorCode == "bad_field")
        #expect(try connection.request(#"{"op":"set","router":"nope","threshold":0.5}"#).errorCode == "unknown_router")
        #expect(try connection.request(#"{"op":"status"}"#).result["generation"] as? Int == 3)
        // The config file was not touched: a reload restores its threshold.
        #expect(try connection.request(#"{"op":"reload"}"#).ok)
        #expect(try connection.decision(#"{"op":"route","router":"random","prompt":"x"}"#).threshold == 0.5)
        let history = try #require(try connection.request(#"{"op":"stats"}"#).result["reload_history"] as? [[String: Any]])
        #expect(
            history.map { $0["trigger"] as? String ?? "" } == [
                "set random threshold 0.8", "set random strong_fraction 0.25 → threshold 0.7500", "reload op",
            ])
        #expect(history.allSatisfy { $0["outcome"] as? String == "ok" })
        // routerctl set.
        let ctl = try runCommand(try Package.binary("routerctl"), ["set", "--socket", daemon.socket, "--router", "random", "--threshold", "0.6"])
        #expect(ctl.status == 0 && ctl.stdout.contains("router random: threshold 0.6000"), "\(ctl.stdout)\(ctl.stderr)")
    }

    @Test func aNewPluginVersionIsLoadedFromANewPath() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        let before = try connection.decision(#"{"op":"route","router":"random","prompt":"x"}"#)
        // The upgrade: the library under a new file name, and a descriptor pointing at it.
        let folder = daemon.directory.path + "/plugins/random"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Package.binDirectory + "/libRandomRouter.so", toPath: folder + "/libRandomRouter-2.so")
        let descriptor = try String(contentsOfFile: Package.root + "/plugins/random/plugin.yaml", encoding: .utf8)
            .replacingOccurrences(of: "library: libRandomRouter.so", with: "library: libRandomRouter-2.so")
        try descriptor.write(toFile: folder + "/plugin.yaml", atomically: true, encoding: .utf8)
        try TestConfig.yaml(socket: daemon.socket, searchPaths: [daemon.directory.path + "/plugins"]).write(
            toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let reload = try connection.request(#"{"op":"reload"}"#)
        #expect(reload.ok && reused(reload).isEmpty, "\(reload)")
        let plugins = try #require(try connection.request(#"{"op":"status"}"#).result["plugins"] as? [[String: Any]])
        #expect((plugins.first?["library"] as? String)?.hasSuffix("/libRandomRouter-2.so") == true, "\(plugins)")
        let after = try connection.decision(#"{"op":"route","router":"random","prompt":"x"}"#)
        #expect(after.generation == 2)
        // Same seed, same plugin code: the same score from the new image.
        #expect(after.score == before.score)
    }

    @Test func withWatchOnAChangedConfigReloadsByItself() throws {
        let watch = "\nreload:\n  watch: true\n  debounce_ms: 100\n"
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0) + watch })
        let connection = try daemon.connect()
        // An editor's way: write a new file and rename it over the config.
        try (TestConfig.yaml(socket: daemon.socket, routers: TestConfig.randomRouter(threshold: 0.9)) + watch).write(
            toFile: daemon.configFile, atomically: true, encoding: .utf8)
        func generation() throws -> Int { try connection.request(#"{"op":"status"}"#).result["generation"] as? Int ?? 0 }
        #expect(try eventually { try generation() == 2 })
        #expect(try connection.decision(#"{"op":"route","router":"random","prompt":"x"}"#).threshold == 0.9)
        let history = try #require(try connection.request(#"{"op":"stats"}"#).result["reload_history"] as? [[String: Any]])
        #expect(history.last?["trigger"] as? String == "file change")
        // A broken edit is rejected like any reload, and the watcher keeps watching.
        try "routers: [\n".write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        #expect(try eventually { try connection.request(#"{"op":"stats"}"#).result["reload_failures"] as? Int == 1 })
        try (TestConfig.yaml(socket: daemon.socket, routers: TestConfig.randomRouter(threshold: 0.2)) + watch).write(
            toFile: daemon.configFile, atomically: true, encoding: .utf8)
        #expect(try eventually { try generation() == 3 })
    }

    @Test(.requires(.actAsNobody)) func setIsForbiddenToOtherUsers() throws {
        let nobody = try OtherUser.nobody()
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, mode: "0666") })
        let run = try runCommand(
            Requirement.setprivPath,
            nobody.run(try Package.binary("routerctl")) + [
                "set", "--socket", daemon.socket, "--router", "random", "--threshold", "0.1", "--json",
            ])
        #expect(run.status != 0)
        #expect(try JSON.object(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines)).errorCode == "forbidden", "\(run.stdout)")
        #expect(try daemon.connect().decision(#"{"op":"route","router":"random","prompt":"x"}"#).threshold == 0.5)
    }
}

/// Weights files swapped under a live daemon: renamed into place, loaded anew; torn, rejected.
@Suite(.timeLimit(.minutes(10)), .requires(.encoderModel))
struct WeightsSwapTests {
    /// The shipped MF weights with w2 negated: every score s becomes 1 − s.
    static func writeFlippedWeights(to path: String) throws {
        let file = try SafeTensorsFile(path: MFRouterTests.weights)
        try SafeTensorsWriter.write(
            [
                .init(name: "P", shape: file.tensors["P"]!.shape, values: try file.floats("P")),
                .init(name: "W1", shape: file.tensors["W1"]!.shape, values: try file.floats("W1")),
                .init(name: "w2", shape: file.tensors["w2"]!.shape, values: try file.floats("w2").map { -$0 }),
            ], metadata: file.metadata, to: path)
    }

    @Test func aRewrittenWeightsFileIsLoadedAnewAndATornOneIsRejected() throws {
        let directory = try TemporaryDirectory()
        let weights = directory.path + "/mf.safetensors"
        try FileManager.default.copyItem(atPath: MFRouterTests.weights, toPath: weights)
        let daemon = try Daemon(
            directory: directory,
            config: { TestConfig.yaml(socket: $0, routers: MFRouterTests.mfRouter(weights: weights), encoders: EncoderFixture.encoders()) })
        let connection = try daemon.connect()
        let route = #"{"op":"route","router":"mf","prompt":"Prove that the halting problem is undecidable."}"#
        let before = try connection.decision(route)

        // The safe procedure: write a new file beside it, then rename it into place.
        try Self.writeFlippedWeights(to: directory.path + "/mf.safetensors.new")
        #expect(rename(directory.path + "/mf.safetensors.new", weights) == 0)
        let reload = try connection.request(#"{"op":"reload"}"#)
        #expect(reload.ok && !reused(reload).contains("mf"), "\(reload)")
        let after = try connection.decision(route)
        #expect(after.generation == 2)
        #expect(abs(after.strongScore - (1 - before.strongScore)) < 1e-5, "\(after.strongScore) vs 1 − \(before.strongScore)")

        // A torn file (a copy cut short) is rejected, and generation 2 keeps serving.
        let bytes = try #require(FileManager.default.contents(atPath: weights))
        try bytes.prefix(bytes.count - 1000).write(to: URL(fileURLWithPath: directory.path + "/torn"))
        #expect(rename(directory.path + "/torn", weights) == 0)
        let torn = try connection.request(#"{"op":"reload"}"#)
        #expect(torn.errorCode == "reload_failed")
        #expect(torn.errorMessage.contains(weights), "\(torn.errorMessage)")
        #expect(torn.errorMessage.contains("generation 2 keeps serving"))
        let still = try connection.decision(route)
        #expect(still.generation == 2 && still.score == after.score)
    }

    func reused(_ response: [String: Any]) -> [String] { (response.result["reused"] as? [String]) ?? [] }
}
