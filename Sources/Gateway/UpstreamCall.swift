#if Gateway
    import AsyncHTTPClient
    import Foundation
    import NIOCore
    import NIOHTTP1
    import OpenAIProtocol
    import RouterConfig
    import RouterJSON
    import UpstreamFallback

    /// One call to one upstream model, up to the point where the gateway can still fall back:
    /// for a plain request the whole answer, for a stream its head and first chunk.
    enum UpstreamCall {
        /// What one attempt gave.
        enum Result: Sendable {
            /// A chat completion: its body (with `model` set to the catalogue name) and usage.
            case completion(body: [UInt8], usage: Usage?)
            /// A stream whose first chunk has arrived; the rest is still to be read.
            case stream(first: ByteBuffer, rest: StreamRemainder)
            /// The attempt failed; `status` and `body` are the upstream's when it answered.
            case failed(AttemptFailure, message: String, status: Int?, body: [UInt8]?)
        }

        /// The rest of a streamed answer, handed from the attempt to the response body that relays it.
        /// Only one task reads it at a time (the attempt, then the body writer), which is what makes
        /// the iterator, not Sendable itself, safe to hand over.
        final class StreamRemainder: @unchecked Sendable {
            var iterator: HTTPClientResponse.Body.AsyncIterator
            init(_ iterator: HTTPClientResponse.Body.AsyncIterator) { self.iterator = iterator }
            func next() async throws -> ByteBuffer? { try await iterator.next() }
        }

        /// Largest error body read from a failing upstream, for its message.
        static let maxErrorBytes = 64 << 10

        /// Calls `endpoint` with `body`; a plain answer's `model` becomes `served`, the name the
        /// decision gave the model (a router's candidate name, which feedback names it by).
        static func call(
            served: String, endpoint: ModelCatalogue.Endpoint, body: [UInt8], stream: Bool, client: HTTPClient, settings: DaemonConfig.Gateway
        ) async -> Result {
            var base = endpoint.baseURL
            while base.hasSuffix("/") { base.removeLast() }
            var request = HTTPClientRequest(url: base + "/chat/completions")
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.headers.add(name: "accept", value: stream ? "text/event-stream" : "application/json")
            if let variable = endpoint.apiKeyEnvironment, let key = ProcessInfo.processInfo.environment[variable], !key.isEmpty {
                request.headers.add(name: "authorization", value: "Bearer \(key)")
            }
            request.body = .bytes(ByteBuffer(bytes: body))
            // A plain answer must arrive whole within the attempt's time; a stream may run as long
            // as chunks keep coming (the client's read timeout bounds the silence between them).
            let timeout: TimeAmount = stream ? .hours(24) : .milliseconds(Int64(settings.attemptTimeoutSeconds * 1000))
            let response: HTTPClientResponse
            do {
                response = try await client.execute(request, timeout: timeout)
            } catch {
                return failure(error)
            }
            guard (200..<300).contains(response.status.code) else {
                let code = Int(response.status.code)
                let retryAfter = response.headers.first(name: "retry-after").flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
                let errorBody = try? await response.body.collect(upTo: maxErrorBytes)
                let bytes = errorBody.map { Array($0.readableBytesView) }
                return .failed(.status(code, retryAfter: retryAfter), message: Self.message(of: bytes) ?? "HTTP \(code)", status: code, body: bytes)
            }
            if stream {
                var iterator = response.body.makeAsyncIterator()
                do {
                    guard let first = try await iterator.next() else {
                        return .failed(.malformed, message: "the stream ended before its first chunk", status: nil, body: nil)
                    }
                    return .stream(first: first, rest: StreamRemainder(iterator))
                } catch {
                    return failure(error)
                }
            }
            let collected: ByteBuffer
            do {
                collected = try await response.body.collect(upTo: settings.maxResponseBytes)
            } catch let error as NIOTooManyBytesError {
                _ = error
                return .failed(
                    .malformed, message: "the answer is larger than gateway.max_response_bytes (\(settings.maxResponseBytes))", status: nil, body: nil
                )
            } catch {
                return failure(error)
            }
            guard case .object(var members)? = try? JSONValue.parse(collected.readableBytesView), case .array? = members["choices"] else {
                return .failed(.malformed, message: "the answer is not a chat completion (a JSON object with 'choices')", status: nil, body: nil)
            }
            let usage = Usage(of: .object(members))
            members["model"] = .string(served)
            var writer = JSONWriter(capacity: collected.readableBytes + 64)
            writer.value(.object(members))
            return .completion(body: writer.bytes, usage: usage)
        }

        /// A client error as an attempt's failure: a timeout, or no connection.
        static func failure(_ error: any Error) -> Result {
            let (failure, message) = classify(error)
            return .failed(failure, message: message, status: nil, body: nil)
        }

        /// What a client error was: a timeout, or no connection; and its description.
        static func classify(_ error: any Error) -> (AttemptFailure, String) {
            if let error = error as? HTTPClientError {
                switch error {
                case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout: return (.timeout, "\(error)")
                default: break
                }
            }
            return (.connection, "\(error)")
        }

        /// An OpenAI-style error body's message.
        static func message(of body: [UInt8]?) -> String? {
            guard let body, case .object(let members)? = try? JSONValue.parse(body) else { return nil }
            if case .object(let error)? = members["error"], case .string(let message)? = error["message"] { return message }
            if case .string(let message)? = members["error"] { return message }
            return nil
        }
    }
#endif
