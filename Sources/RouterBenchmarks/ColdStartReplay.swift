import Foundation
import NIOCore
import NIOFoundationCompat
import NIOPosix
import RouterClient
import RouterConfig
import RouterEvaluation
import RouterProtocol
import StableHash
import TrainingRows

/// A many-model router started cold and taught by its own traffic, through a real routerd the run
/// starts.
///
/// The router is `sw_ranking` with no index: every model of a per-prompt quality file that is
/// rated on 95% of its rows and priced in the catalogue is a candidate, all equal at first. Prompts
/// outside the test share (``PromptSplit``: positions ≥ `testShare`) are replayed in a seeded
/// order: each is routed (the λ policy, exploring with ε), and only the chosen model's quality is
/// reported, by decision id, as a service calling that model would. With `fullInformation`, every
/// model's quality on each prompt is reported instead, by prompt, for the comparison. At each
/// checkpoint the run waits until the router has published everything reported and hands over
/// to `checkpoint`, which evaluates the learned state (the daemon's state file) in-process.
public struct ColdStartReplay: Sendable {
    public var quality: String
    public var prices: String
    public var lambda = 17.0
    public var epsilon = 0.2
    /// Explore by Thompson sampling from the router's posterior instead of ε-greedy (`epsilon` then
    /// bounds the share of decisions that follow a draw: `max_share`).
    public var thompson = false

    /// The router's `explore:` while it replays.
    var exploreSetting: String {
        thompson ? "{strategy: thompson, max_share: \(epsilon), seed: 1}" : "{epsilon: \(epsilon), seed: 1}"
    }
    public var fullInformation = false
    public var testShare = PromptSplit.defaultTestShare
    /// Replay only prompts at split positions from here (≥ `testShare`), leaving a held-out band
    /// between the two for choosing settings.
    public var replayFrom: Double?
    /// The router's `params:` (a YAML flow mapping).
    public var params = "{gamma: 10, weight_unit: prompt}"
    public var maxPrompts: Int?
    public var checkpoints: [Double] = [0, 0.1, 0.25, 0.5, 1]
    public var publishEvery = 200
    public var model = "models/all-MiniLM-L6-v2"
    public var plugins = "plugins"
    public let work: String
    public let routerd: String

    public init(quality: String, prices: String, work: String, routerd: String) {
        self.quality = quality
        self.prices = prices
        self.work = work
        self.routerd = routerd
    }

    /// What the run did up to a checkpoint.
    public struct Progress: Sendable {
        /// The routerd config, whose router `cold` reads the learned state from its feedback folder.
        public var config: String
        public var prompts: Int
        public var outcomes: Int
        /// Decisions that explored, of `prompts` (0 with full information).
        public var explored: Int
        /// The share of decisions per model so far.
        public var choices: [String: Int]
    }

    public struct Outcome: Sendable {
        public var models: [String]
        public var replayPrompts: Int
        public var outcomesPerSecond: Double
        public var learnedStateBytes: Int
    }

