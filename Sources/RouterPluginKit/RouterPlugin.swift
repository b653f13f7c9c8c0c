import CRouterPlugin
import Foundation

/// A router plugin written in Swift.
///
/// The kit turns a type conforming to this protocol into the C vtable of
/// `router_plugin.h`. The protocol never crosses the dlopen boundary: each
/// plugin image links its own copy of this module, and the host only ever
/// sees C function pointers (docs/PLUGINS.md explains why).
public protocol RouterPlugin: AnyObject, Sendable {
    /// The plugin's name, as in its descriptor.
    static var name: String { get }
    /// The plugin's version, for `status`.
    static var version: String { get }

    /// Creates an instance; throw ``PluginError`` with a message an operator can act on.
    init(context: PluginContext) throws

    /// P(strong model wins) for one prompt, in [0, 1]. Called concurrently.
    func score(_ prompt: Prompt) throws -> Double

    /// Scores several prompts (the `score` op, evaluation). The default scores
    /// them one by one; a plugin that waits on I/O overrides it to overlap calls.
    func score(batch prompts: [Prompt]) throws -> [Double]

    /// What the instance is: score quantiles, the models it knows, free-form details.
    /// The host reads it once, right after `init`.
    func describe() -> RouterDescription
}

extension RouterPlugin {
    public func describe() -> RouterDescription { RouterDescription() }

    public func score(batch prompts: [Prompt]) throws -> [Double] {
        try prompts.map { try score($0) }
    }
}

/// A plugin that predicts each candidate model's quality on a prompt (ABI revision 2),
/// so its routers may have more than two candidates and use cost policies.
public protocol QualityPredictingRouter: RouterPlugin {
    /// Each of ``PluginContext/candidates``' predicted quality on the prompt, in that order, on the
    /// scale the description's ``RouterDescription/quality`` states. Called concurrently.
    func qualities(_ prompt: Prompt) throws -> [Double]
}

/// A plugin that learns online from outcomes services report (ABI revision 3). Its descriptor
/// says `learns_online: true`.
public protocol OnlineLearningRouter: RouterPlugin {
    /// Folds outcomes into the learned state, persists it under ``PluginContext/stateDirectory``
    /// crash-safely, and publishes it to `score` before returning. Called by one host thread at a
    /// time, concurrently with scoring; on a throw nothing may have been learned.
    func learn(_ outcomes: [LearnedOutcome]) throws
    /// Forgets everything learned online, on disk too.
    func forget() throws
}

/// A plugin that says how familiar a prompt is to its router (ABI revision 4), so the host can
/// flag novel prompts and route them by a rule.
public protocol FamiliarityJudgingRouter: RouterPlugin {
    /// In [0, 1]: the share of the router's own training prompts less familiar to it than this one
    /// (what it learned online counts as known). Called concurrently.
    func familiarity(_ prompt: Prompt) throws -> Double
}

/// A plugin that draws a prompt's predictions from its router's posterior (ABI revision 5), so the
/// host can explore by Thompson sampling.
public protocol PosteriorSamplingRouter: RouterPlugin {
    /// `draws` samples, each P(strong model wins) followed by every candidate's quality (on the
    /// scale of ``QualityPredictingRouter/qualities(_:)``, or {P, 1 − P} without it): `draws ×
    /// (1 + candidates)` values. The same `seed` gives the same draws. Called concurrently.
    func samples(_ prompt: Prompt, draws: Int, seed: UInt64) throws -> [Double]
}

/// One reported outcome, as ``OnlineLearningRouter/learn(_:)`` receives it (copied: it outlives the call).
public struct LearnedOutcome: Sendable, Hashable {
    public enum Value: Sendable, Hashable {
        /// Against candidate `against` (an index into ``PluginContext/candidates``): 1 a win, 0 a loss, 0.5 a tie.
        case pairwise(against: Int, score: Double)
        /// A quality in [0, 1].
        case pointwise(Double)
    }

    public var prompt: String
    /// The prompt's embedding, when the instance has an encoder.
    public var embedding: [Float]?
    /// The candidate the outcome is about, an index into ``PluginContext/candidates``.
    public var model: Int
    public var value: Value

    public init(prompt: String, embedding: [Float]?, model: Int, value: Value) {
        self.prompt = prompt
        self.embedding = embedding
        self.model = model
        self.value = value
    }
}

/// An error a plugin reports to the host; the message reaches the operator or client.
public struct PluginError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A prompt as the host passes it. Valid only during the `score` call.
public struct Prompt {
    /// The prompt's UTF-8 bytes.
    public let utf8: UnsafeBufferPointer<UInt8>
    /// The prompt's embedding, when the instance has an encoder.
    public let embedding: UnsafeBufferPointer<Float>?

    /// The prompt as a String (a copy).
    public var text: String { String(decoding: utf8, as: UTF8.self) }
}

