import Foundation
import SafeTensors
import SimilarityRanking
import StableHash

/// What one `sw_ranking` publish costs with a given amount of learned state, step by step, in
/// this process: what the plugin's `learn` does with a batch of outcomes (fold them into a copy
/// of the state, build the index it scores with, write the state durably).
///
/// The learned prompts are synthetic (random unit embeddings, one quality for each of two models),
/// since only their number matters to the cost. It also times what learning costs a decision:
/// scoring random queries with the learned state against the base index alone, side by side.
public struct PublishTiming: Sendable {
    public var index: String
    public var learnedPrompts: Int
    public var batch = 100
    public var publishes = 10
    /// The router's `learned_anchors` (0: every learned prompt its own row).
    public var anchors = 1024
    /// Queries scored for the decision timing.
    public var queries = 300
    public var folder: String

    public init(index: String, learnedPrompts: Int, folder: String) {
        self.index = index
        self.learnedPrompts = learnedPrompts
        self.folder = folder
    }

    /// Median milliseconds per step over the publishes.
    public struct Result: Sendable {
        public var fold: Double
        public var build: Double
        public var write: Double
        public var total: Double
        public var stateBytes: Int
        /// Rows the learned state scores as.
        public var learnedRows: Int
        /// Median microseconds to score one query (the shipped router's settings) on the base
        /// index alone, and with the learned state.
        public var scoreBase: Double
        public var scoreLearned: Double
    }

    public func run() throws -> Result {
        let base = try RankingIndex(file: try SafeTensorsFile(path: index))
        var random = SplitMix64(seed: 7)
        func embedding() -> [Float] { (0..<base.dimension).map { _ in random.gaussian() } }
        var learned = LearnedRanking(models: base.models, dimension: base.dimension, maxAnchors: anchors)
        let settings = RankingSettings(gamma: 1, neighbors: 100, weightUnit: .prompt)
        for prompt in 0..<learnedPrompts {
            let vector = embedding()
            for model in 0..<2 { try learned.fold(prompt: "learned \(prompt)", embedding: vector, model: model, outcome: .pointwise(random.unit())) }
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let file = folder + "/learned.safetensors"
        var steps: [(fold: Double, build: Double, write: Double)] = []
        for publish in 0..<publishes {
            let outcomes = (0..<batch).map { item in (prompt: "new \(publish) \(item)", embedding: embedding(), quality: random.unit()) }
            let start = ContinuousClock.now
            var next = learned
            for outcome in outcomes {
                try next.fold(prompt: outcome.prompt, embedding: outcome.embedding, model: 0, outcome: .pointwise(outcome.quality))
            }
            let folded = ContinuousClock.now
            let ranker = SimilarityRanker(index: try next.appended(to: base, weightUnit: settings.weightUnit), settings: settings)
            let built = ContinuousClock.now
            try next.write(to: file)
            let written = ContinuousClock.now
            precondition(ranker.index.promptCount == base.promptCount + next.anchorCount)
            steps.append((Self.milliseconds(folded - start), Self.milliseconds(built - folded), Self.milliseconds(written - built)))
            learned = next
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let bytes = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        // Decisions: the same queries, alternating between the two rankers so that drift on a
        // shared machine falls on both alike.
        let frozen = SimilarityRanker(index: base, settings: settings)
        let learning = SimilarityRanker(index: try learned.appended(to: base, weightUnit: settings.weightUnit), settings: settings)
        var times: (base: [Double], learned: [Double]) = ([], [])
        for _ in 0..<queries {
            let query = embedding()
            for (ranker, isBase) in [(frozen, true), (learning, false)] {
                let start = ContinuousClock.now
                let ratings = query.withUnsafeBufferPointer { ranker.ratings(embedding: $0) }
                let micros = Self.milliseconds(ContinuousClock.now - start) * 1000
                precondition(ratings.allSatisfy(\.isFinite))
                if isBase { times.base.append(micros) } else { times.learned.append(micros) }
            }
        }
        return Result(
            fold: median(steps.map(\.fold)), build: median(steps.map(\.build)), write: median(steps.map(\.write)),
            total: median(steps.map { $0.fold + $0.build + $0.write }), stateBytes: bytes, learnedRows: learned.anchorCount,
            scoreBase: median(times.base), scoreLearned: median(times.learned))
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }
}
