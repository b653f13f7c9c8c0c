#if Gateway
    import AsyncHTTPClient
    import Foundation
    import NIOCore
    import NIOHTTP1
    import RouterBenchmarks
    import RouterdTestSupport
    import Testing

    /// The OpenAI-compatible gateway through the real daemon: routing, forwarding and pricing,
    /// streaming, fallback on every kind of upstream fault, cool-downs, failed outcomes, budgets,
    /// keys and error bodies. The upstreams are ``StubUpstream``, a local server in the test.
    @Suite(.timeLimit(.minutes(10)), .serialized) struct GatewayTests {
        /// A daemon with a gateway on a free loopback port, three priced models on the fault upstream,
        /// feedback and a decision log.
        struct Setup {
            let daemon: Daemon
            let upstream: StubUpstream
            let port: Int
            let metricsPort: Int
            let directory: TemporaryDirectory
            var url: String { "http://127.0.0.1:\(port)" }
        }

        static let routers = """
              pair:
                plugin: random
                threshold: 0.5
                strong_model: dear
                weak_model: cheap
                params: {seed: 7}
              many:
                plugin: random
                policy: {lambda: 0}
                candidates: [cheap, middle, dear]
                params: {seed: 3}
              tight:
                plugin: random
                policy: {budget: {mean_cost: 0.00002, window: 64}}
                candidates: [cheap, dear]
                params: {seed: 5}
              loose:
                plugin: random
                policy: {budget: {mean_cost: 1, window: 64}}
                candidates: [cheap, dear]
                params: {seed: 5}
            """

        static func setUp(
            gateway extra: String = "", routers: String? = nil, attemptTimeout: Double = 10,
            fallback: String = "{retries: 1, retry_delay: 0.01, cool_down_after: 3, cool_down: 60, deadline: 10}"
        )
            async throws -> Setup
        {
            let upstream = try await StubUpstream()
            let directory = try TemporaryDirectory()
            let port = try freePort()
            let metricsPort = try freePort()
            let models = """
                models:
                  cheap: {input: 0.1, output: 0.2, output_tokens: 100, endpoint: {base_url: "\(upstream.baseURL("cheap"))", model: up-cheap}}
                  middle: {input: 1.0, output: 2.0, output_tokens: 100, endpoint: {base_url: "\(upstream.baseURL("middle"))", model: up-middle}}
                  dear: {input: 10.0, output: 30.0, output_tokens: 100, endpoint: {base_url: "\(upstream.baseURL("dear"))", model: up-dear}}
                """
            let sections = """
                feedback:
                  directory: \(directory.path)/feedback
                  sync_interval_ms: 2
                decision_log:
                  path: \(directory.path)/decisions.jsonl
                metrics:
                  listen: 127.0.0.1:\(metricsPort)
                gateway:
                  listen: 127.0.0.1:\(port)
                  attempt_timeout: \(attemptTimeout)
                  fallback: \(fallback)
                \(extra)
                """
            let daemon = try Daemon(
                directory: directory, config: { TestConfig.yaml(socket: $0, routers: routers ?? Self.routers, models: models, extra: sections) })
            // The gateway binds beside the socket; wait until it answers.
            _ = try await eventuallyAsync { (try? await get("http://127.0.0.1:\(port)/health").status) == 200 }
            return Setup(daemon: daemon, upstream: upstream, port: port, metricsPort: metricsPort, directory: directory)
        }

        static func freePort() throws -> Int { try GatewayBench.freePort() }

        struct Reply {
            var status: Int
            var headers: HTTPHeaders
            var body: String
            var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:] }
            var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
            func header(_ name: String) -> String? { headers.first(name: name) }
        }

        static func get(_ url: String) async throws -> Reply {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
            return Reply(
                status: Int(response.status.code), headers: response.headers,
                body: String(buffer: try await response.body.collect(upTo: 1 << 24)))
        }

        static func post(_ url: String, _ body: String, headers: [(String, String)] = []) async throws -> Reply {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            request.body = .bytes(ByteBuffer(string: body))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(20))
            return Reply(
                status: Int(response.status.code), headers: response.headers,
                body: String(buffer: try await response.body.collect(upTo: 1 << 24)))
        }

        static func chat(_ setup: Setup, model: String, prompt: String = "Say hello", stream: Bool = false, extra: String = "") async throws
            -> Reply
        {
            try await post(
                setup.url + "/v1/chat/completions",
                #"{"model":"\#(model)","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"\#(prompt)"}],"stream":\#(stream)\#(extra)}"#
            )
        }

        static func stats(_ setup: Setup) throws -> [String: Any] {
            try setup.daemon.connect().request(#"{"op":"stats"}"#).result
        }

        static func gatewayStats(_ setup: Setup, _ kind: String, _ name: String) throws -> [String: Any] {
            let gateway = try stats(setup)["gateway"] as? [String: Any]
            return (gateway?[kind] as? [String: Any])?[name] as? [String: Any] ?? [:]
        }

        static func eventuallyAsync(within seconds: Double = 10, _ condition: () async throws -> Bool) async throws -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if try await condition() { return true }
                try await Task.sleep(for: .milliseconds(20))
            }
            return try await condition()
        }

        static func lines(_ file: String) -> [[String: Any]] {
            (try? String(contentsOfFile: file, encoding: .utf8))?.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            } ?? []
        }

        // MARK: Serving

        /// A routed completion goes to the chosen model's endpoint under its endpoint name, comes
        /// back with `model` set to the catalogue name and the headers saying what happened, and
        /// its usage is priced into stats and the decision log.
        @Test func aRoutedCompletionIsForwardedAnsweredAndPriced() async throws {
            let setup = try await Self.setUp()
            defer { setup.upstream.stop() }
            let reply = try await Self.chat(setup, model: "router-pair")
            #expect(reply.status == 200, "\(reply.body)")
            let served = try #require(reply.header("x-routerd-model"))
            #expect(["cheap", "dear"].contains(served))
            #expect(reply.header("x-routerd-router") == "pair" && reply.header("x-routerd-attempts") == "1")
            let decisionID = try #require(reply.header("x-routerd-decision-id"))
            #expect(reply.json["model"] as? String == served)
            let content = ((reply.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
            #expect(content == "Hello from up-\(served)", "the upstream saw its endpoint's model name")
            #expect(setup.upstream.callCount(served) == 1)
            let price = served == "cheap" ? (0.1, 0.2) : (10.0, 30.0)
            let cost = (Double(StubUpstream.promptTokens) * price.0 + Double(StubUpstream.completionTokens) * price.1) / 1e6
            let routerStats = try Self.gatewayStats(setup, "routers", "pair")
            #expect(routerStats["requests"] as? Int == 1 && routerStats["attempts"] as? Int == 1)
            #expect(abs((routerStats["spend_usd"] as? Double ?? 0) - cost) < 1e-12)
            #expect(try Self.gatewayStats(setup, "models", served)["completion_tokens"] as? Int == StubUpstream.completionTokens)
            // Time to the first byte and to the end, as quantiles over the recent requests.
            let seconds = try #require(routerStats["seconds"] as? [String: Double])
            let firstByte = try #require(routerStats["first_byte_seconds"] as? [String: Double])
            #expect(Set(seconds.keys) == ["p50", "p99"] && Set(firstByte.keys) == ["p50", "p99"])
            #expect(seconds["p50"]! > 0 && seconds["p50"]! <= seconds["p99"]! && seconds["p50"]! < 10)
            let logged = try #require(Self.lines(setup.directory.path + "/decisions.jsonl").last)
            #expect(
                logged["decision_id"] as? String == decisionID && logged["served_model"] as? String == served && logged["via"] as? String == "gateway"
            )
            #expect(abs((logged["cost"] as? Double ?? 0) - cost) < 1e-12)
            let metrics = try await Self.get("http://127.0.0.1:\(setup.metricsPort)/metrics").body
            let servedLine = metrics.split(separator: "\n").first {
                $0.hasPrefix("routerd_gateway_requests_total") && $0.contains(#"router="pair""#) && $0.contains("served")
            }
            #expect(servedLine?.hasSuffix(" 1") == true, "\(metrics)")
            #expect(metrics.contains("routerd_gateway_spend_usd"))
            #expect(metrics.contains(#"routerd_gateway_request_seconds{router="pair",quantile="0.99"}"#), "\(metrics)")

            // RouteLLM's model name with a threshold: 0 sends everything to the strong model, 1.01 nothing.
            #expect(try await Self.chat(setup, model: "router-pair-0.0").header("x-routerd-model") == "dear")
            // A catalogue model by name goes straight to it, unrouted.
            let direct = try await Self.chat(setup, model: "middle")
            #expect(direct.status == 200 && direct.header("x-routerd-model") == "middle" && direct.header("x-routerd-decision-id") == nil)
            let listed = try await Self.get(setup.url + "/v1/models")
            let ids = (listed.json["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? []
            #expect(Set(ids).isSuperset(of: ["router-pair", "router-many", "cheap", "middle", "dear"]))
        }

        /// An io_bound router (causal_llm) waits on its network on the I/O pool: with more such
        /// decisions waiting than routerd has event loops, another router's request is still read,
        /// routed and answered, before any of the waiting ones.
        @Test func anIOBoundRouterWaitingOnItsNetworkHoldsUpNoOtherRequest() async throws {
            let silent = try CausalLLMConfig.SilentServer()
            let llm = CausalLLMConfig.router(
                "llm", params: ["base_url": "http://127.0.0.1:\(silent.port)/v1", "model": "m", "timeout": "3", "fallback": "weak"])
            let setup = try await Self.setUp(
                routers: Self.routers + "\n"
                    + llm.replacingOccurrences(of: TestConfig.weak, with: "cheap").replacingOccurrences(of: TestConfig.strong, with: "dear"))
            defer { setup.upstream.stop() }
            let (quickAnswered, llmAnswered) = try await withThrowingTaskGroup(of: ContinuousClock.Instant.self) { group in
                let url = setup.url + "/v1/chat/completions"
                for index in 0..<(2 * ProcessInfo.processInfo.activeProcessorCount + 2) {
                    group.addTask {
                        let reply = try await Self.post(url, #"{"model":"router-llm","messages":[{"role":"user","content":"waiting \#(index)"}]}"#)
                        #expect(reply.status == 200, "the silent endpoint's timeout takes causal_llm's fallback: \(reply.body)")
                        return ContinuousClock.now
                    }
                }
                // Time for every llm request to reach the silent endpoint, where each waits 3 s.
                try await Task.sleep(for: .milliseconds(500))
                let quick = try await Self.chat(setup, model: "router-pair")
                #expect(quick.status == 200, "\(quick.body)")
                let quickAnswered = ContinuousClock.now
                var llmAnswered: [ContinuousClock.Instant] = []
                for try await answered in group { llmAnswered.append(answered) }
                return (quickAnswered, llmAnswered)
            }
            #expect(llmAnswered.allSatisfy { quickAnswered < $0 }, "the pair request waited behind the llm ones")
        }

        /// A stream is relayed chunk by chunk with the model renamed, ends with [DONE], and carries
        /// usage only when the client asked for it; its cost is counted either way.
        @Test func aStreamIsRelayedWithTheModelRenamedAndPriced() async throws {
            let setup = try await Self.setUp()
            defer { setup.upstream.stop() }
            let reply = try await Self.chat(setup, model: "cheap", stream: true)
            #expect(reply.status == 200 && reply.header("content-type") == "text/event-stream")
            let events = reply.body.components(separatedBy: "\n\n").filter { !$0.isEmpty }
            #expect(events.count == 4, "three chunks and [DONE]: \(reply.body)")
            #expect(!reply.body.contains("up-cheap") && reply.body.contains(#""model":"cheap""#) && !reply.body.contains("usage"))
            #expect(events.last == "data: [DONE]")
            let withUsage = try await Self.chat(setup, model: "cheap", stream: true, extra: #","stream_options":{"include_usage":true}"#)
            #expect(withUsage.body.contains(#""completion_tokens":5"#))
            let cost = (10 * 0.1 + 5 * 0.2) / 1e6
            let model = try Self.gatewayStats(setup, "models", "cheap")
            #expect(abs((model["spend_usd"] as? Double ?? 0) - 2 * cost) < 1e-12)
            // A stream's first byte leaves before its end.
            let firstByte = try #require((model["first_byte_seconds"] as? [String: Double])?["p50"])
            #expect(firstByte <= (model["seconds"] as? [String: Double])?["p50"] ?? 0)
        }

        /// A client that goes away mid-stream ends the upstream call too: the upstream's stream loses
        /// its reader long before its end, and the request is logged as the client's (499).
        @Test func aClientThatHangsUpMidStreamCancelsTheUpstreamCall() async throws {
            let setup = try await Self.setUp()
            defer { setup.upstream.stop() }
            setup.upstream.set("cheap", .slow(chunks: 100, interval: .milliseconds(50)))
            var request = HTTPClientRequest(url: setup.url + "/v1/chat/completions")
            request.method = .POST
            request.body = .bytes(ByteBuffer(string: #"{"model":"cheap","stream":true,"messages":[{"role":"user","content":"Talk."}]}"#))
            let reader = Task {
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(20))
                var iterator = response.body.makeAsyncIterator()
                _ = try await iterator.next()
                // Leaving with the stream unread closes the connection.
            }
            try await reader.value
            #expect(try await Self.eventuallyAsync(within: 3) { setup.upstream.abandonedStreams == 1 }, "the upstream call was cancelled")
            let model = try Self.gatewayStats(setup, "models", "cheap")
            #expect(model["requests"] as? Int == 1, "\(model)")
        }

        // MARK: Faults

        /// An upstream answering 500 is retried once, then the request falls back to the other
        /// candidate; every failed call is a `failed` outcome for its model; after three failures in
        /// a row the model cools down and later requests skip it.
        @Test func aFailingModelFallsBackCoolsDownAndIsRecordedAsFailed() async throws {
            let setup = try await Self.setUp()
            defer { setup.upstream.stop() }
            setup.upstream.set("dear", .serverError)
            let reply = try await Self.chat(setup, model: "router-pair-0.0")
            #expect(reply.status == 200, "\(reply.body)")
            #expect(reply.header("x-routerd-model") == "cheap" && reply.header("x-routerd-attempts") == "3")
            #expect(setup.upstream.callCount("dear") == 2 && setup.upstream.callCount("cheap") == 1)
            let store = setup.directory.path + "/feedback/quality.jsonl"
            #expect(try await Self.eventuallyAsync { Self.lines(store).count == 2 })
            #expect(Self.lines(store).allSatisfy { ($0["quality"] as? [String: Any])?["dear"] as? Double == 0 })
            // The third failure cools dear down: the next request goes to cheap first.
            _ = try await Self.chat(setup, model: "router-pair-0.0")
            let calls = setup.upstream.callCount("dear")
            let cooled = try await Self.chat(setup, model: "router-pair-0.0")
            #expect(cooled.status == 200 && cooled.header("x-routerd-attempts") == "1" && cooled.header("x-routerd-model") == "cheap")
            #expect(setup.upstream.callCount("dear") == calls)
            let router = try Self.gatewayStats(setup, "routers", "pair")
            #expect(router["fallbacks"] as? Int == 2 || router["fallbacks"] as? Int == 3)
            #expect((router["upstream_errors"] as? [String: Any])?["server_error"] as? Int ?? 0 >= 3)
            #expect(setup.daemon.process.isRunning)
        }

        /// Every fault before the first byte falls back: a 429 with retry-after, a hang past the
        /// attempt timeout, malformed JSON, a body over the limit. A stream cut after its first
        /// chunk cannot fall back: it ends with an SSE error event. The daemon lives on.
        @Test func everyFaultBeforeTheFirstByteFallsBackAndOneAfterItEndsTheStream() async throws {
            let setup = try await Self.setUp(
                gateway: "  max_response_bytes: 1048576", attemptTimeout: 1, fallback: "{retries: 0, cool_down_after: 100}")
            defer { setup.upstream.stop() }
            for (behaviour, errorClass) in [
                (StubUpstream.Behaviour.rateLimited(retryAfter: 1), "rate_limited"), (.hang, "timeout"), (.malformed, "malformed"),
                (.huge, "malformed"),
            ] {
                setup.upstream.set("dear", behaviour)
                let started = Date()
                let reply = try await Self.chat(setup, model: "router-pair-0.0")
                #expect(reply.status == 200 && reply.header("x-routerd-model") == "cheap", "\(behaviour): \(reply.status) \(reply.body)")
                #expect(reply.header("x-routerd-attempts") == "2", "\(behaviour)")
                #expect(Date().timeIntervalSince(started) < 5, "\(behaviour) waited at most the attempt timeout")
                let errors = try Self.gatewayStats(setup, "models", "dear")["upstream_errors"] as? [String: Any]
                #expect(errors?[errorClass] as? Int ?? 0 >= 1, "\(behaviour) counted as \(errorClass)")
            }
            setup.upstream.set("dear", .dropMidStream)
            let cut = try await Self.chat(setup, model: "router-pair-0.0", stream: true)
            #expect(cut.status == 200 && cut.header("x-routerd-model") == "dear")
            #expect(cut.body.contains("Hel") && cut.body.contains(#""code":"mid_stream""#), "\(cut.body)")
            #expect(!cut.body.contains("[DONE]"))
            // Every kind of upstream failed; all of it was answered and the daemon serves on.
            setup.upstream.set("dear", .healthy)
            #expect(try await Self.chat(setup, model: "router-pair-0.0").status == 200)
            #expect(setup.daemon.process.isRunning)
        }

        /// With every candidate failing, the client gets an OpenAI-style error with the right status.
        @Test func whenEveryCandidateFailsTheClientGetsAnOpenAIError() async throws {
            let setup = try await Self.setUp(fallback: "{retries: 0, cool_down_after: 100}")
            defer { setup.upstream.stop() }
            setup.upstream.set("dear", .serverError)
            setup.upstream.set("cheap", .serverError)
            let failed = try await Self.chat(setup, model: "router-pair")
            #expect(failed.status == 502 && failed.errorCode == "server_error", "\(failed.body)")
            #expect(failed.header("x-routerd-attempts") == "2")
            let logged = try #require(Self.lines(setup.directory.path + "/decisions.jsonl").last)
            #expect(logged["status"] as? Int == 502 && logged["served_model"] is NSNull)
        }

        /// An upstream's 4xx is the request's own fault: the client gets it as the upstream said it,
        /// with no retry, no fallback and no `failed` outcome against the model.
        @Test func anUpstreamsOwnRefusalReachesTheClientAsItWasSaid() async throws {
            let setup = try await Self.setUp()
            defer { setup.upstream.stop() }
            setup.upstream.set("dear", .rejected)
            let reply = try await Self.chat(setup, model: "router-pair-0.0")
            #expect(reply.status == 400 && reply.errorCode == "context_length_exceeded", "\(reply.body)")
            #expect(reply.header("x-routerd-attempts") == "1" && setup.upstream.callCount("cheap") == 0)
            try await Task.sleep(for: .milliseconds(200))
            #expect(Self.lines(setup.directory.path + "/feedback/quality.jsonl").isEmpty, "a refused request is not the model's failure")
        }

        // MARK: Budgets

        /// A budget router does not pay for a fallback its budget forbids: it answers 429 and never
        /// calls the dearer model; a budget with room pays for it.
        @Test func aBudgetRouterRefusesAFallbackItsBudgetForbids() async throws {
            let setup = try await Self.setUp(fallback: "{retries: 0, cool_down_after: 1000}")
            defer { setup.upstream.stop() }
            // Fill both windows with healthy traffic: the tight budget sends nearly all of it to cheap.
            for index in 0..<70 {
                _ = try await Self.chat(setup, model: "router-tight", prompt: "warm up \(index)")
                _ = try await Self.chat(setup, model: "router-loose", prompt: "warm up \(index)")
            }
            setup.upstream.set("cheap", .serverError)
            let dearCalls = setup.upstream.callCount("dear")
            var refused = 0
            for index in 0..<10 {
                let reply = try await Self.chat(setup, model: "router-tight", prompt: "question \(index)")
                if reply.status == 429 {
                    #expect(reply.errorCode == "budget_exceeded", "\(reply.body)")
                    refused += 1
                }
            }
            #expect(refused >= 5, "the tight budget refused its fallbacks")
            #expect(setup.upstream.callCount("dear") <= dearCalls + (10 - refused), "a refused fallback never called dear")
            var paid = 0
            for index in 0..<10 {
                let reply = try await Self.chat(setup, model: "router-loose", prompt: "question \(index)")
                #expect(reply.status == 200, "\(reply.body)")
                if reply.header("x-routerd-attempts") == "2" { paid += 1 }
            }
            #expect(paid >= 1, "the loose budget paid for fallbacks to dear")
        }

        // MARK: Requests the gateway refuses

        /// Bad JSON, a missing field, an unknown model, a missing key: OpenAI-style errors with the
        /// right status, on a connection that lives on.
        @Test func badRequestsGetOpenAIErrorsAndKeysAreRequired() async throws {
            let directory = try TemporaryDirectory()
            let keyFile = try directory.write("gateway.key", "s3cret\n")
            chmod(keyFile, 0o600)
            let setup = try await Self.setUp(gateway: "  keys: [{file: \(keyFile)}]\n  max_body_bytes: 2048")
            defer { setup.upstream.stop() }
            let url = setup.url + "/v1/chat/completions"
            let key = [("authorization", "Bearer s3cret")]
            #expect(try await Self.post(url, #"{"model":"cheap","messages":[{"role":"user","content":"hi"}]}"#).status == 401)
            #expect(
                try await Self.post(
                    url, #"{"model":"cheap","messages":[{"role":"user","content":"hi"}]}"#, headers: [("authorization", "Bearer nope")]
                )
                .status == 401)
            let badJSON = try await Self.post(url, "{not json", headers: key)
            #expect(badJSON.status == 400 && badJSON.json["error"] != nil)
            let missing = try await Self.post(url, #"{"model":"cheap"}"#, headers: key)
            #expect(missing.status == 400 && (missing.json["error"] as? [String: Any])?["param"] as? String == "messages")
            let unknown = try await Self.post(url, #"{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}"#, headers: key)
            #expect(unknown.status == 404 && unknown.errorCode == "model_not_found", "\(unknown.body)")
            let large = try await Self.post(
                url, #"{"model":"cheap","messages":[{"role":"user","content":""# + String(repeating: "x", count: 4096) + #""}]}"#, headers: key)
            #expect(large.status == 413)
            let fine = try await Self.post(url, #"{"model":"cheap","messages":[{"role":"user","content":"hi"}]}"#, headers: key)
            #expect(fine.status == 200)
            #expect(setup.daemon.process.isRunning)
        }

        /// Over TCP a named key is its holder's principal: one key's holder cannot report on
        /// another's decisions (told the decision is unknown, as for an id never issued), nor join
        /// its session; its own reports are taken.
        @Test func eachNamedKeyIsAPrincipalOfItsOwn() async throws {
            let directory = try TemporaryDirectory()
            let alice = try directory.write("alice.key", "alice-secret\n")
            let bob = try directory.write("bob.key", "bob-secret\n")
            chmod(alice, 0o600)
            chmod(bob, 0o600)
            let setup = try await Self.setUp(gateway: "  keys: [{file: \(alice), name: alice}, {file: \(bob), name: bob}]")
            defer { setup.upstream.stop() }
            let asAlice = [("authorization", "Bearer alice-secret"), ("x-session-id", "conversation")]
            let asBob = [("authorization", "Bearer bob-secret"), ("x-session-id", "conversation")]
            let body = #"{"model":"router-pair","messages":[{"role":"user","content":"hello"}]}"#
            let first = try await Self.post(setup.url + "/v1/chat/completions", body, headers: asAlice)
            #expect(first.status == 200, "\(first.body)")
            let decisionID = try #require(first.header("x-routerd-decision-id"))
            let served = try #require(first.header("x-routerd-model"))
            let feedback = #"{"decision_id":"\#(decisionID)","model":"\#(served)","quality":1}"#
            let foreign = try await Self.post(setup.url + "/v1/feedback", feedback, headers: asBob)
            #expect(foreign.status == 404, "bob cannot report on alice's decision: \(foreign.body)")
            let own = try await Self.post(setup.url + "/v1/feedback", feedback, headers: asAlice)
            #expect(own.status == 200, "\(own.body)")
            // The same session id is two conversations: bob's first turn starts his own.
            #expect(try await Self.post(setup.url + "/v1/chat/completions", body, headers: asBob).status == 200)
            #expect(try await Self.post(setup.url + "/v1/chat/completions", body, headers: asAlice).status == 200)
            let affinities = Self.lines(setup.directory.path + "/decisions.jsonl").compactMap { $0["affinity"] as? String }
            #expect(affinities == ["new", "new", "same"], "alice, bob, then alice again")
        }

        /// The gateway on a Unix socket too: the peer's uid is read with SO_PEERCRED, and a peer the
        /// config does not allow is refused with 403 (root always is allowed, so the refusal is
        /// checked only when the suite does not run as root).
        @Test func theGatewayAlsoServesAUnixSocket() async throws {
            let directory = try TemporaryDirectory()
            let path = directory.path + "/gateway.sock"
            let other = getuid() == 0 ? "" : "\n  allow: {uids: [\(getuid() &+ 1)]}"
            let setup = try await Self.setUp(gateway: "  socket: \(path)\n  socket_mode: 0600" + other)
            defer { setup.upstream.stop() }
            // The socket is bound in a private folder and appears at its path finished.
            #expect(try await Self.eventuallyAsync { FileManager.default.fileExists(atPath: path) })
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix(".routerd-staging") }
            #expect(leftovers.isEmpty, "the private staging folder is removed: \(leftovers)")
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? Int).map { $0 & 0o777 } == 0o600)
            let encoded = path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? path
            let reply = try await Self.post(
                "http+unix://\(encoded)/v1/chat/completions", #"{"model":"router-pair","messages":[{"role":"user","content":"hi"}]}"#)
            if getuid() == 0 {
                #expect(reply.status == 200 && reply.header("x-routerd-router") == "pair", "\(reply.body)")
            } else {
                #expect(reply.status == 403 && reply.body.contains("gateway.allow"), "\(reply.body)")
            }
            // A clean stop removes the socket's file, as routerd's own socket does.
            #expect(setup.daemon.stop() == 0)
            #expect(!FileManager.default.fileExists(atPath: path), "the gateway's socket is removed at exit")
        }

        /// Bad JSON, a missing `messages` and an unknown model are answered on one keep-alive
        /// connection, which then serves a good request: the connection lives on.
        @Test func aConnectionLivesOnAfterBadRequests() async throws {
            let setup = try await Self.setUp()
            defer { setup.upstream.stop() }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = in_port_t(UInt16(setup.port).bigEndian)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            try #require(connected)
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var pending: [UInt8] = []
            /// Sends one request and reads its response (head and Content-Length body); returns the status.
            func exchange(_ body: String) -> Int? {
                let request =
                    "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)"
                _ = Array(request.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let text = String(decoding: pending, as: UTF8.self)
                    if let end = text.range(of: "\r\n\r\n") {
                        let head = text[..<end.lowerBound]
                        let length =
                            head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                        let headBytes = text[..<end.upperBound].utf8.count
                        if pending.count >= headBytes + length {
                            pending.removeFirst(headBytes + length)
                            return Int(head.split(separator: " ")[1])
                        }
                    }
                    let count = read(fd, &buffer, buffer.count)
                    guard count > 0 else { return nil }
                    pending += buffer[..<count]
                }
            }
            #expect(exchange("{not json") == 400)
            #expect(exchange(#"{"model":"router-pair"}"#) == 400)
            #expect(exchange(#"{"model":"router-nope","messages":[{"role":"user","content":"hi"}]}"#) == 404)
            #expect(exchange(#"{"model":"router-pair","messages":[{"role":"user","content":"hi"}]}"#) == 200)
        }

        /// `POST /v1/feedback` records an outcome for a gateway decision, as the socket op does.
        @Test func feedbackOverHTTPRecordsAnOutcomeForAGatewayDecision() async throws {
            let setup = try await Self.setUp()
            defer { setup.upstream.stop() }
            let reply = try await Self.chat(setup, model: "router-pair")
            let id = try #require(reply.header("x-routerd-decision-id"))
            let served = try #require(reply.header("x-routerd-model"))
            let recorded = try await Self.post(setup.url + "/v1/feedback", #"{"decision_id":"\#(id)","model":"\#(served)","quality":1}"#)
            #expect(recorded.status == 200 && recorded.json["recorded"] as? String == "quality", "\(recorded.body)")
            let rows = Self.lines(setup.directory.path + "/feedback/quality.jsonl")
            #expect((rows.last?["quality"] as? [String: Any])?[served] as? Double == 1)
            let unknown = try await Self.post(
                setup.url + "/v1/feedback", #"{"decision_id":"00000000000000000000000000000000","model":"cheap","outcome":"failed"}"#)
            #expect(unknown.status == 404, "\(unknown.body)")
            let malformed = try await Self.post(setup.url + "/v1/feedback", #"{"decision_id":"\#(id)","model":"\#(served)","outcome":"good"}"#)
            #expect(malformed.status == 400 && malformed.errorCode == "bad_field", "\(malformed.body)")
        }
    }
#endif
