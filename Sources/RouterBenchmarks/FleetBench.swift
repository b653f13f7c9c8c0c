import Foundation
import NIOCore
import NIOPosix
import RouterClient
import RouterProtocol
import Synchronization

/// `routerctl bench-fleet`: daemons sharing outcomes (and sessions) through one PostgreSQL
/// database, under a closed loop of `feedback` on each, measured for the goals of docs/RESULTS.md
/// ("The fleet"):
///
/// 1. **Route throughput, fleet on against off**: the same config with and without `fleet:`,
///    measured in turns on one run, with each route carrying a session so the session journal is
///    on the path measured.
/// 2. **Outcomes accepted per second** across the fleet's daemons under closed loops, then the
///    **replication lag** with `rate` outcomes a second sent across the fleet (acknowledgement on
///    one host to the learner of another; each host's p50 and p99 over its last 1,024 received,
///    read every second).
/// 3. **Catch-up after an outage**: the database is stopped (by `databaseControl stop`) for
///    `outageSeconds` while the paced load goes on, then started again; the time until every
///    outcome acknowledged before the restart is shipped and received by every other host.
///
/// Prompts come from a small pool, embedded once: a learner embeds each outcome's prompt, and
/// distinct prompts would measure the encoder (about 100 a second on 2 cores), not the fleet.
public struct FleetBench: Sendable {
    public var routerd: String
    /// The repository: plugins, weights, the encoder and the catalogue.
    public var root: String
    public var url: String
    public var passwordFile: String
    /// A command run through the shell with `stop` or `start` appended; nil skips the outage.
    public var databaseControl: String?
    public var hosts = 3
    public var connections = 4
    /// Requests in flight on each connection.
    public var depth = 32
    public var seconds = 20.0
    public var outageSeconds = 60.0
    /// Outcomes a second across the fleet for the lag and the outage (the goal's load).
    public var rate = 5000.0
    public var routeRequests = 10000
    public var prompts: [String] = (0..<64).map { "Question \($0): how would you explain topic number \($0) to a new colleague?" }

    public init(routerd: String, root: String, url: String, passwordFile: String) {
        self.routerd = routerd
        self.root = root
        self.url = url
        self.passwordFile = passwordFile
    }

    public struct Report: Sendable, CustomStringConvertible {
        public var hosts = 0
        /// Decisions/s of each run, by fleet on or off and with or without sessions.
        public var route: [RouteRun: [Double]] = [:]
        public var outcomesPerSecond = 0.0
        public var loadSeconds = 0.0
        public var pacedPerSecond = 0.0
        public var refused = 0
        public var lagP50Milliseconds: Double?
        public var lagP99Milliseconds: Double?
        public var outageSeconds = 0.0
        public var outboxAtRestart = 0
        public var catchUpSeconds: Double?

        /// Fleet on over fleet off, medians of the runs.
        public func routeRatio(sessions: Bool) -> Double {
            func median(_ values: [Double]?) -> Double { values.map { $0.sorted()[$0.count / 2] } ?? .nan }
            return median(route[RouteRun(fleet: true, sessions: sessions)]) / median(route[RouteRun(fleet: false, sessions: sessions)])
        }

