import Foundation
import RouterConfig
import RouterEngine
import RouterJSON
import Synchronization

/// The fleet's sessions (`fleet.share: [sessions]`).
///
/// The engine journals each session decision; this thread ships the journal to `routerd_sessions`
/// (one row per session, the last decision of any host wins the row) and merges the other hosts'
/// rows into the engine's session table, woken by NOTIFY and polling as a fallback. Neither side
/// is on the path of `route`: a turn that reaches another host before its previous turn's row does
/// (the replication lag, well under a second on a healthy database) starts as a new session there.
///
/// Sessions are soft state: the journal is bounded, a database outage loses freshness and nothing
/// else, and on start a host reads every live row again (it keeps no cursor on disk).
extension FleetSync {
    /// Sessions per shipped batch and per read.
    static let sessionBatch = 2000
    /// How often rows past the session TTL are deleted.
    static let sessionPruneInterval = 60.0
    /// The least time between two shipped batches: under load a batch then carries every change
    /// of that time (the last per session), in one transaction and one NOTIFY that wakes every
    /// other host, instead of one per decision.
    static let sessionShipInterval = 0.05

    func sessionLoop() {
        var connection: PostgresConnection?
        var hostSeq: Int64 = 0
        var cursor: [String: Int64] = [:]
        var pending: [SharedSession] = []
        var backoff = 0.5
        var lastPrune = Date.distantPast
        var lastShip = Date.distantPast
        let query = """
            SELECT s.router, s.owner, s.session, s.model, s.rank, s.seen_at, s.host, s.host_seq
            FROM routerd_session_hosts h
            CROSS JOIN LATERAL (
                SELECT * FROM routerd_sessions s
                WHERE s.fleet = h.fleet AND s.host = h.host AND s.host_seq > coalesce(($2::jsonb ->> h.host)::bigint, 0)
                ORDER BY s.host_seq LIMIT \(Self.sessionBatch)
            ) s
            WHERE h.fleet = $1 AND h.host <> $3 AND h.last_seq > coalesce(($2::jsonb ->> h.host)::bigint, 0)
            """
        while !stopped {
            var byte: UInt8 = 0
            while read(sessionWake.read, &byte, 1) > 0 {}
            do throws(FleetError) {
                if connection == nil {
                    let opened = try openClaimed("sessions", part: "sessions")
                    let found = try FleetError.from { () throws(PostgresError) in
                        try opened.execute("LISTEN routerd_sessions")
                        return try opened.execute(
                            "SELECT last_seq FROM routerd_session_hosts WHERE fleet = $1 AND host = $2", [settings.name, settings.host])
                    }
                    hostSeq = found.first?.first.flatMap { $0.flatMap(Int64.init) } ?? 0
                    connection = opened
                }
                let wait = Self.sessionShipInterval - Date().timeIntervalSince(lastShip)
                if wait > 0 { waitForStop(wait) }
                pending += engine.takeSessionChanges(limit: max(0, Self.sessionBatch - pending.count))
                if !pending.isEmpty {
                    let shipped = try shipSessions(pending, after: hostSeq, on: connection!)
                    lastShip = Date()
                    hostSeq = shipped.lastSeq
                    state.withLock { $0.sessionsShipped += UInt64(shipped.rows) }
                    pending = []
                }
                let rows = try FleetError.from { () throws(PostgresError) in
                    try connection!.execute(query, [settings.name, JSONCursor.text(cursor), settings.host])
                }
                let now = Date().timeIntervalSince1970
                var merged: UInt64 = 0
                for row in rows {
                    guard row.count == 8, let router = row[0], let owner = row[1], let session = row[2], let model = row[3],
                        let rank = row[4].flatMap({ Int($0) }), let seenAt = row[5].flatMap(Double.init), let host = row[6],
                        let seq = row[7].flatMap({ Int64($0) })
                    else { continue }
                    cursor[host] = max(cursor[host] ?? 0, seq)
                    engine.mergeSession(
                        SharedSession(router: router, owner: owner, session: session, model: model, rank: rank, age: max(0, now - seenAt)))
                    merged += 1
                }
                if merged > 0 { state.withLock { $0.sessionsReceived += merged } }
                if Date().timeIntervalSince(lastPrune) >= Self.sessionPruneInterval {
                    try FleetError.from { () throws(PostgresError) in
                        try connection!.execute(
                            "DELETE FROM routerd_sessions WHERE fleet = $1 AND seen_at < $2",
                            [settings.name, String(now - 2 * engine.sessionTTL)])
                    }
                    lastPrune = Date()
                }
                backoff = 0.5
                if rows.count < Self.sessionBatch {
                    _ = try FleetError.from { () throws(PostgresError) in
                        try connection!.waitForNotification(timeout: settings.pollIntervalSeconds, wake: sessionWake.read)
                    }
                }
            } catch {
                record(error: error.message, "sessions")
                connection = nil
                waitForStop(backoff)
                backoff = min(backoff * 2, Self.maxBackoff)
            }
        }
    }

