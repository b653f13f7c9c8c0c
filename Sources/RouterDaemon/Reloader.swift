import Logging
import NIOConcurrencyHelpers
import NIOPosix
import RouterConfig
import RouterEngine

/// The one way the daemon reloads: SIGHUP, the file watcher and the socket's
/// `reload` op all call ``reload(trigger:dryRun:)``.
///
/// The engine serialises reloads and swaps generations; this adds what the
/// daemon owns around the swap. It tells systemd (RELOADING=1, then READY=1),
/// and it opens the new decision log and feedback store before the swap, so a
/// file that cannot be opened rejects the reload while the old generation keeps
/// serving. A dry run creates nothing: it only checks that they could be opened.
public final class Reloader: Sendable {
    let engine: Engine
    /// The decision log of the generation serving now.
    let decisionLog: DecisionLogSlot
    /// The feedback store of the generation serving now.
    let feedback: FeedbackSlot
    private let logger: Logger
    /// The generation with the decision log and feedback store it was configured with: what a
    /// request takes once, so it never sees one generation's router with another's files.
    private let serving: NIOLockedValueBox<Serving>
    /// Serialises reloads and sets here, so the three are swapped together.
    private let swapLock = NIOLock()

    public init(engine: Engine, decisionLog: DecisionLogSlot, feedback: FeedbackSlot, logger: Logger) {
        self.engine = engine
        self.decisionLog = decisionLog
        self.feedback = feedback
        self.logger = logger
        serving = NIOLockedValueBox(Serving(generation: engine.current, decisionLog: decisionLog.current, feedback: feedback.current))
    }

    /// What serves a request now.
    public var current: Serving { serving.withLockedValue { $0 } }

    /// Changes a router's threshold (see ``Engine/set(router:threshold:strongFraction:)``); the
    /// files stay with the new generation.
    public func set(router: String, threshold: Double?, strongFraction: Double?) throws(EngineError) -> SetOutcome {
        swapLock.lock()
        defer { swapLock.unlock() }
        let outcome = try engine.set(router: router, threshold: threshold, strongFraction: strongFraction)
        serving.withLockedValue { $0 = Serving(generation: engine.current, decisionLog: $0.decisionLog, feedback: $0.feedback) }
        return outcome
    }

    /// Reloads the config; blocks while the new generation is built, so call it off the event loops.
    public func reload(trigger: String, dryRun: Bool = false) throws(EngineError) -> ReloadOutcome {
        swapLock.lock()
        defer { swapLock.unlock() }
        if !dryRun { Systemd.notify("RELOADING=1") }
        defer { if !dryRun { Systemd.notify("READY=1\nSTATUS=serving generation \(engine.current.number)") } }
        var nextLog: DecisionLog?
        var nextStore: FeedbackStore?
        let outcome = try engine.reload(trigger: trigger, dryRun: dryRun) { (next: Generation) throws(GenerationError) in
            do throws(DecisionLogError) {
                if dryRun {
                    if let settings = next.config.decisionLog { try DecisionLog.check(settings) }
                } else {
                    nextLog = try decisionLog.prepare(next.config.decisionLog, logger: logger)
                }
            } catch {
                throw GenerationError(problems: ["\(next.config.file): \(error.message)"])
            }
            do throws(FeedbackStoreError) {
                if dryRun {
                    if let settings = next.config.feedback { try FeedbackStore.check(settings) }
                } else {
                    nextStore = try feedback.prepare(next.config.feedback, logger: logger)
                }
            } catch {
                throw GenerationError(problems: ["\(next.config.file): \(error.message)"])
            }
        }
        if !dryRun {
            decisionLog.install(nextLog)
            feedback.install(nextStore)
            serving.withLockedValue { $0 = Serving(generation: engine.current, decisionLog: nextLog, feedback: nextStore) }
        }
        return outcome
    }

    /// Reloads on `threadPool`; a rejected reload needs nothing more (the engine logged every
    /// problem and the old generation serves).
    public func reload(trigger: String, on threadPool: NIOThreadPool) async {
        _ = try? await threadPool.runIfActive { [self] in
            Result { () throws(EngineError) in try reload(trigger: trigger) }
        }
    }
}

/// A generation and the files configured with it, swapped as one by the ``Reloader``.
public struct Serving: Sendable {
    public let generation: Generation
    public let decisionLog: DecisionLog?
    public let feedback: FeedbackStore?
}

/// The decision log in use, replaced when a reload changes its settings.
public final class DecisionLogSlot: Sendable {
    private let log = NIOLockedValueBox<DecisionLog?>(nil)

    /// A slot holding the log `settings` ask for, opened now (at start, for generation 1).
    public init(_ settings: DaemonConfig.DecisionLog?, logger: Logger) throws(DecisionLogError) {
        install(try prepare(settings, logger: logger))
    }

    public var current: DecisionLog? { log.withLockedValue { $0 } }

    /// The log for `settings`: the current one when they are unchanged, else a newly opened one.
    func prepare(_ settings: DaemonConfig.DecisionLog?, logger: Logger) throws(DecisionLogError) -> DecisionLog? {
        guard let settings else { return nil }
        if let current, current.settings == settings { return current }
        return try DecisionLog(settings: settings, logger: logger)
    }

    func install(_ next: DecisionLog?) {
        log.withLockedValue { $0 = next }
    }
}
