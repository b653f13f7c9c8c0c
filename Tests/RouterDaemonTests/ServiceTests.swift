import Foundation
import Logging
import NIOCore
import NIOPosix
import RouterEngine
import RouterdTestSupport
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

@testable import RouterDaemon

/// The daemon's services in-process, under ServiceLifecycle's graceful-shutdown test kit.
/// These are async: while synchronous tests hold the cooperative threads of a 2-core
/// machine they may wait long to resume, hence the generous waits.
@Suite(.timeLimit(.minutes(10))) struct ServiceTests {
    /// Log lines, kept for the test to read.
    final class CapturedLog: Sendable {
        private let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }

        func logger() -> Logger {
            Logger(label: "service-tests") { _ in Handler(log: self) }
        }

        struct Handler: LogHandler {
            let log: CapturedLog
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .info
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }
            func log(event: LogEvent) {
                log.lines.withLock { $0.append("\(event.level) \(event.message)") }
            }
        }
    }

    static func reloader(in directory: TemporaryDirectory, logger: Logger) throws -> Reloader {
        let config = try directory.write("routerd.yaml", TestConfig.yaml(socket: directory.path + "/routerd.sock"))
        let engine = try Engine(configFile: config, executableDirectory: Package.binDirectory, logger: logger)
        return Reloader(
            engine: engine, decisionLog: nil, feedback: nil, logger: logger)
    }

    /// Waits (without sleeping a fixed time) until `condition` holds, for at most `polls` checks
    /// 5 ms apart. The budget counts this task's own checks, not wall time: on a 2-core machine
    /// whose cooperative threads are held by synchronous tests, the service under test and this
    /// task may both be starved for a minute or more, and a wall-clock deadline would run out
    /// while neither ran. The suite's time limit still bounds a real hang.
    static func eventually(polls: Int = 12_000, _ condition: () -> Bool) async throws -> Bool {
        for _ in 0..<polls {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return condition()
    }

    @Test func withoutInotifyTheWatcherWarnsAndKeepsRunningUntilShutdown() async throws {
        let directory = try TemporaryDirectory()
        let log = CapturedLog()
        let reloader = try Self.reloader(in: directory, logger: log.logger())
        let watcher = ConfigWatcher(reloader: reloader, threadPool: .singleton, logger: log.logger(), inotify: -1, unavailable: "EMFILE (test)")
        final class Ended: Sendable { let value = Mutex(false) }
        let ended = Ended()
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await watcher.run()
                    ended.value.withLock { $0 = true }
                }
                // Whatever happens here, shut the service down after, or the group would wait for it forever.
                do {
                    #expect(try await Self.eventually { log.all.contains { $0.hasPrefix("warning reload.watch: inotify is unavailable") } })
                    // Had it returned, the service group would have stopped the daemon with it.
                    #expect(!ended.value.withLock { $0 }, "the watcher must keep running without inotify")
                } catch {
                    trigger.triggerGracefulShutdown()
                    throw error
                }
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        #expect(ended.value.withLock { $0 })
    }

    /// A daemon service on `directory`'s socket, with an event loop group of its own that the test shuts down.
    static func daemonService(in directory: TemporaryDirectory, logger: Logger) throws -> (
        service: DaemonService, socket: String, group: MultiThreadedEventLoopGroup
    ) {
        let reloader = try Self.reloader(in: directory, logger: logger)
        let socket = directory.path + "/routerd.sock"
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let service = DaemonService(
            reloader: reloader, counters: ServerCounters(), socketPath: socket, group: group, threadPool: .singleton, ioThreadPool: .singleton,
            adminThreadPool: .singleton, logger: logger)
        return (service, socket, group)
    }

    @Test func theDaemonServesUntilGracefulShutdownAndRemovesItsSocket() async throws {
        let directory = try TemporaryDirectory()
        let logger = Logger(label: "service-tests")
        let (daemon, socket, group) = try Self.daemonService(in: directory, logger: logger)
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await daemon.run() }
                // Whatever happens here, shut the service down after, or the group would wait for it forever.
                do {
                    #expect(try await Self.eventually { (try? LineSocket(path: socket)) != nil })
                    let connection = try LineSocket(path: socket)
                    #expect(try connection.request(#"{"op":"health"}"#).ok)
                } catch {
                    trigger.triggerGracefulShutdown()
                    throw error
                }
                trigger.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
        }
        #expect(!FileManager.default.fileExists(atPath: socket), "the daemon removes the socket file it made")
        try await group.shutdownGracefully()
    }

    /// A sibling service that fails (a metrics port taken mid-run, a watcher that dies) cancels the
    /// group: the daemon service must end on that cancellation, not wait on its listener forever
    /// (finding 2 of issue 23). The group's run returns the sibling's error.
    @Test(.timeLimit(.minutes(10))) func aFailingSiblingServiceEndsTheDaemonService() async throws {
        struct Failed: Error {}
        struct FailingService: Service {
            let socket: String
            func run() async throws {
                // Fail once the daemon is listening, as a service failing mid-run does.
                // The socket is renamed into place once it listens. (Checked without connecting: a
                // blocking connect would hold a thread of the pool the daemon's service needs.)
                while !FileManager.default.fileExists(atPath: socket) { try await Task.sleep(for: .milliseconds(5)) }
                throw Failed()
            }
        }
        let directory = try TemporaryDirectory()
        let logger = Logger(label: "service-tests")
        let (daemon, socket, group) = try Self.daemonService(in: directory, logger: logger)
        let services = ServiceGroup(
            configuration: .init(services: [.init(service: daemon), .init(service: FailingService(socket: socket))], logger: logger))
        await #expect(throws: Failed.self) { try await services.run() }
        #expect(!FileManager.default.fileExists(atPath: socket), "the daemon removes its socket file as it ends")
        try await group.shutdownGracefully()
    }
}
