import RouterConfig
import StableHash
import Synchronization

/// A router's novelty rule at work: which prompts are novel (their familiarity, as the plugin
/// judges it, below the threshold), and where a novel prompt goes when `on_novel` says.
final class NoveltyRule: Sendable {
    let settings: DaemonConfig.Novelty
    /// `on_novel: {model: M}`: M's position among the candidates.
    let model: Int?
    private let generator: Mutex<SplitMix64>

    init(_ settings: DaemonConfig.Novelty, candidates: [String], seed: UInt64?) {
        self.settings = settings
        if case .model(let name) = settings.onNovel { model = candidates.firstIndex(of: name) } else { model = nil }
        generator = Mutex(SplitMix64(seed: seed ?? UInt64.random(in: 0...UInt64.max)))
    }

    /// Where a novel prompt goes instead of `greedy`, with the probability it was chosen with; nil
    /// when the rule leaves it to the policy.
    func redirect(greedy: Int, candidates: Int) -> (chosen: Int, propensity: Double)? {
        switch settings.onNovel {
        case .model?: return model.map { ($0, 1) }
        case .explore?:
            let draw = generator.withLock { $0.unit() }
            return (min(candidates - 1, Int(draw * Double(candidates))), 1 / Double(candidates))
        case nil: return nil
        }
    }
}
