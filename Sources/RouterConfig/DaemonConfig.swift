import Foundation
import RouterVocabulary

/// The daemon's configuration, `routerd.yaml`, fully validated.
///
/// Relative paths in the file resolve against the file's own folder, so a
/// config can be moved together with what it points at.
public struct DaemonConfig: Sendable {
    public struct Socket: Sendable {
        public var path: String
        /// File mode of a socket the daemon creates (default 0660).
        public var mode: UInt32
        /// Group that owns the socket file; nil keeps the daemon's group.
        public var group: String?
        /// User that owns the socket file; nil keeps the daemon's user. Changing it needs root.
        public var owner: String? = nil
    }

    public struct Admin: Sendable {
        /// Peers (by SO_PEERCRED) allowed to run admin ops; root always is.
        public var uids: [UInt32]
        public var gids: [UInt32]
    }

    public struct Limits: Sendable {
        /// Longest request line accepted, in bytes, without its newline.
        public var maxLineBytes: Int
        public var maxConnections: Int
        /// Connections one peer uid may hold at once, so one local user cannot take them all.
        public var maxConnectionsPerUID: Int
        /// A connection with nothing in flight and no input for this long is closed.
        public var idleTimeoutSeconds: Double
        /// Requests read but not yet answered on one connection before reading pauses.
        public var maxInFlightPerConnection: Int
        /// Texts in one `score` or `embed` request.
        public var maxTexts: Int
        /// Windows of one text embedded with `long_text: windows` (each 254 word pieces).
        public var maxWindows: Int
        /// Model positions (tokens, [CLS] and [SEP] included) the encoder may run for one request,
        /// summed over its uncached texts and their windows: what bounds a request's encoder time.
        public var maxTokens: Int
    }

    public struct Logging: Sendable {
        public enum Level: String, Sendable, CaseIterable { case trace, debug, info, notice, warning, error, critical }
        public var level: Level
    }

    /// The optional JSONL log of every decision.
    public struct DecisionLog: Sendable, Hashable {
        /// The file (absolute); appended to, created if missing.
        public var path: String
        /// Log the prompt's text; otherwise only a hash of it.
        public var includePrompt: Bool
        /// Rotate to `<path>.1` when the file reaches this many bytes; 0 never (use SIGUSR1 with logrotate).
        public var maxBytes: Int
    }

    /// How reloads happen: on file changes, and how long one may take.
    public struct Reload: Sendable, Hashable {
        /// Reload when the config, a descriptor or a file a router's `path` parameter names changes.
        public var watch: Bool
        /// Quiet time after the last change before reloading, so an editor's several writes make one reload.
        public var debounceSeconds: Double
        /// How long building a new generation (loading plugins, creating instances) may take before the
        /// reload is rejected. A plugin's `create` cannot be interrupted, so it runs on; what it builds is
        /// discarded when it returns, and reloads are refused until then.
        public var timeoutSeconds: Double
    }

    /// The optional Prometheus endpoint.
    public struct Metrics: Sendable, Hashable {
        /// A loopback address and port, e.g. 127.0.0.1:9464.
        public var host: String
        public var port: Int
    }

    /// A sentence encoder routers can share.
    public struct Encoder: Sendable, Hashable {
        public static let kinds = ["minilm"]

        public var name: String
        public var kind: String
        /// The model folder (absolute).
        public var path: String
        /// Embeddings kept in the LRU cache; 0 disables it.
        public var cacheSize: Int
        /// How texts over 256 tokens are embedded: head, tail or windows.
        public var longText: LongTextPolicy
        /// OpenBLAS threads per matrix product (process-wide: the largest value configured wins).
        public var threads: Int
        /// Texts embedded in one pass at most, when concurrent requests' prompts are batched.
        public var batchSize: Int
        /// Microseconds a batch may wait to fill, and only while batches are shared by several
        /// requests: a lone request is never held back.
        public var batchWaitMicroseconds: Int
        /// The library running the linear layers: onednn (weights packed once at load) or openblas.
        public var kernel: LinearKernel
        /// The linear layers' arithmetic: fp32, int8 or bf16, or auto (the fastest that passes the
        /// accuracy gate at load).
        public var precision: PrecisionSetting = .fixed(.fp32)
    }

    /// Session affinity: how long a session's model sticks, and how many sessions are remembered.
    public struct Sessions: Sendable, Hashable {
        /// Seconds since a session's last request after which it is forgotten.
        public var ttlSeconds: Double
        /// Sessions remembered at once; past it the least recently used is forgotten.
        public var maxEntries: Int
    }

