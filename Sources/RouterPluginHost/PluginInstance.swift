import CRouterPlugin
import Foundation
import Logging
import RouterPluginKit
import RouterVocabulary

/// A plugin failed while scoring, or was handed prompts that do not fit its instance.
public struct PluginScoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What the host offers one plugin instance through `rp_host`: logging, embeddings
/// of other texts, and event counters. The engine supplies these; this module
/// only carries them across the C boundary.
public struct HostServices: Sendable {
    /// Tagged with the router instance's name.
    public var logger: Logger
    /// Embeds a text with the instance's encoder; nil when it has none.
    public var embed: (@Sendable (String) -> [Float])?
    /// Counts one plugin event (e.g. `fallback.timeout`).
    public var count: @Sendable (String) -> Void

    public init(logger: Logger, embed: (@Sendable (String) -> [Float])?, count: @escaping @Sendable (String) -> Void) {
        self.logger = logger
        self.embed = embed
        self.count = count
    }
}

/// One instance a plugin created: its handle, the host table it holds, and its
/// parsed description.
///
/// Every call into the plugin goes through here, and every count and dimension
/// is checked before a pointer is handed over, so a caller's mistake is an error
/// rather than an out-of-bounds read in the plugin. Destroyed with the last
/// reference, which is after the last request that used it finished.
public final class PluginInstance: @unchecked Sendable {
    // `handle` is only passed to the plugin, whose contract makes `score` thread-safe.
    public let library: PluginLibrary
    /// The router instance's name.
    public let name: String
    /// The models whose quality ``qualities(_:embeddings:)`` predicts, in its order.
    public let candidates: [String]
    /// The embedding dimension every scored prompt must carry; 0 for an instance without an encoder.
    public let embeddingDimension: Int
    /// What the plugin said about the instance, parsed and checked at creation.
    public let description: RouterDescription
    private let handle: UnsafeMutableRawPointer
    private let host: HostTable

    /// Creates an instance; a refusal or a malformed description is a ``PluginLoadError`` naming the router and plugin.
    ///
    /// `candidates` are the router's models, in the order ``qualities(_:embeddings:)`` answers; for two
    /// candidates they are `[strongModel, weakModel]`.
    public init(
        library: PluginLibrary, name: String, paramsJSON: String, strongModel: String, weakModel: String, candidates: [String],
        embeddingDimension: Int, stateDirectory: String? = nil, candidateCosts: [Double]? = nil, services: HostServices
    ) throws(PluginLoadError) {
        precondition(candidateCosts == nil || candidateCosts?.count == candidates.count)
        let host = HostTable(services)
        var handle: UnsafeMutableRawPointer?
        var error: UnsafeMutablePointer<CChar>?
        // C copies of every string, alive for the whole create call.
        let cStrings = ([paramsJSON, name, strongModel, weakModel] + candidates).map { strdup($0)! }
        let cStateDirectory = stateDirectory.map { strdup($0)! }
        defer {
            cStrings.forEach { free($0) }
            free(cStateDirectory)
        }
        let candidatePointers = cStrings.dropFirst(4).map { UnsafePointer($0) as UnsafePointer<CChar>? }
        let status = candidatePointers.withUnsafeBufferPointer { candidateList in
            (candidateCosts ?? []).withUnsafeBufferPointer { costs in
                var info = rp_instance_info(
                    struct_size: UInt32(MemoryLayout<rp_instance_info>.size), name: cStrings[1], params_json: cStrings[0],
                    params_json_len: strlen(cStrings[0]), strong_model: cStrings[2], weak_model: cStrings[3], embedding_dim: embeddingDimension,
                    candidates: candidateList.baseAddress, candidate_count: candidates.count, state_dir: cStateDirectory,
                    candidate_costs: candidateCosts == nil ? nil : costs.baseAddress)
                return library.vtable.create(host.table, &info, &handle, &error)
            }
        }
        let message = library.takeString(error)
        guard status == RP_OK, let handle else {
            throw PluginLoadError(
                library: library.path, message: "router '\(name)': plugin '\(library.name)' refused to create it: \(message ?? "no reason given")")
        }
        // From here the instance exists: a failure below must destroy it.
        let description: RouterDescription
        do {
            description = try Self.describe(handle, library: library, embeddingDimension: embeddingDimension)
        } catch {
            library.vtable.destroy(handle)
            throw PluginLoadError(library: library.path, message: "router '\(name)': plugin '\(library.name)' describes it wrongly: \(error.message)")
        }
        self.library = library
        self.name = name
        self.candidates = candidates
        self.embeddingDimension = embeddingDimension
        self.description = description
        self.handle = handle
        self.host = host
    }

    deinit { library.vtable.destroy(handle) }

