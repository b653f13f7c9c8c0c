import Foundation
import RouterVocabulary
import Testing
import UpstreamFallback

@testable import RouterConfig

@Suite struct YAMLTests {
    @Test func nodesKeepTheirLineAndColumn() throws {
        let root = try YAMLParser.parse("a: 1\nb:\n  - x\n  - 'y'\n")
        guard case .mapping(let pairs) = root.kind else {
            Issue.record("not a mapping")
            return
        }
        #expect(pairs.map(\.key.mark) == [SourceMark(line: 1, column: 1), SourceMark(line: 2, column: 1)])
        guard case .sequence(let items) = pairs[1].value.kind else {
            Issue.record("not a list")
            return
        }
        #expect(items[1].mark == SourceMark(line: 4, column: 5))
        guard case .scalar("y", let plain) = items[1].kind else {
            Issue.record("not the scalar y")
            return
        }
        #expect(!plain, "a quoted scalar is always a string")
    }

    @Test func duplicateKeysAreErrors() {
        #expect(throws: YAMLSyntaxError.self) { try YAMLParser.parse("a: 1\nb: 2\na: 3\n") }
        do {
            _ = try YAMLParser.parse("a: 1\nb: 2\na: 3\n")
        } catch {
            #expect(error.mark.line == 3)
            #expect(error.message.contains("duplicate key 'a' (first defined at line 1)"))
        }
    }

    @Test func syntaxErrorsPointAtTheProblem() {
        do {
            _ = try YAMLParser.parse("a:\n  b: [1, 2\nc: 3\n")
            Issue.record("parsed")
        } catch {
            #expect(error.mark.line == 3)
        }
    }

    @Test func anchorsAndAliasesResolve() throws {
        let root = try YAMLParser.parse("base: &b {x: 1}\ncopy: *b\n")
        guard case .mapping(let pairs) = root.kind, case .mapping(let copy) = pairs[1].value.kind else {
            Issue.record("unexpected shape")
            return
        }
        #expect(copy.count == 1)
    }
}

@Suite struct ConfigLoaderTests {
    /// A folder with a fake plugin library (the config layer only checks it exists).
    func fixture(_ config: String) throws -> (file: String, folder: String) {
        let folder = NSTemporaryDirectory() + "routerd-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder + "/plugins/random", withIntermediateDirectories: true)
        try "not really a library".write(toFile: folder + "/plugins/random/libRandomRouter.so", atomically: true, encoding: .utf8)
        try """
        name: random
        library: libRandomRouter.so
        abi_version: 1
        params:
          seed:
            type: int
          label:
            type: string
            default: none
          weights:
            type: path
          strict:
            type: bool
            required: true
        """.write(toFile: folder + "/plugins/random/plugin.yaml", atomically: true, encoding: .utf8)
        try config.write(toFile: folder + "/routerd.yaml", atomically: true, encoding: .utf8)
        return (folder + "/routerd.yaml", folder)
    }

    func load(_ config: String) throws -> DaemonConfig {
        try ConfigLoader.load(file: try fixture(config).file, hostABIVersion: 1)
    }

    func problems(_ config: String) -> [String] {
        do {
            _ = try load(config)
            return []
        } catch let error as ConfigError {
            return error.issues.map { "\($0.mark?.description ?? "-") \($0.message)" }
        } catch {
            return ["\(error)"]
        }
    }

    @Test func aValidConfigLoadsWithDefaultsAndResolvedPaths() throws {
        let config = try load(
            """
            socket:
              path: run/routerd.sock
              mode: 0640
            plugins:
              search_paths: [plugins]
            routers:
              r:
                plugin: random
                threshold: 0.3
                strong_model: s
                weak_model: w
                params:
                  strict: yes
                  weights: weights/w.safetensors
            """)
        let folder = (config.file as NSString).deletingLastPathComponent
        #expect(config.socket.path == folder + "/run/routerd.sock")
        #expect(config.socket.mode == 0o640)
        #expect(config.limits.maxLineBytes == 1 << 20)
        #expect(config.limits.maxConnections == 1024)
        #expect(config.reload == .init(watch: false, debounceSeconds: 0.5, timeoutSeconds: 60))
        #expect(config.routers.count == 1)
        let router = config.routers[0]
        #expect(router.threshold == 0.3)
        #expect(router.params["strict"] == .bool(true))
        #expect(router.params["label"] == .string("none"), "defaults are filled in")
        #expect(router.params["weights"] == .string(folder + "/weights/w.safetensors"), "path params resolve against the config")
        #expect(router.params["seed"] == nil)
        #expect(config.plugins["random"]?.libraryPath == folder + "/plugins/random/libRandomRouter.so")
    }

