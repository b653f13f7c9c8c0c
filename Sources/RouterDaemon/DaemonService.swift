import Foundation
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import RouterConfig
import RouterEngine
import RouterProtocol
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Serves the engine on a Unix domain socket until graceful shutdown.
///
/// On shutdown it stops accepting, lets every connection finish the requests
/// it has in flight, and removes the socket file if it created it.
public final class DaemonService: Service, Sendable {
    /// Answers every request line, and the `stats` a metrics scrape reports.
    let dispatcher: Dispatcher
    private var engine: Engine { dispatcher.engine }
    private var counters: ServerCounters { dispatcher.counters }
    private var socketPath: String { dispatcher.socketPath }
    private let group: any EventLoopGroup
    private let logger: Logger
    /// Connections open, in all and per peer uid.
    private let openConnections = Mutex((total: 0, byUID: [UInt32: Int]()))

    /// - Parameters:
    ///   - socketPath: where to listen when systemd passes no socket.
    ///   - threadPool: runs CPU work (`embed`); about one thread per core.
    ///   - ioThreadPool: runs io_bound plugins, which wait on the network; many threads, mostly idle.
    ///   - adminThreadPool: runs `reload`, `set` and `learn reset`, so a flood of client work
    ///     cannot delay an operator; one thread is enough, since reloads take turns anyway.
    public init(
        reloader: Reloader, counters: ServerCounters, socketPath: String, group: any EventLoopGroup, threadPool: NIOThreadPool,
        ioThreadPool: NIOThreadPool, adminThreadPool: NIOThreadPool, logger: Logger
    ) {
        dispatcher = Dispatcher(
            engine: reloader.engine, reloader: reloader, counters: counters, socketPath: socketPath, threadPool: threadPool,
            ioThreadPool: ioThreadPool, adminThreadPool: adminThreadPool)
        self.group = group
        self.logger = logger
    }

    public func run() async throws {
        let dispatcher = self.dispatcher
        let quiesce = ServerQuiescingHelper(group: group)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            // A client may send its requests, shut down its sending side and still read every reply.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .serverChannelInitializer { [logger] channel in
                channel.eventLoop.makeCompletedFuture {
                    // Out of descriptors, accept fails while the connection stays queued: pause
                    // accepting instead of retrying at full speed.
                    try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler(pause: .milliseconds(100), logger: logger))
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelInitializer { [self] channel in
                self.initialize(channel, dispatcher: dispatcher)
            }

        let serverChannel: any Channel
        let ownsSocketFile: Bool
        if let fd = Systemd.takeListenSocket() {
            serverChannel = try await bootstrap.withBoundSocket(fd).get()
            ownsSocketFile = false
            logger.notice("listening on the socket systemd passed", metadata: ["fd": "\(fd)"])
        } else {
            try SocketFile.prepare(socketPath)
            // Listen on a staging name in the same folder, give it its mode, owner and group, then
            // rename it into place: a client that finds the socket at its path finds it finished.
            // (Binding at the path itself left a moment, seen under ThreadSanitizer's slowness,
            // when the socket accepted connections before its owner and mode were set.) The
            // restrictive umask keeps even the staging socket closed to others meanwhile.
            let staging = SocketFile.stagingPath(for: socketPath)
            try SocketFile.prepare(staging)
            let previousMask = umask(0o177)
            do {
                serverChannel = try await bootstrap.bind(unixDomainSocketPath: staging).get()
                umask(previousMask)
            } catch {
                umask(previousMask)
                throw SocketPathError(description: "cannot listen on \(socketPath): \(error)")
            }
            let config = engine.current.config.socket
            do throws(SocketPathError) {
                try SocketFile.applyPermissions(staging, mode: config.mode, owner: config.owner, group: config.group)
                guard rename(staging, socketPath) == 0 else {
                    throw SocketPathError(description: "cannot move the socket into place at \(socketPath): \(String(cString: strerror(errno)))")
                }
            } catch {
                unlink(staging)
                try? await serverChannel.close()
                throw error
            }
            ownsSocketFile = true
            logger.notice("listening", metadata: ["socket": "\(socketPath)", "mode": "\(String(config.mode, radix: 8))"])
        }
        defer {
            if ownsSocketFile { unlink(socketPath) }
        }

        Systemd.notify("READY=1\nSTATUS=serving generation \(engine.current.number)\nMAINPID=\(getpid())")
        let drained = group.next().makePromise(of: Void.self)
        let shutdownStarted = FirstCall()
        let startShutdown = { @Sendable in
            guard shutdownStarted.claim() else { return }
            Systemd.notify("STOPPING=1")
            quiesce.initiateShutdown(promise: drained)
        }
        try await withGracefulShutdownHandler {
            // The group cancels its services when one of them fails: end then too, rather than
            // wait on a listener nobody closes (a daemon that then ignored every signal).
            try await withTaskCancellationHandler {
                try await serverChannel.closeFuture.get()
            } onCancel: { [logger] in
                logger.notice("shutting down: the service group was cancelled")
                startShutdown()
            }
        } onGracefulShutdown: { [logger] in
            logger.notice("shutting down: no new connections; finishing requests in flight")
            startShutdown()
        }
        startShutdown()
        try await drained.futureResult.get()
        logger.notice("stopped")
    }

