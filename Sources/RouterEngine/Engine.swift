import Foundation
import Logging
import RouterConfig
import RouterPluginHost
import RouterVocabulary
import Synchronization
import TextEncoder

/// The decision pipeline and the current generation.
///
/// Requests flow one way: the caller takes `current` once, then asks this
/// engine to route or score on that generation. Reloads build a complete new
/// generation off to the side and swap it in atomically, or change nothing.
/// The engine answers in domain values and ``EngineError``; it knows nothing
/// of the wire protocol, sockets or connections.
public final class Engine: Sendable {
    /// routerd's version, shown by `status` and `--version` of both executables.
    public static let version = "0.1.0"

    public let configFile: String
    public let stats = Stats()
    private let executableDirectory: String?
    private let logger: Logger
    private let generation: ServingGeneration
    private let processSettings: ProcessSettings
    /// Serialises reloads and sets; requests never take it.
    private let reloadLock = Mutex(())
    private let started = ContinuousClock.now
    /// Which model each live session is on; kept across reloads.
    let sessions: SessionTable
    /// Recent decisions, for feedback that names them; kept across reloads.
    let decisions: DecisionMemory
    /// Publishes recorded outcomes to the routers that learn online.
    private let learner: OnlineLearner
    /// Decides live decisions' prompts again with their routers' shadows, off the request's path.
    let shadowRunner = ShadowRunner()
    /// Who is told of each shadow decision (the daemon's decision log).
    let shadowObserver = Mutex<(@Sendable (ShadowDecision) -> Void)?>(nil)
    /// Monotonic time for session and decision expiry and the learner's publishing.
    let clock: any EngineClock
    /// A generation a timed-out reload left building; reloads are refused until it returns.
    private let abandonedBuild = AbandonedBuild()

    /// The build past its reload's timeout, if any, still running in a plugin's `create` (or elsewhere).
    final class AbandonedBuild: Sendable {
        private let build = Mutex<GenerationBuild?>(nil)

        var current: GenerationBuild? { build.withLock { $0 } }
        func set(_ abandoned: GenerationBuild) { build.withLock { $0 = abandoned } }
        /// Forgets `ended` if it is the one recorded.
        func clear(_ ended: GenerationBuild) { build.withLock { if $0 === ended { $0 = nil } } }
    }

    /// Loads `configFile`, builds generation 1 and applies its process settings, or throws every problem found.
    /// `clock` times session and decision expiry and online learning (a ``ManualClock`` in tests).
    public init(
        configFile: String, executableDirectory: String?, logger: Logger, processSettings: ProcessSettings = .encoderThreads,
        clock: any EngineClock = SystemClock()
    ) throws(GenerationError) {
        self.configFile = configFile
        self.clock = clock
        self.executableDirectory = executableDirectory
        self.logger = logger
        self.processSettings = processSettings
        let config = try Self.loadConfig(file: configFile, executableDirectory: executableDirectory)
        let first = try Generation.build(config: config, number: 1, stats: stats, logger: logger)
        processSettings.apply(first.config)
        sessions = SessionTable(ttl: config.sessions.ttlSeconds, maxEntries: config.sessions.maxEntries)
        decisions = DecisionMemory(config.feedback)
        let generation = ServingGeneration(first)
        self.generation = generation
        learner = OnlineLearner(
            settings: config.feedback?.learning, clock: clock, current: { generation.current }, logger: logger)
        shadowRunner.bind { [weak self] job in self?.runShadows(job) }
    }

    /// Calls `observer` with every shadow decision, on the shadows' thread, as it is made.
    public func observeShadows(_ observer: @escaping @Sendable (ShadowDecision) -> Void) {
        shadowObserver.withLock { $0 = observer }
    }

    /// Shadow jobs queued and not yet run.
    public var pendingShadows: Int { shadowRunner.pending }

    /// Ends the engine's own thread (the online learner's) and waits for it: the daemon calls
    /// this as it stops, after the last request. Outcomes not yet published stay in the feedback store.
    public func shutdown() {
        learner.shutdown()
        shadowRunner.shutdown()
        // A build a reload gave up on may still be in a plugin's code: give it one more timeout
        // to return, so its plugins are released before the process exits.
        if let abandoned = abandonedBuild.current {
            let timeout = current.config.reload.timeoutSeconds
            if !abandoned.waitUntilEnded(within: timeout) {
                logger.warning(
                    "exiting while generation \(abandoned.number) is still being built (\(abandoned.progress.step)), \(Self.seconds(since: abandoned.started)) s after it started"
                )
            }
        }
    }

    /// The generation new requests use, swapped in one step.
    final class ServingGeneration: Sendable {
        private let value: Mutex<Generation>

        init(_ first: Generation) { value = Mutex(first) }

