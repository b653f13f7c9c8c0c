import Foundation
import SafeTensors
import StableHash
import Testing

@testable import SimilarityRanking

@Suite struct BradleyTerryTests {
    @Test func twoModelsRecoverTheirWinRate() {
        // a beat b 3 times, b beat a once: the MLE is P(a beats b) = 3/4.
        let theta = BradleyTerry.fit(wins: [0, 3, 1, 0], models: 2, prior: 1e-6)
        #expect(abs(BradleyTerry.winProbability(theta, 0, 1) - 0.75) < 1e-5)
    }

    @Test func theFitMaximisesTheLikelihoodFoundByGradientAscent() {
        // Three models with intransitive-ish weighted results; compare MM with plain
        // gradient ascent on the same penalised log-likelihood.
        let wins: [Double] = [0, 5, 2.5, 1, 0, 4, 1.5, 2, 0]
        let prior = 0.5
        let theta = BradleyTerry.fit(wins: wins, models: 3, prior: prior)
        var reference = [0.0, 0.0, 0.0]
        for _ in 0..<200_000 {
            var gradient = [0.0, 0.0, 0.0]
            for i in 0..<3 {
                // The virtual tied game against a reference of strength 1 (θ = 0).
                gradient[i] += prior / 2 - prior / (1 + exp(-reference[i]))
                for j in 0..<3 where j != i {
                    let p = 1 / (1 + exp(reference[j] - reference[i]))
                    gradient[i] += wins[i * 3 + j] * (1 - p) - wins[j * 3 + i] * p
                }
            }
            for i in 0..<3 { reference[i] += 0.01 * gradient[i] }
        }
        for i in 0..<3 { #expect(abs(theta[i] - reference[i]) < 1e-4, "model \(i): \(theta[i]) vs \(reference[i])") }
    }

    @Test func sixteenModelsWithLopsidedWeightsReachTheOptimum() {
        // Weights spanning seven orders of magnitude, as γ-weighting makes them: at the
        // optimum every model's gradient (wins minus expected wins, plus the prior's pull) is 0.
        var generator = SystemRandomNumberGenerator()
        let models = 16
        var wins = [Double](repeating: 0, count: models * models)
        for i in 0..<models {
            for j in 0..<models where i != j && Bool.random(using: &generator) {
                wins[i * models + j] = pow(10, Double.random(in: -3...4, using: &generator))
            }
        }
        let prior = 0.01
        let theta = BradleyTerry.fit(wins: wins, models: models, prior: prior)
        let scale = wins.reduce(0, +)
        for i in 0..<models {
            var gradient = prior * (0.5 - 1 / (1 + exp(-theta[i])))
            for j in 0..<models where j != i {
                let p = BradleyTerry.winProbability(theta, i, j)
                gradient += wins[i * models + j] * (1 - p) - wins[j * models + i] * p
            }
            #expect(abs(gradient) / scale < 1e-9, "model \(i): gradient \(gradient)")
        }
    }

    @Test func centresAreTheStrengthsBeforeAnyGameAndTheFitShrinksTowardThem() {
        let centres = [1.0, 0, -1]
        let none = [Double](repeating: 0, count: 9)
        #expect(BradleyTerry.fit(wins: none, models: 3, prior: 1, centres: centres) == centres)
        // c (believed weakest) beats a (believed strongest) twice: the evidence moves them toward
        // each other, and less far than from equal centres.
        var wins = none
        wins[2 * 3 + 0] = 2
        let centred = BradleyTerry.fit(wins: wins, models: 3, prior: 1, centres: centres)
        let flat = BradleyTerry.fit(wins: wins, models: 3, prior: 1)
        #expect(centred[0] < 1 && centred[2] > -1, "\(centred)")
        #expect(centred[0] - centred[2] > flat[0] - flat[2], "the prior still says a is stronger: \(centred) vs \(flat)")
        // The stationary point: the prior's pull toward cᵢ balances the games.
        for i in 0..<3 {
            var gradient = 0.5 - 1 / (1 + exp(-(centred[i] - centres[i])))
            for j in 0..<3 where j != i {
                let p = BradleyTerry.winProbability(centred, i, j)
                gradient += wins[i * 3 + j] * (1 - p) - wins[j * 3 + i] * p
            }
            #expect(abs(gradient) < 1e-9, "model \(i): gradient \(gradient)")
        }
    }

    @Test func aModelThatNeverLostStaysFinite() {
        let theta = BradleyTerry.fit(wins: [0, 4, 0, 0], models: 2, prior: 1)
        #expect(theta.allSatisfy { $0.isFinite })
        #expect(BradleyTerry.winProbability(theta, 0, 1) > 0.8)
    }
}

@Suite struct SimilarityRankerTests {
    /// Two orthogonal prompts: a won on the first, b on the second.
    func index() throws -> RankingIndex {
        try RankingIndex(
            models: ["a", "b"], embeddings: [[1, 0, 0], [0, 1, 0]],
            wins: [.init(prompt: 0, winner: 0, loser: 1, weight: 1), .init(prompt: 1, winner: 1, loser: 0, weight: 1)])
    }

