import Foundation
import RouterConfig
import RouterVocabulary
import Synchronization
import TextEncoder

/// A configured encoder: the loaded model, its long-text policy, its cache and
/// the batcher that embeds concurrent requests' prompts together.
///
/// Routers of a generation share it, so a prompt is embedded once however
/// many routers ask. A reload that leaves an encoder's settings unchanged
/// keeps the same instance, model, warm cache and batcher.
public final class EncoderInstance: Sendable {
    public let config: DaemonConfig.Encoder
    public let encoder: SentenceEncoder
    public let cache: EmbeddingCache
    public let policy: LongTextPolicy
    public let batcher: EmbeddingBatcher<SentenceEncoder>

    public var dimension: Int { SentenceEncoder.dimension }

    init(config: DaemonConfig.Encoder, encoder: SentenceEncoder) {
        self.config = config
        self.encoder = encoder
        self.cache = EmbeddingCache(capacity: config.cacheSize)
        let policy = config.longText
        self.policy = policy
        self.batcher = EmbeddingBatcher(
            limits: Self.batchLimits(config), name: config.name, encoder: encoder)
    }

    /// The batcher's limits: `batch_size`, `batch_wait_us`, and one worker per `threads` cores.
    static func batchLimits(_ config: DaemonConfig.Encoder) -> EmbeddingBatcher<SentenceEncoder>.Limits {
        EmbeddingBatcher<SentenceEncoder>.Limits(
            maxBatch: config.batchSize, maxWait: Double(config.batchWaitMicroseconds) / 1e6,
            workers: max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, config.threads)))
    }

    /// Whose cache entries a lookup may hit. A user's prompts are cached in that user's own
    /// namespace, so the speed of a hit (or the hit counters) cannot tell one local user that
    /// another sent a given prompt; the daemon's own texts (smoke prompts, the learner's
    /// outcomes, plugins' requests) share one namespace no request reaches.
    public enum CacheNamespace: Sendable, Hashable {
        case daemon
        /// A requester (a peer's uid, a gateway key); nil when its credentials could not be read.
        case peer(Requester?)
    }

    /// Embeddings of the daemon's own texts (smoke prompts, learned outcomes, plugins' requests),
    /// in the daemon's namespace and with no limits.
    public func embed(own texts: [String]) -> [[Float]] {
        do throws(EncodingLimitError) {
            return try embed(texts, namespace: .daemon, limits: .none)
        } catch {
            // `.none` has no limit to exceed.
            preconditionFailure("embedding without limits exceeded one: \(error)")
        }
    }

    /// Embeddings of `texts` under `policy` (the encoder's own when nil), from the cache where
    /// possible; the misses go to the batcher, with other callers' texts, and this thread waits.
    /// `limits` bound what the misses may cost.
    public func embed(
        _ texts: [String], namespace: CacheNamespace, policy: LongTextPolicy? = nil, limits: EncodingLimits
    ) throws(EncodingLimitError) -> [[Float]] {
        let policy = policy ?? self.policy
        let (keys, found, missing) = lookUp(texts, namespace: namespace, policy: policy)
        if missing.isEmpty { return found.map { $0! } }
        let computed = try batcher.embed(missing.map { texts[$0] }, policy: policy, limits: limits)
        return filling(found, missing: missing, with: computed, keys: keys)
    }

    /// Embeddings of `texts` under the encoder's policy, returned at once when the cache holds
    /// them all; otherwise nil, and `later` gets them (or the limit the misses exceed) on a
    /// batcher thread once the misses are computed (and cached).
    public func embed(
        _ texts: [String], namespace: CacheNamespace, limits: EncodingLimits,
        later: @escaping @Sendable (Result<[[Float]], EncodingLimitError>) -> Void
    ) -> [[Float]]? {
        let (keys, found, missing) = lookUp(texts, namespace: namespace, policy: policy)
        if missing.isEmpty { return found.map { $0! } }
        batcher.submit(missing.map { texts[$0] }, policy: policy, limits: limits) { [self] outcome in
            later(outcome.map { filling(found, missing: missing, with: $0, keys: keys) })
        }
        return nil
    }

    /// Each text's cache key, its cached embedding if any, and the indices of those not cached.
    private func lookUp(_ texts: [String], namespace: CacheNamespace, policy: LongTextPolicy) -> (
        keys: [EmbeddingCache.Key], found: [[Float]?], missing: [Int]
    ) {
        let keys = texts.map { EmbeddingCache.Key(namespace: namespace, policy: policy, text: $0) }
        let found = keys.map { cache.value(for: $0) }
        return (keys, found, found.indices.filter { found[$0] == nil })
    }

    /// `found` with the `computed` embeddings of its `missing` slots filled in, and cached under `keys`.
    private func filling(_ found: [[Float]?], missing: [Int], with computed: [[Float]], keys: [EmbeddingCache.Key]) -> [[Float]] {
        var results = found
        for (index, vector) in zip(missing, computed) {
            results[index] = vector
            cache.insert(vector, for: keys[index])
        }
        return results.map { $0! }
    }

    /// Loaded models by folder and kernel, so reloads and several encoders on one model share its weights.
    private static let models = Mutex<[String: (stamp: String, encoder: SentenceEncoder)]>([:])

    /// Loads (or reuses) the model of `config`.
    static func make(_ config: DaemonConfig.Encoder, reusing previous: EncoderInstance?) throws(EncoderError) -> EncoderInstance {
        if let previous, previous.config == config, previous.encoder.modelDirectory == config.path, stamp(config.path) == previous.stamp {
            return previous
        }
        let stamp = stamp(config.path)
        let key = [config.path, config.kernel.rawValue, config.precision.rawValue].joined(separator: "\u{0}")
        if let cached = models.withLock({ $0[key] }), cached.stamp == stamp {
            return EncoderInstance(config: config, encoder: cached.encoder)
        }
        let encoder = try SentenceEncoder.load(modelDirectory: config.path, kernel: config.kernel, precision: config.precision)
        models.withLock { $0[key] = (stamp, encoder) }
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