        var current: Generation {
            get { value.withLock { $0 } }
            set { value.withLock { $0 = newValue } }
        }
    }

    /// The generation new requests use.
    public var current: Generation { generation.current }

    /// Validates a config file and builds its generation without applying its process settings, as
    /// `--check-config`, `routerctl eval` and `calibrate` do: nothing in the process changes.
    public static func check(configFile: String, executableDirectory: String?, logger: Logger) throws(GenerationError) -> Generation {
        let config = try loadConfig(file: configFile, executableDirectory: executableDirectory)
        return try Generation.build(config: config, number: 0, logger: logger)
    }

    static func loadConfig(file: String, executableDirectory: String?) throws(GenerationError) -> DaemonConfig {
        do {
            return try ConfigLoader.load(file: file, hostABIVersion: Int(PluginLibrary.hostABIVersion), executableDirectory: executableDirectory)
        } catch {
            throw GenerationError(problems: error.issues.map(\.description))
        }
    }

    // MARK: Reload

    /// Re-reads the config file and swaps in a new generation. On any problem
    /// the current generation keeps serving and the error lists every problem.
    ///
    /// `prepare` runs on the new generation after it is built and before it is
    /// swapped in (also in a dry run): the caller readies what it owns for that
    /// generation, and a problem it throws rejects the reload like any other.
    /// With `dryRun`, the new generation is built and checked but not swapped in.
    public func reload(
        trigger: String, dryRun: Bool = false, prepare: (Generation) throws(GenerationError) -> Void = { _ in }
    ) throws(EngineError) -> ReloadOutcome {
        try reloadLock.withLock { _ throws(EngineError) in try reloadHoldingLock(trigger: trigger, dryRun: dryRun, prepare: prepare) }
    }

    private func reloadHoldingLock(
        trigger: String, dryRun: Bool, prepare: (Generation) throws(GenerationError) -> Void
    ) throws(EngineError) -> ReloadOutcome {
        let old = current
        do throws(GenerationError) {
            if let abandoned = abandonedBuild.current {
                let seconds = Self.seconds(since: abandoned.started)
                throw GenerationError(problems: [
                    "an earlier reload timed out and its generation is still being built (\(abandoned.progress.step), for \(seconds) s); "
                        + "reloads are refused until that returns"
                ])
            }
            let config = try Self.loadConfig(file: configFile, executableDirectory: executableDirectory)
            let next = try build(config: config, number: old.number + 1, previous: old)
            try prepare(next)
            let reused = next.routerNames.filter { name in old.routers[name].map { next.routers[name]!.sharesPlugin(with: $0) } == true }
            if dryRun {
                logger.info("reload dry run: the config is valid", metadata: ["trigger": "\(trigger)", "routers": "\(next.routerNames)"])
                return ReloadOutcome(generation: old.number, previousGeneration: old.number, routers: next.routerNames, reused: reused, dryRun: true)
            }
            if next.config.socket.path != old.config.socket.path {
                logger.warning(
                    "socket.path changed; the new path takes effect at the next restart", metadata: ["socket": "\(old.config.socket.path)"])
            }
            processSettings.apply(next.config)
            sessions.configure(ttl: next.config.sessions.ttlSeconds, maxEntries: next.config.sessions.maxEntries)
            decisions.configure(next.config.feedback)
            learner.configure(next.config.feedback?.learning)
            generation.current = next
            stats.recordReload(trigger: trigger, generation: next.number, problems: [])
            logger.notice(
                "reloaded",
                metadata: ["trigger": "\(trigger)", "generation": "\(next.number)", "routers": "\(next.routerNames)", "reused": "\(reused)"])
            return ReloadOutcome(generation: next.number, previousGeneration: old.number, routers: next.routerNames, reused: reused, dryRun: false)
        } catch {
            if !dryRun { stats.recordReload(trigger: trigger, generation: old.number, problems: error.problems) }
            logger.error(
                dryRun ? "reload dry run: the config is not valid" : "reload rejected; generation \(old.number) keeps serving",
                metadata: ["trigger": "\(trigger)", "problems": "\(error.problems.joined(separator: "; "))"])
            throw .reloadRejected(generation: old.number, problems: error.problems, dryRun: dryRun)
        }
    }

