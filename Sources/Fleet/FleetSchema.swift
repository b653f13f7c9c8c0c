/// The tables routerd keeps in the fleet's database, and their version.
///
/// `routerd_schema` records the version each part was created at. A daemon creates what is missing
/// under a transaction-scoped advisory lock, so daemons starting together do not race; it refuses a
/// database whose version is newer than its own (an older routerd must not write a newer layout).
enum FleetSchema {
    /// 1: outcomes; 2: budgets and sessions (added to a version-1 database in place).
    static let version = 2
    /// Any constant both sides agree on: the advisory lock that serialises schema changes.
    static let lockKey = "7205861731"

    /// One row per shared outcome. The key is (fleet, source, seq): a source is one outbox (a host's
    /// name and the random id of its outbox file), and seq that outbox's own counter, so a retried
    /// batch is the same rows again and `ON CONFLICT DO NOTHING` never doubles one. A tailer reads
    /// each source in seq order along the primary key's index.
    static let statements = [
        """
        CREATE TABLE IF NOT EXISTS routerd_outcomes (
            fleet text NOT NULL,
            source text NOT NULL,
            seq bigint NOT NULL,
            host text NOT NULL,
            router text NOT NULL,
            prompt text NOT NULL,
            model text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('pointwise', 'failed', 'pairwise')),
            quality double precision,
            against text,
            result text,
            decision_id text,
            propensity double precision,
            explored boolean,
            acknowledged_at double precision NOT NULL,
            stored_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (fleet, source, seq)
        )
        """,
        // Each source's last shipped seq, updated in the same transaction as its rows: a tailer
        // reads only the sources that moved past its cursor, each along the outcomes' primary key.
        """
        CREATE TABLE IF NOT EXISTS routerd_sources (
            fleet text NOT NULL,
            source text NOT NULL,
            host text NOT NULL,
            last_seq bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (fleet, source)
        )
        """,
        // Each host's budget per router, overwritten every budget interval: its decision rate, its
        // window's achieved metric, and its curve (the metric at each shared λ). `budget` names the
        // metric and target, so only hosts holding the same budget are aggregated.
        """
        CREATE TABLE IF NOT EXISTS routerd_budgets (
            fleet text NOT NULL,
            router text NOT NULL,
            host text NOT NULL,
            budget text NOT NULL,
            rate double precision NOT NULL,
            achieved double precision NOT NULL,
            curve double precision[] NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (fleet, router, host)
        )
        """,
        // One row per live session, the last decision of any host. A host numbers what it writes
        // (host_seq) so the others read its changes in order along the second index, as outcomes
        // by source; rows past the session TTL are deleted.
        """
        CREATE TABLE IF NOT EXISTS routerd_sessions (
            fleet text NOT NULL,
            router text NOT NULL,
            owner text NOT NULL,
            session text NOT NULL,
            model text NOT NULL,
            rank integer NOT NULL,
            seen_at double precision NOT NULL,
            host text NOT NULL,
            host_seq bigint NOT NULL,
            PRIMARY KEY (fleet, router, owner, session)
        )
        """,
        "CREATE INDEX IF NOT EXISTS routerd_sessions_by_host ON routerd_sessions (fleet, host, host_seq)",
        "CREATE INDEX IF NOT EXISTS routerd_sessions_by_age ON routerd_sessions (fleet, seen_at)",
        """
        CREATE TABLE IF NOT EXISTS routerd_session_hosts (
            fleet text NOT NULL,
            host text NOT NULL,
            last_seq bigint NOT NULL,
            PRIMARY KEY (fleet, host)
        )
        """,
    ]

    /// Creates the tables if they are missing, or checks their version; throws a message an
    /// operator can act on when routerd may not, or when the database is newer than this routerd.
    static func prepare(_ connection: PostgresConnection) throws(FleetError) {
        do {
            try connection.execute("BEGIN")
            try connection.execute("SELECT pg_advisory_xact_lock(\(lockKey))")
            try connection.execute("CREATE TABLE IF NOT EXISTS routerd_schema (component text PRIMARY KEY, version integer NOT NULL)")
            let found = try connection.execute("SELECT version FROM routerd_schema WHERE component = 'fleet'").first?.first ?? nil
            let number = found.flatMap { Int($0) }
            if let number, number > version {
                _ = try? connection.execute("ROLLBACK")
                throw FleetError(
                    "the fleet database's routerd schema is version \(number), newer than this routerd's \(version); upgrade routerd before it joins"
                )
            }
            if number != version {
                // Every statement is IF NOT EXISTS: an older version's tables stay, the new ones are added.
                for statement in statements { try connection.execute(statement) }
                try connection.execute(
                    "INSERT INTO routerd_schema (component, version) VALUES ('fleet', $1) ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
                    [String(version)])
            }
            try connection.execute("COMMIT")
        } catch let error as PostgresError {
            _ = try? connection.execute("ROLLBACK")
            if error.sqlState == "42501" {
                throw FleetError(
                    "routerd may not create its tables in the fleet database (\(error.message)); grant its role CREATE on the schema, or have an owner run routerd once to create them"
                )
            }
            throw FleetError("preparing the fleet database: \(error.message)")
        } catch let error as FleetError {
            throw error
        } catch {
            throw FleetError("preparing the fleet database: \(error)")
        }
    }
}

/// What the fleet could not do, in words an operator can act on.
public struct FleetError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    /// Runs `body`; a PostgreSQL error it throws becomes a fleet error with the same message.
    @discardableResult
    static func from<Result>(_ body: () throws(PostgresError) -> Result) throws(FleetError) -> Result {
        do { return try body() } catch { throw FleetError(error.message) }
    }
}
