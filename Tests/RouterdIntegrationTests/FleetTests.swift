import Foundation
import RouterProtocol
import RouterdTestSupport
import StableHash
import Testing

/// Daemons sharing outcomes through a real PostgreSQL server (a throwaway cluster per test):
/// each learns from every host's outcomes, and ends with the learned state of one daemon that saw
/// them all; the database going away costs freshness, never an outcome.
@Suite(.timeLimit(.minutes(10)), .requires(.encoderModel), .requires(.postgres))
struct FleetTests {
    /// Prompts the tiny index never saw, and what each host is told about them.
    static let prompts = (1...12).map {
        "Write a short poem about \(["autumn", "rain", "the sea", "a cat", "snow", "the moon", "bread", "a train", "a kite", "fog", "a bell", "ink"][$0 - 1])."
    }
    static let query = #"{"op":"route","router":"sw","prompt":"Write a short poem about spring flowers."}"#

    /// The report for prompt `index`: pairwise for most, pointwise for every third, so both
    /// kinds cross the database.
    static func feedback(_ index: Int) -> String {
        let prompt = prompts[index % prompts.count]
        if index % 3 == 2 {
            return #"{"op":"feedback","router":"sw","prompt":"\#(prompt)","model":"small","quality":\#(index % 2 == 0 ? 1 : 0.75)}"#
        }
        return
            #"{"op":"feedback","router":"sw","prompt":"\#(prompt)","model":"small","outcome":"\#(index % 4 == 0 ? "tie" : "win")","against":"big"}"#
    }

    static func config(index: String, feedback: String, fleet: String?) -> (String) -> String {
        { socket in
            TestConfig.yaml(
                socket: socket,
                routers: TinyBattles.router("sw", plugin: "sw_ranking", params: "index: \(index)"),
                // The tests hold connections open across waits for the database.
                limits: "  idle_timeout: 600",
                encoders: EncoderFixture.encoders(),
                extra: """
                    feedback:
                      directory: \(feedback)
                      learning: {publish_every: 8, publish_interval_ms: 100}
                    \(fleet ?? "")
                    """)
        }
    }

    static func fleetSection(_ cluster: PostgresCluster, passwordFile: String, host: String, url: String? = nil) -> String {
        """
        fleet:
          url: \(url ?? cluster.url)
          password_file: \(passwordFile)
          name: test
          host: \(host)
          poll_interval_ms: 200
          outbox_compact_bytes: 1024
        """
    }

