import ArgumentParser
import Foundation
import RouterClient
import RouterConfig
import RouterEngine
import RouterJSON
import RouterProtocol
import RouterVocabulary

@main
struct Routerctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routerctl",
        abstract: "Ask routerd for routing decisions and inspect or control it.",
        version: Engine.version,
        subcommands: [
            Route.self, Score.self, Embed.self, FeedbackCommand.self, Learn.self, Routers.self, Status.self, Stats.self, Reload.self, SetCommand.self,
            Train.self, Label.self,
            Eval.self,
            Calibrate.self, Bench.self,
            BenchEncoder.self, BenchLearning.self, BenchColdStart.self, BenchLimits.self, BenchNovelty.self, BenchOffPolicy.self, BenchPublish.self,
            BenchGateway.self,
            BenchFleet.self,
            Soak.self,
            EchoServerCommand.self,
        ])
}

/// Options every subcommand shares.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "routerd's socket. Default: $ROUTERD_SOCKET, else socket.path of --config, else \(ConfigLoader.defaultSocketPath).")
    var socket: String?

    @Option(name: [.short, .long], help: "The config whose socket.path to use.")
    var config: String = ConfigLoader.defaultPath

    @Flag(help: "Print the daemon's JSON response instead of the readable form.")
    var json = false

    var socketPath: String {
        if let socket { return socket }
        if let path = ProcessInfo.processInfo.environment["ROUTERD_SOCKET"], !path.isEmpty { return path }
        return ConfigLoader.socketPath(inConfig: config) ?? ConfigLoader.defaultSocketPath
    }

    /// Connects, runs `body`, and turns client errors into a message and exit code 1.
    func withConnection<T: Sendable>(_ body: (RouterConnection) async throws -> T) async throws -> T {
        do {
            let connection = try await RouterConnection.connect(socketPath: socketPath)
            defer { Task { await connection.close() } }
            return try await body(connection)
        } catch {
            printError("routerctl: \(error)")
            throw ExitCode(1)
        }
    }

    /// Prints either the raw response (with --json) or the readable form.
    func run<T: Decodable & Sendable>(_ request: Request, as type: T.Type, readable: (T) -> String) async throws {
        if json {
            let line = try await withConnection { try await $0.rawResponse(request) }
            print(String(decoding: line, as: UTF8.self))
            if let envelope = try? JSONDecoder().decode(ResponseCodec.Envelope.self, from: line), !envelope.ok { throw ExitCode(1) }
        } else {
            let result = try await withConnection { try await $0.send(request, as: T.self) }
            print(readable(result))
        }
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

struct Route: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Decide which model answers a prompt.")

    @OptionGroup var options: ConnectionOptions
    @Option(name: [.short, .long], help: "The router instance.") var router: String = "random"
    @Option(help: "Override the router's threshold for this request.") var threshold: Double?
    @Option(help: "Choose by predicted quality − λ × cost (USD) for this request.") var lambda: Double?
    @Option(name: .customLong("cheapest-within"), help: "Choose the cheapest model within ε of the best predicted quality.")
    var cheapestWithin: Double?
    @Option(help: "A conversation id: its model sticks, and only moves up.") var session: String?
    @Argument(help: "The prompt; read from standard input when absent.") var prompt: String?

    func run() async throws {
        let text = prompt ?? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        let request = RouteRequest(
            router: router, prompt: text, threshold: threshold, lambda: lambda, cheapestWithin: cheapestWithin, session: session)
        try await options.run(.route(request), as: Decision.self) { decision in
            var lines = ["\(decision.model)  (\(decision.tier.map { "\($0.rawValue), " } ?? "")policy \(decision.policy))"]
            if let score = decision.score, let threshold = decision.threshold {
                lines.append("score \(format(score)) \(score >= threshold ? "≥" : "<") threshold \(format(threshold))")
            }
            if let lambda = decision.lambda { lines.append("λ \(lambda)") }
            if let epsilon = decision.epsilon { lines.append("ε \(epsilon)") }
            if let affinity = decision.affinity { lines.append("session: \(affinity)") }
            lines.append(
                "router \(decision.router) · generation \(decision.generation) · \(decision.elapsedMicroseconds) µs · decision \(decision.decisionID)"
            )
            let rows = decision.candidates.map { candidate in
                [
                    (candidate.model == decision.model ? "→ " : "  ") + candidate.model, format(candidate.quality),
                    candidate.cost.map { String(format: "%.6f", $0) } ?? "-",
                ]
            }
            return lines.joined(separator: "\n") + "\n" + table(header: ["CANDIDATE", "QUALITY", "COST (USD)"], rows: rows)
        }
    }
}