        public var description: String {
            func rates(_ values: [Double]) -> String { values.map { String(format: "%.0f", $0) }.joined(separator: ", ") }
            var lines = [
                "fleet bench: \(hosts) daemons sharing outcomes and sessions through one PostgreSQL database on this machine",
                String(
                    format: "route, fleet on: %@ decisions/s (runs); off: %@; on / off (medians) %.3f",
                    rates(route[RouteRun(fleet: true, sessions: false)] ?? []), rates(route[RouteRun(fleet: false, sessions: false)] ?? []),
                    routeRatio(sessions: false)),
                String(
                    format: "route with sessions, fleet on (sharing them): %@; off: %@; on / off %.3f",
                    rates(route[RouteRun(fleet: true, sessions: true)] ?? []), rates(route[RouteRun(fleet: false, sessions: true)] ?? []),
                    routeRatio(sessions: true)),
                String(
                    format: "outcomes accepted, as fast as taken: %.0f/s across the fleet over %.0f s (%d refused)", outcomesPerSecond, loadSeconds,
                    refused),
                String(
                    format: "replication lag at %.0f outcomes/s: p50 %@ ms (median of the hosts' readings), p99 %@ ms (the largest reading)",
                    pacedPerSecond,
                    lagP50Milliseconds.map { String(format: "%.0f", $0) } ?? "-", lagP99Milliseconds.map { String(format: "%.0f", $0) } ?? "-"),
            ]
            if outageSeconds > 0 {
                lines.append(
                    String(
                        format: "catch-up after a %.0f s outage under that load (%d outcomes waiting in the outboxes): %@", outageSeconds,
                        outboxAtRestart, catchUpSeconds.map { String(format: "%.1f s", $0) } ?? "not within 300 s"))
            }
            return lines.joined(separator: "\n")
        }
    }

    func config(_ index: Int, directory: String, fleet: Bool) -> String {
        let socket = "\(directory)/h\(index).sock"
        let fleetSection =
            fleet
            ? """
            fleet:
              url: \(url)
              password_file: \(passwordFile)
              name: bench
              host: h\(index)
              share: [outcomes, sessions]
            """ : ""
        return """
            socket:
              path: \(socket)
              mode: 0600
            plugins:
              search_paths: [\(root)/plugins]
            limits:
              idle_timeout: 3600
              max_in_flight: 1024
            logging:
              level: warning
            models: \(root)/etc/routerd/models.yaml
            encoders:
              minilm:
                kind: minilm
                path: \(root)/models/all-MiniLM-L6-v2
                cache_size: 10000
                threads: 1
            feedback:
              directory: \(directory)/h\(index)
              learning: {publish_interval_ms: 500}
            \(fleetSection)
            routers:
              sw:
                plugin: sw_ranking
                strong_fraction: 0.5
                strong_model: gpt-4-1106-preview
                weak_model: mistralai/Mixtral-8x7B-Instruct-v0.1
                encoder: minilm
                params:
                  index: \(root)/weights/sw-ranking-minilm.safetensors
                  gamma: 1
                  neighbors: 100
                  weight_unit: prompt
            """
    }

