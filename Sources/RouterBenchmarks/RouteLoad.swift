import Dispatch
import Foundation
import NIOCore
import NIOExtras
import NIOPosix
import RouterClient
import RouterVocabulary
import Synchronization
import TextEncoder

/// Decisions/s and round-trip latency through a real socket: each connection runs a closed loop
/// (send one line, wait for its reply, send the next). ``EchoServer`` measured the same way in the
/// same run is the baseline: the cost of the transport alone on this machine.
public enum RouteLoad {
    /// Sentences/s of the encoder alone: `threads` threads, each embedding batches of `batch`
    /// distinct prompts shaped like the bench's, for about `seconds`.
    public static func encoderSentencesPerSecond(
        model: String, precision: EncoderPrecision, prompt: String, batch: Int, threads: Int, seconds: Double
    ) throws -> Double {
        let encoder: SentenceEncoder
        do {
            encoder = try SentenceEncoder.load(modelDirectory: model, precision: .fixed(precision))
        } catch {
            throw BenchmarkRunError("the anchor's encoder: \(error)")
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
    public static func distinctPrompt(_ prompt: String, tag: UInt32, connection: Int, index: Int) -> String {
        "\(prompt) (\(tag).\(connection).\(index))"
    }

    /// `lines(connection, count)` gives the request lines a connection cycles through.
    public static func measure(
        path: String, connections: Int, total: Int, lines: (Int, Int) throws -> [ByteBuffer], expect: [UInt8]?, group: any EventLoopGroup
    ) async throws -> LoadResult {
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
        return LoadResult(perSecond: perSecond, latencies: latencies, errors: results.reduce(0) { $0 + $1.errors })
    }
}

/// One measurement: the rate, the sorted latencies and the errors.
public struct LoadResult: Sendable {
    public var perSecond: Double
    /// Sorted round-trip times in nanoseconds.
    public var latencies: [UInt64]
    public var errors: Int

    public init(perSecond: Double, latencies: [UInt64], errors: Int) {
        self.perSecond = perSecond
        self.latencies = latencies
        self.errors = errors
    }

    /// The `p` quantile of the latencies in microseconds, or nil without any.
    public func percentileMicroseconds(_ p: Double) -> Double? {
        Quantile.nearestRank(latencies.map { Double($0) / 1000 }, p)
    }
}

/// Quantiles of measured times, as the benchmarks print them.
public enum Quantile {
    /// The `p` quantile of `values` by nearest rank (nil without any); `values` may be unsorted.
    public static func nearestRank(_ values: [Double], _ p: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let index = min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)
        return sorted[max(0, index)]
    }
}

/// One connection's closed loop; its state lives on the channel's event loop.
final class ClosedLoop: Sendable {
    struct Outcome: Sendable {
        var latencies: [UInt64]
        var errors: Int
        var sent: Int
    }

    private struct State: Sendable {
        var next = 0
        var warmup: Int
        var remaining: Int
        var outcome = Outcome(latencies: [], errors: 0, sent: 0)
    }

    private let connection: RouterConnection
    private let lines: [ByteBuffer]
    private let expect: [UInt8]?
    private let state: NIOLoopBoundBox<State>

    init(connection: RouterConnection, lines: [ByteBuffer], expect: [UInt8]?, warmup: Int, count: Int) {
        self.connection = connection
        self.lines = lines
        self.expect = expect
        var state = State(warmup: warmup, remaining: count)
        state.outcome.latencies.reserveCapacity(count)
        self.state = .makeBoxSendingValue(state, eventLoop: connection.eventLoop)
    }

    func start() -> EventLoopFuture<Outcome> {
        let promise = connection.eventLoop.makePromise(of: Outcome.self)
        connection.eventLoop.execute { self.step(promise) }
        return promise.futureResult
    }

    private func step(_ promise: EventLoopPromise<Outcome>) {
        guard state.value.remaining > 0 else {
            promise.succeed(state.value.outcome)
            return
        }
        let start = DispatchTime.now().uptimeNanoseconds
        state.value.outcome.sent += 1
        let line = lines[state.value.next % lines.count]
        state.value.next += 1
        connection.sendLine(line).whenComplete { result in
            let elapsed = DispatchTime.now().uptimeNanoseconds - start
            switch result {
            case .success(let response):
                if let expect = self.expect, response.readableBytesView.firstRange(of: expect) == nil { self.state.value.outcome.errors += 1 }
            case .failure:
                self.state.value.outcome.errors += 1
                promise.succeed(self.state.value.outcome)
                return
            }
            if self.state.value.warmup > 0 {
                self.state.value.warmup -= 1
            } else {
                self.state.value.outcome.latencies.append(elapsed)
                self.state.value.remaining -= 1
            }
            self.step(promise)
        }
    }
}

/// A line echo server on a Unix socket: the load measurement's transport baseline.
public enum EchoServer {
    public static func start(path: String, group: any EventLoopGroup) async throws -> any Channel {
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