    /// Builds a generation on a thread of its own (``GenerationBuild``) and waits at most the config's
    /// `reload.timeout` for it. Past the timeout the build is recorded as abandoned, refusing reloads,
    /// and what it builds is released when it returns.
    private func build(config: DaemonConfig, number: UInt64, previous: Generation) throws(GenerationError) -> Generation {
        let (stats, logger, abandonedBuild) = (self.stats, self.logger, self.abandonedBuild)
        let build = GenerationBuild(number: number) { progress in
            Result { () throws(GenerationError) in
                try Generation.build(config: config, number: number, previous: previous, stats: stats, logger: logger, progress: progress)
            }
        } endedAbandoned: { build in
            abandonedBuild.clear(build)
            logger.warning(
                "the generation a timed-out reload was building is done after \(Self.seconds(since: build.started)) s; it was discarded, and reloads are accepted again",
                metadata: ["generation": "\(number)"])
        }
        let timeout = config.reload.timeoutSeconds
        guard let result = build.result(within: timeout) else {
            abandonedBuild.set(build)
            throw GenerationError(problems: [
                "reload timed out after \(Self.seconds(since: build.started)) s (reload.timeout: \(timeout)) while \(build.progress.step); "
                    + "it goes on in the background and is discarded when it returns, and reloads are refused until then"
            ])
        }
        return try result.get()
    }

    /// Seconds since `start`, to a tenth, for messages.
    static func seconds(since start: ContinuousClock.Instant) -> String {
        String(format: "%.1f", microseconds(since: start) / 1e6)
    }

    /// Changes one router's threshold, or derives it from a strong share, in a new
    /// generation that shares every plugin instance. The config file is untouched:
    /// the next reload restores its value.
    public func set(router name: String, threshold: Double?, strongFraction: Double?) throws(EngineError) -> SetOutcome {
        try reloadLock.withLock { _ throws(EngineError) in try setHoldingLock(router: name, threshold: threshold, strongFraction: strongFraction) }
    }

    private func setHoldingLock(router name: String, threshold: Double?, strongFraction: Double?) throws(EngineError) -> SetOutcome {
        let old = current
        let router = try Self.router(named: name, in: old)
        let changed = try router.with(threshold: threshold, strongFraction: strongFraction)
        let next = old.replacing(changed, number: old.number + 1)
        generation.current = next
        let what =
            threshold.map { "threshold \($0)" }
            ?? "strong_fraction \(strongFraction ?? 0) → threshold \(String(format: "%.4f", changed.threshold ?? 0))"
        stats.recordReload(trigger: "set \(router.name) \(what)", generation: next.number, problems: [])
        logger.notice("set", metadata: ["router": "\(router.name)", "threshold": "\(changed.threshold ?? 0)", "generation": "\(next.number)"])
        return SetOutcome(
            router: router.name, threshold: changed.threshold!, strongFraction: changed.strongFraction, generation: next.number,
            previousGeneration: old.number)
    }

    // MARK: Decisions

    /// Decides which candidate model answers one prompt, on `generation`.
    ///
    /// The prompt is embedded once (or found in the cache) and handed to the plugin; the
    /// router's policy, or the request's `override`, turns its predictions into a choice;
    /// a `session` keeps a conversation on its model or moves it up, never down.
    ///
    /// `embedding`, when given, is the prompt's embedding from ``prepareEmbeddings(for:prompts:later:)``,
    /// and `start` when the request began, so the decision's time counts the wait for it.
    /// `requester` is the uid or gateway key that asks (nil when unknown): only it, or a trusted
    /// peer, may report on the decision, and its sessions are its own.
    public func route(
        router name: String, prompt: String, override: PolicyOverride? = nil, session: String? = nil, embedding given: [Float]? = nil,
        start: ContinuousClock.Instant = .now, requester: Requester? = nil, on generation: Generation
    ) throws(EngineError) -> RoutingDecision {
        try route(
            Self.router(named: name, in: generation), prompt: prompt, override: override, session: session, embedding: given, start: start,
            requester: requester, on: generation)
    }

