import Synchronization

/// Which model each live session is on, so a conversation does not bounce between
/// models: a session keeps its model for `ttl` seconds after its last request, and
/// moves only up (to a dearer candidate), never down.
///
/// Bounded: past `maxEntries` the least recently used session is forgotten. Kept by
/// the engine, so sessions survive reloads; a session whose model is no longer a
/// candidate of its router starts anew.
final class SessionTable: Sendable {
    private struct Entry: Sendable {
        var model: String
        var rank: Int
    }

    private let table: Mutex<ExpiringLRU<Entry>>

    init(ttl: Double, maxEntries: Int) {
        table = Mutex(ExpiringLRU(ttl: ttl, maxEntries: maxEntries))
    }

    /// Takes a new generation's settings; the sessions stay.
    func configure(ttl: Double, maxEntries: Int) {
        table.withLock {
            $0.ttl = ttl
            $0.maxEntries = maxEntries
        }
    }

    var count: Int { table.withLock { $0.count } }

    /// The model for this turn of `session` on `router`, given the policy's `choice`, and how the session
    /// shaped it. `candidates` are the router's, to tell whether a remembered model still applies.
    func decide(router: String, session: String, choice: Candidate, candidates: [Candidate], now: Double) -> (Candidate, SessionAffinity) {
        let key = router + "\u{0}" + session
        return table.withLock { table in
            var affinity = SessionAffinity.new
            var decided = choice
            if let entry = table.value(for: key, now: now), let remembered = candidates.first(where: { $0.name == entry.model }) {
                if choice.name == remembered.name {
                    affinity = .same
                } else if choice.rank > remembered.rank {
                    affinity = .escalated
                } else {
                    affinity = .kept
                    decided = remembered
                }
            }
            table.set(key, Entry(model: decided.name, rank: decided.rank), now: now)
            return (decided, affinity)
        }
    }
}
