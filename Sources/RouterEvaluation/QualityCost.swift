import Foundation
import RouterConfig
import StableHash

/// A point on the quality–cost plane: mean cost per prompt (USD) and mean quality.
public struct CostQuality: Sendable, Hashable {
    public var cost: Double
    public var quality: Double
    /// What the point is: a model's name, or the λ that made it.
    public var label: String

    public init(cost: Double, quality: Double, label: String = "") {
        self.cost = cost
        self.quality = quality
        self.label = label
    }
}

/// RouterBench-style evaluation of routing among many models: each prompt has every
/// candidate's true quality and cost, a router predicts qualities, and a sweep of λ in
/// "predicted quality − λ × cost" draws the router's quality–cost curve.
///
/// AIQ (average improvement in quality) is the area under a curve's non-decreasing convex
/// hull over the single models' cost range, divided by that range: the mean quality the
/// router offers across the budgets the single models span. Two operating points on a hull
/// are reachable by mixing them at random, which is why hulls, not raw points, are compared.
public struct QualityCostEvaluation: Sendable {
    public let models: [String]
    /// `quality[i][j]`, `cost[i][j]`: prompt i answered by model j.
    public let quality: [[Double]]
    public let cost: [[Double]]

    public init(models: [String], quality: [[Double]], cost: [[Double]]) {
        precondition(quality.count == cost.count && quality.allSatisfy { $0.count == models.count })
        self.models = models
        self.quality = quality
        self.cost = cost
    }

    public var promptCount: Int { quality.count }

    /// Each model alone.
    public var singleModels: [CostQuality] {
        models.indices.map { j in
            CostQuality(
                cost: cost.reduce(0) { $0 + $1[j] } / Double(promptCount), quality: quality.reduce(0) { $0 + $1[j] } / Double(promptCount),
                label: models[j])
        }
    }

    /// The cheapest model with the best quality on each prompt: what a perfect router achieves.
    public var oracle: CostQuality {
        var (totalCost, totalQuality) = (0.0, 0.0)
        for i in 0..<promptCount {
            let best = quality[i].max() ?? 0
            let j = models.indices.filter { quality[i][$0] == best }.min { cost[i][$0] < cost[i][$1] }!
            totalCost += cost[i][j]
            totalQuality += best
        }
        return CostQuality(cost: totalCost / Double(promptCount), quality: totalQuality / Double(promptCount), label: "oracle")
    }

    /// λ values from 0 (best predicted quality) to large enough that price alone decides.
    public static let lambdas: [Double] = [0] + (0...240).map { pow(10, -2 + Double($0) / 30) }

    /// The router's operating points: for each λ, the mean true cost and quality of choosing
    /// argmax predicted quality − λ × cost on every prompt (``PolicyRule``, as the daemon decides).
    public func sweep(predicted: [[Double]], lambdas: [Double] = lambdas) -> [CostQuality] {
        precondition(predicted.count == promptCount)
        return lambdas.map { lambda in
            var (totalCost, totalQuality) = (0.0, 0.0)
            for i in 0..<promptCount {
                let best = PolicyRule.bestUtility(qualities: predicted[i], costs: cost[i], lambda: lambda)
                totalCost += cost[i][best]
                totalQuality += quality[i][best]
            }
            return CostQuality(cost: totalCost / Double(promptCount), quality: totalQuality / Double(promptCount), label: "λ \(lambda)")
        }
    }

    /// The non-decreasing upper convex hull of `points`, cheapest first: the best quality
    /// reachable at each cost by mixing operating points, never falling as cost rises.
    public static func hull(_ points: [CostQuality]) -> [CostQuality] {
        let sorted = points.sorted { ($0.cost, -$0.quality) < ($1.cost, -$1.quality) }
        var hull: [CostQuality] = []
        for point in sorted {
            // Only points that improve quality extend a non-decreasing frontier.
            if let last = hull.last, point.quality <= last.quality { continue }
            while hull.count >= 2 {
                let (a, b) = (hull[hull.count - 2], hull[hull.count - 1])
                // Drop b when it lies on or below the chord from a to the new point.
                let cross = (b.cost - a.cost) * (point.quality - a.quality) - (b.quality - a.quality) * (point.cost - a.cost)
                if cross >= 0 { hull.removeLast() } else { break }
            }
            hull.append(point)
        }
        return hull
    }

