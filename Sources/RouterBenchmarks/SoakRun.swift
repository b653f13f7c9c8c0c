import Foundation
import RouterConfig
import RouterPluginHost
import StableHash

#if Gateway
    import AsyncHTTPClient
#endif

/// Hours of mixed traffic against a routerd the run starts, with every decision checked.
///
/// The daemon runs the routers of a shipped config with explicit thresholds in place of
/// `strong_fraction`, so that each decision can be checked against the generation it names: the
/// soak writes every config the daemon loads, and registers the thresholds (and λ) of generation
/// g + 1 before it asks for the change that makes it. Traffic: every op, the learned routers on
/// repeated and never-seen prompts, batches of fresh texts through `embed` (to run the embedding
/// cache through far more distinct prompts than it holds), feedback that the online learner folds
/// in, bad lines with their expected error codes, connections opened and dropped, and a reload or
/// `set` every `changeEvery` seconds, one in five broken on purpose.
public struct SoakRun: Sendable {
    public var minutes: Double = 30
    /// The config whose routers, encoders and plugins the soak runs.
    public var config: String
    /// The model catalogue the config's routers price with.
    public var models: String
    /// The routerd binary.
    public var routerd: String
    public var clients = 6
    public var changeEvery: Double = 10
    public var sampleEvery: Double = 10
    /// The share of the run before RSS growth is measured from.
    public var warmUp = 0.2
    /// The embedding cache's capacity, in embeddings.
    public var cacheSize = 10_000
    public var seed: UInt64 = 1

    public init(config: String, models: String, routerd: String) {
        self.config = config
        self.models = models
        self.routerd = routerd
    }

    /// What the run found: the report's text, whether it passed, the RSS curve as CSV, and the
    /// folder that holds the daemon's log (removed after a passing run).
    public struct Outcome: Sendable {
        public var report: String
        public var passed: Bool
        public var rssCSV: String
        public var folder: String
    }

    /// Starts routerd, runs the traffic until the time is up, stops routerd and reports.
    /// `started` is told the daemon's pid and config once it is up.
    public func run(started: (_ pid: Int32, _ config: String) -> Void) async throws -> Outcome {
        let shipped = try loadDaemonConfig(config, routerd: routerd)
        let folder = try SoakFolder()
        #if Gateway
            // Gateway traffic: a stub upstream serves every catalogue model, one of them failing at a time.
            let stub = try await StubUpstream()
            defer { stub.stop() }
            let catalogue: ModelCatalogue
            do {
                catalogue = try ConfigLoader.loadCatalogue(file: Self.absolute(models))
            } catch {
                throw BenchmarkRunError("--models \(models): \(error.issues.map(\.description).joined(separator: "; "))")
            }
            let gateway = SoakGatewayLayout(port: try GatewayBench.freePort(), catalogue: catalogue, stubBaseURL: stub.baseURL)
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
            do {
                return try await run(shipped: shipped, folder: folder, gateway: (gateway, stub, client), started: started)
            } catch {
                try? await client.shutdown()
                throw error
            }
        #else
            return try await run(shipped: shipped, folder: folder, gateway: nil, started: started)
        #endif
    }

    #if Gateway
        typealias GatewayParts = (layout: SoakGatewayLayout, stub: StubUpstream, client: HTTPClient)
    #else
        typealias GatewayParts = Never
    #endif

    private func run(shipped: DaemonConfig, folder: SoakFolder, gateway: GatewayParts?, started: (_ pid: Int32, _ config: String) -> Void)
        async throws -> Outcome
    {
        #if Gateway
            let gatewayLayout = gateway?.layout
        #else
            let gatewayLayout: SoakGatewayLayout? = nil
        #endif
        let layout = try SoakConfig(
            shipped: shipped, models: Self.absolute(models), folder: folder.path, cacheSize: cacheSize, gateway: gatewayLayout)
        var random = SplitMix64(seed: seed)
        let settings = layout.initialSettings(using: &random)
        try layout.text(settings).write(toFile: layout.file, atomically: true, encoding: .utf8)
        let daemon = try ChildDaemon(binary: routerd, config: layout.file, socket: layout.socket, log: folder.path + "/routerd.log")
        defer { daemon.stop() }
        started(daemon.pid, layout.file)

        let tally = SoakTally()
        tally.expect(generation: 1, settings)
        let deadline = ContinuousClock.now + .seconds(minutes * 60)
        let startedAt = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<clients {
                let traffic = SoakTraffic(
                    socket: layout.socket, layout: layout, tally: tally, seed: seed &+ UInt64(client + 1) &* 0x9E37_79B9_7F4A_7C15)
                group.addTask { await traffic.run(until: deadline) }
            }
            group.addTask { await SoakTraffic.churn(socket: layout.socket, tally: tally, until: deadline) }
            #if Gateway
                if let gateway {
                    for client in 0..<2 {
                        let traffic = SoakGatewayTraffic(
                            layout: layout, gateway: gateway.layout, stub: gateway.stub, client: gateway.client, tally: tally,
                            seed: seed &+ 0xC0FFEE &+ UInt64(client))
                        group.addTask { await traffic.run(until: deadline) }
                    }
                }
            #endif
            group.addTask { [changeEvery, seed] in
                await SoakController(layout: layout, tally: tally, settings: settings, seed: ~seed, socket: layout.socket)
                    .run(every: changeEvery, until: deadline)
            }
            group.addTask { [sampleEvery] in
                await SoakSampler(daemon: daemon, socket: layout.socket, tally: tally, started: startedAt).run(every: sampleEvery, until: deadline)
            }
            try await group.waitForAll()
        }
        #if Gateway
            try? await gateway?.client.shutdown()
        #endif
        let exitStatus = daemon.stop()
        let report = tally.report(warmUp: warmUp, daemonStatus: exitStatus, log: folder.path + "/routerd.log")
        if report.passed { folder.remove() }
        return Outcome(report: report.text, passed: report.passed, rssCSV: tally.rssCSV(), folder: folder.path)
    }

    private static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}
