import CRouterPlugin
import Foundation
import Logging
import RouterConfig
import RouterProtocol

/// A plugin failed while scoring.
public struct PluginScoreError: Error, Sendable {
    public var message: String
}

/// What identifies a plugin instance's state: equal fingerprints mean a reload
/// may keep the instance instead of creating it anew.
struct PluginFingerprint: Hashable, Sendable {
    var router: String
    var libraryPath: String
    var paramsJSON: String
    var strongModel: String
    var weakModel: String
    /// The encoder object itself: a changed model loads a new one.
    var encoder: ObjectIdentifier?
    /// size-mtime-inode of every `path` parameter's file, so a rewritten weights file is loaded anew.
    var files: [String]
}

/// A plugin instance: the handle `create` returned and the host table it holds.
/// Shared by the router instances of successive generations (reloads that leave
/// it unchanged, `set`); destroyed when the last of them goes, which is after
/// the last request that used it finished.
final class PluginInstance: @unchecked Sendable {
    // `handle` is only passed to the plugin, which guarantees `score` is thread-safe.
    let library: PluginLibrary
    let handle: UnsafeMutableRawPointer
    let host: HostContext
    let fingerprint: PluginFingerprint

    init(library: PluginLibrary, handle: UnsafeMutableRawPointer, host: HostContext, fingerprint: PluginFingerprint) {
        self.library = library
        self.handle = handle
        self.host = host
        self.fingerprint = fingerprint
    }

    deinit { library.vtable.destroy?(handle) }
}

/// One router instance: a plugin instance plus the decision settings.
///
/// Immutable once created and shared by every request of its generation.
public final class RouterInstance: Sendable {
    public let name: String
    /// Route strong when P(strong wins) ≥ threshold: from the config, or derived from `strongFraction`.
    public let threshold: Double
    /// The configured share of traffic for the strong model, when the threshold was derived from it.
    public let strongFraction: Double?
    public let strongModel: String
    public let weakModel: String
    /// The encoder whose embeddings this instance's plugin receives.
    public let encoder: EncoderInstance?
    /// The plugin waits on I/O while scoring (its descriptor's `io_bound`).
    public let ioBound: Bool
    let plugin: PluginInstance

    public var library: PluginLibrary { plugin.library }
    private var handle: UnsafeMutableRawPointer { plugin.handle }

    /// Creates the router, keeping `previous`'s plugin instance when nothing it depends on changed.
    init(
        config: DaemonConfig.Router, descriptor: PluginDescriptor?, library: PluginLibrary, encoder: EncoderInstance?, stats: Stats,
        logger: Logger, reusing previous: RouterInstance? = nil
    ) throws(PluginLoadError) {
        self.encoder = encoder
        self.name = config.name
        self.ioBound = descriptor?.ioBound ?? false
        self.strongFraction = config.strongFraction
        self.strongModel = config.strongModel
        self.weakModel = config.weakModel
        let paramsJSON = Self.json(config.params)
        let fingerprint = PluginFingerprint(
            router: config.name, libraryPath: library.path, paramsJSON: paramsJSON, strongModel: config.strongModel,
            weakModel: config.weakModel, encoder: encoder.map(ObjectIdentifier.init),
            files: (descriptor?.files(in: config.params) ?? []).map(Self.stamp))
        if let previous, previous.plugin.fingerprint == fingerprint {
            plugin = previous.plugin
        } else {
            var instanceLogger = logger
            instanceLogger[metadataKey: "router"] = .string(config.name)
            let host = HostContext(router: config.name, logger: instanceLogger, encoder: encoder, stats: stats)
            var handle: UnsafeMutableRawPointer?
            var error: UnsafeMutablePointer<CChar>?
            let status = paramsJSON.withCString { params in
                config.name.withCString { name in
                    config.strongModel.withCString { strong in
                        config.weakModel.withCString { weak in
                            var info = rp_instance_info(
                                struct_size: UInt32(MemoryLayout<rp_instance_info>.size), name: name, params_json: params,
                                params_json_len: strlen(params), strong_model: strong, weak_model: weak,
                                embedding_dim: encoder?.dimension ?? 0)
                            return library.vtable.create!(host.table, &info, &handle, &error)
                        }
                    }
                }
            }
            let message = library.takeString(error)
            guard status == RP_OK, let handle else {
                throw PluginLoadError(
                    library: library.path,
                    message: "router '\(config.name)': plugin '\(library.name)' refused to create it: \(message ?? "no reason given")")
            }
            plugin = PluginInstance(library: library, handle: handle, host: host, fingerprint: fingerprint)
        }
        if let threshold = config.threshold {
            self.threshold = threshold
        } else {
            guard let fraction = config.strongFraction, let threshold = Self.threshold(strongFraction: fraction, plugin: plugin) else {
                throw PluginLoadError(
                    library: library.path,
                    message:
                        "router '\(config.name)': strong_fraction needs score quantiles, and plugin '\(library.name)' publishes none for this strong/weak pair; set threshold instead (`routerctl calibrate --router \(config.name) --strong-fraction \(config.strongFraction ?? 0.5) --prompts FILE` computes one from your prompts)"
                )
            }
            self.threshold = threshold
        }
    }

