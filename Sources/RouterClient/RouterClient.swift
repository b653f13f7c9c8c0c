import Foundation
import NIOCore
import NIOExtras
import NIOFoundationCompat
import NIOPosix
import RouterProtocol

/// What can go wrong talking to routerd, with what to do about it.
public enum RouterClientError: Error, Sendable, CustomStringConvertible {
    /// Nothing accepts connections at the path.
    case notRunning(path: String, reason: String)
    /// routerd answered with an error.
    case server(ProtocolError)
    /// The connection closed before the response arrived.
    case connectionClosed
    /// The response line could not be decoded.
    case badResponse(String)

    public var description: String {
        switch self {
        case .notRunning(let path, let reason):
            return
                "routerd is not running at \(path) (connect: \(reason)); start it with `routerd --config FILE` or `systemctl start routerd`, or pass --socket"
        case .server(let error): return "routerd: \(error.message) [\(error.code.rawValue)]"
        case .connectionClosed: return "routerd closed the connection before answering"
        case .badResponse(let detail): return "routerd sent a response that could not be read: \(detail)"
        }
    }
}

/// One connection to routerd. Requests may be sent concurrently; they are
/// pipelined and each gets its own response.
public final class RouterConnection: Sendable {
    private let channel: any Channel
    public let socketPath: String

    /// The event loop this connection's I/O runs on.
    public var eventLoop: any EventLoop { channel.eventLoop }

    private init(channel: any Channel, socketPath: String) {
        self.channel = channel
        self.socketPath = socketPath
    }

    /// Connects to the daemon's socket.
    public static func connect(
        socketPath: String, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(RouterClientError) -> RouterConnection {
        do {
            return try await connectFuture(socketPath: socketPath, group: group).get()
        } catch let error as RouterClientError {
            throw error
        } catch {
            throw .notRunning(path: socketPath, reason: Self.reason(error))
        }
    }

    /// Connects, for callers that stay on NIO futures (the benchmark).
    public static func connectFuture(socketPath: String, group: any EventLoopGroup) -> EventLoopFuture<RouterConnection> {
        ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(LineBasedFrameDecoder()),
                        RequestResponseHandler<ByteBuffer, ByteBuffer>(initialBufferCapacity: 16),
                    ])
                }
            }
            .connect(unixDomainSocketPath: socketPath)
            .map { RouterConnection(channel: $0, socketPath: socketPath) }
    }

    /// Sends one request line (newline included) and returns the response line.
    public func sendLine(_ line: ByteBuffer) -> EventLoopFuture<ByteBuffer> {
        let response = channel.eventLoop.makePromise(of: ByteBuffer.self)
        // A write to a channel that already closed never reaches the request–response handler,
        // which would leave `response` pending forever: fail it with the write instead.
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { response.fail($0) }
        channel.writeAndFlush((line, response), promise: written)
        return response.futureResult
    }

    /// Sends a request and decodes its result as `Result`.
    public func send<Result: Decodable>(_ request: Request, id: RequestID? = nil, as type: Result.Type) async throws(RouterClientError) -> Result {
        let line = try await rawResponse(request, id: id)
        do {
            return try ResponseCodec.decode(Result.self, from: line)
        } catch let error as ProtocolError {
            throw .server(error)
        } catch {
            throw .badResponse("\(error)")
        }
    }

    /// Sends a request and returns the response line as received (without its newline).
    public func rawResponse(_ request: Request, id: RequestID? = nil) async throws(RouterClientError) -> Data {
        let encoded: Data
        do {
            encoded = try RequestCodec.encode(request, id: id)
        } catch {
            throw .badResponse("could not encode the request: \(error)")
        }
        do {
            let response = try await sendLine(channel.allocator.buffer(bytes: encoded)).get()
            return Data(buffer: response)
        } catch {
            throw .connectionClosed
        }
    }

    public func route(_ request: RouteRequest) async throws(RouterClientError) -> Decision {
        try await send(.route(request), as: Decision.self)
    }

    public func score(router: String, prompts: [String]) async throws(RouterClientError) -> ScoreResult {
        try await send(.score(ScoreRequest(router: router, prompts: prompts)), as: ScoreResult.self)
    }

    /// Reports an outcome; returns once the daemon has the row on disk.
    public func feedback(_ request: FeedbackRequest) async throws(RouterClientError) -> FeedbackResult {
        try await send(.feedback(request), as: FeedbackResult.self)
    }

    public func routers() async throws(RouterClientError) -> RoutersResult {
        try await send(.routers, as: RoutersResult.self)
    }

    public func status() async throws(RouterClientError) -> StatusResult {
        try await send(.status, as: StatusResult.self)
    }

    public func stats() async throws(RouterClientError) -> StatsResult {
        try await send(.stats, as: StatsResult.self)
    }

    /// Reloads the config; with `dryRun`, only validates it.
    public func reload(dryRun: Bool = false) async throws(RouterClientError) -> ReloadResult {
        try await send(.reload(ReloadRequest(dryRun: dryRun)), as: ReloadResult.self)
    }

    /// Changes a router's threshold, or the share of traffic it sends to the strong model, until the next reload.
    public func set(_ request: SetRequest) async throws(RouterClientError) -> SetResult {
        try await send(.set(request), as: SetResult.self)
    }

    public func close() async {
        try? await channel.close()
    }

    /// "No such file or directory" rather than NIO's wrapped error.
    private static func reason(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return reason(first.error)
        }
        return "\(error)"
    }
}
