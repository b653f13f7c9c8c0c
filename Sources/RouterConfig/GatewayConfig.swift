import Foundation
import UpstreamFallback

extension DaemonConfig {
    /// The OpenAI-compatible HTTP gateway (`gateway:`): where it listens, who may call it, its
    /// limits, and how hard it tries an upstream before giving up. Off when the section is absent.
    public struct Gateway: Sendable, Hashable {
        /// A loopback TCP address (host and port), when the gateway listens on one.
        public var host: String?
        public var port: Int?
        /// A Unix socket path (absolute), when the gateway listens on one, and its file mode.
        public var socketPath: String?
        public var socketMode: UInt32
        /// Bearer keys a request must present (`authorization: Bearer <key>`), read from the files
        /// and environment variables `keys` names, never from the config's text. Empty: no key needed.
        public var keys: [Key]
        /// Peers (by SO_PEERCRED) allowed on the Unix socket; both empty: any peer the socket's mode admits.
        public var uids: [UInt32]
        public var gids: [UInt32]
        /// The largest request body accepted, in bytes.
        public var maxBodyBytes: Int
        /// The largest non-streamed upstream answer read, in bytes; a larger one is a failed attempt.
        public var maxResponseBytes: Int
        /// Requests served at once; more wait for a slot (back-pressure), up to `queueTimeout`.
        public var maxConcurrent: Int
        public var queueTimeoutSeconds: Double
        /// A connection idle this long is closed.
        public var idleTimeoutSeconds: Double
        /// One attempt's time to the upstream's response headers, and, streamed, between chunks.
        public var attemptTimeoutSeconds: Double
        /// Retries, fallbacks, the deadline and cool-downs.
        public var fallback: FallbackSettings
        /// Log prompts and completions at debug level; otherwise the gateway never logs them.
        public var logPrompts: Bool

        public init(
            host: String? = nil, port: Int? = nil, socketPath: String? = nil, socketMode: UInt32 = 0o660, keys: [Key] = [],
            uids: [UInt32] = [], gids: [UInt32] = [], maxBodyBytes: Int = 4 << 20, maxResponseBytes: Int = 16 << 20, maxConcurrent: Int = 256,
            queueTimeoutSeconds: Double = 5, idleTimeoutSeconds: Double = 120, attemptTimeoutSeconds: Double = 60,
            fallback: FallbackSettings = FallbackSettings(), logPrompts: Bool = false
        ) {
            self.host = host
            self.port = port
            self.socketPath = socketPath
            self.socketMode = socketMode
            self.keys = keys
            self.uids = uids
            self.gids = gids
            self.maxBodyBytes = maxBodyBytes
            self.maxResponseBytes = maxResponseBytes
            self.maxConcurrent = maxConcurrent
            self.queueTimeoutSeconds = queueTimeoutSeconds
            self.idleTimeoutSeconds = idleTimeoutSeconds
            self.attemptTimeoutSeconds = attemptTimeoutSeconds
            self.fallback = fallback
            self.logPrompts = logPrompts
        }

        /// One of `gateway.keys`: the secret a request presents, and the name that makes its holder
        /// a principal of its own over TCP (its decisions, sessions and cached embeddings). Keys
        /// without a name are one principal, routerd's own user.
        public struct Key: Sendable, Hashable {
            public var secret: String
            public var name: String?
            public init(secret: String, name: String? = nil) {
                self.secret = secret
                self.name = name
            }
        }

        /// Whether a Unix-socket peer may call the gateway.
        public func admits(uid: UInt32, gid: UInt32) -> Bool {
            (uids.isEmpty && gids.isEmpty) || uid == 0 || uids.contains(uid) || gids.contains(gid)
        }

        /// Whether `other` listens where these settings do: the addresses bound at start, which a
        /// restart, not a reload, changes.
        public func listensAtSameAddresses(as other: Gateway) -> Bool {
            host == other.host && port == other.port && socketPath == other.socketPath
        }

        /// The addresses bound at start, as the log names them.
        public var listeners: String {
            [host.map { "\($0):\(port ?? 0)" }, socketPath].compactMap { $0 }.joined(separator: " and ")
        }
    }
}

