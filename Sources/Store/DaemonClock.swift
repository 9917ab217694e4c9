/// Time as the daemon's services see it: the wall-clock seconds they record and compare
/// (a series' quiet and stalled timers, the outbox's next attempt, the retention window, the
/// heartbeat) and the waits between their polls. The daemon runs on `LiveClock`; the
/// in-process test harness hands in a clock it can move forward, so a test waits out a
/// stall limit or an export back-off without sleeping through it.
public protocol DaemonClock: Sendable {
    /// Seconds since 1970 (what every timestamp column holds).
    func now() -> Double
    /// Returns once `duration` has passed on this clock; throws when the task is cancelled.
    func sleep(for duration: Duration) async throws
}

/// The real clock: `WallClock.now()` and `Task.sleep`.
public struct LiveClock: DaemonClock {
    public init() {}
    public func now() -> Double { WallClock.now() }
    public func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}
