import Foundation
import NIOCore
import NIOFoundationCompat
import NIOPosix
import RouterClient
import RouterEvaluation
import RouterJSON
import RouterProtocol
import RouterTraining
import StableHash
import TrainingRows

/// Online learning measured end to end, through a real routerd the run starts.
///
/// From per-prompt quality files it takes a prompt-level split (``PromptSplit``): the test share
/// is never touched; the rest is replayed as `feedback` over the socket, each prompt as two
/// pointwise outcomes (the strong and the weak model's quality). A few replay prompts seed the
/// index the learning router starts from. At each checkpoint it waits until the router has
/// published everything sent, then scores the test prompts and reports APGR. At the end it
/// builds an index offline from the same rows (the seed and the daemon's own feedback file) and
/// serves it from a second, frozen router (`learn: false`), so both are scored the same way.
public struct LearningReplay: Sendable {
    public var quality: [String] = []
    /// A judge-scores file ({question_id, model, score} lines) and its questions ({question_id, prompt}).
    public var scores: String?
    public var questions: String?
    public var maxPrompts: Int?
    public var strong: String
    public var weak: String
    /// Divides the files' values to make qualities in [0, 1].
    public var scale = 1.0
    public var testShare = PromptSplit.defaultTestShare
    public var seedPrompts = 20
    /// Checkpoints, as shares of the replay.
    public var checkpoints = [0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1]
    public var connections = 4
    public var publishEvery = 100
    public var model = "models/all-MiniLM-L6-v2"
    public var plugins = "plugins"
    /// The trainer's embedding cache.
    public var cache: String?
    /// The folder for the daemon's config, socket, feedback and indexes.
    public var work: String
    /// The routerd binary.
    public var routerd: String
    /// Report only one model's quality per prompt, as a service that calls one model sees it;
    /// nil reports both (full information).
    public var oneSided: OneSided?
    /// The router that learns.
    public var learner: Learner = .swRanking
    /// The learning router's own parameters beside its index or weights, a YAML flow mapping (`{gamma: 10}`).
    public var params: String?
    /// Score prompts at split positions in this band instead of the test share, and replay only those
    /// at or above ``replayFrom``: how settings are chosen without touching the test share.
    public var band: (low: Double, high: Double)?
    /// The lowest split position replayed with a ``band``.
    public var replayFrom: Double?

    /// The router that learns from the replay.
    public enum Learner: Sendable {
        /// sw_ranking, from an index of the seed prompts; at the end an index trained offline on the
        /// same rows is the comparison.
        case swRanking
        /// The classifier over quality weights trained elsewhere (its prior), its candidates named
        /// `strong` and `weak` in the weights; the data's strong and weak model stand for them. The
        /// comparison is the same weights, frozen: where the router started.
        case classifier(weights: String, strong: String, weak: String)

        /// Whether the router starts from an index of seed prompts.
        var seeded: Bool {
            if case .swRanking = self { true } else { false }
        }
    }

    /// The names the learning router knows the strong and the weak model by.
    var served: (strong: String, weak: String) {
        switch learner {
        case .swRanking: (strong, weak)
        case .classifier(_, let strong, let weak): (strong, weak)
        }
    }

    /// Which model's result a one-sided replay reports.
    public enum OneSided: String, Sendable, CaseIterable {
        /// A seeded coin flip per prompt: uniform exploration, propensity ½.
        case random
        /// The model the learning router chooses at that moment (threshold 0.5): no exploration.
        case routed
        /// The model the learning router's `route` decides, exploring with ε 0.2 (`explore:`).
        case explore
        /// The model the learning router's `route` decides, exploring by Thompson sampling from its posterior.
        case thompson

        /// The learning router's `explore:` in this mode, if it routes.
        var exploreSetting: String? {
            switch self {
            case .explore: "{epsilon: 0.2, seed: 1}"
            case .thompson: "{strategy: thompson, seed: 1}"
            default: nil
            }
        }
    }

    /// Outcomes reported per replayed prompt.
    var outcomesPerPrompt: Int { oneSided == nil ? 2 : 1 }

    public init(strong: String, weak: String, work: String, routerd: String) {
        self.strong = strong
        self.weak = weak
        self.work = work
        self.routerd = routerd
    }

