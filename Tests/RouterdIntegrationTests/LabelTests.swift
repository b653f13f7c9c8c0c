import Foundation
import RouterTraining
import RouterdTestSupport
import Testing

/// `routerctl label` against a real llama.cpp server: SmolLM2-135M under three names (a terse
/// and a verbose answerer, and the judge). This proves the mechanics (answers, the judge asked
/// in both orders, resuming after kill -9, accounting, the budget stop), not the judge's taste,
/// which a 135M model cannot give.
@Suite(
    .timeLimit(.minutes(10)),
    .enabled(
        if: ProcessInfo.processInfo.environment["ROUTERD_TEST_LLM_URL"] != nil,
        Comment(rawValue: "set ROUTERD_TEST_LLM_URL (and ROUTERD_TEST_LLM_MODEL) to an OpenAI-compatible endpoint, or run `make test-llm`")))
struct LabelTests {
    static let url = ProcessInfo.processInfo.environment["ROUTERD_TEST_LLM_URL"] ?? ""
    static let model = ProcessInfo.processInfo.environment["ROUTERD_TEST_LLM_MODEL"] ?? "smollm2"

    static func config(in directory: TemporaryDirectory) throws -> String {
        try directory.write(
            "routerd.yaml",
            """
            models:
              terse: {input: 1.0, output: 2.0, endpoint: {base_url: "\(url)", model: \(model), max_tokens: 16}}
              verbose: {input: 1.0, output: 2.0, endpoint: {base_url: "\(url)", model: \(model), max_tokens: 128}}
              judge: {input: 3.0, output: 6.0, endpoint: {base_url: "\(url)", model: \(model), max_tokens: 48}}
            routers:
              r: {plugin: random, threshold: 0.5, strong_model: verbose, weak_model: terse}
            """)
    }

    static let prompts = ["Name a colour.", "What is the capital of France?", "Say hello in Spanish.", "Name a fruit.", "What is 2 + 2?"]

    static func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try runCommand(try Package.binary("routerctl"), ["label"] + arguments)
    }

    static func rows(_ path: String) -> [[String: Any]] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    /// "labelled R prompts with C calls, T tokens, $U" from the summary line.
    static func summary(_ stderr: String) -> (prompts: Int, calls: Int, usd: Double)? {
        guard let line = stderr.split(separator: "\n").last(where: { $0.contains("labelled") }) else { return nil }
        let words = line.split(separator: " ")
        guard let labelled = words.firstIndex(of: "labelled"), let prompts = Int(words[labelled + 1]),
            let with = words.firstIndex(of: "with"), let calls = Int(words[with + 1]),
            let money = words.first(where: { $0.hasPrefix("$") }),
            let usd = Double(money.dropFirst().trimmingCharacters(in: CharacterSet(charactersIn: ";,")))
        else { return nil }
        return (prompts, calls, usd)
    }

    @Test func pairwiseLabelsAskTheJudgeInBothOrdersAndResumeAfterAKill() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.config(in: directory)
        let input = try directory.write("prompts.jsonl", Self.prompts.map { #"{"prompt": "\#($0)"}"# }.joined(separator: "\n") + "\n")
        let output = directory.path + "/battles.jsonl"
        let common = ["--config", config, "--prompts", input, "--model", "terse", "--model", "verbose", "--judge", "judge", "--output", output]

        let dry = try Self.run(common + ["--dry-run"])
        #expect(dry.status == 0 && dry.stderr.contains("5 to do") && dry.stderr.contains("estimated cost $"), "\(dry.stderr)")
        #expect(!FileManager.default.fileExists(atPath: output) || Self.rows(output).isEmpty, "a dry run calls and writes nothing")

        // A budget too small for one prompt stops before calling anything.
        let broke = try Self.run(common + ["--max-cost", "0.0000001"])
        #expect(broke.status == 0 && broke.stderr.contains("stopped before exceeding --max-cost"), "\(broke.stderr)")
        #expect(Self.rows(output).isEmpty)

        // Killed after its first rows, then run again: it does only what is left.
        let first = Process()
        first.executableURL = URL(fileURLWithPath: try Package.binary("routerctl"))
        first.arguments = ["label"] + common + ["--concurrency", "1"]
        first.standardError = FileHandle.nullDevice
        try launch(first)
        #expect(eventually(within: 240) { Self.rows(output).count >= 2 }, "no rows within 4 minutes")
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let before = Self.rows(output).count
        let second = try Self.run(common)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stderr.contains("\(before) already in"), "\(second.stderr)")
        let rows = Self.rows(output)
        #expect(rows.count == Self.prompts.count, "\(rows)")
        #expect(Set(rows.compactMap { $0["prompt"] as? String }) == Set(Self.prompts))
        #expect(Set(rows.compactMap { $0["prompt_hash"] as? String }).count == Self.prompts.count, "no prompt twice")
        for row in rows {
            #expect(row["model_a"] as? String == "terse" && row["model_b"] as? String == "verbose" && row["judge"] as? String == "judge")
            #expect(["model_a", "model_b", "tie"].contains(row["winner"] as? String ?? ""))
        }
        // Per prompt: two answers, then the judge twice (both orders). Priced from usage.
        let done = try #require(Self.summary(second.stderr), "\(second.stderr)")
        #expect(done.prompts == Self.prompts.count - before && done.calls == 4 * done.prompts, "\(second.stderr)")
        #expect(done.usd > 0)
        // The rows are a battles file as the trainers read it.
        #expect(try BattlesReader.read(file: output).count == Self.prompts.count)

        // Three models: a battles row per pair, all three for the prompt, each judged in both orders.
        let three = directory.path + "/three.jsonl"
        let one = try directory.write("one.jsonl", #"{"prompt": "Name a bird."}"# + "\n")
        let trio = try Self.run(
            [
                "--config", config, "--prompts", one, "--model", "terse", "--model", "verbose", "--model", "judge", "--judge", "judge", "--output",
                three,
            ])
        #expect(trio.status == 0, "\(trio.stderr)")
        let pairs = try BattlesReader.read(file: three).map { [$0.modelA, $0.modelB] }
        #expect(pairs == [["terse", "verbose"], ["terse", "judge"], ["verbose", "judge"]], "\(pairs)")
        #expect(Self.summary(trio.stderr)?.calls == 3 + 2 * 3, "\(trio.stderr)")
    }

    @Test func referenceModeGradesNumbersByExactMatchWithoutAJudge() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.config(in: directory)
        let input = try directory.write(
            "math.jsonl",
            #"{"prompt": "What is 2 + 3? Answer with the number only.", "answer": "5"}"# + "\n"
                + #"{"prompt": "What is 10 - 4? Answer with the number only.", "reference": "6"}"# + "\n")
        let output = directory.path + "/quality.jsonl"
        let run = try Self.run([
            "--config", config, "--prompts", input, "--model", "terse", "--model", "verbose", "--mode", "reference", "--output", output,
        ])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = Self.rows(output)
        #expect(rows.count == 2)
        for row in rows {
            let quality = try #require(row["quality"] as? [String: Double])
            #expect(Set(quality.keys) == ["terse", "verbose"] && quality.values.allSatisfy { $0 == 0 || $0 == 1 }, "\(row)")
            #expect(row["judge"] == nil)
        }
        #expect(Self.summary(run.stderr)?.calls == 4, "two answers per prompt and no judge: \(run.stderr)")
    }
}

