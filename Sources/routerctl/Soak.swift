import ArgumentParser
import Foundation
import RouterClient
import RouterConfig
import RouterEngine
import RouterPluginHost
import RouterProtocol
import StableHash
import Synchronization

/// Hours of mixed traffic against a routerd this command starts, with every decision checked.
///
/// The daemon runs the routers of a shipped config (`--config`) with explicit thresholds in place of
/// `strong_fraction`, so that each decision can be checked against the generation it names: the
/// soak writes every config the daemon loads, and registers the thresholds (and λ) of generation
/// g + 1 before it asks for the change that makes it. Traffic: every op, the learned routers on
/// repeated and never-seen prompts, batches of fresh texts through `embed` (to run the embedding
/// cache through far more distinct prompts than it holds), feedback that the online learner folds
/// in, bad lines with their expected error codes, connections opened and dropped, and a reload or
/// `set` every `--change-every` seconds, one in five broken on purpose.
struct Soak: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run routerd under mixed traffic for minutes, check every answer, and print requests, errors and the RSS curve.",
        discussion: """
            Exits 1 on an unexpected error, a wrong decision, an embedding cache past its capacity, or a daemon \
            that died; RSS growth after warm-up is printed, not judged (docs/OPERATIONS.md, "Soak").
            """)

    @Option(help: "Minutes of traffic.") var minutes: Double = 30
    @Option(name: [.short, .long], help: "The config whose routers, encoders and plugins the soak runs.")
    var config: String = "etc/routerd/routerd.yaml"
    @Option(help: "The model catalogue the config's routers price with.") var models: String = "etc/routerd/models.yaml"
    @Option(help: "The routerd binary. Default: the one next to routerctl.") var routerd: String?
    @Option(help: "Traffic connections, each a closed loop.") var clients: Int = 6
    @Option(name: .customLong("change-every"), help: "Seconds between reloads or sets.") var changeEvery: Double = 10
    @Option(name: .customLong("sample-every"), help: "Seconds between RSS samples.") var sampleEvery: Double = 10
    @Option(name: .customLong("warm-up"), help: "The share of the run before RSS growth is measured from.") var warmUp: Double = 0.2
    @Option(name: .customLong("cache-size"), help: "The embedding cache's capacity, in embeddings.") var cacheSize: Int = 10000
    @Option(help: "Write the RSS curve here as CSV.") var csv: String?
    @Option(help: "Seed of the traffic's randomness.") var seed: UInt64 = 1

    func validate() throws {
        guard minutes > 0, clients > 0, changeEvery > 0, sampleEvery > 0, (0..<1).contains(warmUp), cacheSize > 0 else {
            throw ValidationError("--minutes, --clients, --change-every, --sample-every and --cache-size must be positive, --warm-up in [0, 1)")
        }
    }

    func run() async throws {
        let binary = routerd ?? siblingExecutable("routerd")
        let shipped: DaemonConfig
        do throws(ConfigError) {
            shipped = try ConfigLoader.load(
                file: config, hostABIVersion: Int(PluginLibrary.hostABIVersion), executableDirectory: (binary as NSString).deletingLastPathComponent)
        } catch {
            throw ValidationError("--config \(config): \(error.issues.map(\.description).joined(separator: "; "))")
        }
        let folder = try SoakFolder()
        let layout = try SoakConfig(shipped: shipped, models: absolute(models), folder: folder.path, cacheSize: cacheSize)
        var random = SplitMix64(seed: seed)
        let settings = layout.initialSettings(using: &random)
        try layout.text(settings).write(toFile: layout.file, atomically: true, encoding: .utf8)
        let daemon = try ChildDaemon(binary: binary, config: layout.file, socket: layout.socket, log: folder.path + "/routerd.log")
        defer { daemon.stop() }
        print(
            "routerctl soak: \(minutes) min, \(clients) clients, a change every \(changeEvery) s (1 in 5 broken), cache \(cacheSize); routerd pid \(daemon.pid), config \(layout.file)"
        )
        fflush(nil)

        let tally = SoakTally()
        tally.expect(generation: 1, settings)
        let deadline = ContinuousClock.now + .seconds(minutes * 60)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<clients {
                let traffic = SoakTraffic(
                    socket: layout.socket, layout: layout, tally: tally, seed: seed &+ UInt64(client + 1) &* 0x9E37_79B9_7F4A_7C15)
                group.addTask { await traffic.run(until: deadline) }
            }
            group.addTask { await SoakTraffic.churn(socket: layout.socket, tally: tally, until: deadline) }
            group.addTask { [layout, changeEvery] in
                await SoakController(layout: layout, tally: tally, settings: settings, seed: ~seed, socket: layout.socket)
                    .run(every: changeEvery, until: deadline)
            }
            group.addTask { [sampleEvery] in
                await SoakSampler(daemon: daemon, socket: layout.socket, tally: tally, started: started).run(every: sampleEvery, until: deadline)
            }
            try await group.waitForAll()
        }
        let exitStatus = daemon.stop()
        let report = tally.report(warmUp: warmUp, daemonStatus: exitStatus, log: folder.path + "/routerd.log")
        print(report.text)
        if let csv { try tally.rssCSV().write(toFile: csv, atomically: true, encoding: .utf8) }
        if !report.passed { throw ExitCode(1) }
        folder.remove()
    }

    private func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}