struct FeedbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "feedback",
        abstract: "Report how a model did on a routed prompt; the daemon replies once the row is on disk.",
        discussion: """
            Name the decision (--decision, the decision_id a route reply carried), or the router and the prompt.
            Give --outcome win|loss|tie with --against, or --quality between 0 and 1, or --failed.
            """)

    @OptionGroup var options: ConnectionOptions
    @Option(help: "The decision_id of a route reply.") var decision: String?
    @Option(name: [.short, .long], help: "The router, when naming the prompt instead of a decision.") var router: String?
    @Option(help: "The prompt, when naming it instead of a decision.") var prompt: String?
    @Option(help: "The model the outcome is about.") var model: String
    @Option(help: "win, loss or tie, against the model of --against.") var outcome: PairwiseResult?
    @Option(help: "The other model of a win, loss or tie.") var against: String?
    @Option(help: "A quality between 0 and 1 (a thumbs-up is 1).") var quality: Double?
    @Flag(help: "The model's call failed (an error, a timeout, a refusal): learned as quality 0, counted apart.") var failed = false

    func validate() throws {
        guard (decision == nil) != (router == nil && prompt == nil) else {
            throw ValidationError("give --decision, or --router and --prompt")
        }
        if decision == nil, router == nil || prompt == nil { throw ValidationError("--router and --prompt go together") }
        guard [outcome != nil, quality != nil, failed].filter({ $0 }).count == 1 else {
            throw ValidationError("give one of --outcome (with --against), --quality or --failed")
        }
        if outcome != nil, against == nil { throw ValidationError("--outcome needs --against") }
    }

    func run() async throws {
        let subject: FeedbackRequest.Subject = decision.map { .decision(id: $0) } ?? .prompt(router: router!, text: prompt!)
        let value: FeedbackRequest.Value =
            failed ? .failed : outcome.map { .pairwise(outcome: $0, against: against!) } ?? .pointwise(quality: quality!)
        try await options.run(.feedback(FeedbackRequest(subject: subject, model: model, value: value)), as: FeedbackResult.self) { result in
            "recorded in \(result.recorded).jsonl: \(result.model) on router \(result.router)\(result.decisionID.map { " (decision \($0))" } ?? "")"
        }
    }
}

struct Learn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Online learning: what each router has learned from feedback, or forget it.",
        subcommands: [LearnStatus.self, LearnReset.self], defaultSubcommand: LearnStatus.self)

    struct LearnStatus: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Show online learning per router.")
        @OptionGroup var options: ConnectionOptions
        @Option(name: [.short, .long], help: "Only this router.") var router: String?

        func run() async throws {
            try await options.run(.learn(LearnRequest(action: .status, router: router)), as: LearnResult.self) { result in
                guard !result.routers.isEmpty else { return "no router learns online (see docs/CONFIG.md, feedback.learning)" }
                return table(
                    header: ["ROUTER", "EVENTS", "PENDING", "PUBLISHES", "LAST PUBLISH", "FAILURES", "LEARNED"],
                    rows: result.routers.map { router in
                        [
                            router.router, "\(router.events)", "\(router.pending)", "\(router.publishes)",
                            router.lastPublishMilliseconds.map { String(format: "%.1f ms", $0) } ?? "-", "\(router.failures)",
                            router.learned.sorted { $0.key < $1.key }.map {
                                "\($0.key.replacingOccurrences(of: "learned_", with: "")) \($0.value.text)"
                            }
                            .joined(separator: ", "),
                        ]
                    })
            }
        }
    }

    struct LearnReset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset", abstract: "Forget what a router learned online (admin); its weights alone decide again.")
        @OptionGroup var options: ConnectionOptions
        @Option(name: [.short, .long], help: "The router.") var router: String

        func run() async throws {
            try await options.run(.learn(LearnRequest(action: .reset, router: router)), as: LearnResult.self) { _ in
                "router \(router) forgot what it learned online"
            }
        }
    }
}