    /// Ships `changes` (the last of each session wins), numbered after `seq`, in one transaction
    /// with this host's last seq and a NOTIFY.
    private func shipSessions(_ changes: [SharedSession], after seq: Int64, on connection: PostgresConnection) throws(FleetError) -> (
        rows: Int, lastSeq: Int64
    ) {
        var latest: [SharedSession] = []
        var position: [String: Int] = [:]
        for change in changes {
            // PostgreSQL's text holds no NUL: such a session stays on its host.
            guard ![change.router, change.owner, change.session, change.model].contains(where: { $0.utf8.contains(0) }) else { continue }
            let key = change.router + "\u{0}" + change.owner + "\u{0}" + change.session
            if let index = position[key] {
                latest[index] = change
            } else {
                position[key] = latest.count
                latest.append(change)
            }
        }
        guard !latest.isEmpty else { return (0, seq) }
        let now = Date().timeIntervalSince1970
        let rows: [JSONValue] = latest.enumerated().map { index, change in
            .object([
                "router": .string(change.router), "owner": .string(change.owner), "session": .string(change.session),
                "model": .string(change.model), "rank": .integer(Int64(change.rank)), "seen_at": .number(now - change.age),
                "host_seq": .integer(seq + Int64(index) + 1),
            ])
        }
        let lastSeq = seq + Int64(latest.count)
        do {
            try connection.execute("BEGIN")
            try connection.execute(
                """
                INSERT INTO routerd_sessions (fleet, router, owner, session, model, rank, seen_at, host, host_seq)
                SELECT $1, r.router, r.owner, r.session, r.model, r.rank, r.seen_at, $2, r.host_seq
                FROM jsonb_to_recordset($3::jsonb) AS r(router text, owner text, session text, model text, rank integer,
                    seen_at double precision, host_seq bigint)
                ON CONFLICT (fleet, router, owner, session) DO UPDATE SET model = EXCLUDED.model, rank = EXCLUDED.rank,
                    seen_at = EXCLUDED.seen_at, host = EXCLUDED.host, host_seq = EXCLUDED.host_seq
                """, [settings.name, settings.host, JSONValue.array(rows).text])
            try connection.execute(
                """
                INSERT INTO routerd_session_hosts (fleet, host, last_seq) VALUES ($1, $2, $3)
                ON CONFLICT (fleet, host) DO UPDATE SET last_seq = EXCLUDED.last_seq
                """, [settings.name, settings.host, String(lastSeq)])
            try connection.execute("SELECT pg_notify('routerd_sessions', $1)", [settings.name])
            try connection.execute("COMMIT")
        } catch {
            if error.kind == .statement { _ = try? connection.execute("ROLLBACK") }
            throw FleetError(error.message)
        }
        return (latest.count, lastSeq)
    }
}
