import Foundation
import RouterProtocol
import RouterdTestSupport
import Testing

/// Loading plugins: one built outside the package from the header alone, and
/// the ways a plugin or its descriptor can be wrong.
@Suite(.timeLimit(.minutes(10))) struct PluginTests {
    /// Compiles the C plugin in ExternalPlugin/ with `cc` against router_plugin.h
    /// into `<dir>/plugins/constant/`, with its descriptor. Returns the search path.
    static func buildConstantPlugin(
        in directory: TemporaryDirectory, flags: [String] = [], descriptorABI: Int = 1, library: String = "libconstant.so",
        embedding: String = "none"
    ) throws -> String {
        let folder = directory.path + "/plugins/constant"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let source = Package.root + "/Tests/RouterdIntegrationTests/ExternalPlugin/constant_router.c"
        let include = Package.root + "/Sources/CRouterPlugin/include"
        let compiler = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let cc = try #require(compiler, "a C compiler is needed to build the external plugin")
        let build = try runCommand(
            cc, ["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-I", include] + flags + ["-o", folder + "/libconstant.so", source])
        #expect(build.status == 0, "cc failed: \(build.stderr)")
        _ = try directory.write(
            "plugins/constant/plugin.yaml",
            """
            name: constant
            library: \(library)
            abi_version: \(descriptorABI)
            version: 1.0.0
            description: Scores every prompt with a fixed number (a test plugin written in C).
            embedding: \(embedding)
            params:
              score:
                type: float
                required: true
              embedding_component:
                type: int
              fail_scoring:
                type: bool
              create_delay:
                type: float
            """)
        return directory.path + "/plugins"
    }

    static func constantRouter(score: String = "0.25") -> String {
        """
          constant:
            plugin: constant
            threshold: 0.5
            strong_model: big
            weak_model: small
            params:
              score: \(score)
        """
    }

    @Test func aPluginBuiltOutsideThePackageFromTheHeaderLoadsAndRoutes() throws {
        let directory = try TemporaryDirectory()
        let plugins = try Self.buildConstantPlugin(in: directory)
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(
                    socket: $0, routers: Self.constantRouter() + "\n" + TestConfig.randomRouter(), searchPaths: [Package.root + "/plugins", plugins])
            })
        let connection = try daemon.connect()
        let decision = try connection.request(#"{"op":"route","router":"constant","prompt":"anything"}"#)
        #expect(decision.result["score"] as? Double == 0.25)
        #expect(decision.result["tier"] as? String == "weak")
        #expect(decision.result["model"] as? String == "small")
        let override = try connection.request(#"{"op":"route","router":"constant","prompt":"anything","threshold":0.2}"#)
        #expect(override.result["model"] as? String == "big")
        // Both plugins, C and Swift, serve side by side.
        #expect(try connection.request(#"{"op":"route","router":"random","prompt":"x"}"#).ok)
        let routers = try #require(try connection.request(#"{"op":"routers"}"#).result["routers"] as? [[String: Any]])
        #expect((routers.first { $0["name"] as? String == "constant" }?["details"] as? [String: Any])?["score"] as? Double == 0.25)
        // The plugin logged through the host's logging service.
        #expect(daemon.log.contains("constant router 'constant' created with score 0.25"))
    }

    /// A plugin's bad answer fails that one decision with a clear error; the daemon, the
    /// connection and the next decision are unharmed, and `stats` counts the failures.
    @Test func aPluginsBadAnswersFailOnlyTheirDecision() throws {
        let directory = try TemporaryDirectory()
        let plugins = try Self.buildConstantPlugin(in: directory, flags: ["-DFAULTS"])
        let daemon = try Daemon(
            directory: directory, config: { TestConfig.yaml(socket: $0, routers: Self.constantRouter(), searchPaths: [plugins]) })
        let connection = try daemon.connect()
        let cases = [
            ("nan please", "outside [0, 1]"), ("big one", "returned score 1.5, outside [0, 1]"), ("mute", "failed without a message"),
        ]
        for (prompt, message) in cases {
            let reply = try connection.request(#"{"op":"route","router":"constant","prompt":"\#(prompt)"}"#)
            #expect(reply.errorCode == "plugin_error", "\(prompt): \(reply)")
            #expect(reply.errorMessage.contains("router 'constant'") && reply.errorMessage.contains(message), "\(prompt): \(reply.errorMessage)")
            #expect(try connection.decision(#"{"op":"route","router":"constant","prompt":"fine"}"#).strongScore == 0.25)
        }
        // The batch op fails as a whole with the same message; nothing partial is returned.
        let batch = try connection.request(#"{"op":"score","router":"constant","prompts":["fine","mute"]}"#)
        #expect(batch.errorCode == "plugin_error" && batch.errorMessage.contains("failed without a message"), "\(batch)")
        let stats = try connection.request(#"{"op":"stats"}"#).result
        let router = (stats["routers"] as? [String: Any])?["constant"] as? [String: Any]
        #expect(router?["errors"] as? Int == 4 && router?["decisions"] as? Int == 3, "\(String(describing: router))")
        #expect(daemon.process.isRunning)
    }

    /// A router's `timeout` answers `router_timeout` while its plugin hangs; other routers keep
    /// serving, stuck calls are capped, and `stats` counts every timeout.
    @Test func aHangingPluginTimesOutWithoutTakingTheDaemonWithIt() throws {
        let directory = try TemporaryDirectory()
        let plugins = try Self.buildConstantPlugin(in: directory, flags: ["-DFAULTS"])
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(
                    socket: $0, routers: Self.constantRouter() + "\n    timeout: 0.2\n" + TestConfig.randomRouter(),
                    searchPaths: [plugins, Package.root + "/plugins"])
            })
        let connection = try daemon.connect()
        let start = Date()
        let hung = try connection.request(#"{"op":"route","router":"constant","prompt":"hang on"}"#)
        #expect(hung.errorCode == "router_timeout" && hung.errorMessage.contains("within its timeout of 0.2 s"), "\(hung)")
        #expect(Date().timeIntervalSince(start) < 1.9, "answered at the deadline, not when the plugin returned")
        // Meanwhile other routers, and the same router's quick prompts, are served.
        #expect(try connection.decision(#"{"op":"route","router":"random","prompt":"x"}"#).router == "random")
        #expect(try connection.decision(#"{"op":"route","router":"constant","prompt":"fine"}"#).strongScore == 0.25)
        // A flood of hanging prompts: 16 calls may be stuck at once; the rest are refused at once.
        let flood = try daemon.connect()
        for _ in 0..<20 { try flood.send(#"{"op":"route","router":"constant","prompt":"hang"}"# + "\n") }
        let replies = try (0..<20).map { _ in try JSON.object(try #require(try flood.readLine(timeout: 10))) }
        #expect(replies.allSatisfy { $0.errorCode == "router_timeout" })
        #expect(replies.filter { $0.errorMessage.contains("are still running past its timeout") }.count >= 4, "\(replies.map(\.errorMessage))")
        // Once the stuck calls return (each sleeps 2 s), the router serves again; until then a
        // probe is refused at once (and counted as a timeout).
        var refusedProbes = 0
        #expect(
            try eventually(within: 30) {
                let probe = try connection.request(#"{"op":"route","router":"constant","prompt":"fine"}"#)
                if probe.errorCode == "router_timeout" { refusedProbes += 1 }
                return probe.result["score"] as? Double == 0.25
            })
        let stats = try connection.request(#"{"op":"stats"}"#).result
        let events = ((stats["routers"] as? [String: Any])?["constant"] as? [String: Any])?["events"] as? [String: Int]
        #expect(events?["timeout"] == 21 + refusedProbes, "\(String(describing: events))")
        #expect((stats["errors"] as? [String: Int])?["router_timeout"] == 21 + refusedProbes)
        #expect(daemon.process.isRunning)
    }

    /// A reload whose plugin `create` fails is rejected with the plugin's reason; one whose `create`
    /// takes longer than `reload.timeout` is rejected at the timeout, naming the router it waited on.
    /// The old generation serves throughout, reloads are refused while the abandoned build runs on,
    /// and once it returns (and is discarded) reloads work again.
    @Test func aReloadWhosePluginCreateFailsOrHangsLeavesTheOldGenerationServing() throws {
        let directory = try TemporaryDirectory()
        let plugins = try Self.buildConstantPlugin(in: directory, flags: ["-DFAULTS"])
        func config(socket: String, createDelay: Double?, score: String = "0.25") -> String {
            let slow = createDelay.map { Self.constantRouter(score: score) + "\n      create_delay: \($0)\n" } ?? ""
            return TestConfig.yaml(
                socket: socket, routers: TestConfig.randomRouter() + "\n" + slow, searchPaths: [plugins, Package.root + "/plugins"],
                extra: "reload:\n  timeout: 1")
        }
        let daemon = try Daemon(directory: directory, config: { config(socket: $0, createDelay: nil) })
        let operator_ = try daemon.connect()
        let client = try daemon.connect()
        // create fails: the reload says why, and generation 1 serves on.
        try config(socket: daemon.socket, createDelay: 0, score: "7").write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let refusedCreate = try operator_.request(#"{"op":"reload"}"#)
        #expect(
            refusedCreate.errorCode == "reload_failed"
                && refusedCreate.errorMessage.contains("router 'constant': plugin 'constant' refused to create it: score must be within [0, 1]"),
            "\(refusedCreate)")
        #expect(try client.decision(#"{"op":"route","router":"random","prompt":"x"}"#).generation == 1)
        // create hangs past the timeout.
        try config(socket: daemon.socket, createDelay: 4).write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let start = Date()
        try operator_.send(#"{"op":"reload"}"# + "\n")
        // While the reload waits on create, generation 1 answers at once.
        var slowest = 0.0
        while Date().timeIntervalSince(start) < 0.8 {
            let asked = Date()
            #expect(try client.decision(#"{"op":"route","router":"random","prompt":"x"}"#).generation == 1)
            slowest = max(slowest, Date().timeIntervalSince(asked))
        }
        #expect(slowest < 0.5, "a decision took \(slowest) s during the slow reload")
        let reload = try JSON.object(try #require(try operator_.readLine(timeout: 10)))
        let waited = Date().timeIntervalSince(start)
        #expect(reload.errorCode == "reload_failed", "\(reload)")
        #expect(
            reload.errorMessage.contains("reload timed out after 1.")
                && reload.errorMessage.contains("while creating router 'constant' (plugin 'constant')"), "\(reload.errorMessage)")
        #expect(waited >= 1 && waited < 3, "answered \(waited) s after the reload, not at its timeout")
        // The build goes on; until it returns, another reload is refused with what it waits on.
        let refused = try operator_.request(#"{"op":"reload"}"#)
        #expect(
            refused.errorCode == "reload_failed" && refused.errorMessage.contains("still being built (creating router 'constant'"),
            "\(refused)")
        #expect(try client.decision(#"{"op":"route","router":"random","prompt":"x"}"#).generation == 1)
        // create returns after 4 s: the abandoned generation is dropped, never served, and reloads work again.
        #expect(eventually(within: 15) { daemon.log.contains("it was discarded, and reloads are accepted again") }, "\(daemon.log)")
        try config(socket: daemon.socket, createDelay: 0).write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let reloaded = try operator_.request(#"{"op":"reload"}"#)
        #expect(reloaded.ok && reloaded.result["generation"] as? Int == 2, "\(reloaded)")
        #expect(try client.decision(#"{"op":"route","router":"constant","prompt":"fine"}"#).strongScore == 0.25)
        #expect(try client.request(#"{"op":"stats"}"#).result["reload_failures"] as? Int == 3)
        #expect(daemon.process.isRunning)
    }

    /// ABI revision 5 (issue 24): a router explores by Thompson sampling on its plugin's posterior
    /// draws, each decision logging the share of draws that chose its model; an older plugin is refused.
    @Test func thompsonSamplingFollowsThePluginsDrawsAndLogsTheirShare() throws {
        let directory = try TemporaryDirectory()
        // Half of every 10 draws say strong (P 0.9), half weak; the policy's own choice is weak (score 0.25).
        let plugins = try Self.buildConstantPlugin(in: directory, flags: ["-DSAMPLE"])
        let router = Self.constantRouter() + "\n    explore: {strategy: thompson, draws: 10, seed: 5}"
        let daemon = try Daemon(
            directory: directory, config: { TestConfig.yaml(socket: $0, routers: router, searchPaths: [Package.root + "/plugins", plugins]) })
        let connection = try daemon.connect()
        var strong = 0
        for index in 0..<200 {
            let decision = try connection.request(#"{"op":"route","router":"constant","prompt":"prompt \#(index)"}"#).result
            #expect(decision["propensity"] as? Double == 0.5, "five of ten draws chose each model: \(decision)")
            let big = decision["model"] as? String == "big"
            #expect(decision["explored"] as? Bool == big, "leaving the policy's weak choice is exploring")
            if big { strong += 1 }
        }
        #expect((70...130).contains(strong), "the decision follows its first draw, strong half the time: \(strong) of 200")
        let stats = try connection.request(#"{"op":"stats"}"#).result
        let exploration = try #require(((stats["routers"] as? [String: Any])?["constant"] as? [String: Any])?["exploration"] as? [String: Any])
        #expect(exploration["strategy"] as? String == "thompson" && exploration["explored"] as? Int == strong, "\(exploration)")

        // Built against revision 4's table, with a bad pointer where `sample` would be: refused, never called.
        let older = try TemporaryDirectory()
        let olderPlugins = try Self.buildConstantPlugin(in: older, flags: ["-DREVISION4"])
        let config = try older.write(
            "routerd.yaml",
            TestConfig.yaml(socket: older.path + "/unused.sock", routers: router, searchPaths: [Package.root + "/plugins", olderPlugins]))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("Thompson sampling needs a plugin that draws from its posterior"), "\(check.stderr)")
    }

    @Test func aPluginWithAnotherABIVersionIsRejectedWithAPreciseError() throws {
        let directory = try TemporaryDirectory()
        let plugins = try Self.buildConstantPlugin(in: directory, flags: ["-DPLUGIN_ABI_VERSION=999"])
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: Self.constantRouter(), searchPaths: [plugins]))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("plugin ABI version 999 does not match routerd's 1"), "\(check.stderr)")
        #expect(check.stderr.contains("libconstant.so"))
    }

    /// A plugin's description is parsed once, when the instance is created; one that breaks the
    /// contract is refused at load with the router and plugin named, like any other load error.
    @Test(arguments: [
        (#""not json""#, "router 'constant': plugin 'constant' describes it wrongly: describe returned text that is not JSON"),
        (#""{\"score_quantiles\":[0.9,0.1]}""#, "plugin 'constant' describes it wrongly: 'score_quantiles' must be non-decreasing"),
    ])
    func aDescriptionThatBreaksTheContractIsRejectedAtLoad(text: String, message: String) throws {
        let directory = try TemporaryDirectory()
        let plugins = try Self.buildConstantPlugin(in: directory, flags: ["-DDESCRIBE_TEXT=\(text)"])
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: Self.constantRouter(), searchPaths: [plugins]))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains(message), "\(check.stderr)")
    }

    @Test func aDescriptorClaimingAnotherABIVersionIsRejected() throws {
        let directory = try TemporaryDirectory()
        let plugins = try Self.buildConstantPlugin(in: directory, descriptorABI: 2)
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: Self.constantRouter(), searchPaths: [plugins]))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("plugin.yaml:3:14: abi_version 2 does not match"), "\(check.stderr)")
    }

    @Test func aLibraryWithoutTheEntryPointIsRejected() throws {
        let directory = try TemporaryDirectory()
        let plugins = try Self.buildConstantPlugin(in: directory, flags: ["-DOMIT_ENTRY", "-Wno-unused-function"])
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: Self.constantRouter(), searchPaths: [plugins]))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("does not export the entry point 'routerd_plugin_entry'"), "\(check.stderr)")
    }

    @Test func aDescriptorNamingAMissingLibraryIsRejected() throws {
        let directory = try TemporaryDirectory()
        let plugins = try Self.buildConstantPlugin(in: directory, library: "libnot-there.so")
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: Self.constantRouter(), searchPaths: [plugins]))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("plugin.yaml:2:10: plugin library 'libnot-there.so' not found"), "\(check.stderr)")
        // And the daemon itself refuses to start on it, with the same message.
        let start = try runCommand(try Package.binary("routerd"), ["--config", config])
        #expect(start.status != 0)
        #expect(start.stderr.contains("libnot-there.so"))
    }

    @Test func aPluginRefusingItsParametersIsReportedWithItsReason() throws {
        let directory = try TemporaryDirectory()
        let plugins = try Self.buildConstantPlugin(in: directory)
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: Self.constantRouter(score: "7"), searchPaths: [plugins]))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("router 'constant': plugin 'constant' refused to create it: score must be within [0, 1]"), "\(check.stderr)")
    }

    @Test func routerParametersAreValidatedAgainstTheDescriptor() throws {
        let directory = try TemporaryDirectory()
        let routers = """
              a:
                plugin: random
                threshold: 0.5
                strong_model: s
                weak_model: w
                params:
                  seed: "seven"
                  colour: blue
            """
        let config = try directory.write("routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: routers))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        // Both problems, each with its line and column.
        let lines = try String(contentsOfFile: config, encoding: .utf8).components(separatedBy: "\n")
        let seedLine = try #require(lines.firstIndex { $0.contains("seed: \"seven\"") }) + 1
        #expect(
            check.stderr.contains("routerd.yaml:\(seedLine):13: parameter 'seed' of router 'a' must be an integer, found 'seven'"), "\(check.stderr)")
        #expect(
            check.stderr.contains("routerd.yaml:\(seedLine + 1):7: unknown key 'colour' in params of router 'a' (plugin 'random') (known keys: seed)")
        )
        #expect(check.stderr.contains("2 problems"))
    }

    @Test func brokenYAMLIsReportedWithItsLine() throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write(
            "routerd.yaml",
            """
            socket:
              path: /tmp/x.sock
            routers:
              random:
                plugin: random
                threshold: [0.5
                strong_model: s
            """)
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("routerd.yaml:7:"), "\(check.stderr)")
        #expect(check.stderr.contains("YAML syntax error"))
    }

    @Test func theShippedConfigIsValid() throws {
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", Package.root + "/etc/routerd/routerd.yaml"])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("is valid"))
    }
}