    /// Folds outcomes into the instance's learned state (ABI revision 3); the instance persists
    /// and publishes them before this returns. Call from one thread at a time. The outcomes are
    /// the kit's own type, what a Swift plugin receives on the far side of the C structs.
    public func learn(_ outcomes: [LearnedOutcome]) throws(PluginScoreError) {
        guard let learn = library.vtable.learn else { throw PluginScoreError("plugin '\(library.name)' does not learn online") }
        for outcome in outcomes {
            var indices = [outcome.model]
            if case .pairwise(let against, let score) = outcome.value {
                indices.append(against)
                guard (0...1).contains(score) else { throw PluginScoreError("a pairwise score must be 0, 0.5 or 1, not \(score)") }
            }
            guard indices.allSatisfy(candidates.indices.contains) else {
                throw PluginScoreError("router '\(name)': an outcome names candidate \(indices) of \(candidates.count)")
            }
        }
        try check(embeddings: embeddingDimension > 0 ? outcomes.map { $0.embedding ?? [] } : nil, count: outcomes.count)
        // C copies of the texts, alive for the call; embeddings are pinned below.
        let texts = outcomes.map { Array($0.prompt.utf8CString) }
        var error: UnsafeMutablePointer<CChar>?
        let status = withPinned(texts, outcomes.map { $0.embedding ?? [] }) { textPointers, embeddingPointers in
            let table = outcomes.indices.map { index in
                let outcome = outcomes[index]
                let prompt = rp_prompt(
                    text: textPointers[index], text_len: texts[index].count - 1, embedding: embeddingDimension > 0 ? embeddingPointers[index] : nil,
                    embedding_dim: embeddingDimension)
                switch outcome.value {
                case .pairwise(let against, let score):
                    return rp_outcome(kind: RP_OUTCOME_PAIRWISE, prompt: prompt, model: outcome.model, against: against, value: score)
                case .pointwise(let quality):
                    return rp_outcome(kind: RP_OUTCOME_POINTWISE, prompt: prompt, model: outcome.model, against: 0, value: quality)
                }
            }
            return table.withUnsafeBufferPointer { learn(handle, $0.baseAddress, $0.count, &error) }
        }
        let message = library.takeString(error)
        guard status == RP_OK else { throw PluginScoreError("plugin '\(library.name)' could not learn: \(message ?? "no reason given")") }
    }

    /// Forgets what the instance learned online (ABI revision 3), on disk too.
    public func forget() throws(PluginScoreError) {
        guard let forget = library.vtable.forget else { throw PluginScoreError("plugin '\(library.name)' does not learn online") }
        var error: UnsafeMutablePointer<CChar>?
        let status = forget(handle, &error)
        let message = library.takeString(error)
        guard status == RP_OK else { throw PluginScoreError("plugin '\(library.name)' could not forget: \(message ?? "no reason given")") }
    }

