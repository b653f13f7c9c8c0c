import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import RouterDaemon
import ServiceLifecycle

/// Serves `GET /metrics` in Prometheus' text format on a loopback address
/// (the config refuses any other), for as long as the daemon runs.
///
/// The port is bound before the daemon starts (``bind(source:host:port:group:logger:)``), so a
/// port that is taken fails the start with a message instead of leaving a daemon without metrics.
public struct MetricsServer: Service {
    /// What a scrape reports: the daemon's counters, taken at the scrape.
    public typealias Source = @Sendable () -> DaemonSnapshot

    /// Why the metrics endpoint could not be served.
    public struct BindError: Error, CustomStringConvertible {
        public var description: String
    }

    let channel: any Channel
    let address: String
    let logger: Logger

    /// Binds `host:port` and returns the server that serves it once run.
    public static func bind(
        source: @escaping Source, host: String, port: Int, group: any EventLoopGroup, logger: Logger
    ) async throws(BindError) -> MetricsServer {
        let address = "\(host):\(port)"
        do {
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.pipeline.configureHTTPServerPipeline().flatMap { channel.pipeline.addHandler(MetricsHandler(source: source)) }
                }
                .bind(host: host, port: port).get()
            return MetricsServer(channel: channel, address: address, logger: logger)
        } catch {
            throw BindError(description: "metrics.listen \(address): cannot listen: \(error)")
        }
    }

    public func run() async throws {
        let channel = self.channel
        logger.notice("serving Prometheus metrics", metadata: ["address": "http://\(address)/metrics"])
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await channel.closeFuture.get()
            } onCancel: {
                channel.close(promise: nil)
            }
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
    }

    /// Closes a bound server that will not run (the daemon failed to start after binding it).
    public func close() async {
        try? await channel.close()
    }
}

private final class MetricsHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let source: MetricsServer.Source

    init(source: @escaping MetricsServer.Source) { self.source = source }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = unwrapInboundIn(data) else { return }
        let (status, body, type): (HTTPResponseStatus, [UInt8], String) =
            request.method == .GET && request.uri.split(separator: "?").first == "/metrics"
            ? (.ok, PrometheusExposition.render(source()), "text/plain; version=0.0.4")
            : (.notFound, Array("routerd serves only GET /metrics here\n".utf8), "text/plain")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.count)")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let keepAlive = request.isKeepAlive
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            // A client that asked for `Connection: close` (or spoke HTTP/1.0) waits for the close.
            if !keepAlive { bound.value.close(promise: nil) }
        }
    }
}