struct Score: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Score prompts (one per line on standard input, or as arguments) without deciding.")

    @OptionGroup var options: ConnectionOptions
    @Option(name: [.short, .long], help: "The router instance.") var router: String = "random"
    @Argument(help: "Prompts; one per line from standard input when absent.") var prompts: [String] = []

    func run() async throws {
        let texts =
            prompts.isEmpty
            ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n").map(String.init) : prompts
        try await options.run(.score(ScoreRequest(router: router, prompts: texts)), as: ScoreResult.self) { result in
            zip(result.scores, texts).map { "\(format($0))  \(excerpt($1))" }.joined(separator: "\n")
        }
    }
}

struct Embed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Embed texts with the daemon's encoder (one per argument, or one per line on standard input).")

    @OptionGroup var options: ConnectionOptions
    @Option(name: [.short, .long], help: "The encoder; may be omitted when one is configured.") var encoder: String?
    @Flag(help: "Also show the token ids (and tokens) the model saw.") var tokens = false
    @Option(name: .customLong("long-text"), help: "head, tail or windows; default: the encoder's policy.") var longText: LongTextPolicy?
    @Argument(help: "Texts; one per line from standard input when absent.") var texts: [String] = []

    func run() async throws {
        let inputs =
            texts.isEmpty
            ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n").map(String.init) : texts
        try await options.run(.embed(EmbedRequest(encoder: encoder, texts: inputs, tokens: tokens, longText: longText)), as: EmbedResult.self) {
            result in
            var lines = ["encoder \(result.encoder), \(result.dimension) dimensions, long_text \(result.longText), \(result.elapsedMicroseconds) µs"]
            for (index, vector) in result.embeddings.enumerated() {
                let head = vector.prefix(6).map { String(format: "%+.4f", $0) }.joined(separator: " ")
                lines.append("\(excerpt(inputs[index]))\n  [\(head) …]")
                if let ids = result.tokens?[index] { lines.append("  tokens (\(ids.count)): \(ids.map(String.init).joined(separator: " "))") }
            }
            return lines.joined(separator: "\n")
        }
    }
}

