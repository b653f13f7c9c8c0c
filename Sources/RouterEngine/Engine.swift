import Foundation
import Logging
import NIOConcurrencyHelpers
import RouterConfig
import RouterProtocol
import TextEncoder

/// The decision pipeline and the current generation.
///
/// Requests flow one way: the caller takes `current` once, then asks this
/// engine to route or score on that generation. Reloads build a complete new
/// generation off to the side and swap it in atomically, or change nothing.
public final class Engine: Sendable {
    public static let version = "0.1.0"

    public let configFile: String
    public let stats = Stats()
    private let executableDirectory: String?
    private let logger: Logger
    private let generation: NIOLockedValueBox<Generation>
    /// Serialises reloads; requests never take it.
    private let reloadLock = NIOLock()
    private let started = ContinuousClock.now

    /// Loads `configFile` and builds generation 1, or throws every problem found.
    public init(configFile: String, executableDirectory: String?, logger: Logger) throws(GenerationError) {
        self.configFile = configFile
        self.executableDirectory = executableDirectory
        self.logger = logger
        let config = try Self.loadConfig(file: configFile, executableDirectory: executableDirectory)
        generation = NIOLockedValueBox(try Generation.build(config: config, number: 1, stats: stats, logger: logger))
    }

    /// The generation new requests use.
    public var current: Generation { generation.withLockedValue { $0 } }

    /// Validates a config file and builds (then drops) its generation, as `--check-config` does.
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
    /// With `dryRun`, builds and checks the new generation but does not swap it in.
    public func reload(trigger: String, dryRun: Bool = false) throws(ProtocolError) -> ReloadResult {
        reloadLock.lock()
        defer { reloadLock.unlock() }
        let old = current
        do {
            let config = try Self.loadConfig(file: configFile, executableDirectory: executableDirectory)
            let next = try Generation.build(config: config, number: old.number + 1, previous: old, stats: stats, logger: logger)
            let reused = next.routerNames.filter { name in old.routers[name].map { next.routers[name]!.sharesPlugin(with: $0) } == true }
            if dryRun {
                logger.info("reload dry run: the config is valid", metadata: ["trigger": "\(trigger)", "routers": "\(next.routerNames)"])
                return ReloadResult(generation: old.number, previousGeneration: old.number, routers: next.routerNames, reused: reused, dryRun: true)
            }
            if next.config.socket.path != old.config.socket.path {
                logger.warning(
                    "socket.path changed; the new path takes effect at the next restart", metadata: ["socket": "\(old.config.socket.path)"])
            }
            generation.withLockedValue { $0 = next }
            stats.recordReload(trigger: trigger, generation: next.number, problems: [])
            logger.notice(
                "reloaded",
                metadata: ["trigger": "\(trigger)", "generation": "\(next.number)", "routers": "\(next.routerNames)", "reused": "\(reused)"])
            return ReloadResult(generation: next.number, previousGeneration: old.number, routers: next.routerNames, reused: reused)
        } catch {
            if !dryRun { stats.recordReload(trigger: trigger, generation: old.number, problems: error.problems) }
            logger.error(
                dryRun ? "reload dry run: the config is not valid" : "reload rejected; generation \(old.number) keeps serving",
                metadata: ["trigger": "\(trigger)", "problems": "\(error.problems.joined(separator: "; "))"])
            throw ProtocolError(
                .reloadFailed,
                (dryRun ? "the config is not valid (dry run; nothing changed):\n" : "reload rejected, generation \(old.number) keeps serving:\n")
                    + error.problems.joined(separator: "\n"))
        }
    }

    /// Changes one router's threshold (or derives it from a strong share) in a new
    /// generation that shares every plugin instance. The config file is untouched:
    /// the next reload restores its value.
    public func set(_ request: SetRequest) throws(ProtocolError) -> SetResult {
        reloadLock.lock()
        defer { reloadLock.unlock() }
        let old = current
        let router = try Self.router(named: request.router, in: old)
        let changed = try router.with(threshold: request.threshold, strongFraction: request.strongFraction)
        let next = old.replacing(changed, number: old.number + 1)
        generation.withLockedValue { $0 = next }
        let what =
            request.threshold.map { "threshold \($0)" }
            ?? "strong_fraction \(request.strongFraction ?? 0) → threshold \(String(format: "%.4f", changed.threshold))"
        stats.recordReload(trigger: "set \(router.name) \(what)", generation: next.number, problems: [])
        logger.notice("set", metadata: ["router": "\(router.name)", "threshold": "\(changed.threshold)", "generation": "\(next.number)"])
        return SetResult(
            router: router.name, threshold: changed.threshold, strongFraction: changed.strongFraction, generation: next.number,
            previousGeneration: old.number)
    }

    // MARK: Ops

    /// What answering a request costs, so the caller knows where to run it.
    public enum Work: Sendable {
        /// Microseconds: answer on the event loop.
        case immediate
        /// Milliseconds of CPU (the encoder, a reload): run it on the compute pool.
        case compute
        /// Waits on I/O (an io_bound plugin's network call): run it on the I/O pool.
        case io
    }

    /// Where answering `request` on `generation` should run.
    public func work(for request: Request, on generation: Generation) -> Work {
        func routerWork(_ name: String) -> Work {
            guard let router = generation.routers[name] else { return .immediate }
            return router.ioBound ? .io : (router.encoder != nil ? .compute : .immediate)
        }
        switch request {
        case .route(let route): return routerWork(route.router)
        case .score(let score): return routerWork(score.router)
        // `set` waits for any reload in progress.
        case .embed, .reload, .set: return .compute
        case .routers, .health, .status, .stats: return .immediate
        }
    }

