import Foundation
import Logging
import RouterConfig
import RouterPluginHost
import Synchronization
import TextEncoder

/// Everything that went wrong building a generation, one line each.
public struct GenerationError: Error, Sendable, CustomStringConvertible {
    public var problems: [String]

    public init(problems: [String]) { self.problems = problems }

    public var description: String { problems.joined(separator: "\n") }
}

/// One immutable configuration of the daemon: its routers and the plugins
/// behind them. A request takes the current generation once, at its start,
/// and finishes on it even if a reload swaps in a newer one meanwhile.
public final class Generation: Sendable {
    public let number: UInt64
    public let config: DaemonConfig
    /// Router instances by name.
    public let routers: [String: RouterInstance]
    /// Router names in config order.
    public let routerNames: [String]
    /// The plugin libraries this generation uses, by plugin name (the host's; see ``plugins``).
    let libraries: [String: PluginLibrary]
    /// The plugins this generation uses, by name: what `status` shows.
    public var plugins: [PluginSummary] {
        libraries.values.sorted { $0.name < $1.name }.map {
            PluginSummary(name: $0.name, version: $0.version, library: $0.path, abiVersion: $0.abiVersion)
        }
    }
    /// Encoders by name.
    public let encoders: [String: EncoderInstance]

    init(number: UInt64, config: DaemonConfig, routers: [RouterInstance], libraries: [String: PluginLibrary], encoders: [String: EncoderInstance]) {
        self.encoders = encoders
        self.number = number
        self.config = config
        self.routers = Dictionary(uniqueKeysWithValues: routers.map { ($0.name, $0) })
        self.routerNames = routers.map(\.name)
        self.libraries = libraries
    }

    /// This generation with one router replaced, numbered `number` (the `set` op).
    func replacing(_ router: RouterInstance, number: UInt64) -> Generation {
        Generation(
            number: number, config: config, routers: routerNames.map { $0 == router.name ? router : routers[$0]! }, libraries: libraries,
            encoders: encoders)
    }

    /// The prompt every new router instance must score before its generation serves.
    static let smokePrompt = "routerd smoke test: is this router ready to serve?"

    /// Scores the smoke prompt; returns the problem, if any. io_bound plugins are
    /// skipped: a network call at reload would tie every reload to the endpoint's health.
    static func smokeTest(_ router: RouterInstance) -> String? {
        guard !router.ioBound else { return nil }
        do {
            let embedding = router.encoder?.embed(own: [smokePrompt])[0]
            _ = try router.score(smokePrompt, embedding: embedding)
            if router.predictsQualities {
                let qualities = try router.qualities(smokePrompt, embedding: embedding)
                guard qualities.count == router.candidates.count else {
                    return "the smoke test prompt got \(qualities.count) qualities for \(router.candidates.count) candidates"
                }
            }
            return nil
        } catch {
            return "the smoke test prompt failed: \(error.message)"
        }
    }

    /// Loads the plugins a config uses and creates its router instances.
    /// Nothing is half-built: on any failure every created instance is released.
    /// Building changes nothing outside the new generation: the engine applies its ``ProcessSettings`` at the swap.
    ///
    /// Encoders whose settings and model files are unchanged since `previous` are reused, warm cache included,
    /// and so are router plugin instances whose plugin, parameters, models, encoder and files are unchanged.
    /// Every new instance must score a smoke prompt.
    ///
    /// `progress` is told each step as it starts, so a reload that times out can say what it was waiting on.
    public static func build(
        config: DaemonConfig, number: UInt64, previous: Generation? = nil, stats: Stats = Stats(), logger: Logger,
        progress: BuildProgress? = nil
    ) throws(GenerationError) -> Generation {
        var problems: [String] = []
        var encoders: [String: EncoderInstance] = [:]
        for (name, encoderConfig) in config.encoders.sorted(by: { $0.key < $1.key }) {
            progress?.step = "loading encoder '\(name)'"
            do {
                encoders[name] = try EncoderInstance.make(encoderConfig, reusing: previous?.encoders[name])
            } catch {
                problems.append("\(config.file): encoder '\(name)': \(error.message)")
            }
        }
        var libraries: [String: PluginLibrary] = [:]
        for (name, descriptor) in config.plugins.sorted(by: { $0.key < $1.key }) {
            progress?.step = "loading plugin '\(name)' (\(descriptor.libraryPath))"
            do {
                let library = try PluginLibrary.load(path: descriptor.libraryPath)
                if library.name != descriptor.name {
                    problems.append(
                        "\(descriptor.file): descriptor is for plugin '\(descriptor.name)' but \(descriptor.libraryPath) is plugin '\(library.name)'")
                } else {
                    libraries[name] = library
                }
            } catch {
                problems.append("\(descriptor.file): \(error)")
            }
        }
        var routers: [RouterInstance] = []
        for router in config.routers {
            guard let library = libraries[router.plugin] else { continue }
            let encoder = router.encoder.flatMap { encoders[$0] }
            if router.encoder != nil, encoder == nil { continue }  // its encoder failed to load; reported above
            let previousRouter = previous?.routers[router.name]
            progress?.step = "creating router '\(router.name)' (plugin '\(router.plugin)')"
            do {
                let instance = try RouterInstance(
                    config: router, catalogue: config.models, descriptor: config.plugins[router.plugin], library: library, encoder: encoder,
                    feedback: config.feedback, stats: stats, logger: logger,
                    reusing: previousRouter)
                progress?.step = "scoring the smoke test prompt on router '\(router.name)' (plugin '\(router.plugin)')"
                if previousRouter.map(instance.sharesPlugin) != true, let problem = smokeTest(instance) {
                    problems.append("\(config.file): router '\(router.name)': \(problem)")
                    continue
                }
                routers.append(instance)
            } catch {
                problems.append("\(config.file): \(error.message)")
            }
        }
        guard problems.isEmpty else { throw GenerationError(problems: problems) }
        return Generation(number: number, config: config, routers: routers, libraries: libraries, encoders: encoders)
    }
}

/// What ``Generation/build(config:number:previous:stats:logger:progress:)`` is doing now, readable from
/// another thread while it runs.
public final class BuildProgress: Sendable {
    private let current = Mutex("reading the config")

    public init() {}

    public var step: String {
        get { current.withLock { $0 } }
        set { current.withLock { $0 = newValue } }
    }
}

/// A plugin library as the daemon shows it: no handle into the plugin host.
public struct PluginSummary: Sendable, Hashable {
    public var name: String
    public var version: String
    /// The library's path.
    public var library: String
    public var abiVersion: UInt32
}
