import ArgumentParser
import Foundation
import RouterBenchmarks

/// `routerctl bench-gateway`: ``GatewayBench`` (RouterBenchmarks) with its settings from the command line.
struct BenchGateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-gateway",
        abstract:
            "The HTTP gateway beside a stub upstream called directly, and beside peers on the same stub: latency, throughput, fallback, memory.",
        discussion: """
            Starts a stub upstream and routerd with a gateway in front of it, and prints a table (docs/RESULTS.md, \
            "The gateway"). A peer (--peer name=url=model) is another gateway already running against the stub, \
            which then needs a fixed --stub-port.
            """)

    @Option(help: "The routerd binary. Default: the one next to routerctl.") var routerd: String?
    @Option(help: "Requests of each one-connection latency phase.") var requests = 2000
    @Option(help: "Seconds of each throughput phase.") var seconds = 5.0
    @Option(help: "Connections of the main throughput phase.") var connections = 64
    @Option(help: "Concurrent streams of the memory phase.") var streams = 256
    @Option(name: .customLong("stub-port"), help: "The stub upstream's port (0: any free one).") var stubPort = 0
    @Option(name: .customLong("peer-connections"), help: "Connections of the phase compared with peers.") var peerConnections = 16
    @Option(help: "Another gateway on the stub, as name=base_url=model[=key], e.g. litellm=http://127.0.0.1:4000/v1=bench=sk-….")
    var peer: [String] = []

    func run() async throws {
        #if Gateway
            var bench = GatewayBench(routerd: routerd ?? siblingExecutable("routerd"))
            bench.requests = requests
            bench.seconds = seconds
            bench.connections = connections
            bench.streams = streams
            bench.stubPort = stubPort
            bench.peerConnections = peerConnections
            bench.peers = try peer.map { spec in
                let parts = spec.split(separator: "=", maxSplits: 3).map(String.init)
                guard parts.count >= 3 else { throw ValidationError("--peer takes name=base_url=model[=key], found '\(spec)'") }
                return (parts[0], parts[1], parts[2], parts.count == 4 ? parts[3] : nil)
            }
            let report = try await bench.run { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
            print(report)
        #else
            throw ValidationError("this routerctl was built without the gateway (the package trait Gateway)")
        #endif
    }
}
