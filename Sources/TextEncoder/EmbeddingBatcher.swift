import Foundation

/// Embeds the texts of concurrent callers together, in the manner of
/// text-embeddings-inference's dynamic batching.
///
/// One transformer pass over 16 texts costs about half as much per text as 16
/// passes over one, because every matrix product reads its weights once for all
/// of them. Callers queue their texts; a few worker threads each take what is
/// queued, up to ``Limits/maxBatch`` texts, and embed it in one pass (packed
/// without padding, as ``SentenceEncoder/embed(_:policy:)`` does).
///
/// A lone caller is never held back: a worker that finds the queue empty takes
/// the next texts the moment they arrive. Only while batches are being shared by
/// several callers does a worker wait up to ``Limits/maxWait`` for more company,
/// because under load the next callers are a few microseconds behind.
public final class EmbeddingBatcher: Sendable {
    public struct Limits: Sendable, Hashable {
        /// Texts in one pass at most; a single call with more is embedded alone.
        public var maxBatch: Int
        /// Seconds a worker may wait for a batch to fill while batches are shared.
        public var maxWait: Double
        /// Threads embedding batches at once.
        public var workers: Int

        public init(maxBatch: Int, maxWait: Double, workers: Int) {
            self.maxBatch = max(1, maxBatch)
            self.maxWait = max(0, maxWait)
            self.workers = max(1, workers)
        }
    }

    /// What the batcher has done, for `stats`.
    public struct Counters: Sendable, Hashable {
        /// Passes through the encoder.
        public var batches: UInt64 = 0
        /// Texts embedded (after removing repeats within a batch).
        public var texts: UInt64 = 0
        /// Calls served; more calls than batches means calls shared passes.
        public var calls: UInt64 = 0
        /// The most texts one pass has taken.
        public var largestBatch: Int = 0
    }

    public let limits: Limits
    private let queue: Queue

    /// A batcher whose workers embed with `embed` (texts in, one embedding per text out).
    public init(limits: Limits, name: String, embed: @escaping @Sendable ([String]) -> [[Float]]) {
        self.limits = limits
        queue = Queue(limits: limits, embed: embed)
        for index in 0..<limits.workers {
            let thread = Thread { [queue] in queue.work() }
            thread.name = "encoder-\(name)-\(index)"
            thread.start()
        }
    }

    deinit { queue.stop() }

    public var counters: Counters { queue.counters }

    /// Queues `texts`; `completion` gets their embeddings, in order, on a worker thread.
    public func submit(_ texts: [String], completion: @escaping @Sendable ([[Float]]) -> Void) {
        guard !texts.isEmpty else { return completion([]) }
        queue.submit(Job(texts: texts, arrived: Date(), completion: completion))
    }

    /// The embeddings of `texts`, in order; blocks the calling thread until its batch is done.
    public func embed(_ texts: [String]) -> [[Float]] {
        guard !texts.isEmpty else { return [] }
        let done = DispatchSemaphore(value: 0)
        let result = Box()
        submit(texts) { vectors in
            result.vectors = vectors
            done.signal()
        }
        done.wait()
        return result.vectors
    }

    /// Carries a worker's result to a thread blocked in `embed`; the semaphore orders the accesses.
    private final class Box: @unchecked Sendable {
        var vectors: [[Float]] = []
    }

    fileprivate struct Job {
        var texts: [String]
        var arrived: Date
        var completion: @Sendable ([[Float]]) -> Void
    }

    /// The queue and its workers' shared state, apart from the batcher so that the
    /// threads do not keep the batcher alive: releasing it stops them.
    private final class Queue: @unchecked Sendable {
        // Everything below `condition` is guarded by it.
        private let condition = NSCondition()
        private let limits: Limits
        private let embed: @Sendable ([String]) -> [[Float]]
        private var jobs: [Job] = []
        private var queuedTexts = 0
        private var stopped = false
        /// Whether the last batch served more than one call: the sign of concurrent callers.
        private var shared = false
        private var stats = Counters()

        init(limits: Limits, embed: @escaping @Sendable ([String]) -> [[Float]]) {
            self.limits = limits
            self.embed = embed
        }

        var counters: Counters {
            condition.lock()
            defer { condition.unlock() }
            return stats
        }

        func submit(_ job: Job) {
            condition.lock()
            guard !stopped else {
                condition.unlock()
                // The batcher is gone (its encoder left with a reload): embed on the caller's thread.
                job.completion(embed(job.texts))
                return
            }
            jobs.append(job)
            queuedTexts += job.texts.count
            // A full batch also wakes a worker waiting for company.
            if queuedTexts >= limits.maxBatch { condition.broadcast() } else { condition.signal() }
            condition.unlock()
        }

        func stop() {
            condition.lock()
            stopped = true
            condition.broadcast()
            condition.unlock()
        }

        /// A worker's loop: take a batch, embed it, answer its callers; until stopped and drained.
        func work() {
            while let batch = next() {
                run(batch)
            }
        }

        private func next() -> [Job]? {
            condition.lock()
            defer { condition.unlock() }
            while true {
                while jobs.isEmpty && !stopped { condition.wait() }
                if jobs.isEmpty { return nil }
                if shared, limits.maxWait > 0, queuedTexts < limits.maxBatch, !stopped {
                    let deadline = jobs[0].arrived.addingTimeInterval(limits.maxWait)
                    while queuedTexts < limits.maxBatch, !stopped, condition.wait(until: deadline) {}
                    // Another worker may have taken everything meanwhile.
                    if jobs.isEmpty { continue }
                }
                var count = 0
                var taken = 0
                while taken < jobs.count, taken == 0 || count + jobs[taken].texts.count <= limits.maxBatch {
                    count += jobs[taken].texts.count
                    taken += 1
                }
                let batch = Array(jobs.prefix(taken))
                jobs.removeFirst(taken)
                queuedTexts -= count
                shared = taken > 1
                stats.calls += UInt64(taken)
                return batch
            }
        }

        private func run(_ batch: [Job]) {
            // A text asked for by several callers is embedded once.
            var unique: [String] = []
            var slot: [String: Int] = [:]
            for job in batch {
                for text in job.texts where slot[text] == nil {
                    slot[text] = unique.count
                    unique.append(text)
                }
            }
            let vectors = embed(unique)
            condition.lock()
            stats.batches += 1
            stats.texts += UInt64(unique.count)
            stats.largestBatch = max(stats.largestBatch, unique.count)
            condition.unlock()
            for job in batch {
                job.completion(job.texts.map { vectors[slot[$0]!] })
            }
        }
    }
}
