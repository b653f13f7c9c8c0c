import Foundation
import RouterProtocol
import RouterVocabulary
import RouterdTestSupport
import Testing
import TextEncoder

/// The local encoder inside the daemon: the `embed` op, embeddings handed to
/// plugins, the cache, and encoder config errors.
@Suite(.timeLimit(.minutes(10)), .requires(.encoderModel))
struct DaemonEncoderTests {
    @Test(.requires(.encoderGolden))
    func theEmbedOpMatchesTheReference() throws {
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, encoders: EncoderFixture.encoders()) })
        let connection = try daemon.connect()
        let goldens = try EncoderFixture.golden()
        let request = try JSONSerialization.data(withJSONObject: ["op": "embed", "texts": goldens.map(\.text), "tokens": true])
        try connection.send(String(decoding: request, as: UTF8.self) + "\n")
        let line = try #require(try connection.readLine())
        let result = try ResponseCodec.decode(EmbedResult.self, from: Data(line.utf8))
        #expect(result.encoder == "minilm")
        #expect(result.dimension == 384)
        for (index, golden) in goldens.enumerated() {
            #expect(result.tokens?[index] == golden.ids, "\(golden.text.prefix(30).debugDescription)")
            #expect(EncoderFixture.cosine(result.embeddings[index], golden.embedding) >= 0.9999)
        }
        // The daemon runs OpenBLAS kernels that fit the CPU, not the legacy fallback.
        let status = try connection.request(#"{"op":"status"}"#).result
        #expect(status["encoders"] as? [String] == ["minilm"])
        // The linear layers run on oneDNN (the default kernel), in fp32.
        let kernel = (status["encoder_kernels"] as? [String: String])?["minilm"] ?? ""
        #expect(kernel.hasPrefix("onednn ") && kernel.hasSuffix(" fp32"), "\(status)")
        #expect((status["blas_core"] as? String).map { !["Prescott", "Core2", "unknown"].contains($0) } == true, "\(status)")
    }

    /// A daemon whose router `probe` (the C test plugin) scores a prompt (embedding[component] + 1) / 2,
    /// so a decision shows which embedding its plugin received.
    static func probeDaemon(embeddingComponent component: Int) throws -> Daemon {
        let directory = try TemporaryDirectory()
        let plugins = try PluginTests.buildConstantPlugin(in: directory, embedding: "required")
        let routers = """
              probe:
                plugin: constant
                threshold: 0.5
                strong_model: big
                weak_model: small
                encoder: minilm
                params:
                  score: 0.5
                  embedding_component: \(component)
            """
        return try Daemon(
            directory: directory,
            config: { TestConfig.yaml(socket: $0, routers: routers, searchPaths: [plugins], encoders: EncoderFixture.encoders()) })
    }

    /// A request over a limit that bounds its cost is refused before any encoder pass, naming the
    /// limit, and the connection lives on (issue 23, finding 1: a 16 KiB line embedded with
    /// `long_text: windows` had cost about 430 MB and 9.5 s, and texts per request had no bound).
    @Test func requestsOverTheCostLimitsGetTooLarge() throws {
        let windowed = EncoderFixture.encoders().replacingOccurrences(of: "  minilm:", with: "  windowed:") + "\n    long_text: windows"
        let router = MFRouterTests.mfRouter().replacingOccurrences(of: "encoder: minilm", with: "encoder: windowed")
        let daemon = try Daemon(config: {
            TestConfig.yaml(
                socket: $0, routers: router, limits: "  max_texts: 4\n  max_windows: 2\n  max_tokens: 1000",
                encoders: EncoderFixture.encoders() + "\n" + windowed.replacingOccurrences(of: "encoders:\n", with: ""))
        })
        let connection = try daemon.connect()
        let long = String(repeating: "! ", count: 8192)  // 8,192 word pieces: 64 windows
        let manyTexts = try connection.request(#"{"op":"embed","encoder":"minilm","texts":["a","b","c","d","e"]}"#)
        #expect(manyTexts.errorCode == "too_large" && manyTexts.errorMessage.contains("limits.max_texts is 4"), "\(manyTexts)")
        let windows = try connection.request(#"{"op":"embed","encoder":"minilm","long_text":"windows","texts":["\#(long)"]}"#)
        #expect(windows.errorCode == "too_large" && windows.errorMessage.contains("limits.max_windows is 2"), "\(windows)")
        let manyPrompts = try connection.request(#"{"op":"score","router":"mf","prompts":["a","b","c","d","e"]}"#)
        #expect(manyPrompts.errorCode == "too_large", "\(manyPrompts)")
        let route = try connection.request(#"{"op":"route","router":"mf","prompt":"\#(long)"}"#)
        #expect(route.errorCode == "too_large" && route.errorMessage.contains("limits.max_windows"), "\(route)")
        // Four texts of 256 positions each under head: 1,024 model positions, over max_tokens.
        let fourLong = try connection.request(#"{"op":"embed","encoder":"minilm","texts":["1\#(long)","2\#(long)","3\#(long)","4\#(long)"]}"#)
        #expect(fourLong.errorCode == "too_large" && fourLong.errorMessage.contains("limits.max_tokens is 1000"), "\(fourLong)")
        // Within the limits all is as before; head and tail read 256 tokens of any text.
        #expect(try connection.request(#"{"op":"embed","encoder":"minilm","texts":["\#(long)"]}"#).ok)
        #expect(try connection.request(#"{"op":"embed","encoder":"minilm","long_text":"windows","texts":["short text"]}"#).ok)
        #expect(try connection.request(#"{"op":"score","router":"mf","prompts":["a","b","c","d"]}"#).ok)
    }

    /// The embedding cache cannot tell one local user that another sent a prompt (issue 23,
    /// finding 5: a hit took 11 µs, a near miss 5,786 µs): each uid's prompts are cached in its own
    /// namespace, so another user's first request for the same text is a miss like any new text.
    @Test(.requires(.actAsNobody)) func aPromptAnotherUserSentIsNotACacheHit() throws {
        let nobody = try OtherUser.nobody()
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, mode: "0666", encoders: EncoderFixture.encoders()) })
        let connection = try daemon.connect()
        func counters() throws -> (hits: Int, misses: Int) {
            let encoder = try #require((try connection.request(#"{"op":"stats"}"#).result["encoders"] as? [String: Any])?["minilm"] as? [String: Any])
            return (try #require(encoder["hits"] as? Int), try #require(encoder["misses"] as? Int))
        }
        func embedAsNobody() throws {
            let run = try runCommand(
                Requirement.setprivPath, nobody.run(try Package.binary("routerctl")) + ["embed", "--socket", daemon.socket, "root's secret prompt"])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        }
        #expect(try connection.request(#"{"op":"embed","texts":["root's secret prompt"]}"#).ok)
        let before = try counters()
        try embedAsNobody()
        let after = try counters()
        #expect(after.hits == before.hits && after.misses == before.misses + 1, "another user's first request is a miss: \(before) → \(after)")
        try embedAsNobody()
        #expect(try counters().hits == after.hits + 1, "a user's own repeat is a hit")
        #expect(try connection.request(#"{"op":"embed","texts":["root's secret prompt"]}"#).ok)
        #expect(try counters().hits == after.hits + 2, "and so is root's")
        // The counters sum everyone's traffic: a peer that is not an admin is not shown them.
        let stats = try runCommand(
            Requirement.setprivPath, nobody.run(try Package.binary("routerctl")) + ["stats", "--socket", daemon.socket, "--json"])
        #expect(stats.status == 0, "\(stats.stdout)\(stats.stderr)")
        let reply = try JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any]
        let encoder = try #require(
            ((reply?["result"] as? [String: Any])?["encoders"] as? [String: Any])?["minilm"] as? [String: Any], "\(stats.stdout)")
        #expect(encoder["capacity"] != nil && encoder["hits"] == nil && encoder["misses"] == nil && encoder["entries"] == nil, "\(encoder)")
        #expect(encoder["batches"] == nil && encoder["hit_rate"] == nil, "\(encoder)")
    }

    @Test func pluginsReceiveThePromptEmbeddingAndCanAskForMore() throws {
        let daemon = try Self.probeDaemon(embeddingComponent: 3)
        let connection = try daemon.connect()
        let prompt = "How many moons does Jupiter have?"
        let embedding = try connection.request(#"{"op":"embed","text":"\#(prompt)"}"#).result["embeddings"] as? [[Double]]
        let component = try #require(embedding?.first?[3])
        let decision = try connection.decision(#"{"op":"route","router":"probe","prompt":"\#(prompt)"}"#)
        #expect(abs(decision.strongScore - (component + 1) / 2) < 1e-6, "the plugin scored the embedding the daemon computed")
        let batch = try connection.request(#"{"op":"score","router":"probe","prompts":["\#(prompt)","another one"]}"#)
        #expect(abs(((batch.result["scores"] as? [Double])?.first ?? -1) - (component + 1) / 2) < 1e-6)
        // At create time the plugin embedded "probe" through the host's embedding service.
        let probe = try #require(try connection.request(#"{"op":"embed","text":"probe"}"#).result["embeddings"] as? [[Double]])[0][0]
        let logged = try #require(daemon.log.split(separator: "\n").first { $0.contains("probe component 0: ") })
        let value = try #require(Double(logged.split(separator: " ").last.map(String.init) ?? ""))
        #expect(abs(value - probe) < 1e-6, "\(logged)")
        // The prompt was embedded once for route and found in the cache afterwards.
        let encoders = try #require(try connection.request(#"{"op":"stats"}"#).result["encoders"] as? [String: [String: Any]])
        #expect((encoders["minilm"]?["hits"] as? Int ?? 0) >= 2, "\(encoders)")
    }

    @Test func theCacheServesRepeatsAndSurvivesAReload() throws {
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, encoders: EncoderFixture.encoders(cacheSize: 2)) })
        let connection = try daemon.connect()
        for text in ["a", "b", "a", "a", "c", "b"] {
            #expect(try connection.request(#"{"op":"embed","text":"\#(text)"}"#).ok)
        }
        var cache = try #require((try connection.request(#"{"op":"stats"}"#).result["encoders"] as? [String: [String: Any]])?["minilm"])
        // a miss, b miss, a hit, a hit, c miss (evicts b), b miss (evicts a)
        #expect(cache["hits"] as? Int == 2)
        #expect(cache["misses"] as? Int == 4)
        #expect(cache["entries"] as? Int == 2)
        #expect(try connection.request(#"{"op":"reload"}"#).ok)
        #expect(try connection.request(#"{"op":"embed","text":"b"}"#).ok)
        cache = try #require((try connection.request(#"{"op":"stats"}"#).result["encoders"] as? [String: [String: Any]])?["minilm"])
        #expect(cache["hits"] as? Int == 3, "the unchanged encoder kept its warm cache across the reload")
    }

    /// Routes from 16 connections at once, each prompt new to the cache: the batcher embeds
    /// them in shared passes, and each decision still scores its own prompt's embedding.
    @Test func concurrentPromptsShareEncoderPassesAndEachGetsItsOwnEmbedding() throws {
        let daemon = try Self.probeDaemon(embeddingComponent: 7)
        let prompts = (0..<16).map { "Question \($0): how many \(["moons", "rivers", "primes", "bridges"][$0 % 4]) are there below \($0 * 37)?" }
        let connections = try prompts.map { _ in try daemon.connect() }
        // The plugin embedded a text of its own at create time.
        func encoderStats() throws -> [String: Int] {
            let stats = try connections[0].request(#"{"op":"stats"}"#).result["encoders"] as? [String: [String: Any]]
            return try #require(stats?["minilm"]?.compactMapValues { $0 as? Int })
        }
        let before = try encoderStats()
        for (connection, prompt) in zip(connections, prompts) {
            try connection.send(#"{"op":"route","router":"probe","prompt":"\#(prompt)"}"# + "\n")
        }
        var scores: [Double] = []
        for connection in connections {
            let line = try #require(try connection.readLine(timeout: 60))
            scores.append(try ResponseCodec.decode(Decision.self, from: Data(line.utf8)).strongScore)
        }
        let after = try encoderStats()
        let batches = after["batches", default: 0] - before["batches", default: 0]
        #expect(after["batched_texts", default: 0] - before["batched_texts", default: 0] == 16, "each prompt embedded once: \(after)")
        #expect(after["batched_requests", default: 0] - before["batched_requests", default: 0] == 16, "\(after)")
        #expect(batches < 16, "concurrent prompts shared encoder passes: \(before) → \(after)")
        #expect(after["largest_batch", default: 0] >= 2, "\(after)")
        // Alone (from the cache now, and computed alone above or in a batch: packing keeps them equal).
        for (prompt, score) in zip(prompts, scores) {
            let vector = try #require(
                try connections[0].request(#"{"op":"embed","text":"\#(prompt)"}"#).result["embeddings"] as? [[Double]])[0]
            #expect(abs(score - (vector[7] + 1) / 2) < 1e-6, "the decision for \(prompt.debugDescription) scored its own embedding")
        }
        let alone = try daemon.connect()
        let fresh = "A prompt embedded alone, to compare with the batched ones"
        let decision = try alone.decision(#"{"op":"route","router":"probe","prompt":"\#(fresh)"}"#)
        let reference = try #require(try alone.request(#"{"op":"embed","text":"\#(fresh)"}"#).result["embeddings"] as? [[Double]])[0]
        #expect(abs(decision.strongScore - (reference[7] + 1) / 2) < 1e-6)
    }

    /// An operator's `reload` runs on its own pool (issue 23, finding 1: `embed` shared the pool with
    /// `reload`, `set` and `learn reset`): here large embeds hold and queue on every compute
    /// thread, and the reload is still answered long before the first of them.
    @Test func aReloadIsAnsweredWhileEmbedsHoldTheComputePool() throws {
        let daemon = try Daemon(config: {
            TestConfig.yaml(socket: $0, routers: MFRouterTests.mfRouter(), limits: "  max_tokens: 20000", encoders: EncoderFixture.encoders())
        })
        let admin = try daemon.connect()
        #expect(try admin.request(#"{"op":"route","router":"mf","prompt":"warm the smoke test up"}"#).ok)
        let long = String(repeating: "The quick brown fox jumps over the lazy dog near the riverbank. ", count: 30)
        let busy = try (0..<max(4, 2 * ProcessInfo.processInfo.activeProcessorCount)).map { index in
            let connection = try daemon.connect()
            let texts = (0..<24).map { "\(index).\($0) \(long)" }
            let line = try JSONSerialization.data(withJSONObject: ["op": "embed", "texts": texts])
            try connection.send(String(decoding: line, as: UTF8.self) + "\n")
            return connection
        }
        usleep(100_000)  // let the embeds take the compute threads
        let started = Date()
        let reload = try admin.request(#"{"op":"reload"}"#)
        let reloadSeconds = Date().timeIntervalSince(started)
        #expect(reload.ok, "\(reload)")
        var embedSeconds: [Double] = []
        for connection in busy {
            let reply = try #require(try connection.readLine(timeout: 240))
            #expect(reply.contains(#""ok":true"#))
            embedSeconds.append(Date().timeIntervalSince(started))
        }
        // Queued behind the embeds, the reload had been answered with them (6.6 s, the first embed
        // 6.64 s); on its own pool, in 9 ms against 3.2 s.
        #expect(reloadSeconds < embedSeconds.min()! / 2, "reload \(reloadSeconds) s, embeds done at \(embedSeconds) s")
    }

    /// A route whose prompt is cached is answered on the event loop, so it does not queue behind
    /// the encoder: here two large `embed` requests keep every encoder worker busy.
    @Test func aCachedPromptIsAnsweredWhileTheEncoderIsBusy() throws {
        // Each embed is 48 texts of 256 positions: over the default max_tokens (2,048).
        let daemon = try Daemon(config: {
            TestConfig.yaml(socket: $0, routers: MFRouterTests.mfRouter(), limits: "  max_tokens: 20000", encoders: EncoderFixture.encoders())
        })
        let client = try daemon.connect()
        let prompt = "Write a haiku about compilers."
        let first = try client.decision(#"{"op":"route","router":"mf","prompt":"\#(prompt)"}"#)
        let long = String(repeating: "The quick brown fox jumps over the lazy dog near the riverbank. ", count: 30)
        let busy = try (0..<2).map { index in
            let connection = try daemon.connect()
            let texts = (0..<48).map { "\(index).\($0) \(long)" }
            let line = try JSONSerialization.data(withJSONObject: ["op": "embed", "texts": texts])
            try connection.send(String(decoding: line, as: UTF8.self) + "\n")
            return connection
        }
        usleep(100_000)  // let both embeds reach the encoder
        let started = Date()
        let again = try client.decision(#"{"op":"route","router":"mf","prompt":"\#(prompt)"}"#)
        let routeSeconds = Date().timeIntervalSince(started)
        #expect(again.strongScore == first.strongScore)
        var embedSeconds: [Double] = []
        for connection in busy {
            let reply = try #require(try connection.readLine(timeout: 240))
            #expect(reply.contains(#""ok":true"#))
            embedSeconds.append(Date().timeIntervalSince(started))
        }
        #expect(routeSeconds < embedSeconds.min()!, "route \(routeSeconds) s, embeds done at \(embedSeconds) s")
    }

    @Test func routerctlEmbedShowsVectorsAndTokens() throws {
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, encoders: EncoderFixture.encoders()) })
        let run = try runCommand(
            try Package.binary("routerctl"), ["embed", "--socket", daemon.socket, "--tokens", "How do I sort a list in Python?"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("encoder minilm, 384 dimensions, long_text head"))
        #expect(run.stdout.contains("tokens (11): 101 2129 2079 1045 4066 1037 2862 1999 18750 1029 102"), "\(run.stdout)")
    }

    @Test func embedErrorsAreClear() throws {
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, encoders: EncoderFixture.encoders()) })
        let connection = try daemon.connect()
        #expect(try connection.request(#"{"op":"embed"}"#).errorCode == "missing_field")
        #expect(try connection.request(#"{"op":"embed","encoder":"bert","text":"x"}"#).errorCode == "bad_field")
        #expect(try connection.request(#"{"op":"embed","text":"x","long_text":"middle"}"#).errorCode == "bad_field")
        #expect(try connection.request(#"{"op":"embed","text":"x","long_text":"tail"}"#).ok)
    }

    /// `precision: int8` runs in the daemon and shows in status, stats and the metrics; a reload to
    /// a precision the CPU cannot run (bf16 without AVX512-BF16) is refused with the reason, and
    /// int8 keeps serving.
    @Test func theEncoderRunsInInt8AndSaysSo() throws {
        let encoders = { (precision: String) in EncoderFixture.encoders() + "\n    precision: \(precision)" }
        let metricsPort = ObservabilityTests.freePort()
        let config = { (socket: String, precision: String) in
            TestConfig.yaml(socket: socket, encoders: encoders(precision)) + "\nmetrics:\n  listen: 127.0.0.1:\(metricsPort)\n"
        }
        let daemon = try Daemon(config: { config($0, "int8") })
        let connection = try daemon.connect()
        let status = try connection.request(#"{"op":"status"}"#).result
        let kernel = (status["encoder_kernels"] as? [String: String])?["minilm"] ?? ""
        #expect(kernel.hasPrefix("onednn ") && kernel.hasSuffix(" int8"), "\(status)")
        let precision = try #require((status["encoder_precision"] as? [String: [String: String]])?["minilm"], "\(status)")
        #expect(precision["precision"] == "int8" && precision["requested"] == "int8", "\(precision)")
        #expect(precision["note"]?.hasPrefix("gate: lowest cosine 0.99") == true, "\(precision)")
        #expect(try connection.request(#"{"op":"embed","text":"how do I sort a list in Python?"}"#).ok)
        let stats = try #require((try connection.request(#"{"op":"stats"}"#).result["encoders"] as? [String: [String: Any]])?["minilm"])
        #expect(stats["precision"] as? String == "int8" && stats["kernel"] as? String == "onednn", "\(stats)")
        var metrics = ""
        eventually {
            metrics = (try? ObservabilityTests.get(port: metricsPort, path: "/metrics").body) ?? ""
            return !metrics.isEmpty
        }
        #expect(metrics.contains(#"routerd_encoder_info{encoder="minilm",kernel="onednn",precision="int8"} 1"#), "\(metrics)")

        let unsupported = EncoderPrecision.bf16.unsupportedReason
        try config(daemon.socket, "bf16").write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let reload = try connection.request(#"{"op":"reload"}"#)
        if let unsupported {
            #expect(reload.errorCode == "reload_failed", "\(reload)")
            #expect(reload.errorMessage.contains("precision bf16: \(unsupported)"), "\(reload)")
            let after = try connection.request(#"{"op":"status"}"#).result
            #expect((after["encoder_kernels"] as? [String: String])?["minilm"]?.hasSuffix(" int8") == true, "\(after)")
        } else {
            #expect(reload.ok, "\(reload)")
        }
        #expect(try connection.request(#"{"op":"embed","text":"still serving"}"#).ok)
    }

    @Test func encoderConfigProblemsAreReported() throws {
        let directory = try TemporaryDirectory()
        let plugins = try PluginTests.buildConstantPlugin(in: directory, embedding: "required")
        let routers = """
              needs:
                plugin: constant
                threshold: 0.5
                strong_model: s
                weak_model: w
                params:
                  score: 0.5
              typo:
                plugin: random
                threshold: 0.5
                strong_model: s
                weak_model: w
                encoder: minilmm
            """
        let config = try directory.write(
            "routerd.yaml",
            TestConfig.yaml(
                socket: directory.path + "/s.sock", routers: routers, searchPaths: [plugins, Package.root + "/plugins"],
                encoders:
                    "encoders:\n  minilm:\n    path: /nonexistent/model\n    long_text: sideways\n    precision: int9\n  blas:\n    path: /nonexistent/model\n    kernel: openblas\n    precision: int8"
            ))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("long_text must be one of head, tail, windows, found 'sideways'"), "\(check.stderr)")
        #expect(check.stderr.contains("precision must be one of fp32, int8, bf16, auto, found 'int9'"), "\(check.stderr)")
        #expect(check.stderr.contains("encoder 'blas': precision int8 needs kernel onednn; openblas runs fp32 only"), "\(check.stderr)")
        #expect(check.stderr.contains("plugin 'constant' needs prompt embeddings; add `encoder: <name>` (encoders: blas, minilm)"))
        #expect(check.stderr.contains("router 'typo' uses unknown encoder 'minilmm' (encoders: blas, minilm)"))
        // With the YAML fixed, the missing model is named with the command that fetches it.
        let fixed = try directory.write(
            "fixed.yaml",
            TestConfig.yaml(
                socket: directory.path + "/s.sock", routers: TestConfig.randomRouter(), encoders: "encoders:\n  minilm:\n    path: /nonexistent/model"
            ))
        let second = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", fixed])
        #expect(second.status != 0)
        #expect(second.stderr.contains("encoder 'minilm': /nonexistent/model/model.safetensors is missing"), "\(second.stderr)")
        #expect(second.stderr.contains("make setup"))
    }
}