    @Test func battlesWeighGammaToTheOnePlusRelativeSimilarity() throws {
        // Query = prompt 0: s = (1, 0), max s = 1, so the weights are γ² and γ¹ and
        // P(a beats b) = γ² / (γ² + γ) = γ / (γ + 1).
        let ranker = SimilarityRanker(index: try index(), settings: RankingSettings(gamma: 10, prior: 1e-9))
        let p = [Float](arrayLiteral: 1, 0, 0).withUnsafeBufferPointer { ranker.winProbability(embedding: $0, strong: 0, weak: 1) }
        #expect(abs(p - 10.0 / 11.0) < 1e-6)
        // The query's length does not matter: similarities are cosines.
        let scaled = [Float](arrayLiteral: 3, 0, 0).withUnsafeBufferPointer { ranker.winProbability(embedding: $0, strong: 0, weak: 1) }
        #expect(abs(scaled - p) < 1e-9)
    }

    @Test func excludingAPromptDropsItsBattles() throws {
        // Without prompt 0 only b's win remains: b is ahead.
        let ranker = SimilarityRanker(index: try index(), settings: RankingSettings(gamma: 10, prior: 1))
        let p = [Float](arrayLiteral: 1, 0, 0).withUnsafeBufferPointer { ranker.winProbability(embedding: $0, strong: 0, weak: 1, excluding: 0) }
        #expect(p < 0.5)
    }

    @Test func onlyTheNearestNeighboursCount() throws {
        // Prompt 0 (a won) is nearest the query; prompts 1 and 2 (b won each) are farther
        // but outnumber it. Every prompt counting, b is ahead; the one nearest alone, a is.
        let index = try RankingIndex(
            models: ["a", "b"], embeddings: [[1, 0, 0], [0.6, 0.8, 0], [0.6, 0, 0.8]],
            wins: [
                .init(prompt: 0, winner: 0, loser: 1, weight: 1), .init(prompt: 1, winner: 1, loser: 0, weight: 1),
                .init(prompt: 2, winner: 1, loser: 0, weight: 1),
            ])
        let query: [Float] = [1, 0.1, 0]
        func p(_ neighbors: Int?) -> Double {
            let ranker = SimilarityRanker(index: index, settings: RankingSettings(gamma: 1, prior: 1e-6, neighbors: neighbors))
            return query.withUnsafeBufferPointer { ranker.winProbability(embedding: $0, strong: 0, weak: 1) }
        }
        #expect(abs(p(nil) - 1.0 / 3.0) < 1e-4)
        #expect(p(1) > 0.99)
        // The two nearest: one win each way.
        #expect(abs(p(2) - 0.5) < 1e-4)
        #expect(abs(p(3) - p(nil)) < 1e-12)
        // A left-out prompt does not take a neighbour's place: without prompt 0, the nearest is prompt 1 (b won).
        let ranker = SimilarityRanker(index: index, settings: RankingSettings(gamma: 1, prior: 1e-6, neighbors: 1))
        #expect(query.withUnsafeBufferPointer { ranker.winProbability(embedding: $0, strong: 0, weak: 1, excluding: 0) } < 0.01)
    }

