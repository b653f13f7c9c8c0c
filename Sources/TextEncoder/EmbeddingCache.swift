import Foundation

/// A thread-safe LRU cache of embeddings keyed by text, with hit and miss counts.
///
/// Routing traffic repeats itself (retries, templated prompts, several routers
/// asked about one prompt); a hit costs a dictionary lookup instead of a
/// transformer pass.
public final class EmbeddingCache: @unchecked Sendable {
    // All state is guarded by `lock`.

    public struct Counters: Sendable, Hashable {
        public var hits: UInt64
        public var misses: UInt64
        public var entries: Int
        public var capacity: Int
    }

    private struct Entry {
        var key: String
        var value: [Float]
        var newer: Int
        var older: Int
    }

    public let capacity: Int
    private let lock = NSLock()
    private var index: [String: Int] = [:]
    /// Entries in a slab; `newest`/`oldest` and the links form the recency list.
    private var entries: [Entry] = []
    private var newest = -1
    private var oldest = -1
    private var hits: UInt64 = 0
    private var misses: UInt64 = 0

    /// A cache of at most `capacity` embeddings; 0 disables caching.
    public init(capacity: Int) {
        self.capacity = max(0, capacity)
        index.reserveCapacity(min(self.capacity, 1 << 16))
    }

    public var counters: Counters {
        lock.lock()
        defer { lock.unlock() }
        return Counters(hits: hits, misses: misses, entries: index.count, capacity: capacity)
    }

    /// The cached embedding of `key`, marking it most recently used.
    public func value(for key: String) -> [Float]? {
        lock.lock()
        defer { lock.unlock() }
        guard let slot = index[key] else {
            misses += 1
            return nil
        }
        hits += 1
        moveToFront(slot)
        return entries[slot].value
    }

    /// Stores an embedding, evicting the least recently used one when full.
    public func insert(_ value: [Float], for key: String) {
        guard capacity > 0 else { return }
        lock.lock()
        defer { lock.unlock() }
        if let slot = index[key] {
            entries[slot].value = value
            moveToFront(slot)
            return
        }
        let slot: Int
        if entries.count < capacity {
            slot = entries.count
            entries.append(Entry(key: key, value: value, newer: -1, older: -1))
        } else {
            slot = oldest
            unlink(slot)
            index.removeValue(forKey: entries[slot].key)
            entries[slot] = Entry(key: key, value: value, newer: -1, older: -1)
        }
        index[key] = slot
        pushFront(slot)
    }

    private func moveToFront(_ slot: Int) {
        guard slot != newest else { return }
        unlink(slot)
        pushFront(slot)
    }

    private func unlink(_ slot: Int) {
        let (newer, older) = (entries[slot].newer, entries[slot].older)
        if newer >= 0 { entries[newer].older = older } else { newest = older }
        if older >= 0 { entries[older].newer = newer } else { oldest = newer }
        entries[slot].newer = -1
        entries[slot].older = -1
    }

    private func pushFront(_ slot: Int) {
        entries[slot].older = newest
        entries[slot].newer = -1
        if newest >= 0 { entries[newest].newer = slot }
        newest = slot
        if oldest < 0 { oldest = slot }
    }
}
