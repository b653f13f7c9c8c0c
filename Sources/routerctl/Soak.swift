import ArgumentParser
import Foundation
import RouterBenchmarks

/// `routerctl soak`: ``SoakRun`` (RouterBenchmarks) with its settings from the command line.
struct Soak: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run routerd under mixed traffic for minutes, check every answer, and print requests, errors and the RSS curve.",
        discussion: """
            Exits 1 on an unexpected error, a wrong decision, an embedding cache past its capacity, or a daemon \
            that died; RSS growth after warm-up is printed, not judged (docs/OPERATIONS.md, "Soak").
            """)

    @Option(help: "Minutes of traffic.") var minutes: Double = 30
    @Option(name: [.short, .long], help: "The config whose routers, encoders and plugins the soak runs.")
    var config: String = "etc/routerd/routerd.yaml"
    @Option(help: "The model catalogue the config's routers price with.") var models: String = "etc/routerd/models.yaml"
    @Option(help: "The routerd binary. Default: the one next to routerctl.") var routerd: String?
    @Option(help: "Traffic connections, each a closed loop.") var clients: Int = 6
    @Option(name: .customLong("change-every"), help: "Seconds between reloads or sets.") var changeEvery: Double = 10
    @Option(name: .customLong("sample-every"), help: "Seconds between RSS samples.") var sampleEvery: Double = 10
    @Option(name: .customLong("warm-up"), help: "The share of the run before RSS growth is measured from.") var warmUp: Double = 0.2
    @Option(name: .customLong("cache-size"), help: "The embedding cache's capacity, in embeddings.") var cacheSize: Int = 10000
    @Option(help: "Write the RSS curve here as CSV.") var csv: String?
    @Option(help: "Seed of the traffic's randomness.") var seed: UInt64 = 1

    func validate() throws {
        guard minutes > 0, clients > 0, changeEvery > 0, sampleEvery > 0, (0..<1).contains(warmUp), cacheSize > 0 else {
            throw ValidationError("--minutes, --clients, --change-every, --sample-every and --cache-size must be positive, --warm-up in [0, 1)")
        }
    }

    func run() async throws {
        var soak = SoakRun(config: config, models: models, routerd: routerd ?? siblingExecutable("routerd"))
        soak.minutes = minutes
        soak.clients = clients
        soak.changeEvery = changeEvery
        soak.sampleEvery = sampleEvery
        soak.warmUp = warmUp
        soak.cacheSize = cacheSize
        soak.seed = seed
        let outcome: SoakRun.Outcome
        do {
            outcome = try await soak.run { pid, config in
                print(
                    "routerctl soak: \(minutes) min, \(clients) clients, a change every \(changeEvery) s (1 in 5 broken), cache \(cacheSize); routerd pid \(pid), config \(config)"
                )
                fflush(nil)
            }
        } catch let error as BenchmarkRunError {
            printError("routerctl soak: \(error)")
            throw ExitCode(1)
        }
        print(outcome.report)
        if let csv { try outcome.rssCSV.write(toFile: csv, atomically: true, encoding: .utf8) }
        if !outcome.passed { throw ExitCode(1) }
    }
}
