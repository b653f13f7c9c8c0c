/// A map whose entries expire `ttl` seconds after they were last set, bounded in count and in
/// cost (the caller's measure of an entry, such as its bytes): past either bound the least
/// recently set entry goes first. Not thread-safe; its owners keep it under a lock.
///
/// Eviction is amortised O(1): sets are kept in order with a stamp, and a set that a later
/// one superseded is skipped when it reaches the old end.
struct ExpiringLRU<Value: Sendable>: Sendable {
    private struct Entry {
        var value: Value
        var lastSet: Double
        var cost: Int
        /// Position in `order` of this key's latest set.
        var stamp: UInt64
    }

    private var entries: [String: Entry] = [:]
    /// Sets in order, oldest first; stale ones (a later set has a newer stamp) are skipped.
    private var order: [(key: String, stamp: UInt64)] = []
    private var head = 0
    private var stamp: UInt64 = 0
    private(set) var totalCost = 0
    var ttl: Double
    var maxEntries: Int
    var maxCost: Int

    init(ttl: Double, maxEntries: Int, maxCost: Int = .max) {
        self.ttl = ttl
        self.maxEntries = maxEntries
        self.maxCost = maxCost
    }

    var count: Int { entries.count }

    /// The value set for `key` within the last `ttl` seconds, if any.
    func value(for key: String, now: Double) -> Value? {
        guard let entry = entries[key], now - entry.lastSet <= ttl else { return nil }
        return entry.value
    }

    /// Sets `key` (refreshing its time), then forgets what is expired or past the bounds.
    mutating func set(_ key: String, _ value: Value, cost: Int = 0, now: Double) {
        stamp += 1
        if let old = entries[key] { totalCost -= old.cost }
        entries[key] = Entry(value: value, lastSet: now, cost: cost, stamp: stamp)
        totalCost += cost
        order.append((key, stamp))
        evict(now: now)
    }

    /// Forgets expired entries at the old end of the order and the oldest past the bounds;
    /// compacts the order when most of it is stale.
    private mutating func evict(now: Double) {
        while head < order.count {
            let (key, stamp) = order[head]
            guard let entry = entries[key], entry.stamp == stamp else {
                head += 1  // a later set superseded this one
                continue
            }
            guard entries.count > maxEntries || totalCost > maxCost || now - entry.lastSet > ttl else { break }
            entries[key] = nil
            totalCost -= entry.cost
            head += 1
        }
        if head > 1024, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
        // A long-lived entry ahead of busy ones pins the head; rebuild the order from the live
        // entries when stale sets pile up behind it, so memory stays bounded by the entries.
        if order.count > 2 * entries.count + 1024 {
            order = entries.map { (key: $0.key, stamp: $0.value.stamp) }.sorted { $0.stamp < $1.stamp }
            head = 0
        }
    }
}
