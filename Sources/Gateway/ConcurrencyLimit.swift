#if Gateway
    import Synchronization

    /// A slot a streamed response holds until its body has been written, or until the response is
    /// dropped unwritten (a client gone before its head): released once either way.
    final class HeldSlot: Sendable {
        private let limit: ConcurrencyLimit
        private let held = Mutex(true)
        init(_ limit: ConcurrencyLimit) { self.limit = limit }
        func release() {
            if held.withLock({ held in
                defer { held = false }; return held
            }) {
                limit.release()
            }
        }
        deinit { release() }
    }

    /// At most `limit` requests call upstreams at once; the rest wait their turn in arrival order,
    /// each for at most its queue timeout (back-pressure rather than unbounded concurrency).
    final class ConcurrencyLimit: Sendable {
        private struct Waiter {
            let id: UInt64
            let continuation: CheckedContinuation<Bool, Never>
        }
        private struct State {
            var inUse = 0
            var waiters: [Waiter] = []
            var nextID: UInt64 = 0
        }
        private let state = Mutex(State())

        /// Requests holding a slot now, and waiting for one.
        var load: (inUse: Int, waiting: Int) { state.withLock { ($0.inUse, $0.waiters.count) } }

        /// Takes a slot; false when none freed up within `timeout`.
        func acquire(limit: Int, timeout: Duration) async -> Bool {
            let id: UInt64? = state.withLock { state in
                if state.inUse < limit {
                    state.inUse += 1
                    return nil
                }
                state.nextID += 1
                return state.nextID
            }
            guard let id else { return true }
            return await withCheckedContinuation { continuation in
                state.withLock { $0.waiters.append(Waiter(id: id, continuation: continuation)) }
                Task {
                    try? await Task.sleep(for: timeout)
                    let expired: Waiter? = state.withLock { state in
                        guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                        return state.waiters.remove(at: index)
                    }
                    expired?.continuation.resume(returning: false)
                }
            }
        }

        /// Gives a slot back: to the longest waiter, or to the pool.
        func release() {
            let next: Waiter? = state.withLock { state in
                if state.waiters.isEmpty {
                    state.inUse -= 1
                    return nil
                }
                return state.waiters.removeFirst()
            }
            next?.continuation.resume(returning: true)
        }
    }
#endif
