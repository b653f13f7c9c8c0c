import Foundation
import RouterProtocol
import RouterVocabulary
import Testing

@Suite struct RequestCodecTests {
    func decode(_ line: String) -> DecodedRequest { RequestCodec.decode(Data(line.utf8)) }

    @Test func aRouteRequestDecodes() throws {
        let decoded = decode(#"{"id":"a-1","op":"route","router":"mf","prompt":"hi","threshold":0.25}"#)
        #expect(decoded.id == .string("a-1"))
        #expect(try decoded.outcome.get() == .route(RouteRequest(router: "mf", prompt: "hi", threshold: 0.25)))
    }

    @Test func numericIDsKeepTheirType() {
        #expect(decode(#"{"id":42,"op":"health"}"#).id == .int(42))
        #expect(decode(#"{"id":4.5,"op":"health"}"#).id == .double(4.5))
        #expect(decode(#"{"op":"health"}"#).id == nil)
    }

    @Test(arguments: [
        ("router-mf-0.11593", "mf", 0.11593),
        ("router-causal-llm-0.5", "causal-llm", 0.5),
        ("router-a-1", "a", 1.0),
    ])
    func routeLLMModelNamesParse(model: String, router: String, threshold: Double) throws {
        let parsed = try #require(RouterModelName(model))
        #expect(parsed.router == router)
        #expect(parsed.value == threshold)
    }

    @Test(arguments: ["gpt-4", "router-", "router-mf", "router--0.5", "router-mf-abc", "router-mf-nan"])
    func otherModelNamesDoNotParse(model: String) {
        #expect(RouterModelName(model) == nil)
    }

    @Test func theLastUserTurnIsRouted() throws {
        let decoded = decode(
            #"{"op":"route","router":"r","messages":[{"role":"user","content":"one"},{"role":"assistant","content":"x"},{"role":"user","content":"two"},{"role":"assistant","content":"y"}]}"#
        )
        #expect(try decoded.outcome.get() == .route(RouteRequest(router: "r", prompt: "two")))
    }

    @Test func anExplicitThresholdWinsOverTheModelName() throws {
        let decoded = decode(#"{"op":"route","model":"router-r-0.3","threshold":0.7,"prompt":"p"}"#)
        #expect(try decoded.outcome.get() == .route(RouteRequest(router: "r", prompt: "p", threshold: 0.7)))
    }

    @Test func errorsCarryTheirCodeAndTheID() {
        let cases: [(String, ErrorCode)] = [
            (#"{"id":3,"op":"route","router":"r","prompt":["x"]}"#, .badField),
            (#"{"id":3,"op":"score","router":"r"}"#, .missingField),
            (#"{"id":3,"op":"dance"}"#, .unknownOp),
        ]
        for (line, code) in cases {
            let decoded = decode(line)
            #expect(decoded.id == .int(3))
            guard case .failure(let error) = decoded.outcome else {
                Issue.record("\(line) decoded")
                continue
            }
            #expect(error.code == code)
        }
    }

    @Test func nestingTenThousandDeepIsAnErrorNotACrash() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        guard case .failure(let error) = decode(#"{"op":"route","prompt":\#(deep)}"#).outcome else {
            Issue.record("decoded")
            return
        }
        #expect(error.code == .badJSON)
    }

    @Test func aRequestEncodesAsOneLineThatDecodesBack() throws {
        let request = Request.route(RouteRequest(router: "mf", prompt: "line one\nline \"two\"", threshold: 0.5))
        let line = try RequestCodec.encode(request, id: .int(7))
        #expect(line.last == 0x0A)
        #expect(line.dropLast().contains(0x0A) == false)
        let decoded = RequestCodec.decode(line.dropLast())
        #expect(decoded.id == .int(7))
        #expect(try decoded.outcome.get() == request)
    }

    /// Each form of feedback the client library writes decodes back to itself.
    @Test(arguments: [
        FeedbackRequest(subject: .decision(id: "00ab"), model: "gpt-4", value: .pairwise(outcome: .tie, against: "mixtral")),
        FeedbackRequest(subject: .decision(id: "00ab"), model: "gpt-4", value: .pointwise(quality: 0.5)),
        FeedbackRequest(subject: .prompt(router: "mf", text: "late \"outcome\""), model: "gpt-4", value: .pointwise(quality: 1)),
        FeedbackRequest(subject: .decision(id: "00ab"), model: "gpt-4", value: .failed),
    ])
    func feedbackEncodesAndDecodesBack(feedback: FeedbackRequest) throws {
        let line = try RequestCodec.encode(.feedback(feedback), id: nil)
        #expect(try RequestCodec.decode(line.dropLast()).outcome.get() == .feedback(feedback))
    }
}

@Suite struct ResponseCodecTests {
    /// The writer's output, read back by Foundation's independent parser.
    @Test(arguments: [
        "plain", "quote \" backslash \\ slash /", "control \u{0}\u{1}\u{1F}\u{7F}", "newline\ncr\rtab\t", "ünïcödé 中文 🚀", "",
    ])
    func decisionsRoundTripThroughFoundationsParser(model: String) throws {
        let decision = Decision(
            decisionID: "00ff00ff00ff00ff", model: model, tier: .strong, policy: "threshold", score: 0.1 + 0.2, threshold: 1e-7,
            candidates: [CandidateInfo(model: model, quality: 0.3, cost: 1e-5), CandidateInfo(model: "weak", quality: 0.7, cost: nil)],
            affinity: "kept", router: "r", generation: 18_446_744_073_709_551_615, elapsedMicroseconds: 12.5, propensity: 0.05, explored: true)
        let line = ResponseCodec.success(decision, id: .string(model))
        #expect(line.last == 0x0A)
        let data = Data(line.dropLast())
        #expect(try ResponseCodec.decode(Decision.self, from: data) == decision)
        let envelope = try JSONDecoder().decode(ResponseCodec.Envelope.self, from: data)
        #expect(envelope.ok)
        #expect(envelope.id == .string(model))
    }

    /// A cost policy's decision has no tier, score or threshold, and the writer leaves them out.
    @Test func costPolicyDecisionsOmitTheBinaryFields() throws {
        let decision = Decision(
            decisionID: "1", model: "b", tier: nil, policy: "lambda", score: nil, threshold: nil, lambda: 2500,
            candidates: ["a", "b", "c"].map { CandidateInfo(model: $0, quality: 0.5, cost: 0.001) }, router: "r", generation: 1,
            elapsedMicroseconds: 3)
        let line = ResponseCodec.success(decision, id: nil)
        let text = String(decoding: line, as: UTF8.self)
        for absent in ["tier", "score", "threshold", "epsilon", "affinity", "propensity", "explored"] { #expect(!text.contains("\"\(absent)\"")) }
        #expect(try ResponseCodec.decode(Decision.self, from: Data(line.dropLast())) == decision)
    }

    @Test func failuresDecodeAsTheirError() throws {
        let line = ResponseCodec.failure(ProtocolError(.unknownRouter, "no \"x\"\n"), id: .int(9))
        #expect(throws: ProtocolError(.unknownRouter, "no \"x\"\n")) {
            try ResponseCodec.decode(Decision.self, from: Data(line.dropLast()))
        }
        #expect(String(decoding: line, as: UTF8.self) == #"{"error":{"code":"unknown_router","message":"no \"x\"\n"},"id":9,"ok":false}"# + "\n")
    }
}
