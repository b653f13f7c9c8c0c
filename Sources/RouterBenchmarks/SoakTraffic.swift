import Foundation
import NIOCore
import NIOFoundationCompat
import RouterClient
import RouterConfig
import RouterProtocol
import RouterVocabulary
import StableHash
import Synchronization

/// Everything the soak saw, shared by its tasks.
final class SoakTally: Sendable {
    struct Sample: Sendable {
        var seconds: Double
        var residentKiB: Int
        var cacheEntries: Int
        var cacheCapacity: Int
        var requests: Int
    }

    private struct State {
        var requests: [String: Int] = [:]
        var expectedErrors: [String: Int] = [:]
        var unexpected = 0
        var unexpectedExamples: [String] = []
        var decisionsChecked = 0
        var wrong = 0
        var wrongExamples: [String] = []
        var distinctTexts = 0
        var changes: [String: Int] = [:]
        var connections = 0
        var settings: [UInt64: SoakSettings] = [:]
        var samples: [Sample] = []
        var cacheOverflows = 0
    }

    private let state = Mutex(State())

    func count(_ op: String) { state.withLock { $0.requests[op, default: 0] += 1 } }
    func expectedError(_ code: String) { state.withLock { $0.expectedErrors[code, default: 0] += 1 } }
    func distinct(_ count: Int) { state.withLock { $0.distinctTexts += count } }
    func change(_ kind: String) { state.withLock { $0.changes[kind, default: 0] += 1 } }
    func connected() { state.withLock { $0.connections += 1 } }

    func unexpected(_ what: String) {
        state.withLock {
            $0.unexpected += 1
            if $0.unexpectedExamples.count < 20 { $0.unexpectedExamples.append(what) }
        }
    }

    /// What generation `number` must decide with; registered before the change that makes it is asked for.
    func expect(generation number: UInt64, _ settings: SoakSettings) { state.withLock { $0.settings[number] = settings } }

    /// Checks a decision against the settings of the generation it names.
    func check(_ decision: Decision, session: Bool) {
        let settings = state.withLock { $0.settings[decision.generation] }
        let problem = Self.problem(with: decision, settings: settings, session: session)
        state.withLock {
            $0.decisionsChecked += 1
            if let problem {
                $0.wrong += 1
                if $0.wrongExamples.count < 20 { $0.wrongExamples.append("\(decision.router) generation \(decision.generation): \(problem)") }
            }
        }
    }

    static func problem(with decision: Decision, settings: SoakSettings?, session: Bool) -> String? {
        guard let settings else { return "names a generation the soak never made" }
        if let threshold = settings.thresholds[decision.router] {
            guard decision.threshold == threshold else { return "threshold \(decision.threshold ?? .nan), but the generation has \(threshold)" }
            guard let score = decision.score, (0...1).contains(score) else { return "score \(decision.score ?? .nan) outside [0, 1]" }
            // A session may keep a conversation on its model or move it up, so only a fresh decision's tier follows the score.
            if !session, decision.tier != (score >= threshold ? .strong : .weak) {
                return "tier \(decision.tier?.rawValue ?? "none") for score \(score) at threshold \(threshold)"
            }
        } else if let lambda = settings.lambdas[decision.router] {
            guard decision.lambda == lambda else { return "λ \(decision.lambda ?? .nan), but the generation has \(lambda)" }
            let costs = decision.candidates.map { $0.cost ?? .nan }
            let best = PolicyRule.bestUtility(qualities: decision.candidates.map(\.quality), costs: costs, lambda: lambda)
            guard !decision.candidates.isEmpty, decision.candidates[best].model == decision.model else {
                return
                    "chose \(decision.model), but quality − λ × cost is largest for \(decision.candidates.isEmpty ? "none" : decision.candidates[best].model)"
            }
        }
        return nil
    }

