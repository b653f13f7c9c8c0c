import Foundation
import RouterVocabulary

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
public final class EmbeddingBatcher<Encoder: BatchEncoder>: Sendable {
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

    /// A batcher whose workers prepare and embed texts with `encoder`.
    public init(limits: Limits, name: String, encoder: Encoder) {
        self.limits = limits
        queue = Queue(limits: limits, encoder: encoder)
        for index in 0..<limits.workers {
            let thread = Thread { [queue] in queue.work() }
            thread.name = "encoder-\(name)-\(index)"
            thread.start()
        }
    }

    deinit { queue.stop() }

    public var counters: Counters { queue.counters }

    /// The embeddings of a submitted call, or the limit it exceeded (and nothing was embedded for it).
    public typealias Outcome = Result<[[Float]], EncodingLimitError>

    /// Queues `texts`, embedded under `policy` within `limits`; `completion` gets their
    /// embeddings, in order, on a worker thread. The worker checks the limits as it prepares
    /// the texts, so an oversized call is refused without a pass and without holding up the
    /// calls batched with it.
    public func submit(
        _ texts: [String], policy: LongTextPolicy = .head, limits: EncodingLimits = .none,
        completion: @escaping @Sendable (Outcome) -> Void
    ) {
        guard !texts.isEmpty else { return completion(.success([])) }
        queue.submit(Job(texts: texts, policy: policy, limits: limits, arrived: Date(), completion: completion))
    }

    /// The embeddings of `texts`, in order; blocks the calling thread until its batch is done.
    public func embed(_ texts: [String], policy: LongTextPolicy = .head, limits: EncodingLimits = .none) throws(EncodingLimitError)
        -> [[Float]]
    {
        guard !texts.isEmpty else { return [] }
        let done = DispatchSemaphore(value: 0)
        let result = Box()
        submit(texts, policy: policy, limits: limits) { outcome in
            result.outcome = outcome
            done.signal()
        }
        done.wait()
        return try result.outcome.get()
    }

    /// Carries a worker's result to a thread blocked in `embed`; the semaphore orders the accesses.
    private final class Box: @unchecked Sendable {
        var outcome: Outcome = .success([])
    }

    fileprivate struct Job {
        var texts: [String]
        var policy: LongTextPolicy
        var limits: EncodingLimits
        var arrived: Date
        var completion: @Sendable (Outcome) -> Void
    }

    /// A text and the policy it is embedded under: the unit a batch embeds once however many calls ask.
    private struct Item: Hashable {
        var text: String
        var policy: LongTextPolicy
    }

    /// The queue and its workers' shared state, apart from the batcher so that the
    /// threads do not keep the batcher alive: releasing it stops them.
    private final class Queue: @unchecked Sendable {
        // Everything below `condition` is guarded by it.
        private let condition = NSCondition()
        private let limits: Limits
        private let encoder: Encoder
        private var jobs: [Job] = []
        private var queuedTexts = 0
        private var stopped = false
        /// Whether the last batch served more than one call: the sign of concurrent callers.
        private var shared = false
        private var stats = Counters()

        init(limits: Limits, encoder: Encoder) {
            self.limits = limits
            self.encoder = encoder
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
                run([job])
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
            // Each call's texts prepared (tokenized) once, and its limits checked; a text asked
            // for by several callers is embedded once.
            var unique: [Encoder.Prepared] = []
            var slot: [Item: Int] = [:]
            var refused: [Int: EncodingLimitError] = [:]
            for (index, job) in batch.enumerated() {
                do throws(EncodingLimitError) {
                    var fresh: [(Item, Encoder.Prepared)] = []
                    var cost = 0
                    for text in job.texts {
                        let item = Item(text: text, policy: job.policy)
                        if let known = slot[item] {
                            cost += encoder.cost(unique[known])
                            continue
                        }
                        let prepared = try encoder.prepare(text, policy: job.policy, limits: job.limits)
                        cost += encoder.cost(prepared)
                        fresh.append((item, prepared))
                    }
                    guard cost <= job.limits.maxTokens else {
                        throw EncodingLimitError(
                            "the texts take \(cost) model positions to embed; limits.max_tokens is \(job.limits.maxTokens): send fewer or shorter texts"
                        )
                    }
                    for (item, prepared) in fresh where slot[item] == nil {
                        slot[item] = unique.count
                        unique.append(prepared)
                    }
                } catch {
                    refused[index] = error
                }
            }
            let vectors = unique.isEmpty ? [] : encoder.embed(unique)
            condition.lock()
            if !unique.isEmpty {
                stats.batches += 1
                stats.texts += UInt64(unique.count)
                stats.largestBatch = max(stats.largestBatch, unique.count)
            }
            condition.unlock()
            for (index, job) in batch.enumerated() {
                if let error = refused[index] {
                    job.completion(.failure(error))
                } else {
                    job.completion(.success(job.texts.map { vectors[slot[Item(text: $0, policy: job.policy)]!] }))
                }
            }
        }
    }
}

/// What a batcher's workers embed with: a text prepared once (tokenized, its limits checked),
/// what it costs, and one pass over a batch of prepared texts.
public protocol BatchEncoder: Sendable {
    associatedtype Prepared
    func prepare(_ text: String, policy: LongTextPolicy, limits: EncodingLimits) throws(EncodingLimitError) -> Prepared
    /// Model positions embedding it takes, counted against `EncodingLimits.maxTokens`.
    func cost(_ prepared: Prepared) -> Int
    func embed(_ prepared: [Prepared]) -> [[Float]]
}

extension SentenceEncoder: BatchEncoder {
    public func prepare(_ text: String, policy: LongTextPolicy, limits: EncodingLimits) throws(EncodingLimitError) -> TokenizedText {
        try tokenize(text, policy: policy, limits: limits)
    }

    public func cost(_ prepared: TokenizedText) -> Int { prepared.positions }

    public func embed(_ prepared: [TokenizedText]) -> [[Float]] { embed(tokenized: prepared) }
}