struct Routers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the router instances of the current generation.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        try await options.run(.routers, as: RoutersResult.self) { result in
            let rows = result.routers.map {
                [
                    $0.name, "\($0.plugin) \($0.pluginVersion)", $0.policy,
                    $0.threshold.map(format) ?? $0.lambda.map { "λ \($0)" } ?? $0.epsilon.map { "ε \($0)" } ?? "-", $0.encoder ?? "-",
                    $0.candidates.joined(separator: ", "),
                ]
            }
            return "generation \(result.generation)\n"
                + table(header: ["ROUTER", "PLUGIN", "POLICY", "SETTING", "ENCODER", "CANDIDATES"], rows: rows)
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show version, uptime, generation and loaded plugins.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        try await options.run(.status, as: StatusResult.self) { status in
            var lines = [
                "routerd \(status.version), pid \(status.pid), up \(String(format: "%.0f", status.uptimeSeconds)) s",
                "config      \(status.config)",
                "socket      \(status.socket)",
                "generation  \(status.generation)",
                "routers     \(status.routers.joined(separator: ", "))",
                "encoders    \(status.encoders.isEmpty ? "none" : status.encoders.map { name in status.encoderKernels[name].map { "\(name) (\($0))" } ?? name }.joined(separator: ", ")) (OpenBLAS core \(status.blasCore))",
                "plugins",
            ]
            lines += status.plugins.map { "  \($0.name) \($0.version) (ABI \($0.abiVersion))  \($0.library)" }
            return lines.joined(separator: "\n")
        }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show counters since routerd started.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        try await options.run(.stats, as: StatsResult.self) { stats in
            var lines = [
                "generation \(stats.generation), up \(String(format: "%.0f", stats.uptimeSeconds)) s",
                "connections: \(stats.connectionsOpen) open, \(stats.connectionsTotal) total, \(stats.connectionsRejected) rejected",
                "reloads: \(stats.reloads) ok, \(stats.reloadFailures) rejected"
                    + (stats.reloadHistory.last.map { "; last: \($0.trigger) (\($0.outcome), generation \($0.generation))" } ?? ""),
                "requests: " + stats.requests.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "),
                "errors: "
                    + (stats.errors.isEmpty
                        ? "none" : stats.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")),
            ]
            if let log = stats.decisionLog {
                lines.append("decision log: \(log.lines) lines, \(log.failedWrites) failed writes (\(log.path))")
            }
            let rows = stats.routers.sorted { $0.key < $1.key }.map { name, router in
                let share = router.decisions == 0 ? "-" : String(format: "%.1f%%", Double(router.strong) / Double(router.decisions) * 100)
                let events =
                    router.events.isEmpty ? "-" : router.events.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                let latency = ["p50", "p99"].map { router.latencyMicroseconds[$0].map { String(format: "%.0f", $0) } ?? "-" }
                let median = router.scoreQuantiles["p50"].map(format) ?? "-"
                return [
                    name, "\(router.decisions)", share, median, latency[0], latency[1], "\(router.scored)", "\(router.errors)", "\(router.fallbacks)",
                    events,
                ]
            }
            if !rows.isEmpty {
                lines.append(
                    table(
                        header: ["ROUTER", "DECISIONS", "STRONG", "SCORE P50", "P50 µs", "P99 µs", "SCORED", "ERRORS", "FALLBACKS", "EVENTS"],
                        rows: rows))
            }
            // Routers with more than two models (or a cost policy): decisions by model, and a budget's state.
            for (name, router) in stats.routers.sorted(by: { $0.key < $1.key }) where router.models.count > 2 || router.budget != nil {
                let top = router.models.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(5)
                lines.append(
                    "\(name) by model: " + top.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + (router.models.count > 5 ? ", …" : ""))
                if let budget = router.budget {
                    let unit = budget.metric == "share" ? "share of \(budget.model ?? "?")" : "mean cost (USD)"
                    let achieved = budget.achieved.map { String(format: "%.6g", $0) } ?? "-"
                    lines.append(
                        "\(name) budget: \(unit) target \(String(format: "%.6g", budget.target)), achieved \(achieved) over \(budget.decisions)/\(budget.window) decisions, λ \(String(format: "%.4g", budget.lambda))"
                    )
                }
            }
            for (name, router) in stats.routers.sorted(by: { $0.key < $1.key }) {
                if let exploration = router.exploration {
                    lines.append(
                        "\(name) explored \(exploration.explored) of \(exploration.drawn) decisions ("
                            + String(
                                format: "%.1f%%, %@ %g, extra cost $%.6f per decision)", exploration.share * 100,
                                exploration.strategy == "thompson" ? "Thompson sampling, max share" : "ε", exploration.epsilon,
                                exploration.extraCostPerDecision))
                }
                if let novelty = router.novelty {
                    lines.append(
                        "\(name) novel: \(novelty.novel) of \(novelty.judged) decisions ("
                            + String(format: "%.1f%%, familiarity below %g)", novelty.share * 100, novelty.threshold))
                }
                if let shadows = router.shadows {
                    let each = shadows.routers.sorted { $0.key < $1.key }.map { shadow, counts in
                        "\(shadow) agrees on " + String(format: "%.1f%%", counts.agreement * 100) + " of \(counts.decisions)"
                            + (counts.errors > 0 ? " (\(counts.errors) failed)" : "")
                    }
                    lines.append("\(name) shadows: " + each.joined(separator: ", ") + (shadows.dropped > 0 ? "; \(shadows.dropped) dropped" : ""))
                }
            }
            if stats.sessions > 0 { lines.append("sessions: \(stats.sessions) remembered") }
            let encoderRows = stats.encoders.sorted { $0.key < $1.key }.map { name, cache in
                // Counters are shown to admin peers only.
                [
                    name, cache.hits.map { "\($0)" } ?? "-", cache.misses.map { "\($0)" } ?? "-",
                    cache.hitRate.map { String(format: "%.1f%%", $0 * 100) } ?? "-", "\(cache.entries.map { "\($0)" } ?? "-")/\(cache.capacity)",
                ]
            }
            if !encoderRows.isEmpty { lines.append(table(header: ["ENCODER", "HITS", "MISSES", "HIT RATE", "CACHED"], rows: encoderRows)) }
            return lines.joined(separator: "\n")
        }
    }
}

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reload the config. On any problem the current generation keeps serving and every problem is listed.")
    @OptionGroup var options: ConnectionOptions
    @Flag(name: .customLong("dry-run"), help: "Only validate the config, its plugins and weights (like `nginx -t`, on the live daemon).")
    var dryRun = false

    func run() async throws {
        try await options.run(.reload(ReloadRequest(dryRun: dryRun)), as: ReloadResult.self) { result in
            let reused = result.reused.isEmpty ? "" : "; unchanged, kept: \(result.reused.joined(separator: ", "))"
            return result.dryRun
                ? "valid: the config would serve routers \(result.routers.joined(separator: ", "))\(reused); nothing changed (generation \(result.generation))"
                : "reloaded: generation \(result.previousGeneration) → \(result.generation) (routers: \(result.routers.joined(separator: ", "))\(reused))"
        }
    }
}

