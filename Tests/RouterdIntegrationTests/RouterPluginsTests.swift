import Foundation
import RouterProtocol
import RouterdTestSupport
import SafeTensors
import SimilarityRanking
import Testing

/// Battles where "big" wins on hard prompts and "small" holds its own on easy ones.
enum TinyBattles {
    static let hard = ["Prove Fermat's little theorem.", "Derive the Navier-Stokes equations.", "Prove that the square root of 2 is irrational."]
    static let easy = ["Say hello.", "What colour is the sky?", "Say good morning to my friend."]

    static func write(in directory: TemporaryDirectory) throws -> String {
        var lines: [String] = []
        for prompt in hard {
            for _ in 0..<3 { lines.append(#"{"prompt":"\#(prompt)","model_a":"big","model_b":"small","winner":"model_a"}"#) }
        }
        for prompt in easy {
            lines.append(#"{"prompt":"\#(prompt)","model_a":"big","model_b":"small","winner":"tie"}"#)
            lines.append(#"{"prompt":"\#(prompt)","model_a":"small","model_b":"big","winner":"model_a"}"#)
            lines.append(#"{"prompt":"\#(prompt)","model_a":"big","model_b":"small","winner":"model_b"}"#)
        }
        return try directory.write("battles.jsonl", lines.joined(separator: "\n") + "\n")
    }

    /// Builds an sw_ranking index of these battles at `index` with `routerctl train sw_ranking` (big strong, small weak).
    static func trainIndex(at index: String, in directory: TemporaryDirectory) throws -> (status: Int32, stdout: String, stderr: String) {
        try runCommand(
            try Package.binary("routerctl"),
            [
                "train", "sw_ranking", try write(in: directory), "--output", index, "--model", EncoderFixture.modelDirectory,
                "--cache", directory.path + "/cache.bin", "--strong", "big", "--weak", "small",
            ])
    }

    static func router(_ name: String, plugin: String, params: String, strong: String = "big", weak: String = "small") -> String {
        """
          \(name):
            plugin: \(plugin)
            threshold: 0.5
            strong_model: \(strong)
            weak_model: \(weak)
            encoder: minilm
            params:
              \(params)
        """
    }
}

@Suite(.timeLimit(.minutes(10)), .requires(.encoderModel))
struct SWRankingRouterTests {
    @Test func anIndexBuiltHereRoutesHardPromptsStrongAndEasyOnesWeak() throws {
        let directory = try TemporaryDirectory()
        let index = directory.path + "/sw.safetensors"
        let build = try TinyBattles.trainIndex(at: index, in: directory)
        #expect(build.status == 0, "\(build.stdout)\(build.stderr)")
        #expect(build.stdout.contains("index: 6 prompts"), "\(build.stdout)")
        let file = try SafeTensorsFile(path: index)
        #expect(file.metadata["format"] == "llm-router.sw_ranking/1")
        #expect(file.tensors["embeddings"]?.shape == [6, 384])
        #expect(file.metadata["quantile_pair"] != nil)

        let daemon = try Daemon(config: {
            TestConfig.yaml(
                socket: $0, routers: TinyBattles.router("sw", plugin: "sw_ranking", params: "index: \(index)"), encoders: EncoderFixture.encoders())
        })
        let connection = try daemon.connect()
        let hard = try connection.decision(#"{"op":"route","router":"sw","prompt":"Prove that there are infinitely many primes."}"#)
        let easy = try connection.decision(#"{"op":"route","router":"sw","prompt":"Say hello to my sister."}"#)
        #expect(hard.tier == .strong, "score \(hard.score)")
        #expect(easy.tier == .weak, "score \(easy.score)")
        // The swapped pair is the complement: P(small beats big) = 1 − P(big beats small).
        let swappedDaemon = try Daemon(config: {
            TestConfig.yaml(
                socket: $0, routers: TinyBattles.router("sw", plugin: "sw_ranking", params: "index: \(index)", strong: "small", weak: "big"),
                encoders: EncoderFixture.encoders())
        })
        let swapped = try swappedDaemon.connect().decision(#"{"op":"route","router":"sw","prompt":"Prove that there are infinitely many primes."}"#)
        #expect(abs(swapped.strongScore - (1 - hard.strongScore)) < 1e-9)
    }

    @Test func theShippedIndexServesTheDefaultPairAndCalibrates() throws {
        let index = Package.root + "/weights/sw-ranking-minilm.safetensors"
        // Served with the settings its quantiles were computed with (the shipped config's).
        let stored = try #require(try SafeTensorsFile(path: index).metadata[RankingSettings.metadataKey])
        let settings = try #require(RankingSettings.decodeStored(stored))
        let neighbors = try #require(settings.neighbors)
        let routers = TinyBattles.router(
            "sw", plugin: "sw_ranking",
            params:
                "index: \(index)\n      gamma: \(settings.gamma)\n      neighbors: \(neighbors)\n      weight_unit: \(settings.weightUnit.rawValue)",
            strong: TestConfig.strong,
            weak: TestConfig.weak
        ).replacingOccurrences(of: "threshold: 0.5", with: "strong_fraction: 0.3")
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, routers: routers, encoders: EncoderFixture.encoders()) })
        let connection = try daemon.connect()
        let router = try #require((try connection.request(#"{"op":"routers"}"#).result["routers"] as? [[String: Any]])?.first)
        let quantiles = try JSONDecoder().decode(
            [Double].self, from: Data(try #require(try SafeTensorsFile(path: index).metadata["score_quantiles"]).utf8))
        #expect(abs((router["threshold"] as? Double ?? -1) - quantiles[70]) < 1e-12)
        // Each score is RouteLLM's weighting with these settings, recomputed here from the index file:
        // the k most similar prompts, ω = γ^(1 + s / max s) (shared among a prompt's battles with
        // prompt units), then a Bradley–Terry fit (BradleyTerry.fit, tested on its own in SimilarityRankingTests).
        let file = try RankingIndex(file: try SafeTensorsFile(path: index))
        let strong = try #require(file.models.firstIndex(of: TestConfig.strong))
        let weak = try #require(file.models.firstIndex(of: TestConfig.weak))
        var scores: [Double] = []
        for prompt in ["Solve x^2 - 5x + 6 = 0.", "Say hello to my sister.", "Which gas do plants absorb? A. oxygen B. carbon dioxide"] {
            let query = try #require(try connection.request(#"{"op":"embed","text":"\#(prompt)"}"#).result["embeddings"] as? [[Double]])[0]
            let norm = query.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let similarity = (0..<file.promptCount).map { row in
                (0..<file.dimension).reduce(0.0) { $0 + Double(file.embeddings[row * file.dimension + $1]) * query[$1] } / norm
            }
            let cut = similarity.sorted(by: >)[neighbors - 1]
            let largest = similarity.max()!
            var wins = [Double](repeating: 0, count: file.models.count * file.models.count)
            var (weighted, battles) = (0.0, 0.0)
            for row in 0..<file.promptCount where similarity[row] >= cut {
                let rowWins = file.wins[file.promptStart[row]..<file.promptStart[row + 1]]
                let mass = rowWins.reduce(0.0) { $0 + Double($1.weight) }
                let omega = pow(settings.gamma, 1 + similarity[row] / largest) / (settings.weightUnit == .prompt ? mass : 1)
                for win in rowWins {
                    wins[win.winner * file.models.count + win.loser] += omega * Double(win.weight)
                    weighted += omega * Double(win.weight)
                    battles += Double(win.weight)
                }
            }
            let theta = BradleyTerry.fit(wins: wins, models: file.models.count, prior: settings.prior * weighted / battles)
            let expected = 1 / (1 + exp(theta[weak] - theta[strong]))
            let decision = try connection.decision(#"{"op":"route","router":"sw","prompt":"\#(prompt)"}"#)
            #expect(abs(decision.strongScore - expected) < 1e-4, "\(prompt): \(decision.strongScore) vs \(expected)")
            #expect(decision.tier == (decision.strongScore >= quantiles[70] ? .strong : .weak))
            scores.append(decision.strongScore)
        }
        #expect(Set(scores).count == scores.count, "the scores depend on the prompt: \(scores)")
    }

    @Test func quantilesComputedWithOtherSettingsAreNotUsed() throws {
        // An index's quantiles hold for the settings they were computed with (here the trainer's
        // defaults: γ 10, every prompt, battle units); with prompt units the scores differ, so
        // strong_fraction must be refused, not mis-set. A tiny index keeps this cheap.
        let directory = try TemporaryDirectory()
        let index = directory.path + "/sw.safetensors"
        let build = try TinyBattles.trainIndex(at: index, in: directory)
        try #require(build.status == 0, "\(build.stdout)\(build.stderr)")
        func check(_ params: String) throws -> (status: Int32, stdout: String, stderr: String) {
            let routers = TinyBattles.router("sw", plugin: "sw_ranking", params: "index: \(index)" + params)
                .replacingOccurrences(of: "threshold: 0.5", with: "strong_fraction: 0.3")
            let config = try directory.write(
                "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: routers, encoders: EncoderFixture.encoders()))
            return try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        }
        #expect(try check("").status == 0, "the stored settings take strong_fraction")
        let other = try check("\n      weight_unit: prompt")
        #expect(other.status != 0)
        #expect(other.stderr.contains("strong_fraction needs score quantiles"), "\(other.stderr)")
    }

    @Test(arguments: [
        ("unknown model", "index: \(Package.root)/weights/sw-ranking-minilm.safetensors", "gpt-5", "strong model 'gpt-5' is not in"),
        ("not an index", "index: \(Package.root)/weights/mf-minilm.safetensors", TestConfig.strong, "not an sw_ranking index"),
        (
            "gamma", "index: \(Package.root)/weights/sw-ranking-minilm.safetensors\n      gamma: 0.5", TestConfig.strong,
            "gamma must be a number of at least 1"
        ),
        (
            "neighbors", "index: \(Package.root)/weights/sw-ranking-minilm.safetensors\n      neighbors: 0", TestConfig.strong,
            "neighbors must be at least 1"
        ),
        (
            "weight unit", "index: \(Package.root)/weights/sw-ranking-minilm.safetensors\n      weight_unit: question", TestConfig.strong,
            "weight_unit must be 'battle' or 'prompt', not 'question'"
        ),
    ])
    func badSettingsAreRejectedAtLoad(label: String, params: String, strong: String, message: String) throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write(
            "routerd.yaml",
            TestConfig.yaml(
                socket: directory.path + "/s.sock",
                routers: TinyBattles.router("sw", plugin: "sw_ranking", params: params, strong: strong, weak: TestConfig.weak),
                encoders: EncoderFixture.encoders()))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0, "\(label)")
        #expect(check.stderr.contains(message), "\(label): \(check.stderr)")
    }

    @Test func anIndexOfAnotherDimensionIsRejected() throws {
        let directory = try TemporaryDirectory()
        let index = directory.path + "/small.safetensors"
        try SafeTensorsWriter.write(
            [
                .init(name: "embeddings", shape: [1, 8], values: [Float](repeating: 0.5, count: 8)),
                .init(name: "wins", shape: [1, 4], values: [0, 0, 1, 1]),
            ],
            metadata: ["format": "llm-router.sw_ranking/1", "models": #"["big","small"]"#, "encoder": "tiny"], to: index)
        let config = try directory.write(
            "routerd.yaml",
            TestConfig.yaml(
                socket: directory.path + "/s.sock", routers: TinyBattles.router("sw", plugin: "sw_ranking", params: "index: \(index)"),
                encoders: EncoderFixture.encoders()))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("was made from 8-d embeddings (encoder 'tiny'), but this router's encoder gives 384-d"), "\(check.stderr)")
    }
}

@Suite(.timeLimit(.minutes(10)), .requires(.encoderModel))
struct ClassifierRouterTests {
    /// 1 − P(tie) − P(weak wins) of softmax regression, computed here in Double from the weights file.
    static func expectedScore(weights: String, embedding: [Double]) throws -> Double {
        let file = try SafeTensorsFile(path: weights)
        let w = try file.floats("W2").map(Double.init)
        let b = try file.floats("b2").map(Double.init)
        let logits = (0..<3).map { row in b[row] + (0..<embedding.count).reduce(0.0) { $0 + w[row * embedding.count + $1] * embedding[$1] } }
        let exps = logits.map { exp($0 - logits.max()!) }
        return 1 - (exps[1] + exps[2]) / exps.reduce(0, +)
    }

    @Test func aHeadTrainedHereIsServedAndFollowsTheFormula() throws {
        let directory = try TemporaryDirectory()
        let weights = directory.path + "/classifier.safetensors"
        let train = try runCommand(
            try Package.binary("routerctl"),
            [
                "train", "classifier", try TinyBattles.write(in: directory), "--output", weights, "--model", EncoderFixture.modelDirectory, "--cache",
                directory.path + "/cache.bin", "--hidden", "0", "--epochs", "40", "--learning-rate", "0.05", "--validation", "0",
            ])
        #expect(train.status == 0, "\(train.stdout)\(train.stderr)")
        #expect(train.stdout.contains("18 examples (stronger won 9, tie 3, weaker won 6)"), "\(train.stdout)")
        let file = try SafeTensorsFile(path: weights)
        #expect(file.metadata["format"] == "llm-router.classifier/1")
        #expect(file.tensors["W2"]?.shape == [3, 384])
        #expect(file.tensors["W1"] == nil)

        let daemon = try Daemon(config: {
            TestConfig.yaml(
                socket: $0, routers: TinyBattles.router("bert", plugin: "classifier", params: "weights: \(weights)"),
                encoders: EncoderFixture.encoders())
        })
        let connection = try daemon.connect()
        var scores: [String: Double] = [:]
        for prompt in ["Prove Fermat's little theorem.", "Say hello."] {
            let embedding = try #require(try connection.request(#"{"op":"embed","text":"\#(prompt)"}"#).result["embeddings"] as? [[Double]])[0]
            let decision = try connection.decision(#"{"op":"route","router":"bert","prompt":"\#(prompt)"}"#)
            #expect(abs(decision.strongScore - (try Self.expectedScore(weights: weights, embedding: embedding))) < 1e-5)
            scores[prompt] = decision.score
        }
        // It learned the data: the hard prompt is likelier a strong win than the easy one.
        #expect(scores["Prove Fermat's little theorem."]! > scores["Say hello."]!)
    }

    @Test func theShippedHeadLoadsAndRejectsAnotherDimension() throws {
        let directory = try TemporaryDirectory()
        let bad = directory.path + "/bad.safetensors"
        try SafeTensorsWriter.write(
            [.init(name: "W2", shape: [3, 8], values: [Float](repeating: 0, count: 24)), .init(name: "b2", shape: [3], values: [0, 0, 0])],
            metadata: ["format": "llm-router.classifier/1", "encoder": "tiny"], to: bad)
        let routers =
            TinyBattles.router(
                "good", plugin: "classifier", params: "weights: \(Package.root)/weights/classifier-minilm.safetensors", strong: TestConfig.strong,
                weak: TestConfig.weak) + "\n"
            + TinyBattles.router("bad", plugin: "classifier", params: "weights: \(bad)")
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: routers, encoders: EncoderFixture.encoders()))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("router 'bad'"), "\(check.stderr)")
        #expect(check.stderr.contains("was made from 8-d embeddings (encoder 'tiny')"), "\(check.stderr)")
        #expect(!check.stderr.contains("router 'good'"), "\(check.stderr)")
    }
}
