import Foundation
import Synchronization

/// A thread-safe LRU cache of embeddings keyed by text, with hit and miss counts.
///
/// Routing traffic repeats itself (retries, templated prompts, several routers
/// asked about one prompt); a hit costs a dictionary lookup instead of a
/// transformer pass.
public final class EmbeddingCache: Sendable {
    public struct Counters: Sendable, Hashable {
        public var hits: UInt64
        public var misses: UInt64
        public var entries: Int
        public var capacity: Int
    }

    fileprivate struct Entry {
        var key: String
        var value: [Float]
        var newer: Int
        var older: Int
    }

    /// The recency list and its counts.
    fileprivate struct State {
        var index: [String: Int] = [:]
        /// Entries in a slab; `newest`/`oldest` and the links form the recency list.
        var entries: [Entry] = []
        var newest = -1
        var oldest = -1
        var hits: UInt64 = 0
        var misses: UInt64 = 0
    }

    public let capacity: Int
    private let state: Mutex<State>

    /// A cache of at most `capacity` embeddings; 0 disables caching.
    public init(capacity: Int) {
        self.capacity = max(0, capacity)
        var state = State()
        state.index.reserveCapacity(min(self.capacity, 1 << 16))
        self.state = Mutex(state)
    }

    public var counters: Counters {
        state.withLock { Counters(hits: $0.hits, misses: $0.misses, entries: $0.index.count, capacity: capacity) }
    }

    /// The cached embedding of `key`, marking it most recently used.
    public func value(for key: String) -> [Float]? {
        state.withLock { $0.value(for: key) }
    }

    /// Stores an embedding, evicting the least recently used one when full.
    public func insert(_ value: [Float], for key: String) {
        guard capacity > 0 else { return }
        state.withLock { $0.insert(value, for: key, capacity: capacity) }
    }
}

extension EmbeddingCache.State {
    mutating func value(for key: String) -> [Float]? {
        guard let slot = index[key] else {
            misses += 1
            return nil
        }
        hits += 1
        moveToFront(slot)
        return entries[slot].value
    }

    mutating func insert(_ value: [Float], for key: String, capacity: Int) {
        if let slot = index[key] {
            entries[slot].value = value
            moveToFront(slot)
            return
        }
        let slot: Int
        if entries.count < capacity {
            slot = entries.count
            entries.append(EmbeddingCache.Entry(key: key, value: value, newer: -1, older: -1))
        } else {
            slot = oldest
            unlink(slot)
            index.removeValue(forKey: entries[slot].key)
            entries[slot] = EmbeddingCache.Entry(key: key, value: value, newer: -1, older: -1)
        }
        index[key] = slot
        pushFront(slot)
    }

    private mutating func moveToFront(_ slot: Int) {
        guard slot != newest else { return }
        unlink(slot)
        pushFront(slot)
    }

    private mutating func unlink(_ slot: Int) {
        let (newer, older) = (entries[slot].newer, entries[slot].older)
        if newer >= 0 { entries[newer].older = older } else { newest = older }
        if older >= 0 { entries[older].newer = newer } else { oldest = newer }
        entries[slot].newer = -1
        entries[slot].older = -1
    }

    private mutating func pushFront(_ slot: Int) {
        entries[slot].older = newest
        entries[slot].newer = -1
        if newest >= 0 { entries[newest].newer = slot }
        newest = slot
        if oldest < 0 { oldest = slot }
    }
}
