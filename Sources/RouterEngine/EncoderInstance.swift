import Foundation
import NIOConcurrencyHelpers
import RouterConfig
import TextEncoder

/// A configured encoder: the loaded model, its long-text policy and its cache.
///
/// Routers of a generation share it, so a prompt is embedded once however
/// many routers ask. A reload that leaves an encoder's settings unchanged
/// keeps the same instance, model and warm cache.
public final class EncoderInstance: Sendable {
    public let config: DaemonConfig.Encoder
    public let encoder: SentenceEncoder
    public let cache: EmbeddingCache
    public let policy: LongTextPolicy

    public var dimension: Int { SentenceEncoder.dimension }

    init(config: DaemonConfig.Encoder, encoder: SentenceEncoder) {
        self.config = config
        self.encoder = encoder
        self.cache = EmbeddingCache(capacity: config.cacheSize)
        self.policy = LongTextPolicy(rawValue: config.longText) ?? .head
    }

    /// Embeddings of `texts` under the encoder's policy, from the cache where possible;
    /// the misses are computed together in one batch.
    public func embed(_ texts: [String]) -> [[Float]] {
        var results = texts.map { cache.value(for: $0) }
        let missing = results.indices.filter { results[$0] == nil }
        if !missing.isEmpty {
            // A text repeated within the batch is computed once.
            let unique = Array(Set(missing.map { texts[$0] }))
            let computed = Dictionary(uniqueKeysWithValues: zip(unique, encoder.embed(unique, policy: policy)))
            for index in missing {
                results[index] = computed[texts[index]]
            }
            for (text, vector) in computed { cache.insert(vector, for: text) }
        }
        return results.map { $0! }
    }

    /// Loaded models by folder, so reloads and several encoders on one model share its weights.
    private static let models = NIOLockedValueBox<[String: (stamp: String, encoder: SentenceEncoder)]>([:])

    /// Loads (or reuses) the model of `config`.
    static func make(_ config: DaemonConfig.Encoder, reusing previous: EncoderInstance?) throws(EncoderError) -> EncoderInstance {
        if let previous, previous.config == config, previous.encoder.modelDirectory == config.path, stamp(config.path) == previous.stamp {
            return previous
        }
        let stamp = stamp(config.path)
        if let cached = models.withLockedValue({ $0[config.path] }), cached.stamp == stamp {
            return EncoderInstance(config: config, encoder: cached.encoder)
        }
        let encoder = try SentenceEncoder(modelDirectory: config.path)
        models.withLockedValue { $0[config.path] = (stamp, encoder) }
        return EncoderInstance(config: config, encoder: encoder)
    }

    private var stamp: String { Self.stamp(encoder.modelDirectory) }

    /// Identifies the model files' version: a changed file loads anew.
    private static func stamp(_ folder: String) -> String {
        ["model.safetensors", "vocab.txt"].map { name in
            var info = stat()
            guard stat(folder + "/" + name, &info) == 0 else { return "missing" }
            return "\(info.st_size)-\(info.st_mtim.tv_sec)-\(info.st_mtim.tv_nsec)-\(info.st_ino)"
        }.joined(separator: "/")
    }
}