    static func learned(_ connection: LineSocket) throws -> [String: Any] {
        let routers = try connection.request(#"{"op":"learn","router":"sw"}"#).result["routers"] as? [[String: Any]]
        return routers?.first?["learned"] as? [String: Any] ?? [:]
    }

    static func fleetStats(_ connection: LineSocket) throws -> [String: Any] {
        try connection.request(#"{"op":"stats"}"#).result["fleet"] as? [String: Any] ?? [:]
    }

    struct Member {
        let directory: TemporaryDirectory
        let daemon: Daemon
        let connection: LineSocket
    }

    static func start(
        host: String?, index: String, cluster: PostgresCluster, passwordFile: String, metricsPort: Int? = nil,
        in existing: TemporaryDirectory? = nil, url: String? = nil
    ) throws -> Member {
        let directory = try existing ?? TemporaryDirectory()
        let fleet = host.map { fleetSection(cluster, passwordFile: passwordFile, host: $0, url: url) }
        let metrics = metricsPort.map { "\nmetrics:\n  listen: 127.0.0.1:\($0)\n" } ?? ""
        let base = config(index: index, feedback: directory.path + "/feedback", fleet: fleet)
        let daemon = try Daemon(directory: directory, config: { base($0) + metrics })
        return Member(directory: directory, daemon: daemon, connection: try daemon.connect())
    }

    /// A tiny index trained here, a throwaway cluster, and a password file for it (0600), in a
    /// folder that lives as long as the fixture.
    struct Fixture {
        let shared: TemporaryDirectory
        let index: String
        let cluster: PostgresCluster
        let passwordFile: String
    }

    static func prepare() throws -> Fixture {
        let database = try Self.database()
        let index = database.shared.path + "/sw.safetensors"
        let build = try TinyBattles.trainIndex(at: index, in: database.shared)
        guard build.status == 0 else { throw HarnessError("training the tiny index failed: \(build.stderr)") }
        return Fixture(shared: database.shared, index: index, cluster: database.cluster, passwordFile: database.passwordFile)
    }

    /// A throwaway cluster and a password file for it (0600), in a folder that lives as long as
    /// the value: for the tests that need no index.
    struct Database {
        let shared: TemporaryDirectory
        let cluster: PostgresCluster
        let passwordFile: String
    }

    static func database() throws -> Database {
        let shared = try TemporaryDirectory()
        let cluster = try PostgresCluster()
        let passwordFile = try shared.write("pg-password", cluster.password)
        chmod(passwordFile, 0o600)
        return Database(shared: shared, cluster: cluster, passwordFile: passwordFile)
    }

    @Test func threeDaemonsLearnWhatOneDaemonThatSawEverythingLearns() throws {
        let fixture = try Self.prepare()
        // The index and the password file are read again when a daemon restarts.
        defer { withExtendedLifetime(fixture) {} }
        let (index, cluster, passwordFile) = (fixture.index, fixture.cluster, fixture.passwordFile)

        let metricsPort = ObservabilityTests.freePort()
        let hosts = try ["a", "b", "c"].map {
            try Self.start(host: $0, index: index, cluster: cluster, passwordFile: passwordFile, metricsPort: $0 == "a" ? metricsPort : nil)
        }
        let reference = try Self.start(host: nil, index: index, cluster: cluster, passwordFile: passwordFile)
        let before = try reference.connection.decision(Self.query).strongScore

        // Each host hears a third of the stream; the reference hears all of it.
        let total = 36
        for report in 0..<total {
            #expect(try hosts[report % 3].connection.request(Self.feedback(report)).ok)
            #expect(try reference.connection.request(Self.feedback(report)).ok)
        }
        let referenceDone = try eventually(within: 30) { (try Self.learned(reference.connection)["learned_events"] as? Int) == total }
        #expect(referenceDone, "\(String(describing: try? Self.learned(reference.connection)))")
        let expected = try Self.learned(reference.connection)
        let after = try reference.connection.decision(Self.query).strongScore
        #expect(after < before, "the small model won or tied every poem: \(before) -> \(after)")

        for (name, host) in zip(["a", "b", "c"], hosts) {
            let caughtUp = try eventually(within: 30) { (try Self.learned(host.connection)["learned_events"] as? Int) == total }
            #expect(
                caughtUp,
                "host \(name): \(String(describing: try? Self.learned(host.connection))); \(String(describing: try? Self.fleetStats(host.connection)))"
            )
            let learned = try Self.learned(host.connection)
            for key in ["learned_prompts", "learned_wins", "learned_events"] {
                #expect(learned[key] as? Int == expected[key] as? Int, "host \(name) \(key): \(learned) vs \(expected)")
            }
            // Outcomes are folded in as sums per prompt, so the order they arrived in does not
            // matter; the sums are Float32, and added in another order they round differently by
            // up to about 1e-7 of the score (seen: 1.5e-7), hence the tolerance.
            let score = try host.connection.decision(Self.query).strongScore
            #expect(abs(score - after) < 1e-6, "host \(name): \(score) vs \(after)")
            let stats = try Self.fleetStats(host.connection)
            #expect(stats["shipped"] as? Int == total / 3 && stats["received"] as? Int == total - total / 3, "\(stats)")
            #expect(stats["outbox_depth"] as? Int == 0 && stats["connected"] as? Bool == true && stats["last_error"] == nil, "\(stats)")
            #expect(stats["lag_p50_ms"] is Double, "\(stats)")
        }
        // Prometheus shows what stats shows.
        let metrics = try ObservabilityTests.get(port: metricsPort, path: "/metrics").body
        for line in [
            "routerd_fleet_connected 1.0", "routerd_fleet_outbox_outcomes 0.0", "routerd_fleet_shipped_outcomes_total \(total / 3)",
            #"routerd_fleet_received_outcomes_total{kind="learned"} \#(total - total / 3)"#, "routerd_fleet_last_attempt_failed 0.0",
        ] {
            #expect(metrics.contains(line + "\n"), "\(line) in \(metrics)")
        }
        #expect(metrics.contains(#"routerd_fleet_replication_lag_seconds{quantile="0.99"}"#), "\(metrics)")
        // Every outcome is in the database once.
        #expect(try cluster.query("SELECT count(*), count(DISTINCT (source, seq)) FROM routerd_outcomes WHERE fleet = 'test'") == "\(total)|\(total)")
        #expect(try cluster.query("SELECT count(*) FROM routerd_sources WHERE fleet = 'test'") == "3")
    }

    /// The database stops mid-stream while one host acknowledges outcomes; that host is then
    /// killed with SIGKILL and the other stopped, both restarted; the database returns.
    @Test func theDatabaseGoingAwayCostsFreshnessNotOutcomes() throws {
        let fixture = try Self.prepare()
        // The index and the password file are read again when a daemon restarts.
        defer { withExtendedLifetime(fixture) {} }
        let (index, cluster, passwordFile) = (fixture.index, fixture.cluster, fixture.passwordFile)
        var a = try Self.start(host: "a", index: index, cluster: cluster, passwordFile: passwordFile)
        var b = try Self.start(host: "b", index: index, cluster: cluster, passwordFile: passwordFile)

        for report in 0..<6 { #expect(try a.connection.request(Self.feedback(report)).ok) }
        #expect(try eventually(within: 30) { (try Self.learned(b.connection)["learned_events"] as? Int) == 6 })

        // The database stops: both keep routing and acknowledging; a's outbox grows.
        try cluster.stop()
        for report in 6..<18 {
            #expect(try a.connection.request(Self.feedback(report)).ok)
            #expect(try b.connection.decision(Self.query).strongScore >= 0)
        }
        let grew = try eventually(within: 20) {
            let stats = try Self.fleetStats(a.connection)
            return stats["outbox_depth"] as? Int == 12 && stats["last_error"] is String
        }
        #expect(grew, "\(String(describing: try? Self.fleetStats(a.connection)))")
        #expect((try Self.learned(b.connection)["learned_events"] as? Int) == 6)

        // a is killed (no shutdown of any kind) and restarted: what it acknowledged is in its
        // outbox, which it ships from where its last shipped batch ended.
        #expect(a.daemon.stop(signal: SIGKILL) == SIGKILL)
        // The shipped cursor's offset is set into the middle of a line, as a crash between an
        // outbox rewrite and the cursor's update would leave it: shipping resumes by seq.
        let cursorFile = a.directory.path + "/feedback/fleet-shipped.json"
        var cursor = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: cursorFile))) as? [String: Any])
        cursor["offset"] = 5
        try JSONSerialization.data(withJSONObject: cursor).write(to: URL(fileURLWithPath: cursorFile))
        a = try Self.start(host: "a", index: index, cluster: cluster, passwordFile: passwordFile, in: a.directory)
        #expect(try Self.fleetStats(a.connection)["outbox_depth"] as? Int == 12, "\(String(describing: try? Self.fleetStats(a.connection)))")

        // b is stopped meanwhile and comes back: it resumes from its cursor.
        b.daemon.stop()
        let restarted = try Daemon(
            directory: b.directory,
            config: Self.config(
                index: index, feedback: b.directory.path + "/feedback", fleet: Self.fleetSection(cluster, passwordFile: passwordFile, host: "b")))
        b = Member(directory: b.directory, daemon: restarted, connection: try restarted.connect())
        #expect((try Self.learned(b.connection)["learned_events"] as? Int) == 6)

        // The database returns: the outbox drains and b learns the rest, each outcome once.
        try cluster.start()
        let drained = try eventually(within: 60) { (try Self.learned(b.connection)["learned_events"] as? Int) == 18 }
        #expect(
            drained,
            "\(String(describing: try? Self.learned(b.connection))); a: \(String(describing: try? Self.fleetStats(a.connection))); b: \(String(describing: try? Self.fleetStats(b.connection)))"
        )
        #expect(try eventually(within: 10) { try Self.fleetStats(a.connection)["outbox_depth"] as? Int == 0 })
        #expect(try cluster.query("SELECT count(*), count(DISTINCT seq) FROM routerd_outcomes") == "18|18")
        // The outbox was rewritten without its shipped lines (a line is about 0.2 KiB; 1 KiB of
        // them trigger a rewrite), so it holds less than the 18 lines acknowledged.
        let outbox = try String(contentsOfFile: a.directory.path + "/feedback/fleet-outbox.jsonl", encoding: .utf8)
        #expect(outbox.split(separator: "\n").count < 18, "\(outbox.split(separator: "\n").count) lines")
        #expect((try Self.fleetStats(a.connection)["compactions"] as? Int ?? 0) >= 1, "\(String(describing: try? Self.fleetStats(a.connection)))")
    }

    /// Host a reaches the database through a link that holds every chunk 200 ms each way; b
    /// directly. a keeps routing and acknowledging at its own speed; its outcomes reach b later,
    /// each once.
    @Test func aSlowNetworkCostsFreshnessNotOutcomesOrRoutes() throws {
        let fixture = try Self.prepare()
        defer { withExtendedLifetime(fixture) {} }
        let (index, cluster, passwordFile) = (fixture.index, fixture.cluster, fixture.passwordFile)
        let proxy = try DelayingProxy(to: cluster.port, delay: 0.2)
        defer { proxy.stop() }
        let slowURL = "postgresql://\(PostgresCluster.user)@127.0.0.1:\(proxy.port)/postgres"
        let a = try Self.start(host: "a", index: index, cluster: cluster, passwordFile: passwordFile, url: slowURL)
        let b = try Self.start(host: "b", index: index, cluster: cluster, passwordFile: passwordFile)

        for report in 0..<12 {
            #expect(try a.connection.request(Self.feedback(report)).ok)
            #expect(try a.connection.decision(Self.query).strongScore >= 0)
            #expect(try b.connection.decision(Self.query).strongScore >= 0)
        }
        let learned = try eventually(within: 60) { (try Self.learned(b.connection)["learned_events"] as? Int) == 12 }
        #expect(learned, "\(String(describing: try? Self.learned(b.connection))); a: \(String(describing: try? Self.fleetStats(a.connection)))")
        #expect(try eventually(within: 20) { try Self.fleetStats(a.connection)["outbox_depth"] as? Int == 0 })
        #expect(try cluster.query("SELECT count(*), count(DISTINCT seq) FROM routerd_outcomes") == "12|12")
        // The link was slow: from a's acknowledgement to b's learner took at least one delayed
        // round trip of a's shipper.
        let lag = try #require(try Self.fleetStats(b.connection)["lag_p50_ms"] as? Double)
        #expect(lag >= 400, "b's lag p50 \(lag) ms")
    }

    /// A daemon of the fleet `test` that shares `share` and routes with `routers`, without feedback.
    static func member(
        host: String, share: String, routers: String, cluster: PostgresCluster, passwordFile: String, encoders: String = "",
        models: String = ""
    ) throws -> Member {
        let directory = try TemporaryDirectory()
        let daemon = try Daemon(directory: directory) { socket in
            TestConfig.yaml(
                socket: socket, routers: routers, limits: "  idle_timeout: 600", encoders: encoders, models: models,
                extra: """
                    fleet:
                      url: \(cluster.url)
                      password_file: \(passwordFile)
                      name: test
                      host: \(host)
                      share: [\(share)]
                      poll_interval_ms: 200
                      budget_interval_ms: 50
                    """)
        }
        return Member(directory: directory, daemon: daemon, connection: try daemon.connect())
    }

    /// A session's turn on `member`: the policy picks the strong model with threshold 0 and the
    /// weak one with threshold 1 (the seeded random router's scores are below 1).
    static func turn(_ member: Member, session: String, strong: Bool) throws -> Decision {
        try member.connection.decision(
            #"{"op":"route","router":"random","prompt":"Tell me more.","session":"\#(session)","threshold":\#(strong ? 0 : 1)}"#)
    }

    static func sessionsReceived(_ member: Member) throws -> Int {
        try fleetStats(member.connection)["sessions_received"] as? Int ?? 0
    }

    @Test func aSessionKeepsItsModelOnWhicheverHostServesItsNextTurn() throws {
        let database = try Self.database()
        // The folder holds the password file; it must outlive the daemons.
        defer { withExtendedLifetime(database) {} }
        let (cluster, passwordFile) = (database.cluster, database.passwordFile)
        let (a, b) = try (
            Self.member(host: "a", share: "sessions", routers: TestConfig.randomRouter(), cluster: cluster, passwordFile: passwordFile),
            Self.member(host: "b", share: "sessions", routers: TestConfig.randomRouter(), cluster: cluster, passwordFile: passwordFile)
        )

        // The first turn goes to the strong model on a; the next turn, on b, would go to the weak
        // model, but the conversation keeps the strong one.
        let first = try Self.turn(a, session: "chat-1", strong: true)
        #expect(first.model == TestConfig.strong && first.affinity == "new")
        #expect(try eventually(within: 10) { try Self.sessionsReceived(b) >= 1 }, "\(String(describing: try? Self.fleetStats(b.connection)))")
        let second = try Self.turn(b, session: "chat-1", strong: false)
        #expect(second.model == TestConfig.strong && second.affinity == "kept", "\(second)")
        // Another conversation on b is b's policy's alone.
        let other = try Self.turn(b, session: "chat-2", strong: false)
        #expect(other.model == TestConfig.weak && other.affinity == "new", "\(other)")

        // A session that moves up on one host is up everywhere: chat-2 escalates on a (which
        // learns of it from b first), then its next turn on b keeps the strong model. (b's turn of
        // chat-1 kept the model the fleet already has for it, and was not shipped again.)
        #expect(try eventually(within: 10) { try Self.sessionsReceived(a) >= 1 }, "\(String(describing: try? Self.fleetStats(a.connection)))")
        let escalated = try Self.turn(a, session: "chat-2", strong: true)
        #expect(escalated.model == TestConfig.strong && escalated.affinity == "escalated", "\(escalated)")
        #expect(try eventually(within: 10) { try Self.sessionsReceived(b) >= 2 }, "\(String(describing: try? Self.fleetStats(b.connection)))")
        let kept = try Self.turn(b, session: "chat-2", strong: false)
        #expect(kept.model == TestConfig.strong && kept.affinity == "kept", "\(kept)")

        // One row per conversation, the last decision of either host; each host shipped its own turns.
        #expect(
            try cluster.query("SELECT router, session, model FROM routerd_sessions WHERE fleet = 'test' ORDER BY session") == """
                random|chat-1|\(TestConfig.strong)
                random|chat-2|\(TestConfig.strong)
                """)
        // a shipped chat-1's first turn and chat-2's escalation; b shipped only chat-2's first turn:
        // its other turns kept a model the fleet had.
        #expect(try Self.fleetStats(a.connection)["sessions_shipped"] as? Int == 2)
        #expect(try Self.fleetStats(b.connection)["sessions_shipped"] as? Int == 1)
        #expect(try Self.fleetStats(a.connection)["share"] as? [String] == ["sessions"])
    }

    /// Two hosts hold a fleet budget of a 30% share of gpt-4 together: host a's prompts drift from
    /// MMLU-style questions to Arena chat, host b's stay questions. The check is the fleet's share
    /// over both hosts' last windows, from the decisions the test received, at every checkpoint.
    @Test(.requires(.sharedData("train/mmlu-pro.quality.jsonl")))
    func aFleetBudgetHoldsTheFleetsShareWhileOneHostDrifts() throws {
        let database = try Self.database()
        // The folder holds the password file; it must outlive the daemons.
        defer { withExtendedLifetime(database) {} }
        let (cluster, passwordFile) = (database.cluster, database.passwordFile)
        let window = 500
        let count = 1800
        // The same MF router twice: `share` holds the budget; `warm` has none, and routing each
        // distinct prompt through it first fills the embedding cache, so the budget's replay runs
        // at the speed of decisions, many to each budget exchange.
        let routers =
            BudgetTests.router("share", target: "share: 0.3, model: \(TestConfig.strong), window: \(window)") + "\n"
            + BudgetTests.router("warm", target: "share: 0.5, model: \(TestConfig.strong)")
        let models = "models: \(Package.root)/etc/routerd/models.yaml"
        let hosts = try ["a", "b"].map {
            try Self.member(
                host: $0, share: "budgets", routers: routers, cluster: cluster, passwordFile: passwordFile, encoders: EncoderFixture.encoders(),
                models: models)
        }
        let drifting = try BudgetTests.driftingStream(count: count, pool: 80)
        let questions = Array(try BudgetTests.prompts("mmlu-pro.quality.jsonl").prefix(80))
        let steady = (0..<count).map { questions[Int(SplitMix64.mix(UInt64($0) &+ 0x5EED) % UInt64(questions.count))] }
        let streams = [drifting, steady]
        let connections = hosts.map(\.connection)
        @Sendable func route(_ host: Int, _ router: String, _ prompt: String) throws -> Decision {
            let escaped = String(decoding: try JSONEncoder().encode(prompt), as: UTF8.self)
            return try connections[host].decision(#"{"op":"route","router":"\#(router)","prompt":\#(escaped)}"#)
        }
        // Both hosts warm their caches at once.
        DispatchQueue.concurrentPerform(iterations: 2) { host in
            for prompt in Set(streams[host]) { _ = try? route(host, "warm", prompt) }
        }

        var strong: [[Bool]] = [[], []]
        var checkpoints: [(index: Int, fleet: Double, local: [Double], reported: [Double?], lambdas: [Double])] = []
        for index in 0..<count {
            for host in 0..<2 { strong[host].append(try route(host, "share", streams[host][index]).model == TestConfig.strong) }
            // About one budget exchange (50 ms) per 25 decisions of each host.
            usleep(1000)
            if index + 1 >= 2 * window, (index + 1) % 100 == 0 {
                let windows = strong.map { $0.suffix(window) }
                let local = windows.map { Double($0.filter { $0 }.count) / Double(window) }
                let budgets = try hosts.map {
                    try #require(
                        ((try $0.connection.request(#"{"op":"stats"}"#).result["routers"] as? [String: Any])?["share"] as? [String: Any])?["budget"]
                            as? [String: Any])
                }
                checkpoints.append(
                    (
                        index + 1, local.reduce(0, +) / 2, local, budgets.map { $0["fleet_achieved"] as? Double },
                        budgets.map { $0["lambda"] as? Double ?? 0 }
                    ))
            }
        }
        for checkpoint in checkpoints {
            print(
                String(
                    format: "fleet budget: after %4d decisions per host the fleet's share is %.3f (a %.3f, b %.3f; a reports %.3f), λ a %.1f b %.1f",
                    checkpoint.index, checkpoint.fleet, checkpoint.local[0], checkpoint.local[1], checkpoint.reported[0] ?? -1, checkpoint.lambdas[0],
                    checkpoint.lambdas[1]))
            #expect(abs(checkpoint.fleet - 0.3) <= 0.3 * 0.05, "after \(checkpoint.index) decisions per host: the fleet's share \(checkpoint.fleet)")
            #expect(checkpoint.reported.allSatisfy { $0 != nil }, "each host reports the fleet's share: \(checkpoint.reported)")
        }
        // The share went where the prompts gain most from gpt-4: to the host whose prompts became
        // chat, while each host alone would hold 30% of its own; both decide under about one λ
        // (each fits the same curves, read at most one exchange apart).
        let last = try #require(checkpoints.last)
        #expect(last.local[0] > last.local[1] + 0.1, "local shares \(last.local)")
        #expect(abs(last.lambdas[0] - last.lambdas[1]) <= 0.35 * max(last.lambdas[0], last.lambdas[1]), "λ \(last.lambdas)")
        for host in hosts {
            let stats = try Self.fleetStats(host.connection)
            #expect(stats["budget_hosts"] as? Int == 1 && (stats["budget_exchanges"] as? Int ?? 0) > 10, "\(stats)")
        }
        #expect(try cluster.query("SELECT count(*) FROM routerd_budgets WHERE fleet = 'test' AND router = 'share'") == "2")
    }
}
