import Foundation
import RouterConfig
import RouterPluginKit
import StableHash

struct SoakFolder {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "routerctl-soak-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw BenchmarkRunError("cannot make a temporary folder: \(String(cString: strerror(errno)))") }
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
    /// With gateway traffic: the gateway's port and each catalogue model's name on the stub upstream.
    let gateway: SoakGatewayLayout?

    init(shipped: DaemonConfig, models: String, folder: String, cacheSize: Int, gateway: SoakGatewayLayout? = nil) throws {
        self.shipped = shipped
        self.gateway = gateway
        // With a gateway, the catalogue is rewritten with an endpoint on the stub for every model.
        self.models = try gateway.map { try $0.writeCatalogue(from: models, folder: folder) } ?? models
        self.folder = folder
        self.cacheSize = cacheSize
        file = folder + "/routerd.yaml"
        socket = folder + "/routerd.sock"
        binaryRouters = shipped.routers.filter(\.policy.isBinary)
        lambdaRouters = shipped.routers.filter { if case .lambda = $0.policy { true } else { false } }
        guard !binaryRouters.isEmpty else { throw BenchmarkRunError("\(shipped.file) has no router with a threshold or strong_fraction") }
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
            "feedback: {directory: \(try json(folder + "/feedback")), allow: {uids: [\(getuid())]}, decisions: {max_entries: 20000}, learning: {publish_every: 50}}",
            "encoders:",
        ]
        if let gateway {
            lines.insert(
                "gateway: {listen: 127.0.0.1:\(gateway.port), attempt_timeout: 0.5, fallback: {retries: 1, retry_delay: 0.01, max_retry_delay: 0.05, cool_down_after: 3, cool_down: 2}}",
                at: lines.count - 1)
        }
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