    /// Sends `request` on `connection`, counting it under `op`; returns its result, or nil after
    /// counting an error. `orError` is an error code this request may get as a matter of course (a
    /// dry run of a config the controller just broke on purpose).
    func ask<Result: Decodable>(
        _ connection: RouterConnection, _ request: Request, as type: Result.Type, op: String, orError allowed: ErrorCode? = nil
    ) async -> Result? {
        count(op)
        do throws(RouterClientError) {
            return try await connection.send(request, as: type)
        } catch {
            if case .server(let error) = error, error.code == allowed {
                expectedError(error.code.rawValue)
            } else {
                unexpected("\(op): \(error)")
            }
            return nil
        }
    }

    /// Checks that a reply `line` to something sent wrong on purpose (`what`) is an error with `code` and a message.
    func expectError(_ code: ErrorCode, in line: Data, what: String) {
        let error = (try? JSONDecoder().decode(ResponseCodec.Envelope.self, from: line))?.error
        if error?.code == code, error?.message.isEmpty == false {
            expectedError(code.rawValue)
        } else {
            unexpected("\(what): expected \(code.rawValue), got \(String(decoding: line, as: UTF8.self).prefix(300))")
        }
    }

    func sample(_ sample: Sample) {
        state.withLock {
            $0.samples.append(sample)
            if sample.cacheEntries > sample.cacheCapacity { $0.cacheOverflows += 1 }
        }
    }

    var progress: (requests: Int, unexpected: Int, wrong: Int, distinct: Int) {
        state.withLock { ($0.requests.values.reduce(0, +), $0.unexpected, $0.wrong, $0.distinctTexts) }
    }

    func rssCSV() -> String {
        state.withLock { state in
            "seconds,rss_kib,cache_entries,cache_capacity,requests\n"
                + state.samples.map {
                    "\(String(format: "%.1f", $0.seconds)),\($0.residentKiB),\($0.cacheEntries),\($0.cacheCapacity),\($0.requests)"
                }
                .joined(separator: "\n") + "\n"
        }
    }

    struct Report {
        var text: String
        var passed: Bool
    }

    func report(warmUp: Double, daemonStatus: Int32?, log: String) -> Report {
        state.withLock { state in
            func thousands(_ value: Int) -> String { value.formatted(.number.grouping(.automatic).locale(Locale(identifier: "en_US"))) }
            func list(_ counts: [String: Int]) -> String {
                counts.isEmpty ? "none" : counts.sorted { $0.key < $1.key }.map { "\($0.key) \(thousands($0.value))" }.joined(separator: ", ")
            }
            var lines = ["", "soak: done"]
            let total = state.requests.values.reduce(0, +)
            let seconds = state.samples.last?.seconds ?? 0
            lines.append("requests: \(thousands(total)) in \(Int(seconds)) s (\(list(state.requests)))")
            lines.append("connections opened: \(thousands(state.connections))")
            lines.append("changes: \(list(state.changes))")
            lines.append("expected errors (bad lines, broken changes): \(list(state.expectedErrors))")
            lines.append("unexpected errors: \(state.unexpected)")
            lines += state.unexpectedExamples.map { "  \($0)" }
            lines.append("decisions checked against their generation: \(thousands(state.decisionsChecked)), wrong: \(state.wrong)")
            lines += state.wrongExamples.map { "  \($0)" }
            lines.append("distinct texts embedded: \(thousands(state.distinctTexts))")
            let capacity = state.samples.last?.cacheCapacity ?? 0
            let largest = state.samples.map(\.cacheEntries).max() ?? 0
            lines.append("embedding cache: at most \(thousands(largest)) entries of \(thousands(capacity)) over \(state.samples.count) samples")
            var passed = state.unexpected == 0 && state.wrong == 0 && state.cacheOverflows == 0 && daemonStatus == 0
            if let warm = state.samples.first(where: { $0.seconds >= warmUp * seconds }), let last = state.samples.last {
                // RSS swings by tens of MB within seconds (a reload holds two generations while it
                // swaps), so one sample against another says little. A leak lifts the whole band:
                // compare the band's peak and floor in the first and the last fifth after warm-up.
                let after = state.samples.filter { $0.seconds >= warm.seconds }
                let fifth = max(1, after.count / 5)
                let (early, late) = (after.prefix(fifth).map(\.residentKiB), after.suffix(fifth).map(\.residentKiB))
                func mb(_ kib: Int) -> String { String(format: "%.1f MB", Double(kib) / 1024) }
                func percent(_ from: Int, _ to: Int) -> String { String(format: "%+.1f%%", 100 * Double(to - from) / Double(from)) }
                lines.append(
                    "RSS: \(mb(state.samples[0].residentKiB)) at start, \(mb(warm.residentKiB)) after warm-up (\(Int(warm.seconds)) s), "
                        + "end \(mb(last.residentKiB))")
                lines.append(
                    "RSS growth after warm-up, first fifth → last fifth: peak \(mb(early.max()!)) → \(mb(late.max()!)) "
                        + "(\(percent(early.max()!, late.max()!))), floor \(mb(early.min()!)) → \(mb(late.min()!)) (\(percent(early.min()!, late.min()!)))"
                )
                lines.append(
                    "RSS curve (s: MB): "
                        + state.samples.map { "\(Int($0.seconds)): \(String(format: "%.1f", Double($0.residentKiB) / 1024))" }.joined(separator: ", ")
                )
            }
            if daemonStatus != 0 {
                lines.append("routerd exited with \(daemonStatus.map(String.init) ?? "a signal") (log: \(log))")
                passed = false
            }
            lines.append(passed ? "soak: passed" : "soak: FAILED (routerd's log: \(log))")
            return Report(text: lines.joined(separator: "\n"), passed: passed)
        }
    }
}

