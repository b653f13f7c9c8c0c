import Foundation

/// SplitMix64: a small seeded generator whose sequence is the same on every
/// machine, so training runs and seeded routers are reproducible.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// SplitMix64's finaliser: spreads nearby inputs over the whole 64-bit range.
    @inlinable
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A draw uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// A draw uniform in [low, high).
    public mutating func uniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * Float(unit())
    }

    /// A standard normal draw (Box–Muller).
    public mutating func gaussian() -> Float {
        let u1 = max(unit(), 1e-300)
        let u2 = unit()
        return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
    }
}