    public func run(log: @escaping @Sendable (String) -> Void, checkpoint: (Progress) async throws -> Void) async throws -> Outcome {
        let catalogue: ModelCatalogue
        do {
            catalogue = try ConfigLoader.loadCatalogue(file: prices)
        } catch {
            throw BenchmarkRunError("\(prices): \(error)")
        }
        let all = try QualityFile.read(quality)
        let rated = RatedModels(records: all, catalogue: catalogue)
        let models = rated.models
        guard models.count >= 2 else { throw BenchmarkRunError("\(quality): fewer than two models are rated on 95% of the rows and priced") }
        let from = max(testShare, replayFrom ?? testShare)
        var replay = rated.complete(all).filter { PromptSplit.position($0.prompt) >= from }
        var random = SplitMix64(seed: 1)
        replay.shuffle(using: &random)
        if let maxPrompts { replay = Array(replay.prefix(maxPrompts)) }
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let feedback = work + "/feedback"
        try? FileManager.default.removeItem(atPath: feedback)
        let socket = work + "/routerd.sock"
        let config = try writeConfig(socket: socket, feedback: feedback, models: models)
        log(
            "bench-coldstart: \(models.count) models, \(replay.count) replay prompts, \(fullInformation ? "every model's outcome" : "one outcome per prompt, \(thompson ? "Thompson sampling, max share" : "ε") \(epsilon)"), λ \(lambda); work folder \(work)"
        )
        let daemon = try ChildDaemon(binary: routerd, config: config, socket: socket, log: work + "/routerd.log")
        defer { daemon.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let connection = try await RouterConnection.connect(socketPath: socket, group: group)
        defer { Task { await connection.close() } }

        var sent = 0
        var outcomes = 0
        var explored = 0
        var choices: [String: Int] = [:]
        var sendSeconds = 0.0
        for mark in Set(checkpoints.map { min(replay.count, Int(($0 * Double(replay.count)).rounded())) }).sorted() {
            if mark > sent {
                let start = ContinuousClock.now
                for begin in stride(from: sent, to: mark, by: 256) {
                    let window = Array(replay[begin..<min(mark, begin + 256)])
                    let reported = try await report(window, models: models, connection: connection)
                    outcomes += reported.outcomes
                    explored += reported.explored
                    for model in reported.chosen { choices[model, default: 0] += 1 }
                }
                let elapsed = ContinuousClock.now - start
                sendSeconds += Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                sent = mark
                try await connection.waitUntilPublished(outcomes, router: "cold")
            }
            try await checkpoint(Progress(config: config, prompts: sent, outcomes: outcomes, explored: explored, choices: choices))
        }
        let stateBytes = (try? FileManager.default.attributesOfItem(atPath: feedback + "/learned/cold/learned.safetensors")[.size] as? Int) ?? 0
        return Outcome(
            models: models, replayPrompts: replay.count, outcomesPerSecond: sendSeconds > 0 ? Double(outcomes) / sendSeconds : 0,
            learnedStateBytes: stateBytes)
    }

    /// Routes a window of prompts and reports their outcomes; returns how many were reported, how
    /// many decisions explored and the models chosen.
    private func report(_ window: [QualityRecord], models: [String], connection: RouterConnection) async throws -> (
        outcomes: Int, explored: Int, chosen: [String]
    ) {
        var requests: [Request] = []
        var explored = 0
        var chosen: [String] = []
        if fullInformation {
            for record in window {
                for model in models {
                    requests.append(
                        .feedback(
                            FeedbackRequest(
                                subject: .prompt(router: "cold", text: record.prompt), model: model,
                                value: .pointwise(quality: record.quality[model]!))))
                }
            }
        } else {
            let lines = try window.map { record in
                connection.sendLine(ByteBuffer(bytes: try RequestCodec.encode(.route(RouteRequest(router: "cold", prompt: record.prompt)), id: nil)))
            }
            let replies = try await EventLoopFuture.whenAllSucceed(lines, on: connection.eventLoop).get()
            for (record, reply) in zip(window, replies) {
                let decision = try ResponseCodec.decode(Decision.self, from: Data(buffer: reply))
                if decision.explored == true { explored += 1 }
                chosen.append(decision.model)
                requests.append(
                    .feedback(
                        FeedbackRequest(
                            subject: .decision(id: decision.decisionID), model: decision.model,
                            value: .pointwise(quality: record.quality[decision.model]!))))
            }
        }
        for start in stride(from: 0, to: requests.count, by: 512) {
            let lines = try requests[start..<min(requests.count, start + 512)].map { request in
                connection.sendLine(ByteBuffer(bytes: try RequestCodec.encode(request, id: nil)))
            }
            for reply in try await EventLoopFuture.whenAllSucceed(lines, on: connection.eventLoop).get()
            where !String(buffer: reply).contains(#""ok":true"#) {
                throw BenchmarkRunError("feedback refused: \(String(buffer: reply))")
            }
        }
        return (requests.count, explored, chosen)
    }

    private func writeConfig(socket: String, feedback: String, models: [String]) throws -> String {
        func absolute(_ path: String) -> String {
            (path as NSString).isAbsolutePath ? path : FileManager.default.currentDirectoryPath + "/" + path
        }
        let candidates = models.map { "\"\($0)\"" }.joined(separator: ", ")
        let text = """
            socket: {path: \(socket)}
            admin: {uids: [\(getuid())]}
            plugins: {search_paths: [\(absolute(plugins))]}
            limits: {max_in_flight: 2048, max_tokens: 1000000}
            models: \(absolute(prices))
            encoders:
              minilm: {path: \(absolute(model)), cache_size: 100000}
            feedback:
              directory: \(feedback)
              allow: {uids: [\(getuid())]}
              learning: {publish_every: \(publishEvery), publish_interval_ms: 200}
            routers:
              cold:
                plugin: sw_ranking
                policy: {lambda: \(lambda)}
                candidates: [\(candidates)]
                encoder: minilm
                params: \(params)\(fullInformation ? "" : "\n    explore: \(exploreSetting)")
            """
        let path = work + "/routerd.yaml"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }
}