    @Test func withPromptUnitsAPromptWithManyBattlesCountsOnce() throws {
        // Prompt 0: a beat b once. Prompt 1, equally similar: b beat a three times and a
        // beat b once (one prompt judged in four battles). Per battle, b leads 3 to 2; per
        // prompt, prompt 1's four battles share one weight, so a leads 1 + 1/4 to 3/4.
        let index = try RankingIndex(
            models: ["a", "b"], embeddings: [[1, 0], [0, 1]],
            wins: [
                .init(prompt: 0, winner: 0, loser: 1, weight: 1), .init(prompt: 1, winner: 1, loser: 0, weight: 3),
                .init(prompt: 1, winner: 0, loser: 1, weight: 1),
            ])
        let query: [Float] = [1, 1]
        func p(_ unit: RankingSettings.WeightUnit) -> Double {
            let ranker = SimilarityRanker(index: index, settings: RankingSettings(gamma: 10, prior: 1e-9, weightUnit: unit))
            return query.withUnsafeBufferPointer { ranker.winProbability(embedding: $0, strong: 0, weak: 1) }
        }
        #expect(abs(p(.battle) - 2.0 / 5.0) < 1e-6)
        #expect(abs(p(.prompt) - 1.25 / 2.0) < 1e-6)
    }

    @Test func storedSettingsReadTheirOwnFormatAndTheOlderPair() throws {
        let settings = RankingSettings(gamma: 10, prior: 1, neighbors: 300, weightUnit: .prompt)
        let json = try settings.stored()
        #expect(json.contains(#""weight_unit":"prompt""#))
        #expect(RankingSettings.decodeStored(json) == settings)
        // Indexes written before neighbours and weight units stored [gamma, prior].
        #expect(RankingSettings.decodeStored("[10000, 1]") == RankingSettings(gamma: 10000, prior: 1))
        #expect(RankingSettings.decodeStored("[10000, 1, 5]") == nil)
    }

