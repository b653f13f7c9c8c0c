import ArgumentParser
import Foundation
import NIOCore
import NIOExtras
import NIOPosix
import RouterClient
import RouterProtocol
import RouterVocabulary
import Synchronization
import TextEncoder

/// Measures decisions/s and round-trip latency through the real socket.
///
/// Each connection runs a closed loop: send one `route`, wait for its reply,
/// send the next. A plain NIO line echo server, started in this process on a
/// temporary socket, is measured the same way in the same run as the
/// baseline: the cost of the transport alone on this machine.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark route decisions/s and latency against a running routerd, next to a line-echo baseline.")

    @OptionGroup var options: ConnectionOptions
    @Option(name: [.short, .long], help: "The router instance.") var router: String = "random"
    @Option(help: "Connection counts to measure, comma-separated.") var connections: String = "1,16,128"
    @Option(help: "Requests per measurement, split over the connections.") var requests: Int = 100_000
    @Option(help: "The prompt to route.") var prompt: String = "Explain the difference between a process and a thread, with an example."
    @Flag(help: "Skip the echo baseline.") var noBaseline = false
    @Flag(
        name: .customLong("distinct-prompts"),
        help: "Give every request its own prompt, so routers with an encoder embed each one instead of finding it cached.")
    var distinctPrompts = false
    @Option(
        name: .customLong("encoder-anchor"),
        help: ArgumentHelp(
            "With --distinct-prompts: the model folder of the daemon's encoder, to measure the encoder alone first, in this process, on the same prompts in batches of --anchor-batch, as the anchor for the route rows.",
            valueName: "model-folder"))
    var encoderAnchor: String?
    @Option(help: "The anchor's batch size.") var anchorBatch: Int = 16
    @Option(help: "The anchor's precision: the daemon's encoder's (fp32, int8 or bf16).") var anchorPrecision: EncoderPrecision = .fp32
    @Option(help: "The anchor's threads, each embedding its own batches with one OpenBLAS thread (routerd's layout with `threads: 1`).")
    var anchorThreads: Int = System.coreCount

    func run() async throws {
        let counts = connections.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 > 0 }
        guard !counts.isEmpty else { throw ValidationError("--connections needs at least one positive number") }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        do {
            try await measureAll(counts, group: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    private func measureAll(_ counts: [Int], group: MultiThreadedEventLoopGroup) async throws {

        let request = try RequestCodec.encode(.route(RouteRequest(router: router, prompt: prompt)), id: nil)
        // With --distinct-prompts, connection c's i-th request routes "<prompt> (tag.c.i)", with a
        // random tag per row, so no earlier run or row left these prompts in the embedding cache.
        let lines: @Sendable (Int, Int) throws -> [ByteBuffer] = { [router, prompt, distinctPrompts] connection, count in
            guard distinctPrompts else { return [ByteBuffer(bytes: request)] }
            let tag = UInt32.random(in: 0...UInt32.max)
            return try (0..<count).map { index in
                ByteBuffer(
                    bytes: try RequestCodec.encode(
                        .route(RouteRequest(router: router, prompt: Self.distinctPrompt(prompt, tag: tag, connection: connection, index: index))),
                        id: nil))
            }
        }
        // Fail early with a clear message if routerd is not there or the router is unknown.
        _ = try await options.withConnection { try await $0.route(RouteRequest(router: router, prompt: prompt)) }

        // The baseline server runs in its own process, as routerd does, so both
        // rows pay the same cross-process wake-ups.
        var echoPath: String?
        var echoProcess: Process?
        if !noBaseline {
            let path = NSTemporaryDirectory() + "routerctl-bench-echo-\(getpid()).sock"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            process.arguments = ["echo-server", "--socket", path]
            try process.run()
            echoProcess = process
            echoPath = path
            for _ in 0..<200 where !FileManager.default.fileExists(atPath: path) { try await Task.sleep(for: .milliseconds(10)) }
        }
        defer {
            echoProcess?.terminate()
            if let echoPath { unlink(echoPath) }
        }

        print(
            "routerctl bench: router '\(router)' at \(options.socketPath); \(requests) requests per row; closed loop, one request in flight per connection"
                + (distinctPrompts ? "; every prompt distinct (no embedding cache hits)" : ""))
        var anchor: Double?
        if let encoderAnchor {
            guard distinctPrompts else { throw ValidationError("--encoder-anchor needs --distinct-prompts: cached prompts are not encoded") }
            anchor = try Self.encoderSentencesPerSecond(
                model: encoderAnchor, precision: anchorPrecision, prompt: prompt, batch: anchorBatch, threads: anchorThreads, seconds: 5)
            print(
                String(
                    format: "encoder alone, in this process: %.0f sentences/s (batches of %d distinct prompts, %d threads × 1 thread, %@)",
                    anchor!, anchorBatch, anchorThreads, anchorPrecision.rawValue))
        }
        print(table(header: ["TARGET", "CONNS", "REQ/S", "P50 µs", "P99 µs", "P99.9 µs", "ERRORS"], rows: [], widths: BenchResult.widths))
        for count in counts {
            var echo: BenchResult?
            if let echoPath {
                echo = try await Self.measure(path: echoPath, connections: count, total: requests, lines: lines, expect: nil, group: group)
                print(echo!.row(label: "echo baseline", connections: count))
            }
            let route = try await Self.measure(
                path: options.socketPath, connections: count, total: requests, lines: lines, expect: Array(#""ok":true"#.utf8), group: group)
            var row = route.row(label: "route \(router)", connections: count)
            if let echo { row += String(format: "   (%.2f× echo throughput)", route.perSecond / echo.perSecond) }
            if let anchor { row += String(format: "   (%.2f× the encoder alone)", route.perSecond / anchor) }
            print(row)
        }
    }

    /// Sentences/s of the encoder alone: `threads` threads, each embedding batches of `batch`
    /// distinct prompts shaped like the bench's, for about `seconds`.
    static func encoderSentencesPerSecond(
        model: String, precision: EncoderPrecision, prompt: String, batch: Int, threads: Int, seconds: Double
    ) throws -> Double {
        let encoder: SentenceEncoder
        do {
            encoder = try SentenceEncoder.load(modelDirectory: model, precision: .fixed(precision))
        } catch {
            throw ValidationError("--encoder-anchor: \(error)")
        }
        SentenceEncoder.setThreads(1)
        let done = Mutex(0)
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        let start = DispatchTime.now().uptimeNanoseconds
        DispatchQueue.concurrentPerform(iterations: max(1, threads)) { thread in
            var round = 0
            let tag = UInt32.random(in: 0...UInt32.max)
            while DispatchTime.now().uptimeNanoseconds < deadline {
                // The same shape, and so the same token count, as the route rows' prompts.
                let texts = (0..<batch).map { Self.distinctPrompt(prompt, tag: tag, connection: thread, index: round * batch + $0) }
                _ = encoder.embed(texts)
                round += 1
                done.withLock { $0 += batch }
            }
        }
        return Double(done.withLock { $0 }) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }

    /// The `index`-th distinct prompt of a connection: a random tag per row keeps earlier rows' and
    /// runs' prompts out of the embedding cache.
    static func distinctPrompt(_ prompt: String, tag: UInt32, connection: Int, index: Int) -> String {
        "\(prompt) (\(tag).\(connection).\(index))"
    }

    /// `lines(connection, count)` gives the request lines a connection cycles through.
    static func measure(
        path: String, connections: Int, total: Int, lines: (Int, Int) throws -> [ByteBuffer], expect: [UInt8]?, group: any EventLoopGroup
    ) async throws -> BenchResult {
        let perConnection = max(1, total / connections)
        let clients = try await EventLoopFuture.whenAllSucceed(
            (0..<connections).map { _ in RouterConnection.connectFuture(socketPath: path, group: group) }, on: group.next()
        ).get()
        // Closed before returning, and awaited: a close left to an unstructured task could run after
        // the event loops shut down ("Cannot schedule tasks on an EventLoop that has already shut down").
        func closeAll() async {
            for client in clients { await client.close() }
        }
        let warmup = min(200, perConnection)
        let start = DispatchTime.now().uptimeNanoseconds
        let results: [ClosedLoop.Outcome]
        do {
            let loops = try clients.enumerated().map { index, client in
                ClosedLoop(connection: client, lines: try lines(index, warmup + perConnection), expect: expect, warmup: warmup, count: perConnection)
            }
            results = try await EventLoopFuture.whenAllSucceed(loops.map { $0.start() }, on: group.next()).get()
        } catch {
            await closeAll()
            throw error
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        await closeAll()
        var latencies = results.flatMap(\.latencies)
        latencies.sort()
        // Warm-up requests are timed in `elapsed` too, so count them in the rate.
        let perSecond = Double(results.reduce(0) { $0 + $1.sent }) / elapsed
        return BenchResult(perSecond: perSecond, latencies: latencies, errors: results.reduce(0) { $0 + $1.errors })
    }
}

struct BenchResult {
    static let widths = [16, 5, 7, 8, 8, 9, 6]

    var perSecond: Double
    /// Sorted round-trip times in nanoseconds.
    var latencies: [UInt64]
    var errors: Int

    func percentile(_ p: Double) -> String {
        guard !latencies.isEmpty else { return "-" }
        let index = min(latencies.count - 1, Int((Double(latencies.count) * p).rounded(.up)) - 1)
        return String(format: "%.1f", Double(latencies[max(0, index)]) / 1000)
    }

    func row(label: String, connections: Int) -> String {
        table(
            header: [label, "\(connections)", String(format: "%.0f", perSecond), percentile(0.5), percentile(0.99), percentile(0.999), "\(errors)"],
            rows: [], widths: Self.widths)
    }
}

/// One connection's closed loop. Touched only on its channel's event loop.
final class ClosedLoop: @unchecked Sendable {
    struct Outcome: Sendable {
        var latencies: [UInt64]
        var errors: Int
        var sent: Int
    }

    private let connection: RouterConnection
    private let lines: [ByteBuffer]
    private var next = 0
    private let expect: [UInt8]?
    private var warmup: Int
    private var remaining: Int
    private var outcome = Outcome(latencies: [], errors: 0, sent: 0)

    init(connection: RouterConnection, lines: [ByteBuffer], expect: [UInt8]?, warmup: Int, count: Int) {
        self.connection = connection
        self.lines = lines
        self.expect = expect
        self.warmup = warmup
        self.remaining = count
        outcome.latencies.reserveCapacity(count)
    }

    func start() -> EventLoopFuture<Outcome> {
        let promise = connection.eventLoop.makePromise(of: Outcome.self)
        connection.eventLoop.execute { self.step(promise) }
        return promise.futureResult
    }

    private func step(_ promise: EventLoopPromise<Outcome>) {
        guard remaining > 0 else {
            promise.succeed(outcome)
            return
        }
        let start = DispatchTime.now().uptimeNanoseconds
        outcome.sent += 1
        let line = lines[next % lines.count]
        next += 1
        connection.sendLine(line).whenComplete { result in
            let elapsed = DispatchTime.now().uptimeNanoseconds - start
            switch result {
            case .success(let response):
                if let expect = self.expect, response.readableBytesView.firstRange(of: expect) == nil { self.outcome.errors += 1 }
            case .failure:
                self.outcome.errors += 1
                promise.succeed(self.outcome)
                return
            }
            if self.warmup > 0 {
                self.warmup -= 1
            } else {
                self.outcome.latencies.append(elapsed)
                self.remaining -= 1
            }
            self.step(promise)
        }
    }
}

/// A line echo server on a Unix socket: the benchmark's transport baseline.
struct EchoServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo-server", abstract: "Serve a line echo on a socket (the bench baseline).", shouldDisplay: false)

    @Option var socket: String

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let channel = try await EchoServer.start(path: socket, group: group)
        try await channel.closeFuture.get()
    }
}

enum EchoServer {
    static func start(path: String, group: any EventLoopGroup) async throws -> any Channel {
        unlink(path)
        return try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([ByteToMessageHandler(LineBasedFrameDecoder()), EchoHandler()])
                }
            }
            .bind(unixDomainSocketPath: path).get()
    }

    private final class EchoHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var line = unwrapInboundIn(data)
            line.writeInteger(UInt8(ascii: "\n"))
            context.write(wrapOutboundOut(line), promise: nil)
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            context.flush()
        }
    }
}