    public func run(log: @escaping @Sendable (String) -> Void) async throws -> Report {
        let directory = NSTemporaryDirectory() + "routerd-bench-fleet-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Host 0 runs without `fleet:`: the route baseline. Hosts 1... share.
        var daemons: [ChildDaemon] = []
        defer { for daemon in daemons { daemon.stop() } }
        for index in 0...hosts {
            let file = "\(directory)/h\(index).yaml"
            try config(index, directory: directory, fleet: index > 0).write(toFile: file, atomically: true, encoding: .utf8)
            daemons.append(
                try ChildDaemon(binary: routerd, config: file, socket: "\(directory)/h\(index).sock", log: "\(directory)/h\(index).log"))
        }
        let sockets = (0...hosts).map { "\(directory)/h\($0).sock" }
        let group = MultiThreadedEventLoopGroup.singleton
        var report = Report(hosts: hosts)

        // Every daemon embeds the pool once.
        log("fleet bench: embedding \(prompts.count) prompts on \(sockets.count) daemons")
        for socket in sockets {
            let connection = try await RouterConnection.connect(socketPath: socket, group: group)
            for prompt in prompts { _ = try await connection.route(RouteRequest(router: "sw", prompt: prompt)) }
            await connection.close()
        }

        // 1. Route throughput, fleet on (host 1) and off (host 0), in turns; without sessions, and
        // with a session on every request (conversations of 4 turns, so a quarter of the requests
        // start one the fleet must hear of), so the session journal and its shipping are on the
        // path measured.
        for round in 0..<5 {
            for withSessions in [false, true] {
                for (socket, on) in [(sockets[1], true), (sockets[0], false)] {
                    let result = try await RouteLoad.measure(
                        path: socket, connections: 4, total: routeRequests,
                        lines: { connection, count in
                            try (0..<count).map { index in
                                let request = RouteRequest(
                                    router: "sw", prompt: prompts[(connection * 7 + index) % prompts.count],
                                    session: withSessions ? "s\(round)-\(connection)-\(index / 4)" : nil)
                                return ByteBuffer(bytes: try RequestCodec.encode(.route(request), id: nil))
                            }
                        }, expect: nil, group: group)
                    report.route[RouteRun(fleet: on, sessions: withSessions), default: []].append(result.perSecond)
                    log(
                        String(
                            format: "fleet bench: route%@, fleet %@: %.0f decisions/s", withSessions ? " with sessions" : "", on ? "on" : "off",
                            result.perSecond))
                }
            }
        }
        daemons[0].stop()

        // 2. Outcomes on every fleet host: as fast as they are taken (a closed loop), then paced
        // at `rate` across the fleet for the lag, and through the outage.
        let fleetSockets = Array(sockets.dropFirst())
        let control = try await fleetSockets.asyncMap { try await RouterConnection.connect(socketPath: $0, group: group) }
        defer { for connection in control { Task { await connection.close() } } }
        func fleetStats() async throws -> [FleetStats] {
            try await control.asyncMap { connection in
                guard let fleet = try await connection.stats().fleet else { throw BenchmarkRunError("a fleet host's stats have no fleet") }
                return fleet
            }
        }
        let clock = ContinuousClock()

        log("fleet bench: \(hosts) hosts × \(connections) connections × \(depth) in flight of feedback, as fast as taken, for \(Int(seconds)) s")
        let capacity = startLoad(on: fleetSockets, rate: nil, group: group)
        try await Task.sleep(for: .seconds(seconds))
        let accepted = capacity.counters.accepted.load(ordering: .relaxed)
        let elapsed = (clock.now - capacity.start) / .seconds(1)
        capacity.counters.stop.store(true, ordering: .relaxed)
        try await capacity.task.value
        report.outcomesPerSecond = Double(accepted) / elapsed
        report.loadSeconds = elapsed
        report.refused = capacity.counters.refused.load(ordering: .relaxed)
        log(String(format: "fleet bench: %.0f outcomes/s accepted", report.outcomesPerSecond))

        log("fleet bench: \(Int(rate)) outcomes/s across the fleet for \(Int(seconds)) s")
        let paced = startLoad(on: fleetSockets, rate: rate, group: group)
        defer { paced.counters.stop.store(true, ordering: .relaxed) }
        var p50s: [Double] = []
        var p99s: [Double] = []
        while clock.now - paced.start < .seconds(seconds) {
            try await Task.sleep(for: .seconds(1))
            let stats = try await fleetStats()
            // The first seconds are the tailers' first reads and the learners' first publishes.
            if clock.now - paced.start >= .seconds(3) {
                p50s += stats.compactMap(\.lagP50Ms)
                p99s += stats.compactMap(\.lagP99Ms)
            }
            log(
                "fleet bench: \(paced.counters.accepted.load(ordering: .relaxed)) accepted; outboxes "
                    + stats.map { "\($0.outboxDepth)" }.joined(separator: "/") + "; lag p50/p99 "
                    + stats.map { String(format: "%.0f/%.0f", $0.lagP50Ms ?? -1, $0.lagP99Ms ?? -1) }.joined(separator: ", ") + " ms")
        }
        report.pacedPerSecond = Double(paced.counters.accepted.load(ordering: .relaxed)) / ((clock.now - paced.start) / .seconds(1))
        report.lagP50Milliseconds = p50s.sorted().dropFirst(p50s.count / 2).first
        report.lagP99Milliseconds = p99s.max()

        // 3. The database goes away for a while under the same paced load, and comes back.
        if let databaseControl, outageSeconds > 0 {
            log("fleet bench: stopping the database for \(Int(outageSeconds)) s")
            try Self.shell("\(databaseControl) stop")
            try await Task.sleep(for: .seconds(outageSeconds))
            try Self.shell("\(databaseControl) start")
            let restart = clock.now
            let atRestart = try await fleetStats()
            // What each host had acknowledged when the database came back.
            let acknowledged = atRestart.map { Int($0.shipped) + Int($0.outboxDepth) }
            report.outageSeconds = outageSeconds
            report.outboxAtRestart = atRestart.reduce(0) { $0 + Int($1.outboxDepth) }
            log("fleet bench: the database is back; \(report.outboxAtRestart) outcomes wait in the outboxes")
            while clock.now - restart < .seconds(300) {
                try await Task.sleep(for: .milliseconds(250))
                let stats = try await fleetStats()
                let total = acknowledged.reduce(0, +)
                let caughtUp = stats.indices.allSatisfy { host in
                    Int(stats[host].shipped) >= acknowledged[host]
                        && Int(stats[host].received + stats[host].skipped) >= total - acknowledged[host]
                }
                if caughtUp {
                    report.catchUpSeconds = (clock.now - restart) / .seconds(1)
                    break
                }
            }
        }
        paced.counters.stop.store(true, ordering: .relaxed)
        try await paced.task.value
        report.refused += paced.counters.refused.load(ordering: .relaxed)
        return report
    }