    /// As above, on a router instance of `generation` the caller has already resolved. A decision
    /// `forEvaluation` is the router's greedy choice, without its exploration or its shadows, as an
    /// off-policy evaluation of the router needs.
    public func route(
        _ router: RouterInstance, prompt: String, override: PolicyOverride? = nil, session: String? = nil, embedding given: [Float]? = nil,
        start: ContinuousClock.Instant = .now, requester: Requester? = nil, forEvaluation: Bool = false, on generation: Generation
    ) throws(EngineError) -> RoutingDecision {
        let rule = try Self.rule(for: router, override: override)
        // `??` would lose the typed throw.
        let embedding = if let given { given } else { try embeddings(of: [prompt], for: router, requester: requester, on: generation)?[0] }
        let candidates = router.candidates
        var decision = RoutingDecision(
            id: decisions.newID(), model: "", tier: nil, policy: rule.name, score: nil, threshold: nil, lambda: nil, epsilon: nil,
            candidates: [], affinity: nil,
            router: router.name, generation: generation.number, elapsedMicroseconds: 0)
        let policy = try policyChoice(router, rule: rule, prompt: prompt, embedding: embedding, into: &decision)
        let (qualities, costs) = (policy.qualities, policy.costs)
        var chosen = policy.chosen
        var exploration: Explorer.Choice?
        var redirected = false
        if let rule = router.noveltyRule {
            let familiarity = try pluginCall(router) { () throws(PluginScoreError) in try router.familiarity(prompt, embedding: embedding) }
            let novel = familiarity < rule.settings.threshold
            decision.familiarity = familiarity
            decision.novel = novel
            if !forEvaluation {
                stats.recordNovelty(router: router.name, novel: novel)
                // A novel prompt goes where the rule says; logged like an exploring draw, so its outcome can be weighed.
                if novel, let redirect = rule.redirect(greedy: chosen, candidates: candidates.count) {
                    exploration = Explorer.Choice(
                        chosen: redirect.chosen, propensity: redirect.propensity, explored: redirect.chosen != chosen,
                        extraCost: costs.map { $0[redirect.chosen] - $0[chosen] } ?? 0)
                    chosen = redirect.chosen
                    redirected = true
                }
            }
        }
        if !forEvaluation, !redirected, let explorer = router.explorer {
            let choice: Explorer.Choice
            switch explorer.settings.strategy {
            case .epsilonGreedy:
                choice = explorer.choose(greedy: chosen, candidates: candidates.count, costs: costs)
            case .thompson(let draws):
                let samples = try pluginCall(router) { () throws(PluginScoreError) in
                    try router.samples(prompt, embedding: embedding, draws: draws, seed: explorer.nextSeed())
                }
                let choices = samples.map { Self.choice(under: rule, score: $0.score, qualities: $0.qualities, costs: costs) }
                choice = explorer.thompson(greedy: chosen, choices: choices, costs: costs)
            }
            chosen = choice.chosen
            exploration = choice
        }
        if let session {
            // A session is its requester's: another uid or key naming the same session id gets its own.
            let (model, affinity) = sessions.decide(
                router: router.name, owner: requester.map { "\($0)" } ?? "-", session: session, choice: candidates[chosen],
                candidates: candidates, now: clock.seconds)
            chosen = candidates.firstIndex(of: model) ?? chosen
            decision.affinity = affinity
            // A session keeps its model: past its first decision the draw decides nothing.
            if affinity != .new, exploration != nil { exploration = Explorer.Choice(chosen: chosen, propensity: 1, explored: false, extraCost: 0) }
        }
        if let exploration {
            decision.propensity = exploration.propensity
            decision.explored = exploration.explored
            // A novel prompt's redirect is the novelty rule's, counted under `novel`, not as an exploring draw.
            if !redirected { stats.recordExploration(router: router.name, explored: exploration.explored, extraCost: exploration.extraCost) }
        }
        if case .lambda(_, let budget?) = rule, let costs {
            decision.budgetTicket = budget.record(qualities: qualities, costs: costs, chosen: chosen)
        }
        decision.model = candidates[chosen].name
        if candidates.count == 2 { decision.tier = chosen == 0 ? .strong : .weak }
        decision.candidates = candidates.indices.map { CandidateEstimate(model: candidates[$0].name, quality: qualities[$0], cost: costs?[$0]) }
        decisions.remember(
            decision.id,
            .init(
                router: router.name, prompt: prompt, requester: requester, candidates: candidates, propensity: decision.propensity,
                explored: decision.explored), now: clock.seconds)
        if !router.shadows.isEmpty, !forEvaluation {
            let job = ShadowRunner.Job(
                decisionID: decision.id, router: router.name, liveModel: decision.model, prompt: prompt, embedding: embedding,
                requester: requester, generation: generation)
            if !shadowRunner.submit(job) { stats.recordShadowDropped(router: router.name) }
        }
        decision.elapsedMicroseconds = Self.microseconds(since: start)
        stats.recordDecision(
            router: router.name, model: decision.model, tier: decision.tier, score: decision.score, microseconds: decision.elapsedMicroseconds)
        return decision
    }

    // MARK: Serving a decision (the gateway)

    /// The order in which a decision's candidates are tried when the chosen one fails: its model
    /// first, then the others by the policy's own preference: by utility (quality − λ × cost)
    /// under a λ policy, by estimated quality otherwise, the cheaper first among equals.
    public func fallbackOrder(of decision: RoutingDecision) -> [String] {
        let rest = decision.candidates.filter { $0.model != decision.model }
        let lambda = decision.lambda
        func merit(_ candidate: CandidateEstimate) -> Double {
            if let lambda, let cost = candidate.cost { return candidate.quality - lambda * cost }
            return candidate.quality
        }
        let ordered = rest.enumerated().sorted { left, right in
            let (a, b) = (merit(left.element), merit(right.element))
            if a != b { return a > b }
            let (costA, costB) = (left.element.cost ?? 0, right.element.cost ?? 0)
            return costA != costB ? costA < costB : left.offset < right.offset
        }
        return [decision.model] + ordered.map(\.element.model)
    }

