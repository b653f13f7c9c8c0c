import Foundation

extension DaemonConfig {
    /// Daemons that share state through one PostgreSQL database (`fleet:`); off when absent.
    public struct Fleet: Sendable, Hashable {
        /// What the fleet shares.
        public enum Share: String, Sendable, Hashable, CaseIterable {
            /// Acknowledged outcomes, which every host's online learner learns from.
            case outcomes
            /// Each budget router's window and curve, so its controller holds the fleet's aggregate.
            case budgets
            /// The session table, so a conversation keeps its model on any host.
            case sessions
        }

        /// A `postgresql://` URL or libpq `key=value` string, without a password; TLS as its
        /// `sslmode` asks.
        public var url: String
        /// The password, read from `password_file` or `password_env`, never from the config's text;
        /// nil leaves it to libpq (a `.pgpass` file, peer or certificate login).
        public var password: String?
        /// The fleet's name: daemons of one name share with each other, and with no one else, in one database.
        public var name: String
        /// This daemon's name in the fleet: its outcomes are shipped under it, and two daemons may not share one.
        public var host: String
        public var share: Set<Share>
        /// How often the tailer looks for other hosts' outcomes when no NOTIFY woke it, in seconds.
        public var pollIntervalSeconds: Double
        /// How long a connection attempt may take, in seconds.
        public var connectTimeoutSeconds: Int
        /// How often a host publishes its budgets and reads the others', in seconds.
        public var budgetIntervalSeconds: Double
        /// The outbox is rewritten without its shipped lines once they take this many bytes.
        public var outboxCompactBytes: Int64

        public init(
            url: String, password: String? = nil, name: String, host: String, share: Set<Share> = [.outcomes],
            pollIntervalSeconds: Double = 1, connectTimeoutSeconds: Int = 5, budgetIntervalSeconds: Double = 1,
            outboxCompactBytes: Int64 = 64 << 20
        ) {
            self.url = url
            self.password = password
            self.name = name
            self.host = host
            self.share = share
            self.pollIntervalSeconds = pollIntervalSeconds
            self.connectTimeoutSeconds = connectTimeoutSeconds
            self.budgetIntervalSeconds = budgetIntervalSeconds
            self.outboxCompactBytes = outboxCompactBytes
        }
    }
}

extension ConfigLoader {
    /// The `fleet:` section.
    static func readFleet(_ node: YAMLNode, folder: String, feedback: DaemonConfig.Feedback?, _ diagnostics: Diagnostics) -> DaemonConfig.Fleet? {
        let fields = node.fields(
            "fleet",
            allowed: [
                "url", "password_file", "password_env", "name", "host", "share", "poll_interval_ms", "connect_timeout",
                "budget_interval_ms", "outbox_compact_bytes",
            ],
            diagnostics)
        guard let urlNode = fields["url"] else {
            diagnostics.report("fleet needs 'url', the PostgreSQL database the fleet shares (postgresql://user@host/db)", at: node)
            return nil
        }
        guard let url = urlNode.string("fleet.url", diagnostics) else { return nil }
        // A password in the URL would be in the config's text, which `routerd --check-config` and
        // operators show; it belongs in a file or the environment.
        if let parsed = URLComponents(string: url), parsed.password != nil {
            diagnostics.report(
                "fleet.url holds a password; put it in a file named by 'password_file' (mode 600) or a variable named by 'password_env'",
                at: urlNode)
        } else if url.range(of: #"(^|\s)password\s*="#, options: .regularExpression) != nil {
            diagnostics.report(
                "fleet.url holds a password; put it in a file named by 'password_file' (mode 600) or a variable named by 'password_env'",
                at: urlNode)
        }
        var password: String?
        if let file = fields["password_file"]?.string("fleet.password_file", diagnostics) {
            let path = absolute(file, relativeTo: folder)
            if let problem = secretFileProblem(path) {
                diagnostics.report("fleet.password_file: \(problem)", at: fields["password_file"])
            } else if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                password = text.trimmingCharacters(in: .whitespacesAndNewlines)
            } else {
                diagnostics.report("fleet.password_file: cannot read \(path) as UTF-8 text", at: fields["password_file"])
            }
        }
        if let variable = fields["password_env"]?.string("fleet.password_env", diagnostics) {
            if fields["password_file"] != nil {
                diagnostics.report("fleet: give 'password_file' or 'password_env', not both", at: fields["password_env"])
            } else if let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty {
                password = value
            } else {
                diagnostics.report(
                    "fleet.password_env: the environment variable \(variable) is not set (or empty) in routerd's environment",
                    at: fields["password_env"])
            }
        }
        let name = fields["name"]?.string("fleet.name", diagnostics) ?? "default"
        if !isFleetName(name) {
            diagnostics.report("fleet.name '\(name)' must be 1 to 64 letters, digits, '.', '_' or '-'", at: fields["name"])
        }
        let host = fields["host"]?.string("fleet.host", diagnostics) ?? ProcessInfo.processInfo.hostName
        if !isFleetName(host) {
            diagnostics.report(
                "fleet.host '\(host)' must be 1 to 64 letters, digits, '.', '_' or '-' (it names this daemon in the fleet; the default is the machine's name)",
                at: fields["host"] ?? node)
        }
        var share: Set<DaemonConfig.Fleet.Share> = [.outcomes]
        if let list = fields["share"]?.list("fleet.share", diagnostics) {
            share = []
            for entry in list {
                guard let text = entry.string("fleet.share entry", diagnostics) else { continue }
                if let part = DaemonConfig.Fleet.Share(rawValue: text) {
                    share.insert(part)
                } else {
                    diagnostics.report(
                        "fleet.share: '\(text)' is not something this routerd shares; it shares: \(DaemonConfig.Fleet.Share.allCases.map(\.rawValue).joined(separator: ", "))",
                        at: entry)
                }
            }
        }
        if share.isEmpty {
            diagnostics.report(
                "fleet.share is empty: name what the fleet shares (\(DaemonConfig.Fleet.Share.allCases.map(\.rawValue).joined(separator: ", "))), or remove 'fleet:'",
                at: fields["share"])
        }
        if share.contains(.outcomes), feedback == nil {
            diagnostics.report(
                "fleet.share has outcomes, which needs 'feedback:' (outcomes are recorded locally first, then shipped from its folder)", at: node)
        }
        let poll = fields["poll_interval_ms"]?.int("fleet.poll_interval_ms", in: 10...60_000, diagnostics) ?? 1000
        let timeout = fields["connect_timeout"]?.int("fleet.connect_timeout", in: 2...600, diagnostics) ?? 5
        let budgetInterval = fields["budget_interval_ms"]?.int("fleet.budget_interval_ms", in: 50...60_000, diagnostics) ?? 1000
        let compactBytes = fields["outbox_compact_bytes"]?.int("fleet.outbox_compact_bytes", in: 1024...(1 << 40), diagnostics) ?? (64 << 20)
        return DaemonConfig.Fleet(
            url: url, password: password, name: name, host: host, share: share, pollIntervalSeconds: Double(poll) / 1000,
            connectTimeoutSeconds: timeout, budgetIntervalSeconds: Double(budgetInterval) / 1000, outboxCompactBytes: Int64(compactBytes))
    }

    static func isFleetName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D
            }
    }
}