/// A private folder for the soak's config, socket, feedback and log; removed after a passing run.
struct SoakFolder {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "routerctl-soak-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw ValidationError("cannot make a temporary folder: \(String(cString: strerror(errno)))") }
        path = String(cString: made)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// What the soak varies between generations: each binary router's threshold, and λ.
struct SoakSettings: Sendable, Hashable {
    var thresholds: [String: Double]
    var lambdas: [String: Double]
}

/// The config the soak writes: the shipped config's routers, encoders and plugins, with its own
/// socket, feedback folder and admin uid, and thresholds it chooses.
struct SoakConfig: Sendable {
    let file: String
    let socket: String
    let folder: String
    let binaryRouters: [DaemonConfig.Router]
    let lambdaRouters: [DaemonConfig.Router]
    private let shipped: DaemonConfig
    private let models: String
    private let cacheSize: Int

    init(shipped: DaemonConfig, models: String, folder: String, cacheSize: Int) throws {
        self.shipped = shipped
        self.models = models
        self.folder = folder
        self.cacheSize = cacheSize
        file = folder + "/routerd.yaml"
        socket = folder + "/routerd.sock"
        binaryRouters = shipped.routers.filter(\.policy.isBinary)
        lambdaRouters = shipped.routers.filter { if case .lambda = $0.policy { true } else { false } }
        guard !binaryRouters.isEmpty else { throw ValidationError("\(shipped.file) has no router with a threshold or strong_fraction") }
    }

    var learningRouter: String? {
        binaryRouters.first { $0.plugin == "sw_ranking" }?.name
    }

    func initialSettings(using random: inout SplitMix64) -> SoakSettings {
        SoakSettings(
            thresholds: Dictionary(uniqueKeysWithValues: binaryRouters.map { ($0.name, Self.threshold(using: &random)) }),
            lambdas: Dictionary(uniqueKeysWithValues: lambdaRouters.map { ($0.name, Self.lambda(using: &random)) }))
    }

    /// Thresholds in the middle of the scores' range, so both tiers are chosen.
    static func threshold(using random: inout SplitMix64) -> Double { (Double.random(in: 0.3...0.7, using: &random) * 1000).rounded() / 1000 }
    static func lambda(using random: inout SplitMix64) -> Double { Double(Int.random(in: 1...40, using: &random)) }

    /// One way to break a config, and what the reload's error must say.
    enum Breakage: CaseIterable {
        case yamlSyntax, unknownPlugin, missingWeights, tornWeights, thresholdOutOfRange
    }

    /// The config text for `settings`, or broken in one way.
    func text(_ settings: SoakSettings, broken: Breakage? = nil) throws -> String {
        func json(_ value: some Encodable) throws -> String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        }
        var lines = [
            "# Written by routerctl soak from \(shipped.file).",
            "socket: {path: \(try json(socket))}",
            "admin: {uids: [\(getuid())]}",
            "plugins: {search_paths: \(try json(shipped.pluginSearchPaths)), library_paths: \(try json(shipped.libraryPaths))}",
            "limits: {max_line_bytes: 65536, idle_timeout: 60, max_in_flight: 64}",
            "logging: {level: notice}",
            "models: \(try json(models))",
            // Fewer decisions remembered for feedback than the default 100,000, so the table fills within a long run.
            "feedback: {directory: \(try json(folder + "/feedback")), decisions: {max_entries: 20000}, learning: {publish_every: 50}}",
            "encoders:",
        ]
        for (name, encoder) in shipped.encoders.sorted(by: { $0.key < $1.key }) {
            lines.append(
                "  \(name): {kind: \(encoder.kind), path: \(try json(encoder.path)), cache_size: \(cacheSize), long_text: \(encoder.longText), threads: \(encoder.threads)}"
            )
        }
        lines.append("routers:")
        for router in shipped.routers {
            var params = router.params
            var plugin = router.plugin
            let policy: String
            switch router.policy {
            case .threshold, .strongFraction:
                var threshold = settings.thresholds[router.name] ?? 0.5
                if broken == .thresholdOutOfRange, router.name == binaryRouters.last?.name { threshold = 1.5 }
                policy = "threshold: \(threshold), strong_model: \(try json(router.strongModel)), weak_model: \(try json(router.weakModel))"
            case .lambda:
                policy = "policy: {lambda: \(settings.lambdas[router.name] ?? 1)}, candidates: \(try json(router.candidates))"
            case .cheapestWithin(let epsilon):
                policy = "policy: {cheapest_within: \(epsilon)}, candidates: \(try json(router.candidates))"
            case .budget:
                continue  // its λ moves with traffic, so its decisions cannot be checked against a generation
            }
            if router.name == binaryRouters.first(where: { $0.encoder != nil })?.name {
                if broken == .unknownPlugin { plugin = "no_such_plugin" }
                if broken == .missingWeights, let key = params.first(where: { Self.isFile($0.value) })?.key {
                    params[key] = .string(folder + "/missing.safetensors")
                }
                if broken == .tornWeights, let (key, value) = params.first(where: { Self.isFile($0.value) }), case .string(let path) = value {
                    let torn = folder + "/torn.safetensors"
                    let bytes = FileManager.default.contents(atPath: path) ?? Data()
                    try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: torn))
                    params[key] = .string(torn)
                }
            }
            let encoder = try router.encoder.map { ", encoder: \(try json($0))" } ?? ""
            lines.append("  \(router.name): {plugin: \(plugin), \(policy)\(encoder), params: \(try json(params))}")
        }
        if broken == .yamlSyntax { lines.append("  broken: {plugin: [unclosed") }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func isFile(_ value: ParamValue) -> Bool {
        if case .string(let path) = value { return path.hasSuffix(".safetensors") }
        return false
    }
}
