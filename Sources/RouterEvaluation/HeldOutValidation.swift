/// Routing quality on prompts a trainer never trained on, as RouteLLM measures it: a quality file
/// read as a strong/weak benchmark, minus the trained prompts, scored by the new weights.
public struct HeldOutValidation: Sendable {
    public var file: String
    /// [strong, weak]
    public var pair: [String]

    public init(file: String, pair: [String]) {
        self.file = file
        self.pair = pair
    }

    public struct Result: Sendable {
        public var curve: RoutingCurve
        public var prompts: Int
    }

    /// The file's prompts as a benchmark for the pair.
    public func benchmark() throws -> Benchmark {
        try BenchmarkLoader.generic(file: file, strong: pair[0], weak: pair[1])
    }

    /// The curve on the file's prompts outside `trained`, or nil with fewer than 10 of them.
    /// `score(prompts, embeddings)` scores them; `embed` embeds them.
    public func evaluate(
        trained: Set<String>, embed: ([String]) throws -> [[Float]], score: (_ prompts: [String], _ embeddings: [[Float]]) throws -> [Double]
    ) throws -> Result? {
        let benchmark = try benchmark()
        let kept = benchmark.prompts.indices.filter { !trained.contains(benchmark.prompts[$0]) }
        guard kept.count >= 10 else { return nil }
        let prompts = kept.map { benchmark.prompts[$0] }
        let scores = try score(prompts, try embed(prompts))
        let curve = RoutingCurve(scores: scores, strong: kept.map { benchmark.strong[$0] }, weak: kept.map { benchmark.weak[$0] })
        return Result(curve: curve, prompts: kept.count)
    }
}
