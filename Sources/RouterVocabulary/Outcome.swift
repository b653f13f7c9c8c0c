/// How a reported model did against another candidate on a prompt.
public enum PairwiseResult: String, Sendable, Hashable, CaseIterable, Codable {
    case win, loss, tie

    /// The reported model's share of the game: 1 for a win, ½ for a tie, 0 for a loss.
    public var score: Double {
        switch self {
        case .win: 1
        case .tie: 0.5
        case .loss: 0
        }
    }
}
