#if Gateway
    import Foundation
    import HTTPServing
    import HTTPTypes
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
        func feedback(body: ByteBuffer, caller: Caller, serving: Serving) async -> ServedResponse {
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
            var trusted = false
            if let uid = caller.uid, let gid = caller.gid { trusted = generation.config.feedback?.trusts(uid: uid, gid: gid) == true }
            let outcome: Outcome
            do {
                outcome = try engine.outcome(of: report, from: Reporter(caller.requester, trusted: trusted), on: generation)
            } catch {
                return Self.error(Self.openAIError(error))
            }
            let written: Result<Void, FeedbackStoreError> = await withCheckedContinuation { continuation in
                store.record(outcome, learningIn: engine) { continuation.resume(returning: $0) }
            }
            switch written {
            case .success:
                let encoder = JSONEncoder()
                encoder.outputFormatting = .sortedKeys
                let body = (try? encoder.encode(FeedbackResult(outcome))) ?? Data()
                return ServedResponse(status: .ok, headers: [.contentType: "application/json"], body: .bytes(ByteBuffer(bytes: body)))
            case .failure(let error):
                return Self.error(OpenAIError(status: 503, message: error.message, type: "service_unavailable", code: "feedback_unavailable"))
            }
        }
    }
#endif
