#if Gateway
    import AsyncHTTPClient
    import Foundation
    import HTTPTypes
    import HTTPServing
    import Logging
    import NIOCore
    import NIOPosix
    import OpenAIProtocol
    import RouterConfig
    import RouterDaemon
    import RouterEngine
    import RouterJSON
    import ServiceLifecycle
    import Synchronization
    import UpstreamFallback

    /// routerd's OpenAI-compatible HTTP front end: the same engine as the socket, reached over HTTP.
    ///
    /// Each chat completion is routed on its last user turn, forwarded to the chosen model's
    /// catalogue endpoint, and answered with that model's response; a failing upstream is retried
    /// and the request falls back along the policy's order (``UpstreamFallback``). The real cost
    /// from `usage` goes to `stats`, the decision log and the router's budget. The listeners are
    /// bound at start; everything else (keys, limits, fallback settings) is read from the serving
    /// generation on each request, so a reload changes it.
    public final class Gateway: Sendable {
        let reloader: Reloader
        let client: HTTPClient
        let coolDowns = CoolDowns()
        let limit = ConcurrencyLimit()
        /// The listeners a reload asked for that a restart has yet to bind, once warned about.
        let unboundListeners = Mutex<String?>(nil)
        /// Whether the Unix socket was moved into place, and so is the gateway's to remove at exit.
        let placedSocket = Mutex(false)
        let logger: Logger
        /// The settings the listeners were bound with.
        let initial: DaemonConfig.Gateway
        /// The fallback's deadline and cool-downs run on it, as the engine's timed logic does on its own.
        let clock: any EngineClock
        let group: any EventLoopGroup
        /// io_bound routers (a network call per decision) decide here, not on the cooperative
        /// threads that run requests: a few such waits would hold them all.
        let ioThreadPool: NIOThreadPool

        var engine: Engine { reloader.engine }

        public init(
            settings: DaemonConfig.Gateway, reloader: Reloader, group: any EventLoopGroup, ioThreadPool: NIOThreadPool, logger: Logger,
            clock: any EngineClock = SystemClock()
        ) {
            self.ioThreadPool = ioThreadPool
            self.initial = settings
            self.reloader = reloader
            self.group = group
            self.logger = logger
            self.clock = clock
            var configuration = HTTPClient.Configuration()
            configuration.timeout = .init(
                connect: .milliseconds(Int64(min(settings.attemptTimeoutSeconds, 10) * 1000)),
                read: .milliseconds(Int64(settings.attemptTimeoutSeconds * 1000)))
            configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: settings.maxConcurrent)
            // A refused connection is a failed attempt at once, for the fallback to handle; the
            // client's own retrying would hold the request until the connect timeout.
            configuration.connectionPool.retryConnectionEstablishment = false
            configuration.redirectConfiguration = .disallow
            configuration.decompression = .disabled
            client = HTTPClient(eventLoopGroup: group, configuration: configuration)
        }

        /// One server per listener, to run in the daemon's service group.
        public func services() throws(SocketPathError) -> [any Service] {
            var services: [any Service] = []
            let fallbackLimit = initial.maxBodyBytes
            let settings = HTTPServer.Settings(
                idleTimeout: .milliseconds(Int64(initial.idleTimeoutSeconds * 1000)), maxConnections: initial.maxConcurrent * 4,
                maxBodyBytes: { [reloader] in reloader.current.generation.config.gateway?.maxBodyBytes ?? fallbackLimit })
            let logger = logger
            if let host = initial.host, let port = initial.port {
                services.append(
                    server(at: .tcp(host: host, port: port), unix: false, settings: settings) { address in
                        logger.notice("gateway listening", metadata: ["address": "\(address.map { "\($0)" } ?? "\(host):\(port)")"])
                    })
            }
            if let path = initial.socketPath {
                try SocketFile.prepare(path)
                // The server binds under the process's umask: in a private folder, so that the
                // socket appears at its path only once it has its mode.
                let staging = try SocketFile.privateStaging(for: path)
                let mode = initial.socketMode
                services.append(
                    server(at: .unix(path: staging), unix: true, settings: settings) { [self] _ in
                        do throws(SocketPathError) {
                            try SocketFile.moveIntoPlace(staging, at: path, mode: mode)
                            placedSocket.withLock { $0 = true }
                            logger.notice("gateway listening", metadata: ["socket": "\(path)", "mode": "\(String(mode, radix: 8))"])
                        } catch {
                            logger.error("gateway socket", metadata: ["path": "\(path)", "error": "\(error)"])
                        }
                    })
            }
            return services
        }

        private func server(
            at address: HTTPServer.Address, unix: Bool, settings: HTTPServer.Settings, listening: @escaping @Sendable (SocketAddress?) async -> Void
        ) -> HTTPServer {
            HTTPServer(
                address: address, settings: settings, group: group, logger: logger,
                acceptHandlers: { [logger] in [AcceptPauseHandler(pause: .milliseconds(100), logger: logger)] }, listening: listening
            ) { [self] request in
                await respond(to: request, unix: unix)
            }
        }

        /// Closes the upstream connections and removes the Unix socket's file; after the listeners
        /// have stopped.
        public func shutdown() async throws {
            if let path = initial.socketPath, placedSocket.withLock({ $0 }) {
                var info = stat()
                if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
            }
            try await client.shutdown()
        }

        // MARK: Requests

        func respond(to request: ServedRequest, unix: Bool) async -> ServedResponse {
            let serving = reloader.current
            guard let settings = serving.generation.config.gateway else {
                return Self.error(
                    OpenAIError(
                        status: 503,
                        message:
                            "the gateway is not configured in \(serving.generation.config.file) any more; add 'gateway:' back, or restart routerd to stop listening",
                        type: "service_unavailable"))
            }
            if !settings.listensAtSameAddresses(as: initial) {
                let listeners = settings.listeners
                let warn = unboundListeners.withLock { last in
                    defer { last = listeners }
                    return last != listeners
                }
                if warn {
                    logger.warning(
                        "gateway listeners changed in the config; they are bound at start, so restart routerd to apply",
                        metadata: ["listening": "\(initial.listeners)", "configured": "\(listeners)"])
                }
            }
            let path = request.path
            // A health check needs no key: load balancers and systemd's probes hold none, and it tells nothing.
            var key: DaemonConfig.Gateway.Key?
            if !settings.keys.isEmpty, path != "/health" {
                let presented = Self.bearer(request.head.headerFields[.authorization])
                key = presented.flatMap { presented in settings.keys.first { Self.same($0.secret, presented) } }
                guard key != nil else {
                    return Self.error(
                        OpenAIError(
                            status: 401, message: "Missing or invalid API key: send 'Authorization: Bearer <key>' with a key from gateway.keys",
                            type: "invalid_request_error", code: "invalid_api_key"))
                }
            }
            let caller: Caller
            if unix {
                let peer = try? await PeerCredentials.read(from: request.channel).get()
                guard let peer, settings.admits(uid: peer.uid, gid: peer.gid) else {
                    let who = peer.map { "uid \($0.uid) (gid \($0.gid))" } ?? "a peer whose credentials could not be read"
                    return Self.error(
                        OpenAIError(
                            status: 403, message: "\(who) is not in gateway.allow of \(serving.generation.config.file)", type: "permission_error"))
                }
                caller = Caller(requester: .uid(peer.uid), uid: peer.uid, gid: peer.gid)
            } else if let name = key?.name {
                // Over TCP there are no credentials: a named key is its holder's principal, for
                // sessions, cached embeddings and naming its decisions in feedback.
                caller = Caller(requester: .key(name), uid: nil, gid: nil)
            } else {
                // Without a named key, every TCP caller is one principal, routerd's own user.
                caller = Caller(requester: .uid(getuid()), uid: nil, gid: nil)
            }
            switch (request.head.method, path) {
            case (.get, "/health"), (.get, "/v1/health"):
                return Self.json(.object(["status": "ok", "generation": .integer(Int64(serving.generation.number))]))
            case (.get, "/v1/models"):
                let generation = serving.generation
                let body = ModelList.body(
                    routers: generation.routerNames, models: Array(generation.config.models.models.keys),
                    created: Int(Date().timeIntervalSince1970))
                return ServedResponse(status: .ok, headers: [.contentType: "application/json"], body: .bytes(ByteBuffer(bytes: body)))
            case (.post, "/v1/chat/completions"), (.post, "/chat/completions"):
                guard let body = request.body else { return Self.error(.bodyTooLarge(limit: settings.maxBodyBytes)) }
                return await chatCompletion(
                    body: body, headers: request.head.headerFields, requester: caller.requester, serving: serving, settings: settings)
            case (.post, "/v1/feedback"):
                guard let body = request.body else { return Self.error(.bodyTooLarge(limit: settings.maxBodyBytes)) }
                return await feedback(body: body, caller: caller, serving: serving)
            default:
                let known = "POST /v1/chat/completions, GET /v1/models, GET /health, POST /v1/feedback"
                return Self.error(
                    OpenAIError(
                        status: 404, message: "No route for \(request.head.method) \(path); the gateway serves \(known)",
                        type: "invalid_request_error"))
            }
        }

        /// `Authorization: Bearer <key>`'s key.
        static func bearer(_ header: String?) -> String? {
            guard let header, header.lowercased().hasPrefix("bearer ") else { return nil }
            return String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        }

        /// Compares keys in time that does not depend on where they differ.
        static func same(_ a: String, _ b: String) -> Bool {
            let (x, y) = (Array(a.utf8), Array(b.utf8))
            var difference = UInt8(x.count == y.count ? 0 : 1)
            for index in 0..<max(x.count, y.count) {
                difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
            }
            return difference == 0
        }

        static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> ServedResponse {
            var writer = JSONWriter()
            writer.value(value)
            var fields = headers
            fields[.contentType] = "application/json"
            return ServedResponse(status: status, headers: fields, body: .bytes(ByteBuffer(bytes: writer.bytes)))
        }

        /// An engine error in OpenAI's shape, for chat completions and feedback alike: what the
        /// request names that does not exist is a 404, what the caller may not do a 403, what it
        /// asks wrongly a 400, and the rest the server's own failure.
        static func openAIError(_ error: EngineError) -> OpenAIError {
            switch error {
            case .unknownRouter, .unknownDecision, .unknownModel:
                return OpenAIError(status: 404, message: "\(error)", type: "invalid_request_error")
            case .reportForbidden:
                return OpenAIError(status: 403, message: "\(error)", type: "invalid_request_error")
            case .invalidSetting, .tooLarge:
                return OpenAIError(status: 400, message: "\(error)", type: "invalid_request_error")
            default:
                return OpenAIError(status: 500, message: "\(error)", type: "server_error")
            }
        }

        static func error(_ error: OpenAIError, headers: HTTPFields = [:]) -> ServedResponse {
            var fields = headers
            fields[.contentType] = "application/json"
            return ServedResponse(status: HTTPResponse.Status(code: error.status), headers: fields, body: .bytes(ByteBuffer(bytes: error.body)))
        }
    }

    /// Who calls the gateway: a Unix-socket peer, by its uid; over TCP a named key's holder, or
    /// else routerd's own user (every holder of an unnamed key is that one principal).
    struct Caller: Sendable {
        /// Whose decisions, sessions and cached embeddings these are.
        var requester: Requester
        /// A Unix-socket peer's credentials, for `feedback.allow`; nil over TCP.
        var uid: UInt32?
        var gid: UInt32?
    }

#endif
