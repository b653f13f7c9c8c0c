import Foundation
import Logging
import RouterConfig
import RouterJSON
import RouterPluginHost
import RouterPluginKit
import RouterVocabulary
import Synchronization

/// What online learning has done for one router since the daemon started.
public struct LearningStatus: Sendable, Hashable {
    public var router: String
    /// Where the plugin keeps its learned state.
    public var stateDirectory: String
    /// Outcomes folded in and published.
    public var events: UInt64 = 0
    /// Outcomes waiting for the next publish.
    public var pending: Int = 0
    public var publishes: UInt64 = 0
    /// Publishes the plugin refused (their outcomes stay in the feedback store, for retraining).
    public var failures: UInt64 = 0
    /// Outcomes dropped: their router stopped learning, or a model stopped being a candidate.
    public var dropped: UInt64 = 0
    /// How long the plugin's last publish took (fold, persist, swap), in milliseconds.
    public var lastPublishMilliseconds: Double?
    /// How long embedding the last batch's prompts took before it, in milliseconds (cache misses
    /// cost an encoder pass each; prompts routed recently are cache hits).
    public var lastEmbedMilliseconds: Double?
    public var lastError: String?
    /// What the plugin says about its instance now (its learned state).
    public var details: [String: JSONValue] = [:]
}

/// The learner's timing, apart from its thread so that it is tested on virtual time: outcomes
/// wait per router until `every` of them wait, or the oldest has waited `interval` seconds.
struct PublishQueue: Sendable {
    private var pending: [String: [Outcome]] = [:]
    /// What each router's pending outcomes take (``bytes(of:)``).
    private var pendingBytes: [String: Int] = [:]
    /// When each router's oldest pending outcome arrived (the engine clock's seconds).
    private var oldest: [String: Double] = [:]

    /// Outcomes a router may have waiting: past it new ones are dropped from online learning
    /// (counted in `dropped`; they stay in the feedback store for the next retraining), so a
    /// flood of feedback faster than the encoder cannot grow memory without bound.
    static let maxPending = 100_000
    /// Bytes a router's pending outcomes may take: an outcome holds its prompt, up to a request
    /// line long, so a count alone would let 100,000 prompts of a megabyte wait.
    static let maxPendingBytes = 64 << 20

    func count(_ router: String) -> Int { pending[router]?.count ?? 0 }
    func bytes(_ router: String) -> Int { pendingBytes[router] ?? 0 }

    /// What an outcome holds while it waits: its texts and the fixed part.
    static func bytes(of outcome: Outcome) -> Int {
        MemoryLayout<Outcome>.stride + outcome.prompt.utf8.count + outcome.router.utf8.count + outcome.model.utf8.count
            + (outcome.decisionID?.utf8.count ?? 0)
    }

    /// Queues `outcome` for `router` at `now`; false if the router's queue is full, in count or in bytes.
    mutating func add(_ outcome: Outcome, router: String, now: Double) -> Bool {
        let waiting = pending[router]?.count ?? 0  // no copy of the queue is held: the append below stays in place
        let size = Self.bytes(of: outcome)
        guard waiting < Self.maxPending, bytes(router) + size <= Self.maxPendingBytes else { return false }
        if waiting == 0 { oldest[router] = now }
        pending[router, default: []].append(outcome)
        pendingBytes[router, default: 0] += size
        return true
    }

    mutating func drop(_ router: String) {
        pending[router] = nil
        pendingBytes[router] = nil
        oldest[router] = nil
    }

    /// The batches due at `now`, taken off the queue, and when the next one falls due if none
    /// is full before then (nil: nothing waits). At most four publishes' worth per router at
    /// once, so the first of a flood is not held back until the encoder has embedded all of it.
    mutating func takeDue(now: Double, every: Int, interval: Double) -> (due: [(router: String, outcomes: [Outcome])], next: Double?) {
        var due: [(router: String, outcomes: [Outcome])] = []
        var next: Double?
        for (router, queue) in pending where !queue.isEmpty {
            let deadline = (oldest[router] ?? now) + interval
            if queue.count >= every || deadline <= now {
                let take = min(queue.count, 4 * every)
                let taken = Array(queue.prefix(take))
                due.append((router, taken))
                pendingBytes[router, default: 0] -= taken.reduce(0) { $0 + Self.bytes(of: $1) }
                pending[router] = Array(queue.dropFirst(take))
                oldest[router] = pending[router]!.isEmpty ? nil : now
                if !pending[router]!.isEmpty { next = min(next ?? now + interval, now + interval) }
            } else {
                next = min(next ?? deadline, deadline)
            }
        }
        return (due.sorted { $0.router < $1.router }, next)
    }
}

