import Foundation
import RouterClient
import RouterProtocol
import RouterdTestSupport
import Testing

/// routerctl and the client library against the real daemon.
@Suite(.timeLimit(.minutes(10))) struct RouterctlTests {
    @Test func routeAndScorePrintReadableAndJSONOutput() throws {
        let daemon = try Daemon()
        let routerctl = try Package.binary("routerctl")
        let route = try runCommand(routerctl, ["route", "--socket", daemon.socket, "--router", "random", "What is the capital of France?"])
        #expect(route.status == 0, "\(route.stderr)")
        let firstLine = String(route.stdout.split(separator: "\n").first ?? "")
        #expect(
            firstLine == "\(TestConfig.strong)  (strong, policy threshold)" || firstLine == "\(TestConfig.weak)  (weak, policy threshold)",
            "\(route.stdout)")
        #expect(route.stdout.contains("CANDIDATE"), "every candidate's quality is listed")
        #expect(route.stdout.contains("router random · generation 1"))

        let json = try runCommand(routerctl, ["route", "--socket", daemon.socket, "--json", "What is the capital of France?"])
        let decision = try JSON.object(json.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(decision.ok)
        let score = try #require(decision.result["score"] as? Double)
        #expect(route.stdout.contains(String(format: "score %.4f", score)), "the same seeded score in both forms")

        let scores = try runCommand(routerctl, ["score", "--socket", daemon.socket, "one", "two"])
        #expect(scores.status == 0)
        #expect(scores.stdout.split(separator: "\n").count == 2)
    }

    @Test func listingCommandsWork() throws {
        let daemon = try Daemon()
        let routerctl = try Package.binary("routerctl")
        let routers = try runCommand(routerctl, ["routers", "--socket", daemon.socket])
        #expect(routers.stdout.contains("ROUTER"))
        #expect(routers.stdout.contains("random  random 1.1.0  threshold"), "\(routers.stdout)")
        let status = try runCommand(routerctl, ["status", "--socket", daemon.socket])
        #expect(status.stdout.contains("pid \(daemon.process.processIdentifier)"))
        #expect(status.stdout.contains("libRandomRouter.so"))
        let stats = try runCommand(routerctl, ["stats", "--socket", daemon.socket])
        #expect(stats.stdout.contains("connections: 1 open"))
    }

    @Test func theSocketPathComesFromTheConfig() throws {
        let daemon = try Daemon()
        let status = try runCommand(try Package.binary("routerctl"), ["status", "--config", daemon.configFile])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains(daemon.socket))
    }

    @Test func aMissingDaemonGetsAnActionableMessage() throws {
        let directory = try TemporaryDirectory()
        let run = try runCommand(try Package.binary("routerctl"), ["status", "--socket", directory.path + "/none.sock"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("routerd is not running at \(directory.path)/none.sock (connect: No such file or directory)"), "\(run.stderr)")
        #expect(run.stderr.contains("start it with"))
    }

    @Test func serverErrorsExitNonZeroWithTheMessage() throws {
        let daemon = try Daemon()
        let run = try runCommand(try Package.binary("routerctl"), ["route", "--socket", daemon.socket, "--router", "ghost", "hi"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("unknown router 'ghost' (routers: random) [unknown_router]"), "\(run.stderr)")
    }

    /// A daemon for the async tests below. An async test may wait tens of seconds to resume
    /// while synchronous tests hold the cooperative threads of a 2-core machine; meanwhile
    /// its connection is idle, and the usual 30 s idle timeout would close it under the test.
    static func patientDaemon() throws -> Daemon {
        try Daemon(config: { TestConfig.yaml(socket: $0, limits: "  idle_timeout: 3600") })
    }

    @Test func theClientLibraryPipelinesConcurrentRequests() async throws {
        let daemon = try Self.patientDaemon()
        let connection = try await RouterConnection.connect(socketPath: daemon.socket)
        let decisions = try await withThrowingTaskGroup(of: (Int, Decision).self) { group in
            for index in 0..<200 {
                group.addTask { (index, try await connection.route(RouteRequest(router: "random", prompt: "prompt \(index)"))) }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(decisions.count == 200)
        // Each reply belongs to its own request: the seeded score of prompt i matches a fresh single request.
        for index in [0, 57, 199] {
            let single = try await connection.route(RouteRequest(router: "random", prompt: "prompt \(index)"))
            #expect(decisions[index]?.score == single.score)
        }
        do {
            _ = try await connection.route(RouteRequest(router: "ghost", prompt: "x"))
            Issue.record("an unknown router must throw")
        } catch RouterClientError.server(let error) {
            #expect(error.code == .unknownRouter)
        }
        let status = try await connection.status()
        #expect(status.routers == ["random"])
        await connection.close()
        // The daemon must outlive every request above (a local is only kept until its last use).
        #expect(daemon.stop() == 0)
    }

    @Test func aRequestOnAClosedConnectionFailsInsteadOfWaiting() async throws {
        let daemon = try Self.patientDaemon()
        let connection = try await RouterConnection.connect(socketPath: daemon.socket)
        _ = try await connection.route(RouteRequest(router: "random", prompt: "before"))
        #expect(daemon.stop() == 0)
        await connection.close()
        await #expect(throws: RouterClientError.self) { try await connection.route(RouteRequest(router: "random", prompt: "after")) }
    }
}
