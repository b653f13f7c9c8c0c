import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import RouterClient
import RouterConfig
import RouterEngine
import RouterEvaluation
import RouterJSON
import RouterProtocol
import StableHash
import TrainingRows

/// `routerctl bench-learning`: online learning measured end to end, through a real routerd.
///
/// From per-prompt quality files it takes a prompt-level split (``PromptSplit``): the test share
/// is never touched; the rest is replayed as `feedback` over the socket, each prompt as two
/// pointwise outcomes (the strong and the weak model's quality). A few replay prompts seed the
/// index the learning router starts from. At each checkpoint it waits until the router has
/// published everything sent, then scores the test prompts and reports APGR. At the end it
/// builds an index offline from the same rows (the seed and the daemon's own feedback file) and
/// serves it from a second, frozen router (`learn: false`), so both are scored the same way.
struct BenchLearning: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-learning",
        abstract: "Replay outcomes through a routerd it starts, and report APGR on an untouched split as sw_ranking learns online.",
        discussion: """
            Tune nothing on the reported figures: the split is the same stable prompt hash every evaluation uses, \
            and the test share is only scored. Needs the built plugins (run from the package root) and the encoder model.
            """)

    @Option(help: "Per-prompt quality files, {prompt, quality: {model: value}} (repeatable).") var quality: [String] = []
    @Option(help: "A judge-scores file, {question_id, model, score} lines, with --questions ({question_id, prompt}).") var scores: String?
    @Option(help: "The questions of --scores.") var questions: String?
    @Option(name: .customLong("max-prompts"), help: "Use at most this many prompts (a quick run).") var maxPrompts: Int?
    @Option(help: "The strong model.") var strong: String
    @Option(help: "The weak model.") var weak: String
    @Option(help: "Divide the files' values by this to make qualities in [0, 1] (10 for 1–10 judge scores).") var scale: Double = 1
    @Option(name: .customLong("test-share"), help: "The share of prompts held out, by stable hash.") var testShare = PromptSplit.defaultTestShare
    @Option(name: .customLong("seed-prompts"), help: "Replay prompts the starting index is built from.") var seedPrompts = 20
    @Option(help: "Checkpoints, as shares of the replay (comma-separated).") var checkpoints = "0,0.01,0.02,0.05,0.1,0.2,0.4,0.7,1"
    @Option(help: "Connections that send feedback at once.") var connections = 4
    @Option(name: .customLong("publish-every"), help: "feedback.learning.publish_every of the daemon.") var publishEvery = 100
    @Option(help: "The encoder model folder.") var model: String = "models/all-MiniLM-L6-v2"
    @Option(help: "The plugin descriptors' folder.") var plugins: String = "plugins"
    @Option(help: "The trainer's embedding cache (default: .cache/embeddings-minilm-head.bin).") var cache: String?
    @Option(help: "A folder for the daemon's config, socket, feedback and indexes (default: a new temporary one).") var work: String?
    @Option(help: "Also write the curve as CSV here, and as SVG beside it (.svg).") var csv: String?

    struct Row {
        var events: Int
        var prompts: Int
        var apgr: Double
        var lastPublishMilliseconds: Double?
        var learnedPrompts: Int
    }

    func run() async throws {
        let pair = try loadPair()
        let folder = work ?? NSTemporaryDirectory() + "routerctl-bench-learning-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var replay = pair.filter { !PromptSplit.isTest($0.prompt, share: testShare) }
        let test = pair.filter { PromptSplit.isTest($0.prompt, share: testShare) }
        var random = SplitMix64(seed: 1)
        replay.shuffle(using: &random)
        guard replay.count > seedPrompts, !test.isEmpty else {
            throw ValidationError("\(replay.count) replay and \(test.count) test prompts: too few for \(seedPrompts) seed prompts")
        }
        let seed = Array(replay.prefix(seedPrompts))
        replay.removeFirst(seedPrompts)
        FileHandle.standardOutput.write(
            Data(
                ("bench-learning: \(strong) vs \(weak); \(seed.count) seed, \(replay.count) replay (\(2 * replay.count) outcomes), \(test.count) test prompts (share \(testShare)); work folder \(folder)\n")
                    .utf8))

        let seedFile = folder + "/seed.quality.jsonl"
        try Data(seed.map { line($0) }.joined().utf8).write(to: URL(fileURLWithPath: seedFile))
        let base = folder + "/base.safetensors"
        let offline = folder + "/offline.safetensors"
        try trainIndex([seedFile], output: base)
        try? FileManager.default.removeItem(atPath: offline)
        try FileManager.default.copyItem(atPath: base, toPath: offline)
        let feedback = folder + "/feedback"
        try? FileManager.default.removeItem(atPath: feedback)
        let socket = folder + "/routerd.sock"
        let daemon = try ChildDaemon(
            binary: siblingExecutable("routerd"),
            config: try writeConfig(folder: folder, socket: socket, base: base, offline: offline, feedback: feedback),
            socket: socket, log: nil)
        defer { daemon.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let control = try await RouterConnection.connect(socketPath: socket, group: group)

        let marks = checkpoints.split(separator: ",").compactMap { Double($0) }.map { min(replay.count, Int(($0 * Double(replay.count)).rounded())) }
        var rows: [Row] = []
        var sent = 0
        var sendSeconds = 0.0
        var lagSeconds: [Double] = []
        var publishMilliseconds: [Double] = []
        var embedMilliseconds: [Double] = []
        for mark in Set(marks).sorted() {
            if mark > sent {
                let start = ContinuousClock.now
                try await send(Array(replay[sent..<mark]), socket: socket, group: group)
                sendSeconds += seconds(since: start)
                sent = mark
                let caughtUp = ContinuousClock.now
                try await waitUntilPublished(2 * sent, control)
                lagSeconds.append(seconds(since: caughtUp))
            }
            let status = try await learningStatus(control)
            if let last = status.lastPublishMilliseconds { publishMilliseconds.append(last) }
            if let last = status.lastEmbedMilliseconds { embedMilliseconds.append(last) }
            let apgr = try await testAPGR(router: "learning", test, control)
            let learned = status.learned["learned_prompts"].flatMap { if case .integer(let n) = $0 { Int(n) } else { nil } } ?? 0
            rows.append(
                Row(events: 2 * sent, prompts: sent, apgr: apgr, lastPublishMilliseconds: status.lastPublishMilliseconds, learnedPrompts: learned))
            // Written at once, so a run into a file shows each checkpoint as it happens.
            FileHandle.standardOutput.write(
                Data(String(format: "  %6d outcomes (%5d prompts)  APGR %.4f  learned prompts %5d\n", 2 * sent, sent, apgr, learned).utf8))
        }

        // The same rows, offline: the seed and the daemon's own feedback file, served by the frozen router.
        let trainStart = ContinuousClock.now
        try trainIndex([seedFile, feedback + "/quality.jsonl"], output: offline)
        let trainSeconds = seconds(since: trainStart)
        _ = try await control.reload()
        let offlineAPGR = try await testAPGR(router: "offline", test, control)
        let online = rows.last!.apgr
        let stateBytes = (try? FileManager.default.attributesOfItem(atPath: feedback + "/learned/learning/learned.safetensors")[.size] as? Int) ?? 0
        await control.close()

        print("")
        print(String(format: "online after the whole replay  APGR %.4f", online))
        print(
            String(
                format: "offline index, same rows       APGR %.4f   (online − offline %+.4f; offline training took %.1f s)", offlineAPGR,
                online - offlineAPGR, trainSeconds))
        print(
            String(
                format: "feedback throughput            %.0f outcomes/s over %d connections (acknowledged, fdatasync'd)",
                Double(2 * sent) / sendSeconds, connections))
        if let worst = publishMilliseconds.max(), let last = publishMilliseconds.last {
            print(
                String(
                    format: "publish (fold, persist, swap)  last %.1f ms, largest seen %.1f ms, publishing every %d outcomes", last, worst,
                    publishEvery))
        }
        if let worst = embedMilliseconds.max(), let last = embedMilliseconds.last {
            print(String(format: "embedding a batch before it    last %.1f ms, largest seen %.1f ms (fresh prompts: encoder passes)", last, worst))
        }
        if !lagSeconds.isEmpty {
            print(String(format: "last ack → published           %.2f s at most over the checkpoints", lagSeconds.max()!))
        }
        print(
            String(
                format: "learned state                  %d bytes for %d outcomes (%.0f bytes per outcome)", stateBytes, 2 * sent,
                Double(stateBytes) / Double(max(1, 2 * sent))))
        if let csv {
            try createParentDirectory(of: csv)
            let text =
                "outcomes,prompts,apgr,last_publish_ms,learned_prompts\n"
                + rows.map { "\($0.events),\($0.prompts),\($0.apgr),\($0.lastPublishMilliseconds.map { "\($0)" } ?? ""),\($0.learnedPrompts)" }
                .joined(separator: "\n") + "\n"
                + "offline,\(sent),\(offlineAPGR),,\n"
            try Data(text.utf8).write(to: URL(fileURLWithPath: csv))
            let plot = LearningPlot.svg(
                title: "sw_ranking learning online: \(strong) vs \(weak)",
                subtitle: "APGR on \(test.count) held-out prompts (share \(testShare)) after each share of \(2 * sent) replayed outcomes",
                points: rows.map { ($0.events, $0.apgr) }, offline: offlineAPGR)
            try Data(plot.utf8).write(to: URL(fileURLWithPath: (csv as NSString).deletingPathExtension + ".svg"))
        }
    }

    struct Labelled: Sendable {
        var prompt: String
        var strong: Double
        var weak: Double
    }

    /// Every prompt with a value for both models, in file order, duplicates merged (the last value wins).
    private func loadPair() throws -> [Labelled] {
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
            throw ValidationError("no prompt in \(quality.joined(separator: ", ")) has values for both \(strong) and \(weak)")
        }
        return pair
    }

    /// Judge scores per question joined to the questions' prompts, each model's scores averaged.
    static func judged(scores: String, questions: String) throws -> [QualityRecord] {
        func objects(_ file: String) throws -> [[String: Any]] {
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
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

    private func line(_ item: Labelled) -> String {
        var writer = JSONWriter(capacity: 128 + item.prompt.utf8.count)
        writer.value(.object(["prompt": .string(item.prompt), "quality": .object([strong: .number(item.strong), weak: .number(item.weak)])]))
        writer.newline()
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    private func trainIndex(_ files: [String], output: String) throws {
        var arguments = ["train", "sw_ranking"] + files + ["--output", output, "--strong", strong, "--weak", weak, "--model", model]
        if let cache { arguments += ["--cache", cache] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ValidationError("routerctl \(arguments.joined(separator: " ")) failed") }
    }

    private func writeConfig(folder: String, socket: String, base: String, offline: String, feedback: String) throws -> String {
        let descriptors = (plugins as NSString).isAbsolutePath ? plugins : FileManager.default.currentDirectoryPath + "/" + plugins
        let modelFolder = (model as NSString).isAbsolutePath ? model : FileManager.default.currentDirectoryPath + "/" + model
        func router(_ name: String, index: String, learn: Bool) -> String {
            """
              \(name):
                plugin: sw_ranking
                threshold: 0.5
                strong_model: "\(strong)"
                weak_model: "\(weak)"
                encoder: minilm
                learn: \(learn)
                params: {index: \(index)}
            """
        }
        let text = """
            socket: {path: \(socket)}
            admin: {uids: [\(getuid())]}
            plugins: {search_paths: [\(descriptors)]}
            limits: {max_in_flight: 1024}
            encoders:
              minilm: {path: \(modelFolder), cache_size: 100000}
            feedback:
              directory: \(feedback)
              learning: {publish_every: \(publishEvery), publish_interval_ms: 200}
              decisions: {max_entries: 1000}
            routers:
            \(router("learning", index: base, learn: true))
            \(router("offline", index: offline, learn: false))
            """
        let path = folder + "/routerd.yaml"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Sends each prompt's two outcomes, spread over the connections, many in flight on each.
    private func send(_ items: [Labelled], socket: String, group: any EventLoopGroup) async throws {
        var lines: [[ByteBuffer]] = Array(repeating: [], count: connections)
        for (index, item) in items.enumerated() {
            for (model, value) in [(strong, item.strong), (weak, item.weak)] {
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
                            throw ValidationError("feedback refused: \(String(buffer: reply))")
                        }
                        start += window.count
                    }
                }
            }
            try await tasks.waitForAll()
        }
    }

    private func learningStatus(_ connection: RouterConnection) async throws -> LearningInfo {
        let result = try await connection.send(.learn(LearnRequest(action: .status, router: "learning")), as: LearnResult.self)
        guard let status = result.routers.first else { throw ValidationError("router 'learning' does not learn online") }
        return status
    }

    private func waitUntilPublished(_ events: Int, _ connection: RouterConnection) async throws {
        for _ in 0..<60_000 {
            let status = try await learningStatus(connection)
            if let error = status.lastError { throw ValidationError("learning failed: \(error)") }
            if status.events >= UInt64(events) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw ValidationError("the router did not publish \(events) outcomes within 10 minutes")
    }

    private func testAPGR(router: String, _ test: [Labelled], _ connection: RouterConnection) async throws -> Double {
        var scores: [Double] = []
        for start in stride(from: 0, to: test.count, by: 256) {
            let prompts = test[start..<min(test.count, start + 256)].map(\.prompt)
            scores += try await connection.score(router: router, prompts: prompts).scores
        }
        return RoutingCurve(scores: scores, strong: test.map(\.strong), weak: test.map(\.weak)).apgr
    }

    private func seconds(since start: ContinuousClock.Instant) -> Double {
        Engine.microseconds(since: start) / 1_000_000
    }
}
