import Foundation
import OpenAIProtocol
import RouterJSON
import Testing

@Suite struct ChatCompletionRequestTests {
    static func request(_ json: String) throws(OpenAIError) -> ChatCompletionRequest { try ChatCompletionRequest(json: Array(json.utf8)) }

    @Test func itRoutesOnTheLastUserTurnAndKeepsEveryField() throws {
        let request = try Self.request(
            #"{"model":"router-mf-0.11593","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"first"},{"role":"assistant","content":"ok"},{"role":"user","content":[{"type":"text","text":"What is"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"2 + 2?"}]}],"temperature":0.7,"user":"alice","seed":3,"new_sdk_field":{"a":[1,2]}}"#
        )
        #expect(request.model == "router-mf-0.11593")
        #expect(request.prompt == "What is\n2 + 2?", "the last user turn's text parts")
        #expect(!request.stream && request.user == "alice")
        // Forwarded under the upstream's name, everything else as sent: unknown fields included.
        guard case .object(let forwarded) = try JSONValue.parse(request.forwarded(as: "gpt-4o")) else {
            Issue.record("not an object")
            return
        }
        #expect(forwarded["model"] == .string("gpt-4o"))
        #expect(forwarded["new_sdk_field"] == .object(["a": .array([.integer(1), .integer(2)])]))
        #expect(forwarded["temperature"] == .number(0.7) && forwarded["seed"] == .integer(3) && forwarded["user"] == .string("alice"))
        #expect(forwarded["messages"] == request.body["messages"])
        #expect(forwarded["stream_options"] == nil, "a request that does not stream is not given stream options")
    }

