import CRouterPlugin
import RouterJSON
import RouterPluginKit
import StableHash

/// RouteLLM's `random` router: P(strong wins) is uniform in [0, 1].
///
/// Without a seed every call draws a fresh number. With a seed the score is a
/// hash of (seed, prompt), so the same prompt always gets the same score,
/// whatever the order or concurrency of requests — which makes decisions
/// reproducible in tests and checkable across reloads.
///
/// With more candidates, each candidate's quality is uniform in [0, 1] on its own,
/// from the same hash keyed by the candidate's position.
final class RandomRouter: QualityPredictingRouter {
    static let name = "random"
    static let version = "1.1.0"

    private let seed: UInt64?
    private let candidateCount: Int

    init(context: PluginContext) throws {
        if let seed = context.params.int("seed") {
            guard seed >= 0 else { throw PluginError("seed must be a non-negative integer, found \(seed)") }
            self.seed = UInt64(seed)
        } else {
            seed = nil
        }
        candidateCount = context.candidates.count
    }

    func score(_ prompt: Prompt) throws -> Double { uniform(prompt, stream: 0) }

    func qualities(_ prompt: Prompt) throws -> [Double] {
        (0..<candidateCount).map { uniform(prompt, stream: UInt64($0) + 1) }
    }

    /// A uniform number: fresh without a seed, else a hash of (seed, stream, prompt).
    private func uniform(_ prompt: Prompt, stream: UInt64) -> Double {
        guard let seed else { return Double.random(in: 0..<1) }
        // FNV-1a over the prompt bytes, keyed by the seed and stream, then the SplitMix64
        // finaliser so nearby inputs spread over the whole range.
        let key = (seed &* 0x9E37_79B9_7F4A_7C15) ^ (stream &* 0xD1B5_4A32_D192_ED03)
        let hash = SplitMix64.mix(FNV1a.hash(bytes: prompt.utf8, basis: FNV1a.offsetBasis ^ key))
        return Double(hash >> 11) / Double(1 << 53)
    }

    /// Scores are uniform, so the quantiles are 0, 0.01, …, 1 (what `strong_fraction` calibrates with).
    func describe() -> RouterDescription {
        RouterDescription(
            scoreQuantiles: (0...100).map { Double($0) / 100 }, quality: QualityScale(meaning: .probability),
            details: ["seed": seed.map { .integer(Int64(bitPattern: $0)) } ?? .null])
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(RandomRouter.self, hostABI: hostABI, into: out, size: size)
}
