#if Gateway
    import Foundation
    import HTTPServing
    import HTTPTypes
    import Logging
    import NIOCore
    import NIOPosix
    import Synchronization
    import Testing

    /// The gateway's HTTP server in-process on a loopback port, spoken to byte by byte: keep-alive,
    /// the body limit, the idle timeout, the connection limit, streaming and graceful shutdown.
    @Suite struct HTTPServerTests {
        /// A running server and the task that runs it.
        struct Running {
            let port: Int
            let task: Task<Void, any Error>
        }

        static func start(
            idleTimeout: TimeAmount = .seconds(600), maxConnections: Int = 64, maxBodyBytes: Int = 1 << 20,
            responder: @escaping HTTPServer.Responder
        ) async throws -> Running {
            let (ready, continuation) = AsyncStream<Int>.makeStream()
            let server = HTTPServer(
                address: .tcp(host: "127.0.0.1", port: 0),
                settings: .init(idleTimeout: idleTimeout, maxConnections: maxConnections, maxBodyBytes: { maxBodyBytes }),
                group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"), listening: { continuation.yield($0?.port ?? 0) },
                responder: responder)
            let task = Task { try await server.run() }
            var iterator = ready.makeAsyncIterator()
            let port = try #require(await iterator.next())
            return Running(port: port, task: task)
        }

        /// Answers with the method, path and body length.
        static let echo: HTTPServer.Responder = { request in
            let text = "\(request.head.method) \(request.path) \(request.body.map { "\($0.readableBytes)" } ?? "too-large")"
            return ServedResponse(status: request.body == nil ? .contentTooLarge : .ok, body: .bytes(ByteBuffer(string: text)))
        }

        @Test func aKeepAliveConnectionServesRequestsInTurnAndClosesWhenAsked() async throws {
            let server = try await Self.start(responder: Self.echo)
            defer { server.task.cancel() }
            let connection = try await RawConnection.open(port: server.port)
            try await connection.send("GET /one?x=1 HTTP/1.1\r\nhost: x\r\n\r\n")
            #expect(try await connection.response()?.body == "GET /one 0")
            try await connection.send("POST /two HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello")
            #expect(try await connection.response()?.body == "POST /two 5")
            try await connection.send("GET /three HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            let last = try #require(try await connection.response())
            #expect(last.body == "GET /three 0" && last.headers["connection"] == "close")
            #expect(try await connection.closedByPeer())
        }

        /// The responder's task runs on its connection's event loop, before and after a suspension.
        @Test func aRequestIsAnsweredOnItsConnectionsEventLoop() async throws {
            let server = try await Self.start { request in
                let before = request.channel.eventLoop.inEventLoop
                try? await Task.sleep(for: .milliseconds(10))
                let after = request.channel.eventLoop.inEventLoop
                return ServedResponse(status: .ok, body: .bytes(ByteBuffer(string: "\(before) \(after)")))
            }
            defer { server.task.cancel() }
            let connection = try await RawConnection.open(port: server.port)
            try await connection.send("GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            #expect(try await connection.response()?.body == "true true")
        }

        @Test func aMalformedRequestGetsA400AndTheConnectionCloses() async throws {
            let server = try await Self.start(responder: Self.echo)
            defer { server.task.cancel() }
            let connection = try await RawConnection.open(port: server.port)
            try await connection.send("NOT HTTP AT ALL\r\n\r\n")
            #expect(try await connection.response()?.status == 400)
            #expect(try await connection.closedByPeer())
        }

        /// The responder is told the body was too large without it being read, and the connection
        /// closes after its answer.
        @Test func aBodyOverTheLimitIsRefusedAndTheConnectionCloses() async throws {
            let server = try await Self.start(maxBodyBytes: 16, responder: Self.echo)
            defer { server.task.cancel() }
            let connection = try await RawConnection.open(port: server.port)
            try await connection.send("POST /big HTTP/1.1\r\nhost: x\r\ncontent-length: 64\r\n\r\n" + String(repeating: "x", count: 64))
            let answer = try #require(try await connection.response())
            #expect(answer.status == 413 && answer.body == "POST /big too-large" && answer.headers["connection"] == "close")
            #expect(try await connection.closedByPeer())
        }

        @Test func anIdleConnectionIsClosedButOneWaitingForItsAnswerIsNot() async throws {
            let server = try await Self.start(idleTimeout: .milliseconds(200)) { request in
                try? await Task.sleep(for: .milliseconds(800))
                return await Self.echo(request)
            }
            defer { server.task.cancel() }
            // Sent as it connects: on a starved machine a separate send could come later than the
            // 200 ms idle timeout, and the server would rightly close the connection as idle.
            let waiting = try await RawConnection.open(port: server.port, sending: "GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            let idle = try await RawConnection.open(port: server.port)
            #expect(try await idle.closedByPeer(), "nothing read for longer than the idle timeout")
            #expect(try await waiting.response()?.body == "GET /slow 0", "a request in flight is not idle")
        }

        /// At the limit the listener stops accepting: the next client waits in the backlog, and is
        /// served once a connection closes.
        @Test func pastTheConnectionLimitANewClientWaitsUntilOneCloses() async throws {
            let server = try await Self.start(maxConnections: 1, responder: Self.echo)
            defer { server.task.cancel() }
            let first = try await RawConnection.open(port: server.port)
            try await first.send("GET /first HTTP/1.1\r\nhost: x\r\n\r\n")
            #expect(try await first.response()?.body == "GET /first 0")
            let second = try await RawConnection.open(port: server.port)
            try await second.send("GET /second HTTP/1.1\r\nhost: x\r\n\r\n")
            #expect(try await second.response(timeout: 0.5) == nil, "not accepted while the first is open")
            first.close()
            #expect(try await second.response()?.body == "GET /second 0")
        }

        /// A stream's chunks reach the client as they are written; graceful shutdown (here the
        /// server's task cancelled) refuses new connections but lets the stream finish.
        @Test func aStreamIsRelayedAsWrittenAndShutdownLetsItFinish() async throws {
            let written = Mutex(0)
            let server = try await Self.start { _ in
                ServedResponse(
                    status: .ok, headers: [.contentType: "text/event-stream"],
                    body: .stream { writer in
                        for index in 0..<3 {
                            try? await writer.write(ByteBuffer(string: "chunk \(index)\n"))
                            written.withLock { $0 += 1 }
                            try? await Task.sleep(for: .milliseconds(300))
                        }
                    })
            }
            let connection = try await RawConnection.open(port: server.port)
            try await connection.send("GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
            let firstChunk = try #require(try await connection.read(until: "chunk 0\n"))
            #expect(written.withLock { $0 } < 3, "the first chunk arrived before the last was written: \(firstChunk)")
            server.task.cancel()
            try await Task.sleep(for: .milliseconds(100))
            #expect(try await RawConnection.open(port: server.port, expectRefused: true) == nil, "no new connections once shutting down")
            let rest = try #require(try await connection.read(until: "0\r\n\r\n"))
            #expect(rest.contains("chunk 2\n"))
            #expect(try await connection.closedByPeer(), "closed after its answer, since the server is stopping")
            try await server.task.value
        }
    }

    /// A blocking loopback client, on a thread pool of its own so that its reads hold neither a
    /// cooperative thread nor NIO's shared pool, which other suites in this process use.
    final class RawConnection: Sendable {
        static let threads: NIOThreadPool = {
            let pool = NIOThreadPool(numberOfThreads: 8)
            pool.start()
            return pool
        }()

        /// How long a read waits by default: there to end a hung test, not to time one. The
        /// responders run on the cooperative pool, which the suite's slow synchronous tests can
        /// hold for longer than 10 s when another process keeps a core busy (seen: 2 failures).
        static let patience = 120.0

        let fd: Int32
        private let pending = Mutex<[UInt8]>([])

        private init(fd: Int32) { self.fd = fd }

        /// Connects, and writes `first` at once if given; nil when refused and `expectRefused`.
        /// Connecting and writing in one job on the pool leaves no gap in which a busy cooperative
        /// pool could hold the test past a server's idle timeout between the two.
        static func open(port: Int, sending first: String? = nil, expectRefused: Bool = false) async throws -> RawConnection? {
            try await Self.threads.runIfActive {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                let connected = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
                }
                guard connected else {
                    Glibc.close(fd)
                    if expectRefused { return nil }
                    throw POSIXError(.ECONNREFUSED)
                }
                if let first {
                    _ = Array(first.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                }
                return RawConnection(fd: fd)
            }
        }
        static func open(port: Int, sending first: String? = nil) async throws -> RawConnection {
            guard let connection = try await open(port: port, sending: first, expectRefused: false) else { throw POSIXError(.ECONNREFUSED) }
            return connection
        }

        private let open = Mutex(true)

        /// Closes once: a second close could close a descriptor another test has since been given.
        func close() {
            if open.withLock({ open in
                defer { open = false }
                return open
            }) {
                Glibc.close(fd)
            }
        }
        deinit { close() }

        func send(_ text: String) async throws {
            try await Self.threads.runIfActive { [fd] in
                _ = Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            }
        }

        /// Reads until `marker` has arrived (returns all read so far and consumes it), or nil at
        /// end of stream or after `timeout` seconds.
        func read(until marker: String, timeout: Double = RawConnection.patience) async throws -> String? {
            try await Self.threads.runIfActive { [self] in
                var time = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let text = String(decoding: pending.withLock { $0 }, as: UTF8.self)
                    if let range = text.range(of: marker) {
                        let taken = String(text[..<range.upperBound])
                        pending.withLock { $0.removeFirst(taken.utf8.count) }
                        return taken
                    }
                    let count = Glibc.read(fd, &buffer, buffer.count)
                    guard count > 0 else { return nil }
                    pending.withLock { $0 += buffer[..<count] }
                }
            }
        }

        /// One response with a Content-Length body.
        func response(timeout: Double = RawConnection.patience) async throws -> (status: Int, headers: [String: String], body: String)? {
            guard let head = try await read(until: "\r\n\r\n", timeout: timeout) else { return nil }
            var headers: [String: String] = [:]
            let lines = head.split(separator: "\r\n")
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let status = lines.first.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
            let length = Int(headers["content-length"] ?? "0") ?? 0
            let body = try await Self.threads.runIfActive { [self] in
                var buffer = [UInt8](repeating: 0, count: 65536)
                while pending.withLock({ $0.count }) < length {
                    let count = Glibc.read(fd, &buffer, buffer.count)
                    guard count > 0 else { break }
                    pending.withLock { $0 += buffer[..<count] }
                }
                return pending.withLock { pending in
                    defer { pending.removeFirst(min(length, pending.count)) }
                    return String(decoding: pending.prefix(length), as: UTF8.self)
                }
            }
            return (status, headers, body)
        }

        /// Whether the server closes the connection (end of stream) within `timeout` seconds.
        func closedByPeer(timeout: Double = RawConnection.patience) async throws -> Bool {
            try await Self.threads.runIfActive { [fd] in
                var time = timeval(tv_sec: Int(timeout), tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
                var byte: UInt8 = 0
                let count = Glibc.read(fd, &byte, 1)
                // A close with bytes unread by the server arrives as a reset.
                return count == 0 || (count < 0 && errno == ECONNRESET)
            }
        }
    }
#endif
