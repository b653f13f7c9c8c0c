import Foundation
import Logging
import RouterConfig
import RouterJSON
import RouterPluginHost
import RouterPluginKit

/// What identifies a plugin instance's state: equal fingerprints mean a reload
/// may keep the instance instead of creating it anew.
struct PluginFingerprint: Hashable, Sendable {
    var router: String
    var libraryPath: String
    var paramsJSON: String
    var strongModel: String
    var weakModel: String
    var candidates: [String]
    /// The encoder object itself: a changed model loads a new one.
    var encoder: ObjectIdentifier?
    /// size-mtime-inode of every `path` parameter's file, so a rewritten weights file is loaded anew.
    var files: [String]
    /// Where the instance keeps what it learns online.
    var stateDirectory: String?
}

/// One router instance: a plugin instance plus the decision settings.
///
/// Immutable once created and shared by every request of its generation. The
/// plugin instance is shared too, by the router instances of successive
/// generations (reloads that leave it unchanged, `set`).
public final class RouterInstance: Sendable {
    public let name: String
    /// How this router chooses (the config's, or a `set`'s).
    public let policy: RoutingPolicy
    /// For a threshold policy, route strong when P(strong wins) ≥ threshold: from the config, or
    /// derived from `strongFraction`. Nil for the cost policies.
    public let threshold: Double?
    /// The configured share of traffic for the strong model, when the threshold was derived from it.
    public let strongFraction: Double?
    public let strongModel: String
    public let weakModel: String
    /// The models this router chooses among; for two, `[strong, weak]`.
    public let candidates: [Candidate]
    /// Holds the budget of a `budget` policy.
    public let budget: BudgetController?
    /// Its exploration (`explore:`), if any.
    let explorer: Explorer?
    public var exploration: DaemonConfig.Exploration? { explorer?.settings }
    /// The routers that also decide its prompts, off the request's path (`shadow:`).
    public let shadows: [String]
    /// Its novelty rule (`novelty:`), if any: then every decision says how familiar its prompt is.
    let noveltyRule: NoveltyRule?
    public var novelty: DaemonConfig.Novelty? { noveltyRule?.settings }
    /// The encoder whose embeddings this instance's plugin receives.
    public let encoder: EncoderInstance?
    /// The plugin waits on I/O while scoring (its descriptor's `io_bound`).
    public let ioBound: Bool
    /// Where the plugin keeps what it learns online; nil when this router does not learn (its
    /// descriptor does not say `learns_online`, or the config has no feedback or turned learning off).
    public let stateDirectory: String?
    public var learnsOnline: Bool { stateDirectory != nil }
    /// Seconds a decision may take before its request gets `router_timeout` (the config's `timeout`).
    public let timeoutSeconds: Double?
    let plugin: PluginInstance
    let fingerprint: PluginFingerprint

    var library: PluginLibrary { plugin.library }
    /// Whether its plugin judges how familiar a prompt is (ABI revision 4), so it can take `novelty:`.
    public var pluginJudgesFamiliarity: Bool { library.judgesFamiliarity }
    /// The plugin's name and version, as its library reports them.
    public var pluginName: String { library.name }
    public var pluginVersion: String { library.version }
    /// What the plugin says about the instance (`routers` shows it as `details`).
    public var details: [String: JSONValue] { description.object }
    /// What the plugin said about the instance, checked when it was created.
    public var description: RouterDescription { plugin.description }
    /// Whether the plugin predicts each candidate's quality (else the router has two candidates and a win probability).
    public var predictsQualities: Bool { plugin.library.predictsQualities }
    /// What the candidates' qualities mean: the plugin's statement, or a win rate.
    public var qualityScale: QualityScale { predictsQualities ? (description.quality ?? .winRate) : .winRate }
    /// The name of what the qualities mean (`win_rate`, `probability`, `score`).
    public var qualityMeaning: String { qualityScale.meaning.rawValue }

