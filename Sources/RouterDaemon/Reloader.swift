import Fleet
import Logging
import NIOPosix
import RouterConfig
import RouterEngine
import Synchronization

/// The one way the daemon reloads: SIGHUP, the file watcher and the socket's
/// `reload` op all call ``reload(trigger:dryRun:)``.
///
/// The engine serialises reloads and swaps generations; this adds what the
/// daemon owns around the swap. It tells systemd (RELOADING=1, then READY=1),
/// and it opens the new decision log and feedback store before the swap, so a
/// file that cannot be opened rejects the reload while the old generation keeps
/// serving. A dry run creates nothing: it only checks that they could be opened.
public final class Reloader: Sendable {
    public let engine: Engine
    private let logger: Logger
    /// The generation with the decision log and feedback store it was configured with: what a
    /// request takes once, so it never sees one generation's router with another's files.
    private let serving: Mutex<Serving>
    /// Serialises reloads and sets here, so the three are swapped together.
    /// Held while the engine's generation and this generation's files change together.
    private let swapLock = Mutex(())

    /// `decisionLog` and `feedback` are generation 1's, opened by the caller (`DecisionLog.opened`,
    /// `FeedbackStore.opened`) so that a file that cannot be opened stops the start.
    public init(engine: Engine, decisionLog: DecisionLog?, feedback: FeedbackStore?, fleet: FleetSync? = nil, logger: Logger) {
        self.engine = engine
        self.logger = logger
        serving = Mutex(Serving(generation: engine.current, decisionLog: decisionLog, feedback: feedback, fleet: fleet))
        // Shadow decisions go to the decision log serving when they are made.
        engine.observeShadows { [weak self] shadow in self?.current.decisionLog?.record(shadow) }
    }

    /// What serves a request now.
    public var current: Serving { serving.withLock { $0 } }

    /// Changes a router's threshold (see ``Engine/set(router:threshold:strongFraction:)``); the
    /// files stay with the new generation.
    public func set(router: String, threshold: Double?, strongFraction: Double?) throws(EngineError) -> SetOutcome {
        try swapLock.withLock { _ throws(EngineError) in try setHoldingLock(router: router, threshold: threshold, strongFraction: strongFraction) }
    }

    private func setHoldingLock(router: String, threshold: Double?, strongFraction: Double?) throws(EngineError) -> SetOutcome {
        let outcome = try engine.set(router: router, threshold: threshold, strongFraction: strongFraction)
        serving.withLock { $0 = Serving(generation: engine.current, decisionLog: $0.decisionLog, feedback: $0.feedback, fleet: $0.fleet) }
        return outcome
    }

    /// Reloads the config; blocks while the new generation is built, so call it off the event loops.
    public func reload(trigger: String, dryRun: Bool = false) throws(EngineError) -> ReloadOutcome {
        try swapLock.withLock { _ throws(EngineError) in try reloadHoldingLock(trigger: trigger, dryRun: dryRun) }
    }

    private func reloadHoldingLock(trigger: String, dryRun: Bool) throws(EngineError) -> ReloadOutcome {
        if !dryRun { Systemd.notify("RELOADING=1") }
        defer { if !dryRun { Systemd.notify("READY=1\nSTATUS=serving generation \(engine.current.number)") } }
        let previous = current
        var nextLog: DecisionLog?
        var nextStore: FeedbackStore?
        var nextFleet: FleetSync?
        // A fleet started for a reload that then failed is stopped; the serving one goes on.
        var swapped = false
        defer { if !swapped, let nextFleet, nextFleet !== previous.fleet { nextFleet.stop() } }
        let outcome = try engine.reload(trigger: trigger, dryRun: dryRun) { [engine, logger] (next: Generation) throws(GenerationError) in
            do throws(DecisionLogError) {
                if dryRun {
                    if let settings = next.config.decisionLog { try DecisionLog.check(settings) }
                } else {
                    nextLog = try DecisionLog.opened(for: next.config.decisionLog, reusing: previous.decisionLog, logger: logger)
                }
            } catch {
                throw GenerationError(problems: ["\(next.config.file): \(error.message)"])
            }
            do throws(FeedbackStoreError) {
                if dryRun {
                    if let settings = next.config.feedback { try FeedbackStore.check(settings) }
                } else {
                    nextStore = try FeedbackStore.opened(
                        for: next.config.feedback, outbox: next.config.sharesOutcomes, reusing: previous.feedback, logger: logger)
                }
            } catch {
                throw GenerationError(problems: ["\(next.config.file): \(error.message)"])
            }
            guard !dryRun else { return }
            do throws(FleetError) {
                nextFleet = try FleetSync.opened(
                    for: next.config.fleet, store: nextStore, engine: engine, reusing: previous.fleet, previousStore: previous.feedback,
                    logger: logger)
            } catch {
                throw GenerationError(problems: ["\(next.config.file): \(error.message)"])
            }
        }
        if !dryRun {
            swapped = true
            serving.withLock { $0 = Serving(generation: engine.current, decisionLog: nextLog, feedback: nextStore, fleet: nextFleet) }
            // A fleet the reload replaced stops shipping and tailing; a store it replaced writes
            // what it has queued, then stops.
            if let old = previous.fleet, old !== nextFleet { old.stop() }
            if let old = previous.feedback, old !== nextStore { old.close() }
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
    /// This daemon's part in a fleet, when `fleet:` shares outcomes.
    public let fleet: FleetSync?
}