    /// The hull's quality at `cost`: interpolated between its points, flat beyond its ends.
    public static func quality(at cost: Double, on hull: [CostQuality]) -> Double {
        guard let first = hull.first, let last = hull.last else { return 0 }
        if cost <= first.cost { return first.quality }
        if cost >= last.cost { return last.quality }
        let upper = hull.firstIndex { $0.cost >= cost }!
        let (a, b) = (hull[upper - 1], hull[upper])
        return a.quality + (b.quality - a.quality) * (cost - a.cost) / (b.cost - a.cost)
    }

    /// The cheapest cost at which the hull reaches `quality`, or nil if it never does.
    public static func cost(toReach target: Double, on hull: [CostQuality]) -> Double? {
        guard let index = hull.firstIndex(where: { $0.quality >= target }) else { return nil }
        if index == 0 { return hull[0].cost }
        let (a, b) = (hull[index - 1], hull[index])
        return a.cost + (b.cost - a.cost) * (target - a.quality) / (b.quality - a.quality)
    }

    /// AIQ of a hull over the cost range [low, high]: its mean quality across that range.
    public static func aiq(_ hull: [CostQuality], from low: Double, to high: Double) -> Double {
        precondition(high > low)
        // Integrate the piecewise-linear hull (flat beyond its ends) exactly.
        var breakpoints = [low] + hull.map(\.cost).filter { $0 > low && $0 < high } + [high]
        breakpoints.sort()
        var area = 0.0
        for (a, b) in zip(breakpoints, breakpoints.dropFirst()) {
            area += (quality(at: a, on: hull) + quality(at: b, on: hull)) / 2 * (b - a)
        }
        return area / (high - low)
    }

    /// The summary figures of one router (or of the single models' hull).
    public struct Summary: Sendable {
        public var aiq: Double
        /// The quality the hull reaches at the reference model's cost.
        public var qualityAtReferenceCost: Double
        /// The cost at which the hull matches the reference model's quality, as a share of its cost; nil if never.
        public var costToMatchReference: Double?
        public var hull: [CostQuality]
    }

    /// The figures for `points` against the single models' cost range and a reference model
    /// (by default the best single model).
    public func summary(_ points: [CostQuality], reference: String? = nil) -> Summary {
        let singles = singleModels
        let low = singles.map(\.cost).min()!
        let high = singles.map(\.cost).max()!
        let referencePoint = singles.first { $0.label == reference } ?? singles.max { ($0.quality, -$0.cost) < ($1.quality, -$1.cost) }!
        let hull = Self.hull(points)
        return Summary(
            aiq: Self.aiq(hull, from: low, to: high), qualityAtReferenceCost: Self.quality(at: referencePoint.cost, on: hull),
            costToMatchReference: Self.cost(toReach: referencePoint.quality, on: hull).map { $0 / referencePoint.cost }, hull: hull)
    }

    /// The λ of a sweep (`points`, from ``sweep(predicted:lambdas:)`` over `lambdas`) that reaches
    /// `target` quality at the least mean cost: one operating point the daemon can be configured
    /// with, unlike a point on the hull between two λs; nil if no λ reaches it. How the shipped
    /// `quality` router's λ is chosen, on held-out training prompts.
    public static func cheapestLambda(_ points: [CostQuality], lambdas: [Double] = lambdas, reaching target: Double) -> (
        lambda: Double, point: CostQuality
    )? {
        precondition(points.count == lambdas.count)
        return zip(lambdas, points).filter { $0.1.quality >= target }.min { $0.1.cost < $1.1.cost }.map { (lambda: $0.0, point: $0.1) }
    }

    /// The best single model: the reference of ``summary(_:reference:)``.
    public var bestSingleModel: CostQuality { singleModels.max { ($0.quality, -$0.cost) < ($1.quality, -$1.cost) }! }

    /// A bootstrap 95% interval of a router's AIQ, resampling prompts with a fixed seed.
    public func aiqInterval(predicted: [[Double]], resamples: Int = 200, seed: UInt64 = 1) -> (low: Double, high: Double) {
        var generator = SplitMix64(seed: seed)
        var values: [Double] = []
        let lambdas = stride(from: 0, to: Self.lambdas.count, by: 4).map { Self.lambdas[$0] }
        for _ in 0..<resamples {
            let rows = (0..<promptCount).map { _ in Int(generator.next() % UInt64(promptCount)) }
            let sample = QualityCostEvaluation(models: models, quality: rows.map { quality[$0] }, cost: rows.map { cost[$0] })
            values.append(sample.summary(sample.sweep(predicted: rows.map { predicted[$0] }, lambdas: lambdas)).aiq)
        }
        values.sort()
        return (values[Int(Double(resamples) * 0.025)], values[min(resamples - 1, Int(Double(resamples) * 0.975))])
    }
}
