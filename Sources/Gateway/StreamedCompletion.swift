#if Gateway
    import HTTPServing
    import HTTPTypes
    import NIOCore
    import OpenAIProtocol
    import RouterConfig
    import RouterEngine
    import RouterJSON
    import UpstreamFallback

    extension Gateway {
        /// A streamed answer, committed: its first chunk has arrived, so the client gets the head
        /// and then each chunk as it comes (``StreamRelay`` renames `model` and holds at most a
        /// line). Nothing falls back from here: an upstream failure ends the stream with an SSE
        /// error event. A client that goes away ends the relay, which drops the upstream call.
        /// The request's concurrency slot is held until the stream ends.
        func streamResponse(
            _ started: CompletionRun, served: String, prices model: ModelCatalogue.Model, first: ByteBuffer, rest: UpstreamCall.StreamRemainder,
            includeUsage: Bool
        ) -> ServedResponse {
            let headers = responseHeaders(started, served: served, contentType: "text/event-stream")
            let slot = HeldSlot(limit)
            let body = ServedResponse.Body.stream { [self] writer in
                var run = started
                var relay = StreamRelay(model: served, keepUsageChunk: includeUsage)
                var firstByte: Double?
                var upstreamFailure: String?
                var clientGone = false
                defer { slot.release() }
                func send(_ bytes: [UInt8]) async -> Bool {
                    guard !bytes.isEmpty else { return true }
                    do {
                        try await writer.write(ByteBuffer(bytes: bytes))
                    } catch {
                        clientGone = true
                        return false
                    }
                    if firstByte == nil { firstByte = clock.seconds - run.start }
                    return true
                }
                if await send(relay.relay(first.readableBytesView)) {
                    while true {
                        let chunk: ByteBuffer?
                        do {
                            chunk = try await rest.next()
                        } catch {
                            let (failure, message) = UpstreamCall.classify(error)
                            upstreamFailure = "\(failure): \(message)"
                            break
                        }
                        guard let chunk else { break }
                        guard await send(relay.relay(chunk.readableBytesView)) else { break }
                    }
                }
                if !clientGone, upstreamFailure == nil { _ = await send(relay.flush()) }
                if let upstreamFailure, !clientGone {
                    // The client has had bytes: nothing can be taken back, so say what happened in-band.
                    let error = OpenAIError(
                        status: 502, message: "the upstream \(served) failed mid-stream: \(upstreamFailure)", type: "upstream_error",
                        code: AttemptFailure.midStream.errorClass)
                    var event: [UInt8] = Array("data: ".utf8)
                    event += error.body
                    event += Array("\n\n".utf8)
                    _ = await send(event)
                }
                if upstreamFailure != nil {
                    run.attempts[run.attempts.count - 1].failure = AttemptFailure.midStream.errorClass
                    engine.stats.recordUpstreamError(router: run.router, model: served, failure: AttemptFailure.midStream.errorClass)
                    recordFailedOutcome(run, model: served)
                }
                let cost = relay.usage.map { $0.cost(inputPrice: model.inputPrice, outputPrice: model.outputPrice) }
                run.spent += cost ?? 0
                let status = upstreamFailure != nil ? 502 : (clientGone ? 499 : 200)
                record(run, served: served, usage: relay.usage, cost: cost, firstByte: firstByte, total: clock.seconds - run.start, status: status)
            }
            return ServedResponse(status: .ok, headers: headers, body: body)
        }
    }
#endif
