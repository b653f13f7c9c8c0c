import NIOConcurrencyHelpers

/// Which model each live session is on, so a conversation does not bounce between
/// models: a session keeps its model for `ttl` seconds after its last request, and
/// moves only up (to a dearer candidate), never down.
///
/// Bounded: past `maxEntries` the least recently used session is forgotten. Kept by
/// the engine, so sessions survive reloads; a session whose model is no longer a
/// candidate of its router starts anew.
final class SessionTable: Sendable {
    private struct Entry {
        var model: String
        var rank: Int
        var lastUsed: Double
        /// Position in `order` of this session's latest use.
        var stamp: UInt64
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// Uses in order, oldest first; stale ones (a later use has a newer stamp) are skipped.
        var order: [(key: String, stamp: UInt64)] = []
        var head = 0
        var stamp: UInt64 = 0
        var ttl: Double
        var maxEntries: Int
    }

    private let state: NIOLockedValueBox<State>

    init(ttl: Double, maxEntries: Int) {
        state = NIOLockedValueBox(State(ttl: ttl, maxEntries: maxEntries))
    }

    /// Takes a new generation's settings; the sessions stay.
    func configure(ttl: Double, maxEntries: Int) {
        state.withLockedValue {
            $0.ttl = ttl
            $0.maxEntries = maxEntries
        }
    }

    var count: Int { state.withLockedValue { $0.entries.count } }

    /// The model for this turn of `session` on `router`, given the policy's `choice`, and how the session
    /// shaped it. `candidates` are the router's, to tell whether a remembered model still applies.
    func decide(router: String, session: String, choice: Candidate, candidates: [Candidate], now: Double) -> (Candidate, SessionAffinity) {
        let key = router + "\u{0}" + session
        return state.withLockedValue { state in
            var affinity = SessionAffinity.new
            var decided = choice
            if let entry = state.entries[key], now - entry.lastUsed <= state.ttl,
                let remembered = candidates.first(where: { $0.name == entry.model })
            {
                if choice.name == remembered.name {
                    affinity = .same
                } else if choice.rank > remembered.rank {
                    affinity = .escalated
                } else {
                    affinity = .kept
                    decided = remembered
                }
            }
            state.stamp += 1
            state.entries[key] = Entry(model: decided.name, rank: decided.rank, lastUsed: now, stamp: state.stamp)
            state.order.append((key, state.stamp))
            Self.evict(&state, now: now)
            return (decided, affinity)
        }
    }

    /// Forgets expired sessions at the old end of the order and the least recently used past the bound;
    /// compacts the order when most of it is stale.
    private static func evict(_ state: inout State, now: Double) {
        while state.head < state.order.count {
            let (key, stamp) = state.order[state.head]
            guard let entry = state.entries[key], entry.stamp == stamp else {
                state.head += 1  // a later use superseded this one
                continue
            }
            if state.entries.count > state.maxEntries || now - entry.lastUsed > state.ttl {
                state.entries[key] = nil
                state.head += 1
            } else {
                break
            }
        }
        if state.head > 1024, state.head * 2 > state.order.count {
            state.order.removeFirst(state.head)
            state.head = 0
        }
        // A long-lived session ahead of a busy one pins the head; rebuild the order from the live
        // entries when stale uses pile up behind it, so memory stays bounded by the entries.
        if state.order.count > 2 * state.entries.count + 1024 {
            state.order = state.entries.map { (key: $0.key, stamp: $0.value.stamp) }.sorted { $0.stamp < $1.stamp }
            state.head = 0
        }
    }
}
