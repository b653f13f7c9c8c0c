import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import RouterBenchmarks
import RouterClient
import RouterProtocol
import RouterVocabulary

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
                        .route(
                            RouteRequest(router: router, prompt: RouteLoad.distinctPrompt(prompt, tag: tag, connection: connection, index: index))),
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
            anchor = try RouteLoad.encoderSentencesPerSecond(
                model: encoderAnchor, precision: anchorPrecision, prompt: prompt, batch: anchorBatch, threads: anchorThreads, seconds: 5)
            print(
                String(
                    format: "encoder alone, in this process: %.0f sentences/s (batches of %d distinct prompts, %d threads × 1 thread, %@)",
                    anchor!, anchorBatch, anchorThreads, anchorPrecision.rawValue))
        }
        print(table(header: ["TARGET", "CONNS", "REQ/S", "P50 µs", "P99 µs", "P99.9 µs", "ERRORS"], rows: [], widths: LoadResult.widths))
        for count in counts {
            var echo: LoadResult?
            if let echoPath {
                echo = try await RouteLoad.measure(path: echoPath, connections: count, total: requests, lines: lines, expect: nil, group: group)
                print(echo!.row(label: "echo baseline", connections: count))
            }
            let route = try await RouteLoad.measure(
                path: options.socketPath, connections: count, total: requests, lines: lines, expect: Array(#""ok":true"#.utf8), group: group)
            var row = route.row(label: "route \(router)", connections: count)
            if let echo { row += String(format: "   (%.2f× echo throughput)", route.perSecond / echo.perSecond) }
            if let anchor { row += String(format: "   (%.2f× the encoder alone)", route.perSecond / anchor) }
            print(row)
        }
    }

}

extension LoadResult {
    static let widths = [16, 5, 7, 8, 8, 9, 6]

    func row(label: String, connections: Int) -> String {
        let percentiles = [0.5, 0.99, 0.999].map { percentileMicroseconds($0).map { String(format: "%.1f", $0) } ?? "-" }
        return table(
            header: [label, "\(connections)", String(format: "%.0f", perSecond)] + percentiles + ["\(errors)"], rows: [], widths: Self.widths)
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
