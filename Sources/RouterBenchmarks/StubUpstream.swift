#if Gateway
    import Foundation
    import HTTPServing
    import HTTPTypes
    import Logging
    import NIOCore
    import NIOPosix
    import Synchronization

    /// A local OpenAI-compatible upstream whose models misbehave on demand: the gateway's tests,
    /// soak and benchmark call it.
    ///
    /// Each model is served under its own path, `http://127.0.0.1:<port>/<name>/v1`, and answers as
    /// its behaviour says: a completion (or a stream) with fixed usage, a 500, a 429 with
    /// `retry-after`, silence, a stream cut after its first chunk, malformed JSON, a huge body, or
    /// a slow stream. Calls are counted per model. A healthy plain answer is a fixed completion
    /// written without parsing the request, so that the stub is as fast as an upstream can be.
    public final class StubUpstream: Sendable {
        public enum Behaviour: Sendable {
            case healthy
            case serverError
            case rateLimited(retryAfter: Int)
            case hang
            case dropMidStream
            case malformed
            case huge
            /// A 400 with an OpenAI-style error: the request's own fault, which no retry fixes.
            case rejected
            /// Streams `chunks` chunks `interval` apart (and a plain answer after as long).
            case slow(chunks: Int, interval: Duration)
        }

        /// The usage every answer reports.
        public static let promptTokens = 10
        public static let completionTokens = 5

        /// What the server's handler and the test share.
        private final class Shared: Sendable {
            let behaviours = Mutex<[String: Behaviour]>([:])
            let calls = Mutex<[String: Int]>([:])
            let abandoned = Mutex(0)
        }
        private let shared: Shared
        public let port: Int
        private let task: Task<Void, any Error>

        public func set(_ name: String, _ behaviour: Behaviour) { shared.behaviours.withLock { $0[name] = behaviour } }
        public func callCount(_ name: String) -> Int { shared.calls.withLock { $0[name, default: 0] } }
        /// Streams whose reader went away before their end: the caller closed the connection.
        public var abandonedStreams: Int { shared.abandoned.withLock { $0 } }
        public func baseURL(_ name: String) -> String { "http://127.0.0.1:\(port)/\(name)/v1" }

        /// Listens on `port` (0: any free port) on loopback.
        public init(port requested: Int = 0) async throws {
            let shared = Shared()
            self.shared = shared
            let responder: HTTPServer.Responder = { request in
                let parts = request.path.split(separator: "/")
                guard parts.count == 4, parts[1] == "v1", parts[2] == "chat", parts[3] == "completions", let body = request.body else {
                    return ServedResponse(status: .notFound)
                }
                let name = String(parts[0])
                shared.calls.withLock { $0[name, default: 0] += 1 }
                let stream = body.readableBytesView.firstRange(of: Array(#""stream":true"#.utf8)) != nil
                // The model the request named, as a real upstream would echo it.
                let upstreamModel = Self.model(in: body) ?? name
                switch shared.behaviours.withLock({ $0[name] ?? .healthy }) {
                case .healthy:
                    return stream ? Self.stream(model: upstreamModel, cutAfterFirst: false) : Self.completion(model: upstreamModel)
                case .slow(let chunks, let interval):
                    guard stream else {
                        try? await Task.sleep(for: interval * chunks)
                        return Self.completion(model: upstreamModel)
                    }
                    return Self.stream(
                        model: upstreamModel, cutAfterFirst: false, words: Array(repeating: "tok ", count: chunks), interval: interval,
                        abandoned: { shared.abandoned.withLock { $0 += 1 } })
                case .serverError:
                    return Self.json(#"{"error":{"message":"the model is overloaded","type":"server_error"}}"#, status: .internalServerError)
                case .rateLimited(let seconds):
                    var response = Self.json(#"{"error":{"message":"rate limit reached","type":"rate_limit_error"}}"#, status: .tooManyRequests)
                    response.headers[HTTPField.Name("retry-after")!] = "\(seconds)"
                    return response
                case .hang:
                    try? await Task.sleep(for: .seconds(30))
                    return Self.completion(model: upstreamModel)
                case .dropMidStream:
                    return Self.stream(model: upstreamModel, cutAfterFirst: true)
                case .rejected:
                    return Self.json(
                        #"{"error":{"message":"This model's maximum context length is 8 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
                        status: .badRequest)
                case .malformed:
                    return Self.json(#"{"choices": [oops"#, status: .ok)
                case .huge:
                    return Self.json(#"{"choices":[{"message":{"content":""# + String(repeating: "x", count: 3 << 20) + #""}}]}"#, status: .ok)
                }
            }
            let (ready, readyContinuation) = AsyncStream<Int>.makeStream()
            // Stopping it by cancelling its task is how each test ends: not worth an error line.
            var logger = Logger(label: "fault-upstream")
            logger.logLevel = .critical
            let server = HTTPServer(
                address: .tcp(host: "127.0.0.1", port: requested),
                settings: .init(idleTimeout: .seconds(300), maxConnections: 4096, maxBodyBytes: { 1 << 20 }),
                group: MultiThreadedEventLoopGroup.singleton, logger: logger, listening: { readyContinuation.yield($0?.port ?? 0) },
                responder: responder)
            task = Task { try await server.run() }
            var iterator = ready.makeAsyncIterator()
            port = await iterator.next() ?? 0
        }

        public func stop() { task.cancel() }

        /// The `"model":"…"` member's value, found without parsing the whole body.
        static func model(in body: ByteBuffer) -> String? {
            let bytes = body.readableBytesView
            guard let key = bytes.firstRange(of: Array(#""model":""#.utf8)) else { return nil }
            let rest = bytes[key.upperBound...]
            guard let end = rest.firstIndex(of: UInt8(ascii: "\"")) else { return nil }
            return String(decoding: rest[..<end], as: UTF8.self)
        }

        static func json(_ text: String, status: HTTPResponse.Status) -> ServedResponse {
            ServedResponse(status: status, headers: [.contentType: "application/json"], body: .bytes(ByteBuffer(string: text)))
        }

        static func completion(model: String) -> ServedResponse {
            json(
                """
                {"id":"cmpl-1","object":"chat.completion","created":1,"model":"\(model)","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from \(model)"},"finish_reason":"stop"}],"usage":{"prompt_tokens":\(promptTokens),"completion_tokens":\(completionTokens),"total_tokens":\(promptTokens + completionTokens)}}
                """, status: .ok)
        }

        /// Content chunks, a usage-only chunk and [DONE]; or the first chunk, then the connection drops.
        static func stream(
            model: String, cutAfterFirst: Bool, words: [String] = ["Hel", "lo", "!"], interval: Duration = .milliseconds(5),
            abandoned: @escaping @Sendable () -> Void = {}
        ) -> ServedResponse {
            let body = ServedResponse.Body.stream { writer in
                for (index, word) in words.enumerated() {
                    do {
                        try await writer.write(
                            ByteBuffer(
                                string:
                                    #"data: {"id":"c","object":"chat.completion.chunk","model":"\#(model)","choices":[{"index":0,"delta":{"content":"\#(word)"}}]}"#
                                    + "\n\n"))
                    } catch {
                        abandoned()
                        return
                    }
                    if cutAfterFirst, index == 0 {
                        try? await Task.sleep(for: .milliseconds(50))
                        await writer.abandon()
                        return
                    }
                    try? await Task.sleep(for: interval)
                }
                try? await writer.write(
                    ByteBuffer(
                        string:
                            #"data: {"id":"c","object":"chat.completion.chunk","model":"\#(model)","choices":[],"usage":{"prompt_tokens":\#(promptTokens),"completion_tokens":\#(completionTokens)}}"#
                            + "\n\ndata: [DONE]\n\n"))
            }
            return ServedResponse(status: .ok, headers: [.contentType: "text/event-stream"], body: body)
        }
    }
#endif
