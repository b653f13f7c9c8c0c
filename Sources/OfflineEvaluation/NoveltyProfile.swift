import Foundation
import RouterEngine
import RouterEvaluation
import RouterPluginHost
import RouterTraining

/// `routerctl bench-novelty`: how familiar a benchmark's prompts are to a router, and how well it
/// routes the less and the more familiar half, so an operator can see what a novelty threshold
/// would flag and whether the router is weaker there.
public struct NoveltyProfile {
    public var router: RouterInstance
    public var progress: CachedEmbeddings.Progress = { _, _, _ in }

    public init(router: RouterInstance) {
        self.router = router
    }

    public struct Row: Sendable {
        public var benchmark: String
        public var prompts: Int
        /// Familiarity's 10th, 50th and 90th percentiles over the prompts.
        public var quantiles: [Double]
        /// Shares of prompts below 0.05 and 0.2.
        public var below5: Double
        public var below20: Double
        /// APGR on the less familiar half and the more familiar half (split at the median).
        public var apgrLessFamiliar: Double
        public var apgrMoreFamiliar: Double
    }

    public func run(_ benchmark: Benchmark) throws -> Row {
        guard router.pluginJudgesFamiliarity else {
            throw EvaluationRunError("router '\(router.name)': plugin '\(router.pluginName)' does not judge familiarity (docs/PLUGINS.md)")
        }
        let prompts = benchmark.prompts
        let embeddings = try InProcessRouters.embeddings(of: prompts, for: router, progress: progress)
        let scores = try InProcessRouters.score(prompts, with: router, embeddings: embeddings)
        var familiarity: [Double] = []
        for index in prompts.indices {
            do {
                familiarity.append(try router.familiarity(prompts[index], embedding: embeddings?[index]))
            } catch {
                throw EvaluationRunError("router '\(router.name)': \(error.message)")
            }
        }
        let sorted = familiarity.sorted()
        func quantile(_ q: Double) -> Double { sorted[min(sorted.count - 1, Int(q * Double(sorted.count)))] }
        // Split at the median by rank, ties broken by position, so the halves are equal in size.
        let order = prompts.indices.sorted { (familiarity[$0], $0) < (familiarity[$1], $1) }
        func apgr(_ half: ArraySlice<Int>) -> Double {
            RoutingCurve(scores: half.map { scores[$0] }, strong: half.map { benchmark.strong[$0] }, weak: half.map { benchmark.weak[$0] }).apgr
        }
        let middle = order.count / 2
        return Row(
            benchmark: benchmark.name, prompts: prompts.count, quantiles: [quantile(0.1), quantile(0.5), quantile(0.9)],
            below5: Double(familiarity.filter { $0 < 0.05 }.count) / Double(prompts.count),
            below20: Double(familiarity.filter { $0 < 0.2 }.count) / Double(prompts.count), apgrLessFamiliar: apgr(order[..<middle]),
            apgrMoreFamiliar: apgr(order[middle...]))
    }
}
