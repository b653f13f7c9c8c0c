import Foundation
import RouterProtocol
import RouterdTestSupport
import Testing

/// Per-model quality, end to end: `routerctl train quality` on a quality file, the classifier
/// plugin serving it among three candidates, and `routerctl eval --prices` on the same file.
@Suite(.timeLimit(.minutes(10)), .requires(.encoderModel))
struct QualityRouterTests {
    static let maths = [
        "Compute the integral of x squared from 0 to 3.", "Solve for x: 3x + 7 = 22.", "What is the derivative of sin(x) times x?",
        "Find the eigenvalues of the matrix [[2, 1], [1, 2]].", "How many primes are there below 50?", "Simplify (x^2 - 1)/(x - 1).",
        "What is 17 factorial divided by 15 factorial?", "Prove that the sum of two even numbers is even.", "Evaluate the limit of sin(x)/x at 0.",
        "Factor the polynomial x^3 - 6x^2 + 11x - 6.", "What is the probability of two sixes with two dice?", "Compute 2 to the power 20.",
        "Find the area of a circle with radius 7.", "Solve the system x + y = 10, x - y = 2.", "What is the sum of the first 100 integers?",
        "Integrate e to the 2x with respect to x.",
    ]
    static let writing = [
        "Write a short poem about autumn leaves.", "Draft a friendly email inviting colleagues to lunch.", "Tell me a bedtime story about a dragon.",
        "Write a haiku about the ocean.", "Compose a toast for my sister's wedding.", "Describe a sunset over the mountains in vivid prose.",
        "Write a limerick about a cat who loves cheese.", "Give me a motivational speech for a football team.",
        "Write a thank-you note to a teacher.",
        "Write a product description for a handmade candle.", "Tell a funny story about a lost umbrella.", "Write a sonnet about city lights.",
        "Draft a cover letter for a bakery job.", "Write a diary entry from a pirate's point of view.", "Describe your dream house in a paragraph.",
        "Write a short fable about a patient tortoise.",
    ]

    /// mathy is right on maths only, chatty on writing only, big on both.
    static func qualityFile(in directory: TemporaryDirectory) throws -> String {
        var lines: [String] = []
        for (prompt, isMaths) in maths.map({ ($0, true) }) + writing.map({ ($0, false) }) {
            let quality = ["mathy": isMaths ? 1 : 0, "chatty": isMaths ? 0 : 1, "big": 1]
            let object: [String: Any] = ["prompt": prompt, "quality": quality]
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        }
        return try directory.write("quality.jsonl", lines.joined(separator: "\n") + "\n")
    }

    static let catalogue = """
        models:
          mathy: {input: 0.1, output: 0.1, output_tokens: 100}
          chatty: {input: 0.1, output: 0.1, output_tokens: 100}
          big: {input: 10, output: 30, output_tokens: 100}
        """

    static func router(weights: String) -> String {
        """
          many:
            plugin: classifier
            policy: {lambda: 100}
            candidates: [mathy, chatty, big]
            encoder: minilm
            params:
              weights: \(weights)
        """
    }

    /// Trains quality weights on ``qualityFile(in:)`` with `routerctl train quality`.
    static func trainWeights(in directory: TemporaryDirectory) throws -> (file: String, weights: String) {
        let file = try Self.qualityFile(in: directory)
        let weights = directory.path + "/quality.safetensors"
        let train = try runCommand(
            try Package.binary("routerctl"),
            [
                "train", "quality", file, "--output", weights, "--model", EncoderFixture.modelDirectory, "--cache", directory.path + "/cache.bin",
                "--test-split", "0", "--validation", "0.2", "--epochs", "400", "--learning-rate", "0.05", "--patience", "400",
            ])
        #expect(train.status == 0, "\(train.stdout)\(train.stderr)")
        #expect(train.stdout.contains("32 prompts (test share 0.0 left out), 3 models, 96 qualities, 0 battles"), "\(train.stdout)")
        return (file, weights)
    }

