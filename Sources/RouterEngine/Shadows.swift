import Foundation
import Synchronization

/// A shadow router's decision on a live decision's prompt: logged beside it, never served.
public struct ShadowDecision: Sendable, Hashable {
    /// The live decision it shadows, its router and its model.
    public var decisionID: String
    public var router: String
    public var liveModel: String
    /// The shadow router, and what it chose (nil when it failed; `error` says why).
    public var shadow: String
    public var model: String?
    /// A two-candidate shadow's P(strong wins).
    public var score: Double?
    public var error: String?
    public var prompt: String

    public var agrees: Bool { model == liveModel }
}

/// Runs shadow routers off the request's path. `route` hands each decision of a router with
/// `shadow:` to a queue and returns; one thread of the runner's own drains it, deciding the
/// prompt with each shadow. The queue is bounded in jobs and in prompt bytes: when the shadows
/// cannot keep up, new jobs are dropped (and counted), so a slow shadow never delays a reply
/// nor grows memory. The thread starts with the first job and ends with ``shutdown()``.
final class ShadowRunner: @unchecked Sendable {  // Mutable state is guarded by `condition`.
    struct Job: Sendable {
        var decisionID: String
        var router: String
        var liveModel: String
        var prompt: String
        /// The live router's embedding of the prompt, reused by shadows with the same encoder.
        var embedding: [Float]?
        var requester: Requester?
        var generation: Generation
    }

    static let maxJobs = 1024
    static let maxBytes = 16 << 20

    private let condition = NSCondition()
    private var queue: [Job] = []
    private var head = 0
    private var bytes = 0
    private var started = false
    private var closing = false
    private var done = false
    private var work: @Sendable (Job) -> Void = { _ in }

    /// Sets what running a job does (the engine, once it exists).
    func bind(_ work: @escaping @Sendable (Job) -> Void) {
        condition.lock()
        self.work = work
        condition.unlock()
    }

    /// Queues a job; false when the queue is full or the runner has stopped (the job is dropped).
    func submit(_ job: Job) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let cost = job.prompt.utf8.count
        guard !closing, queue.count - head < Self.maxJobs, bytes + cost <= Self.maxBytes else { return false }
        queue.append(job)
        bytes += cost
        if !started {
            started = true
            let thread = Thread { [self] in run() }
            thread.name = "routerd-shadows"
            thread.start()
        }
        condition.signal()
        return true
    }

    /// Jobs queued and not yet run.
    var pending: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count - head
    }

    /// Ends the thread after the job it is running; queued jobs are dropped.
    func shutdown() {
        condition.lock()
        closing = true
        condition.broadcast()
        while started, !done { condition.wait() }
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while head == queue.count, !closing { condition.wait() }
            if closing {
                done = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let job = queue[head]
            let work = work
            head += 1
            bytes -= job.prompt.utf8.count
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            }
            condition.unlock()
            work(job)
        }
    }
}

extension Engine {
    /// Decides `job`'s prompt with each of its router's shadows, counts agreement, and hands
    /// each shadow decision to the observer (the daemon's decision log).
    func runShadows(_ job: ShadowRunner.Job) {
        let generation = job.generation
        guard let live = generation.routers[job.router] else { return }
        for name in live.shadows {
            guard let shadow = generation.routers[name] else { continue }
            var result = ShadowDecision(
                decisionID: job.decisionID, router: job.router, liveModel: job.liveModel, shadow: name, model: nil, score: nil, error: nil,
                prompt: job.prompt)
            do throws(EngineError) {
                let rule = try Self.rule(for: shadow, override: nil)
                let embedding: [Float]?
                if shadow.encoder == nil {
                    embedding = nil
                } else if shadow.encoder === live.encoder, let given = job.embedding {
                    embedding = given
                } else {
                    embedding = try embeddings(of: [job.prompt], for: shadow, requester: job.requester, on: generation)?[0]
                }
                var decision = RoutingDecision(
                    id: job.decisionID, model: "", tier: nil, policy: "", score: nil, threshold: nil, lambda: nil, epsilon: nil, candidates: [],
                    affinity: nil, router: name, generation: generation.number, elapsedMicroseconds: 0)
                let choice = try policyChoice(shadow, rule: rule, prompt: job.prompt, embedding: embedding, into: &decision)
                result.model = shadow.candidates[choice.chosen].name
                result.score = decision.score
            } catch {
                result.error = error.message
            }
            // Logged before it is counted: whoever sees the count can find the line.
            shadowObserver.withLock { $0 }?(result)
            stats.recordShadow(router: job.router, shadow: name, agrees: result.agrees, failed: result.error != nil)
        }
    }
}