struct SetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set", abstract: "Change a router's threshold, or its share of strong traffic, on the live daemon.",
        discussion: """
            The change takes effect at once, in a new generation that keeps every plugin instance. The config file is not \
            changed: the next reload restores the file's value. Edit routerd.yaml as well to keep it.
            """)
    @OptionGroup var options: ConnectionOptions
    @Option(name: [.short, .long], help: "The router instance.") var router: String
    @Option(help: "The new threshold, 0 to 1.") var threshold: Double?
    @Option(name: .customLong("strong-fraction"), help: "The share of traffic to send to the strong model, 0 to 1.") var strongFraction: Double?

    func validate() throws {
        guard (threshold == nil) != (strongFraction == nil) else { throw ValidationError("give exactly one of --threshold and --strong-fraction") }
    }

    func run() async throws {
        try await options.run(.set(SetRequest(router: router, threshold: threshold, strongFraction: strongFraction)), as: SetResult.self) {
            result in
            let basis = result.strongFraction.map { String(format: " (%.0f%% strong)", $0 * 100) } ?? ""
            return
                "router \(result.router): threshold \(format(result.threshold))\(basis); generation \(result.previousGeneration) → \(result.generation); the next reload restores the config file's value"
        }
    }
}

func format(_ value: Double) -> String { String(format: "%.4f", value) }

func excerpt(_ text: String) -> String {
    let flat = text.replacingOccurrences(of: "\n", with: " ")
    return flat.count > 60 ? String(flat.prefix(57)) + "..." : flat
}

/// Left-aligned columns separated by two spaces; `widths` fixes the column widths.
func table(header: [String], rows: [[String]], widths fixed: [Int]? = nil) -> String {
    let all = [header] + rows
    let widths = fixed ?? header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}
