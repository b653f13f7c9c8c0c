import Foundation
import RouterProtocol
import RouterdTestSupport
import SafeTensors
import Synchronization
import Testing

/// Issue 6's proof: clients pipeline decisions over 8 connections while the
/// config changes under them 50 times, 10 of them broken.
@Suite(.timeLimit(.minutes(10)), .requires(.encoderModel))
struct SoakTests {
    static let prompts = [
        "Prove that the halting problem is undecidable.", "Say hello to my friend.", "Write a haiku about autumn.",
        "What is the derivative of x^3 sin x?",
    ]

    /// Every decision a client saw.
    struct Seen: Sendable {
        var router: String
        var prompt: String
        var decision: Decision
    }

    /// What one client thread collected.
    final class ClientLog: @unchecked Sendable {
        // Written by its client thread only, read after it joined.
        var seen: [Seen] = []
        var failures: [String] = []
    }

    final class StopFlag: Sendable {
        private let stopped = Mutex(false)
        var isSet: Bool { stopped.withLock { $0 } }
        func set() { stopped.withLock { $0 = true } }
    }

    @Test func fiftyReloadsUnderEightPipeliningClientsLoseNothing() throws {
        let directory = try TemporaryDirectory()
        let weightsA = directory.path + "/mf-a.safetensors"
        let weightsB = directory.path + "/mf-b.safetensors"
        try FileManager.default.copyItem(atPath: MFRouterTests.weights, toPath: weightsA)
        try WeightsSwapTests.writeFlippedWeights(to: weightsB)
        let badPlugins = directory.path + "/bad-plugins"
        _ = try directory.write(
            "bad-plugins/badabi/plugin.yaml",
            "name: badabi\nlibrary: \(Package.binDirectory)/libRandomRouter.so\nabi_version: 2\nversion: 9.9.9\nembedding: none\n")
        let wrongDimension = directory.path + "/dim8.safetensors"
        try SafeTensorsWriter.write(
            [
                .init(name: "P", shape: [2, 4], values: [1, 0, 0, 0, 0, 1, 0, 0]),
                .init(name: "W1", shape: [4, 8], values: .init(repeating: 0.1, count: 32)),
                .init(name: "w2", shape: [4], values: [1, 1, 1, 1]),
            ], metadata: ["models": "[\"\(TestConfig.strong)\",\"\(TestConfig.weak.replacingOccurrences(of: "/", with: "\\/"))\"]"],
            to: wrongDimension)
        let nanWeights = directory.path + "/nan.safetensors"
        try SafeTensorsWriter.write(
            [
                .init(name: "P", shape: [2, 4], values: [1, 0, 0, 0, 0, 1, 0, 0]),
                .init(name: "W1", shape: [4, 384], values: .init(repeating: .nan, count: 4 * 384)),
                .init(name: "w2", shape: [4], values: [1, 1, 1, 1]),
            ], metadata: ["models": "[\"\(TestConfig.strong)\",\"\(TestConfig.weak)\"]"], to: nanWeights)
        let torn = directory.path + "/torn.safetensors"
        let full = try #require(FileManager.default.contents(atPath: weightsA))
        try full.prefix(full.count / 2).write(to: URL(fileURLWithPath: torn))

        func config(socket: String, threshold: Double, weights: String, extra: Bool, mfStrong: String = TestConfig.strong, plugin: String = "random")
            -> String
        {
            var routers =
                TestConfig.randomRouter(threshold: threshold).replacingOccurrences(of: "plugin: random", with: "plugin: \(plugin)") + "\n"
                + MFRouterTests.mfRouter(weights: weights, strong: mfStrong).replacingOccurrences(
                    of: "threshold: 0.5", with: "threshold: \(threshold)")
            if extra { routers += "\n" + TestConfig.randomRouter(name: "extra", seed: 3) }
            return TestConfig.yaml(
                socket: socket, routers: routers, searchPaths: [Package.root + "/plugins", badPlugins], encoders: EncoderFixture.encoders())
        }
        let daemon = try Daemon(directory: directory, config: { config(socket: $0, threshold: 0.5, weights: weightsA, extra: false) })
        let broken: [(name: String, text: String, message: String)] = [
            ("bad YAML", "routers:\n  random: [unclosed\n", "routerd.yaml:3:"),
            (
                "missing weights", config(socket: daemon.socket, threshold: 0.5, weights: directory.path + "/absent.safetensors", extra: false),
                "absent.safetensors"
            ),
            (
                "wrong dimension", config(socket: daemon.socket, threshold: 0.5, weights: wrongDimension, extra: false),
                "was made from 8-d embeddings"
            ),
            ("NaN weights", config(socket: daemon.socket, threshold: 0.5, weights: nanWeights, extra: false), "contains NaN or infinite values"),
            (
                "unknown plugin", config(socket: daemon.socket, threshold: 0.5, weights: weightsA, extra: false, plugin: "nosuch"),
                "unknown plugin 'nosuch'"
            ),
            (
                "ABI mismatch", config(socket: daemon.socket, threshold: 0.5, weights: weightsA, extra: false, plugin: "badabi"),
                "abi_version 2 does not match"
            ),
            ("torn weights", config(socket: daemon.socket, threshold: 0.5, weights: torn, extra: false), torn),
            (
                "unknown model", config(socket: daemon.socket, threshold: 0.5, weights: weightsA, extra: false, mfStrong: "gpt-9"),
                "strong model 'gpt-9' is not in"
            ),
            ("threshold out of range", config(socket: daemon.socket, threshold: 1.5, weights: weightsA, extra: false), "threshold"),
            (
                "unknown key", config(socket: daemon.socket, threshold: 0.5, weights: weightsA, extra: false) + "\nsurprise: 1\n",
                "unknown key 'surprise'"
            ),
        ]

        // Eight clients, each pipelining 16 decisions at a time, alternating random and mf.
        let stop = StopFlag()
        var logs: [ClientLog] = []
        var threads: [Thread] = []
        let finished = DispatchGroup()
        for client in 0..<8 {
            let log = ClientLog()
            logs.append(log)
            let connection = try daemon.connect()
            finished.enter()
            let thread = Thread {
                defer { finished.leave() }
                var round = 0
                while !stop.isSet {
                    var sent: [(String, String)] = []
                    for index in 0..<16 {
                        let router = index % 2 == 0 ? "random" : "mf"
                        let prompt = Self.prompts[(client + index + round) % Self.prompts.count]
                        sent.append((router, prompt))
                        try? connection.send(#"{"op":"route","router":"\#(router)","prompt":"\#(prompt)"}"# + "\n")
                    }
                    for (router, prompt) in sent {
                        guard let line = try? connection.readLine(timeout: 20) else {
                            log.failures.append("no reply")
                            return
                        }
                        do {
                            log.seen.append(
                                Seen(router: router, prompt: prompt, decision: try ResponseCodec.decode(Decision.self, from: Data(line.utf8))))
                        } catch {
                            log.failures.append(line)
                        }
                    }
                    round += 1
                }
            }
            threads.append(thread)
            thread.start()
        }

        // 50 reloads: thresholds, a weights swap, a router added and removed, and 10 broken configs.
        let admin = try daemon.connect()
        var expected: [Int: (threshold: Double, flipped: Bool)] = [1: (0.5, false)]
        var generation = 1
        var brokenIndex = 0
        for step in 0..<50 {
            if step % 5 == 4 {
                let bad = broken[brokenIndex]
                brokenIndex += 1
                try bad.text.write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
                let reply = try admin.request(#"{"op":"reload"}"#)
                #expect(reply.errorCode == "reload_failed", "\(bad.name): \(reply)")
                #expect(reply.errorMessage.contains(bad.message), "\(bad.name): \(reply.errorMessage)")
                #expect(reply.errorMessage.contains("generation \(generation) keeps serving"), "\(bad.name)")
                #expect(try admin.request(#"{"op":"status"}"#).result["generation"] as? Int == generation, "\(bad.name)")
            } else {
                let threshold = [0.3, 0.5, 0.7][step % 3]
                let flipped = step % 2 == 1
                try config(socket: daemon.socket, threshold: threshold, weights: flipped ? weightsB : weightsA, extra: step % 3 == 0).write(
                    toFile: daemon.configFile, atomically: true, encoding: .utf8)
                let reply = try admin.request(#"{"op":"reload"}"#)
                #expect(reply.ok, "step \(step): \(reply)")
                generation = reply.result["generation"] as? Int ?? generation
                expected[generation] = (threshold, flipped)
                let routers = try #require(reply.result["routers"] as? [String])
                #expect(routers.contains("extra") == (step % 3 == 0))
            }
            usleep(20_000)
        }
        stop.set()
        #expect(finished.wait(timeout: .now() + 60) == .success)

        let failures = logs.flatMap(\.failures)
        let seen = logs.flatMap(\.seen)
        #expect(failures.isEmpty, "failed or garbled responses: \(failures.prefix(3))")
        #expect(seen.count > 1000, "\(seen.count) decisions")
        #expect(Set(seen.map(\.decision.generation)).count >= 20, "decisions spread over \(Set(seen.map(\.decision.generation)).count) generations")
        // Every decision agrees with the generation it names.
        var randomScores: [String: Double] = [:]
        var mfScores: [String: Double] = [:]
        for entry in seen where entry.decision.generation == 1 && entry.router == "mf" { mfScores[entry.prompt] = entry.decision.score }
        var inconsistent: [String] = []
        for entry in seen {
            let decision = entry.decision
            guard let settings = expected[Int(decision.generation)] else {
                inconsistent.append("generation \(decision.generation) was never reported by a reload")
                continue
            }
            if decision.threshold != settings.threshold {
                inconsistent.append("\(entry.router) g\(decision.generation): threshold \(decision.threshold ?? .nan)")
            }
            if decision.tier != (decision.strongScore >= (decision.threshold ?? .nan) ? Tier.strong : .weak) {
                inconsistent.append("tier of \(decision)")
            }
            if entry.router == "random" {
                if let known = randomScores[entry.prompt], known != decision.score { inconsistent.append("random score moved for \(entry.prompt)") }
                randomScores[entry.prompt] = decision.score
            } else if let base = mfScores[entry.prompt] {
                let want = settings.flipped ? 1 - base : base
                if abs(decision.strongScore - want) > 1e-5 {
                    inconsistent.append("mf g\(decision.generation) \(entry.prompt): \(decision.strongScore) vs \(want)")
                }
            }
        }
        #expect(inconsistent.isEmpty, "\(inconsistent.count) inconsistent: \(inconsistent.prefix(5))")
        let stats = try admin.request(#"{"op":"stats"}"#).result
        #expect(stats["reloads"] as? Int == 40)
        #expect(stats["reload_failures"] as? Int == 10)
    }
}

// Each client thread owns its socket; none is shared between threads.
extension LineSocket: @unchecked Sendable {}
