import Foundation
import RouterProtocol
import RouterdTestSupport
import StableHash
import Testing

/// The budget policy holds its target online while the mix of prompts drifts.
@Suite(
    .timeLimit(.minutes(10)), .requires(.encoderModel),
    .requires(.sharedData("train/mmlu-pro.quality.jsonl")))
struct BudgetTests {
    static let train = SharedData.path("train/")

    /// The distinct `prompt` fields of a JSONL file, in file order.
    static func prompts(_ file: String) throws -> [String] {
        var seen: Set<String> = []
        return try String(contentsOfFile: train + file, encoding: .utf8).split(separator: "\n").compactMap { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            guard let prompt = object?["prompt"] as? String, seen.insert(prompt).inserted else { return nil }
            return prompt
        }
    }

    /// `count` prompts drifting from MMLU-style questions to Arena chat: prompt i is chat with
    /// probability i / count, drawn from `pool` chat prompts and as many MMLU-Pro questions (a real
    /// service sees prompts again, and the embedding cache keeps the replay quick). Embedding the
    /// distinct prompts is nearly all of the replay's time (75 ms each in a debug routerd, the chat
    /// ones mostly at the 256-piece cap), so the pools are as small as keeps the drift varied.
    static func driftingStream(count: Int, pool: Int = 200) throws -> [String] {
        let chat = Array(try prompts("arena-bench-v1.questions.jsonl").prefix(pool / 2) + prompts("arena-hard-v0.1.battles.jsonl").prefix(pool / 2))
        let questions = Array(try prompts("mmlu-pro.quality.jsonl").prefix(chat.count))
        return (0..<count).map { index in
            let draw = SplitMix64.mix(UInt64(index))
            let pool = Double(draw >> 11) / Double(1 << 53) < Double(index) / Double(count) ? chat : questions
            return pool[Int(SplitMix64.mix(draw) % UInt64(pool.count))]
        }
    }

    static func router(_ name: String, target: String) -> String {
        """
          \(name):
            plugin: mf
            policy: {budget: {\(target)}}
            candidates: [gpt-4-1106-preview, claude-instant-1, gpt-3.5-turbo-1106, mistralai/Mixtral-8x7B-Instruct-v0.1]
            encoder: minilm
            params:
              weights: \(Package.root)/weights/mf-minilm.safetensors
        """
    }

    /// One router's budget after each decision from the warm-up on, and its decisions.
    struct Run: Sendable {
        var checkpoints: [(index: Int, achieved: Double, lambda: Double)] = []
        var target = 0.0
        var decisions: [Decision] = []
    }

    /// The two budgets' replay, made once for both tests: each prompt is routed by a mean-cost router
    /// and then by a share router of one daemon, so the encoder embeds it once (the second is a
    /// cache hit) and the slow part, 400 distinct prompts, is paid once.
    static let drift: Result<[String: Run], any Error> = Result {
        try replay(routers: ["mean_cost": "mean_cost: 0.003", "share": "share: 0.3, model: gpt-4-1106-preview"])
    }

    /// Replays the stream through every router and returns each budget's `stats` after each decision
    /// from `warmUp` on, every `every`. The budget's default window is 1,000 decisions: the checks
    /// start after one window.
    static func replay(routers: [String: String], count: Int = 4000, warmUp: Int = 1000, every: Int = 100) throws -> [String: Run] {
        let stream = try driftingStream(count: count)
        let names = routers.keys.sorted()
        let daemon = try Daemon(config: {
            TestConfig.yaml(
                socket: $0, routers: names.map { Self.router($0, target: routers[$0]!) }.joined(separator: "\n"),
                encoders: EncoderFixture.encoders(cacheSize: 10000), models: "models: \(Package.root)/etc/routerd/models.yaml")
        })
        let connection = try daemon.connect()
        var runs = Dictionary(uniqueKeysWithValues: names.map { ($0, Run()) })
        for (index, prompt) in stream.enumerated() {
            let escaped = String(decoding: try JSONEncoder().encode(prompt), as: UTF8.self)
            for name in names {
                runs[name]!.decisions.append(try connection.decision(#"{"op":"route","router":"\#(name)","prompt":\#(escaped)}"#))
            }
            if index + 1 >= warmUp, (index + 1) % every == 0 {
                let stats = try connection.request(#"{"op":"stats"}"#).result
                for name in names {
                    let budget = try #require(((stats["routers"] as? [String: Any])?[name] as? [String: Any])?["budget"] as? [String: Any])
                    runs[name]!.target = try #require(budget["target"] as? Double)
                    runs[name]!.checkpoints.append(
                        (index + 1, try #require(budget["achieved"] as? Double), try #require(budget["lambda"] as? Double)))
                }
            }
        }
        return runs
    }

    @Test func aMeanCostTargetIsHeldWithinFivePercentWhileTheMixDrifts() throws {
        let run = try #require(try Self.drift.get()["mean_cost"])
        #expect(run.target == 0.003)
        for checkpoint in run.checkpoints {
            let error = (checkpoint.achieved - run.target) / run.target
            print(
                String(
                    format: "budget mean_cost: after %4d decisions achieved $%.6f (%+.1f%%), λ %.1f", checkpoint.index, checkpoint.achieved,
                    error * 100, checkpoint.lambda))
            #expect(abs(error) <= 0.05, "after \(checkpoint.index) decisions: achieved \(checkpoint.achieved) for target \(run.target)")
        }
        // The controller had to move: a λ fitted on MMLU-style prompts would overspend on chat, whose prompts are longer.
        let lambdas = run.checkpoints.map(\.lambda)
        #expect(lambdas.max()! > lambdas.min()! * 1.1, "λ followed the drift: \(lambdas)")
        #expect(Set(run.decisions.map(\.model)).count >= 2)
        #expect(run.decisions.allSatisfy { $0.policy == "budget" && $0.lambda != nil })
    }

    @Test func aShareTargetIsHeldWithinFivePercentWhileTheMixDrifts() throws {
        let run = try #require(try Self.drift.get()["share"])
        for checkpoint in run.checkpoints {
            print(String(format: "budget share: after %4d decisions achieved %.3f, λ %.1f", checkpoint.index, checkpoint.achieved, checkpoint.lambda))
            #expect(abs(checkpoint.achieved - 0.3) <= 0.3 * 0.05, "after \(checkpoint.index) decisions: share \(checkpoint.achieved)")
        }
    }
}
