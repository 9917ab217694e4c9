import Synchronization

/// A doorbell the store rings when it commits work for a service in this process (a queued
/// job, rows in the outbox), so a polling service sleeping out its interval wakes at once.
/// Work committed by another process (`perfd retry`) is found by the next poll instead.
public final class WorkSignal: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    /// Counts rings; a waiter that saw generation g returns at once if it is past g.
    public var generation: UInt64 { state.withLock { $0.generation } }

    /// Wakes every waiter.
    public func ring() {
        let woken = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.generation &+= 1
            defer { s.waiters.removeAll() }
            return Array(s.waiters.values)
        }
        for w in woken { w.resume() }
    }

    /// Returns when the signal rings after `seen` (at once if it already has), or when the
    /// task is cancelled. The caller bounds the wait (see `PollingLoop`).
    public func wait(since seen: UInt64) async {
        let id = state.withLock { s -> UInt64 in s.nextWaiter &+= 1; return s.nextWaiter }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.generation != seen || Task.isCancelled { return true }
                    s.waiters[id] = c
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let c = state.withLock { $0.waiters.removeValue(forKey: id) }
            c?.resume()
        }
    }
}
