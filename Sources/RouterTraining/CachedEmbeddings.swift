import Foundation
import RouterVocabulary
import TextEncoder

/// Prompt embeddings through the on-disk cache (``EmbeddingStore``), shared by training,
/// evaluation and calibration: only prompts not cached yet run the encoder, which is
/// loaded on first need.
public enum CachedEmbeddings {
    /// How far embedding has got: prompts done, prompts to do, seconds so far.
    public typealias Progress = (_ done: Int, _ total: Int, _ seconds: Double) -> Void

    /// One cache per long-text policy and precision: their vectors differ.
    public static func defaultPath(_ policy: LongTextPolicy, precision: EncoderPrecision = .fp32) -> String {
        ".cache/embeddings-minilm-\(policy.rawValue)\(precision == .fp32 ? "" : "-" + precision.rawValue).bin"
    }

    /// The embeddings of `prompts`, in order; new ones are computed in batches of 32 and saved as they come.
    public static func embed(
        _ prompts: [String], cache path: String, policy: LongTextPolicy, progress: Progress = { _, _, _ in },
        encoder: () throws -> SentenceEncoder
    ) throws -> [[Float]] {
        let store = try EmbeddingStore(path: path, dimension: SentenceEncoder.dimension)
        let missing = Array(Set(prompts.filter { store[$0] == nil })).sorted()
        if !missing.isEmpty {
            let encoder = try encoder()
            SentenceEncoder.setThreads(2)
            print("embedding \(missing.count) prompts (\(store.count) cached in \(store.path))")
            let start = Date()
            for begin in stride(from: 0, to: missing.count, by: 32) {
                let chunk = Array(missing[begin..<min(begin + 32, missing.count)])
                for (text, vector) in zip(chunk, encoder.embed(chunk, policy: policy)) { store.insert(vector, for: text) }
                let done = min(begin + 32, missing.count)
                progress(done, missing.count, Date().timeIntervalSince(start))
                if done % 1024 == 0 { try store.save() }
            }
            try store.save()
        }
        return prompts.map { store[$0]! }
    }
}
