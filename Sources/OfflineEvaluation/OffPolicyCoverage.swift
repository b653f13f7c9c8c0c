import Foundation
import OffPolicy
import RouterEngine
import RouterTraining
import StableHash
import TrainingRows

/// `routerctl bench-offpolicy`: how often the off-policy intervals cover the truth, on public data
/// where every model's outcome is known.
///
/// The population is the held-out share of a quality file's prompts rated for both models of a
/// pair. Each router of the config decides every prompt once, in this process, at its greedy
/// choice; its true value is then the population's mean quality of the models it chose. Each
/// replay samples prompts with replacement, logs them as an ε-greedy deployment of the logging
/// router would (the greedy choice with probability 1 − ε, the other model with ε, the
/// propensities as routerd logs them), reveals only the chosen model's outcome, and estimates
/// every target from that log alone.
public struct OffPolicyCoverage {
    public var file: String
    /// The file's models, in the order of a router's two tiers.
    public var strong: String
    public var weak: String
    public var logging: String
    public var targets: [String]
    public var epsilon = 0.2
    public var replays = 100
    public var sample = 1000
    public var resamples = 500
    public var confidence = 0.95
    public var testShare = PromptSplit.defaultTestShare
    public var progress: CachedEmbeddings.Progress = { _, _, _ in }

    public init(file: String, strong: String, weak: String, logging: String, targets: [String]) {
        self.file = file
        self.strong = strong
        self.weak = weak
        self.logging = logging
        self.targets = targets
    }

    public struct Row: Sendable {
        public var router: String
        public var truth: Double
        /// The share of the logging router's greedy choices the target makes too.
        public var agreement: Double
        /// Per estimator (ips, snips, dr): the share of replays whose interval covered the truth,
        /// the mean interval width, and the root mean squared error of the point estimate.
        public var coverage: [String: Double]
        public var width: [String: Double]
        public var rmse: [String: Double]
    }

    public struct Report: Sendable {
        public var population: Int
        public var rows: [Row]
    }

    public func run(engine: Engine) throws -> Report {
        let records = try QualityFile.read(file).filter { PromptSplit.isTest($0.prompt, share: testShare) }
        let rated = records.compactMap { record -> (prompt: String, strong: Double, weak: Double)? in
            guard let high = record.quality[strong], let low = record.quality[weak] else { return nil }
            return (record.prompt, high, low)
        }
        guard rated.count >= 100 else {
            throw EvaluationRunError("\(file): \(rated.count) held-out prompts rated for both \(strong) and \(weak); need at least 100")
        }
        let prompts = rated.map(\.prompt)
        // Whether each router sends each prompt to the strong model.
        func choices(_ name: String) throws -> [Bool] {
            let generation = engine.current
            let router = try Engine.router(named: name, in: generation)
            guard router.candidates.count == 2 else {
                throw EvaluationRunError("router '\(name)' has \(router.candidates.count) candidates; this benchmark takes pairs")
            }
            return try InProcessRouters.greedyDecisions(of: prompts, by: router, engine: engine, on: generation, progress: progress)
                .map { $0.tier == .strong }
        }
        func quality(_ index: Int, strong chosen: Bool) -> Double { chosen ? rated[index].strong : rated[index].weak }
        let greedy = try choices(logging)
        let targetChoices = try targets.map(choices)
        let truths = targetChoices.map { chosen in prompts.indices.map { quality($0, strong: chosen[$0]) }.reduce(0, +) / Double(prompts.count) }
        let estimators = ["ips", "snips", "dr"]
        var covered = [[String: Int]](repeating: [:], count: targets.count)
        var widths = [[String: Double]](repeating: [:], count: targets.count)
        var squares = [[String: Double]](repeating: [:], count: targets.count)
        for replay in 0..<replays {
            var random = SplitMix64(seed: UInt64(replay) &+ 1)
            var logged: [LoggedOutcome] = []
            var picks: [[String]] = Array(repeating: [], count: targets.count)
            for row in 0..<sample {
                let index = Int(random.next() % UInt64(prompts.count))
                let explored = random.unit() < epsilon
                let chosen = explored ? !greedy[index] : greedy[index]
                logged.append(
                    LoggedOutcome(
                        decisionID: "\(row)", router: logging, prompt: nil, model: chosen ? strong : weak,
                        quality: quality(index, strong: chosen), propensity: explored ? epsilon : 1 - epsilon))
                for target in targets.indices { picks[target].append(targetChoices[target][index] ? strong : weak) }
            }
            var estimator = OffPolicyEstimator(logged: logged)
            estimator.resamples = resamples
            estimator.confidence = confidence
            estimator.seed = UInt64(replay) &+ 1
            for target in targets.indices {
                let estimate = estimator.estimate(choices: picks[target])
                let intervals: [String: Interval?] = [
                    "ips": estimate.inversePropensity, "snips": estimate.selfNormalised, "dr": estimate.doublyRobust,
                ]
                for name in estimators {
                    guard let interval = intervals[name] ?? nil else { continue }
                    if interval.covers(truths[target]) { covered[target][name, default: 0] += 1 }
                    widths[target][name, default: 0] += (interval.high - interval.low) / Double(replays)
                    squares[target][name, default: 0] += (interval.value - truths[target]) * (interval.value - truths[target]) / Double(replays)
                }
            }
        }
        return Report(
            population: prompts.count,
            rows: targets.indices.map { target in
                Row(
                    router: targets[target], truth: truths[target],
                    agreement: Double(zip(greedy, targetChoices[target]).filter { $0 == $1 }.count) / Double(prompts.count),
                    coverage: Dictionary(uniqueKeysWithValues: estimators.map { ($0, Double(covered[target][$0] ?? 0) / Double(replays)) }),
                    width: widths[target], rmse: squares[target].mapValues { $0.squareRoot() })
            })
    }
}
