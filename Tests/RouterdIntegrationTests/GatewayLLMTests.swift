#if Gateway
    import Foundation
    import RouterdTestSupport
    import Testing

    /// The gateway in front of the real llama.cpp server that `make test-llm` starts (SmolLM2-135M),
    /// served under three catalogue names, driven by the official `openai` Python package: RouteLLM's
    /// README snippet unchanged but for `base_url`, the headers, streaming with and without usage,
    /// and the SDK's typed errors; through a router with two candidates and one with three.
    @Suite(
        .timeLimit(.minutes(10)),
        .enabled(
            if: ProcessInfo.processInfo.environment["ROUTERD_TEST_LLM_URL"] != nil,
            Comment(rawValue: "set ROUTERD_TEST_LLM_URL (and ROUTERD_TEST_LLM_MODEL) to an OpenAI-compatible endpoint, or run `make test-llm`")))
    struct GatewayLLMTests {
        static let url = ProcessInfo.processInfo.environment["ROUTERD_TEST_LLM_URL"] ?? ""
        static let model = ProcessInfo.processInfo.environment["ROUTERD_TEST_LLM_MODEL"] ?? "smollm2"
        /// The Python with `openai` installed: the llama.cpp server's virtualenv, unless ROUTERD_TEST_PYTHON says otherwise.
        static let python = ProcessInfo.processInfo.environment["ROUTERD_TEST_PYTHON"] ?? Package.root + "/.cache/llm-venv/bin/python"

        @Test func theOpenAISDKAndRouteLLMsSnippetWorkUnchanged() throws {
            let port = try GatewayTests.freePort()
            let endpoint = { (price: String) in "{\(price), endpoint: {base_url: \"\(Self.url)\", model: \(Self.model)}}" }
            let config = { (socket: String) in
                TestConfig.yaml(
                    socket: socket,
                    routers: """
                          pair:
                            plugin: random
                            threshold: 0.5
                            strong_model: small-c
                            weak_model: small-a
                          many:
                            plugin: random
                            policy: {lambda: 0}
                            candidates: [small-a, small-b, small-c]
                        """,
                    models: """
                        models:
                          small-a: \(endpoint("input: 0.1, output: 0.2"))
                          small-b: \(endpoint("input: 1.0, output: 2.0"))
                          small-c: \(endpoint("input: 10.0, output: 30.0"))
                        """,
                    extra: "gateway:\n  listen: 127.0.0.1:\(port)")
            }
            let daemon = try Daemon(config: config)
            let run = try runCommand(
                Self.python, [Package.root + "/Tests/RouterdIntegrationTests/Gateway/openai_sdk_client.py", "http://127.0.0.1:\(port)/v1"])
            #expect(run.status == 0, "\(run.stderr)\n\(daemon.log)")
            let seen = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)")
            let names: Set = ["small-a", "small-b", "small-c"]

            let snippet = try #require(seen["routellm_snippet"] as? [String: Any])
            #expect(names.contains(snippet["model"] as? String ?? ""), "the answer names the catalogue model that served it")
            #expect((snippet["content"] as? String)?.isEmpty == false && (snippet["completion_tokens"] as? Int ?? 0) > 0)

            let headers = try #require(seen["headers"] as? [String: Any])
            #expect(headers["x-routerd-router"] as? String == "many" && headers["x-routerd-attempts"] as? String == "1")
            #expect((headers["x-routerd-decision-id"] as? String)?.count == 32)
            #expect(headers["x-routerd-model"] as? String == headers["body_model"] as? String)

            for key in ["stream", "stream_usage"] {
                let stream = try #require(seen[key] as? [String: Any])
                #expect((stream["chunks"] as? Int ?? 0) > 0, "\(key) relayed chunks")
                let models = stream["models"] as? [String] ?? []
                #expect(models.count == 1 && names.contains(models[0]), "\(key): every chunk names the serving catalogue model: \(models)")
            }
            #expect((seen["stream"] as? [String: Any])?["usage"] is NSNull, "no usage chunk unless asked for")

            let errors = try #require(seen["errors"] as? [String: Any])
            #expect(errors["unknown_model"] as? Int == 404 && errors["no_messages"] as? Int == 400)
            #expect(Set(seen["models"] as? [String] ?? []).isSuperset(of: names.union(["router-pair", "router-many"])))

            // A plain answer is priced from its usage. llama-cpp-python's server ignores
            // `stream_options.include_usage`, so its streams carry no usage: they are counted as
            // unpriced, not given a made-up cost, and the client asking for usage gets none.
            let stats = try daemon.connect().request(#"{"op":"stats"}"#).result
            let routers = (stats["gateway"] as? [String: Any])?["routers"] as? [String: Any]
            let many = try #require(routers?["many"] as? [String: Any], "\(stats["gateway"] ?? "none")")
            #expect(many["requests"] as? Int == 3 && (many["spend_usd"] as? Double ?? 0) > 0)
            #expect((many["completion_tokens"] as? Int ?? 0) > 0)
            let streamUsage = (seen["stream_usage"] as? [String: Any])?["usage"] as? Int
            #expect(many["unpriced"] as? Int == (streamUsage == nil ? 2 : 0), "\(many)")
        }
    }
#endif
