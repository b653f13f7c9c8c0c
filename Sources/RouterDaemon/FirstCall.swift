import Synchronization

/// Lets exactly one of several racing callers through: the first to ``claim()`` wins (a reply
/// racing its deadline, a shutdown asked for by a signal and by the listener's end).
final class FirstCall: Sendable {
    private let claimed = Mutex(false)

    /// True for the first caller only.
    func claim() -> Bool {
        claimed.withLock { claimed in
            defer { claimed = true }
            return !claimed
        }
    }
}
