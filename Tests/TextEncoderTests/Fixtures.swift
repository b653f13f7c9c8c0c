import Foundation
import TextEncoder

enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let modelDirectory = root + "/models/all-MiniLM-L6-v2"
    static let goldenFile = root + "/../shared/data/encoder/minilm-golden.jsonl"

    static var modelIsPresent: Bool { FileManager.default.fileExists(atPath: modelDirectory + "/model.safetensors") }
    static var goldenIsPresent: Bool { FileManager.default.fileExists(atPath: goldenFile) }
    static let missingModel = "the encoder model is not in models/all-MiniLM-L6-v2; run `make setup` to fetch it"
    static let missingGolden = "../shared/data/encoder/minilm-golden.jsonl is absent; the golden comparison needs the shared data"

    /// One encoder for the whole test run (loading takes a moment).
    static let encoder: SentenceEncoder? = try? SentenceEncoder(modelDirectory: modelDirectory)

    struct Golden: Decodable {
        var text: String
        var ids: [Int32]
        var embedding: [Float]
    }

    static func golden() throws -> [Golden] {
        let text = try String(contentsOfFile: goldenFile, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Golden.self, from: Data($0.utf8)) }
    }

    /// vocab.txt read directly: token text → id (its line number). Used to turn
    /// hand-written expected tokens into ids without the tokenizer under test.
    static let vocabulary: [String: Int32] = {
        guard let text = try? String(contentsOfFile: modelDirectory + "/vocab.txt", encoding: .utf8) else { return [:] }
        var result: [String: Int32] = [:]
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where result[String(line)] == nil {
            result[String(line)] = Int32(index)
        }
        return result
    }()

    static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var dot = 0.0
        var na = 0.0
        var nb = 0.0
        for (x, y) in zip(a, b) {
            dot += Double(x) * Double(y)
            na += Double(x) * Double(x)
            nb += Double(y) * Double(y)
        }
        return dot / (na.squareRoot() * nb.squareRoot())
    }
}