/// Prompts for the soak: a pool that repeats (cache hits) and never-seen variants (misses).
enum SoakPrompts {
    static let topics = [
        "binary search", "the French Revolution", "photosynthesis", "Rust lifetimes", "compound interest", "the Monty Hall problem",
        "SQL joins", "black holes", "TCP congestion control", "the derivative of x^3 sin x", "public key cryptography", "sourdough bread",
        "the Krebs cycle", "Kubernetes pods", "Bayes' theorem", "the causes of the First World War", "gradient descent", "a haiku about rain",
        "the halting problem", "how vaccines work",
    ]
    static let forms = [
        "Explain %@ to a ten-year-old.", "Write a short essay on %@.", "What is the most common mistake people make with %@?",
        "Give three examples of %@.", "Summarise %@ in one sentence.", "Prove a non-trivial fact about %@, step by step.",
        "Write a limerick about %@.", "Compare %@ with something similar and say which is harder.",
    ]
    static let pool: [String] = topics.flatMap { topic in forms.map { $0.replacingOccurrences(of: "%@", with: topic) } }

    static func repeated(_ random: inout SplitMix64) -> String { pool[Int(random.next() % UInt64(pool.count))] }
    static func fresh(_ random: inout SplitMix64, tag: String) -> String { repeated(&random) + " (\(tag))" }