/// `routerctl label`'s failures, without an LLM.
@Suite(.timeLimit(.minutes(10))) struct LabelFailureTests {
    @Test func anEndpointThatNeverAnswersFailsAfterItsRetries() throws {
        let directory = try TemporaryDirectory()
        let silent = try CausalLLMConfig.SilentServer()
        let input = try directory.write("p.jsonl", #"{"prompt": "hi", "answer": "1"}"# + "\n")
        let start = Date()
        let run = try runCommand(
            try Package.binary("routerctl"),
            [
                "label", "--config", directory.path + "/none.yaml", "--prompts", input, "--model", "m", "--mode", "reference",
                "--endpoint", "m=http://127.0.0.1:\(silent.port)/v1", "--timeout", "1", "--retries", "1", "--output", directory.path + "/out.jsonl",
            ])
        let elapsed = Date().timeIntervalSince(start)
        #expect(run.status != 0)
        #expect(run.stderr.contains("m: ") && run.stderr.contains("127.0.0.1:\(silent.port)"), "\(run.stderr)")
        #expect(elapsed >= 2, "one try and one retry of 1 s each, and a backoff between; took \(elapsed) s")
    }

    @Test func unknownModelsAndMissingReferencesAreRefused() throws {
        let directory = try TemporaryDirectory()
        let input = try directory.write("p.jsonl", #"{"prompt": "hi"}"# + "\n")
        let args = ["label", "--config", directory.path + "/none.yaml", "--prompts", input, "--output", directory.path + "/o.jsonl"]
        let unknown = try runCommand(try Package.binary("routerctl"), args + ["--model", "x", "--mode", "reference"])
        #expect(unknown.status != 0 && unknown.stderr.contains("model 'x' has no endpoint"), "\(unknown.stderr)")
        let noReference = try runCommand(
            try Package.binary("routerctl"), args + ["--model", "x", "--endpoint", "x=http://127.0.0.1:9/v1", "--mode", "reference"])
        #expect(noReference.status != 0 && noReference.stderr.contains("needs a 'reference'"), "\(noReference.stderr)")
        let oneModel = try runCommand(try Package.binary("routerctl"), args + ["--model", "x", "--judge", "x"])
        #expect(oneModel.status != 0 && oneModel.stderr.contains("two or more --model"), "\(oneModel.stderr)")
    }
}
