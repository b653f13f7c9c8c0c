import ArgumentParser
import Fleet
import Foundation
import Logging
import NIOCore
import NIOPosix
import RouterConfig
import RouterDaemon
import RouterEngine
import RouterMetrics
import RouterPluginHost
import ServiceLifecycle
import TextEncoder
import UnixSignals

#if Gateway
    import Gateway
#endif

@main
struct Routerd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routerd",
        abstract: "Routes each prompt to a strong or a weak LLM, over a Unix socket speaking line-delimited JSON.",
        discussion: """
            routerd loads the router plugins its config names, listens on a Unix domain socket and answers
            `route` requests with the model to call. SIGHUP reloads the config; SIGTERM and SIGINT stop it
            after the requests in flight are answered. See docs/OPERATIONS.md.
            """,
        version: Engine.version)

    @Option(name: [.short, .long], help: "The config file.")
    var config: String = ConfigLoader.defaultPath

    @Option(help: "Listen on this socket path instead of the config's socket.path.")
    var socket: String?

    @Flag(name: .customLong("check-config"), help: "Validate the config, its plugin descriptors and plugins, then exit (non-zero on any problem).")
    var checkConfig = false

    @Option(help: "Log level (trace, debug, info, notice, warning, error, critical); overrides logging.level.")
    var logLevel: DaemonConfig.Logging.Level?

    func run() async throws {
        // Before anything else: OpenBLAS picks its kernels when loaded (see BLASKernels).
        BLASKernels.reexecWithBestCoreIfNeeded()
        AllocatorSettings.apply(cores: System.coreCount)
        let executableDirectory = PluginLibrary.executableDirectory
        let configuredLevel =
            (try? ConfigLoader.load(file: config, hostABIVersion: Int(PluginLibrary.hostABIVersion), executableDirectory: executableDirectory))?
            .logging.level
        let level = Logger.Level(rawValue: (logLevel ?? configuredLevel ?? .info).rawValue) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "routerd")

        if checkConfig {
            do throws(GenerationError) {
                let generation = try Engine.check(configFile: config, executableDirectory: executableDirectory, logger: logger)
                if let settings = generation.config.decisionLog {
                    do {
                        try DecisionLog.check(settings)
                    } catch {
                        throw GenerationError(problems: ["\(generation.config.file): \(error.message)"])
                    }
                }
                print(
                    "routerd: \(generation.config.file) is valid: \(generation.routerNames.count) router(s): \(generation.routerNames.joined(separator: ", "))"
                )
                return
            } catch {
                Self.report(error, config: config)
                throw ExitCode(1)
            }
        }

        let engine: Engine
        do {
            engine = try Engine(configFile: config, executableDirectory: executableDirectory, logger: logger)
        } catch {
            Self.report(error, config: config)
            throw ExitCode(1)
        }
        let generation = engine.current
        let decisionLog: DecisionLog?
        let feedback: FeedbackStore?
        let fleet: FleetSync?
        do {
            decisionLog = try DecisionLog.opened(for: generation.config.decisionLog, reusing: nil, logger: logger)
            feedback = try FeedbackStore.opened(
                for: generation.config.feedback, outbox: generation.config.sharesOutcomes, reusing: nil, logger: logger)
            // The database need not be up: the fleet connects, and reconnects, on its own threads.
            fleet = try FleetSync.opened(
                for: generation.config.fleet, store: feedback, engine: engine, reusing: nil, previousStore: nil, logger: logger)
        } catch let error as DecisionLogError {
            Self.report(GenerationError(problems: ["\(generation.config.file): \(error.message)"]), config: config)
            throw ExitCode(1)
        } catch let error as FeedbackStoreError {
            Self.report(GenerationError(problems: ["\(generation.config.file): \(error.message)"]), config: config)
            throw ExitCode(1)
        } catch let error as FleetError {
            Self.report(GenerationError(problems: ["\(generation.config.file): \(error.message)"]), config: config)
            throw ExitCode(1)
        }
        logger.notice(
            "loaded", metadata: ["config": "\(generation.config.file)", "generation": "\(generation.number)", "routers": "\(generation.routerNames)"])

        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let threadPool = NIOThreadPool.singleton
        // io_bound plugins (causal_llm) wait on HTTP; each waiting request holds one of these threads.
        let ioThreadPool = NIOThreadPool(numberOfThreads: 64)
        ioThreadPool.start()
        // Operators' changes (reload, set, learn reset) and SIGHUP's and the watcher's reloads:
        // apart from clients' work, so none of it can delay them.
        let adminThreadPool = NIOThreadPool(numberOfThreads: 1)
        adminThreadPool.start()
        // SIGHUP, the file watcher and the socket's `reload` op all reload through this one.
        let reloader = Reloader(engine: engine, decisionLog: decisionLog, feedback: feedback, fleet: fleet, logger: logger)
        // Stops, in order, the connections, the pools and the engine's threads: each step is tried
        // even if one before it failed, and the first failure is thrown.
        func stopThreads() async throws {
            var failure: (any Error)?
            for step in [group.shutdownGracefully, ioThreadPool.shutdownGracefully, adminThreadPool.shutdownGracefully] {
                do { try await step() } catch { failure = failure ?? error }
            }
            reloader.current.fleet?.stop()
            engine.shutdown()
            if let failure { throw failure }
        }
        let daemon = DaemonService(
            reloader: reloader, counters: ServerCounters(), socketPath: socket ?? generation.config.socket.path, group: group,
            threadPool: threadPool, ioThreadPool: ioThreadPool, adminThreadPool: adminThreadPool, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: daemon), .init(service: ReloadOnSignalService(reloader: reloader, threadPool: adminThreadPool)),
        ]
        if generation.config.reload.watch {
            // Set at start, like metrics: turning it on or off needs a restart.
            services.append(.init(service: ConfigWatcher(reloader: reloader, threadPool: adminThreadPool, logger: logger)))
        }
        if let metrics = generation.config.metrics {
            // Set at start; a reload does not move it. Bound now, so a taken port fails the start.
            do {
                let server = try await MetricsServer.bind(
                    source: daemon.snapshot, host: metrics.host, port: metrics.port, group: group, logger: logger)
                services.append(.init(service: server))
            } catch {
                FileHandle.standardError.write(Data("routerd: \(error)\n".utf8))
                try? await stopThreads()
                throw ExitCode(1)
            }
        }
        // Built without the trait, routerd refuses a config with `gateway:` (RouterConfig says why).
        #if Gateway
            var gateway: Gateway?
            if let settings = generation.config.gateway {
                let built = Gateway(settings: settings, reloader: reloader, group: group, ioThreadPool: ioThreadPool, logger: logger)
                do {
                    services += try built.services().map { .init(service: $0) }
                } catch {
                    FileHandle.standardError.write(Data("routerd: gateway: \(error)\n".utf8))
                    try? await built.shutdown()
                    try? await stopThreads()
                    throw ExitCode(1)
                }
                gateway = built
            }
            let stopGateway = { [gateway] in try await gateway?.shutdown() }
        #else
            let stopGateway: @Sendable () async throws -> Void = {}
        #endif
        let serviceGroup = ServiceGroup(
            configuration: .init(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await serviceGroup.run()
        } catch let error as SocketPathError {
            FileHandle.standardError.write(Data("routerd: \(error)\n".utf8))
            try? await stopGateway()
            try? await stopThreads()
            throw ExitCode(1)
        } catch {
            // Whatever ended the group, the upstream connections and the threads are closed first.
            try? await stopGateway()
            try? await stopThreads()
            throw error
        }
        // The last request is answered: the learner's thread ends after the publish it may be in.
        try await stopGateway()
        try await stopThreads()
    }

    private static func report(_ error: GenerationError, config: String) {
        let count = error.problems.count
        var text = "routerd: \(config): \(count) problem\(count == 1 ? "" : "s"):\n"
        for problem in error.problems { text += "  \(problem)\n" }
        FileHandle.standardError.write(Data(text.utf8))
    }
}

extension DaemonConfig.Logging.Level: ExpressibleByArgument {}