    /// A copy with another threshold, sharing the plugin instance (the `set` op).
    private init(copying other: RouterInstance, threshold: Double, strongFraction: Double?) {
        name = other.name
        self.threshold = threshold
        self.strongFraction = strongFraction
        strongModel = other.strongModel
        weakModel = other.weakModel
        encoder = other.encoder
        ioBound = other.ioBound
        plugin = other.plugin
    }

    /// This router with a new threshold, or with the threshold that sends `strongFraction` to the strong model.
    func with(threshold: Double?, strongFraction: Double?) throws(ProtocolError) -> RouterInstance {
        if let threshold { return RouterInstance(copying: self, threshold: threshold, strongFraction: nil) }
        guard let strongFraction, let derived = Self.threshold(strongFraction: strongFraction, plugin: plugin) else {
            throw ProtocolError(
                .badField,
                "router '\(name)': plugin '\(library.name)' publishes no score quantiles for its strong/weak pair, so strong_fraction cannot be set; set threshold instead"
            )
        }
        return RouterInstance(copying: self, threshold: derived, strongFraction: strongFraction)
    }

    /// Whether this router kept `other`'s plugin instance.
    func sharesPlugin(with other: RouterInstance) -> Bool { plugin === other.plugin }

    private static func threshold(strongFraction: Double, plugin: PluginInstance) -> Double? {
        let description = plugin.library.vtable.describe.flatMap { plugin.library.takeString($0(plugin.handle)) }
        guard let quantiles = Calibration.quantiles(fromDescription: description) else { return nil }
        return Calibration.threshold(strongFraction: strongFraction, sortedScores: quantiles)
    }