    private func initialize(_ channel: any Channel, dispatcher: Dispatcher) -> EventLoopFuture<Void> {
        let limits = engine.current.config.limits
        // Credentials first: the per-user cap needs the peer's uid.
        return PeerCredentials.read(from: channel).map { Optional(Peer(pid: $0.pid, uid: $0.uid, gid: $0.gid)) }
            .recover { _ -> Peer? in nil }
            .flatMapThrowing { [self] peer in
                // A peer whose uid cannot be read counts as one user of its own kind.
                let uid = peer?.uid ?? UInt32.max
                let refusal: String? = openConnections.withLock { open in
                    guard open.total < limits.maxConnections else {
                        return "too many connections (limits.max_connections = \(limits.maxConnections)); try again later"
                    }
                    guard open.byUID[uid, default: 0] < limits.maxConnectionsPerUID else {
                        return
                            "too many connections from uid \(uid) (limits.max_connections_per_uid = \(limits.maxConnectionsPerUID)); close some, or try again later"
                    }
                    open.total += 1
                    open.byUID[uid, default: 0] += 1
                    return nil
                }
                if let refusal {
                    counters.connectionRejected()
                    let line = dispatcher.failure(ProtocolError(.overloaded, refusal), allocator: channel.allocator)
                    try channel.pipeline.syncOperations.addHandler(RejectHandler(line: line))
                    return
                }
                counters.connectionOpened()
                channel.closeFuture.whenComplete { [self] _ in
                    openConnections.withLock { open in
                        open.total -= 1
                        open.byUID[uid, default: 1] -= 1
                        if open.byUID[uid] == 0 { open.byUID[uid] = nil }
                    }
                    counters.connectionClosed()
                }
                try channel.pipeline.syncOperations.addHandlers([
                    ByteToMessageHandler(LineFrameDecoder(maxLength: limits.maxLineBytes)),
                    IdleStateHandler(readTimeout: .nanoseconds(Int64(limits.idleTimeoutSeconds * 1e9))),
                    ConnectionHandler(
                        dispatcher: dispatcher, logger: self.logger, peer: peer, maxInFlight: limits.maxInFlightPerConnection,
                        maxLineBytes: limits.maxLineBytes),
                ])
            }
    }
}

/// Tells a connection over the limit why it is refused, then closes it.
private final class RejectHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let line: ByteBuffer

    init(line: ByteBuffer) { self.line = line }

    func channelActive(context: ChannelHandlerContext) {
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(line)).whenComplete { _ in bound.value.close(promise: nil) }
    }
}

/// Reloads the configuration on SIGHUP; reopens the decision log on SIGUSR1.
public struct ReloadOnSignalService: Service {
    let reloader: Reloader
    let threadPool: NIOThreadPool

    public init(reloader: Reloader, threadPool: NIOThreadPool) {
        self.reloader = reloader
        self.threadPool = threadPool
    }

    public func run() async throws {
        for await signal in await UnixSignalsSequence(trapping: .sighup, .sigusr1).cancelOnGracefulShutdown() {
            if signal == .sigusr1 {
                // logrotate moved the decision log away: start a new file at its path.
                reloader.current.decisionLog?.reopen()
            } else {
                await reloader.reload(trigger: "SIGHUP", on: threadPool)
            }
        }
    }
}
