#if Gateway
    import HTTPTypes
    import Logging
    import NIOCore
    import NIOExtras
    import NIOHTTP1
    import NIOHTTPTypes
    import NIOHTTPTypesHTTP1
    import NIOPosix
    import ServiceLifecycle
    import Synchronization

    /// An HTTP/1.1 server on SwiftNIO's own HTTP codec: one responder, called once per request
    /// with its head and whole body, and answering with bytes or a stream.
    ///
    /// It is the gateway's listener and the stub upstream's. SwiftNIO parses and encodes HTTP
    /// (`NIOHTTP1`, with pipelining assistance and its protocol-error handler) and converts to
    /// swift-http-types (`NIOHTTPTypesHTTP1`); this type adds what a server built on them must:
    /// the body limit, keep-alive, the idle timeout, the connection limit and graceful shutdown
    /// (``ServerQuiescingHelper``). A request is answered by a task of its own that runs on its
    /// connection's event loop (``EventLoopTaskExecutor``), so that a responder calling
    /// AsyncHTTPClient from there is read, answered and forwarded on one thread.
    ///
    /// Why not Hummingbird, which the gateway used first: on the same machine this server, with
    /// the task on the loop, answered through the gateway about 0.35 ms sooner at p50 and carried
    /// more (docs/RESULTS.md, "The gateway"), and routing needs none of its router or middleware.
    public final class HTTPServer: Service, Sendable {
        public enum Address: Sendable, CustomStringConvertible {
            case tcp(host: String, port: Int)
            case unix(path: String)

            public var description: String {
                switch self {
                case .tcp(let host, let port): "\(host):\(port)"
                case .unix(let path): path
                }
            }
        }

        public struct Settings: Sendable {
            /// A connection with no request in flight and nothing read for this long is closed.
            public var idleTimeout: TimeAmount
            /// Connections open at once; past it, accepting pauses (new clients wait in the backlog).
            public var maxConnections: Int
            /// The largest request body read, asked at each request's head (it may change on reload);
            /// a larger one is answered by the responder with `body` nil, and the connection closed.
            public var maxBodyBytes: @Sendable () -> Int

            public init(idleTimeout: TimeAmount, maxConnections: Int, maxBodyBytes: @escaping @Sendable () -> Int) {
                self.idleTimeout = idleTimeout
                self.maxConnections = maxConnections
                self.maxBodyBytes = maxBodyBytes
            }
        }

        /// Runs on the request's connection's event loop: it may await anything, but must not block
        /// (blocking work goes to a thread pool), or every connection of that loop waits.
        public typealias Responder = @Sendable (ServedRequest) async -> ServedResponse

        let address: Address
        let settings: Settings
        let group: any EventLoopGroup
        let logger: Logger
        let responder: Responder
        let acceptHandlers: @Sendable () -> [any ChannelHandler]
        let listening: @Sendable (SocketAddress?) async -> Void

        /// - Parameters:
        ///   - acceptHandlers: handlers for the listening channel, ahead of the connection limit
        ///     (routerd's pause on EMFILE); made anew for each bind, on its event loop.
        ///   - listening: called once bound, with the address (a port asked as 0 is known here).
        public init(
            address: Address, settings: Settings, group: any EventLoopGroup, logger: Logger,
            acceptHandlers: @escaping @Sendable () -> [any ChannelHandler] = { [] },
            listening: @escaping @Sendable (SocketAddress?) async -> Void = { _ in }, responder: @escaping Responder
        ) {
            self.address = address
            self.settings = settings
            self.group = group
            self.logger = logger
            self.acceptHandlers = acceptHandlers
            self.listening = listening
            self.responder = responder
        }

        /// Serves until graceful shutdown or cancellation: then accepts no more, lets each
        /// connection finish the request in flight, and returns once all are closed.
        public func run() async throws {
            let quiesce = ServerQuiescingHelper(group: group)
            let settings = settings
            let responder = responder
            let acceptHandlers = acceptHandlers
            let bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let operations = channel.pipeline.syncOperations
                        try operations.addHandlers(acceptHandlers())
                        try operations.addHandler(ConnectionLimitHandler(limit: settings.maxConnections))
                        try operations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                    }
                }
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let operations = channel.pipeline.syncOperations
                        try operations.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                        try operations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try operations.addHandler(IdleStateHandler(readTimeout: settings.idleTimeout))
                        try operations.addHandler(HTTPConnectionHandler(settings: settings, responder: responder))
                    }
                }
            let channel: any Channel
            switch address {
            case .tcp(let host, let port): channel = try await bootstrap.bind(host: host, port: port).get()
            case .unix(let path): channel = try await bootstrap.bind(unixDomainSocketPath: path).get()
            }
            await listening(channel.localAddress)
            let drained = group.next().makePromise(of: Void.self)
            let started = Mutex(false)
            let shutdown = { @Sendable in
                let first = started.withLock { started in
                    defer { started = true }
                    return !started
                }
                guard first else { return }
                quiesce.initiateShutdown(promise: drained)
            }
            await withGracefulShutdownHandler {
                await withTaskCancellationHandler {
                    try? await channel.closeFuture.get()
                } onCancel: {
                    shutdown()
                }
            } onGracefulShutdown: {
                shutdown()
            }
            shutdown()
            try await drained.futureResult.get()
        }
    }

    /// A request as the responder gets it: its head, its whole body, and its connection (for a
    /// Unix socket's peer credentials).
    public struct ServedRequest: Sendable {
        public var head: HTTPRequest
        /// Nil when the body was larger than ``HTTPServer/Settings/maxBodyBytes``; the answer
        /// closes the connection, whose remaining body is not read.
        public var body: ByteBuffer?
        public var channel: any Channel
        /// The path without its query.
        public var path: Substring {
            let whole = head.path ?? "/"
            return whole.firstIndex(of: "?").map { whole[..<$0] } ?? whole[...]
        }
    }

    /// An answer: bytes (sent with their length), or a stream written as it is produced (chunked).
    public struct ServedResponse: Sendable {
        public enum Body: Sendable {
            case bytes(ByteBuffer)
            /// Called once the head is sent; the body ends when it returns.
            case stream(@Sendable (ResponseBodyWriter) async -> Void)
        }
        public var status: HTTPResponse.Status
        public var headers: HTTPFields
        public var body: Body

        public init(status: HTTPResponse.Status, headers: HTTPFields = [:], body: Body = .bytes(ByteBuffer())) {
            self.status = status
            self.headers = headers
            self.body = body
        }
    }

    /// Writes a streamed answer's body. Each write waits until the connection has taken it, so a
    /// slow reader slows the writer (back-pressure), and throws once the client is gone.
    public struct ResponseBodyWriter: Sendable {
        let channel: any Channel

        public func write(_ bytes: ByteBuffer) async throws {
            try await channel.writeAndFlush(HTTPResponsePart.body(bytes))
        }

        /// Closes the connection without ending the body: the client sees a cut stream.
        public func abandon() async {
            try? await channel.close()
        }
    }

    /// Reads one request at a time (NIO's pipelining assistance holds the next until the answer
    /// has ended), collects its body up to the limit, and starts the responder's task.
    final class HTTPConnectionHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPRequestPart
        typealias OutboundOut = HTTPResponsePart

        private let settings: HTTPServer.Settings
        private let responder: HTTPServer.Responder
        private var head: HTTPRequest?
        private var body: ByteBuffer?
        private var limit = 0
        /// A request has been read whole and its answer has not ended.
        private var responding = false

        init(settings: HTTPServer.Settings, responder: @escaping HTTPServer.Responder) {
            self.settings = settings
            self.responder = responder
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let request):
                head = request
                limit = settings.maxBodyBytes()
                body = context.channel.allocator.buffer(capacity: 0)
            case .body(var chunk):
                guard body != nil else { return }
                if body!.readableBytes + chunk.readableBytes > limit {
                    body = nil
                    // Answer now rather than read what will be refused; the connection closes after.
                    dispatch(context: context)
                } else {
                    body!.writeBuffer(&chunk)
                }
            case .end:
                // An over-limit request was answered at its body already.
                guard head != nil else { return }
                dispatch(context: context)
            }
        }

        private func dispatch(context: ChannelHandlerContext) {
            guard let head else { return }
            self.head = nil
            let request = ServedRequest(head: head, body: body, channel: context.channel)
            body = nil
            let keepAlive = request.body != nil && !(head.headerFields[.connection]?.lowercased().contains("close") ?? false)
            // An answer to HEAD has its length but not its body.
            let sendsBody = head.method != .head
            responding = true
            let responder = responder
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            Task(executorPreference: EventLoopTaskExecutor.of(loop)) {
                let response = await responder(request)
                var headers = response.headers
                if !keepAlive { headers[.connection] = "close" }
                switch response.body {
                case .bytes(let bytes):
                    headers[.contentLength] = "\(bytes.readableBytes)"
                    let head = HTTPResponse(status: response.status, headerFields: headers)
                    runOnLoop(loop) {
                        let (handler, context) = bound.value
                        context.write(handler.wrapOutboundOut(.head(head)), promise: nil)
                        if sendsBody, bytes.readableBytes > 0 { context.write(handler.wrapOutboundOut(.body(bytes)), promise: nil) }
                        handler.end(context: context, keepAlive: keepAlive)
                    }
                case .stream(let produce):
                    let head = HTTPResponse(status: response.status, headerFields: headers)
                    let channel = request.channel
                    guard (try? await channel.writeAndFlush(HTTPResponsePart.head(head))) != nil else { return }
                    await produce(ResponseBodyWriter(channel: channel))
                    runOnLoop(loop) {
                        let (handler, context) = bound.value
                        handler.end(context: context, keepAlive: keepAlive)
                    }
                }
            }
        }

        private func end(context: ChannelHandlerContext, keepAlive: Bool) {
            guard context.channel.isActive else { return }
            responding = false
            guard !keepAlive else {
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                return
            }
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
                // A request waiting on its upstream reads nothing and is not idle.
                if !responding { context.close(promise: nil) }
                return
            }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // The protocol-error handler ahead has answered a malformed request with a 400.
            context.close(promise: nil)
        }
    }

    /// Runs `work` on `loop`: at once when already there, as a request's task normally is (it runs
    /// on its connection's loop), else enqueued.
    private func runOnLoop(_ loop: any EventLoop, _ work: @escaping @Sendable () -> Void) {
        if loop.inEventLoop { work() } else { loop.execute(work) }
    }

    /// At most `limit` connections open: at the limit, the listener stops accepting (its
    /// `autoRead` off) until one closes; clients past it wait in the kernel's backlog.
    final class ConnectionLimitHandler: ChannelInboundHandler {
        typealias InboundIn = any Channel
        typealias InboundOut = any Channel

        private let limit: Int
        private var open = 0

        init(limit: Int) { self.limit = max(1, limit) }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let child = unwrapInboundIn(data)
            open += 1
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let loop = context.eventLoop
            child.closeFuture.whenComplete { _ in
                loop.execute {
                    let (handler, context) = bound.value
                    handler.open -= 1
                    if handler.open == handler.limit - 1 { try? context.channel.syncOptions?.setOption(.autoRead, value: true) }
                }
            }
            if open >= limit { try? context.channel.syncOptions?.setOption(.autoRead, value: false) }
            context.fireChannelRead(data)
        }
    }

    /// Runs a task's jobs on one event loop: a request's task then reads, routes, calls its
    /// upstream (AsyncHTTPClient prefers the loop it is called from) and answers on its
    /// connection's thread, without waking another.
    final class EventLoopTaskExecutor: TaskExecutor {
        let loop: any EventLoop
        private init(_ loop: any EventLoop) { self.loop = loop }

        private static let executors = Mutex<[ObjectIdentifier: EventLoopTaskExecutor]>([:])
        static func of(_ loop: any EventLoop) -> EventLoopTaskExecutor {
            executors.withLock { executors in
                if let executor = executors[ObjectIdentifier(loop)] { return executor }
                let executor = EventLoopTaskExecutor(loop)
                executors[ObjectIdentifier(loop)] = executor
                return executor
            }
        }

        func enqueue(_ job: consuming ExecutorJob) {
            let job = UnownedJob(job)
            loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
        }
    }
#endif