    /// Feedback on every socket, `connections` each with `depth` in flight: as fast as answered,
    /// or paced so that the fleet is sent `rate` a second in all. Runs until its counters' stop.
    private func startLoad(on sockets: [String], rate: Double?, group: any EventLoopGroup) -> (
        task: Task<Void, any Error>, counters: LoadCounters, start: ContinuousClock.Instant
    ) {
        let counters = LoadCounters()
        let (pool, connections, depth) = (prompts, connections, depth)
        // The time between two windows of one connection, paced.
        let interval = rate.map { Double(depth) * Double(sockets.count * connections) / $0 }
        let start = ContinuousClock.now
        let task = Task {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for (host, socket) in sockets.enumerated() {
                    for lane in 0..<connections {
                        tasks.addTask {
                            let connection = try await RouterConnection.connect(socketPath: socket, group: group)
                            var index = lane
                            // Lanes start spread over one interval, not all at once.
                            var due = start + .seconds((interval ?? 0) * Double(host * connections + lane) / Double(sockets.count * connections))
                            while !counters.stop.load(ordering: .relaxed) {
                                if let interval {
                                    if due > .now { try await Task.sleep(until: due) }
                                    due += .seconds(interval)
                                }
                                let lines = try (0..<depth).map { offset in
                                    let n = index + offset
                                    let request = Request.feedback(
                                        FeedbackRequest(
                                            subject: .prompt(router: "sw", text: pool[(n * 13 + host) % pool.count]),
                                            model: n % 2 == 0 ? "gpt-4-1106-preview" : "mistralai/Mixtral-8x7B-Instruct-v0.1",
                                            value: .pointwise(quality: Double(n % 5) / 4)))
                                    return connection.sendLine(ByteBuffer(bytes: try RequestCodec.encode(request, id: nil)))
                                }
                                index += depth
                                for reply in try await EventLoopFuture.whenAllSucceed(lines, on: connection.eventLoop).get() {
                                    if reply.readableBytesView.starts(with: Array(#"{"ok":true"#.utf8)) {
                                        counters.accepted.add(1, ordering: .relaxed)
                                    } else {
                                        counters.refused.add(1, ordering: .relaxed)
                                    }
                                }
                            }
                            await connection.close()
                        }
                    }
                }
                try await tasks.waitForAll()
            }
        }
        return (task, counters, start)
    }

    static func shell(_ command: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw BenchmarkRunError("`\(command)` failed with status \(process.terminationStatus)") }
    }
}

/// One kind of route run.
public struct RouteRun: Sendable, Hashable {
    public var fleet: Bool
    public var sessions: Bool
}

/// The closed loops' shared state.
private final class LoadCounters: Sendable {
    let stop = Atomic<Bool>(false)
    let accepted = Atomic<Int>(0)
    let refused = Atomic<Int>(0)
}

extension Array {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async throws -> [T] {
        var results: [T] = []
        results.reserveCapacity(count)
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
