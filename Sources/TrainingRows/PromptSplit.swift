import StableHash

/// The prompt-level split every trainer and evaluation agrees on: a prompt is in the test
/// share by the FNV-1a hash of its text, so it never depends on file order or on the process.
public enum PromptSplit {
    /// The test share the many-model evaluation holds out by default.
    public static let defaultTestShare = 0.3

    public static func isTest(_ prompt: String, share: Double = defaultTestShare) -> Bool {
        position(prompt) < share
    }

    /// Where a prompt falls in [0, 1): the test share is [0, share). Tuning holds out a band above
    /// it, say [0.3, 0.45), and trains on the rest, so the test share is never looked at.
    public static func position(_ prompt: String) -> Double {
        Double(FNV1a.hash(prompt) % 1_000_000) / 1_000_000
    }
}
