import Foundation
import RouterProtocol
import RouterdTestSupport
import SafeTensors
import Testing

/// The matrix-factorisation router served by the daemon, and its trainer.
@Suite(.timeLimit(.minutes(10)), .requires(.encoderModel))
struct MFRouterTests {
    static let weights = Package.root + "/weights/mf-minilm.safetensors"

    static func mfRouter(weights: String = weights, strong: String = TestConfig.strong, weak: String = TestConfig.weak) -> String {
        """
          mf:
            plugin: mf
            threshold: 0.5
            strong_model: \(strong)
            weak_model: \(weak)
            encoder: minilm
            params:
              weights: \(weights)
        """
    }

    /// σ(δ(strong) − δ(weak)) with δ(m, q) = w2ᵀ(v̂_m ⊙ W1 e), straight from the paper's formula.
    static func expectedScore(weights path: String, embedding: [Double], strong: String, weak: String) throws -> Double {
        let file = try SafeTensorsFile(path: path)
        let models = try JSONDecoder().decode([String].self, from: Data(try #require(file.metadata["models"]).utf8))
        let p = try file.floats("P").map(Double.init)
        let w1 = try file.floats("W1").map(Double.init)
        let w2 = try file.floats("w2").map(Double.init)
        let d = w2.count
        let e = embedding.count
        let z = (0..<d).map { k in (0..<e).reduce(0.0) { $0 + w1[k * e + $1] * embedding[$1] } }
        func delta(_ model: String) throws -> Double {
            let row = try #require(models.firstIndex(of: model))
            let v = Array(p[row * d..<(row + 1) * d])
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return (0..<d).reduce(0.0) { $0 + w2[$1] * v[$1] / norm * z[$1] }
        }
        return 1 / (1 + exp(-(try delta(strong) - delta(weak))))
    }

    @Test func decisionsFollowTheMFFormula() throws {
        let daemon = try Daemon(config: {
            TestConfig.yaml(
                socket: $0,
                routers: Self.mfRouter() + "\n"
                    + Self.mfRouter(strong: "claude-2.1", weak: "llama-13b").replacingOccurrences(of: "  mf:", with: "  other:"),
                encoders: EncoderFixture.encoders())
        })
        let connection = try daemon.connect()
        for prompt in ["What is 17 * 23?", "Write a sonnet about the sea in the style of Shakespeare.", "hi"] {
            let embedding = try #require(try connection.request(#"{"op":"embed","text":"\#(prompt)"}"#).result["embeddings"] as? [[Double]])[0]
            let decision = try connection.decision(#"{"op":"route","router":"mf","prompt":"\#(prompt)"}"#)
            let expected = try Self.expectedScore(weights: Self.weights, embedding: embedding, strong: TestConfig.strong, weak: TestConfig.weak)
            #expect(abs(decision.strongScore - expected) < 1e-5, "\(prompt): \(decision.strongScore) vs \(expected)")
            #expect(decision.tier == (decision.strongScore >= 0.5 ? Tier.strong : .weak))
            // Any pair of the weights' models can be routed.
            let other = try connection.decision(#"{"op":"route","router":"other","prompt":"\#(prompt)"}"#)
            let otherExpected = try Self.expectedScore(weights: Self.weights, embedding: embedding, strong: "claude-2.1", weak: "llama-13b")
            #expect(abs(other.strongScore - otherExpected) < 1e-5)
        }
    }

    /// With more candidates, each one's quality is its win rate against the others: the mean of
    /// σ(δ(m) − δ(j)) over the other candidates j, from the same formula.
    @Test func manyCandidatesGetTheirWinRatesAgainstTheOthers() throws {
        let candidates = ["gpt-4-1106-preview", "claude-2.1", "llama-13b", TestConfig.weak]
        let routers = """
              many:
                plugin: mf
                policy: {lambda: 0}
                candidates: [\(candidates.joined(separator: ", "))]
                encoder: minilm
                params:
                  weights: \(Self.weights)
            """
        let daemon = try Daemon(config: {
            TestConfig.yaml(
                socket: $0, routers: routers, encoders: EncoderFixture.encoders(), models: "models: \(Package.root)/etc/routerd/models.yaml")
        })
        let connection = try daemon.connect()
        for prompt in ["What is 17 * 23?", "Write a sonnet about the sea in the style of Shakespeare."] {
            let embedding = try #require(try connection.request(#"{"op":"embed","text":"\#(prompt)"}"#).result["embeddings"] as? [[Double]])[0]
            let decision = try connection.decision(#"{"op":"route","router":"many","prompt":"\#(prompt)"}"#)
            #expect(decision.candidates.map(\.model) == candidates)
            for (index, candidate) in candidates.enumerated() {
                var total = 0.0
                for other in candidates where other != candidate {
                    total += try Self.expectedScore(weights: Self.weights, embedding: embedding, strong: candidate, weak: other)
                }
                let expected = total / Double(candidates.count - 1)
                #expect(abs(decision.candidates[index].quality - expected) < 1e-5, "\(prompt) \(candidate)")
            }
            #expect(decision.model == decision.candidates.max { $0.quality < $1.quality }!.model, "λ = 0: the best")
        }
    }

    @Test func theShippedWeightsCalibrateAStrongFraction() throws {
        let routers = Self.mfRouter().replacingOccurrences(of: "threshold: 0.5", with: "strong_fraction: 0.4")
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, routers: routers, encoders: EncoderFixture.encoders()) })
        let router = try #require((try daemon.connect().request(#"{"op":"routers"}"#).result["routers"] as? [[String: Any]])?.first)
        let file = try SafeTensorsFile(path: Self.weights)
        let quantiles = try JSONDecoder().decode([Double].self, from: Data(try #require(file.metadata["score_quantiles"]).utf8))
        // 40% strong: the 60% quantile of the training prompts' scores.
        #expect(abs((router["threshold"] as? Double ?? -1) - quantiles[60]) < 1e-12)
    }

    @Test func unknownModelsAreRejectedWithTheKnownNames() throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write(
            "routerd.yaml",
            TestConfig.yaml(socket: directory.path + "/s.sock", routers: Self.mfRouter(strong: "gpt-5"), encoders: EncoderFixture.encoders()))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("strong model 'gpt-5' is not in \(Self.weights) (known models: "), "\(check.stderr)")
        #expect(check.stderr.contains("gpt-4-1106-preview"))
    }

    @Test(arguments: [
        ("wrong dimension", [Float](repeating: 0.1, count: 4 * 8), [4, 8], "was made from 8-d embeddings"),
        ("NaN", [Float](repeating: .nan, count: 4 * 384), [4, 384], "tensor 'W1' contains NaN or infinite values"),
    ])
    func badWeightsAreRejected(label: String, w1: [Float], shape: [Int], message: String) throws {
        let directory = try TemporaryDirectory()
        let weights = directory.path + "/bad.safetensors"
        try SafeTensorsWriter.write(
            [
                .init(name: "P", shape: [2, 4], values: [1, 0, 0, 0, 0, 1, 0, 0]), .init(name: "W1", shape: shape, values: w1),
                .init(name: "w2", shape: [4], values: [1, 1, 1, 1]),
            ],
            metadata: ["models": #"["gpt-4-1106-preview","mistralai/Mixtral-8x7B-Instruct-v0.1"]"#], to: weights)
        let config = try directory.write(
            "routerd.yaml",
            TestConfig.yaml(socket: directory.path + "/s.sock", routers: Self.mfRouter(weights: weights), encoders: EncoderFixture.encoders()))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains(message), "\(label): \(check.stderr)")
    }

    @Test func aModelTrainedHereIsServedByTheDaemon() throws {
        let directory = try TemporaryDirectory()
        var lines: [String] = []
        for (index, prompt) in ["Prove Fermat's little theorem.", "Say hello.", "Derive the Navier-Stokes equations.", "What colour is the sky?"]
            .enumerated()
        {
            let hard = index % 2 == 0
            lines.append(#"{"prompt":"\#(prompt)","model_a":"big","model_b":"small","winner":"\#(hard ? "model_a" : "tie")"}"#)
            lines.append(#"{"prompt":"\#(prompt)","model_a":"small","model_b":"big","winner":"\#(hard ? "model_b" : "model_a")"}"#)
        }
        let battles = try directory.write("battles.jsonl", lines.joined(separator: "\n") + "\n")
        let weights = directory.path + "/mf.safetensors"
        let train = try runCommand(
            try Package.binary("routerctl"),
            [
                "train", "mf", battles, "--output", weights, "--model", EncoderFixture.modelDirectory, "--cache", directory.path + "/cache.bin",
                "--epochs", "3", "--dimension", "8", "--validation", "0.3", "--strong", "big", "--weak", "small",
            ])
        #expect(train.status == 0, "\(train.stdout)\(train.stderr)")
        #expect(train.stdout.contains("8 battles, 4 distinct prompts, 2 models"), "\(train.stdout)")
        #expect(train.stdout.contains("wrote \(weights)"))
        let file = try SafeTensorsFile(path: weights)
        #expect(file.metadata["models"] == #"["big","small"]"#)
        #expect(file.metadata["embedding_dim"] == "384")
        #expect(file.metadata["score_quantiles"] != nil)
        let daemon = try Daemon(config: {
            TestConfig.yaml(socket: $0, routers: Self.mfRouter(weights: weights, strong: "big", weak: "small"), encoders: EncoderFixture.encoders())
        })
        // The daemon serves what was trained: its score is the formula on the new weights.
        let connection = try daemon.connect()
        for prompt in ["Prove Fermat's little theorem.", "Say hello."] {
            let embedding = try #require(try connection.request(#"{"op":"embed","text":"\#(prompt)"}"#).result["embeddings"] as? [[Double]])[0]
            let decision = try connection.decision(#"{"op":"route","router":"mf","prompt":"\#(prompt)"}"#)
            let expected = try Self.expectedScore(weights: weights, embedding: embedding, strong: "big", weak: "small")
            #expect(abs(decision.strongScore - expected) < 1e-5, "\(prompt): \(decision.strongScore) vs \(expected)")
        }
        // A second run finds every prompt in the embedding cache.
        let again = try runCommand(
            try Package.binary("routerctl"),
            [
                "train", "mf", battles, "--output", weights, "--model", EncoderFixture.modelDirectory, "--cache", directory.path + "/cache.bin",
                "--epochs", "1", "--dimension", "8", "--strong", "big", "--weak", "small",
            ])
        #expect(again.status == 0)
        #expect(!again.stdout.contains("embedding "), "no prompt is embedded again: \(again.stdout)")
    }
}

/// The trainer refuses bad input with the file, the line and what is wrong.
@Suite(.timeLimit(.minutes(10))) struct TrainingInputTests {
    @Test(arguments: [
        ("empty file", "", "no battles in the file"),
        ("unknown winner", #"{"prompt":"p","model_a":"a","model_b":"b","winner":"draw"}"#, "battles.jsonl:1: unknown winner 'draw'"),
        ("malformed line", #"{"prompt":"p","model_a":"a","model_b":"b","winner":"tie"}"# + "\n{not json", "battles.jsonl:2: not a JSON object"),
        ("missing field", #"{"prompt":"p","model_a":"a","winner":"tie"}"#, "battles.jsonl:1: missing or empty string field 'model_b'"),
        (
            "a model seen once",
            #"{"prompt":"p","model_a":"a","model_b":"b","winner":"model_a"}"# + "\n"
                + #"{"prompt":"q","model_a":"a","model_b":"c","winner":"model_b"}"#,
            "model(s) in fewer than 2 battles cannot be learned: b, c"
        ),
    ])
    func badBattlesAreRefused(label: String, contents: String, message: String) throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("battles.jsonl", contents)
        let run = try runCommand(
            try Package.binary("routerctl"),
            ["train", "mf", file, "--output", directory.path + "/w.safetensors", "--cache", directory.path + "/c.bin"])
        #expect(run.status == 1, "\(label)")
        #expect(run.stderr.contains(message), "\(label): \(run.stderr)")
    }
}
