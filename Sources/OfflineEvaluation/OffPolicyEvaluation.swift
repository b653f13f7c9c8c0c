import Foundation
import Logging
import OffPolicy
import RouterConfig
import RouterEngine
import RouterPluginHost
import RouterTraining
import TextEncoder

/// `routerctl eval --offpolicy`: what the config's routers would have achieved on the decisions
/// a routerd logged, estimated from the outcomes reported for them (``OffPolicyEstimator``),
/// beside the logging policy's own value.
///
/// Each target router decides every logged prompt in this process, through the engine as the
/// daemon would, at its configured policy and without its exploration (its greedy choice).
/// Costs need no estimate: a target's mean expected cost follows from the models it chooses and
/// the catalogue's prices.
public struct OffPolicyEvaluation {
    public var estimator: (inout OffPolicyEstimator) -> Void = { _ in }
    public var progress: CachedEmbeddings.Progress = { _, _, _ in }

    public init() {}

    public struct Report: Sendable {
        public var loggedRouter: String
        public var decisions: Int
        /// Decisions left out because their rows carry only a prompt hash.
        public var withoutPromptText: Int
        /// The logging policy's own mean reported quality.
        public var loggedValue: Interval
        /// Mean expected cost of the logged decisions, when every model has a price.
        public var loggedCost: Double?
        public var targets: [Target]
    }

    public struct Target: Sendable {
        public var router: String
        public var estimate: PolicyEstimate
        public var cost: Double?
        /// How often the target chose each model.
        public var choices: [String: Int]
    }

    /// Evaluates `targets` (router names of `engine`'s config; by default the logged router and
    /// its shadows) on `reading`'s decisions of `loggedRouter` (by default the one router logged).
    public func run(engine: Engine, reading: OutcomeLog.Reading, loggedRouter: String?, targets given: [String]?) throws -> Report {
        let routers = Set(reading.outcomes.map(\.router))
        guard let router = loggedRouter ?? (routers.count == 1 ? routers.first : nil) else {
            throw OffPolicyError(
                routers.isEmpty
                    ? "the log holds no decision with an outcome (rows need a decision_id: report feedback on decisions)"
                    : "the log holds decisions of several routers (\(routers.sorted().joined(separator: ", "))); choose one with --logged-router")
        }
        let ofRouter = reading.outcomes.filter { $0.router == router }
        let logged = ofRouter.filter { $0.prompt != nil }
        guard !logged.isEmpty else {
            throw OffPolicyError(
                ofRouter.isEmpty
                    ? "the log holds no decision of router '\(router)' (it holds: \(routers.sorted().joined(separator: ", ")))"
                    : "the \(ofRouter.count) decisions of '\(router)' carry only prompt hashes: a router needs the prompt's text to decide "
                        + "(set feedback.include_prompt: true in routerd's config)")
        }
        let prompts = logged.map { $0.prompt! }
        let generation = engine.current
        let targets = given ?? [router] + (generation.routers[router]?.shadows ?? [])
        let catalogue = generation.config.models
        func cost(_ model: String, _ prompt: String) -> Double? {
            catalogue.model(named: model)?.expectedCost(promptTokens: ModelCatalogue.estimatedTokens(prompt))
        }
        func meanCost(_ models: [String]) -> Double? {
            var total = 0.0
            for (model, prompt) in zip(models, prompts) {
                guard let each = cost(model, prompt) else { return nil }
                total += each
            }
            return total / Double(models.count)
        }
        var estimator = OffPolicyEstimator(logged: logged)
        self.estimator(&estimator)
        var report = Report(
            loggedRouter: router, decisions: logged.count, withoutPromptText: ofRouter.count - logged.count,
            loggedValue: estimator.loggedValue(), loggedCost: meanCost(logged.map(\.model)), targets: [])
        for name in targets {
            let instance = try Engine.router(named: name, in: generation)
            let choices = try InProcessRouters.greedyDecisions(of: prompts, by: instance, engine: engine, on: generation, progress: progress)
                .map(\.model)
            report.targets.append(
                Target(
                    router: name, estimate: estimator.estimate(choices: choices), cost: meanCost(choices),
                    choices: choices.reduce(into: [:]) { $0[$1, default: 0] += 1 }))
        }
        return report
    }

    /// An engine for evaluation: the config's routers as the daemon builds them, in this process.
    public static func engine(config: String) throws(GenerationError) -> Engine {
        var logger = Logger(label: "routerctl")
        logger.logLevel = .warning
        return try Engine(configFile: config, executableDirectory: PluginLibrary.executableDirectory, logger: logger)
    }
}
