import Foundation
import NIOCore
import NIOPosix
import RouterBenchmarks
import Testing

/// The load measurement, in-process against the echo baseline on a real Unix socket.
@Suite struct RouteLoadTests {
    @Test func aClosedLoopCountsEveryRequestAndItsLatency() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let path = NSTemporaryDirectory() + "route-load-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let server = try await EchoServer.start(path: path, group: group)
        let line = ByteBuffer(string: #"{"ok":true}"# + "\n")
        let result = try await RouteLoad.measure(
            path: path, connections: 3, total: 300, lines: { _, _ in [line] }, expect: Array(#""ok":true"#.utf8), group: group)
        // 100 timed requests per connection, after 100 warm-up requests each (min(200, 100)).
        #expect(result.latencies.count == 300)
        #expect(result.latencies == result.latencies.sorted())
        #expect(result.errors == 0)
        #expect(result.perSecond > 0)
        let median = try #require(result.percentileMicroseconds(0.5))
        #expect(median == Double(result.latencies[149]) / 1000)

        // A reply without the expected bytes is an error, not a decision.
        let refused = try await RouteLoad.measure(
            path: path, connections: 1, total: 10, lines: { _, _ in [ByteBuffer(string: "nope\n")] }, expect: Array(#""ok":true"#.utf8),
            group: group)
        #expect(refused.errors == 20, "10 warm-up and 10 timed requests, none answered as expected")
        try await server.close()
        unlink(path)
        try await group.shutdownGracefully()
    }

    @Test func percentilesOfNoLatenciesAreAbsent() {
        #expect(LoadResult(perSecond: 0, latencies: [], errors: 0).percentileMicroseconds(0.5) == nil)
        let result = LoadResult(perSecond: 1, latencies: [1000, 2000, 3000, 4000], errors: 0)
        #expect(result.percentileMicroseconds(0.5) == 2)
        #expect(result.percentileMicroseconds(0.99) == 4)
    }

    @Test func distinctPromptsAreDistinctPerConnectionAndIndex() {
        let prompts = (0..<2).flatMap { connection in (0..<3).map { RouteLoad.distinctPrompt("p", tag: 7, connection: connection, index: $0) } }
        #expect(Set(prompts).count == 6)
        #expect(prompts[0] == "p (7.0.0)")
    }
}