    /// Whether a budget router can pay for a fallback of `decision` to `model`, after `spent` USD
    /// on the decision's earlier attempts. Always true for a router without a budget.
    public func budgetAllowsFallback(_ decision: RoutingDecision, to model: String, spent: Double, on generation: Generation) -> Bool {
        guard let ticket = decision.budgetTicket, let budget = generation.routers[decision.router]?.budget,
            let index = decision.candidates.firstIndex(where: { $0.model == model })
        else { return true }
        return budget.allowsFallback(ticket, to: index, cost: decision.candidates[index].cost ?? 0, spent: spent)
    }

    /// Puts what serving `decision` really cost (every attempt's usage, priced) in its router's
    /// budget window in place of the estimate; `servedBy` is the model that answered, nil if none did.
    public func settle(_ decision: RoutingDecision, cost: Double, servedBy model: String?, on generation: Generation) {
        guard let ticket = decision.budgetTicket, let budget = generation.routers[decision.router]?.budget else { return }
        budget.settle(ticket, cost: cost, servedBy: model.flatMap { name in decision.candidates.firstIndex { $0.model == name } })
    }

    /// What a router's policy chooses for a prompt: the candidate, every candidate's quality and
    /// expected cost. The decision's policy fields (score, threshold, λ, ε) are filled in; nothing
    /// else happens (no exploration, session, budget or counters), so shadows decide with it too.
    func policyChoice(_ router: RouterInstance, rule: Rule, prompt: String, embedding: [Float]?, into decision: inout RoutingDecision)
        throws(EngineError) -> (chosen: Int, qualities: [Double], costs: [Double]?)
    {
        let candidates = router.candidates
        var costs: [Double]?
        if candidates.allSatisfy({ $0.price != nil }) {
            let tokens = ModelCatalogue.estimatedTokens(prompt)
            costs = candidates.map { $0.price!.expectedCost(promptTokens: tokens) }
        }
        switch rule {
        case .threshold(let threshold, _):
            let score = try pluginCall(router) { () throws(PluginScoreError) in try router.score(prompt, embedding: embedding) }
            decision.score = score
            decision.threshold = threshold
            return (Self.choice(under: rule, score: score, qualities: [], costs: costs), [score, 1 - score], costs)
        case .lambda(let lambda, _):
            let qualities = try pluginCall(router) { () throws(PluginScoreError) in try router.qualities(prompt, embedding: embedding) }
            decision.lambda = lambda
            return (Self.choice(under: rule, score: 0, qualities: qualities, costs: costs), qualities, costs)
        case .cheapestWithin(let epsilon):
            let qualities = try pluginCall(router) { () throws(PluginScoreError) in try router.qualities(prompt, embedding: embedding) }
            decision.epsilon = epsilon
            return (Self.choice(under: rule, score: 0, qualities: qualities, costs: costs), qualities, costs)
        }
    }

    /// The candidate `rule` chooses given a score (threshold rules) or the candidates' qualities
    /// (the others, which have costs): for the policy's own estimates, or one posterior draw of them.
    static func choice(under rule: Rule, score: Double, qualities: [Double], costs: [Double]?) -> Int {
        switch rule {
        case .threshold(let threshold, _): score >= threshold ? 0 : 1
        case .lambda(let lambda, _): PolicyRule.bestUtility(qualities: qualities, costs: costs!, lambda: lambda)
        case .cheapestWithin(let epsilon): PolicyRule.cheapestWithin(qualities: qualities, costs: costs!, epsilon: epsilon)
        }
    }

    /// Calls into `router`'s plugin; a failure is counted against the router and becomes `plugin`.
    private func pluginCall<Value>(_ router: RouterInstance, _ call: () throws(PluginScoreError) -> Value) throws(EngineError) -> Value {
        do {
            return try call()
        } catch {
            stats.recordPluginError(router: router.name)
            throw .plugin(router: router.name, message: error.message)
        }
    }