    /// Outcome feedback: where the `feedback` op's rows go, who may send them, and how long
    /// decisions are remembered so feedback can name them by `decision_id`.
    public struct Feedback: Sendable, Hashable {
        /// The folder (absolute) holding `battles.jsonl` and `quality.jsonl`, the training formats.
        public var directory: String
        /// How long a reply waits for other feedback to share its `fdatasync` (group commit), in seconds.
        public var syncIntervalSeconds: Double
        /// Write the prompt's text in each row (needed to train on it); otherwise only its hash.
        public var includePrompt: Bool
        /// Peers trusted with any feedback, besides root: reports on any decision, and on prompts
        /// by router. Every other peer may report only on decisions it asked for itself.
        public var uids: [UInt32]
        public var gids: [UInt32]
        /// Seconds a decision can be named by its `decision_id`.
        public var decisionTTLSeconds: Double
        /// Decisions remembered at once, and the bytes of prompt text they may hold; past either
        /// bound the oldest is forgotten.
        public var maxDecisions: Int
        public var maxDecisionBytes: Int
        /// Online learning by routers whose plugin learns online.
        public var learning: Learning

        public struct Learning: Sendable, Hashable {
            public var enabled: Bool
            /// Publish a router's pending outcomes once this many have arrived…
            public var publishEvery: Int
            /// …or once the oldest has waited this long, in seconds.
            public var publishIntervalSeconds: Double
        }

        /// Whether a peer is trusted with any feedback (root, or listed in `feedback.allow`).
        public func trusts(uid: UInt32, gid: UInt32) -> Bool {
            uid == 0 || uids.contains(uid) || gids.contains(gid)
        }
    }

    /// One router instance: a plugin plus its parameters and decision settings.
    public struct Router: Sendable {
        public var name: String
        public var plugin: String
        /// How the router chooses among its candidates.
        public var policy: RoutingPolicy
        /// The models the router chooses among, as the config names them; two or more.
        public var candidates: [String]
        /// For two candidates, the strong one; for more, the dearest in the catalogue.
        public var strongModel: String
        /// For two candidates, the weak one; for more, the cheapest in the catalogue.
        public var weakModel: String
        /// Route to the strong model when P(strong wins) ≥ threshold, for a `threshold` policy.
        public var threshold: Double? { if case .threshold(let value) = policy { value } else { nil } }
        /// The share of traffic to send to the strong model, for a `strong_fraction` policy.
        public var strongFraction: Double? { if case .strongFraction(let value) = policy { value } else { nil } }
        /// The encoder whose embeddings the plugin receives, if any.
        public var encoder: String?
        public var params: [String: ParamValue]
        /// Whether the router learns online, when its plugin can and `feedback.learning` is on
        /// (`learn: false` keeps one frozen, as a control).
        public var learn: Bool = true
        /// Seconds a decision may take before the request gets `router_timeout` (the plugin's call
        /// runs on regardless: an in-process call cannot be stopped); nil waits as long as it takes.
        public var timeoutSeconds: Double? = nil
        /// Exploration (`explore:`); nil chooses greedily.
        public var exploration: Exploration? = nil
        /// Other routers of the config that also decide each of this router's prompts, off the
        /// request's path, for comparison (`shadow:`); their decisions are logged, never served.
        public var shadows: [String] = []
        /// Flagging prompts unfamiliar to the router, and routing them by a rule (`novelty:`).
        public var novelty: Novelty? = nil
    }

    /// A router's novelty rule: a prompt whose familiarity (the plugin's judgement, in [0, 1]) is
    /// below `threshold` is novel, and with `onNovel` goes where that says instead of where the
    /// policy would send it.
    public struct Novelty: Sendable, Hashable {
        public enum Rule: Sendable, Hashable {
            /// Send it to this candidate.
            case model(String)
            /// Send it to a candidate drawn uniformly (its propensity logged), so its outcome teaches about every candidate.
            case explore
        }

        public var threshold: Double
        public var onNovel: Rule?

        public static let defaultThreshold = 0.05

        public init(threshold: Double = defaultThreshold, onNovel: Rule? = nil) {
            self.threshold = threshold
            self.onNovel = onNovel
        }
    }

    /// ε-greedy exploration: with probability `epsilon` a decision goes to another candidate,
    /// uniformly among those within `maxExtraCost` of the greedy choice's expected cost; every
    /// decision then carries the probability its model was chosen with.
    public struct Exploration: Sendable, Hashable {
        /// How a decision explores.
        public enum Strategy: Sendable, Hashable {
            /// With probability ε, another candidate drawn uniformly.
            case epsilonGreedy
            /// The policy's choice under one draw from the router's posterior (its plugin's
            /// `sample`); each choice's propensity is its share of `draws` draws.
            case thompson(draws: Int)
        }

        public var strategy: Strategy
        /// The most of a router's traffic that explores: ε-greedy's ε (0 < ε ≤ 0.5), or the share
        /// of decisions that follow a Thompson draw (0 < share ≤ 1), the rest taking the greedy choice.
        public var epsilon: Double
        /// USD an explored decision may cost above the greedy one, by the candidates' expected
        /// costs; nil: no bound (or no prices).
        public var maxExtraCost: Double?
        /// Seeds the draws, for a reproducible replay; nil draws from the system's generator.
        public var seed: UInt64?

