import Testing
import TrainingRows

@testable import RouterEvaluation

/// Two models, cheap (cost 1) and dear (cost 3), on two prompts: both right on the first, only
/// dear on the second. Expected values worked out by hand.
@Suite struct QualityCostTests {
    let evaluation = QualityCostEvaluation(models: ["cheap", "dear"], quality: [[1, 1], [0, 1]], cost: [[1, 3], [1, 3]])

    @Test func singleModelsAndTheOracle() {
        #expect(evaluation.singleModels == [CostQuality(cost: 1, quality: 0.5, label: "cheap"), CostQuality(cost: 3, quality: 1, label: "dear")])
        // The cheapest right model on each prompt: cheap, then dear.
        #expect(evaluation.oracle.cost == 2 && evaluation.oracle.quality == 1)
        // The single models' hull runs straight from (1, 0.5) to (3, 1): its mean over [1, 3] is 0.75.
        #expect(abs(evaluation.summary(evaluation.singleModels).aiq - 0.75) < 1e-12)
    }

    @Test func aPerfectRouterReachesTheOracle() throws {
        let summary = evaluation.summary(evaluation.sweep(predicted: evaluation.quality))
        // λ = 0 takes cheap where both are right (ties go to the cheaper) and dear elsewhere: (2, 1);
        // a large λ takes cheap everywhere: (1, 0.5). Area: 0.75 over [1, 2], 1 over [2, 3], over a range of 2.
        #expect(summary.hull.map(\.cost) == [1, 2] && summary.hull.map(\.quality) == [0.5, 1])
        #expect(abs(summary.aiq - 0.875) < 1e-12)
        #expect(summary.qualityAtReferenceCost == 1)
        #expect(abs(try #require(summary.costToMatchReference) - 2.0 / 3) < 1e-12, "dear's quality at two thirds of its cost")
    }

    @Test func aReversedRouterNeverMatchesTheBestModel() {
        let summary = evaluation.summary(evaluation.sweep(predicted: evaluation.quality.map { $0.map { 1 - $0 } }))
        #expect(summary.hull.count == 1 && summary.hull[0].quality == 0.5)
        #expect(summary.aiq == 0.5)
        #expect(summary.costToMatchReference == nil)
    }

    /// Two models: cheap (1) right on half the prompts, dear (10) right on all. With perfect
    /// predictions, every λ below 1/9 sends exactly the prompts cheap gets wrong to dear.
    @Test func theCheapestLambdaReachingATargetIsFound() {
        let evaluation = QualityCostEvaluation(
            models: ["cheap", "dear"], quality: [[1, 1], [1, 1], [0, 1], [0, 1]], cost: Array(repeating: [1, 10], count: 4))
        let points = evaluation.sweep(predicted: evaluation.quality)
        let found = QualityCostEvaluation.cheapestLambda(points, reaching: 1)
        #expect(found?.point.quality == 1 && found?.point.cost == 5.5, "\(String(describing: found))")
        #expect((found?.lambda ?? 1) < 1.0 / 9, "λ = 0 ties break to the cheaper model, so it qualifies too")
        #expect(QualityCostEvaluation.cheapestLambda(points, reaching: 1.01) == nil)
    }

    @Test func theHullIsConvexAndNonDecreasing() {
        let points = [(1.0, 0.2), (2.0, 0.3), (2.0, 0.6), (3.0, 0.65), (4.0, 0.9), (5.0, 0.85), (6.0, 0.95)].map {
            CostQuality(cost: $0.0, quality: $0.1)
        }
        let hull = QualityCostEvaluation.hull(points)
        // (2, 0.3) is dominated, (3, 0.65) lies under the chord from (2, 0.6) to (4, 0.9), (5, 0.85) falls.
        #expect(hull.map(\.cost) == [1, 2, 4, 6])
        #expect(QualityCostEvaluation.quality(at: 3, on: hull) == 0.75)
        #expect(QualityCostEvaluation.quality(at: 10, on: hull) == 0.95, "flat beyond its last point")
        #expect(QualityCostEvaluation.cost(toReach: 0.75, on: hull) == 3)
    }

    @Test func theSplitIsStableAndRoughlyItsShare() {
        let prompts = (0..<10_000).map { "prompt \($0)" }
        let share = Double(prompts.filter { PromptSplit.isTest($0, share: 0.3) }.count) / 10_000
        #expect(abs(share - 0.3) < 0.02)
        // Pinned positions (FNV-1a 64 of the UTF-8 text, mod 10⁶): a change to the hash or the text
        // encoding would move every prompt to another share and silently mix training and test rows.
        #expect(PromptSplit.position("prompt 1") == 0.805744)
        #expect(PromptSplit.position("prompt 3") == 0.062166)
        #expect(PromptSplit.position("hello") == 0.276491)
        #expect(PromptSplit.position("") == 0.656037)
        #expect(PromptSplit.isTest("prompt 3") && PromptSplit.isTest("hello") && !PromptSplit.isTest("prompt 1"))
        #expect(!PromptSplit.isTest("hello", share: 0.25))
        // A band above the test share never overlaps it.
        #expect(prompts.allSatisfy { !(PromptSplit.isTest($0, share: 0.3) && PromptSplit.position($0) >= 0.3) })
    }
}