    /// Checks a feedback report against what it names (the remembered decision, or the router
    /// of `generation`) and against who sends it, and returns it as an outcome about a prompt.
    /// Writing it down is the caller's: the engine keeps no files.
    ///
    /// A decision is named only by the uid that asked for it or a trusted reporter; to anyone
    /// else it is unknown, exactly as an id never issued (so a report reveals nothing of other
    /// peers' decisions). A prompt by router needs a trusted reporter.
    public func outcome(of report: FeedbackReport, from reporter: Reporter, on generation: Generation) throws(EngineError) -> Outcome {
        let router: String
        let prompt: String
        let candidates: [String]
        var decisionID: String?
        var logged: (propensity: Double?, explored: Bool?) = (nil, nil)
        switch report.subject {
        case .decision(let id):
            guard let remembered = decisions.recall(id, now: clock.seconds),
                reporter.trusted || (remembered.requester != nil && remembered.requester == reporter.requester)
            else {
                throw .unknownDecision(id: id, ttlSeconds: decisions.ttl)
            }
            (router, prompt, candidates, decisionID) = (remembered.router, remembered.prompt, remembered.candidates.map(\.name), id)
            logged = (remembered.propensity, remembered.explored)
        case .prompt(let name, let text):
            guard reporter.trusted else {
                let who: String =
                    switch reporter.requester {
                    case .uid(let uid)?: "uid \(uid)"
                    case .key(let name)?: "gateway key '\(name)'"
                    case nil: "a peer whose credentials could not be read"
                    }
                throw .reportForbidden(
                    "\(who) may report only on decisions it asked for, by decision_id; naming a router and a prompt needs feedback.allow in \(generation.config.file)"
                )
            }
            let instance = try Self.router(named: name, in: generation)
            (router, prompt, candidates) = (instance.name, text, instance.candidates.map(\.name))
        }
        var named = [report.model]
        if case .pairwise(_, let against) = report.value { named.append(against) }
        for model in named where !candidates.contains(model) {
            throw .unknownModel(name: model, known: candidates)
        }
        return Outcome(
            router: router, prompt: prompt, decisionID: decisionID, model: report.model, value: report.value, propensity: logged.propensity,
            explored: logged.explored)
    }

    /// Hands a recorded outcome to its router, when that router learns online; the router
    /// publishes it in the background (`feedback.learning`). Counted in the router's stats.
    public func learn(_ outcome: Outcome, on generation: Generation) {
        stats.recordOutcome(router: outcome.router, failed: outcome.value == .failed)
        guard let router = generation.routers[outcome.router] else { return }
        learner.submit(outcome, to: router)
    }

    /// The budget controllers of the serving generation, by router: a fleet shares their curves.
    public var budgetControllers: [String: BudgetController] { current.routers.compactMapValues(\.budget) }

    /// Journals session decisions for `owner`, a fleet that shares sessions, calling `wake` when
    /// the journal stops being empty; nil ends `owner`'s part.
    public func shareSessions(owner: ObjectIdentifier, wake: (@Sendable () -> Void)?) { sessions.share(owner: owner, wake: wake) }

    /// Up to `limit` journalled session decisions, oldest first, for the fleet to ship.
    public func takeSessionChanges(limit: Int) -> [SharedSession] { sessions.takeChanges(limit: limit, now: clock.seconds) }

    /// Another host's session decision, merged into this daemon's sessions.
    public func mergeSession(_ shared: SharedSession) { sessions.merge(shared, now: clock.seconds) }

    /// How long a session outlives its last decision, in seconds.
    public var sessionTTL: Double { sessions.ttl }

    /// Learns from an outcome another daemon of the fleet acknowledged, on the generation serving
    /// now: as ``learn(_:on:)``, but not counted in this daemon's outcome statistics, which are
    /// its own traffic's. False when no router of that name learns here (the outcome is skipped).
    @discardableResult
    public func learnShared(_ outcome: Outcome) -> Bool {
        guard let router = current.routers[outcome.router], router.learnsOnline else { return false }
        learner.submit(outcome, to: router)
        return true
    }

    /// Online learning's state for `router`, or for every router that learns online.
    public func learningStatus(router name: String?, on generation: Generation) throws(EngineError) -> [LearningStatus] {
        let routers =
            try name.map { name throws(EngineError) in [try Self.router(named: name, in: generation)] }
            ?? generation.routerNames.compactMap { generation.routers[$0] }
        return routers.filter(\.learnsOnline).map(learner.status(of:))
    }

    /// Has `router`'s plugin forget what it learned online, on disk too.
    public func forgetLearning(router name: String, on generation: Generation) throws(EngineError) -> LearningStatus {
        let router = try Self.router(named: name, in: generation)
        guard router.learnsOnline else {
            throw .invalidSetting(
                "router '\(name)' does not learn online (its plugin's descriptor must say learns_online, and the config needs feedback: with learning enabled)"
            )
        }
        do {
            try learner.forget(router)
        } catch {
            throw .plugin(router: name, message: error.message)
        }
        return learner.status(of: router)
    }

    /// Decisions remembered for feedback, and the bytes of prompt text they hold.
    public var rememberedDecisions: (count: Int, bytes: Int) { (decisions.count, decisions.bytes) }

