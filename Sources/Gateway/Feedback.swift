#if Gateway
    import Foundation
    import Hummingbird
    import NIOCore
    import OpenAIProtocol
    import RouterConfig
    import RouterDaemon
    import RouterEngine
    import RouterJSON
    import RouterProtocol

    extension Gateway {
        /// `POST /v1/feedback`: the socket's `feedback` op over HTTP. The body is that request's
        /// members without `op` (`decision_id` or `router` and `prompt`, `model`, `outcome` or
        /// `winner`…), checked the same way; the answer comes once the row is on disk.
        func feedback(body: ByteBuffer, caller: Caller, serving: Serving) async -> Response {
            guard case .object(var members)? = try? JSONValue.parse(body.readableBytesView) else {
                return Self.error(.invalidRequest("The request body must be a JSON object: the socket protocol's feedback request without 'op'"))
            }
            members["op"] = "feedback"
            var writer = JSONWriter()
            writer.value(.object(members))
            let decoded = RequestCodec.decode(Data(writer.bytes))
            let report: FeedbackReport
            switch decoded.outcome {
            case .success(.feedback(let request)): report = FeedbackReport(request)
            case .success: return Self.error(.invalidRequest("not a feedback request"))
            case .failure(let error): return Self.error(.invalidRequest(error.message, code: error.code.rawValue))
            }
            guard let store = serving.feedback else {
                return Self.error(
                    OpenAIError(
                        status: 503,
                        message: "feedback is not configured: add a 'feedback:' section with a 'directory' to \(serving.generation.config.file)",
                        type: "service_unavailable", code: "feedback_unavailable"))
            }
            let generation = serving.generation
            let trusted = caller.gid.map { generation.config.feedback?.trusts(uid: caller.uid, gid: $0) == true } ?? false
            let outcome: Outcome
            do {
                outcome = try engine.outcome(of: report, from: Reporter(uid: caller.uid, trusted: trusted), on: generation)
            } catch {
                let status: Int
                switch error {
                case .unknownDecision, .unknownRouter, .unknownModel: status = 404
                case .reportForbidden: status = 403
                default: status = 400
                }
                return Self.error(OpenAIError(status: status, message: "\(error)", type: "invalid_request_error"))
            }
            let written: Result<Void, FeedbackStoreError> = await withCheckedContinuation { continuation in
                store.append(outcome) { continuation.resume(returning: $0) }
            }
            switch written {
            case .success:
                engine.learn(outcome, on: engine.current)
                let recorded = if case .pairwise = outcome.value { "battles" } else { "quality" }
                var result: [String: JSONValue] = [
                    "router": .string(outcome.router), "model": .string(outcome.model), "recorded": .string(recorded),
                ]
                if let id = outcome.decisionID { result["decision_id"] = .string(id) }
                return Self.json(.object(result))
            case .failure(let error):
                return Self.error(OpenAIError(status: 503, message: error.message, type: "service_unavailable", code: "feedback_unavailable"))
            }
        }
    }
#endif
