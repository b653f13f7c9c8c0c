import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import RouterDaemon
import ServiceLifecycle

/// Serves `GET /metrics` in Prometheus' text format on a loopback address
/// (the config refuses any other), for as long as the daemon runs.
public struct MetricsServer: Service {
    /// What a scrape reports: the daemon's counters, taken at the scrape.
    public typealias Source = @Sendable () -> DaemonSnapshot

    let source: Source
    let host: String
    let port: Int
    let group: any EventLoopGroup
    let logger: Logger

    public init(source: @escaping Source, host: String, port: Int, group: any EventLoopGroup, logger: Logger) {
        self.source = source
        self.host = host
        self.port = port
        self.group = group
        self.logger = logger
    }

    public func run() async throws {
        let source = self.source
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap { channel.pipeline.addHandler(MetricsHandler(source: source)) }
            }
            .bind(host: host, port: port).get()
        logger.notice("serving Prometheus metrics", metadata: ["address": "http://\(host):\(port)/metrics"])
        try await withGracefulShutdownHandler {
            try await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
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
