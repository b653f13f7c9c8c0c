import ArgumentParser
import Foundation
import RouterBenchmarks

/// `routerctl bench-fleet`: ``FleetBench`` (RouterBenchmarks) with its settings from the command line.
struct BenchFleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-fleet",
        abstract: "Daemons sharing outcomes through PostgreSQL: outcomes/s, replication lag, catch-up after an outage, route on/off.",
        discussion: """
            Starts one routerd without `fleet:` and --hosts with it, all on the database at --url, and prints a \
            table (docs/RESULTS.md, "The fleet"). `make bench-fleet` starts a throwaway PostgreSQL server for it \
            (scripts/bench-fleet.sh), which --database-control stops and starts for the outage.
            """)

    @Option(help: "The routerd binary. Default: the one next to routerctl.") var routerd: String?
    @Option(help: "The repository (plugins, weights, the encoder). Default: the working directory.") var root: String?
    @Option(help: "The fleet's database, as routerd's fleet.url.") var url: String
    @Option(name: .customLong("password-file"), help: "Its password, in a file of mode 0600.") var passwordFile: String
    @Option(name: .customLong("database-control"), help: "A command that takes `stop` or `start`; without it, no outage.")
    var databaseControl: String?
    @Option(help: "Daemons in the fleet.") var hosts = 3
    @Option(help: "Feedback connections per daemon.") var connections = 4
    @Option(help: "Requests in flight per connection.") var depth = 32
    @Option(help: "Seconds of the steady load.") var seconds = 20.0
    @Option(help: "Seconds the database is down (0: no outage).") var outage = 60.0
    @Option(help: "Outcomes a second across the fleet for the lag and the outage.") var rate = 5000.0
    @Option(name: .customLong("route-requests"), help: "Requests of each route throughput run.") var routeRequests = 10000

    func run() async throws {
        var bench = FleetBench(
            routerd: routerd ?? siblingExecutable("routerd"), root: root ?? FileManager.default.currentDirectoryPath, url: url,
            passwordFile: passwordFile)
        bench.databaseControl = databaseControl
        bench.hosts = hosts
        bench.connections = connections
        bench.depth = depth
        bench.seconds = seconds
        bench.outageSeconds = outage
        bench.rate = rate
        bench.routeRequests = routeRequests
        let report = try await bench.run { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
        print(report)
    }
}
