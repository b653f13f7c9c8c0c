import ArgumentParser
import Foundation
import RouterBenchmarks
import RouterConfig

/// `routerctl bench-limits`: ``WorstRequests`` (RouterBenchmarks) from the command line.
struct BenchLimits: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-limits",
        abstract: "Send the costliest request of each op the config's limits allow, each to a routerd of its own, and print its time and memory.",
        discussion: """
            The limits that bound one request (limits.max_line_bytes, max_texts, max_windows, max_tokens) are read \
            from --config; each case starts a daemon on that config, warms it up, resets its peak resident memory \
            and sends the one request. Run from the package root (the shipped config names its plugins and model \
            relative to itself).
            """)

    @Option(help: "The config whose limits, routers and encoder to use.") var config = "etc/routerd/routerd.yaml"
    @Option(help: "A router with an encoder.") var router = "mf"
    @Option(name: .customLong("ranking-router"), help: "An sw_ranking router, whose scoring reads its whole index ('' for none).")
    var rankingRouter = "sw_ranking"
    @Option(help: "routerd to start (default: the one beside routerctl).") var routerd: String?

    func run() async throws {
        let worst = WorstRequests(
            config: config, routerd: routerd ?? siblingExecutable("routerd"), router: router,
            rankingRouter: rankingRouter.isEmpty ? nil : rankingRouter)
        let folder = NSTemporaryDirectory() + "routerctl-bench-limits-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        do {
            let (limits, encoder) = try worst.limits()
            print(
                "limits: max_line_bytes \(limits.maxLineBytes), max_texts \(limits.maxTexts), max_windows \(limits.maxWindows), max_tokens \(limits.maxTokens); encoder \(encoder)"
            )
            func row(_ cells: [String]) -> String {
                zip(cells, [48, 10, 9, 10, 10]).enumerated().map { index, pair in
                    let (cell, width) = pair
                    let padding = String(repeating: " ", count: max(0, width - cell.count))
                    return index < 2 ? cell + padding : padding + cell
                }.joined(separator: " ")
            }
            print(row(["CASE", "REPLY", "SECONDS", "PEAK MiB", "LINE KiB"]))
            let measurements = try await worst.run(worst.cases(limits: limits, encoder: encoder), folder: folder) { measured in
                print(
                    row([
                        measured.name, measured.reply, String(format: "%.3f", measured.seconds),
                        measured.peakMiB.map { String(format: "%.1f", $0) } ?? "-",
                        String(format: "%.1f", Double(measured.lineBytes) / 1024),
                    ]))
            }
            let slowest = measurements.max { $0.seconds < $1.seconds }!
            let largest = measurements.compactMap { measured in measured.peakMiB.map { (measured.name, $0) } }.max { $0.1 < $1.1 }
            print(
                "slowest: \(slowest.name) (\(String(format: "%.3f", slowest.seconds)) s); most memory: "
                    + (largest.map { "\($0.0) (\(String(format: "%.1f", $0.1)) MiB)" } ?? "- (the kernel did not let the peak be reset)"))
        } catch let error as BenchmarkRunError {
            printError("routerctl bench-limits: \(error)")
            throw ExitCode(1)
        }
        try? FileManager.default.removeItem(atPath: folder)
    }
}