extension ConfigLoader {
    static let gatewayKeys: Set<String> = [
        "listen", "socket", "socket_mode", "keys", "allow", "max_body_bytes", "max_response_bytes", "max_concurrent", "queue_timeout",
        "idle_timeout", "attempt_timeout", "fallback", "log_prompts",
    ]

    /// The `gateway:` section. Keys come from `{file: path}` (readable by routerd's user alone) or
    /// `{env: NAME}` entries, so that the config can be shown without revealing them.
    static func readGateway(_ node: YAMLNode, folder: String, _ diagnostics: Diagnostics) -> DaemonConfig.Gateway? {
        let fields = node.fields("gateway", allowed: gatewayKeys, diagnostics)
        #if !Gateway
            diagnostics.report(
                "this routerd was built without the gateway (the package trait Gateway was disabled); build it with the default traits, or remove 'gateway:'",
                at: node)
        #endif
        var gateway = DaemonConfig.Gateway()
        if let listenNode = fields["listen"], let listen = listenNode.string("gateway.listen", diagnostics) {
            let parts = listen.split(separator: ":", omittingEmptySubsequences: false)
            if parts.count == 2, ["127.0.0.1", "localhost"].contains(String(parts[0])), let port = Int(parts[1]), (1...65535).contains(port) {
                gateway.host = "127.0.0.1"
                gateway.port = port
            } else {
                diagnostics.report(
                    "gateway.listen must be a loopback address and port such as 127.0.0.1:8080 (for other hosts, put a TLS proxy in front), found '\(listen)'",
                    at: listenNode)
            }
        }
        if let path = fields["socket"]?.string("gateway.socket", diagnostics) { gateway.socketPath = absolute(path, relativeTo: folder) }
        if let mode = fields["socket_mode"]?.fileMode("gateway.socket_mode", diagnostics) { gateway.socketMode = mode }
        if fields["listen"] == nil, fields["socket"] == nil {
            diagnostics.report("gateway needs 'listen' (e.g. 127.0.0.1:8080), 'socket' (a Unix socket path), or both", at: node)
        }
        var keyNames: Set<String> = []
        for (index, entry) in (fields["keys"]?.list("gateway.keys", diagnostics) ?? []).enumerated() {
            let context = "gateway.keys[\(index)]"
            let source = entry.fields(context, allowed: ["file", "env", "name"], diagnostics)
            var name: String?
            if let given = source["name"]?.string("\(context).name", diagnostics) {
                if !Self.isKeyName(given) {
                    diagnostics.report(
                        "\(context).name '\(given)' must be 1 to 64 letters, digits, '.', '_' or '-' (it names the key's holder in logs and errors)",
                        at: source["name"])
                } else if !keyNames.insert(given).inserted {
                    diagnostics.report("\(context).name '\(given)' is already another key's; give each key its own name", at: source["name"])
                } else {
                    name = given
                }
            }
            var secret: String?
            if let file = source["file"]?.string("\(context).file", diagnostics) {
                let path = absolute(file, relativeTo: folder)
                if let problem = secretFileProblem(path) {
                    diagnostics.report("\(context): \(problem)", at: source["file"])
                } else if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                    let key = text.trimmingCharacters(in: .whitespacesAndNewlines)
                    if key.isEmpty { diagnostics.report("\(context): \(path) is empty", at: source["file"]) } else { secret = key }
                } else {
                    diagnostics.report("\(context): cannot read \(path) as UTF-8 text", at: source["file"])
                }
            } else if let variable = source["env"]?.string("\(context).env", diagnostics) {
                if let key = ProcessInfo.processInfo.environment[variable], !key.isEmpty {
                    secret = key
                } else {
                    diagnostics.report(
                        "\(context): the environment variable \(variable) is not set (or empty) in routerd's environment", at: source["env"])
                }
            } else if source["file"] == nil, source["env"] == nil {
                diagnostics.report("\(context) needs 'file' (a file holding the key) or 'env' (a variable holding it)", at: entry)
            }
            if let secret {
                if gateway.keys.contains(where: { $0.secret == secret }) {
                    diagnostics.report("\(context) holds the same key as an earlier entry; each holder needs a key of its own", at: entry)
                } else {
                    gateway.keys.append(DaemonConfig.Gateway.Key(secret: secret, name: name))
                }
            }
        }
        let allow = fields["allow"]?.fields("gateway.allow", allowed: ["uids", "gids"], diagnostics) ?? [:]
        let ids = { (key: String) -> [UInt32] in
            (allow[key]?.list("gateway.allow.\(key)", diagnostics) ?? []).compactMap {
                $0.int("gateway.allow.\(key) entry", in: 0...Int(UInt32.max), diagnostics).map(UInt32.init)
            }
        }
        (gateway.uids, gateway.gids) = (ids("uids"), ids("gids"))
        if let value = fields["max_body_bytes"]?.int("gateway.max_body_bytes", in: 1024...(1 << 30), diagnostics) { gateway.maxBodyBytes = value }
        if let value = fields["max_response_bytes"]?.int("gateway.max_response_bytes", in: 1024...(1 << 31), diagnostics) {
            gateway.maxResponseBytes = value
        }
        if let value = fields["max_concurrent"]?.int("gateway.max_concurrent", in: 1...100_000, diagnostics) { gateway.maxConcurrent = value }
        if let value = fields["queue_timeout"]?.double("gateway.queue_timeout", in: 0...3600, diagnostics) { gateway.queueTimeoutSeconds = value }
        if let value = fields["idle_timeout"]?.double("gateway.idle_timeout", in: 0.1...86400, diagnostics) { gateway.idleTimeoutSeconds = value }
        if let value = fields["attempt_timeout"]?.double("gateway.attempt_timeout", in: 0.01...3600, diagnostics) {
            gateway.attemptTimeoutSeconds = value
        }
        if let value = fields["log_prompts"]?.bool("gateway.log_prompts", diagnostics) { gateway.logPrompts = value }
        if let fallbackNode = fields["fallback"] {
            let settings = fallbackNode.fields(
                "gateway.fallback",
                allowed: ["max_attempts", "retries", "retry_delay", "max_retry_delay", "deadline", "cool_down_after", "cool_down"], diagnostics)
            var fallback = FallbackSettings()
            if let value = settings["max_attempts"]?.int("gateway.fallback.max_attempts", in: 1...100, diagnostics) { fallback.maxAttempts = value }
            if let value = settings["retries"]?.int("gateway.fallback.retries", in: 0...100, diagnostics) { fallback.retriesPerCandidate = value }
            if let value = settings["retry_delay"]?.double("gateway.fallback.retry_delay", in: 0...60, diagnostics) { fallback.baseDelay = value }
            if let value = settings["max_retry_delay"]?.double("gateway.fallback.max_retry_delay", in: 0...600, diagnostics) {
                fallback.maxDelay = value
            }
            if let value = settings["deadline"]?.double("gateway.fallback.deadline", in: 0.01...3600, diagnostics) { fallback.deadline = value }
            if let value = settings["cool_down_after"]?.int("gateway.fallback.cool_down_after", in: 1...1000, diagnostics) {
                fallback.failuresToCool = value
            }
            if let value = settings["cool_down"]?.double("gateway.fallback.cool_down", in: 0...86400, diagnostics) { fallback.coolDown = value }
            if let problem = fallback.problem { diagnostics.report("gateway.fallback: \(problem)", at: fallbackNode) }
            gateway.fallback = fallback
        }
        return gateway
    }

    /// A key's name: short, and plain enough to print in a log line or an error.
    static func isKeyName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || [UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-")].contains(byte)
            }
    }

    /// Why a key file may not be trusted with a secret: it must be a regular file that no one but
    /// its owner (root or routerd's user) can read or write.
    static func secretFileProblem(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return "cannot read \(path): \(String(cString: strerror(errno)))" }
        guard info.st_mode & S_IFMT == S_IFREG else { return "\(path) is not a regular file" }
        guard info.st_uid == 0 || info.st_uid == geteuid() else {
            return "\(path) is owned by uid \(info.st_uid), neither root nor routerd's user (uid \(geteuid()))"
        }
        guard info.st_mode & 0o077 == 0 else {
            return "\(path) has mode \(String(info.st_mode & 0o7777, radix: 8)): group or others can read or write the key; chmod 600 it"
        }
        return nil
    }
}