        public init(strategy: Strategy = .epsilonGreedy, epsilon: Double, maxExtraCost: Double? = nil, seed: UInt64? = nil) {
            self.strategy = strategy
            self.epsilon = epsilon
            self.maxExtraCost = maxExtraCost
            self.seed = seed
        }

        public static let defaultDraws = 100
    }

    /// The file this config was read from (absolute).
    public var file: String
    public var socket: Socket
    public var admin: Admin
    public var pluginSearchPaths: [String]
    public var libraryPaths: [String]
    public var limits: Limits
    public var logging: Logging
    public var decisionLog: DecisionLog?
    public var metrics: Metrics?
    public var reload: Reload
    /// The models routers may choose, with prices; empty when the config has no `models:`.
    public var models: ModelCatalogue
    public var sessions: Sessions
    /// Outcome feedback; nil when the config has no `feedback:` (the op then answers `feedback_unavailable`).
    public var feedback: Feedback?
    /// Encoders by name.
    public var encoders: [String: Encoder]
    /// Router instances in file order.
    public var routers: [Router]
    /// The descriptors of the plugins the routers use, by plugin name.
    public var plugins: [String: PluginDescriptor]
    /// The OpenAI-compatible HTTP gateway; nil when the config has no `gateway:`.
    public var gateway: Gateway? = nil
    /// Daemons sharing outcomes through PostgreSQL; nil when the config has no `fleet:`.
    public var fleet: Fleet? = nil
}

/// Reads `routerd.yaml` and the descriptors of the plugins it uses.
public enum ConfigLoader {
    public static let defaultPath = "/etc/routerd/routerd.yaml"
    public static let defaultSocketPath = "/run/routerd/routerd.sock"

    /// A router's `novelty:` mapping: `{threshold: T, on_novel: {model: M} | explore}`.
    static func readNovelty(_ node: YAMLNode, candidates: [String]?, context: String, _ diagnostics: Diagnostics) -> DaemonConfig.Novelty? {
        let fields = node.fields("\(context): novelty", allowed: ["threshold", "on_novel"], diagnostics)
        var novelty = DaemonConfig.Novelty()
        if let threshold = fields["threshold"]?.double("\(context): novelty.threshold", in: 0...1, diagnostics) { novelty.threshold = threshold }
        guard let rule = fields["on_novel"] else { return novelty }
        if case .mapping = rule.kind {
            let ruleFields = rule.fields("\(context): novelty.on_novel", allowed: ["model"], diagnostics)
            guard let model = ruleFields["model"]?.string("\(context): novelty.on_novel.model", diagnostics) else {
                diagnostics.report("\(context): novelty.on_novel needs 'model' (or is the word explore)", at: rule)
                return nil
            }
            if let candidates, !candidates.contains(model) {
                diagnostics.report(
                    "\(context): novelty.on_novel.model '\(model)' is not one of the router's candidates (\(candidates.joined(separator: ", ")))",
                    at: ruleFields["model"] ?? rule)
                return nil
            }
            novelty.onNovel = .model(model)
        } else if rule.string("\(context): novelty.on_novel", oneOf: ["explore"], diagnostics) != nil {
            novelty.onNovel = .explore
        } else {
            return nil
        }
        return novelty
    }

    /// A router's `explore:`: ε-greedy (`epsilon`), or Thompson sampling (`strategy: thompson`,
    /// `max_share`, `draws`); either with `max_extra_cost` and `seed`.
    static func readExploration(_ node: YAMLNode, context: String, _ diagnostics: Diagnostics) -> DaemonConfig.Exploration? {
        let explore = node.fields(
            "\(context): explore", allowed: ["strategy", "epsilon", "max_share", "draws", "max_extra_cost", "seed"], diagnostics)
        let maxExtraCost = explore["max_extra_cost"]?.double("\(context): explore.max_extra_cost", in: 0...1_000_000, diagnostics)
        let seed = explore["seed"]?.int("\(context): explore.seed", in: 0...Int.max, diagnostics).map(UInt64.init)
        var strategy = "epsilon_greedy"
        if let node = explore["strategy"] {
            guard let named = node.string("\(context): explore.strategy", oneOf: ["epsilon_greedy", "thompson"], diagnostics) else { return nil }
            strategy = named
        }
        switch strategy {
        case "thompson":
            if explore["epsilon"] != nil {
                diagnostics.report(
                    "\(context): explore.epsilon is for strategy epsilon_greedy; Thompson sampling's bound is max_share", at: explore["epsilon"]!)
            }
            let share = explore["max_share"].map { $0.double("\(context): explore.max_share", in: 0.000001...1, diagnostics) } ?? 1
            let draws =
                explore["draws"].map { $0.int("\(context): explore.draws", in: 10...10_000, diagnostics) } ?? DaemonConfig.Exploration.defaultDraws
            guard let share, let draws else { return nil }
            return DaemonConfig.Exploration(strategy: .thompson(draws: draws), epsilon: share, maxExtraCost: maxExtraCost, seed: seed)
        case "epsilon_greedy":
            for key in ["max_share", "draws"] where explore[key] != nil {
                diagnostics.report("\(context): explore.\(key) is for strategy thompson; ε-greedy's bound is epsilon", at: explore[key]!)
            }
            guard let node = explore["epsilon"] else {
                diagnostics.report(
                    "\(context): explore needs epsilon, the most of the traffic that explores (0 to 0.5), or strategy: thompson", at: node)
                return nil
            }
            guard let epsilon = node.double("\(context): explore.epsilon", in: 0.000001...0.5, diagnostics) else { return nil }
            return DaemonConfig.Exploration(epsilon: epsilon, maxExtraCost: maxExtraCost, seed: seed)
        default:
            return nil
        }
    }

