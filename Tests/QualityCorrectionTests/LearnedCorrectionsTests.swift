import Foundation
import SafeTensors
import StableHash
import Testing

@testable import QualityCorrection

/// What a quality model learns online from one-sided outcomes (issue 24): a ridge correction of
/// each model's quality on the embedding, a shared difficulty across models, shrinkage toward the
/// trained weights, order independence, a fixed size, the file, and the posterior Thompson
/// sampling draws from.
@Suite struct LearnedCorrectionsTests {
    static let dimension = 8
    /// Priors of 10 outcomes: these tests' few outcomes must move the fit (the default, 100, was chosen on thousands).
    static let settings = {
        var settings = CorrectionSettings()
        settings.prior = 10
        settings.difficultyPrior = 10
        return settings
    }()

    /// A unit vector along axis `axis`, tilted toward axis 7 by `tilt` (so nearby prompts differ a little).
    static func direction(_ axis: Int, tilt: Float = 0) -> [Float] {
        var vector = [Float](repeating: 0, count: dimension)
        vector[axis] = 1
        vector[7] = tilt
        return vector
    }

    static func shifts(_ state: LearnedCorrections, at embedding: [Float], _ settings: CorrectionSettings = settings) -> [Double] {
        embedding.withUnsafeBufferPointer { state.correction(embedding: $0, settings: settings).shifts }
    }

    static func outcome(_ embedding: [Float], _ model: Int, _ quality: Double, _ predicted: Double) -> LearnedCorrections.Outcome {
        LearnedCorrections.Outcome(embedding: embedding, model: model, quality: quality, predicted: predicted)
    }

    @Test func outcomesMoveTheirModelOnPromptsLikeTheirsAndLittleElsewhere() throws {
        var state = LearnedCorrections(models: ["a", "b"], dimension: Self.dimension, basis: "w1")
        #expect(Self.shifts(state, at: Self.direction(0)) == [0, 0], "nothing learned: the trained model speaks alone")
        // On prompts along axis 0, a was expected to fail (p 0.3) and passed; b was expected to pass (0.7) and did.
        // On prompts along axis 3, both did exactly as expected.
        var outcomes: [LearnedCorrections.Outcome] = []
        for index in 0..<40 {
            let tilt = Float(index % 10) / 50
            outcomes += [Self.outcome(Self.direction(0, tilt: tilt), 0, 1, 0.3), Self.outcome(Self.direction(0, tilt: tilt), 1, 1, 0.7)]
            outcomes += [Self.outcome(Self.direction(3, tilt: tilt), 0, 0.5, 0.5), Self.outcome(Self.direction(3, tilt: tilt), 1, 0.5, 0.5)]
        }
        try state.fold(outcomes, settings: Self.settings)
        let near = Self.shifts(state, at: Self.direction(0, tilt: 0.05))
        #expect(near[0] > 0.4, "a passed where it was expected to fail: its quality rises, \(near)")
        #expect(near[0] > near[1] + 0.2, "and more than b's, which did better than expected by less: \(near)")
        let elsewhere = Self.shifts(state, at: Self.direction(3))
        #expect(elsewhere.allSatisfy { abs($0) < 0.1 }, "where both did as predicted, little changes: \(elsewhere)")
    }

    @Test func oneModelsResultsTeachEveryModelThePromptsDifficulty() throws {
        var state = LearnedCorrections(models: ["a", "b", "c"], dimension: Self.dimension, basis: "w1")
        // Only a was called, and failed where it was expected to pass: the prompts are harder than thought.
        try state.fold((0..<60).map { Self.outcome(Self.direction(1, tilt: Float($0 % 10) / 50), 0, 0, 0.8) }, settings: Self.settings)
        let near = Self.shifts(state, at: Self.direction(1))
        #expect(near[1] < -0.3 && near[2] < -0.3, "b and c, never called, are expected to do worse too: \(near)")
        #expect(abs(near[1] - near[2]) < 1e-9, "the same for both: they share only the difficulty")
        #expect(near[0] < near[1], "a, whose own failures these are, falls most: \(near)")

        var alone = Self.settings
        alone.difficultyPrior = 1e12
        state.refit(settings: alone)
        let separate = Self.shifts(state, at: Self.direction(1), alone)
        #expect(abs(separate[1]) < 1e-6 && separate[0] < near[1], "with sharing off, b and c learn nothing from a: \(separate)")
    }