    /// A decision rule with its parameter fixed for one request.
    enum Rule {
        case threshold(Double, policy: String)
        /// λ, and the controller that set it when a budget holds it.
        case lambda(Double, budget: BudgetController?)
        case cheapestWithin(Double)

        var name: String {
            switch self {
            case .threshold(_, let policy): policy
            case .lambda(_, let budget): budget == nil ? "lambda" : "budget"
            case .cheapestWithin: "cheapest_within"
            }
        }
    }

    /// The rule for one request: the router's policy, or the request's override of it.
    static func rule(for router: RouterInstance, override: PolicyOverride?) throws(EngineError) -> Rule {
        let priced = router.candidates.allSatisfy { $0.price != nil }
        func needsPrices(_ what: String) throws(EngineError) {
            guard priced else {
                throw .invalidSetting(
                    "router '\(router.name)' has no prices for its candidates, so '\(what)' cannot weigh cost; add them to the config's models: catalogue"
                )
            }
        }
        func needsTwo() throws(EngineError) {
            guard router.candidates.count == 2 else {
                throw .invalidSetting(
                    "router '\(router.name)' chooses among \(router.candidates.count) candidates; a threshold applies to two-candidate routers only (use lambda or cheapest_within)"
                )
            }
        }
        func inUnitRange(_ value: Double, _ what: String) throws(EngineError) {
            guard (0...1).contains(value) else { throw .invalidSetting("\(what) must be between 0 and 1, found \(value)") }
        }
        func nonNegative(_ value: Double, _ what: String) throws(EngineError) {
            guard value >= 0, value.isFinite else { throw .invalidSetting("\(what) must be a finite number ≥ 0, found \(value)") }
        }
        switch override {
        case nil:
            switch router.policy {
            case .threshold, .strongFraction: return .threshold(router.threshold!, policy: router.policy.name)
            case .lambda(let lambda): return .lambda(lambda, budget: nil)
            case .cheapestWithin(let epsilon): return .cheapestWithin(epsilon)
            case .budget: return .lambda(router.budget!.lambda, budget: router.budget)
            }
        case .threshold(let threshold)?:
            try needsTwo()
            try inUnitRange(threshold, "threshold")
            return .threshold(threshold, policy: "threshold")
        case .lambda(let lambda)?:
            try needsPrices("lambda")
            try nonNegative(lambda, "lambda")
            return .lambda(lambda, budget: nil)
        case .cheapestWithin(let epsilon)?:
            try needsPrices("cheapest_within")
            try nonNegative(epsilon, "cheapest_within")
            return .cheapestWithin(epsilon)
        case .knob(let value)?:
            switch router.policy {
            case .threshold, .strongFraction:
                try inUnitRange(value, "the threshold in the model name")
                return .threshold(value, policy: "threshold")
            case .lambda, .budget:
                try nonNegative(value, "the λ in the model name")
                return .lambda(value, budget: nil)
            case .cheapestWithin:
                try nonNegative(value, "the ε in the model name")
                return .cheapestWithin(value)
            }
        }
    }

    /// Counts a request that got `router_timeout`, under the router's `events` as `timeout`.
    public func recordTimeout(router: String) {
        stats.recordEvent(router: router, event: "timeout")
    }

    /// The counters, with each budget router's controller state on `generation` and the session count.
    public func statsSnapshot(on generation: Generation) -> StatsSnapshot {
        var snapshot = stats.snapshot()
        for (name, router) in generation.routers {
            if let budget = router.budget { snapshot.routers[name, default: RouterActivity()].budget = budget.snapshot() }
        }
        snapshot.sessions = sessions.count
        return snapshot
    }

    /// P(strong wins) for each prompt on `generation`, in order.
    /// `embeddings`, when given, are the prompts' from ``prepareEmbeddings(for:prompts:later:)``.
    public func score(
        router name: String, prompts: [String], embeddings given: [[Float]]? = nil, requester: Requester? = nil, on generation: Generation
    ) throws(EngineError) -> [Double] {
        try score(Self.router(named: name, in: generation), prompts: prompts, embeddings: given, requester: requester, on: generation)
    }

    /// As above, on a router instance the caller has already resolved.
    public func score(
        _ router: RouterInstance, prompts: [String], embeddings given: [[Float]]? = nil, requester: Requester? = nil, on generation: Generation
    ) throws(EngineError) -> [Double] {
        let embeddings = if let given { given } else { try embeddings(of: prompts, for: router, requester: requester, on: generation) }
        let scores = try pluginCall(router) { () throws(PluginScoreError) in try router.score(prompts, embeddings: embeddings) }
        stats.recordScored(router: router.name, count: scores.count)
        return scores
    }

