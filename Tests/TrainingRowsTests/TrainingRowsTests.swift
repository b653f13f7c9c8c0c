import Foundation
import RouterJSON
import RouterVocabulary
import Testing
import TrainingRows

/// One codec per training-row format: what a writer writes, every reader reads back.
@Suite struct TrainingRowsTests {
    func write(_ lines: [[UInt8]]) throws -> String {
        let path = NSTemporaryDirectory() + "rows-\(UUID().uuidString).jsonl"
        try Data(lines.flatMap { $0 }).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test(arguments: PairwiseResult.allCases)
    func aBattleRowReadsBackWithItsWinner(result: PairwiseResult) throws {
        let row = BattleRow(
            prompt: .text("Prove it."), modelA: "big", modelB: "small", winner: BattleWinner(result),
            extra: ["router": .string("sw"), "time": .number(1.5)])
        let file = try write([row.line()])
        defer { try? FileManager.default.removeItem(atPath: file) }
        let read = try BattlesFile.read(file)
        let expected: BattleWinner = result == .win ? .modelA : result == .loss ? .modelB : .tie
        #expect(read == [BattleRecord(prompt: "Prove it.", modelA: "big", modelB: "small", winner: expected)])
        // The extra fields are written beside the format's own.
        let object = try #require(try JSONSerialization.jsonObject(with: Data(row.line())) as? [String: Any])
        #expect(object["router"] as? String == "sw" && object["winner"] as? String == expected.rawValue)
    }

    @Test func aQualityRowReadsBackAndIsRecognised() throws {
        let file = try write([QualityRow(prompt: .text("2 + 2?"), quality: ["a": 1, "b": 0.25], extra: ["source": .string("label")]).line()])
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(QualityFile.matches(file))
        let read = try QualityFile.read(file)
        #expect(read.count == 1 && read[0].prompt == "2 + 2?" && read[0].quality == ["a": 1, "b": 0.25])
    }

    @Test func aRowWithOnlyAPromptHashIsWrittenButNotTrainedOn() throws {
        let line = BattleRow(prompt: .hash("00ff00ff00ff00ff"), modelA: "a", modelB: "b", winner: .tie).line()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        #expect(object["prompt_hash"] as? String == "00ff00ff00ff00ff" && object["prompt"] == nil)
        let file = try write([line])
        defer { try? FileManager.default.removeItem(atPath: file) }
        let error = #expect(throws: TrainingRowError.self) { try BattlesFile.read(file) }
        #expect(error?.message.contains(":1: missing or empty string field 'prompt'") == true, "\(String(describing: error))")
    }

    @Test func arenaStyleTiesAndBadWinnersAreReadOrNamed() throws {
        let file = try write([
            Array(#"{"prompt":"p","model_a":"a","model_b":"b","winner":"tie (bothbad)"}"#.utf8) + [10],
            Array(#"{"prompt":"q","model_a":"a","model_b":"b","winner":"draw"}"#.utf8) + [10],
        ])
        defer { try? FileManager.default.removeItem(atPath: file) }
        let error = #expect(throws: TrainingRowError.self) { try BattlesFile.read(file) }
        #expect(error?.message.hasSuffix(":2: unknown winner 'draw' (expected model_a, model_b, tie or tie (bothbad))") == true)
        #expect(BattleWinner(field: "tie (bothbad)") == .tie)
    }
}