    @Test func quickselectFindsTheKthLargest() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let values = (0..<Int.random(in: 1...40, using: &generator)).map { _ in Float(Int.random(in: 0..<10, using: &generator)) }
            let k = Int.random(in: 1...values.count, using: &generator)
            var scratch = values
            #expect(SimilarityRanker.largest(k, of: &scratch) == values.sorted(by: >)[k - 1], "\(values), k \(k)")
        }
    }

    @Test func anIndexRoundTripsThroughItsFile() throws {
        let path = NSTemporaryDirectory() + "index-\(UUID().uuidString).safetensors"
        defer { unlink(path) }
        let original = try RankingIndex(
            models: ["a", "b", "c"], embeddings: [[1, 0], [0.6, 0.8]],
            wins: [
                .init(prompt: 1, winner: 2, loser: 0, weight: 0.5), .init(prompt: 0, winner: 0, loser: 1, weight: 1),
                .init(prompt: 0, winner: 0, loser: 1, weight: 1),
            ])
        try original.write(to: path, metadata: ["encoder": "test"])
        let read = try RankingIndex(file: try SafeTensorsFile(path: path))
        #expect(read.models == ["a", "b", "c"])
        #expect(read.promptCount == 2)
        // Duplicate (prompt, winner, loser) entries were summed, and wins are sorted by prompt.
        #expect(read.wins == [.init(prompt: 0, winner: 0, loser: 1, weight: 2), .init(prompt: 1, winner: 2, loser: 0, weight: 0.5)])
        #expect(read.promptStart == [0, 1, 2])
    }

    @Test func aFileThatIsNotAnIndexIsRefusedWithItsFormat() throws {
        let path = NSTemporaryDirectory() + "notindex-\(UUID().uuidString).safetensors"
        defer { unlink(path) }
        try SafeTensorsWriter.write([.init(name: "P", shape: [1], values: [1])], metadata: ["format": "llm-router.mf/1"], to: path)
        let error = #expect(throws: RankingIndexError.self) { try RankingIndex(file: try SafeTensorsFile(path: path)) }
        #expect(error?.message.contains("not an sw_ranking index (metadata 'format' is 'llm-router.mf/1'") == true, "\(String(describing: error))")
        #expect(error?.message.contains("routerctl train sw_ranking") == true)
    }

    @Test func aWinOutsideTheIndexIsRefused() throws {
        let path = NSTemporaryDirectory() + "badindex-\(UUID().uuidString).safetensors"
        defer { unlink(path) }
        try SafeTensorsWriter.write(
            [.init(name: "embeddings", shape: [1, 2], values: [1, 0]), .init(name: "wins", shape: [1, 4], values: [0, 0, 5, 1])],
            metadata: ["format": RankingIndex.format, "models": #"["a","b"]"#], to: path)
        let error = #expect(throws: RankingIndexError.self) { try RankingIndex(file: try SafeTensorsFile(path: path)) }
        #expect(error?.message.contains("row 0 of 'wins'") == true, "\(String(describing: error))")
    }
}

@Suite struct LearnedRankingTests {
    static func probability(_ ranker: SimilarityRanker, _ query: [Float]) -> Double {
        query.withUnsafeBufferPointer { ranker.winProbability(embedding: $0, strong: 0, weak: 1) }
    }

    /// Folding outcomes online and appending them to the index scores exactly as an index built
    /// offline from the same battles: the online path is the offline maths, not an approximation.
    @Test func learnedOutcomesScoreLikeTheSameBattlesIndexedOffline() throws {
        let base = try RankingIndex(
            models: ["a", "b", "c"], embeddings: [[1, 0, 0], [0, 1, 0]],
            wins: [.init(prompt: 0, winner: 0, loser: 1, weight: 1), .init(prompt: 1, winner: 1, loser: 0, weight: 1)])
        var learned = LearnedRanking(models: base.models, dimension: 3)
        try learned.fold(prompt: "x", embedding: [0, 0, 2], model: 1, outcome: .pairwise(against: 0, score: 1))
        try learned.fold(prompt: "x", embedding: [0, 0, 2], model: 2, outcome: .pairwise(against: 0, score: 0.5))
        // Pointwise qualities pair up per prompt: b 0.2, then a 0.9 (a beats b), then c 0.9 (ties a, beats b).
        try learned.fold(prompt: "y", embedding: [0, 1, 1], model: 1, outcome: .pointwise(0.2))
        #expect(learned.winCount == 5, "a lone quality plays par: a win of 0.2 and a loss of 0.8")
        try learned.fold(prompt: "y", embedding: [0, 1, 1], model: 0, outcome: .pointwise(0.9))
        try learned.fold(prompt: "y", embedding: [0, 1, 1], model: 2, outcome: .pointwise(0.9))
        #expect(learned.promptCount == 2 && learned.events == 5)
        let online = SimilarityRanker(index: try base.adding(model: LearnedRanking.par).appending(try #require(try learned.index())))
        // The one-pass build a router publishes with is the same index, win for win.
        let published = try learned.appended(to: base)
        #expect(published.models == online.index.models && published.embeddings == online.index.embeddings)
        #expect(published.promptStart == online.index.promptStart && published.wins == online.index.wins)
        // Outcomes repeated on a prompt are summed, not appended: scoring it costs the same.
        var repeated = learned
        for _ in 0..<50 { try repeated.fold(prompt: "y", embedding: [0, 1, 1], model: 1, outcome: .pointwise(0.2)) }
        #expect(try repeated.appended(to: base).wins.count == published.wins.count)

        // Par (model 3) is the virtual opponent of each quality: b 0.2 wins 0.2 and loses 0.8; a and c at 0.9.
        let offline = SimilarityRanker(
            index: try RankingIndex(
                models: base.models + [LearnedRanking.par], embeddings: [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]],
                wins: [
                    .init(prompt: 0, winner: 0, loser: 1, weight: 1), .init(prompt: 1, winner: 1, loser: 0, weight: 1),
                    .init(prompt: 2, winner: 1, loser: 0, weight: 1), .init(prompt: 2, winner: 2, loser: 0, weight: 0.5),
                    .init(prompt: 2, winner: 0, loser: 2, weight: 0.5), .init(prompt: 3, winner: 0, loser: 1, weight: 1),
                    .init(prompt: 3, winner: 2, loser: 1, weight: 1), .init(prompt: 3, winner: 2, loser: 0, weight: 0.5),
                    .init(prompt: 3, winner: 0, loser: 2, weight: 0.5),
                    .init(prompt: 3, winner: 1, loser: 3, weight: 0.2), .init(prompt: 3, winner: 3, loser: 1, weight: 0.8),
                    .init(prompt: 3, winner: 0, loser: 3, weight: 0.9), .init(prompt: 3, winner: 3, loser: 0, weight: 0.1),
                    .init(prompt: 3, winner: 2, loser: 3, weight: 0.9), .init(prompt: 3, winner: 3, loser: 2, weight: 0.1),
                ]))
        for query: [Float] in [[1, 0, 0], [0, 0, 1], [0.3, 0.5, 0.8]] {
            let (a, b) = (Self.probability(online, query), Self.probability(offline, query))
            // Equal up to rounding: learned rows are kept at Float16 precision, as index files keep theirs.
            #expect(abs(a - b) < 1e-3, "\(query): online \(a), offline \(b)")
        }
        // And it moved the ranking where it was taught: at prompt x, taught only x's outcomes, b now beats a.
        var onlyX = LearnedRanking(models: base.models, dimension: 3)
        try onlyX.fold(prompt: "x", embedding: [0, 0, 2], model: 1, outcome: .pairwise(against: 0, score: 1))
        try onlyX.fold(prompt: "x", embedding: [0, 0, 2], model: 2, outcome: .pairwise(against: 0, score: 0.5))
        let taughtX = SimilarityRanker(index: try base.adding(model: LearnedRanking.par).appending(try #require(try onlyX.index())))
        #expect(Self.probability(SimilarityRanker(index: base), [0, 0, 1]) == 0.5)
        #expect(Self.probability(taughtX, [0, 0, 1]) < 0.5)
    }

    /// One model's result per prompt teaches on its own (issue 24): qualities reported for only the
    /// model that answered move the ranking toward the model that succeeds near the query.
    @Test func oneSidedQualitiesTeachThroughPar() throws {
        let base = try RankingIndex(
            models: ["strong", "weak"], embeddings: [[1, 0], [0, 1]],
            wins: [.init(prompt: 0, winner: 0, loser: 1, weight: 1), .init(prompt: 1, winner: 0, loser: 1, weight: 1)])
        let before = Self.probability(SimilarityRanker(index: base), [0, 1])
        #expect(before > 0.5)
        // Near [0, 1] the weak model succeeds and the strong one fails, each seen alone on its own prompts.
        var learned = LearnedRanking(models: base.models, dimension: 2)
        for index in 0..<6 {
            let angle = 1.2 + Float(index) * 0.06
            let prompt = [cos(angle), sin(angle)]
            try learned.fold(prompt: "p\(index)", embedding: prompt, model: index % 2, outcome: .pointwise(index % 2 == 0 ? 0 : 1))
        }
        #expect(learned.winCount == 6, "six lone qualities, six battles with par")
        let after = SimilarityRanker(index: try base.adding(model: LearnedRanking.par).appending(try #require(try learned.index())))
        #expect(Self.probability(after, [0, 1]) < 0.5, "the weak model now wins near where it succeeded")
        #expect(Self.probability(after, [1, 0]) > Self.probability(after, [0, 1]), "and less so far from it")
    }

    @Test func theStateRoundTripsThroughItsFileAndFollowsModelsByName() throws {
        let path = NSTemporaryDirectory() + "learned-\(UUID().uuidString).safetensors"
        defer { unlink(path) }
        var learned = LearnedRanking(models: ["a", "b", "c"], dimension: 2)
        try learned.fold(prompt: "p", embedding: [1, 0], model: 2, outcome: .pairwise(against: 1, score: 1))
        try learned.fold(prompt: "q", embedding: [0, 1], model: 0, outcome: .pointwise(1))
        try learned.write(to: path)
        let file = try SafeTensorsFile(path: path)
        let same = try LearnedRanking(file: file, models: ["a", "b", "c"], dimension: 2)
        #expect(same.events == 2 && same.promptCount == 2 && same.winCount == 2, "c beat b; a beat par")
        // The pending quality of q still pairs after the round trip, and a repeated prompt is found by its text.
        var resumed = same
        try resumed.fold(prompt: "q", embedding: [0, 1], model: 1, outcome: .pointwise(0))
        #expect(resumed.promptCount == 2 && resumed.winCount == 4, "a beat b; par beat b")
        // A retrained index without "b" and in another order keeps what concerns its models, and par.
        let remapped = try LearnedRanking(file: file, models: ["c", "a"], dimension: 2)
        #expect(remapped.winCount == 1, "c's win was over b, which the new index lacks; a's win over par stays")
        #expect(try remapped.index()?.wins == [RankingIndex.Win(prompt: 1, winner: 1, loser: 2, weight: 1)])
        #expect(throws: RankingIndexError.self) { try LearnedRanking(file: file, models: ["a", "b", "c"], dimension: 3) }
    }

    /// Learned state is bounded in bytes (issue 23, finding 4): past the bound the oldest prompts
    /// go with their wins and qualities, and what stays scores as if only it had been learned.
    @Test func theOldestPromptsGoWhenTheStateOutgrowsItsBound() throws {
        var learned = LearnedRanking(models: ["a", "b"], dimension: 2)
        for index in 0..<10 {
            let angle = Float(index) / 10
            try learned.fold(prompt: "p\(index)", embedding: [cos(angle), sin(angle)], model: 0, outcome: .pointwise(Double(index % 2)))
            try learned.fold(prompt: "p\(index)", embedding: [cos(angle), sin(angle)], model: 1, outcome: .pointwise(0.5))
        }
        let perPrompt = learned.bytes / 10
        #expect(learned.keep(within: learned.bytes) == 0)
        #expect(learned.keep(within: 4 * perPrompt + perPrompt / 2) == 6)
        // Each prompt: one pair and three battles with par (a's 0 or 1 is one, b's 0.5 two).
        #expect(learned.promptCount == 4 && learned.winCount == 16 && learned.bytes <= 4 * perPrompt + perPrompt / 2)
        // The same four prompts learned alone: the same index.
        var alone = LearnedRanking(models: ["a", "b"], dimension: 2)
        for index in 6..<10 {
            let angle = Float(index) / 10
            try alone.fold(prompt: "p\(index)", embedding: [cos(angle), sin(angle)], model: 0, outcome: .pointwise(Double(index % 2)))
            try alone.fold(prompt: "p\(index)", embedding: [cos(angle), sin(angle)], model: 1, outcome: .pointwise(0.5))
        }
        let kept = try #require(try learned.index())
        let fresh = try #require(try alone.index())
        #expect(kept.promptCount == fresh.promptCount)
        for query: [Float] in [[1, 0], [0.6, 0.8], [0, 1]] {
            #expect(Self.probability(SimilarityRanker(index: kept), query) == Self.probability(SimilarityRanker(index: fresh), query))
        }
        // A prompt still known is found again by its text, and its quality still pairs.
        try learned.fold(prompt: "p9", embedding: [1, 0], model: 0, outcome: .pointwise(0))
        #expect(learned.promptCount == 4 && learned.winCount == 18)
        #expect(learned.keep(within: 0) == 4 && learned.promptCount == 0 && learned.winCount == 0)
    }

    /// Twelve prompts around three directions, each taught one quality per model.
    static func teach(_ learned: inout LearnedRanking) throws {
        var random = SplitMix64(seed: 11)
        for index in 0..<12 {
            let direction = index % 3
            var prompt = (0..<3).map { _ in Float.random(in: -0.2...0.2, using: &random) }
            prompt[direction] += 1
            try learned.fold(prompt: "p\(index)", embedding: prompt, model: 0, outcome: .pointwise(direction == 0 ? 1 : 0))
            try learned.fold(prompt: "p\(index)", embedding: prompt, model: 1, outcome: .pointwise(direction == 2 ? 1 : 0.5))
        }
    }

    /// With room for every learned prompt, anchors score exactly as the prompts themselves; with
    /// fewer, the learned rows are bounded, each anchor weighs as its members, and it still
    /// ranks as it was taught.
    @Test func anchorsBoundTheLearnedRowsAndKeepWhatWasTaught() throws {
        let base = try RankingIndex(
            models: ["a", "b"], embeddings: [[1, 1, 1]], wins: [.init(prompt: 0, winner: 0, loser: 1, weight: 1)])
        var plain = LearnedRanking(models: base.models, dimension: 3)
        var roomy = LearnedRanking(models: base.models, dimension: 3, maxAnchors: 100)
        var tight = LearnedRanking(models: base.models, dimension: 3, maxAnchors: 3)
        try Self.teach(&plain)
        try Self.teach(&roomy)
        try Self.teach(&tight)
        #expect(roomy.anchorCount == 12 && tight.anchorCount == 3 && tight.promptCount == 12)
        let queries: [[Float]] = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.2]]
        for unit in [RankingSettings.WeightUnit.battle, .prompt] {
            let settings = RankingSettings(gamma: 10, weightUnit: unit)
            let exact = SimilarityRanker(index: try plain.appended(to: base, weightUnit: unit), settings: settings)
            let anchored = SimilarityRanker(index: try roomy.appended(to: base, weightUnit: unit), settings: settings)
            let bounded = try tight.appended(to: base, weightUnit: unit)
            #expect(bounded.promptCount == 1 + 3, "the base's row and three anchors")
            if unit == .prompt {
                #expect(bounded.promptShares?.map(\.prompts) == [1, 4, 4, 4], "the first three prompts seeded one anchor per direction")
            }
            let compressed = SimilarityRanker(index: bounded, settings: settings)
            for query in queries {
                #expect(abs(Self.probability(exact, query) - Self.probability(anchored, query)) < 1e-9, "\(unit) \(query)")
            }
            // a succeeds along the first direction, b along the third: so it stays, compressed.
            #expect(Self.probability(compressed, [1, 0, 0]) > 0.6 && Self.probability(compressed, [0, 0, 1]) < 0.4, "\(unit)")
            #expect(abs(Self.probability(compressed, [1, 0, 0]) - Self.probability(exact, [1, 0, 0])) < 0.1, "\(unit)")
        }

        // The anchors are written with the state and read back as they were; a smaller bound joins them again.
        let path = NSTemporaryDirectory() + "anchors-\(UUID().uuidString).safetensors"
        defer { unlink(path) }
        try tight.write(to: path)
        let file = try SafeTensorsFile(path: path)
        let reread = try LearnedRanking(file: file, models: base.models, dimension: 3, maxAnchors: 3)
        let (rereadRows, tightRows) = (try reread.appended(to: base, weightUnit: .prompt), try tight.appended(to: base, weightUnit: .prompt))
        #expect(rereadRows.embeddings == tightRows.embeddings && rereadRows.wins == tightRows.wins)
        #expect(try LearnedRanking(file: file, models: base.models, dimension: 3, maxAnchors: 2).anchorCount == 2)
        // Forgetting the oldest prompts takes them out of their anchors, and frees an emptied one.
        var forgetting = tight
        forgetting.keep(within: forgetting.bytes - 1)
        #expect(forgetting.promptCount == 11 && forgetting.anchorCount == 3)
        #expect(forgetting.keep(within: 0) == 11 && forgetting.anchorCount == 0)
        try forgetting.fold(prompt: "new", embedding: [0, 1, 0], model: 0, outcome: .pointwise(1))
        let reborn = try forgetting.appended(to: base)
        #expect(forgetting.anchorCount == 1 && reborn.promptCount == 2)
    }

    @Test func badOutcomesAreRefused() {
        var learned = LearnedRanking(models: ["a", "b"], dimension: 2)
        #expect(throws: RankingIndexError.self) { try learned.fold(prompt: "p", embedding: [1], model: 0, outcome: .pointwise(1)) }
        #expect(throws: RankingIndexError.self) {
            try learned.fold(prompt: "p", embedding: [1, 0], model: 0, outcome: .pairwise(against: 0, score: 1))
        }
        #expect(throws: RankingIndexError.self) { try learned.fold(prompt: "p", embedding: [1, 0], model: 0, outcome: .pointwise(2)) }
        #expect(throws: RankingIndexError.self) { try learned.fold(prompt: "p", embedding: [.nan, 0], model: 0, outcome: .pointwise(1)) }
        #expect(learned.events == 0)
    }
}

@Suite struct FamiliarityTests {
    /// A unit vector near `center` (a coordinate axis) of a 16-d space, jittered by `random`.
    static func near(_ center: Int, _ random: inout SplitMix64, spread: Float = 0.3) -> [Float] {
        var vector = (0..<16).map { _ in Float.random(in: -spread...spread, using: &random) }
        vector[center] += 1
        let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return vector.map { $0 / norm }
    }

    @Test func promptsLikeTheIndexAreFamiliarAndOthersAreNotUntilLearned() throws {
        var random = SplitMix64(seed: 5)
        // The index knows two topics (axes 0 and 1), 200 prompts each.
        let embeddings = (0..<400).map { Self.near($0 % 2, &random) }
        let wins = (0..<400).map { RankingIndex.Win(prompt: $0, winner: 0, loser: 1, weight: 1) }
        let index = try RankingIndex(models: ["a", "b"], embeddings: embeddings, wins: wins)
        let familiarity = Familiarity(index: index)
        #expect(familiarity.reference.count == 400 && familiarity.reference == familiarity.reference.sorted())
        func score(_ vector: [Float], among pool: RankingIndex) -> Double {
            vector.withUnsafeBufferPointer { familiarity.familiarity(of: $0, among: pool) }
        }
        // Fresh prompts of the known topics spread over [0, 1] as the index's own do.
        let known = (0..<200).map { score(Self.near($0 % 2, &random), among: index) }
        let median = known.sorted()[100]
        #expect(median > 0.25 && median < 0.75, "a fresh prompt of a known topic is a typical one: median \(median)")
        #expect(Double(known.filter { $0 < 0.05 }.count) / 200 < 0.15)
        // A third topic is unknown: every one of its prompts scores below all of the index's own.
        let novel = (0..<50).map { _ in Self.near(7, &random) }
        #expect(novel.allSatisfy { score($0, among: index) == 0 })
        // Learned prompts of that topic count as known, once as dense as the index's own topics.
        let learned = try RankingIndex(
            models: ["a", "b"], embeddings: (0..<200).map { _ in Self.near(7, &random) },
            wins: (0..<200).map { RankingIndex.Win(prompt: $0, winner: 1, loser: 0, weight: 1) })
        let pool = try index.appending(learned)
        let after = novel.map { score($0, among: pool) }.sorted()[25]
        #expect(after > 0.25, "after learning near them, novel prompts are familiar: median \(after)")
    }
}

/// The Laplace approximation Thompson sampling draws from (issue 24).
@Suite struct PosteriorDrawTests {
    static func moments(_ draws: [[Double]], _ model: Int) -> (mean: Double, sd: Double) {
        let mean = draws.reduce(0) { $0 + $1[model] } / Double(draws.count)
        let variance = draws.reduce(0) { $0 + ($1[model] - mean) * ($1[model] - mean) } / Double(draws.count)
        return (mean, variance.squareRoot())
    }

    @Test func drawsCentreOnTheFitAndNarrowAsWinsGrow() throws {
        func draws(_ games: Double) -> (fit: [Double], draws: [[Double]]) {
            // a beats b three games in four.
            let wins = [0, 0.75 * games, 0.25 * games, 0]
            let fit = BradleyTerry.fit(wins: wins, models: 2, prior: 1)
            var generator = SplitMix64(seed: 3)
            return (fit, BradleyTerry.posteriorDraws(fit, wins: wins, models: 2, prior: 1, scale: 1, count: 4000, generator: &generator)!)
        }
        let few = draws(4)
        let many = draws(400)
        // Each θ alone is pinned only by the prior's one virtual game (sd ≈ 2), so 4,000 draws' mean is within ±0.13 at 4 standard errors.
        for model in 0..<2 {
            #expect(abs(Self.moments(many.draws, model).mean - many.fit[model]) < 0.13, "model \(model)")
        }
        let difference = { (draws: [[Double]]) in draws.map { [$0[0] - $0[1]] } }
        #expect(abs(Self.moments(difference(many.draws), 0).mean - (many.fit[0] - many.fit[1])) < 0.01, "what the games decide, tightly")
        let narrow = Self.moments(difference(many.draws), 0).sd
        let wide = Self.moments(difference(few.draws), 0).sd
        #expect(narrow < wide / 4, "100 times the games: θa − θb's spread falls from \(wide) to \(narrow)")
        // Near the Fisher information's: var(θa − θb) ≈ 1 / (n p (1 − p)) for n games at p ≈ ¾.
        #expect(abs(narrow - (1 / (400 * 0.75 * 0.25)).squareRoot()) < 0.02, "\(narrow)")
    }

    @Test func theSameSeedGivesTheSameDraws() {
        let wins: [Double] = [0, 3, 1, 0]
        let fit = BradleyTerry.fit(wins: wins, models: 2, prior: 1)
        var first = SplitMix64(seed: 9)
        var second = SplitMix64(seed: 9)
        #expect(
            BradleyTerry.posteriorDraws(fit, wins: wins, models: 2, prior: 1, scale: 1, count: 5, generator: &first)
                == BradleyTerry.posteriorDraws(fit, wins: wins, models: 2, prior: 1, scale: 1, count: 5, generator: &second))
    }
}
