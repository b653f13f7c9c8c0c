import Foundation
import MatrixFactorization
import StableHash
import Testing
import TrainingRows

@testable import RouterTraining

@Suite struct QualityReaderTests {
    @Test func promptsBecomePairwiseBattles() throws {
        let file = NSTemporaryDirectory() + "quality-\(UUID().uuidString).jsonl"
        defer { unlink(file) }
        try #"{"prompt":"p","quality":{"a":1,"b":0,"c":1}}"#.write(toFile: file, atomically: true, encoding: .utf8)
        #expect(QualityReader.isQualityFile(file))
        let battles = try QualityReader.read(file: file, pairsPerPrompt: 10, seed: 1)
        let outcomes = Dictionary(uniqueKeysWithValues: battles.map { ("\($0.modelA)-\($0.modelB)", $0.outcome) })
        #expect(outcomes == ["a-b": .modelA, "a-c": .tie, "b-c": .modelB])
        #expect(try QualityReader.read(file: file, pairsPerPrompt: 2, seed: 1).count == 2)
    }

    @Test func softLabelsFollowTheValueDifference() throws {
        let file = NSTemporaryDirectory() + "quality-\(UUID().uuidString).jsonl"
        defer { unlink(file) }
        try #"{"prompt":"p","quality":{"a":8,"b":6}}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let battle = try #require(try QualityReader.read(file: file, pairsPerPrompt: 1, seed: 1, softScale: 2).first)
        // σ((8 − 6) / 2) = σ(1)
        #expect(abs((battle.softLabel ?? -1) - 1 / (1 + exp(-1))) < 1e-6)
        #expect(battle.outcome == .modelA)
        #expect(try QualityReader.read(file: file, pairsPerPrompt: 1, seed: 1).first?.softLabel == nil)
    }
}

@Suite struct MFTrainerTests {
    /// The strong model wins exactly when the prompt embedding's first component is positive:
    /// a correct MF learns that direction.
    @Test func itLearnsASeparableRule() {
        var random = SplitMix64(seed: 7)
        let prompts = 600
        let embeddings: [[Float]] = (0..<prompts).map { _ in
            let raw = (0..<32).map { _ in random.gaussian() }
            let norm = raw.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return raw.map { $0 / norm }
        }
        let samples = (0..<prompts).map { MFSample(prompt: $0, modelA: 0, modelB: 1, label: embeddings[$0][0] > 0 ? 1 : 0) }
        var options = MFTrainingOptions()
        options.dimension = 16
        options.epochs = 60
        options.learningRate = 0.01
        options.patience = 60
        options.noise = 0
        let trainer = MFTrainer(
            models: ["strong", "weak"], embeddings: embeddings, samples: samples, validationPrompts: Set(0..<100), options: options)
        let (model, best) = trainer.run { _ in }
        #expect(best.validationAccuracy > 0.9, "validation accuracy \(best.validationAccuracy)")
        let probabilities = model.winProbabilities(Array(embeddings[0..<100]), a: 0, b: 1)
        let agreement = zip(probabilities, embeddings[0..<100]).filter { ($0 >= 0.5) == ($1[0] > 0) }.count
        #expect(agreement > 90)
    }
}
