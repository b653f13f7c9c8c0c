import Foundation
import Logging
import NIOConcurrencyHelpers
import RouterConfig
import RouterPluginHost
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
    private let generation: NIOLockedValueBox<Generation>
    private let processSettings: ProcessSettings
    /// Serialises reloads and sets; requests never take it.
    private let reloadLock = NIOLock()
    private let started = ContinuousClock.now

    /// Loads `configFile`, builds generation 1 and applies its process settings, or throws every problem found.
    public init(
        configFile: String, executableDirectory: String?, logger: Logger, processSettings: ProcessSettings = .encoderThreads
    ) throws(GenerationError) {
        self.configFile = configFile
        self.executableDirectory = executableDirectory
        self.logger = logger
        self.processSettings = processSettings
        let config = try Self.loadConfig(file: configFile, executableDirectory: executableDirectory)
        let first = try Generation.build(config: config, number: 1, stats: stats, logger: logger)
        processSettings.apply(first.config)
        generation = NIOLockedValueBox(first)
    }

    /// The generation new requests use.
    public var current: Generation { generation.withLockedValue { $0 } }

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
        reloadLock.lock()
        defer { reloadLock.unlock() }
        let old = current
        do {
            let config = try Self.loadConfig(file: configFile, executableDirectory: executableDirectory)
            let next = try Generation.build(config: config, number: old.number + 1, previous: old, stats: stats, logger: logger)
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
            generation.withLockedValue { $0 = next }
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

    /// Changes one router's threshold, or derives it from a strong share, in a new
    /// generation that shares every plugin instance. The config file is untouched:
    /// the next reload restores its value.
    public func set(router name: String, threshold: Double?, strongFraction: Double?) throws(EngineError) -> SetOutcome {
        reloadLock.lock()
        defer { reloadLock.unlock() }
        let old = current
        let router = try Self.router(named: name, in: old)
        let changed = try router.with(threshold: threshold, strongFraction: strongFraction)
        let next = old.replacing(changed, number: old.number + 1)
        generation.withLockedValue { $0 = next }
        let what =
            threshold.map { "threshold \($0)" }
            ?? "strong_fraction \(strongFraction ?? 0) → threshold \(String(format: "%.4f", changed.threshold))"
        stats.recordReload(trigger: "set \(router.name) \(what)", generation: next.number, problems: [])
        logger.notice("set", metadata: ["router": "\(router.name)", "threshold": "\(changed.threshold)", "generation": "\(next.number)"])
        return SetOutcome(
            router: router.name, threshold: changed.threshold, strongFraction: changed.strongFraction, generation: next.number,
            previousGeneration: old.number)
    }

    // MARK: Decisions

    /// Decides strong or weak for one prompt on `generation`; `threshold` overrides the router's for this decision.
    public func route(router name: String, prompt: String, threshold: Double? = nil, on generation: Generation) throws(EngineError)
        -> RoutingDecision
    {
        let start = ContinuousClock.now
        let router = try Self.router(named: name, in: generation)
        let score: Double
        do {
            // The prompt is embedded once here (or found in the cache) and handed to the plugin.
            score = try router.score(prompt, embedding: router.encoder?.embed([prompt])[0])
        } catch {
            stats.recordPluginError(router: router.name)
            throw .plugin(router: router.name, message: error.message)
        }
        let threshold = threshold ?? router.threshold
        let tier: RoutingTier = score >= threshold ? .strong : .weak
        let elapsed = Self.microseconds(since: start)
        stats.recordDecision(router: router.name, tier: tier, score: score, microseconds: elapsed)
        return RoutingDecision(
            model: tier == .strong ? router.strongModel : router.weakModel, tier: tier, score: score, threshold: threshold,
            router: router.name, generation: generation.number, elapsedMicroseconds: elapsed)
    }

    /// P(strong wins) for each prompt on `generation`, in order.
    public func score(router name: String, prompts: [String], on generation: Generation) throws(EngineError) -> [Double] {
        let router = try Self.router(named: name, in: generation)
        do {
            let scores = try router.score(prompts, embeddings: router.encoder?.embed(prompts))
            stats.recordScored(router: router.name, count: scores.count)
            return scores
        } catch {
            stats.recordPluginError(router: router.name)
            throw .plugin(router: router.name, message: error.message)
        }
    }

    /// Embeds texts with an encoder of `generation`: `encoder` may be omitted when there is one;
    /// `policy` overrides the encoder's long-text policy.
    public func embed(
        _ texts: [String], encoder requested: String?, policy requestedPolicy: LongTextPolicy?, tokens: Bool, on generation: Generation
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
        let vectors = policy == instance.policy ? instance.embed(texts) : instance.encoder.embed(texts, policy: policy)
        return Embeddings(
            encoder: name, dimension: instance.dimension, vectors: vectors,
            tokens: tokens ? texts.map { instance.encoder.tokenIDs($0, policy: policy) } : nil, policy: policy)
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