    @Test func thinEvidenceShrinksTowardTheTrainedWeights() throws {
        func shift(outcomes: Int, prior: Double) throws -> Double {
            var settings = CorrectionSettings()
            settings.prior = prior
            settings.difficultyPrior = 1e12
            var state = LearnedCorrections(models: ["a", "b"], dimension: Self.dimension, basis: "w1")
            try state.fold((0..<outcomes).map { _ in Self.outcome(Self.direction(2), 0, 1, 0.5) }, settings: settings)
            return Self.shifts(state, at: Self.direction(2), settings)[0]
        }
        let one = try shift(outcomes: 1, prior: 1)
        let many = try shift(outcomes: 40, prior: 1)
        #expect(one > 0 && one < many, "one outcome moves the quality less than forty: \(one) < \(many)")
        // Ridge on x = (e, 1), |x|² = 2: one outcome's residual ½ gives xᵀ(xxᵀ + κI)⁻¹x · ½ = 2/(2 + κ) · ½, a third with κ 1.
        #expect(abs(one - 1.0 / 3) < 1e-6, "\(one)")
        #expect(try shift(outcomes: 1, prior: 10) < one / 3, "a larger prior trusts the weights longer")
        #expect(abs(try shift(outcomes: 1000, prior: 1) - 0.5) < 0.001, "much evidence: the residual itself")
    }

    @Test func theOrderOutcomesArriveInChangesNothing() throws {
        var generator = SplitMix64(seed: 7)
        var outcomes: [LearnedCorrections.Outcome] = []
        for _ in 0..<200 {
            let embedding = (0..<Self.dimension).map { _ in generator.uniform(-1, 1) }
            outcomes.append(Self.outcome(embedding, Int(generator.next() % 3), Double(generator.next() % 2), 0.05 + 0.9 * generator.unit()))
        }
        var forward = LearnedCorrections(models: ["a", "b", "c"], dimension: Self.dimension, basis: "w1")
        var backward = forward
        var inBatches = forward
        try forward.fold(outcomes, settings: Self.settings)
        try backward.fold(outcomes.reversed(), settings: Self.settings)
        for start in stride(from: 0, to: outcomes.count, by: 7) {
            try inBatches.fold(Array(outcomes[start..<min(outcomes.count, start + 7)]), settings: Self.settings)
        }
        for probe in 0..<10 {
            let query = (0..<Self.dimension).map { _ in generator.uniform(-1, 1) }
            let (a, b, c) = (Self.shifts(forward, at: query), Self.shifts(backward, at: query), Self.shifts(inBatches, at: query))
            for model in 0..<3 {
                #expect(abs(a[model] - b[model]) < 1e-6 && abs(a[model] - c[model]) < 1e-6, "probe \(probe), model \(model): \(a), \(b), \(c)")
            }
        }
    }

    @Test func badOutcomesAreRefusedAndNothingIsFolded() throws {
        var state = LearnedCorrections(models: ["a", "b"], dimension: Self.dimension, basis: "w1")
        let good = Self.outcome(Self.direction(0), 0, 1, 0.5)
        for bad in [
            Self.outcome(Self.direction(0), 0, 1.5, 0.5), Self.outcome(Self.direction(0), 2, 1, 0.5), Self.outcome([1, 2], 0, 1, 0.5),
            Self.outcome(Self.direction(0), 0, 1, .nan),
        ] {
            #expect(throws: CorrectionError.self) { try state.fold([good, bad], settings: Self.settings) }
        }
        #expect(state.count == 0 && state.events == 0, "a batch with a bad outcome folds none of it")
    }

