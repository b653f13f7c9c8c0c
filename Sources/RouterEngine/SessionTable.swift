import Synchronization

/// A session's model as the fleet shares it (`fleet.share: [sessions]`): whose session it is, the
/// model and its rank, and how long ago it was last used.
public struct SharedSession: Sendable, Hashable {
    public var router: String
    /// The requester that owns the session (a uid or a gateway key's name, as text).
    public var owner: String
    public var session: String
    public var model: String
    public var rank: Int
    /// Seconds since the session's last decision.
    public var age: Double

    public init(router: String, owner: String, session: String, model: String, rank: Int, age: Double) {
        self.router = router
        self.owner = owner
        self.session = session
        self.model = model
        self.rank = rank
        self.age = age
    }
}

/// Which model each live session is on, so a conversation does not bounce between
/// models: a session keeps its model for `ttl` seconds after its last request, and
/// moves only up (to a dearer candidate), never down.
///
/// Bounded: past `maxEntries` the least recently used session is forgotten. Kept by
/// the engine, so sessions survive reloads; a session whose model is no longer a
/// candidate of its router starts anew.
///
/// With a fleet that shares sessions, every decision is also journalled for the fleet to ship,
/// and the other hosts' decisions are merged in (``merge(_:now:)``), so a conversation keeps its
/// model whichever host serves its next turn.
final class SessionTable: Sendable {
    private struct Entry: Sendable {
        var model: String
        var rank: Int
        /// When the fleet last heard of this entry (shipped from here, or merged from another host).
        var sharedAt: Double = -.infinity
    }

    private struct Journal {
        var changes: [(router: String, owner: String, session: String, model: String, rank: Int, at: Double)] = []
        /// The fleets that take the journal, by owner: during a reload the next fleet starts
        /// before the one it replaces stops, and either may be the one that stays.
        var wakes: [ObjectIdentifier: @Sendable () -> Void] = [:]
    }

    /// The most changes the journal holds for the fleet: past it the oldest go (sessions are soft
    /// state, so a long outage costs the fleet freshness, never memory).
    static let journalLimit = 65_536
    /// A turn that keeps a session's model is journalled only if the fleet last heard of the
    /// session this share of the TTL ago: the other hosts need its model, and its time only to
    /// keep it alive, so a conversation on one host costs the fleet a row per new model and per
    /// tenth of the TTL, not per turn. Another host may then forget it up to this much early.
    static let refreshShare = 0.1

    private let table: Mutex<ExpiringLRU<Entry>>
    private let journal = Mutex(Journal())

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
    var ttl: Double { table.withLock { $0.ttl } }

    private static func key(router: String, owner: String, session: String) -> String {
        router + "\u{0}" + owner + "\u{0}" + session
    }

    /// The model for this turn of `owner`'s `session` on `router`, given the policy's `choice`, and how the session
    /// shaped it. `candidates` are the router's, to tell whether a remembered model still applies.
    func decide(
        router: String, owner: String, session: String, choice: Candidate, candidates: [Candidate], now: Double
    ) -> (Candidate, SessionAffinity) {
        let key = Self.key(router: router, owner: owner, session: session)
        let decided: (Candidate, SessionAffinity, Bool) = table.withLock { table in
            var affinity = SessionAffinity.new
            var decided = choice
            let previous = table.value(for: key, now: now)
            if let entry = previous, let remembered = candidates.first(where: { $0.name == entry.model }) {
                if choice.name == remembered.name {
                    affinity = .same
                } else if choice.rank > remembered.rank {
                    affinity = .escalated
                } else {
                    affinity = .kept
                    decided = remembered
                }
            }
            var entry = Entry(model: decided.name, rank: decided.rank, sharedAt: previous?.sharedAt ?? -.infinity)
            let journalled = previous?.model != decided.name || now - entry.sharedAt >= table.ttl * Self.refreshShare
            if journalled { entry.sharedAt = now }
            table.set(key, entry, now: now)
            return (decided, affinity, journalled)
        }
        guard decided.2 else { return (decided.0, decided.1) }
        let wakes: [@Sendable () -> Void] = journal.withLock { journal in
            guard !journal.wakes.isEmpty else { return [] }
            if journal.changes.count >= Self.journalLimit { journal.changes.removeFirst(Self.journalLimit / 2) }
            journal.changes.append((router, owner, session, decided.0.name, decided.0.rank, now))
            return journal.changes.count == 1 ? Array(journal.wakes.values) : []
        }
        for wake in wakes { wake() }
        return (decided.0, decided.1)
    }

    /// Journals decisions for `owner` (a fleet), calling `wake` when the journal stops being
    /// empty; nil ends `owner`'s part, and the journal empties when no owner is left.
    func share(owner: ObjectIdentifier, wake: (@Sendable () -> Void)?) {
        journal.withLock {
            $0.wakes[owner] = wake
            if $0.wakes.isEmpty { $0.changes = [] }
        }
    }

    /// Up to `limit` journalled decisions, oldest first, removed from the journal; ages are from `now`.
    func takeChanges(limit: Int, now: Double) -> [SharedSession] {
        journal.withLock { journal in
            let taken = journal.changes.prefix(limit)
            journal.changes.removeFirst(taken.count)
            return taken.map {
                SharedSession(router: $0.router, owner: $0.owner, session: $0.session, model: $0.model, rank: $0.rank, age: max(0, now - $0.at))
            }
        }
    }

    /// Another host's decision for a session. The session moves only up, as on one host: a live
    /// entry of a higher rank stays (and keeps its own time); otherwise the other host's model is
    /// taken, as last used `age` seconds ago. Not journalled: the fleet already has it.
    func merge(_ shared: SharedSession, now: Double) {
        let key = Self.key(router: shared.router, owner: shared.owner, session: shared.session)
        table.withLock { table in
            guard shared.age <= table.ttl else { return }
            if let entry = table.value(for: key, now: now), entry.rank > shared.rank { return }
            table.set(key, Entry(model: shared.model, rank: shared.rank, sharedAt: now - shared.age), now: now - shared.age)
        }
    }
}