/// What the host tells a new instance.
public struct PluginContext: Sendable {
    /// The router instance's name.
    public let name: String
    /// Validated parameters, defaults filled in, `path` parameters absolute.
    public let params: PluginParams
    public let strongModel: String
    public let weakModel: String
    /// The router's candidate models, in the order ``QualityPredictingRouter/qualities(_:)`` answers.
    /// Two candidates are `[strongModel, weakModel]`; with more, those two are the dearest and the cheapest.
    public let candidates: [String]
    /// The encoder's dimension, or 0 when the instance has no encoder.
    public let embeddingDimension: Int
    public let host: HostServices
    /// Where the instance keeps what it learns online (an existing folder), or nil when the host
    /// offers no learning (ABI revision 3).
    public var stateDirectory: String? = nil
    /// Each candidate's nominal cost in USD, in the order of ``candidates``, or nil when the config
    /// prices not every candidate or the host predates ABI revision 6.
    public var candidateCosts: [Double]? = nil

    /// The encoder's dimension, for plugins that need embeddings; throws the operator's fix when the router has none.
    public func requireEncoder(plugin: String) throws -> Int {
        guard embeddingDimension > 0 else { throw PluginError("the \(plugin) router needs an encoder; add `encoder: <name>` to the router") }
        return embeddingDimension
    }

    /// Where each candidate is in `models` (read from `source`); an unknown name is refused
    /// with the list of known ones.
    public func candidateIndices(in models: [String], source: String) throws -> [Int] {
        try candidates.map { candidate in
            guard let index = models.firstIndex(of: candidate) else {
                throw PluginError("candidate '\(candidate)' is not in \(source) (known models: \(models.joined(separator: ", ")))")
            }
            return index
        }
    }

    /// Where the router's strong and weak models are in `models` (read from `source`); an
    /// unknown name is refused with the list of known ones.
    public func strongAndWeak(in models: [String], source: String) throws -> (strong: Int, weak: Int) {
        guard let strong = models.firstIndex(of: strongModel) else {
            throw PluginError("strong model '\(strongModel)' is not in \(source) (known models: \(models.joined(separator: ", ")))")
        }
        guard let weak = models.firstIndex(of: weakModel) else {
            throw PluginError("weak model '\(weakModel)' is not in \(source) (known models: \(models.joined(separator: ", ")))")
        }
        return (strong, weak)
    }
}

/// The parameters of an instance, decoded from the JSON object the host passes.
public struct PluginParams: @unchecked Sendable {
    // Immutable after init; holds only JSON property-list values.
    private let values: [String: Any]

    init(json: UnsafeBufferPointer<UInt8>) throws {
        let object = try JSONSerialization.jsonObject(with: Data(buffer: json))
        guard let values = object as? [String: Any] else { throw PluginError("params must be a JSON object") }
        self.values = values
    }

    public func string(_ name: String) -> String? { values[name] as? String }
    public func double(_ name: String) -> Double? { (values[name] as? NSNumber)?.doubleValue }
    public func bool(_ name: String) -> Bool? { (values[name] as? NSNumber)?.boolValue }
    public func int(_ name: String) -> Int? {
        guard let number = values[name] as? NSNumber, let value = Int(exactly: number.doubleValue) else { return nil }
        return value
    }
}

/// The host's services: logging and embeddings.
public struct HostServices: @unchecked Sendable {
    // The host guarantees the table outlives every instance created with it.
    let table: UnsafePointer<rp_host>

    public enum Level: Int32 {
        case debug = 0, info, warning, error
    }

    /// Logs through the daemon's logger.
    public func log(_ level: Level, _ message: String) {
        guard let log = table.pointee.log else { return }
        var message = message
        message.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { log(table.pointee.context, level.rawValue, $0.baseAddress, $0.count) }
        }
    }

    /// Counts one event of this instance (shown in `stats` under the router's `events`).
    public func count(_ event: String) {
        guard table.pointee.struct_size >= MemoryLayout<rp_host>.size, let count = table.pointee.count else { return }
        var event = event
        event.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { count(table.pointee.context, $0.baseAddress, $0.count) }
        }
    }

    /// Embeds a text with the instance's encoder.
    public func embed(_ text: String, dimension: Int) throws -> [Float] {
        guard table.pointee.struct_size >= MemoryLayout<rp_host>.size, let embed = table.pointee.embed else {
            throw PluginError("this routerd offers no embedding service")
        }
        var output = [Float](repeating: 0, count: dimension)
        var text = text
        var error: UnsafePointer<CChar>?
        let status = text.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { chars in
                output.withUnsafeMutableBufferPointer {
                    embed(table.pointee.context, chars.baseAddress, chars.count, $0.baseAddress, dimension, &error)
                }
            }
        }
        guard status == RP_OK else { throw PluginError(error.map { String(cString: $0) } ?? "embedding failed") }
        return output
    }
}