    @Test func theStateHasAFixedSizeAndSurvivesItsFile() throws {
        var state = LearnedCorrections(models: ["a", "b"], dimension: Self.dimension, basis: "w1")
        let empty = state.bytes
        try state.fold((0..<50).map { Self.outcome(Self.direction($0 % 7), $0 % 2, 1, 0.4) }, settings: Self.settings)
        #expect(state.bytes == empty && state.count == 50, "the sums take the same bytes whatever the outcomes")
        let folder = NSTemporaryDirectory() + "corrections-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/learned.safetensors"
        try state.write(to: path)
        let read = try LearnedCorrections(
            file: try SafeTensorsFile(path: path), models: ["a", "b"], dimension: Self.dimension, basis: "w1", settings: Self.settings)
        #expect(read.count == 50 && read.events == 50)
        for axis in 0..<7 {
            let (written, back) = (Self.shifts(state, at: Self.direction(axis)), Self.shifts(read, at: Self.direction(axis)))
            #expect(written == back, "the file keeps the sums exactly: \(written) vs \(back)")
        }
        // Another router's models, another encoder's dimension, or other weights: refused, naming the file.
        let other = #expect(throws: CorrectionError.self) {
            try LearnedCorrections(
                file: try SafeTensorsFile(path: path), models: ["a", "c"], dimension: Self.dimension, basis: "w1", settings: Self.settings)
        }
        #expect(other?.message.contains(path) == true && other?.message.contains("models") == true, "\(String(describing: other))")
        #expect(throws: CorrectionError.self) {
            try LearnedCorrections(file: try SafeTensorsFile(path: path), models: ["a", "b"], dimension: 4, basis: "w1", settings: Self.settings)
        }
        let retrained = #expect(throws: CorrectionError.self) {
            try LearnedCorrections(
                file: try SafeTensorsFile(path: path), models: ["a", "b"], dimension: Self.dimension, basis: "w2", settings: Self.settings)
        }
        #expect(
            retrained?.message.contains("other weights") == true, "residuals against retrained weights are not read: \(String(describing: retrained))"
        )
    }

    @Test func posteriorDrawsCentreOnTheCorrectedQualitiesAndNarrowWithEvidence() throws {
        var state = LearnedCorrections(models: ["a", "b"], dimension: Self.dimension, basis: "w1")
        let query = Self.direction(4)
        func correction(_ state: LearnedCorrections) -> LearnedCorrections.Correction {
            query.withUnsafeBufferPointer { state.correction(embedding: $0, settings: Self.settings, uncertainty: true) }
        }
        let cold = correction(state)
        // No evidence: the penalty alone, ¼ |x|² / κ = ¼ · 2 / 10.
        #expect(abs(cold.difficultyVariance - 0.05) < 1e-12 && cold.variances.allSatisfy { abs($0 - 0.05) < 1e-12 })
        try state.fold((0..<200).map { _ in Self.outcome(query, 0, 0.8, 0.5) }, settings: Self.settings)
        let warm = correction(state)
        #expect(
            warm.variances[0] < cold.variances[0] / 10 && warm.variances[1] == cold.variances[1], "only a has evidence of its own: \(warm.variances)")
        #expect(warm.difficultyVariance < cold.difficultyVariance / 10)
        var generator = SplitMix64(seed: 1)
        let trained = [0.5, 0.5]
        let draws = warm.draws(4000, around: trained, generator: &generator)
        let corrected = warm.applied(to: trained)
        let values = draws.map { $0[0] }
        let mean = values.reduce(0, +) / Double(values.count)
        let sd = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
        #expect(abs(mean - corrected[0]) < 0.01 && abs(corrected[0] - 0.8) < 0.02, "draws centre on a's corrected quality: \(mean), \(corrected)")
        #expect(abs(sd - (warm.difficultyVariance + warm.variances[0]).squareRoot()) < 0.01, "\(sd)")
        let others = draws.map { $0[1] }
        let spreadB = others.max()! - others.min()!
        #expect(spreadB > 0.5, "b, never called here, stays uncertain: its draws span \(spreadB)")
        #expect(draws.allSatisfy { $0.allSatisfy { $0 > 0 && $0 < 1 } }, "draws stay inside (0, 1)")
    }
}