    @Test func aStreamedRequestAsksTheUpstreamForUsage() throws {
        let request = try Self.request(
            #"{"model":"m","stream":true,"stream_options":{"other":1},"messages":[{"role":"user","content":"hi"}]}"#)
        #expect(request.stream && !request.includeUsage)
        guard case .object(let forwarded) = try JSONValue.parse(request.forwarded(as: "up")) else {
            Issue.record("not an object")
            return
        }
        #expect(forwarded["stream_options"] == .object(["include_usage": .bool(true), "other": .integer(1)]))
        let asked = try Self.request(
            #"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#)
        #expect(asked.includeUsage)
    }

    @Test(arguments: [
        ("not json", "not valid JSON", nil),
        ("[1]", "must be a JSON object", nil),
        (#"{"messages":[{"role":"user","content":"x"}]}"#, "Missing required parameter: 'model'", "model"),
        (#"{"model":3,"messages":[{"role":"user","content":"x"}]}"#, "'model' must be a non-empty string", "model"),
        (#"{"model":"m"}"#, "Missing required parameter: 'messages'", "messages"),
        (#"{"model":"m","messages":[]}"#, "non-empty array", "messages"),
        (#"{"model":"m","messages":["x"]}"#, "'messages[0]' must be an object with a string 'role'", "messages[0]"),
        (#"{"model":"m","messages":[{"role":"system","content":"x"}]}"#, "no message with role 'user'", "messages"),
        (#"{"model":"m","messages":[{"role":"user","content":5}]}"#, "'messages[0].content' must be a string", "messages[0].content"),
        (#"{"model":"m","messages":[{"role":"user","content":[3]}]}"#, "a list of content part objects", "messages[0].content"),
        (#"{"model":"m","stream":"yes","messages":[{"role":"user","content":"x"}]}"#, "'stream' must be a boolean", "stream"),
        (#"{"model":"m","user":7,"messages":[{"role":"user","content":"x"}]}"#, "'user' must be a string", "user"),
    ])
    func badBodiesAreA400NamingTheField(body: String, message: String, param: String?) {
        #expect {
            try Self.request(body)
        } throws: { error in
            guard let error = error as? OpenAIError else { return false }
            return error.status == 400 && error.type == "invalid_request_error" && error.message.contains(message) && error.param == param
        }
    }

    @Test func anErrorBodyIsOpenAIsShape() throws {
        let error = OpenAIError.unknownModel("gpt-5", known: ["router-mf", "cheap"])
        #expect(error.status == 404)
        guard case .object(let body) = try JSONValue.parse(error.body), case .object(let inner)? = body["error"] else {
            Issue.record("not {error: {...}}")
            return
        }
        #expect(Set(inner.keys) == ["message", "type", "param", "code"])
        #expect(inner["code"] == .string("model_not_found") && inner["param"] == .string("model"))
        #expect(inner["message"]?.stringValue?.contains("router-mf, cheap") == true)
        #expect(try JSONValue.parse(OpenAIError.invalidRequest("x").body).objectValue?["error"]?.objectValue?["param"] == .null)
    }
}

@Suite struct ModelTargetTests {
    static let routers: Set<String> = ["mf", "many", "v-2"]
    static func resolve(_ model: String) throws(OpenAIError) -> ModelTarget {
        try ModelTarget.resolve(model, routers: routers, canonical: { ["cheap": "cheap", "mid": "middle", "middle": "middle"][$0] }, known: ["x"])
    }

    @Test func routersAndCatalogueModelsAreFound() throws {
        #expect(try Self.resolve("router-mf-0.11593") == .router("mf", knob: 0.11593))
        #expect(try Self.resolve("router-many-17") == .router("many", knob: 17))
        #expect(try Self.resolve("router-mf") == .router("mf", knob: nil), "GET /v1/models lists routers without a number")
        #expect(try Self.resolve("router-v-2") == .router("v-2", knob: nil), "a router's whole name comes first")
        #expect(try Self.resolve("router-v-2-0.5") == .router("v-2", knob: 0.5))
        #expect(try Self.resolve("mid") == .model("middle"), "an alias names its model")
        #expect(try Self.resolve("cheap") == .model("cheap"))
    }

    @Test(arguments: ["router-nope", "router-nope-0.5", "gpt-5", "router-"])
    func anUnknownNameIsA404(model: String) {
        #expect {
            try Self.resolve(model)
        } throws: { error in
            (error as? OpenAIError)?.status == 404 && (error as? OpenAIError)?.code == "model_not_found"
        }
    }

    @Test func theModelListNamesRoutersThenModels() throws {
        let list = try JSONValue.parse(ModelList.body(routers: ["mf", "many"], models: ["cheap"], created: 42))
        let ids = list.objectValue?["data"]?.arrayValue?.compactMap { $0.objectValue?["id"]?.stringValue }
        #expect(ids == ["router-many", "router-mf", "cheap"])
        #expect(list.objectValue?["object"] == .string("list"))
    }
}

@Suite struct UsageTests {
    @Test func usageIsReadFromAResponseAndPriced() throws {
        let usage = try #require(
            Usage(responseBody: Array(#"{"id":"x","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":250,"total_tokens":1250}}"#.utf8)))
        #expect(usage == Usage(promptTokens: 1000, completionTokens: 250))
        #expect(abs(usage.cost(inputPrice: 2.5, outputPrice: 10) - 0.005) < 1e-15)
        #expect(Usage(responseBody: Array(#"{"usage":{"prompt_tokens":-1,"completion_tokens":2}}"#.utf8)) == nil)
        #expect(Usage(responseBody: Array("{}".utf8)) == nil)
    }

    /// A stream cut at every byte boundary gives the same usage and end as whole.
    @Test func theScannerFindsTheLastChunksUsageWhereverTheBytesAreCut() throws {
        let stream = Array(
            """
            data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"}}]}\r
            \r
            : a comment
            data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}

            data: {"object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}

            data: [DONE]


            """.utf8)
        for cut in 0...stream.count {
            var relay = StreamRelay()
            let passed = relay.relay(stream[..<cut]) + relay.relay(stream[cut...])
            #expect(relay.usage == Usage(promptTokens: 9, completionTokens: 2) && relay.sawDone && relay.events == 4, "cut at \(cut)")
            #expect(passed == stream, "unchanged when nothing is rewritten, cut at \(cut)")
        }
        // A line past the bound is skipped, not held.
        var bounded = StreamRelay(maxLineBytes: 16)
        #expect(bounded.relay(stream) == stream)
        #expect(bounded.usage == nil && bounded.sawDone)
        #expect(StreamRelay.isUsageOnlyChunk(Array(#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#.utf8)))
        #expect(!StreamRelay.isUsageOnlyChunk(Array(#"{"choices":[{"index":0}],"usage":{"prompt_tokens":1}}"#.utf8)))
        #expect(!StreamRelay.isUsageOnlyChunk(Array(#"{"choices":[],"usage":null}"#.utf8)))
    }

    /// Each chunk's model becomes the catalogue name; the usage-only event the client did not ask
    /// for is dropped with its blank line, and its usage still counted; other lines pass unchanged.
    @Test func theRelayRenamesTheModelAndDropsTheUsageChunkTheClientDidNotAskFor() throws {
        let stream = Array(
            """
            data: {"model":"upstream-name","choices":[{"index":0,"delta":{"content":"Hi"}}]}

            : keep-alive
            data: {"model":"upstream-name","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}

            data: [DONE]


            """.utf8)
        for cut in [0, 10, 90, stream.count] {
            var relay = StreamRelay(model: "small", keepUsageChunk: false)
            let passed = relay.relay(stream[..<cut]) + relay.relay(stream[cut...])
            let text = String(decoding: passed, as: UTF8.self)
            #expect(!text.contains("upstream-name") && !text.contains("usage"), "cut at \(cut): \(text)")
            #expect(text.contains(#""model":"small""#) && text.contains(": keep-alive\n") && text.hasSuffix("data: [DONE]\n\n"))
            #expect(text.components(separatedBy: "\n\n").count == 3, "the chunk, then the comment and [DONE]: \(text)")
            #expect(relay.usage == Usage(promptTokens: 3, completionTokens: 1))
        }
        var keeping = StreamRelay(model: "small", keepUsageChunk: true)
        #expect(String(decoding: keeping.relay(stream), as: UTF8.self).contains(#""prompt_tokens":3"#))
    }
}