    @Test func aQualityModelTrainedHereRoutesEachKindOfPromptToItsModel() throws {
        let directory = try TemporaryDirectory()
        let (file, weights) = try Self.trainWeights(in: directory)
        let catalogue = try directory.write("models.yaml", Self.catalogue)
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(
                    socket: $0, routers: Self.router(weights: weights), encoders: EncoderFixture.encoders(), models: "models: \(catalogue)")
            })
        let connection = try daemon.connect()
        let routers = try #require(try connection.request(#"{"op":"routers"}"#).result["routers"] as? [[String: Any]])
        #expect(routers[0]["quality"] as? String == "probability")
        // Prompts it never saw: each kind goes to its own cheap model, since big costs too much at λ = 100.
        for (prompt, expected) in [
            ("What is the integral of cos(x) from 0 to pi?", "mathy"), ("Solve 5x - 3 = 12 for x.", "mathy"),
            ("Write a poem about a rainy morning.", "chatty"), ("Draft a birthday message for my grandmother.", "chatty"),
        ] {
            let decision = try connection.decision(#"{"op":"route","router":"many","prompt":"\#(prompt)"}"#)
            #expect(decision.model == expected, "\(prompt): \(decision.candidates)")
            // The predictions say why: big is right everywhere, the other cheap model is not.
            let quality = Dictionary(uniqueKeysWithValues: decision.candidates.map { ($0.model, $0.quality) })
            let other = expected == "mathy" ? "chatty" : "mathy"
            #expect(quality["big"]! > 0.8 && quality[expected]! > 0.7 && quality[other]! < 0.3, "\(prompt): \(quality)")
        }

        // The many-model evaluation on the same file: every figure it prints, with the baselines beside it.
        let config = try directory.write(
            "eval.yaml",
            TestConfig.yaml(
                socket: directory.path + "/unused.sock", routers: Self.router(weights: weights), encoders: EncoderFixture.encoders(),
                models: "models: \(catalogue)"))
        let eval = try runCommand(
            try Package.binary("routerctl"),
            [
                "eval", "--config", config, "--routers", "many", "--benchmarks", "", "--file", file, "--prices", catalogue, "--test-split", "1",
                "--out", directory.path + "/out",
            ])
        #expect(eval.status == 0, "\(eval.stdout)\(eval.stderr)")
        #expect(eval.stdout.contains("32 prompts evaluated (test share 1.0 by prompt hash)"), "\(eval.stdout)")
        #expect(eval.stdout.contains("single models (hull)"))
        let results = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory.path + "/out/results.json"))) as? [[String: Any]])
        let many = try #require(results.first { $0["router"] as? String == "many" })
        let singles = try #require(results.first { $0["router"] as? String == "single models" })
        // It trained on these prompts, so it knows them: well above the single models' hull.
        #expect((many["aiq"] as? Double ?? 0) > (singles["aiq"] as? Double ?? 1) + 0.2, "\(many) vs \(singles)")
        #expect(FileManager.default.fileExists(atPath: directory.path + "/out/quality.cost.svg"))
        // The same plot as a PNG: its signature, and a picture of some size.
        let png = try Data(contentsOf: URL(fileURLWithPath: directory.path + "/out/quality.cost.png"))
        #expect(png.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        #expect(png.count > 10_000)
    }

    static func quality(_ decision: [String: Any]) -> [String: Double] {
        Dictionary(
            uniqueKeysWithValues: (decision["candidates"] as? [[String: Any]] ?? []).map {
                ($0["model"] as? String ?? "", $0["quality"] as? Double ?? .nan)
            })
    }

    /// Issue 24: the classifier's quality router learns from one model's result per prompt, as a
    /// service reports it, keeps what it learned across a restart, falls back to its weights when
    /// the state is damaged, and a router of the same weights explores by Thompson sampling.
    @Test func aQualityRouterLearnsFromOneSidedOutcomesAndExploresByThompsonSampling() throws {
        let directory = try TemporaryDirectory()
        let (_, weights) = try Self.trainWeights(in: directory)
        let catalogue = try directory.write("models.yaml", Self.catalogue)
        let feedback = directory.path + "/feedback"
        // Priors of 10 outcomes: 16 outcomes must move the fit here (the default, 100, was chosen on thousands).
        let routers =
            Self.router(weights: weights) + "\n      prior: 10\n      difficulty_prior: 10\n"
            + Self.router(weights: weights).replacingOccurrences(of: "  many:", with: "  thompson:")
            + "\n    learn: false\n    explore: {strategy: thompson, max_share: 0.5, seed: 2}"
        let config = { (socket: String) in
            TestConfig.yaml(
                socket: socket, routers: routers, encoders: EncoderFixture.encoders(), models: "models: \(catalogue)",
                extra: "feedback:\n  directory: \(feedback)\n  learning: {publish_every: 8, publish_interval_ms: 100}")
        }
        var daemon: Daemon? = try Daemon(directory: directory, config: config)
        var connection = try daemon!.connect()
        let probe = #"{"op":"route","router":"many","prompt":"Solve 5x - 3 = 12 for x."}"#
        let before = try connection.request(probe).result
        #expect(before["model"] as? String == "mathy", "\(before)")

        // mathy's provider changed and now gets maths wrong, and chatty, tried on the others, gets
        // them right; the service sees only the model it called.
        for (index, prompt) in Self.maths.enumerated() {
            let decision = try connection.request(#"{"op":"route","router":"many","prompt":"\#(prompt)"}"#).result
            let id = try #require(decision["decision_id"] as? String)
            let (model, quality) = index % 2 == 0 ? ("mathy", 0) : ("chatty", 1)
            let reply = try connection.request(#"{"op":"feedback","decision_id":"\#(id)","model":"\#(model)","quality":\#(quality)}"#)
            #expect(reply.ok, "\(reply)")
        }
        let folded = try eventually(within: 30) { (try OnlineLearningTests.status(connection, router: "many")["events"] as? Int) == Self.maths.count }
        #expect(folded, "\(String(describing: try? OnlineLearningTests.status(connection, router: "many")))")
        let status = try OnlineLearningTests.status(connection, router: "many")
        let learned = try #require(status["learned"] as? [String: Any])
        #expect(learned["learned_outcomes"] as? Int == Self.maths.count && learned["learned_events"] as? Int == Self.maths.count, "\(learned)")
        #expect((learned["learned_bytes"] as? Int ?? .max) <= (learned["learned_bytes_limit"] as? Int ?? 0))
        let stateFile = feedback + "/learned/many/learned.safetensors"
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: stateFile)[.posixPermissions] as? Int)
        #expect(mode == 0o600, "mode \(String(mode, radix: 8))")

        let after = try connection.request(probe).result
        let (was, now) = (Self.quality(before), Self.quality(after))
        #expect(now["mathy"]! < was["mathy"]! - 0.3, "mathy failed every maths prompt it was given: \(was) → \(now)")
        #expect(now["chatty"]! > was["chatty"]! + 0.3, "chatty got right every maths prompt it was given: \(was) → \(now)")
        #expect(after["model"] as? String != "mathy", "an unseen maths prompt no longer goes to mathy: \(after)")
        // The same weights, frozen, still believe in mathy.
        let frozen = try connection.request(probe.replacingOccurrences(of: #""router":"many""#, with: #""router":"thompson""#)).result
        #expect(abs(Self.quality(frozen)["mathy"]! - was["mathy"]!) < 1e-9)
        // Thompson sampling logs every decision's propensity.
        for prompt in Self.writing.prefix(10) {
            let decision = try connection.request(#"{"op":"route","router":"thompson","prompt":"\#(prompt)"}"#).result
            let propensity = try #require(decision["propensity"] as? Double)
            #expect(propensity > 0 && propensity <= 1 && decision["explored"] is Bool, "\(decision)")
        }

        // A restart starts from the learned state.
        daemon!.stop()
        daemon = try Daemon(directory: directory, config: config)
        connection = try daemon!.connect()
        #expect(abs(Self.quality(try connection.request(probe).result)["mathy"]! - now["mathy"]!) < 1e-9)

        // A damaged state: set aside, the weights alone decide, and the router keeps serving.
        daemon!.stop()
        try Data("not a safetensors file".utf8).write(to: URL(fileURLWithPath: stateFile))
        daemon = try Daemon(directory: directory, config: config)
        connection = try daemon!.connect()
        let fresh = try connection.request(probe).result
        #expect(abs(Self.quality(fresh)["mathy"]! - was["mathy"]!) < 1e-9 && fresh["model"] as? String == "mathy", "\(fresh)")
        #expect(FileManager.default.fileExists(atPath: stateFile + ".unusable"))
    }
}
