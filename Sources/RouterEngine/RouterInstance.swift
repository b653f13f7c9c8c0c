import CRouterPlugin
import Foundation
import Logging
import RouterConfig
import RouterProtocol

/// A plugin failed while scoring.
public struct PluginScoreError: Error, Sendable {
    public var message: String
}

/// One router instance: a plugin instance plus the decision settings.
///
/// Immutable once created and shared by every request of its generation. The
/// plugin instance is destroyed when the last reference goes away, that is
/// when its generation was replaced and its in-flight requests finished.
public final class RouterInstance: @unchecked Sendable {
    // The plugin guarantees `score` is safe to call concurrently; everything
    // else here is immutable after init.
    public let name: String
    public let library: PluginLibrary
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
    private let handle: UnsafeMutableRawPointer
    private let host: HostContext

    init(config: DaemonConfig.Router, library: PluginLibrary, encoder: EncoderInstance?, ioBound: Bool, stats: Stats, logger: Logger)
        throws(PluginLoadError)
    {
        self.encoder = encoder
        self.ioBound = ioBound
        self.name = config.name
        self.library = library
        self.strongFraction = config.strongFraction
        self.strongModel = config.strongModel
        self.weakModel = config.weakModel
        var instanceLogger = logger
        instanceLogger[metadataKey: "router"] = .string(config.name)
        let host = HostContext(router: config.name, logger: instanceLogger, encoder: encoder, stats: stats)
        self.host = host

        let paramsJSON = Self.json(config.params)
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
        if let threshold = config.threshold {
            self.threshold = threshold
        } else {
            let description = library.vtable.describe.flatMap { library.takeString($0(handle)) }
            guard let fraction = config.strongFraction, let quantiles = Calibration.quantiles(fromDescription: description) else {
                library.vtable.destroy?(handle)
                throw PluginLoadError(
                    library: library.path,
                    message:
                        "router '\(config.name)': strong_fraction needs score quantiles, and plugin '\(library.name)' publishes none for this strong/weak pair; set threshold instead (`routerctl calibrate --router \(config.name) --strong-fraction \(config.strongFraction ?? 0.5) --prompts FILE` computes one from your prompts)"
                )
            }
            self.threshold = Calibration.threshold(strongFraction: fraction, sortedScores: quantiles)
        }
        self.handle = handle
    }

    deinit {
        library.vtable.destroy?(handle)
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
private final class HostContext {
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
