import Foundation
import Labelling
import OpenAIChat
import Testing

@Suite struct PairwiseJudgeTests {
    @Test func theLastVerdictMarkCounts() {
        #expect(PairwiseJudge.verdict("A explains more. [[A]]") == .first)
        #expect(PairwiseJudge.verdict("I first thought [[A]], but on reflection [[C]]") == .tie)
        #expect(PairwiseJudge.verdict("Verdict: [[B]]\n") == .second)
        #expect(PairwiseJudge.verdict("Both are fine.") == nil)
    }

    /// Forward: x is A. Swapped: x is B. Only a verdict that survives the swap stands.
    @Test(arguments: [
        (Verdict?.some(.first), Verdict?.some(.second), Verdict.first),
        (.some(.second), .some(.first), .second),
        (.some(.first), .some(.first), .tie),  // always the first position: position bias
        (.some(.tie), .some(.tie), .tie),
        (.some(.first), .some(.tie), .tie),
        (nil, .some(.second), .tie),
    ])
    func bothOrdersMustAgree(forward: Verdict?, swapped: Verdict?, expected: Verdict) {
        #expect(PairwiseJudge.combine(forward, swapped) == expected)
    }

    @Test func theJudgeSeesBothAnswersInTheOrderGiven() {
        let turns = PairwiseJudge.messages(prompt: "Q?", answerA: "first answer", answerB: "second answer")
        #expect(turns.map(\.role) == ["system", "user"])
        let user = turns[1].content
        let a = user.range(of: "first answer")!.lowerBound
        let b = user.range(of: "second answer")!.lowerBound
        #expect(a < b && user.contains("[Answer A]") && user.contains("[[C]]"))
    }
}

@Suite struct ReferenceGraderTests {
    @Test(arguments: [
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", 72.0),
        ("The total is $1,250.", 1250),
        ("It drops to -3.5 degrees.", -3.5),
        ("Step 3. Then 4 more", 4),
    ])
    func theLastNumberIsTheAnswer(answer: String, number: Double) {
        #expect(ReferenceGrader.lastNumber(in: answer) == number)
    }

    @Test func exactMatchComparesTheLastNumber() {
        #expect(ReferenceGrader.lastNumber(in: "no digits here") == nil)
        #expect(ReferenceGrader.number("1,250") == 1250 && ReferenceGrader.number("twelve") == nil)
        #expect(ReferenceGrader.exactMatch(answer: "so 72", reference: 72) == 1)
        #expect(ReferenceGrader.exactMatch(answer: "72 or maybe 73", reference: 72) == 0)
        #expect(ReferenceGrader.exactMatch(answer: "none", reference: 72) == 0)
    }

    @Test func gradesComeFromTheLastMark() {
        #expect(ReferenceGrader.grade("Same result. [[CORRECT]]") == 1)
        #expect(ReferenceGrader.grade("[[CORRECT]]? No: [[INCORRECT]]") == 0)
        #expect(ReferenceGrader.grade("unsure") == nil)
    }
}

@Suite struct LabelInputTests {
    func file(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "label-\(UUID().uuidString).jsonl"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func promptsAndReferencesAreReadOnceEach() throws {
        let path = try file(
            """
            {"prompt": "a", "reference": "x"}
            {"prompt": "b", "answer": 72, "solution": "…"}
            {"prompt": "a", "reference": "again"}
            {"prompt": "c"}

            """)
        defer { unlink(path) }
        let inputs = try LabelInputReader.read(path)
        #expect(inputs == [LabelInput(prompt: "a", reference: "x"), LabelInput(prompt: "b", reference: "72"), LabelInput(prompt: "c")])
    }

    @Test func aLineWithoutAPromptIsRefusedWithItsNumber() throws {
        let path = try file("{\"prompt\": \"a\"}\n{\"model\": \"x\"}\n")
        defer { unlink(path) }
        #expect(throws: LabelError.self) { try LabelInputReader.read(path) }
        do {
            _ = try LabelInputReader.read(path)
        } catch {
            #expect(error.message.contains(":2: no 'prompt'"))
        }
    }

    @Test func whatIsDoneIsReadFromTheOutputAndATornLineIsCut() throws {
        let done = LabelInput(prompt: "a").hash
        let path = try file("{\"prompt\":\"a\",\"prompt_hash\":\"\(done)\"}\n{\"prompt\":\"b\",\"prompt_ha")
        defer { unlink(path) }
        #expect(try LabelInputReader.done(in: path) == [done])
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasSuffix("}\n"))
        #expect(try LabelInputReader.done(in: path + ".absent") == [])
    }
}