    /// Runs `body` with stable pointers to each text's and each embedding's storage.
    private func withPinned<R>(
        _ texts: [[CChar]], _ embeddings: [[Float]], _ body: ([UnsafePointer<CChar>], [UnsafePointer<Float>?]) -> R
    ) -> R {
        // Copies into buffers this function owns, so the pointers stay valid for the whole call.
        let textBuffers = texts.map { text -> UnsafeMutableBufferPointer<CChar> in
            let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: text.count)
            _ = buffer.initialize(from: text)
            return buffer
        }
        let embeddingBuffers = embeddings.map { vector -> UnsafeMutableBufferPointer<Float> in
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(vector.count, 1))
            _ = buffer.initialize(from: vector)
            return buffer
        }
        defer {
            textBuffers.forEach { $0.deallocate() }
            embeddingBuffers.forEach { $0.deallocate() }
        }
        return body(textBuffers.map { UnsafePointer($0.baseAddress!) }, embeddingBuffers.map { UnsafePointer($0.baseAddress) })
    }

    /// What the plugin says about the instance now (a learning instance's state changes), or nil
    /// when it says nothing or nothing valid.
    public func describeNow() -> RouterDescription? {
        try? Self.describe(handle, library: library, embeddingDimension: embeddingDimension)
    }

    private static func describe(
        _ handle: UnsafeMutableRawPointer, library: PluginLibrary, embeddingDimension: Int
    ) throws(RouterDescriptionError) -> RouterDescription {
        guard let describe = library.vtable.describe, let text = library.takeString(describe(handle)) else { return RouterDescription() }
        let description = try RouterDescription(json: Array(text.utf8))
        if let declared = description.embeddingDimension, embeddingDimension > 0, declared != embeddingDimension {
            throw RouterDescriptionError(
                "it expects \(declared)-d embeddings ('\(MetadataKey.embeddingDimension)'), but the router's encoder gives \(embeddingDimension)-d")
        }
        return description
    }

    /// Checks that `embeddings` fit `count` prompts of this instance.
    private func check(embeddings: [[Float]]?, count: Int) throws(PluginScoreError) {
        guard embeddingDimension > 0 else {
            guard embeddings == nil else {
                throw PluginScoreError("router '\(name)' has no encoder, yet embeddings were passed")
            }
            return
        }
        guard let embeddings else { throw PluginScoreError("router '\(name)' needs \(embeddingDimension)-d embeddings, and none were passed") }
        guard embeddings.count == count else {
            throw PluginScoreError("router '\(name)': \(embeddings.count) embeddings for \(count) prompts")
        }
        if let wrong = embeddings.first(where: { $0.count != embeddingDimension }) {
            throw PluginScoreError("router '\(name)' needs \(embeddingDimension)-d embeddings, and one has \(wrong.count)")
        }
    }

    /// Scores prompts; each score is P(strong wins) in [0, 1]. `embeddings`, one per
    /// prompt of exactly ``embeddingDimension`` floats, are required when the instance has an encoder.
    public func score(_ prompts: [String], embeddings: [[Float]]? = nil) throws(PluginScoreError) -> [Double] {
        let scores = try call(library.vtable.score, prompts, embeddings: embeddings, outputsPerPrompt: 1)
        if let bad = scores.first(where: { !($0 >= 0 && $0 <= 1) }) {
            throw PluginScoreError("plugin '\(library.name)' returned score \(bad), outside [0, 1]")
        }
        return scores
    }

    /// Each candidate's predicted quality on each prompt: `result[i][j]` for prompt i and
    /// candidate j of ``candidates``. Only for a plugin that ``PluginLibrary/predictsQualities``.
    public func qualities(_ prompts: [String], embeddings: [[Float]]? = nil) throws(PluginScoreError) -> [[Double]] {
        guard let scoreModels = library.vtable.scoreModels else {
            throw PluginScoreError("plugin '\(library.name)' predicts only P(strong wins), not each candidate's quality")
        }
        let flat = try call(scoreModels, prompts, embeddings: embeddings, outputsPerPrompt: candidates.count)
        if let bad = flat.first(where: { !$0.isFinite }) {
            throw PluginScoreError("plugin '\(library.name)' returned quality \(bad); qualities must be finite")
        }
        return (0..<prompts.count).map { Array(flat[$0 * candidates.count..<($0 + 1) * candidates.count]) }
    }

    /// Calls `function` (`score` or `score_models`) on prompts, `outputsPerPrompt` doubles each.
    private func call(
        _ function: PluginVTable.Score, _ prompts: [String], embeddings: [[Float]]?, outputsPerPrompt: Int
    ) throws(PluginScoreError) -> [Double] {
        try check(embeddings: embeddings, count: prompts.count)
        var outputs = [Double](repeating: .nan, count: prompts.count * outputsPerPrompt)
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
        let dimension = embeddingDimension
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
                    outputs.withUnsafeMutableBufferPointer { out in
                        function(handle, cPrompts.baseAddress, cPrompts.count, out.baseAddress, &error)
                    }
                }
            }
        }
        try checkResult(status, error: error)
        return outputs
    }

    /// Each candidate's predicted quality on one prompt, without the batch bookkeeping (a decision's hot path).
    public func qualities(_ prompt: String, embedding: [Float]? = nil) throws(PluginScoreError) -> [Double] {
        guard let scoreModels = library.vtable.scoreModels else {
            throw PluginScoreError("plugin '\(library.name)' predicts only P(strong wins), not each candidate's quality")
        }
        try check(embeddings: embedding.map { [$0] }, count: 1)
        var qualities = [Double](repeating: .nan, count: candidates.count)
        var error: UnsafeMutablePointer<CChar>?
        let status = Self.withCPrompt(prompt, embedding: embedding) { cPrompt in
            qualities.withUnsafeMutableBufferPointer { scoreModels(handle, cPrompt, 1, $0.baseAddress, &error) }
        }
        try checkResult(status, error: error)
        if let bad = qualities.first(where: { !$0.isFinite }) {
            throw PluginScoreError("plugin '\(library.name)' returned quality \(bad); qualities must be finite")
        }
        return qualities
    }

    /// Scores one prompt without the batch bookkeeping (a decision's hot path).
    public func score(_ prompt: String, embedding: [Float]? = nil) throws(PluginScoreError) -> Double {
        let score = try callOne(library.vtable.score, prompt, embedding: embedding)
        guard score >= 0, score <= 1 else {
            throw PluginScoreError("plugin '\(library.name)' returned score \(score), outside [0, 1]")
        }
        return score
    }

    /// How familiar one prompt is to the router, in [0, 1]. Only for a plugin that ``PluginLibrary/judgesFamiliarity``.
    public func familiarity(_ prompt: String, embedding: [Float]? = nil) throws(PluginScoreError) -> Double {
        guard let familiarity = library.vtable.familiarity else {
            throw PluginScoreError("plugin '\(library.name)' does not judge familiarity (ABI revision 4's familiarity)")
        }
        let value = try callOne(familiarity, prompt, embedding: embedding)
        guard value >= 0, value <= 1 else {
            throw PluginScoreError("plugin '\(library.name)' returned familiarity \(value), outside [0, 1]")
        }
        return value
    }

    /// `draws` draws of one prompt's predictions from the router's posterior: per draw, P(strong wins)
    /// and each candidate's quality. Only for a plugin that ``PluginLibrary/samplesPosterior``.
    public func samples(_ prompt: String, embedding: [Float]? = nil, draws: Int, seed: UInt64) throws(PluginScoreError) -> [(
        score: Double, qualities: [Double]
    )] {
        guard let sample = library.vtable.sample else {
            throw PluginScoreError("plugin '\(library.name)' draws nothing from a posterior (ABI revision 5's sample)")
        }
        try check(embeddings: embedding.map { [$0] }, count: 1)
        let width = 1 + candidates.count
        var values = [Double](repeating: .nan, count: draws * width)
        var error: UnsafeMutablePointer<CChar>?
        let status = Self.withCPrompt(prompt, embedding: embedding) { cPrompt in
            values.withUnsafeMutableBufferPointer { sample(handle, cPrompt, draws, seed, $0.baseAddress, &error) }
        }
        try checkResult(status, error: error)
        if let bad = values.first(where: { !$0.isFinite }) {
            throw PluginScoreError("plugin '\(library.name)' drew \(bad); draws must be finite")
        }
        return (0..<draws).map { draw in
            let row = values[draw * width..<(draw + 1) * width]
            return (min(1, max(0, row.first!)), Array(row.dropFirst()))
        }
    }

    /// Calls `function` (`score` or `familiarity`) on one prompt for its one double.
    private func callOne(_ function: PluginVTable.Score, _ prompt: String, embedding: [Float]?) throws(PluginScoreError) -> Double {
        try check(embeddings: embedding.map { [$0] }, count: 1)
        var value = Double.nan
        var error: UnsafeMutablePointer<CChar>?
        let status = Self.withCPrompt(prompt, embedding: embedding) { function(handle, $0, 1, &value, &error) }
        try checkResult(status, error: error)
        return value
    }

    /// Calls `body` with one prompt as the C ABI passes it, valid for the call only.
    private static func withCPrompt(_ prompt: String, embedding: [Float]?, _ body: (UnsafePointer<rp_prompt>) -> Int32) -> Int32 {
        var prompt = prompt
        return prompt.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { chars in
                (embedding ?? []).withUnsafeBufferPointer { vector in
                    var cPrompt = rp_prompt(
                        text: chars.baseAddress, text_len: chars.count, embedding: embedding == nil ? nil : vector.baseAddress,
                        embedding_dim: embedding?.count ?? 0)
                    return body(&cPrompt)
                }
            }
        }
    }

    private func checkResult(_ status: Int32, error: UnsafeMutablePointer<CChar>?) throws(PluginScoreError) {
        let message = library.takeString(error)
        if status != RP_OK {
            throw PluginScoreError(message ?? "plugin '\(library.name)' failed without a message")
        }
    }
}

