import Foundation
import RouterEngine
import RouterdTestSupport
import Synchronization
import Testing

/// Shadow routers in-process: what they decide, what is counted, and that their queue is bounded.
@Suite(.timeLimit(.minutes(10))) struct ShadowTests {
    static let routers = """
        \(TestConfig.randomRouter(name: "live", seed: 7))
            shadow: [other]
        \(TestConfig.randomRouter(name: "other", threshold: 0.3, seed: 99))
        """

    /// Waits (polling, up to a minute) until `condition` holds.
    static func eventually(_ condition: () -> Bool) throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw HarnessError("timed out waiting for the shadows") }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    @Test func eachShadowDecisionIsTheShadowsOwnGreedyChoiceAndIsCountedApart() throws {
        let directory = try TemporaryDirectory()
        let engine = try PolicyTests.engine(routers: Self.routers, in: directory)
        defer { engine.shutdown() }
        let seen = Mutex<[ShadowDecision]>([])
        engine.observeShadows { shadow in seen.withLock { $0.append(shadow) } }
        let prompts = (0..<200).map { "prompt \($0)" }
        var live: [String: String] = [:]
        for prompt in prompts {
            let decision = try engine.route(router: "live", prompt: prompt, on: engine.current)
            live[decision.id] = decision.model
        }
        // Each shadow decision is observed (logged), then counted.
        try Self.eventually {
            seen.withLock { $0.count } == prompts.count
                && engine.statsSnapshot(on: engine.current).routers["live"]?.shadows["other"]?.decisions == UInt64(prompts.count)
        }
        let shadows = seen.withLock { $0 }
        let stats = try #require(engine.statsSnapshot(on: engine.current).routers["live"])
        #expect(engine.statsSnapshot(on: engine.current).routers["other"]?.decisions ?? 0 == 0, "a shadow's decisions are not its traffic")
        let other = try #require(engine.current.routers["other"])
        var agreed: UInt64 = 0
        for shadow in shadows {
            #expect(shadow.router == "live" && shadow.shadow == "other" && shadow.error == nil)
            #expect(shadow.liveModel == live[shadow.decisionID], "names the live decision it shadows")
            let own = try engine.route(other, prompt: shadow.prompt, forEvaluation: true, on: engine.current)
            #expect(shadow.model == own.model && shadow.score == own.score)
            if shadow.agrees { agreed += 1 }
        }
        #expect(stats.shadows["other"]?.decisions == 200 && stats.shadows["other"]?.agreements == agreed && stats.shadowsDropped == 0)
        #expect(agreed > 20 && agreed < 180, "two seeds at two thresholds agree sometimes, not always: \(agreed)")
    }

    @Test func whenTheShadowsFallBehindDecisionsAreDroppedAndCounted() throws {
        let directory = try TemporaryDirectory()
        let engine = try PolicyTests.engine(routers: Self.routers, in: directory)
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let calls = Mutex(0)
        engine.observeShadows { _ in
            // The first shadow decision holds the shadows' thread until the test lets it go.
            if calls.withLock({
                $0 += 1; return $0
            }) == 1 {
                entered.signal()
                release.wait()
            }
        }
        _ = try engine.route(router: "live", prompt: "first", on: engine.current)
        entered.wait()
        let more = 1030
        for index in 0..<more { _ = try engine.route(router: "live", prompt: "queued \(index)", on: engine.current) }
        // Every route was answered while the shadows were stuck; the queue kept its bound.
        #expect(engine.pendingShadows == 1024)
        let live = try #require(engine.statsSnapshot(on: engine.current).routers["live"])
        #expect(live.decisions == UInt64(more + 1) && live.shadowsDropped == UInt64(more - 1024))
        release.signal()
        try Self.eventually { engine.pendingShadows == 0 }
        engine.shutdown()
        #expect(calls.withLock { $0 } == 1025)
    }
}
