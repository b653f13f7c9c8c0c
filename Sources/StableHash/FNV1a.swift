/// FNV-1a 64: stable across runs, processes and machines, unlike Swift's
/// `Hasher`, which is seeded per process. Used where a hash must mean the same
/// thing tomorrow: training splits and samples, the decision log's prompt
/// hash, the seeded `random` router. Not a secret: a short or guessable text
/// can be found by hashing candidates.
public enum FNV1a {
    /// FNV-1a's 64-bit offset basis.
    public static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    @usableFromInline static let prime: UInt64 = 0x0000_0100_0000_01B3

    /// The hash of `bytes`, starting from `basis` (a different basis keys the hash).
    /// Inlinable, so the `random` router's per-request hash is specialised.
    @inlinable
    public static func hash<Bytes: Sequence<UInt8>>(bytes: Bytes, basis: UInt64 = offsetBasis) -> UInt64 {
        var hash = basis
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* prime }
        return hash
    }

    /// The hash of a text's UTF-8 bytes.
    public static func hash(_ text: String, basis: UInt64 = offsetBasis) -> UInt64 {
        hash(bytes: text.utf8, basis: basis)
    }

    /// The hash of a text as 16 lowercase hex digits: the `prompt_hash` of decision-log,
    /// feedback and label rows.
    public static func hex(_ text: String) -> String {
        hex(hash(text))
    }

    /// A 64-bit value as 16 lowercase hex digits, zero-padded.
    public static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