    static let topKeys: Set<String> = [
        "socket", "admin", "plugins", "limits", "logging", "reload", "decision_log", "metrics", "models", "sessions", "feedback", "encoders",
        "routers", "gateway", "fleet",
    ]
    static let routerKeys: Set<String> = [
        "plugin", "threshold", "strong_fraction", "policy", "candidates", "strong_model", "weak_model", "encoder", "params", "learn", "timeout",
        "explore", "shadow", "novelty",
    ]
    static let encoderKeys: Set<String> = [
        "kind", "path", "cache_size", "long_text", "threads", "batch_size", "batch_wait_us", "kernel", "precision",
    ]

    /// Loads and validates `file`; on failure, the error lists every problem found.
    ///
    /// - Parameters:
    ///   - hostABIVersion: the plugin ABI version of the running host.
    ///   - executableDirectory: searched last for plugin libraries, so a build
    ///     folder holding both `routerd` and the plugins works as is.
    public static func load(file: String, hostABIVersion: Int, executableDirectory: String? = nil) throws(ConfigError) -> DaemonConfig {
        let file = absolute(file, relativeTo: FileManager.default.currentDirectoryPath)
        let diagnostics = Diagnostics(file: file)
        guard let root = readYAML(file: file, diagnostics) else { throw ConfigError(issues: diagnostics.issues) }
        let folder = (file as NSString).deletingLastPathComponent
        let top = root.fields("config", allowed: topKeys, diagnostics)

        // socket
        let socketFields = top["socket"]?.fields("socket", allowed: ["path", "mode", "owner", "group"], diagnostics) ?? [:]
        var socket = DaemonConfig.Socket(path: defaultSocketPath, mode: 0o660, group: nil)
        if let path = socketFields["path"]?.string("socket.path", diagnostics) { socket.path = absolute(path, relativeTo: folder) }
        if let mode = socketFields["mode"]?.fileMode("socket.mode", diagnostics) { socket.mode = mode }
        socket.group = socketFields["group"]?.string("socket.group", diagnostics)
        socket.owner = socketFields["owner"]?.string("socket.owner", diagnostics)

        // admin
        let adminFields = top["admin"]?.fields("admin", allowed: ["uids", "gids"], diagnostics) ?? [:]
        let ids = { (key: String) -> [UInt32] in
            (adminFields[key]?.list("admin.\(key)", diagnostics) ?? []).compactMap {
                $0.int("admin.\(key) entry", in: 0...Int(UInt32.max), diagnostics).map(UInt32.init)
            }
        }
        let admin = DaemonConfig.Admin(uids: ids("uids"), gids: ids("gids"))

        // plugins
        let pluginFields = top["plugins"]?.fields("plugins", allowed: ["search_paths", "library_paths"], diagnostics) ?? [:]
        let paths = { (key: String) -> [String] in
            (pluginFields[key]?.list("plugins.\(key)", diagnostics) ?? []).compactMap {
                $0.string("plugins.\(key) entry", diagnostics).map { absolute($0, relativeTo: folder) }
            }
        }
        let searchPaths = paths("search_paths")
        let libraryPaths = paths("library_paths")

        // limits
        let limitFields =
            top["limits"]?.fields(
                "limits",
                allowed: [
                    "max_line_bytes", "max_connections", "max_connections_per_uid", "idle_timeout", "max_in_flight", "max_texts", "max_windows",
                    "max_tokens",
                ],
                diagnostics)
            ?? [:]
        let limits = DaemonConfig.Limits(
            maxLineBytes: limitFields["max_line_bytes"]?.int("limits.max_line_bytes", in: 64...(1 << 30), diagnostics) ?? 1 << 20,
            maxConnections: limitFields["max_connections"]?.int("limits.max_connections", in: 1...1_000_000, diagnostics) ?? 1024,
            maxConnectionsPerUID: limitFields["max_connections_per_uid"]?.int("limits.max_connections_per_uid", in: 1...1_000_000, diagnostics)
                ?? 256,
            idleTimeoutSeconds: limitFields["idle_timeout"]?.double("limits.idle_timeout", in: 0.01...(86400 * 365), diagnostics) ?? 300,
            maxInFlightPerConnection: limitFields["max_in_flight"]?.int("limits.max_in_flight", in: 1...1_000_000, diagnostics) ?? 128,
            maxTexts: limitFields["max_texts"]?.int("limits.max_texts", in: 1...1_000_000, diagnostics) ?? 256,
            maxWindows: limitFields["max_windows"]?.int("limits.max_windows", in: 1...1_000, diagnostics) ?? 8,
            maxTokens: limitFields["max_tokens"]?.int("limits.max_tokens", in: 256...100_000_000, diagnostics) ?? 2048)

        // logging
        let logFields = top["logging"]?.fields("logging", allowed: ["level"], diagnostics) ?? [:]
        var logging = DaemonConfig.Logging(level: .info)
        if let name = logFields["level"]?.string("logging.level", oneOf: DaemonConfig.Logging.Level.allCases.map(\.rawValue), diagnostics),
            let level = DaemonConfig.Logging.Level(rawValue: name)
        {
            logging.level = level
        }

        // reload
        let reloadFields = top["reload"]?.fields("reload", allowed: ["watch", "debounce_ms", "timeout"], diagnostics) ?? [:]
        let reload = DaemonConfig.Reload(
            watch: reloadFields["watch"]?.bool("reload.watch", diagnostics) ?? false,
            debounceSeconds: Double(reloadFields["debounce_ms"]?.int("reload.debounce_ms", in: 0...600_000, diagnostics) ?? 500) / 1000,
            timeoutSeconds: reloadFields["timeout"]?.double("reload.timeout", in: 0.1...3600, diagnostics) ?? 60)

        // decision_log
        var decisionLog: DaemonConfig.DecisionLog?
        if let node = top["decision_log"] {
            let fields = node.fields("decision_log", allowed: ["path", "include_prompt", "max_bytes"], diagnostics)
            if let pathNode = fields["path"], let path = pathNode.string("decision_log.path", diagnostics) {
                decisionLog = DaemonConfig.DecisionLog(
                    path: absolute(path, relativeTo: folder),
                    includePrompt: fields["include_prompt"]?.bool("decision_log.include_prompt", diagnostics) ?? false,
                    maxBytes: fields["max_bytes"]?.int("decision_log.max_bytes", in: 0...(1 << 50), diagnostics) ?? 0)
            } else if fields["path"] == nil {
                diagnostics.report("decision_log needs 'path', the JSONL file to append decisions to", at: node)
            }
        }

        // metrics
        var metrics: DaemonConfig.Metrics?
        if let node = top["metrics"] {
            let fields = node.fields("metrics", allowed: ["listen"], diagnostics)
            if let listenNode = fields["listen"], let listen = listenNode.string("metrics.listen", diagnostics) {
                let parts = listen.split(separator: ":", omittingEmptySubsequences: false)
                if parts.count == 2, ["127.0.0.1", "localhost", "::1"].contains(String(parts[0])), let port = Int(parts[1]),
                    (1...65535).contains(port)
                {
                    metrics = DaemonConfig.Metrics(host: parts[0] == "localhost" ? "127.0.0.1" : String(parts[0]), port: port)
                } else {
                    diagnostics.report(
                        "metrics.listen must be a loopback address and port such as 127.0.0.1:9464 (metrics are never exposed beyond this host), found '\(listen)'",
                        at: listenNode)
                }
            } else if fields["listen"] == nil {
                diagnostics.report("metrics needs 'listen', e.g. 127.0.0.1:9464", at: node)
            }
        }

        // models
        var models = ModelCatalogue()
        var catalogueIssues: [ConfigIssue] = []
        if let node = top["models"] { (models, catalogueIssues) = readCatalogue(node, folder: folder, diagnostics) }

        // sessions
        let sessionFields = top["sessions"]?.fields("sessions", allowed: ["ttl", "max_entries"], diagnostics) ?? [:]
        let sessions = DaemonConfig.Sessions(
            ttlSeconds: sessionFields["ttl"]?.double("sessions.ttl", in: 0.001...(86400 * 365), diagnostics) ?? 1800,
            maxEntries: sessionFields["max_entries"]?.int("sessions.max_entries", in: 1...100_000_000, diagnostics) ?? 100_000)

        let feedback = top["feedback"].flatMap { readFeedback($0, folder: folder, diagnostics) }
        let gateway = top["gateway"].flatMap { readGateway($0, folder: folder, diagnostics) }
        let fleet = top["fleet"].flatMap { readFleet($0, folder: folder, feedback: feedback, diagnostics) }

        // encoders
        var encoders: [String: DaemonConfig.Encoder] = [:]
        for (name, keyNode, node) in top["encoders"]?.entries("encoders", diagnostics) ?? [] {
            let context = "encoder '\(name)'"
            let fields = node.fields(context, allowed: encoderKeys, diagnostics)
            var kind = "minilm"
            if let kindNode = fields["kind"], let value = kindNode.string("\(context): kind", diagnostics) {
                if DaemonConfig.Encoder.kinds.contains(value) {
                    kind = value
                } else {
                    diagnostics.report(
                        "\(context): unknown kind '\(value)' (known kinds: \(DaemonConfig.Encoder.kinds.joined(separator: ", ")))", at: kindNode)
                }
            }
            guard let pathNode = fields["path"] else {
                diagnostics.report("\(context) is missing required key 'path' (the model folder)", at: keyNode)
                continue
            }
            guard let path = pathNode.string("\(context): path", diagnostics) else { continue }
            // An absent key takes its default; a present one that is not a known name is a problem.
            let longText: LongTextPolicy? = fields["long_text"].map { $0.value("\(context): long_text", diagnostics) } ?? .head
            let kernel: LinearKernel? = fields["kernel"].map { $0.value("\(context): kernel", diagnostics) } ?? .onednn
            let precision: PrecisionSetting? =
                fields["precision"].map {
                    $0.string("\(context): precision", oneOf: PrecisionSetting.names, diagnostics).flatMap(PrecisionSetting.init)
                }
                ?? .fixed(.fp32)
            if let kernel, case .fixed(let fixed)? = precision, let refusal = kernel.refusal(of: fixed), let node = fields["precision"] {
                diagnostics.report("\(context): \(refusal)", at: node)
            }
            let cacheSize = fields["cache_size"]?.int("\(context): cache_size", in: 0...100_000_000, diagnostics) ?? 10_000
            let threads = fields["threads"]?.int("\(context): threads", in: 1...256, diagnostics) ?? 1
            let batchSize = fields["batch_size"]?.int("\(context): batch_size", in: 1...1024, diagnostics) ?? 32
            let batchWait = fields["batch_wait_us"]?.int("\(context): batch_wait_us", in: 0...100_000, diagnostics) ?? 300
            // A name that is not in the vocabulary was reported above, so this config is rejected;
            // the encoder is still entered (with the default in its place) so that routers naming
            // it are checked against the right list of encoders. Nothing loads with the default.
            encoders[name] = DaemonConfig.Encoder(
                name: name, kind: kind, path: absolute(path, relativeTo: folder), cacheSize: cacheSize, longText: longText ?? .head,
                threads: threads, batchSize: batchSize, batchWaitMicroseconds: batchWait, kernel: kernel ?? .onednn,
                precision: precision ?? .fixed(.fp32))
        }

        // routers, and the descriptors of the plugins they use
        var libraryDirectories = libraryPaths
        if let executableDirectory { libraryDirectories.append(executableDirectory) }
        var descriptors: [String: PluginDescriptor] = [:]
        var descriptorIssues: [ConfigIssue] = []
        var missingPlugins: Set<String> = []
        var routers: [DaemonConfig.Router] = []
        let routerEntries = top["routers"]?.entries("routers", diagnostics) ?? []
        if top["routers"] == nil || routerEntries.isEmpty {
            diagnostics.report("no routers configured; add at least one under 'routers:'", at: top["routers"] ?? root)
        }
        // Each router's `shadow:` list, checked once every router's name is known.
        var shadowNodes: [(router: String, shadows: [String], node: YAMLNode)] = []
        for (name, keyNode, node) in routerEntries {
            let context = "router '\(name)'"
            if name.isEmpty || name.contains(where: { $0.isWhitespace }) {
                diagnostics.report("router name '\(name)' must be non-empty and contain no spaces", at: keyNode)
            }
            let fields = node.fields(context, allowed: routerKeys, diagnostics)
            func required(_ key: String) -> YAMLNode? {
                if let value = fields[key] { return value }
                diagnostics.report("\(context) is missing required key '\(key)'", at: keyNode)
                return nil
            }
            let plugin = required("plugin")?.string("\(context): plugin", diagnostics)
            let policy = readPolicy(fields, context: context, at: keyNode, diagnostics)
            let models = readCandidates(fields, policy: policy, catalogue: models, context: context, at: keyNode, diagnostics)
            var encoder: String?
            if let encoderNode = fields["encoder"], let value = encoderNode.string("\(context): encoder", diagnostics) {
                if encoders[value] != nil {
                    encoder = value
                } else {
                    let known =
                        encoders.isEmpty ? "none are configured under 'encoders:'" : "encoders: " + encoders.keys.sorted().joined(separator: ", ")
                    diagnostics.report("\(context) uses unknown encoder '\(value)' (\(known))", at: encoderNode)
                }
            }

            guard let plugin else { continue }
            if descriptors[plugin] == nil, !missingPlugins.contains(plugin) {
                let candidates = searchPaths.map { "\($0)/\(plugin)/plugin.yaml" }
                if let descriptorFile = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) {
                    let descriptorDiagnostics = Diagnostics(file: descriptorFile)
                    if let problem = TrustedFile.problem(descriptorFile) {
                        descriptorDiagnostics.report("refusing plugin descriptor: \(problem)", at: nil as SourceMark?)
                        missingPlugins.insert(plugin)
                    } else if let descriptor = PluginDescriptor.read(
                        file: descriptorFile, hostABIVersion: hostABIVersion, libraryDirectories: libraryDirectories, descriptorDiagnostics)
                    {
                        if descriptor.name != plugin {
                            descriptorDiagnostics.report(
                                "descriptor declares name '\(descriptor.name)' but lives in folder '\(plugin)'", at: nil as SourceMark?)
                            missingPlugins.insert(plugin)
                        } else {
                            descriptors[plugin] = descriptor
                        }
                    } else {
                        missingPlugins.insert(plugin)
                    }
                    descriptorIssues += descriptorDiagnostics.issues
                } else {
                    missingPlugins.insert(plugin)
                    let looked = searchPaths.isEmpty ? "no plugins.search_paths are configured" : "looked for: " + candidates.joined(separator: ", ")
                    diagnostics.report("\(context) uses unknown plugin '\(plugin)' (\(looked))", at: fields["plugin"])
                }
            }
            guard let descriptor = descriptors[plugin] else { continue }
            let params = descriptor.validate(params: fields["params"], router: name, at: keyNode, configFolder: folder, diagnostics)
            if descriptor.needsEmbedding, fields["encoder"] == nil {
                let known = encoders.isEmpty ? "configure one under 'encoders:'" : "encoders: " + encoders.keys.sorted().joined(separator: ", ")
                diagnostics.report("\(context): plugin '\(plugin)' needs prompt embeddings; add `encoder: <name>` (\(known))", at: keyNode)
            }
            let learn = fields["learn"]?.bool("\(context): learn", diagnostics) ?? true
            let timeout = fields["timeout"]?.double("\(context): timeout", in: 0.001...3600, diagnostics)
            var exploration: DaemonConfig.Exploration?
            if let node = fields["explore"] {
                exploration = readExploration(node, context: context, diagnostics)
            }
            var novelty: DaemonConfig.Novelty?
            if let node = fields["novelty"] {
                novelty = readNovelty(node, candidates: models?.candidates, context: context, diagnostics)
            }
            var shadows: [String] = []
            if let node = fields["shadow"] {
                shadows = node.list("\(context): shadow", diagnostics).compactMap { $0.string("\(context): shadow entry", diagnostics) }
                shadowNodes.append((name, shadows, node))
            }
            if let policy, let models {
                routers.append(
                    .init(
                        name: name, plugin: plugin, policy: policy, candidates: models.candidates, strongModel: models.strong,
                        weakModel: models.weak, encoder: encoder, params: params, learn: learn, timeoutSeconds: timeout,
                        exploration: exploration, shadows: shadows, novelty: novelty))
            }
        }
        let routerNames = Set(routerEntries.map(\.0))
        for (name, shadows, node) in shadowNodes {
            if let unknown = shadows.first(where: { !routerNames.contains($0) }) {
                diagnostics.report(
                    "router '\(name)': shadow names unknown router '\(unknown)' (routers: \(routerNames.sorted().joined(separator: ", ")))", at: node)
            } else if shadows.contains(name) {
                diagnostics.report("router '\(name)': shadow names the router itself; a shadow is another router to compare with", at: node)
            } else if Set(shadows).count != shadows.count {
                diagnostics.report("router '\(name)': shadow names a router twice", at: node)
            }
        }

