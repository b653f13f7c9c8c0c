import Dispatch
import Foundation
import Synchronization

/// One generation built on a thread of its own, so that a reload can wait for it at most its
/// `reload.timeout`. A plugin's code cannot be interrupted: past the timeout the reload gives up on
/// the build (``abandon()``), and the thread finishes alone and releases what it built. The engine
/// owns an abandoned build: it refuses reloads until the build returns, and waits for it at shutdown.
final class GenerationBuild: Sendable {
    private enum State: Sendable {
        case running
        case finished(Result<Generation, GenerationError>)
        case abandoned
    }

    let number: UInt64
    let started: ContinuousClock.Instant
    let progress = BuildProgress()
    private let state = Mutex(State.running)
    /// Signalled once, when the thread returns.
    private let ended = DispatchSemaphore(value: 0)

    /// Starts building on a new thread; `endedAbandoned` runs on it if the build returns after its reload gave up.
    init(
        number: UInt64, build: @escaping @Sendable (BuildProgress) -> Result<Generation, GenerationError>,
        endedAbandoned: @escaping @Sendable (GenerationBuild) -> Void
    ) {
        self.number = number
        started = .now
        Thread.detachNewThread { [self] in
            let result = build(progress)
            let wasAbandoned = state.withLock { state in
                if case .abandoned = state { return true }
                state = .finished(result)
                return false
            }
            if wasAbandoned { endedAbandoned(self) }
            ended.signal()
        }
    }

    /// The build's result if it returns within `seconds`; otherwise the build is abandoned and nil.
    func result(within seconds: Double) -> Result<Generation, GenerationError>? {
        _ = ended.wait(timeout: .now() + .nanoseconds(Int(seconds * 1e9)))
        return state.withLock { state in
            if case .finished(let result) = state { return result }
            state = .abandoned
            return nil
        }
    }

    /// Waits at most `seconds` for an abandoned build's thread to return; true if it did.
    func waitUntilEnded(within seconds: Double) -> Bool {
        ended.wait(timeout: .now() + .nanoseconds(Int(seconds * 1e9))) == .success
    }
}
