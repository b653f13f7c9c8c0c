import Foundation
import RouterVocabulary
import TextEncoder

/// What every trainer reads: battles or quality files, model aliases, and the encoder (through
/// the on-disk embedding cache) that embeds their prompts.
public struct TrainingInputs {
    /// Battles files ({prompt, model_a, model_b, winner}) or per-prompt quality files ({prompt, quality}).
    public var files: [String]
    /// Model renames, from → to, to unify names across files.
    public var aliases: [String: String] = [:]
    /// Battles drawn per prompt from a quality file.
    public var pairsPerPrompt = 20
    /// The encoder model folder.
    public var encoderModel = "models/all-MiniLM-L6-v2"
    /// How prompts over 256 tokens are embedded.
    public var policy: LongTextPolicy = .head
    /// The on-disk embedding cache; by default the policy's.
    public var cache: String?
    /// For quality files: label each pair σ((value_a − value_b) / scale) instead of who won.
    public var softLabels: Float?
    /// Told how far embedding has got.
    public var progress: CachedEmbeddings.Progress = { _, _, _ in }

    public init(files: [String]) {
        self.files = files
    }

    /// Reads every file, and logs what it found; refuses models in fewer than `minBattles` battles.
    public func load(seed: UInt64, minBattles: Int, log: (String) -> Void = { _ in }) throws -> TrainingSet {
        let loaded = try TrainingSet.load(
            files: files, aliases: aliases, pairsPerPrompt: pairsPerPrompt, seed: seed, softScale: softLabels, minBattles: minBattles)
        log("\(loaded.battles.count) battles, \(loaded.prompts.count) distinct prompts, \(loaded.models.count) models, from \(files.count) file(s)")
        return loaded
    }

    /// Embeds prompts through the on-disk cache; only new prompts run the encoder.
    public func embed(_ prompts: [String]) throws -> [[Float]] {
        try CachedEmbeddings.embed(prompts, cache: cache ?? CachedEmbeddings.defaultPath(policy), policy: policy, progress: progress) {
            try SentenceEncoder(modelDirectory: encoderModel)
        }
    }

    /// The files' names, without their folders, as a weights file's training summary records them.
    var fileNames: [String] { files.map { ($0 as NSString).lastPathComponent } }

    /// A summary object as the `training` metadata's JSON text.
    static func json(_ value: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]), as: UTF8.self)
    }

    /// Creates the folder `path` goes in.
    static func createParentDirectory(of path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder.isEmpty ? "." : folder, withIntermediateDirectories: true)
    }
}