    /// Decides strong or weak for one prompt on `generation`.
    public func route(_ request: RouteRequest, on generation: Generation) throws(ProtocolError) -> Decision {
        let start = ContinuousClock.now
        let router = try Self.router(named: request.router, in: generation)
        let score: Double
        do {
            // The prompt is embedded once here (or found in the cache) and handed to the plugin.
            score = try router.score(request.prompt, embedding: router.encoder?.embed([request.prompt])[0])
        } catch {
            stats.recordPluginError(router: router.name)
            throw ProtocolError(.pluginError, "router '\(router.name)': \(error.message)")
        }
        let threshold = request.threshold ?? router.threshold
        let tier: Tier = score >= threshold ? .strong : .weak
        let elapsed = Self.microseconds(since: start)
        stats.recordDecision(router: router.name, tier: tier, score: score, microseconds: elapsed)
        let decision = Decision(
            model: tier == .strong ? router.strongModel : router.weakModel, tier: tier, score: score, threshold: threshold,
            router: router.name, generation: generation.number, elapsedMicroseconds: elapsed)
        generation.decisionLog?.record(decision, prompt: request.prompt)
        return decision
    }

    /// Scores a batch of prompts on `generation`.
    public func score(_ request: ScoreRequest, on generation: Generation) throws(ProtocolError) -> ScoreResult {
        let start = ContinuousClock.now
        let router = try Self.router(named: request.router, in: generation)
        do {
            let scores = try router.score(request.prompts, embeddings: router.encoder?.embed(request.prompts))
            stats.recordScored(router: router.name, count: scores.count)
            return ScoreResult(
                router: router.name, generation: generation.number, scores: scores, elapsedMicroseconds: Self.microseconds(since: start))
        } catch {
            stats.recordPluginError(router: router.name)
            throw ProtocolError(.pluginError, "router '\(router.name)': \(error.message)")
        }
    }

    /// Embeds texts with an encoder of `generation`.
    public func embed(_ request: EmbedRequest, on generation: Generation) throws(ProtocolError) -> EmbedResult {
        let start = ContinuousClock.now
        let names = generation.encoders.keys.sorted()
        let name: String
        if let requested = request.encoder {
            name = requested
        } else if names.count == 1 {
            name = names[0]
        } else {
            throw ProtocolError(
                names.isEmpty ? .badField : .missingField,
                names.isEmpty ? "no encoders are configured" : "missing field 'encoder' (encoders: \(names.joined(separator: ", ")))")
        }
        guard let instance = generation.encoders[name] else {
            throw ProtocolError(.badField, "unknown encoder '\(name)' (encoders: \(names.isEmpty ? "none" : names.joined(separator: ", ")))")
        }
        let policy = request.longText.flatMap(LongTextPolicy.init(rawValue:)) ?? instance.policy
        let embeddings = policy == instance.policy ? instance.embed(request.texts) : instance.encoder.embed(request.texts, policy: policy)
        let tokens = request.tokens ? request.texts.map { instance.encoder.tokenIDs($0, policy: policy) } : nil
        return EmbedResult(
            encoder: name, dimension: instance.dimension, embeddings: embeddings, tokens: tokens, longText: policy.rawValue,
            elapsedMicroseconds: Self.microseconds(since: start))
    }

    public func routers(on generation: Generation) -> RoutersResult {
        RoutersResult(
            generation: generation.number,
            routers: generation.routerNames.compactMap { generation.routers[$0] }.map { router in
                RouterInfo(
                    name: router.name, plugin: router.library.name, pluginVersion: router.library.version, threshold: router.threshold,
                    strongModel: router.strongModel, weakModel: router.weakModel, encoder: router.encoder?.config.name,
                    strongFraction: router.strongFraction,
                    generation: generation.number, details: router.describe())
            })
    }

    public func status(on generation: Generation, socket: String) -> StatusResult {
        StatusResult(
            version: Self.version, pid: getpid(), uptimeSeconds: uptimeSeconds, generation: generation.number, config: generation.config.file,
            socket: socket,
            plugins: generation.libraries.values.sorted { $0.name < $1.name }.map {
                PluginInfo(name: $0.name, version: $0.version, library: $0.path, abiVersion: $0.abiVersion)
            },
            routers: generation.routerNames, encoders: generation.encoders.keys.sorted(), blasCore: BLASKernels.coreName)
    }

    public func statsSnapshot(on generation: Generation) -> StatsResult {
        let encoders = generation.encoders.mapValues { instance in
            let counters = instance.cache.counters
            return EncoderStats(hits: counters.hits, misses: counters.misses, entries: counters.entries, capacity: counters.capacity)
        }
        return stats.snapshot(uptimeSeconds: uptimeSeconds, generation: generation.number, encoders: encoders)
    }

    private var uptimeSeconds: Double {
        let elapsed = ContinuousClock.now - started
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }

    private static func router(named name: String, in generation: Generation) throws(ProtocolError) -> RouterInstance {
        guard let router = generation.routers[name] else {
            throw ProtocolError(.unknownRouter, "unknown router '\(name)' (routers: \(generation.routerNames.joined(separator: ", ")))")
        }
        return router
    }

    private static func microseconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        let micros = Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) * 1e-12
        return (micros * 10).rounded() / 10
    }
}