    /// Creates the router, keeping `previous`'s plugin instance when nothing it depends on changed.
    init(
        config: DaemonConfig.Router, catalogue: ModelCatalogue, descriptor: PluginDescriptor?, library: PluginLibrary, encoder: EncoderInstance?,
        feedback: DaemonConfig.Feedback? = nil, stats: Stats, logger: Logger, reusing previous: RouterInstance? = nil
    ) throws(PluginLoadError) {
        self.encoder = encoder
        self.timeoutSeconds = config.timeoutSeconds
        explorer = config.exploration.map(Explorer.init)
        shadows = config.shadows
        noveltyRule = config.novelty.map { NoveltyRule($0, candidates: config.candidates, seed: config.exploration?.seed) }
        if descriptor?.learnsOnline == true, config.learn, let feedback, feedback.learning.enabled {
            guard library.learnsOnline else {
                throw PluginLoadError(
                    library: library.path,
                    message:
                        "router '\(config.name)': the descriptor of plugin '\(library.name)' says learns_online, but its library has no learn/forget (ABI revision 3); rebuild it against this routerd's router_plugin.h"
                )
            }
            stateDirectory = feedback.directory + "/learned/" + config.name
        } else {
            stateDirectory = nil
        }
        self.name = config.name
        self.policy = config.policy
        self.ioBound = descriptor?.ioBound ?? false
        self.strongFraction = config.strongFraction
        self.strongModel = config.strongModel
        self.weakModel = config.weakModel
        candidates = Self.candidates(config, catalogue: catalogue)
        if case .budget(let budget) = config.policy {
            if let kept = previous?.budget, kept.fits(budget, candidates: config.candidates) {
                self.budget = kept
            } else {
                self.budget = BudgetController(budget: budget, candidates: config.candidates)
            }
        } else {
            budget = nil
        }
        guard config.candidates.count == 2 || library.predictsQualities else {
            throw PluginLoadError(
                library: library.path,
                message:
                    "router '\(config.name)': plugin '\(library.name)' predicts only P(strong wins), so it routes between exactly two candidates, and the router names \(config.candidates.count); give it two, or use a plugin that predicts each model's quality (docs/PLUGINS.md)"
            )
        }
        guard config.novelty == nil || library.judgesFamiliarity else {
            throw PluginLoadError(
                library: library.path,
                message:
                    "router '\(config.name)': novelty needs a plugin that judges how familiar a prompt is (ABI revision 4's familiarity), and plugin '\(library.name)' does not; sw_ranking does (docs/PLUGINS.md)"
            )
        }
        if case .thompson = config.exploration?.strategy, !library.samplesPosterior {
            throw PluginLoadError(
                library: library.path,
                message:
                    "router '\(config.name)': explore by Thompson sampling needs a plugin that draws from its posterior (ABI revision 5's sample), and plugin '\(library.name)' does not; sw_ranking and classifier do, or use strategy: epsilon_greedy (docs/PLUGINS.md)"
            )
        }
        let paramsJSON = Self.json(config.params)
        fingerprint = PluginFingerprint(
            router: config.name, libraryPath: library.path, paramsJSON: paramsJSON, strongModel: config.strongModel,
            weakModel: config.weakModel, candidates: config.candidates, encoder: encoder.map(ObjectIdentifier.init),
            files: (descriptor?.files(in: config.params) ?? []).map(Self.stamp), stateDirectory: stateDirectory)
        if let previous, previous.fingerprint == fingerprint {
            plugin = previous.plugin
        } else {
            var instanceLogger = logger
            instanceLogger[metadataKey: "router"] = .string(config.name)
            let router = config.name
            var embed: (@Sendable (String) -> [Float])?
            if let encoder { embed = { text in encoder.embed(own: [text])[0] } }
            let services = HostServices(logger: instanceLogger, embed: embed, count: { event in stats.recordEvent(router: router, event: event) })
            plugin = try PluginInstance(
                library: library, name: config.name, paramsJSON: paramsJSON, strongModel: config.strongModel, weakModel: config.weakModel,
                candidates: config.candidates, embeddingDimension: encoder?.dimension ?? 0, stateDirectory: stateDirectory,
                candidateCosts: Self.nominalCosts(config.candidates, catalogue: catalogue), services: services)
        }
        if let threshold = config.threshold {
            self.threshold = threshold
        } else if let fraction = config.strongFraction {
            guard let quantiles = plugin.description.scoreQuantiles else {
                throw PluginLoadError(
                    library: library.path,
                    message:
                        "router '\(config.name)': strong_fraction needs score quantiles, and plugin '\(library.name)' publishes none for this strong/weak pair; set threshold instead (`routerctl calibrate --router \(config.name) --strong-fraction \(config.strongFraction ?? 0.5) --prompts FILE` computes one from your prompts)"
                )
            }
            self.threshold = Calibration.threshold(strongFraction: fraction, sortedScores: quantiles)
        } else {
            threshold = nil
        }
    }

    /// Each candidate's nominal cost, or nil unless the catalogue prices every one.
    private static func nominalCosts(_ candidates: [String], catalogue: ModelCatalogue) -> [Double]? {
        let costs = candidates.compactMap { catalogue.model(named: $0)?.nominalCost }
        return costs.count == candidates.count ? costs : nil
    }