/// The `rp_host` table handed to one plugin instance, and the services behind it.
private final class HostTable {
    let services: HostServices
    /// Heap-allocated so its address is stable: the plugin keeps the pointer.
    let table: UnsafeMutablePointer<rp_host>

    init(_ services: HostServices) {
        self.services = services
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
    let host = Unmanaged<HostTable>.fromOpaque(context).takeUnretainedValue()
    let text = String(decoding: UnsafeRawBufferPointer(start: message, count: length), as: UTF8.self)
    let logLevel: Logger.Level =
        switch level {
        case RP_LOG_DEBUG: .debug
        case RP_LOG_INFO: .info
        case RP_LOG_WARNING: .warning
        default: .error
        }
    host.services.logger.log(level: logLevel, "\(text)")
}

private let hostCount: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int) -> Void = { context, event, length in
    guard let context, let event, length > 0 else { return }
    let host = Unmanaged<HostTable>.fromOpaque(context).takeUnretainedValue()
    host.services.count(String(decoding: UnsafeRawBufferPointer(start: event, count: length), as: UTF8.self))
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
        let host = Unmanaged<HostTable>.fromOpaque(context).takeUnretainedValue()
        guard let embed = host.services.embed else { return fail(noEncoderMessage) }
        let string = text.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: length), as: UTF8.self) } ?? ""
        let vector = embed(string)
        guard dimension == vector.count else { return fail(wrongDimensionMessage) }
        vector.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: dimension) }
        return RP_OK
    }