    /// Identifies a file's version; a rewritten (renamed-into-place) file gets a new inode and mtime.
    private static func stamp(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return "\(path): missing" }
        return "\(path): \(info.st_size)-\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)-\(info.st_ino)"
    }

    /// Scores prompts; each score is P(strong wins) in [0, 1]. `embeddings`, one
    /// per prompt, are required when the instance has an encoder.
    public func score(_ prompts: [String], embeddings: [[Float]]? = nil) throws(PluginScoreError) -> [Double] {
        var scores = [Double](repeating: .nan, count: prompts.count)
        var error: UnsafeMutablePointer<CChar>?
        // All texts in one byte buffer and all vectors in one float buffer, so
        // each pointer is taken once and stays valid for the whole call.
        var textBytes: [UInt8] = []
        var textRanges: [Range<Int>] = []
        for prompt in prompts {
            let start = textBytes.count
            textBytes.append(contentsOf: prompt.utf8)
            textRanges.append(start..<textBytes.count)
        }
        let dimension = embeddings?.first?.count ?? 0
        let vectors = embeddings?.flatMap { $0 } ?? []
        let status: Int32 = textBytes.withUnsafeBufferPointer { text in
            vectors.withUnsafeBufferPointer { vector in
                let cPrompts = textRanges.enumerated().map { index, range in
                    rp_prompt(
                        text: UnsafeRawPointer(text.baseAddress.map { $0 + range.lowerBound })?.assumingMemoryBound(to: CChar.self),
                        text_len: range.count,
                        embedding: dimension == 0 ? nil : vector.baseAddress! + index * dimension,
                        embedding_dim: dimension)
                }
                return cPrompts.withUnsafeBufferPointer { cPrompts in
                    scores.withUnsafeMutableBufferPointer { out in
                        library.vtable.score!(handle, cPrompts.baseAddress, cPrompts.count, out.baseAddress, &error)
                    }
                }
            }
        }
        if status != RP_OK {
            throw PluginScoreError(message: library.takeString(error) ?? "plugin '\(library.name)' failed without a message")
        }
        if let bad = scores.first(where: { !($0 >= 0 && $0 <= 1) }) {
            throw PluginScoreError(message: "plugin '\(library.name)' returned score \(bad), outside [0, 1]")
        }
        return scores
    }

    /// Scores one prompt without the batch bookkeeping.
    public func score(_ prompt: String, embedding: [Float]? = nil) throws(PluginScoreError) -> Double {
        var score = Double.nan
        var error: UnsafeMutablePointer<CChar>?
        var prompt = prompt
        let status = prompt.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { chars in
                (embedding ?? []).withUnsafeBufferPointer { vector in
                    var cPrompt = rp_prompt(
                        text: chars.baseAddress, text_len: chars.count, embedding: embedding == nil ? nil : vector.baseAddress,
                        embedding_dim: embedding?.count ?? 0)
                    return library.vtable.score!(handle, &cPrompt, 1, &score, &error)
                }
            }
        }
        if status != RP_OK {
            throw PluginScoreError(message: library.takeString(error) ?? "plugin '\(library.name)' failed without a message")
        }
        guard score >= 0, score <= 1 else {
            throw PluginScoreError(message: "plugin '\(library.name)' returned score \(score), outside [0, 1]")
        }
        return score
    }

    /// The plugin's description of this instance (a JSON object), if any.
    public func describe() -> String? {
        guard let describe = library.vtable.describe else { return nil }
        return library.takeString(describe(handle))
    }

    private static func json(_ params: [String: ParamValue]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(params)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

/// The host-services table handed to one plugin instance, and what it needs.
final class HostContext {
    let router: String
    let logger: Logger
    let encoder: EncoderInstance?
    let stats: Stats
    /// Heap-allocated so its address is stable: the plugin keeps the pointer.
    let table: UnsafeMutablePointer<rp_host>

    init(router: String, logger: Logger, encoder: EncoderInstance?, stats: Stats) {
        self.router = router
        self.logger = logger
        self.encoder = encoder
        self.stats = stats
        table = .allocate(capacity: 1)
        table.initialize(to: rp_host())
        table.pointee.abi_version = RP_ABI_VERSION
        table.pointee.struct_size = UInt32(MemoryLayout<rp_host>.size)
        table.pointee.log = hostLog
        table.pointee.embed = hostEmbed
        table.pointee.count = hostCount
        // The instance owns this object, so the unretained pointer lives as long as the plugin may use it.
        table.pointee.context = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        table.deallocate()
    }
}

private let hostLog: @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?, Int) -> Void = { context, level, message, length in
    guard let context, let message else { return }
    let host = Unmanaged<HostContext>.fromOpaque(context).takeUnretainedValue()
    let text = String(decoding: UnsafeRawBufferPointer(start: message, count: length), as: UTF8.self)
    let logLevel: Logger.Level =
        switch level {
        case RP_LOG_DEBUG: .debug
        case RP_LOG_INFO: .info
        case RP_LOG_WARNING: .warning
        default: .error
        }
    host.logger.log(level: logLevel, "\(text)")
}

private let hostCount: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int) -> Void = { context, event, length in
    guard let context, let event, length > 0 else { return }
    let host = Unmanaged<HostContext>.fromOpaque(context).takeUnretainedValue()
    host.stats.recordEvent(router: host.router, event: String(decoding: UnsafeRawBufferPointer(start: event, count: length), as: UTF8.self))
}

private let noEncoderMessage: StaticString = "this router instance has no encoder; add `encoder:` to it in routerd.yaml"
private let wrongDimensionMessage: StaticString = "the output buffer's dimension differs from the encoder's"

private let hostEmbed:
    @convention(c) (
        UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int, UnsafeMutablePointer<Float>?, Int, UnsafeMutablePointer<UnsafePointer<CChar>?>?
    ) -> Int32 = { context, text, length, out, dimension, error in
        func fail(_ message: StaticString) -> Int32 {
            error?.pointee = UnsafeRawPointer(message.utf8Start).assumingMemoryBound(to: CChar.self)
            return RP_ERROR
        }
        guard let context, let out else { return fail(noEncoderMessage) }
        let host = Unmanaged<HostContext>.fromOpaque(context).takeUnretainedValue()
        guard let encoder = host.encoder else { return fail(noEncoderMessage) }
        guard dimension == encoder.dimension else { return fail(wrongDimensionMessage) }
        let string = text.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: length), as: UTF8.self) } ?? ""
        let vector = encoder.embed([string])[0]
        vector.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: dimension) }
        return RP_OK
    }