    /// APGR on the test prompts after `events` outcomes.
    public struct Checkpoint: Sendable {
        public var events: Int
        public var prompts: Int
        public var apgr: Double
        public var lastPublishMilliseconds: Double?
        public var learnedPrompts: Int
    }

    public struct Outcome: Sendable {
        public var checkpoints: [Checkpoint]
        public var testPrompts: Int
        public var outcomesSent: Int
        public var offlineAPGR: Double
        public var offlineTrainingSeconds: Double
        public var outcomesPerSecond: Double
        public var publishMilliseconds: [Double]
        public var embedMilliseconds: [Double]
        public var lagSeconds: [Double]
        public var learnedStateBytes: Int
        /// `route`'s own time (its reply's `elapsed_us`) on the held-out prompts, embeddings cached:
        /// the router that learned, and the frozen one beside it.
        public var routeMicroseconds: (learning: [Double], frozen: [Double])
    }

    /// Runs the replay; `log` is told the split, then each checkpoint as it happens.
    public func run(log: @escaping (String) -> Void) async throws -> Outcome {
        let pair = try loadPair()
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let scored = band ?? (low: 0, high: testShare)
        let from = band == nil ? testShare : (replayFrom ?? scored.high)
        var replay = pair.filter { PromptSplit.position($0.prompt) >= from }
        let test = pair.filter { (scored.low..<scored.high).contains(PromptSplit.position($0.prompt)) }
        var random = SplitMix64(seed: 1)
        replay.shuffle(using: &random)
        let seedCount = learner.seeded ? seedPrompts : 0
        guard replay.count > seedCount, !test.isEmpty else {
            throw BenchmarkRunError("\(replay.count) replay and \(test.count) test prompts: too few for \(seedCount) seed prompts")
        }
        let seed = Array(replay.prefix(seedCount))
        replay.removeFirst(seedCount)
        log(
            "bench-learning: \(strong) vs \(weak)\(served == (strong, weak) ? "" : " (as the router's \(served.strong) and \(served.weak))"); \(seed.count) seed, \(replay.count) replay (\(outcomesPerPrompt * replay.count) outcomes\(oneSided.map { ", one per prompt: \($0.rawValue)" } ?? "")), \(test.count) \(band == nil ? "test" : "held-out") prompts (split positions \(scored.low)..<\(scored.high)); work folder \(work)"
        )

        let seedFile = work + "/seed.quality.jsonl"
        let base = work + "/base.safetensors"
        let offline = work + "/offline.safetensors"
        if learner.seeded {
            try Data(seed.map { line($0) }.joined().utf8).write(to: URL(fileURLWithPath: seedFile))
            try trainIndex([seedFile], output: base)
            try? FileManager.default.removeItem(atPath: offline)
            try FileManager.default.copyItem(atPath: base, toPath: offline)
        }
        let feedback = work + "/feedback"
        try? FileManager.default.removeItem(atPath: feedback)
        let socket = work + "/routerd.sock"
        let daemon = try ChildDaemon(
            binary: routerd, config: try writeConfig(socket: socket, base: base, offline: offline, feedback: feedback), socket: socket, log: nil)
        defer { daemon.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let control = try await RouterConnection.connect(socketPath: socket, group: group)

        let marks = checkpoints.map { min(replay.count, Int(($0 * Double(replay.count)).rounded())) }
        var rows: [Checkpoint] = []
        var sent = 0
        var sendSeconds = 0.0
        var lagSeconds: [Double] = []
        var publishMilliseconds: [Double] = []
        var embedMilliseconds: [Double] = []
        for mark in Set(marks).sorted() {
            if mark > sent {
                let start = ContinuousClock.now
                try await send(Array(replay[sent..<mark]), socket: socket, group: group, control: control)
                sendSeconds += Self.seconds(since: start)
                sent = mark
                let caughtUp = ContinuousClock.now
                try await control.waitUntilPublished(outcomesPerPrompt * sent, router: "learning")
                lagSeconds.append(Self.seconds(since: caughtUp))
            }
            let status = try await learningStatus(control)
            if let last = status.lastPublishMilliseconds { publishMilliseconds.append(last) }
            if let last = status.lastEmbedMilliseconds { embedMilliseconds.append(last) }
            let apgr = try await testAPGR(router: "learning", test, control)
            let learned =
                (status.learned["learned_prompts"] ?? status.learned["learned_outcomes"]).flatMap {
                    if case .integer(let n) = $0 { Int(n) } else { nil }
                } ?? 0
            rows.append(
                Checkpoint(
                    events: outcomesPerPrompt * sent, prompts: sent, apgr: apgr, lastPublishMilliseconds: status.lastPublishMilliseconds,
                    learnedPrompts: learned))
            log(
                String(
                    format: "  %6d outcomes (%5d prompts)  APGR %.4f  learned %@ %5d", outcomesPerPrompt * sent, sent, apgr,
                    learner.seeded ? "prompts" : "outcomes", learned))
        }

        // The same rows, offline: the seed and the daemon's own feedback file, served by the frozen
        // router. A classifier's frozen router keeps the weights it started from.
        let trainStart = ContinuousClock.now
        if learner.seeded {
            try trainIndex([seedFile, feedback + "/quality.jsonl"], output: offline)
        }
        let trainSeconds = learner.seeded ? Self.seconds(since: trainStart) : 0
        _ = try await control.reload()
        let offlineAPGR = try await testAPGR(router: "offline", test, control)
        let stateBytes = (try? FileManager.default.attributesOfItem(atPath: feedback + "/learned/learning/learned.safetensors")[.size] as? Int) ?? 0
        let latency = try await routeLatency(test.map(\.prompt), control)
        await control.close()
        return Outcome(
            checkpoints: rows, testPrompts: test.count, outcomesSent: outcomesPerPrompt * sent, offlineAPGR: offlineAPGR,
            offlineTrainingSeconds: trainSeconds, outcomesPerSecond: Double(outcomesPerPrompt * sent) / sendSeconds,
            publishMilliseconds: publishMilliseconds, embedMilliseconds: embedMilliseconds,
            lagSeconds: lagSeconds, learnedStateBytes: stateBytes, routeMicroseconds: latency)
    }

    /// Routes every prompt (embedded already, when the test prompts were scored) on the learning and
    /// the frozen router in turn, one request at a time, and collects each decision's own time.
    private func routeLatency(_ prompts: [String], _ connection: RouterConnection) async throws -> (learning: [Double], frozen: [Double]) {
        var times: (learning: [Double], frozen: [Double]) = ([], [])
        for prompt in prompts {
            for router in ["learning", "offline"] {
                let reply = try await connection.sendLine(
                    ByteBuffer(bytes: try RequestCodec.encode(.route(RouteRequest(router: router, prompt: prompt)), id: nil))
                ).get()
                let decision = try ResponseCodec.decode(Decision.self, from: Data(buffer: reply))
                if router == "learning" {
                    times.learning.append(decision.elapsedMicroseconds)
                } else {
                    times.frozen.append(decision.elapsedMicroseconds)
                }
            }
        }
        return times
    }

    struct Labelled: Sendable {
        var prompt: String
        var strong: Double
        var weak: Double
    }

    /// Every prompt with a value for both models, in file order, duplicates merged (the last value wins).
    func loadPair() throws -> [Labelled] {
        var values: [String: (Double?, Double?)] = [:]
        var order: [String] = []
        var records: [QualityRecord] = []
        for file in quality { records += try QualityFile.read(file) }
        if let scores, let questions { records += try Self.judged(scores: scores, questions: questions) }
        for record in records {
            if values[record.prompt] == nil { order.append(record.prompt) }
            var entry = values[record.prompt] ?? (nil, nil)
            if let value = record.quality[strong] { entry.0 = value / scale }
            if let value = record.quality[weak] { entry.1 = value / scale }
            values[record.prompt] = entry
        }
        let pair = order.prefix(maxPrompts ?? .max).compactMap { prompt -> Labelled? in
            guard let (s, w) = values[prompt], let s, let w else { return nil }
            return Labelled(prompt: prompt, strong: min(1, max(0, s)), weak: min(1, max(0, w)))
        }
        guard !pair.isEmpty else {
            throw BenchmarkRunError("no prompt in \(quality.joined(separator: ", ")) has values for both \(strong) and \(weak)")
        }
        return pair
    }

    /// Judge scores per question joined to the questions' prompts, each model's scores averaged.
    public static func judged(scores: String, questions: String) throws -> [QualityRecord] {
        func objects(_ file: String) throws -> [[String: Any]] {
            guard let data = FileManager.default.contents(atPath: file) else { throw BenchmarkRunError("cannot read \(file)") }
            return data.split(separator: UInt8(ascii: "\n")).compactMap { (try? JSONSerialization.jsonObject(with: Data($0))) as? [String: Any] }
        }
        var totals: [String: [String: (sum: Double, count: Int)]] = [:]
        for row in try objects(scores) {
            guard let id = row["question_id"] as? String, let model = row["model"] as? String, let score = (row["score"] as? NSNumber)?.doubleValue
            else { continue }
            let entry = totals[id, default: [:]][model] ?? (0, 0)
            totals[id, default: [:]][model] = (entry.sum + score, entry.count + 1)
        }
        return try objects(questions).compactMap { row in
            guard let id = row["question_id"] as? String, let prompt = row["prompt"] as? String, let models = totals[id] else { return nil }
            return QualityRecord(prompt: prompt, quality: models.mapValues { $0.sum / Double($0.count) })
        }
    }

    func line(_ item: Labelled) -> String {
        var writer = JSONWriter(capacity: 128 + item.prompt.utf8.count)
        writer.value(.object(["prompt": .string(item.prompt), "quality": .object([strong: .number(item.strong), weak: .number(item.weak)])]))
        writer.newline()
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// Builds an sw_ranking index from quality files, as `routerctl train sw_ranking` does.
    private func trainIndex(_ files: [String], output: String) throws {
        var inputs = TrainingInputs(files: files)
        inputs.encoderModel = model
        inputs.cache = cache
        _ = try RankingIndexJob(output: output, strong: strong, weak: weak).run(inputs, log: { _ in })
    }

    private func writeConfig(socket: String, base: String, offline: String, feedback: String) throws -> String {
        let descriptors = (plugins as NSString).isAbsolutePath ? plugins : FileManager.default.currentDirectoryPath + "/" + plugins
        let modelFolder = (model as NSString).isAbsolutePath ? model : FileManager.default.currentDirectoryPath + "/" + model
        func router(_ name: String, index: String, learn: Bool) -> String {
            let (plugin, weights) =
                switch learner {
                case .swRanking: ("sw_ranking", "index: \(index)")
                case .classifier(let weights, _, _): ("classifier", "weights: \(Self.absolute(weights))")
                }
            // The learning router's own parameters, when given, join its weights.
            let own = learn ? params.map { $0.trimmingCharacters(in: .whitespaces).dropFirst().dropLast() }.map { ", " + $0 } ?? "" : ""
            return """
                  \(name):
                    plugin: \(plugin)
                    threshold: 0.5
                    strong_model: "\(served.strong)"
                    weak_model: "\(served.weak)"
                    encoder: minilm
                    learn: \(learn)
                    params: {\(weights)\(own)}\(learn ? oneSided?.exploreSetting.map { "\n    explore: \($0)" } ?? "" : "")
                """
        }
        let text = """
            socket: {path: \(socket)}
            admin: {uids: [\(getuid())]}
            plugins: {search_paths: [\(descriptors)]}
            # Scoring the test prompts 256 at a time takes more encoder positions than the default bound.
            limits: {max_in_flight: 1024, max_tokens: 1000000}
            encoders:
              minilm: {path: \(modelFolder), cache_size: 100000}
            feedback:
              directory: \(feedback)
              allow: {uids: [\(getuid())]}
              learning: {publish_every: \(publishEvery), publish_interval_ms: 200}
              decisions: {max_entries: 1000}
            routers:
            \(router("learning", index: base, learn: true))
            \(router("offline", index: offline, learn: false))
            """
        let path = work + "/routerd.yaml"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The outcomes reported for `items`: both models', or one per prompt (see ``OneSided``).
    private func reported(_ items: [Labelled], control: RouterConnection) async throws -> [[(model: String, value: Double)]] {
        let both = items.map { [(model: served.strong, value: $0.strong), (model: served.weak, value: $0.weak)] }
        switch oneSided {
        case nil:
            return both
        case .random:
            return items.indices.map { index in
                var coin = SplitMix64(seed: FNV1a.hash(items[index].prompt))
                return [both[index][coin.next() & 1 == 0 ? 0 : 1]]
            }
        case .routed:
            var scores: [Double] = []
            for start in stride(from: 0, to: items.count, by: 256) {
                scores += try await control.score(router: "learning", prompts: items[start..<min(items.count, start + 256)].map(\.prompt)).scores
            }
            return items.indices.map { [both[$0][scores[$0] >= 0.5 ? 0 : 1]] }
        case .explore, .thompson:
            var models: [String] = []
            for start in stride(from: 0, to: items.count, by: 256) {
                let window = items[start..<min(items.count, start + 256)]
                let lines = try window.map { item in
                    control.sendLine(
                        ByteBuffer(bytes: try RequestCodec.encode(.route(RouteRequest(router: "learning", prompt: item.prompt)), id: nil)))
                }
                for reply in try await EventLoopFuture.whenAllSucceed(lines, on: control.eventLoop).get() {
                    models.append(try ResponseCodec.decode(Decision.self, from: Data(buffer: reply)).model)
                }
            }
            return items.indices.map { index in both[index].filter { $0.model == models[index] } }
        }
    }

    /// Sends each prompt's outcomes, spread over the connections, many in flight on each.
    private func send(_ items: [Labelled], socket: String, group: any EventLoopGroup, control: RouterConnection) async throws {
        var lines: [[ByteBuffer]] = Array(repeating: [], count: connections)
        let outcomes = try await reported(items, control: control)
        for (index, item) in items.enumerated() {
            for (model, value) in outcomes[index] {
                let request = Request.feedback(
                    FeedbackRequest(subject: .prompt(router: "learning", text: item.prompt), model: model, value: .pointwise(quality: value)))
                lines[index % connections].append(ByteBuffer(bytes: try RequestCodec.encode(request, id: nil)))
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for batch in lines where !batch.isEmpty {
                tasks.addTask {
                    let connection = try await RouterConnection.connect(socketPath: socket, group: group)
                    defer { Task { await connection.close() } }
                    // Keep up to 256 requests in flight: replies come back in order.
                    var start = 0
                    while start < batch.count {
                        let window = batch[start..<min(batch.count, start + 256)]
                        let replies = try await EventLoopFuture.whenAllSucceed(window.map { connection.sendLine($0) }, on: group.next()).get()
                        for reply in replies where !String(buffer: reply).contains(#""ok":true"#) {
                            throw BenchmarkRunError("feedback refused: \(String(buffer: reply))")
                        }
                        start += window.count
                    }
                }
            }
            try await tasks.waitForAll()
        }
    }

    private func learningStatus(_ connection: RouterConnection) async throws -> LearningInfo {
        try await connection.learningStatus(router: "learning")
    }

    private func testAPGR(router: String, _ test: [Labelled], _ connection: RouterConnection) async throws -> Double {
        var scores: [Double] = []
        for start in stride(from: 0, to: test.count, by: 256) {
            let prompts = test[start..<min(test.count, start + 256)].map(\.prompt)
            scores += try await connection.score(router: router, prompts: prompts).scores
        }
        return RoutingCurve(scores: scores, strong: test.map(\.strong), weak: test.map(\.weak)).apgr
    }

    private static func absolute(_ path: String) -> String {
        (path as NSString).isAbsolutePath ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    private static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
}

extension RouterConnection {
    /// `router`'s online learning status; a router that does not learn online is an error.
    func learningStatus(router: String) async throws -> LearningInfo {
        let result = try await send(.learn(LearnRequest(action: .status, router: router)), as: LearnResult.self)
        guard let status = result.routers.first else { throw BenchmarkRunError("router '\(router)' does not learn online") }
        return status
    }

    /// Waits (up to 10 minutes) until `router` has published `events` outcomes; a learning failure is an error.
    func waitUntilPublished(_ events: Int, router: String) async throws {
        for _ in 0..<60_000 {
            let status = try await learningStatus(router: router)
            if let error = status.lastError { throw BenchmarkRunError("learning failed: \(error)") }
            if status.events >= UInt64(events) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw BenchmarkRunError("the router did not publish \(events) outcomes within 10 minutes")
    }
}
