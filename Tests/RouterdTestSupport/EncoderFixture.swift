import Foundation
import TextEncoder

/// The encoder model and its golden vectors, for every test that needs them.
public enum EncoderFixture {
    public static let modelDirectory = Package.root + "/models/all-MiniLM-L6-v2"
    public static let goldenFile = SharedData.path("encoder/minilm-golden.jsonl")
    public static var modelIsPresent: Bool { FileManager.default.fileExists(atPath: modelDirectory + "/model.safetensors") }
    public static var goldenIsPresent: Bool { FileManager.default.fileExists(atPath: goldenFile) }
    public static let missingModel = "the encoder model is not in models/all-MiniLM-L6-v2; run `make setup` to fetch it"
    public static let missingGolden = "../shared/data/encoder/minilm-golden.jsonl is absent; the golden comparison needs the shared data"

    /// One encoder for the whole test run (loading takes a moment).
    public static let encoder: SentenceEncoder? = try? SentenceEncoder(modelDirectory: modelDirectory)

    /// A routerd.yaml `encoders:` section with the model as encoder `minilm`.
    public static func encoders(cacheSize: Int = 1000) -> String {
        "encoders:\n  minilm:\n    kind: minilm\n    path: \(modelDirectory)\n    cache_size: \(cacheSize)"
    }

    public struct Golden: Decodable, Sendable {
        public var text: String
        public var ids: [Int32]
        public var embedding: [Float]
    }

    public static func golden() throws -> [Golden] {
        try String(contentsOfFile: goldenFile, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode(Golden.self, from: Data($0.utf8))
        }
    }

    /// vocab.txt read directly: token text → id (its line number). Used to turn
    /// hand-written expected tokens into ids without the tokenizer under test.
    public static let vocabulary: [String: Int32] = {
        guard let text = try? String(contentsOfFile: modelDirectory + "/vocab.txt", encoding: .utf8) else { return [:] }
        var result: [String: Int32] = [:]
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where result[String(line)] == nil {
            result[String(line)] = Int32(index)
        }
        return result
    }()

    public static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var (dot, na, nb) = (0.0, 0.0, 0.0)
        for (x, y) in zip(a, b) {
            dot += Double(x) * Double(y)
            na += Double(x) * Double(x)
            nb += Double(y) * Double(y)
        }
        return dot / (na.squareRoot() * nb.squareRoot())
    }
}