    /// What a route or score on a router needs from its encoder before the plugin can answer.
    public enum PreparedEmbeddings: Sendable {
        /// The router has no encoder (or is unknown: the route itself reports that).
        case notNeeded
        /// The cache held every prompt's embedding: answer now, on this thread.
        case ready([[Float]])
        /// The encoder's batcher is computing them; they arrive through `later`.
        case pending
    }

    /// Readies the embeddings `router` needs for `prompts` without blocking: from the cache,
    /// or else queued to the encoder's batcher, which embeds concurrent requests' prompts
    /// together and hands them to `later` on its own thread.
    /// Misses over `limits.max_tokens` or `limits.max_windows` reach `later` as `too_large`.
    public func prepareEmbeddings(
        for router: RouterInstance, prompts: [String], requester: Requester? = nil, on generation: Generation,
        later: @escaping @Sendable (Result<[[Float]], EngineError>) -> Void
    ) -> PreparedEmbeddings {
        guard let encoder = router.encoder else { return .notNeeded }
        let limits = Self.encodingLimits(generation.config.limits)
        let ready = encoder.embed(prompts, namespace: .peer(requester), limits: limits) { outcome in
            later(outcome.mapError { EngineError.tooLarge($0.message) })
        }
        return ready.map(PreparedEmbeddings.ready) ?? .pending
    }

    /// The embeddings `router` needs for `prompts`, on this thread (from the cache, or waiting for
    /// the batcher), within the request limits of `generation`; nil for a router without an encoder.
    func embeddings(of prompts: [String], for router: RouterInstance, requester: Requester?, on generation: Generation)
        throws(EngineError) -> [[Float]]?
    {
        guard let encoder = router.encoder else { return nil }
        return try Self.limited { () throws(EncodingLimitError) in
            try encoder.embed(prompts, namespace: .peer(requester), limits: Self.encodingLimits(generation.config.limits))
        }
    }

    /// What one request may make the encoder do, from the config's `limits`.
    public static func encodingLimits(_ limits: DaemonConfig.Limits) -> EncodingLimits {
        EncodingLimits(maxWindows: limits.maxWindows, maxTokens: limits.maxTokens)
    }

    /// `body`'s result, its limit error becoming `too_large`.
    static func limited<T>(_ body: () throws(EncodingLimitError) -> T) throws(EngineError) -> T {
        do throws(EncodingLimitError) {
            return try body()
        } catch {
            throw .tooLarge(error.message)
        }
    }

    /// Embeds texts with an encoder of `generation`: `encoder` may be omitted when there is one;
    /// `policy` overrides the encoder's long-text policy.
    public func embed(
        _ texts: [String], encoder requested: String?, policy requestedPolicy: LongTextPolicy?, tokens: Bool, requester: Requester? = nil,
        on generation: Generation
    ) throws(EngineError) -> Embeddings {
        let names = generation.encoders.keys.sorted()
        let name: String
        if let requested {
            name = requested
        } else if names.count == 1 {
            name = names[0]
        } else {
            throw names.isEmpty ? .noEncoders : .encoderNotNamed(known: names)
        }
        guard let instance = generation.encoders[name] else { throw .unknownEncoder(name: name, known: names) }
        let policy = requestedPolicy ?? instance.policy
        try Self.checkSize(texts, limits: generation.config.limits)
        let vectors = try Self.limited { () throws(EncodingLimitError) in
            try instance.embed(texts, namespace: .peer(requester), policy: policy, limits: Self.encodingLimits(generation.config.limits))
        }
        return Embeddings(
            encoder: name, dimension: instance.dimension, vectors: vectors,
            tokens: tokens ? texts.map { instance.encoder.tokenIDs($0, policy: policy) } : nil, policy: policy)
    }

    /// Refuses more texts than `limits.max_texts` before any work. What the texts cost the encoder
    /// (`limits.max_tokens`, `limits.max_windows`) is checked as they are tokenized, off the event
    /// loop, by the encoder's batcher.
    public static func checkSize(_ texts: [String], limits: DaemonConfig.Limits) throws(EngineError) {
        guard texts.count <= limits.maxTexts else {
            throw .tooLarge("\(texts.count) texts in one request; limits.max_texts is \(limits.maxTexts): split them")
        }
    }

    /// Seconds since the engine started.
    public var uptimeSeconds: Double {
        let elapsed = ContinuousClock.now - started
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }

    /// The router of `generation` named `name`.
    public static func router(named name: String, in generation: Generation) throws(EngineError) -> RouterInstance {
        guard let router = generation.routers[name] else { throw .unknownRouter(name: name, known: generation.routerNames) }
        return router
    }

    /// Microseconds since `start`, to a tenth.
    public static func microseconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        let micros = Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) * 1e-12
        return (micros * 10).rounded() / 10
    }
}
