import Foundation
import RouterEvaluation
import Testing

@Suite struct HeldOutValidationTests {
    /// 20 prompts; the strong model is right on the even ones, the weak never.
    private func file() throws -> String {
        let path = NSTemporaryDirectory() + "held-out-\(UUID().uuidString).jsonl"
        let lines = (0..<20).map { #"{"prompt":"p\#($0)","quality":{"s":\#($0 % 2 == 0 ? 1 : 0),"w":0}}"# }
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func onlyPromptsNotTrainedOnAreScored() throws {
        let path = try file()
        defer { unlink(path) }
        let validation = HeldOutValidation(file: path, pair: ["s", "w"])
        var scored: [String] = []
        let result = try validation.evaluate(trained: ["p0", "p1", "p2", "p3"], embed: { $0.map { _ in [0] } }) { prompts, embeddings in
            scored = prompts
            #expect(embeddings.count == prompts.count)
            // A perfect router: high scores where the strong model is right.
            return prompts.map { Int($0.dropFirst())! % 2 == 0 ? 0.9 : 0.1 }
        }
        #expect(scored == (4..<20).map { "p\($0)" })
        let curve = try #require(result).curve
        #expect(result?.prompts == 16)
        // A router that knows which prompts need the strong model: half of them do, so its gap recovered
        // rises linearly to 1 at 50% strong calls and stays there; the area under it is 1 − ½ · ½.
        #expect(abs(curve.apgr - 0.75) < 1e-9)
    }

    @Test func fewerThanTenHeldOutPromptsAreSkipped() throws {
        let path = try file()
        defer { unlink(path) }
        let trained = Set((0..<11).map { "p\($0)" })
        let result = try HeldOutValidation(file: path, pair: ["s", "w"]).evaluate(trained: trained, embed: { $0.map { _ in [0] } }) {
            prompts, _ in
            Issue.record("scored \(prompts.count) prompts, though too few were held out")
            return prompts.map { _ in 0.5 }
        }
        #expect(result == nil)
    }
}
