/// The keys that mean the same thing in a plugin's description and in a router weights file's
/// safetensors metadata. Defined here once; trainers, model formats, plugins and the host all use
/// these names, without depending on the plugin SDK for them.
public enum MetadataKey {
    /// Scores at 0, 1, …, 100% of calibration prompts, non-decreasing, in [0, 1]:
    /// what `strong_fraction` turns into a threshold.
    public static let scoreQuantiles = "score_quantiles"
    /// The [strong, weak] pair the stored quantiles were computed for.
    public static let quantilePair = "quantile_pair"
    /// The embedding dimension a weights file was made from, or an instance expects.
    public static let embeddingDimension = "embedding_dim"
    /// The models a weights file or an instance knows, as a list of names.
    public static let models = "models"
    /// The encoder that made a weights file's embeddings.
    public static let encoder = "encoder"
    /// A weights file's format and version, e.g. `llm-router.mf/1`.
    public static let format = "format"
    /// How the training prompts over the encoder's length were embedded.
    public static let longText = "long_text"
    /// What a trainer did: files, counts, settings (a JSON object).
    public static let training = "training"
    /// What an instance's per-candidate predictions mean and their range (a JSON object, see `QualityScale`).
    public static let quality = "quality"
}

/// The calibration a weights file carries.
public enum CalibrationMetadata {
    /// Percentiles 0…100 of `scores` (nearest rank), stored under ``MetadataKey/scoreQuantiles``:
    /// what `strong_fraction` and `routerctl calibrate` turn into a threshold.
    public static func percentiles(_ scores: [Double]) -> [Double] {
        let sorted = scores.sorted()
        return (0...100).map { sorted[min(sorted.count - 1, Int((Double($0) / 100 * Double(sorted.count - 1)).rounded()))] }
    }
}
