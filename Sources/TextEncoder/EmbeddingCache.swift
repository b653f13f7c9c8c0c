import Foundation
import RouterVocabulary
import Synchronization

/// A thread-safe LRU cache of embeddings, with hit and miss counts.
///
/// Routing traffic repeats itself (retries, templated prompts, several routers
/// asked about one prompt); a hit costs a dictionary lookup instead of a
/// transformer pass.
///
/// An entry is keyed by a 128-bit hash of what was tokenised, never by the text
/// itself, so every entry has the same size (``entryBytes``) and the capacity in
/// entries bounds the cache in bytes: a megabyte prompt pins no more than a word.
public final class EmbeddingCache: Sendable {
    /// A 128-bit keyed hash (two SipHash-1-3 runs of Swift's `Hasher`, seeded at random per
    /// process), so no client can make two of its texts collide on purpose.
    public struct Key: Hashable, Sendable {
        let high: UInt64
        let low: UInt64

        /// The key of `text` embedded under `policy` in `namespace` (who may hit the entry).
        public init(namespace: some Hashable, policy: LongTextPolicy, text: String) {
            func half(_ salt: UInt8) -> UInt64 {
                var hasher = Hasher()
                hasher.combine(salt)
                hasher.combine(namespace)
                hasher.combine(policy)
                hasher.combine(text)
                return UInt64(bitPattern: Int64(hasher.finalize()))
            }
            high = half(0)
            low = half(1)
        }
    }

    /// Bytes one entry holds at most: its key and links, and a 384-float embedding with its array header.
    public static let entryBytes = MemoryLayout<Key>.size + 2 * MemoryLayout<Int>.size + 32 + 384 * MemoryLayout<Float>.size

    public struct Counters: Sendable, Hashable {
        public var hits: UInt64
        public var misses: UInt64
        public var entries: Int
        public var capacity: Int
        /// What the entries take, at most ``EmbeddingCache/entryBytes`` each.
        public var bytes: Int { entries * EmbeddingCache.entryBytes }
    }

    fileprivate struct Entry {
        var key: Key
        var value: [Float]
        var newer: Int
        var older: Int
    }

    /// The recency list and its counts.
    fileprivate struct State {
        var index: [Key: Int] = [:]
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
    public func value(for key: Key) -> [Float]? {
        state.withLock { $0.value(for: key) }
    }

    /// Stores an embedding, evicting the least recently used one when full.
    public func insert(_ value: [Float], for key: Key) {
        guard capacity > 0 else { return }
        state.withLock { $0.insert(value, for: key, capacity: capacity) }
    }
}

extension EmbeddingCache.State {
    mutating func value(for key: EmbeddingCache.Key) -> [Float]? {
        guard let slot = index[key] else {
            misses += 1
            return nil
        }
        hits += 1
        moveToFront(slot)
        return entries[slot].value
    }

    mutating func insert(_ value: [Float], for key: EmbeddingCache.Key, capacity: Int) {
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
