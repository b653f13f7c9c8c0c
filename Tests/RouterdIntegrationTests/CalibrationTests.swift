import Foundation
import RouterProtocol
import RouterdTestSupport
import Testing

/// Thresholds from a share of traffic: `strong_fraction` in the config and `routerctl calibrate`.
@Suite(.timeLimit(.minutes(10))) struct CalibrationTests {
    static func randomRouter(_ setting: String) -> String {
        """
          random:
            plugin: random
            \(setting)
            strong_model: \(TestConfig.strong)
            weak_model: \(TestConfig.weak)
            params:
              seed: 7
        """
    }

    @Test func aStrongFractionBecomesAThreshold() throws {
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, routers: Self.randomRouter("strong_fraction: 0.3")) })
        let connection = try daemon.connect()
        let router = try #require((try connection.request(#"{"op":"routers"}"#).result["routers"] as? [[String: Any]])?.first)
        // Uniform scores: sending 30% strong means the threshold is their 70% quantile, 0.7.
        #expect(abs((router["threshold"] as? Double ?? 0) - 0.7) < 1e-12)
        #expect(router["strong_fraction"] as? Double == 0.3)
        var strong = 0
        for index in 0..<2000 {
            if try connection.decision(#"{"op":"route","router":"random","prompt":"prompt \#(index)"}"#).tier == .strong { strong += 1 }
        }
        #expect(abs(Double(strong) / 2000 - 0.3) < 0.04, "\(strong) of 2000 routed strong")
    }

    @Test(arguments: [
        ("", "needs 'threshold' or 'strong_fraction'"),
        ("threshold: 0.5\n    strong_fraction: 0.3", "sets both 'threshold' and 'strong_fraction'; keep one"),
        ("strong_fraction: 1.5", "strong_fraction must be between 0.0 and 1.0"),
    ])
    func badSettingsAreReported(setting: String, message: String) throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write("routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: Self.randomRouter(setting)))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains(message), "\(check.stderr)")
    }

    @Test func aPluginWithoutQuantilesCannotTakeAStrongFraction() throws {
        let directory = try TemporaryDirectory()
        let plugins = try PluginTests.buildConstantPlugin(in: directory)
        let routers = PluginTests.constantRouter().replacingOccurrences(of: "threshold: 0.5", with: "strong_fraction: 0.5")
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: routers, searchPaths: [plugins]))
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("strong_fraction needs score quantiles, and plugin 'constant' publishes none"), "\(check.stderr)")
    }

    @Test func calibratePrintsTheThreshold() throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock", routers: Self.randomRouter("threshold: 0.5")))
        let published = try runCommand(
            try Package.binary("routerctl"), ["calibrate", "--config", config, "--router", "random", "--strong-fraction", "0.25"])
        #expect(published.status == 0, "\(published.stderr)")
        #expect(published.stdout.contains("router random: threshold 0.750000 sends 25% to \(TestConfig.strong)"), "\(published.stdout)")

        // On given prompts: the seeded router's scores of these prompts, and a threshold that sends a quarter of them strong.
        let prompts = try directory.write("prompts.txt", (0..<400).map { "question \($0)" }.joined(separator: "\n"))
        let measured = try runCommand(
            try Package.binary("routerctl"),
            ["calibrate", "--config", config, "--router", "random", "--strong-fraction", "0.25", "--prompts", prompts])
        #expect(measured.status == 0, "\(measured.stderr)")
        #expect(measured.stdout.contains("(measured on 25.0% of the 400 prompts in"), "\(measured.stdout)")
    }
}

/// `routerctl eval` on a generic per-prompt file, end to end.
@Suite(.timeLimit(.minutes(10))) struct EvalCommandTests {
    @Test func aGenericFileIsEvaluatedWithRouteLLMsMetrics() throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write("routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock"))
        var lines: [String] = []
        for index in 0..<200 {
            lines.append(
                #"{"prompt":"q\#(index)","quality":{"\#(TestConfig.strong)":\#(index % 3 == 0 ? 1 : 0),"\#(TestConfig.weak)":\#(index % 5 == 0 ? 1 : 0)}}"#
            )
        }
        lines.append(#"{"prompt":"only one model","quality":{"\#(TestConfig.strong)":1}}"#)
        let file = try directory.write("mine.jsonl", lines.joined(separator: "\n"))
        let run = try runCommand(
            try Package.binary("routerctl"),
            ["eval", "--config", config, "--routers", "random", "--benchmarks", "", "--file", file, "--out", directory.path + "/out"])
        #expect(run.status == 0, "\(run.stderr)")
        let row = try #require(run.stdout.split(separator: "\n").first { $0.hasPrefix("mine") })
        let apgr = try #require(Double(row.split(separator: " ", omittingEmptySubsequences: true)[2]))
        #expect(abs(apgr - 0.5) < 0.2, "a seeded random router is near 0.5: \(row)")
        #expect(row.hasSuffix("200"), "the line with one model is skipped: \(row)")
        let svg = try String(contentsOfFile: directory.path + "/out/mine.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("random (APGR"))
        let results =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory.path + "/out/results.json"))) as? [[String: Any]]
        #expect(results?.first?["router"] as? String == "random")
    }
}