/// Feeds recorded outcomes to the routers that learn online, off the request path.
///
/// Outcomes queue per router (``PublishQueue``); one thread, started with the first outcome and
/// ended by ``shutdown()``, publishes a router's batch to its plugin (`learn`: fold into a copy of
/// the state, persist, swap). It asks the generation serving at that moment for the router, so a
/// reload between report and publish is no problem. Learned state lives in the plugin instance
/// and its state folder; these counters only describe the flow.
final class OnlineLearner: @unchecked Sendable {  // Mutable state is guarded by `condition`.
    private let condition = NSCondition()
    /// Held while a publish or a forget talks to a plugin, so the two never overlap.
    private let publishing = Mutex(())
    private var queue = PublishQueue()
    private var statuses: [String: LearningStatus] = [:]
    private var settings: DaemonConfig.Feedback.Learning?
    private var thread: Thread?
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)
    private let current: @Sendable () -> Generation
    private let clock: any EngineClock
    private let logger: Logger

    init(settings: DaemonConfig.Feedback.Learning?, clock: any EngineClock, current: @escaping @Sendable () -> Generation, logger: Logger) {
        self.settings = settings
        self.clock = clock
        self.current = current
        self.logger = logger
    }

    func configure(_ settings: DaemonConfig.Feedback.Learning?) {
        condition.lock()
        self.settings = settings
        condition.broadcast()
        condition.unlock()
    }

    /// Queues a recorded outcome for its router, when that router learns online.
    func submit(_ outcome: Outcome, to router: RouterInstance) {
        guard let folder = router.stateDirectory else { return }
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return }
        guard queue.add(outcome, router: router.name, now: clock.seconds) else {
            statuses[router.name, default: LearningStatus(router: router.name, stateDirectory: folder)].dropped += 1
            return
        }
        if thread == nil {
            let thread = Thread { [self] in run() }
            thread.name = "routerd-learn"
            self.thread = thread
            thread.start()
        }
        statuses[router.name, default: LearningStatus(router: router.name, stateDirectory: folder)].stateDirectory = folder
        condition.signal()
    }

    /// Ends the publishing thread after the publish it may be in, and waits for it. Outcomes
    /// still queued are not published: they are in the feedback store, for the next start.
    func shutdown() {
        condition.lock()
        stopping = true
        let running = thread != nil
        condition.broadcast()
        condition.unlock()
        if running { finished.wait() }
    }

    /// The counters of `router`, with what its plugin says now.
    func status(of router: RouterInstance) -> LearningStatus {
        condition.lock()
        var status = statuses[router.name] ?? LearningStatus(router: router.name, stateDirectory: router.stateDirectory ?? "")
        status.pending = queue.count(router.name)
        condition.unlock()
        status.stateDirectory = router.stateDirectory ?? status.stateDirectory
        if let object = router.plugin.describeNow()?.details {
            status.details = object.filter { $0.key.hasPrefix("learned") }
        }
        return status
    }

    /// Drops `router`'s pending outcomes and has its plugin forget what it learned.
    func forget(_ router: RouterInstance) throws(PluginScoreError) {
        try publishing.withLock { _ throws(PluginScoreError) in
            condition.lock()
            queue.drop(router.name)
            condition.unlock()
            try router.forget()
        }
        logger.notice("forgot what was learned online", metadata: ["router": "\(router.name)"])
    }

    private func run() {
        defer { finished.signal() }
        while true {
            condition.lock()
            var due: [(router: String, outcomes: [Outcome])] = []
            while due.isEmpty && !stopping {
                let now = clock.seconds
                let taken = queue.takeDue(now: now, every: settings?.publishEvery ?? 100, interval: settings?.publishIntervalSeconds ?? 2)
                due = taken.due
                guard due.isEmpty else { break }
                if let next = taken.next {
                    _ = condition.wait(until: Date(timeIntervalSinceNow: max(0.001, next - now)))
                } else {
                    condition.wait()
                }
            }
            let stop = stopping
            condition.unlock()
            if stop { return }
            for (router, batch) in due { publish(batch, to: router) }
        }
    }

    private func publish(_ batch: [Outcome], to name: String) {
        publishing.withLock { _ in publishHoldingLock(batch, to: name) }
    }

    private func publishHoldingLock(_ batch: [Outcome], to name: String) {
        var embedMilliseconds: Double?
        var learnMilliseconds: Double?
        var dropped = 0
        var error: String?
        var learned = 0
        if let router = current().routers[name], router.learnsOnline {
            let names = router.candidates.map(\.name)
            var outcomes: [LearnedOutcome] = []
            var prompts: [String] = []
            for outcome in batch {
                guard let model = names.firstIndex(of: outcome.model) else {
                    dropped += 1
                    continue
                }
                let value: LearnedOutcome.Value
                switch outcome.value {
                case .pairwise(let result, let against):
                    guard let other = names.firstIndex(of: against) else {
                        dropped += 1
                        continue
                    }
                    value = .pairwise(against: other, score: result.score)
                case .pointwise(let quality): value = .pointwise(quality)
                case .failed: value = .pointwise(0)
                }
                outcomes.append(LearnedOutcome(prompt: outcome.prompt, embedding: nil, model: model, value: value))
                prompts.append(outcome.prompt)
            }
            if let encoder = router.encoder, !prompts.isEmpty {
                // Recently routed prompts: mostly cache hits.
                let start = ContinuousClock.now
                let vectors = encoder.embed(own: prompts)
                for index in outcomes.indices { outcomes[index].embedding = vectors[index] }
                embedMilliseconds = Engine.microseconds(since: start) / 1000
            }
            if !outcomes.isEmpty {
                do {
                    let start = ContinuousClock.now
                    try router.learn(outcomes)
                    learnMilliseconds = Engine.microseconds(since: start) / 1000
                    learned = outcomes.count
                } catch let failure {
                    error = failure.message
                    logger.warning(
                        "online learning failed; the outcomes stay in the feedback store",
                        metadata: ["router": "\(name)", "outcomes": "\(outcomes.count)", "error": "\(failure.message)"])
                }
            }
        } else {
            dropped = batch.count
        }
        condition.lock()
        var status = statuses[name] ?? LearningStatus(router: name, stateDirectory: "")
        status.dropped += UInt64(dropped)
        if learned > 0 {
            status.events += UInt64(learned)
            status.publishes += 1
            status.lastPublishMilliseconds = learnMilliseconds
            status.lastEmbedMilliseconds = embedMilliseconds
        }
        if let error {
            status.failures += 1
            status.lastError = error
        }
        statuses[name] = status
        condition.unlock()
    }
}