    /// Lines that must be answered with an error, and the code each must get.
    static let badLines: [(line: String, code: ErrorCode)] = [
        ("{not json", .badJSON), ("[1,2,3]", .badJSON), ("\"route\"", .badJSON),
        (String(repeating: "[", count: 200) + String(repeating: "]", count: 200), .badJSON),
        (#"{"op":"fly"}"#, .unknownOp), (#"{"op":"route","router":"nope","prompt":"x"}"#, .unknownRouter),
        (#"{"op":"route","prompt":"x"}"#, .missingField), (#"{"op":"route","router":"random","prompt":7}"#, .badField),
        (#"{"op":"route","router":"random","prompt":"x","threshold":7}"#, .badField),
        (#"{"op":"feedback","decision_id":"0000000000000000","model":"x","outcome":"win","against":"y"}"#, .unknownDecision),
        (#"{"op":"reload","dry_run":"yes"}"#, .badField), (#"{"op":"embed","encoder":"nope","text":"x"}"#, .badField),
        (#"{"op":"route","router":"random","prompt":""# + String(repeating: "x", count: 70_000) + #""}"#, .lineTooLong),
    ]
}

/// One client connection's closed loop of mixed requests.
struct SoakTraffic: Sendable {
    let socket: String
    let layout: SoakConfig
    let tally: SoakTally
    let seed: UInt64

    func run(until deadline: ContinuousClock.Instant) async {
        var random = SplitMix64(seed: seed)
        var connection: RouterConnection?
        var left = 0
        var counter = 0
        var recent: [Decision] = []
        let tag = String(seed % 100_000)
        while ContinuousClock.now < deadline {
            if connection == nil || left <= 0 {
                await connection?.close()
                connection = try? await RouterConnection.connect(socketPath: socket)
                guard connection != nil else {
                    tally.unexpected("connect: routerd refused a connection")
                    try? await Task.sleep(for: .milliseconds(100))
                    continue
                }
                tally.connected()
                left = Int(random.next() % 800) + 200
            }
            guard let link = connection else { continue }
            left -= 1
            counter += 1
            let roll = random.unit()
            let binary = layout.binaryRouters[Int(random.next() % UInt64(layout.binaryRouters.count))].name
            let fresh = random.unit() < 0.5
            let prompt = fresh ? SoakPrompts.fresh(&random, tag: "\(tag).\(counter)") : SoakPrompts.repeated(&random)
            if fresh { tally.distinct(1) }
            switch roll {
            case ..<0.40:
                let session = random.unit() < 0.1 ? "s\(random.next() % 50)" : nil
                if let decision = await tally.ask(
                    link, .route(RouteRequest(router: binary, prompt: prompt, session: session)), as: Decision.self, op: "route")
                {
                    tally.check(decision, session: session != nil)
                    recent.append(decision)
                }
            case ..<0.50:
                if let router = layout.lambdaRouters.first?.name,
                    let decision = await tally.ask(link, .route(RouteRequest(router: router, prompt: prompt)), as: Decision.self, op: "route")
                {
                    tally.check(decision, session: false)
                    recent.append(decision)
                }
            case ..<0.56:
                let prompts = (0..<8).map { _ in
                    random.unit() < 0.5 ? SoakPrompts.fresh(&random, tag: "\(tag).\(counter)b") : SoakPrompts.repeated(&random)
                }
                tally.distinct(prompts.filter { $0.hasSuffix("b)") }.count)
                if let result = await tally.ask(link, .score(ScoreRequest(router: binary, prompts: prompts)), as: ScoreResult.self, op: "score"),
                    result.scores.count != prompts.count || !result.scores.allSatisfy({ (0...1).contains($0) })
                {
                    tally.unexpected("score: \(result.scores.count) scores for \(prompts.count) prompts, or one outside [0, 1]")
                }
            case ..<0.70:
                // Fresh texts in a batch: the cheapest way through many distinct prompts, so the cache turns over.
                let texts = (0..<32).map { "soak text \(tag).\(counter).\($0): \(SoakPrompts.topics[$0 % SoakPrompts.topics.count])" }
                tally.distinct(texts.count)
                if let result = await tally.ask(link, .embed(EmbedRequest(texts: texts)), as: EmbedResult.self, op: "embed"),
                    result.embeddings.count != texts.count || result.embeddings.contains(where: { $0.count != result.dimension })
                {
                    tally.unexpected("embed: \(result.embeddings.count) embeddings for \(texts.count) texts")
                }
            case ..<0.76:
                guard !recent.isEmpty else { continue }
                let decision = recent[Int(random.next() % UInt64(recent.count))]
                let value: FeedbackRequest.Value
                if decision.candidates.count == 2, let other = decision.candidates.first(where: { $0.model != decision.model }) {
                    value = .pairwise(outcome: PairwiseResult.allCases[Int(random.next() % 3)], against: other.model)
                } else {
                    value = .pointwise(quality: Double(random.next() % 2))
                }
                _ = await tally.ask(
                    link, .feedback(FeedbackRequest(subject: .decision(id: decision.decisionID), model: decision.model, value: value)),
                    as: FeedbackResult.self, op: "feedback")
            case ..<0.79:
                _ = await tally.ask(link, .learn(LearnRequest(action: .status)), as: LearnResult.self, op: "learn")
            case ..<0.80: _ = await tally.ask(link, .routers, as: RoutersResult.self, op: "routers")
            case ..<0.81: _ = await tally.ask(link, .health, as: StatusResult.self, op: "health")
            case ..<0.82: _ = await tally.ask(link, .status, as: StatusResult.self, op: "status")
            case ..<0.83: _ = await tally.ask(link, .stats, as: StatsResult.self, op: "stats")
            case ..<0.84: _ = await tally.ask(link, .reload(ReloadRequest(dryRun: true)), as: ReloadResult.self, op: "reload", orError: .reloadFailed)
            default:
                let bad = SoakPrompts.badLines[Int(random.next() % UInt64(SoakPrompts.badLines.count))]
                tally.count("bad line")
                do {
                    let reply = try await link.sendLine(ByteBuffer(string: bad.line + "\n")).get()
                    tally.expectError(bad.code, in: Data(buffer: reply), what: "bad line \(bad.line.prefix(60))")
                } catch {
                    tally.unexpected("bad line \(bad.line.prefix(60)): \(error)")
                    connection = nil
                }
            }
            if recent.count > 32 { recent.removeFirst(recent.count - 32) }
        }
        await connection?.close()
    }

    /// Connections that come and go: each sends a request and hangs up without reading, or sends
    /// half a line, or reads its answer and closes.
    static func churn(socket: String, tally: SoakTally, until deadline: ContinuousClock.Instant) async {
        var round = 0
        while ContinuousClock.now < deadline {
            round += 1
            guard let connection = try? await RouterConnection.connect(socketPath: socket) else {
                tally.unexpected("connect: routerd refused a connection")
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            tally.connected()
            switch round % 3 {
            case 0:
                tally.count("route (hung up before the answer)")
                _ = connection.sendLine(ByteBuffer(string: #"{"op":"route","router":"random","prompt":"gone"}"# + "\n"))
            case 1:
                tally.count("half a line")
                _ = connection.sendLine(ByteBuffer(string: #"{"op":"route","rou"#))
            default:
                _ = await tally.ask(connection, .health, as: StatusResult.self, op: "health")
            }
            await connection.close()
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// Every `--change-every` seconds: a reload with new thresholds, or a `set`; one in five broken on
/// purpose, and now and then a `learn reset` of the router learning online.
struct SoakController: Sendable {
    let layout: SoakConfig
    let tally: SoakTally
    let settings: SoakSettings
    let seed: UInt64
    let socket: String

    func run(every interval: Double, until deadline: ContinuousClock.Instant) async {
        var settings = self.settings
        var random = SplitMix64(seed: seed)
        var generation: UInt64 = 1
        var tick = 0
        let broken = SoakConfig.Breakage.allCases.map(Optional.some) + [nil]  // nil: a broken `set`
        guard let connection = try? await RouterConnection.connect(socketPath: socket) else {
            tally.unexpected("controller: cannot connect")
            return
        }
        while ContinuousClock.now + .seconds(interval) < deadline {
            try? await Task.sleep(for: .seconds(interval))
            tick += 1
            if tick % 5 == 0 {
                let breakage = broken[(tick / 5 - 1) % broken.count]
                if let breakage {
                    tally.change("reload (broken: \(breakage))")
                    do {
                        try layout.text(settings, broken: breakage).write(toFile: layout.file, atomically: true, encoding: .utf8)
                    } catch {
                        tally.unexpected("controller: cannot write the config: \(error)")
                    }
                    await expectFailure(connection, .reload(ReloadRequest()), code: .reloadFailed, op: "reload")
                } else {
                    tally.change("set (broken)")
                    let router = layout.binaryRouters[0].name
                    await expectFailure(connection, .set(SetRequest(router: router, threshold: 1.5)), code: .badField, op: "set")
                }
                continue
            }
            if tick % 7 == 3, let router = layout.learningRouter {
                tally.change("learn reset")
                _ = await tally.ask(connection, .learn(LearnRequest(action: .reset, router: router)), as: LearnResult.self, op: "learn")
            }
            var next = settings
            let router = layout.binaryRouters[Int(random.next() % UInt64(layout.binaryRouters.count))].name
            let made: UInt64?
            let op: String
            if random.unit() < 0.5 {
                op = "set"
                next.thresholds[router] = SoakConfig.threshold(using: &random)
                tally.expect(generation: generation + 1, next)
                made = await tally.ask(
                    connection, .set(SetRequest(router: router, threshold: next.thresholds[router])), as: SetResult.self, op: op)?.generation
            } else {
                op = "reload"
                next = layout.initialSettings(using: &random)
                tally.expect(generation: generation + 1, next)
                do {
                    try layout.text(next).write(toFile: layout.file, atomically: true, encoding: .utf8)
                } catch {
                    tally.unexpected("controller: cannot write the config: \(error)")
                    continue
                }
                made = await tally.ask(connection, .reload(ReloadRequest()), as: ReloadResult.self, op: op)?.generation
            }
            tally.change(op)
            if let made {
                if made != generation + 1 { tally.unexpected("\(op) made generation \(made), not \(generation + 1)") }
                generation = made
                settings = next
            }
        }
        await connection.close()
    }

    private func expectFailure(_ connection: RouterConnection, _ request: Request, code: ErrorCode, op: String) async {
        tally.count(op)
        do throws(RouterClientError) {
            tally.expectError(code, in: try await connection.rawResponse(request), what: "\(op) broken on purpose")
        } catch {
            tally.unexpected("\(op) broken on purpose: \(error)")
        }
    }
}

/// Samples routerd's RSS and its embedding cache every `--sample-every` seconds, and prints progress.
struct SoakSampler: Sendable {
    let daemon: ChildDaemon
    let socket: String
    let tally: SoakTally
    let started: ContinuousClock.Instant

    func run(every interval: Double, until deadline: ContinuousClock.Instant) async {
        guard let connection = try? await RouterConnection.connect(socketPath: socket) else {
            tally.unexpected("sampler: cannot connect")
            return
        }
        while true {
            let now = ContinuousClock.now
            let elapsed = now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            guard daemon.isRunning, let rss = daemon.residentKiB else {
                tally.unexpected("routerd is not running")
                break
            }
            var entries = 0
            var capacity = 0
            do throws(RouterClientError) {
                let stats = try await connection.send(.stats, as: StatsResult.self)
                entries = stats.encoders.values.map { $0.entries ?? 0 }.reduce(0, +)
                capacity = stats.encoders.values.map(\.capacity).reduce(0, +)
            } catch {
                tally.unexpected("stats: \(error)")
            }
            let progress = tally.progress
            tally.sample(.init(seconds: seconds, residentKiB: rss, cacheEntries: entries, cacheCapacity: capacity, requests: progress.requests))
            print(
                String(
                    format: "%6.0f s  requests %9d  unexpected %d  wrong %d  rss %6.1f MB  cache %d/%d  distinct texts %d", seconds,
                    progress.requests, progress.unexpected, progress.wrong, Double(rss) / 1024, entries, capacity, progress.distinct))
            fflush(nil)  // progress as it happens, also when piped to a file or `tee`
            if now >= deadline { break }
            try? await Task.sleep(until: min(now + .seconds(interval), deadline), clock: .continuous)
        }
        await connection.close()
    }
}
