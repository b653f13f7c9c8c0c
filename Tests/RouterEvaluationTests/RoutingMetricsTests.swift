import Testing

@testable import RouterEvaluation

/// Four prompts, (strong, weak) correct: A (1,0), B (1,1), C (0,0), D (1,0).
/// Strong quality 0.75, weak 0.25. Expected values worked out by hand.
@Suite struct RoutingMetricsTests {
    let strong: [Double] = [1, 1, 0, 1]
    let weak: [Double] = [0, 1, 0, 0]

    @Test func aPerfectRouter() throws {
        // Scores rank A and D (where only strong is right) first, then B, then C.
        let curve = RoutingCurve(scores: [0.9, 0.2, 0.1, 0.8], strong: strong, weak: weak)
        #expect(curve.strongQuality == 0.75 && curve.weakQuality == 0.25)
        // Points (strong share, quality): (0, .25) (.25, .5) (.5, .75) (.75, .75) (1, .75): area 0.625.
        #expect(abs(curve.auc - 0.625) < 1e-12)
        #expect(abs(curve.apgr - 0.75) < 1e-12)
        #expect(abs(try #require(curve.callPerformanceThreshold(0.5)) - 25) < 1e-9)
        #expect(abs(try #require(curve.callPerformanceThreshold(0.8)) - 40) < 1e-9)
        #expect(curve.points.first?.strongPercent == 100)
        #expect(curve.points.last?.strongPercent == 0, "the top edge uses >, so nothing is routed strong")
    }

    @Test func aReversedRouter() throws {
        let curve = RoutingCurve(scores: [0.1, 0.8, 0.9, 0.2], strong: strong, weak: weak)
        // (0, .25) (.25, .25) (.5, .25) (.75, .5) (1, .75): area 0.375.
        #expect(abs(curve.auc - 0.375) < 1e-12)
        #expect(abs(curve.apgr - 0.25) < 1e-12)
        #expect(abs(try #require(curve.callPerformanceThreshold(0.5)) - 75) < 1e-9)
    }

    @Test func tiedScoresAreTheRandomBaseline() throws {
        // Every threshold equals the common score: ≥ routes all strong, the top edge's > none.
        let curve = RoutingCurve(scores: [0.5, 0.5, 0.5, 0.5], strong: strong, weak: weak)
        #expect(Set(curve.points.map(\.strongPercent)) == [0, 100])
        #expect(abs(curve.apgr - 0.5) < 1e-12)
        #expect(abs(try #require(curve.callPerformanceThreshold(0.5)) - 50) < 1e-9)
    }

    @Test func randomScoresAverageToOneHalf() {
        var generator = Xorshift(state: 12345)
        let n = 4000
        let strongQuality = (0..<n).map { _ in generator.next() % 10 < 7 ? 1.0 : 0.0 }
        let weakQuality = (0..<n).map { _ in generator.next() % 10 < 4 ? 1.0 : 0.0 }
        var total = 0.0
        for _ in 0..<20 {
            let scores = (0..<n).map { _ in Double(generator.next() % 1_000_000) / 1_000_000 }
            total += RoutingCurve(scores: scores, strong: strongQuality, weak: weakQuality).apgr
        }
        #expect(abs(total / 20 - 0.5) < 0.02)
    }

    /// The seeded sweep centres on 0.5, its spread shrinks as the benchmark grows (about as
    /// 1/√n), and the same seeds give the same figures.
    @Test func theRandomSpreadCentresOnOneHalfAndNarrowsWithMorePrompts() {
        var generator = Xorshift(state: 99)
        func benchmark(_ n: Int) -> (strong: [Double], weak: [Double]) {
            ((0..<n).map { _ in generator.next() % 10 < 7 ? 1.0 : 0.0 }, (0..<n).map { _ in generator.next() % 10 < 4 ? 1.0 : 0.0 })
        }
        let small = benchmark(100)
        let large = benchmark(6400)
        let wide = RandomRoutingSpread(seeds: 200, strong: small.strong, weak: small.weak)
        let narrow = RandomRoutingSpread(seeds: 200, strong: large.strong, weak: large.weak)
        #expect(abs(wide.meanAPGR - 0.5) < 3 * wide.standardDeviation / 200.0.squareRoot(), "\(wide.meanAPGR) ± \(wide.standardDeviation)")
        #expect(abs(narrow.meanAPGR - 0.5) < 3 * narrow.standardDeviation / 200.0.squareRoot() + 0.002)
        // 64 times the prompts: about an eighth of the deviation.
        let ratio = wide.standardDeviation / narrow.standardDeviation
        #expect(ratio > 5 && ratio < 12, "\(wide.standardDeviation) / \(narrow.standardDeviation)")
        let again = RandomRoutingSpread(seeds: 200, strong: small.strong, weak: small.weak)
        #expect(again.meanAPGR == wide.meanAPGR && again.standardDeviation == wide.standardDeviation)
    }

    @Test func quantilesInterpolateLikePandas() {
        let sorted = [0.1, 0.2, 0.8, 0.9]
        #expect(abs(RoutingCurve.quantile(sorted, 0.1) - 0.13) < 1e-12)
        #expect(abs(RoutingCurve.quantile(sorted, 0.5) - 0.5) < 1e-12)
        #expect(RoutingCurve.quantile(sorted, 1) == 0.9)
    }
}

struct Xorshift {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}