    /// The candidates with their prices and ranks.
    private static func candidates(_ config: DaemonConfig.Router, catalogue: ModelCatalogue) -> [Candidate] {
        let prices = config.candidates.map { catalogue.model(named: $0) }
        let order: [Int]
        if prices.allSatisfy({ $0 != nil }) {
            order = config.candidates.indices.sorted { (prices[$0]!.nominalCost, $0) < (prices[$1]!.nominalCost, $1) }
        } else {
            order = config.candidates.indices.map { config.candidates.count - 1 - $0 }  // [strong, weak]: weak ranks 0
        }
        var rank = [Int](repeating: 0, count: config.candidates.count)
        for (position, index) in order.enumerated() { rank[index] = position }
        return config.candidates.indices.map { Candidate(name: config.candidates[$0], price: prices[$0], rank: rank[$0]) }
    }

    /// A copy with another threshold, sharing the plugin instance (the `set` op).
    private init(copying other: RouterInstance, threshold: Double, strongFraction: Double?) {
        name = other.name
        self.threshold = threshold
        self.strongFraction = strongFraction
        policy = strongFraction.map { .strongFraction($0) } ?? .threshold(threshold)
        strongModel = other.strongModel
        weakModel = other.weakModel
        candidates = other.candidates
        budget = nil
        encoder = other.encoder
        ioBound = other.ioBound
        stateDirectory = other.stateDirectory
        timeoutSeconds = other.timeoutSeconds
        explorer = other.explorer
        shadows = other.shadows
        noveltyRule = other.noveltyRule
        plugin = other.plugin
        fingerprint = other.fingerprint
    }

    /// This router with a new threshold, or with the threshold that sends `strongFraction` to the strong model.
    func with(threshold: Double?, strongFraction: Double?) throws(EngineError) -> RouterInstance {
        guard candidates.count == 2 else {
            throw .invalidSetting(
                "router '\(name)' chooses among \(candidates.count) candidates by policy '\(policy.name)'; a threshold or strong_fraction applies to two-candidate routers only"
            )
        }
        if let threshold { return RouterInstance(copying: self, threshold: threshold, strongFraction: nil) }
        guard let strongFraction, let quantiles = description.scoreQuantiles else {
            throw .invalidSetting(
                "router '\(name)': plugin '\(library.name)' publishes no score quantiles for its strong/weak pair, so strong_fraction cannot be set; set threshold instead"
            )
        }
        return RouterInstance(
            copying: self, threshold: Calibration.threshold(strongFraction: strongFraction, sortedScores: quantiles), strongFraction: strongFraction)
    }

    /// Whether this router kept `other`'s plugin instance.
    func sharesPlugin(with other: RouterInstance) -> Bool { plugin === other.plugin }

    /// Identifies a file's version; a rewritten (renamed-into-place) file gets a new inode and mtime.
    private static func stamp(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return "\(path): missing" }
        return "\(path): \(info.st_size)-\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)-\(info.st_ino)"
    }

    /// Folds outcomes into the plugin's learned state and publishes them (online learning).
    func learn(_ outcomes: [LearnedOutcome]) throws(PluginScoreError) { try plugin.learn(outcomes) }

    /// Forgets what the plugin learned online.
    func forget() throws(PluginScoreError) { try plugin.forget() }

    /// Scores prompts; each score is P(strong wins) in [0, 1]. `embeddings`, one
    /// per prompt, are required when the instance has an encoder.
    public func score(_ prompts: [String], embeddings: [[Float]]? = nil) throws(PluginScoreError) -> [Double] {
        try plugin.score(prompts, embeddings: embeddings)
    }

    /// Scores one prompt.
    public func score(_ prompt: String, embedding: [Float]? = nil) throws(PluginScoreError) -> Double {
        try plugin.score(prompt, embedding: embedding)
    }

    /// `draws` draws of one prompt's predictions from the router's posterior (a plugin that samples one).
    public func samples(_ prompt: String, embedding: [Float]? = nil, draws: Int, seed: UInt64) throws(PluginScoreError) -> [(
        score: Double, qualities: [Double]
    )] {
        try plugin.samples(prompt, embedding: embedding, draws: draws, seed: seed)
    }

    /// How familiar one prompt is to the router, in [0, 1] (a plugin that judges familiarity).
    public func familiarity(_ prompt: String, embedding: [Float]? = nil) throws(PluginScoreError) -> Double {
        try plugin.familiarity(prompt, embedding: embedding)
    }

    /// Each candidate's predicted quality on one prompt, in ``candidates`` order. For a plugin that
    /// predicts only P(strong wins) = p, the two candidates' qualities are their win probabilities p and 1 − p.
    public func qualities(_ prompt: String, embedding: [Float]? = nil) throws(PluginScoreError) -> [Double] {
        guard predictsQualities else {
            let score = try plugin.score(prompt, embedding: embedding)
            return [score, 1 - score]
        }
        return try plugin.qualities(prompt, embedding: embedding)
    }

    private static func json(_ params: [String: ParamValue]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(params)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}