        let issues = diagnostics.issues + catalogueIssues + descriptorIssues
        guard issues.isEmpty else { throw ConfigError(issues: issues) }
        return DaemonConfig(
            file: file, socket: socket, admin: admin, pluginSearchPaths: searchPaths, libraryPaths: libraryPaths,
            limits: limits, logging: logging, decisionLog: decisionLog, metrics: metrics, reload: reload, models: models, sessions: sessions,
            feedback: feedback, encoders: encoders, routers: routers, plugins: descriptors, gateway: gateway, fleet: fleet)
    }

    static func readFeedback(_ node: YAMLNode, folder: String, _ diagnostics: Diagnostics) -> DaemonConfig.Feedback? {
        let fields = node.fields(
            "feedback", allowed: ["directory", "sync_interval_ms", "include_prompt", "allow", "decisions", "learning"], diagnostics)
        let allow = fields["allow"]?.fields("feedback.allow", allowed: ["uids", "gids"], diagnostics) ?? [:]
        let ids = { (key: String) -> [UInt32] in
            (allow[key]?.list("feedback.allow.\(key)", diagnostics) ?? []).compactMap {
                $0.int("feedback.allow.\(key) entry", in: 0...Int(UInt32.max), diagnostics).map(UInt32.init)
            }
        }
        let decisions = fields["decisions"]?.fields("feedback.decisions", allowed: ["ttl", "max_entries", "max_bytes"], diagnostics) ?? [:]
        let syncInterval = fields["sync_interval_ms"]?.int("feedback.sync_interval_ms", in: 0...1000, diagnostics) ?? 2
        let includePrompt = fields["include_prompt"]?.bool("feedback.include_prompt", diagnostics) ?? true
        let (uids, gids) = (ids("uids"), ids("gids"))
        let ttl = decisions["ttl"]?.double("feedback.decisions.ttl", in: 1...(86400 * 30), diagnostics) ?? 3600
        let maxEntries = decisions["max_entries"]?.int("feedback.decisions.max_entries", in: 1...100_000_000, diagnostics) ?? 100_000
        let maxBytes = decisions["max_bytes"]?.int("feedback.decisions.max_bytes", in: 1024...(1 << 40), diagnostics) ?? 64 << 20
        let learningFields =
            fields["learning"]?.fields("feedback.learning", allowed: ["enabled", "publish_every", "publish_interval_ms"], diagnostics) ?? [:]
        let learning = DaemonConfig.Feedback.Learning(
            enabled: learningFields["enabled"]?.bool("feedback.learning.enabled", diagnostics) ?? true,
            publishEvery: learningFields["publish_every"]?.int("feedback.learning.publish_every", in: 1...1_000_000, diagnostics) ?? 100,
            publishIntervalSeconds: Double(
                learningFields["publish_interval_ms"]?.int("feedback.learning.publish_interval_ms", in: 1...3_600_000, diagnostics) ?? 2000) / 1000)
        guard let directoryNode = fields["directory"] else {
            diagnostics.report("feedback needs 'directory', the folder for battles.jsonl and quality.jsonl", at: node)
            return nil
        }
        guard let directory = directoryNode.string("feedback.directory", diagnostics) else { return nil }
        return DaemonConfig.Feedback(
            directory: absolute(directory, relativeTo: folder), syncIntervalSeconds: Double(syncInterval) / 1000, includePrompt: includePrompt,
            uids: uids, gids: gids, decisionTTLSeconds: ttl, maxDecisions: maxEntries, maxDecisionBytes: maxBytes, learning: learning)
    }

    /// `path` made absolute against `folder`, with `.` and `..` resolved by name only. Symbolic links
    /// are left for the opener to see: Foundation's `standardizingPath` follows them, which would
    /// hand the daemon the target of a link where it must refuse the link (`OwnedFiles`).
    static func absolute(_ path: String, relativeTo folder: String) -> String {
        let joined = path.hasPrefix("/") ? path : folder + "/" + path
        var parts: [Substring] = []
        for part in joined.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": _ = parts.popLast()
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }
}