    @Test func everyProblemIsListedWithItsPlace() {
        let found = problems(
            """
            socket:
              path: /tmp/x.sock
              colour: blue
            limits:
              max_connections: many
            reload:
              timeout: 0
            plugins:
              search_paths: [plugins]
            routers:
              r:
                plugin: random
                threshold: 1.5
                strong_model: s
                params:
                  seed: 1.5
                  strict: maybe
            """)
        #expect(
            found == [
                "3:3 unknown key 'colour' in socket (known keys: group, mode, owner, path)",
                "5:20 limits.max_connections must be an integer, found 'many'",
                "7:12 reload.timeout must be between 0.1 and 3600.0, found 0.0",
                "11:3 router 'r' is missing required key 'weak_model'",
                "13:16 router 'r': threshold must be between 0.0 and 1.0, found 1.5",
                "16:13 parameter 'seed' of router 'r' must be an integer, found '1.5'",
                "17:15 parameter 'strict' of router 'r' must be true or false, found 'maybe'",
            ], "\(found)")
    }

    static let minimalRouters = """
        plugins:
          search_paths: [plugins]
        routers:
          r: {plugin: random, threshold: 0.5, strong_model: s, weak_model: w, params: {strict: yes}}
        """

    @Test func anEncoderBatchesWithDefaultsAndItsBatchKeysAreChecked() throws {
        let config = try load(
            "encoders:\n  minilm: {path: models/m, batch_wait_us: 0, kernel: openblas}\n  other: {path: models/m}\n" + Self.minimalRouters)
        #expect(config.encoders["minilm"]?.batchSize == 32 && config.encoders["minilm"]?.batchWaitMicroseconds == 0)
        #expect(config.encoders["other"]?.batchSize == 32 && config.encoders["other"]?.batchWaitMicroseconds == 300)
        #expect(config.encoders["minilm"]?.kernel == .openblas && config.encoders["other"]?.kernel == .onednn)
        let found = problems(
            "encoders:\n  minilm: {path: models/m, batch_size: 0, batch_wait_us: 200000, kernel: mkl}\n" + Self.minimalRouters)
        #expect(
            found == [
                "2:40 encoder 'minilm': batch_size must be between 1 and 1024, found 0",
                "2:58 encoder 'minilm': batch_wait_us must be between 0 and 100000, found 200000",
                "2:74 encoder 'minilm': kernel must be one of onednn, openblas, found 'mkl'",
            ], "\(found)")
    }

    @Test func theFeedbackSectionLoadsWithDefaultsAndItsMistakesAreListed() throws {
        let config = try load("feedback:\n  directory: var/feedback\n  allow: {gids: [100]}\n" + Self.minimalRouters)
        let feedback = try #require(config.feedback)
        #expect(feedback.directory == (config.file as NSString).deletingLastPathComponent + "/var/feedback")
        #expect(feedback.syncIntervalSeconds == 0.002 && feedback.includePrompt && feedback.decisionTTLSeconds == 3600)
        #expect(feedback.maxDecisions == 100_000 && feedback.maxDecisionBytes == 64 << 20)
        #expect(feedback.trusts(uid: 0, gid: 0) && feedback.trusts(uid: 1000, gid: 100) && !feedback.trusts(uid: 1000, gid: 1000))
        #expect(
            try load("feedback:\n  directory: var/feedback\n" + Self.minimalRouters).feedback?.trusts(uid: 1000, gid: 1000) == false,
            "without allow only root is trusted")
        #expect(try load(Self.minimalRouters).feedback == nil)
        let found = problems(
            """
            feedback:
              sync_interval_ms: 5000
              decisions: {ttl: 0, size: 3}
            """ + "\n" + Self.minimalRouters)
        #expect(
            found == [
                "2:3 feedback needs 'directory', the folder for battles.jsonl and quality.jsonl",
                "2:21 feedback.sync_interval_ms must be between 0 and 1000, found 5000",
                "3:20 feedback.decisions.ttl must be between 1.0 and 2592000.0, found 0.0",
                "3:23 unknown key 'size' in feedback.decisions (known keys: max_bytes, max_entries, ttl)",
            ], "\(found)")
    }

    /// The gateway: loopback only, keys from a private file or the environment (never the config's
    /// text), fallback settings checked together, and every mistake listed with its place.
    #if !Gateway
        /// Built without the trait (as `make test-asan` builds), routerd refuses the section and says why.
        @Test func withoutTheGatewayTraitTheSectionIsRefused() {
            let found = problems("gateway: {listen: 127.0.0.1:8080}\n" + Self.minimalRouters)
            #expect(found.contains { $0.contains("built without the gateway") }, "\(found)")
        }
    #else
        @Test func theGatewaySectionReadsKeysFromFilesAndTheEnvironmentAndChecksItsSettings() throws {
            let (_, folder) = try fixture("")
            let keyFile = folder + "/gateway.key"
            try "  k-from-file \n".write(toFile: keyFile, atomically: true, encoding: .utf8)
            chmod(keyFile, 0o600)
            setenv("ROUTERD_CONFIG_TEST_KEY", "k-from-env", 1)
            let config = try load(
                """
                gateway:
                  listen: 127.0.0.1:8080
                  socket: run/gateway.sock
                  keys: [{file: \(keyFile), name: svc-a}, {env: ROUTERD_CONFIG_TEST_KEY}]
                  fallback: {max_attempts: 4, retries: 0, cool_down: 5}
                """ + "\n" + Self.minimalRouters)
            let gateway = try #require(config.gateway)
            #expect(gateway.host == "127.0.0.1" && gateway.port == 8080 && gateway.socketPath?.hasSuffix("/run/gateway.sock") == true)
            #expect(gateway.keys == [.init(secret: "k-from-file", name: "svc-a"), .init(secret: "k-from-env")])
            #expect(gateway.fallback.maxAttempts == 4 && gateway.fallback.retriesPerCandidate == 0 && gateway.fallback.coolDown == 5)
            #expect(gateway.maxBodyBytes == 4 << 20 && gateway.attemptTimeoutSeconds == 60 && !gateway.logPrompts)
            #expect(try load(Self.minimalRouters).gateway == nil, "off without the section")

            chmod(keyFile, 0o644)
            let found = problems(
                """
                gateway:
                  listen: 0.0.0.0:8080
                  keys: [{file: \(keyFile)}, {env: ROUTERD_CONFIG_TEST_UNSET}, {secret: abc}]
                  fallback: {retry_delay: 1, max_retry_delay: 0.5}
                """ + "\n" + Self.minimalRouters)
            #expect(found.count == 6, "\(found)")
            #expect(found.contains { $0.contains("gateway.listen must be a loopback address") })
            #expect(found.contains { $0.contains("mode 644: group or others can read or write the key; chmod 600 it") })
            #expect(found.contains { $0.contains("ROUTERD_CONFIG_TEST_UNSET is not set") })
            #expect(found.contains { $0.contains("unknown key 'secret'") })
            #expect(found.contains { $0.contains("needs 'file' (a file holding the key) or 'env'") })
            #expect(found.contains { $0.contains("max_retry_delay must be at least retry_delay") })
            #expect(problems("gateway: {}\n" + Self.minimalRouters).contains { $0.contains("gateway needs 'listen'") })
            chmod(keyFile, 0o600)
            setenv("ROUTERD_CONFIG_TEST_SAME_KEY", "k-from-file", 1)
            setenv("ROUTERD_CONFIG_TEST_OTHER_KEY", "k-other", 1)
            let names = problems(
                """
                gateway:
                  listen: 127.0.0.1:8080
                  keys: [{file: \(keyFile), name: a}, {env: ROUTERD_CONFIG_TEST_KEY, name: a}, {env: ROUTERD_CONFIG_TEST_SAME_KEY}, {env: ROUTERD_CONFIG_TEST_OTHER_KEY, name: "has space"}]
                """ + "\n" + Self.minimalRouters)
            #expect(names.count == 3, "\(names)")
            #expect(names.contains { $0.contains("gateway.keys[1].name 'a' is already another key's") })
            #expect(names.contains { $0.contains("gateway.keys[2] holds the same key as an earlier entry") })
            #expect(names.contains { $0.contains("gateway.keys[3].name 'has space' must be 1 to 64 letters") })
        }

    #endif

    @Test func shadowsNameOtherRoutersOfTheConfig() throws {
        let config = try load(
            Self.minimalRouters + "\n  s: {plugin: random, threshold: 0.3, strong_model: s, weak_model: w, params: {strict: no}, shadow: [r]}")
        #expect(config.routers.first { $0.name == "s" }?.shadows == ["r"] && config.routers.first { $0.name == "r" }?.shadows == [])
        let found = problems(
            Self.minimalRouters + """

                  a: {plugin: random, threshold: 0.5, strong_model: s, weak_model: w, params: {strict: yes}, shadow: [nope]}
                  b: {plugin: random, threshold: 0.5, strong_model: s, weak_model: w, params: {strict: yes}, shadow: [b]}
                  c: {plugin: random, threshold: 0.5, strong_model: s, weak_model: w, params: {strict: yes}, shadow: [r, r]}
                  d: {plugin: random, threshold: 0.5, strong_model: s, weak_model: w, params: {strict: yes}, shadow: r}
                """)
        #expect(
            found == [
                "5:102 router 'a': shadow names unknown router 'nope' (routers: a, b, c, d, r)",
                "6:102 router 'b': shadow names the router itself; a shadow is another router to compare with",
                "7:102 router 'c': shadow names a router twice",
                "8:102 router 'd': shadow must be a list, found a scalar",
            ], "\(found)")
    }

    @Test func noveltyTakesAThresholdAndARule() throws {
        let router = "{plugin: random, threshold: 0.5, strong_model: s, weak_model: w, params: {strict: yes}, novelty: "
        let config = try load(Self.minimalRouters + "\n  a: \(router){threshold: 0.2, on_novel: {model: s}}}\n  b: \(router){on_novel: explore}}")
        #expect(config.routers.first { $0.name == "a" }?.novelty == DaemonConfig.Novelty(threshold: 0.2, onNovel: .model("s")))
        #expect(config.routers.first { $0.name == "b" }?.novelty == DaemonConfig.Novelty(threshold: 0.05, onNovel: .explore))
        let found = problems(
            Self.minimalRouters + "\n  a: \(router){threshold: 2}}\n  b: \(router){on_novel: {model: gpt}}}\n  c: \(router){on_novel: wander}}")
        #expect(found.count == 3, "\(found)")
        #expect(found[0].contains("router 'a': novelty.threshold must be between 0.0 and 1.0, found 2"), "\(found)")
        #expect(found[1].contains("router 'b': novelty.on_novel.model 'gpt' is not one of the router's candidates (s, w)"), "\(found)")
        #expect(found[2].contains("router 'c': novelty.on_novel") && found[2].contains("explore"), "\(found)")
    }

    @Test func unknownPluginsAndMissingRequiredParamsAreReported() {
        let found = problems(
            """
            plugins:
              search_paths: [plugins]
            routers:
              a:
                plugin: nonesuch
                threshold: 0.5
                strong_model: s
                weak_model: w
              b:
                plugin: random
                threshold: 0.5
                strong_model: s
                weak_model: w
            """)
        #expect(found.count == 2, "\(found)")
        #expect(found[0].hasPrefix("5:13 router 'a' uses unknown plugin 'nonesuch' (looked for: "))
        #expect(found[1] == "9:3 router 'b' is missing required parameter 'strict' (bool) of plugin 'random'")
    }

    @Test func aConfigWithoutRoutersIsRejected() {
        #expect(problems("socket:\n  path: /tmp/x.sock\n") == ["1:1 no routers configured; add at least one under 'routers:'"])
    }

    @Test func aMissingFileSaysSo() {
        #expect(throws: ConfigError.self) { try ConfigLoader.load(file: "/nonexistent/routerd.yaml", hostABIVersion: 1) }
    }

    @Test func clientsReadOnlyTheSocketPath() throws {
        let (file, folder) = try fixture("socket:\n  path: s.sock\nrouters: {broken\n")
        #expect(ConfigLoader.socketPath(inConfig: file) == nil, "unparseable YAML gives no path")
        try "socket:\n  path: s.sock\nrouters: []\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(ConfigLoader.socketPath(inConfig: file) == folder + "/s.sock")
    }
}
