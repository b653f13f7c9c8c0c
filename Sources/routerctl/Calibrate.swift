import ArgumentParser
import Foundation
import OfflineEvaluation
import RouterEngine
import RouterPluginKit
import TextEncoder

/// `routerctl calibrate`: the threshold that sends a given share of traffic to the strong model.
struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the threshold that sends a given share of prompts to the strong model.",
        discussion: """
            With --prompts (one prompt per line, or JSON lines with a "prompt" field), the router scores those prompts \
            and the threshold is their (1 − fraction) quantile. Without it, the quantiles the plugin publishes are used \
            (for mf: the training prompts' scores, stored in the weights).
            """)

    @Option(name: [.short, .long], help: "The config that defines the router.") var config: String = "etc/routerd/routerd.yaml"
    @Option(name: [.short, .long], help: "The router.") var router: String = "mf"
    @Option(name: .customLong("strong-fraction"), help: "Share of prompts to send to the strong model, 0 to 1.") var strongFraction: Double
    @Option(help: "Prompts to calibrate on.") var prompts: String?

    func run() throws {
        BLASKernels.reexecWithBestCoreIfNeeded()
        guard (0...1).contains(strongFraction) else { throw ValidationError("--strong-fraction must be between 0 and 1") }
        let generation = try InProcessRouters.load(config: config, command: "calibrate")
        guard let instance = generation.routers[router] else {
            throw ValidationError("router '\(router)' is not in \(config) (routers: \(generation.routerNames.joined(separator: ", ")))")
        }
        let threshold: Double
        let basis: String
        if let prompts {
            guard let data = FileManager.default.contents(atPath: prompts) else { throw ValidationError("cannot read \(prompts)") }
            let texts = data.split(separator: UInt8(ascii: "\n")).compactMap { line -> String? in
                if let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any], let prompt = object["prompt"] as? String {
                    return prompt
                }
                let text = String(decoding: line, as: UTF8.self)
                return text.isEmpty ? nil : text
            }
            guard !texts.isEmpty else { throw ValidationError("\(prompts) holds no prompts") }
            SentenceEncoder.setThreads(2)
            let scores = try InProcessRouters.score(texts, with: instance, progress: Progress.embedding).sorted()
            threshold = Calibration.threshold(strongFraction: strongFraction, sortedScores: scores)
            let share = Double(scores.filter { $0 >= threshold }.count) / Double(scores.count)
            basis = String(format: "%.1f%% of the %d prompts in %@", share * 100, scores.count, prompts)
        } else {
            guard let quantiles = instance.description.scoreQuantiles else {
                printError("routerctl calibrate: router '\(router)' publishes no score quantiles for its strong/weak pair; pass --prompts FILE")
                throw ExitCode(1)
            }
            threshold = Calibration.threshold(strongFraction: strongFraction, sortedScores: quantiles)
            basis = "the plugin's published score quantiles"
        }
        print(
            String(
                format: "router %@: threshold %.6f sends %.0f%% to %@ (measured on %@)", router, threshold, strongFraction * 100,
                instance.strongModel, basis))
        print("in routerd.yaml: `threshold: \(String(format: "%.6f", threshold))`, or `strong_fraction: \(strongFraction)` to derive it at load")
    }
}
