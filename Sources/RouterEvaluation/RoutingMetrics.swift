import StableHash

/// RouteLLM's evaluation of a router on a benchmark (routellm/evals).
///
/// Thresholds are the router's score quantiles at 0, 10, …, 100% (linear
/// interpolation, as pandas computes them). At each threshold the prompts
/// scoring ≥ it go to the strong model (> at the last, top edge, so the curve
/// runs from 100% to 0% strong calls), and the benchmark quality of the
/// routed answers is recorded. AUC is the trapezoidal area of quality over
/// the strong share in [0, 1]; APGR = (AUC − weak) / (strong − weak), where
/// the baselines are the flat lines of each model's own quality; CPT(x) is
/// the strong share at which quality first recovers x of the gap, by linear
/// interpolation. A random router scores APGR ≈ 0.5.
public struct RoutingCurve: Sendable {
    public struct Point: Sendable, Hashable {
        public var threshold: Double
        /// Share of prompts routed to the strong model, in percent.
        public var strongPercent: Double
        public var quality: Double
    }

    /// Points in the order RouteLLM generates them (thresholds ascending).
    public let points: [Point]
    public let strongQuality: Double
    public let weakQuality: Double

    /// - Parameters:
    ///   - scores: P(strong wins) for each prompt.
    ///   - strong, weak: each model's quality on each prompt.
    ///   - bins: number of quantile bins (RouteLLM uses 10).
    public init(scores: [Double], strong: [Double], weak: [Double], bins: Int = 10) {
        precondition(scores.count == strong.count && scores.count == weak.count && !scores.isEmpty)
        let sorted = scores.sorted()
        let count = Double(scores.count)
        strongQuality = strong.reduce(0, +) / count
        weakQuality = weak.reduce(0, +) / count
        points = (0...bins).map { index in
            let threshold = Self.quantile(sorted, Double(index) / Double(bins))
            let last = index == bins
            var quality = 0.0
            var strongCalls = 0
            for item in scores.indices {
                let routeStrong = last ? scores[item] > threshold : scores[item] >= threshold
                if routeStrong { strongCalls += 1 }
                quality += routeStrong ? strong[item] : weak[item]
            }
            return Point(threshold: threshold, strongPercent: Double(strongCalls) / count * 100, quality: quality / count)
        }
    }

    /// pandas' default quantile: linear interpolation between closest ranks.
    static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        let position = q * Double(sorted.count - 1)
        let lower = Int(position.rounded(.down))
        let upper = min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - Double(lower))
    }

    /// Points ordered by strong share (then quality), as the area and CPT are computed.
    var ascending: [Point] {
        points.sorted { ($0.strongPercent, $0.quality) < ($1.strongPercent, $1.quality) }
    }

    /// Area under quality over strong share in [0, 1].
    public var auc: Double {
        let ordered = ascending
        return zip(ordered, ordered.dropFirst()).reduce(0) { area, pair in
            area + (pair.1.strongPercent - pair.0.strongPercent) / 100 * (pair.0.quality + pair.1.quality) / 2
        }
    }

    /// Average performance gap recovered: 0.5 for random routing, 1 for an oracle-like curve.
    public var apgr: Double {
        let gap = strongQuality - weakQuality
        return gap == 0 ? .nan : (auc - weakQuality) / gap
    }

    /// The strong-call percentage needed to recover `fraction` of the quality gap, or nil if never reached.
    public func callPerformanceThreshold(_ fraction: Double) -> Double? {
        let target = weakQuality + fraction * (strongQuality - weakQuality)
        let ordered = ascending
        if let first = ordered.first, first.quality >= target { return first.strongPercent }
        for (previous, next) in zip(ordered, ordered.dropFirst()) where next.quality >= target && previous.quality < target {
            return previous.strongPercent + (target - previous.quality) / (next.quality - previous.quality)
                * (next.strongPercent - previous.strongPercent)
        }
        return nil
    }
}

/// The spread of RouteLLM's `random` router on one benchmark: APGR over many seeds.
///
/// A random router's scores are independent and uniform in [0, 1] per prompt (the `random`
/// plugin hashes (seed, prompt) to such a number), so each seed here draws one uniform score per
/// prompt from SplitMix64 and routes with it. One run of an unseeded router is one draw from this
/// distribution: a router beats random on a benchmark only by more than a few of these deviations.
public struct RandomRoutingSpread: Sendable {
    public let seeds: Int
    public let meanAPGR: Double
    /// The sample standard deviation (n − 1) of APGR across seeds.
    public let standardDeviation: Double

    /// APGR of `seeds` seeded uniform routers (seeds 1…N) on a benchmark's per-prompt qualities.
    public init(seeds: Int, strong: [Double], weak: [Double]) {
        precondition(seeds >= 2 && strong.count == weak.count)
        let values = (1...seeds).map { seed in
            var generator = SplitMix64(seed: UInt64(seed))
            let scores = strong.indices.map { _ in Double(generator.next() >> 11) / Double(1 << 53) }
            return RoutingCurve(scores: scores, strong: strong, weak: weak).apgr
        }
        self.seeds = seeds
        let mean = values.reduce(0, +) / Double(seeds)
        meanAPGR = mean
        standardDeviation = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(seeds - 1)).squareRoot()
    }
}