extension ConfigLoader {
    /// Just `socket.path` of a config file, for clients: it does not validate
    /// the rest, so a client still finds the socket of a config being edited.
    public static func socketPath(inConfig file: String) -> String? {
        path(["socket", "path"], inConfig: file)
    }

    /// Just `feedback.directory` of a config file, for `routerctl train --from-feedback`.
    public static func feedbackDirectory(inConfig file: String) -> String? {
        path(["feedback", "directory"], inConfig: file)
    }

    /// The scalar at `keys` of a config file, made absolute against the file's folder, without
    /// validating the rest.
    private static func path(_ keys: [String], inConfig file: String) -> String? {
        let diagnostics = Diagnostics(file: file)
        guard FileManager.default.isReadableFile(atPath: file), let root = readYAML(file: file, diagnostics),
            case .scalar(let path, _) = node(at: keys, in: root)?.kind
        else { return nil }
        let folder = ((absolute(file, relativeTo: FileManager.default.currentDirectoryPath)) as NSString).deletingLastPathComponent
        return absolute(path, relativeTo: folder)
    }

    /// The node at `keys` (a mapping key at each level) below `root`, without validating the rest.
    static func node(at keys: [String], in root: YAMLNode) -> YAMLNode? {
        var node = root
        for key in keys {
            guard case .mapping(let pairs) = node.kind,
                let next = pairs.first(where: { if case .scalar(key, _) = $0.key.kind { true } else { false } })?.value
            else { return nil }
            node = next
        }
        return node
    }
}
