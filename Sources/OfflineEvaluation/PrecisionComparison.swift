import RouterConfig
import RouterEngine
import RouterEvaluation
import RouterVocabulary
import TextEncoder

/// One router on one benchmark with its encoder in a reduced precision, against fp32: how far
/// the embeddings move, how many decisions at the router's threshold stay the same, and APGR in both.
public struct PrecisionComparison: Sendable {
    public var lowestCosine: Float
    public var meanCosine: Float
    /// The share of prompts decided the same at the router's threshold.
    public var sameDecision: Double
    public var threshold: Double
    public var apgrFP32: Double
    public var apgrReduced: Double

    /// The routers' encoders loaded again in `precision`, by encoder name; each must be fp32 in the config.
    public static func reducedEncoders(_ precision: EncoderPrecision, for routers: [RouterInstance]) throws -> [String: SentenceEncoder] {
        var encoders: [String: SentenceEncoder] = [:]
        for instance in routers.compactMap(\.encoder) where encoders[instance.config.name] == nil {
            guard instance.encoder.precision == .fp32 else {
                throw EvaluationRunError(
                    "--precision compares with fp32, but encoder '\(instance.config.name)' runs in \(instance.encoder.precision.rawValue)")
            }
            do {
                encoders[instance.config.name] = try SentenceEncoder.load(
                    modelDirectory: instance.encoder.modelDirectory, kernel: instance.encoder.kernel, precision: .fixed(precision))
            } catch {
                throw EvaluationRunError("encoder '\(instance.config.name)': \(error)")
            }
        }
        return encoders
    }

    /// Compares `router` on `benchmark` with `encoder` (the reduced one) against its fp32 `reference`
    /// scores and curve (the evaluation's own).
    public init(
        _ benchmark: Benchmark, router: RouterInstance, encoder: SentenceEncoder, policy: LongTextPolicy,
        reference: (scores: [Double], curve: RoutingCurve)
    ) throws {
        guard let fp32Encoder = router.encoder?.encoder else { throw EvaluationRunError("router '\(router.name)' has no encoder to compare") }
        let fp32 = try InProcessRouters.embed(benchmark.prompts, with: fp32Encoder, policy: policy)
        let low = try InProcessRouters.embed(benchmark.prompts, with: encoder, policy: policy)
        let cosines = zip(fp32, low).map { PrecisionGate.cosine($0.0, $0.1) }
        let lowScores = try InProcessRouters.score(benchmark.prompts, with: router, embeddings: low)
        threshold = router.threshold ?? 0.5
        let same = zip(reference.scores, lowScores).filter { [threshold] in ($0.0 >= threshold) == ($0.1 >= threshold) }.count
        sameDecision = Double(same) / Double(max(1, benchmark.prompts.count))
        lowestCosine = cosines.min() ?? 1
        meanCosine = cosines.reduce(0, +) / Float(max(1, cosines.count))
        apgrFP32 = reference.curve.apgr
        apgrReduced = RoutingCurve(scores: lowScores, strong: benchmark.strong, weak: benchmark.weak).apgr
    }
}
