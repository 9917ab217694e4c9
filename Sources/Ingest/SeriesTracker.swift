import Config
import Foundation
import Store
import Logging
import Operations
import ServiceLifecycle
import Synchronization

/// Decides when a series is complete. Pure: the service below feeds it snapshots.
public enum SeriesCompletion {
    public enum Decision: Equatable, Sendable {
        case waiting
        case complete(reason: String)
        /// Quiet for series_quiet_seconds but short of the count it declares: a warning only.
        case quiet(shortfall: String)
        /// Short of its declared count for series_stalled_seconds: it fails as incomplete.
        case stalled(reason: String)
    }

    public struct Snapshot: Sendable {
        public var instanceCount: Int
        public var temporalPositions: Int?
        public var imagesInAcquisition: Int?
        public var distinctPositions: Int
        public var distinctTimepoints: Int
        public var lastReceived: Double
        public init(instanceCount: Int, temporalPositions: Int?, imagesInAcquisition: Int?, distinctPositions: Int,
                    distinctTimepoints: Int, lastReceived: Double) {
            self.instanceCount = instanceCount; self.temporalPositions = temporalPositions
            self.imagesInAcquisition = imagesInAcquisition; self.distinctPositions = distinctPositions
            self.distinctTimepoints = distinctTimepoints; self.lastReceived = lastReceived
        }
    }

    /// Expected count = NumberOfTemporalPositions × slices, slices from ImagesInAcquisition
    /// or, failing that, the distinct slice positions seen; else the quiet timer decides.
    /// A scanner that counts every image of the acquisition in ImagesInAcquisition is
    /// recognised once every time point and position is in: then that count is the total.
    public static func expectedCount(_ s: Snapshot) -> Int? {
        guard let t = s.temporalPositions, t > 0 else { return nil }
        let seenAll = s.distinctTimepoints == t && s.distinctPositions > 0
        if let n = s.imagesInAcquisition, n > 0 {
            return seenAll && n == t * s.distinctPositions ? n : t * n
        }
        guard seenAll else { return nil }
        return t * s.distinctPositions
    }

    /// What a series that declares its size (NumberOfTemporalPositions) still lacks, e.g.
    /// "5 of 12 instances"; nil when it is complete or declares nothing.
    public static func shortfall(_ s: Snapshot) -> String? {
        guard let t = s.temporalPositions, t > 0 else { return nil }
        if let e = expectedCount(s) { return s.instanceCount >= e ? nil : "\(s.instanceCount) of \(e) instances" }
        return "\(s.instanceCount) instances in \(s.distinctTimepoints) of \(t) time points"
    }

    /// A series that declares its size completes only when it is all in: a pause longer
    /// than `quietSeconds` is a warning, and one of `stalledSeconds` fails it as incomplete.
    /// A series that declares nothing completes after `quietSeconds` without a new instance.
    public static func decide(_ s: Snapshot, now: Double, quietSeconds: Double, stalledSeconds: Double = .infinity) -> Decision {
        if let e = expectedCount(s), s.instanceCount >= e {
            return .complete(reason: "expected count \(e) reached")
        }
        let idle = now - s.lastReceived
        if let short = shortfall(s) {
            if idle >= stalledSeconds { return .stalled(reason: "stalled: \(short), none for \(Int(stalledSeconds)) s") }
            if idle >= quietSeconds { return .quiet(shortfall: short) }
            return .waiting
        }
        if idle >= quietSeconds {
            return .complete(reason: "no new instance for \(Int(quietSeconds)) s")
        }
        return .waiting
    }
}

/// Watches receiving series and queues a job when one completes. A stalled series is
/// queued too: the worker fails it as incomplete (it never processes a partial series).
public struct SeriesTrackerService: Service {
    let store: any PerfdStore
    let config: Config
    let logger: Logger
    let interval: Duration
    /// Silence is counted from the later of the last instance and this service's start: a
    /// scanner cannot send while perfd is down, so a restart is no pause of the scanner's.
    let startedAt: Double
    let warned = QuietWarnings()
    let clock: any DaemonClock

    public init(store: any PerfdStore, config: Config, logger: Logger, interval: Duration = .milliseconds(250), startedAt: Double? = nil,
                clock: any DaemonClock = LiveClock()) {
        self.store = store; self.config = config; self.logger = logger; self.interval = interval
        self.startedAt = startedAt ?? clock.now(); self.clock = clock
    }

    public func run() async throws {
        await PollingLoop.run(every: interval, clock: clock) {
            do { try tick(now: clock.now()) } catch { logger.error("series tracker: \(error)") }
            return false
        }
    }

    /// One pass over the receiving series; returns the jobs it queued.
    @discardableResult
    public func tick(now: Double = WallClock.now()) throws -> [JobRecord] {
        var queued: [JobRecord] = []
        for s in try store.receivingSeries() {
            let shape = try store.seriesShape(s.seriesUID)
            let snap = SeriesCompletion.Snapshot(instanceCount: s.instanceCount, temporalPositions: s.temporalPositions,
                                                 imagesInAcquisition: s.imagesInAcquisition, distinctPositions: shape.positions,
                                                 distinctTimepoints: shape.timepoints, lastReceived: max(s.lastReceived, startedAt))
            let reason: String
            switch SeriesCompletion.decide(snap, now: now, quietSeconds: config.seriesQuietSeconds, stalledSeconds: config.seriesStalledSeconds) {
            case .waiting: continue
            case .quiet(let short):
                // Once per pause: the next instance (a new last_received) re-arms it.
                guard warned.first(s.seriesUID, at: s.lastReceived) else { continue }
                let msg = "series \(s.seriesUID) paused: \(short) after \(Int(config.seriesQuietSeconds)) s without a new instance; waiting for the rest (it fails as incomplete after series_stalled_seconds, \(Int(config.seriesStalledSeconds)) s)"
                logger.warning("\(msg)")
                try? store.logEvent(kind: "series_quiet", msg, now: now)
                continue
            case .complete(let r): reason = r
            case .stalled(let r):
                reason = r
                logger.warning("series \(s.seriesUID) \(r): it fails as incomplete")
            }
            warned.forget(s.seriesUID)
            let pipeline = config.pipeline(modality: s.modality, seriesDescription: s.seriesDescription, timepoints: s.temporalPositions ?? shape.timepoints)
            if let job = try store.completeSeries(s.seriesUID, reason: reason, pipeline: pipeline, now: now) {
                logger.info("job \(job.id) queued: series \(s.seriesUID) complete (\(reason)), \(job.instances) instances, pipeline \(pipeline)")
                queued.append(job)
            }
        }
        return queued
    }
}

/// The series whose current pause was already warned about, by the last_received it had.
final class QuietWarnings: Sendable {
    private let seen = Mutex<[String: Double]>([:])

    /// Whether this pause of `series` is new (and remembers it).
    func first(_ series: String, at lastReceived: Double) -> Bool {
        seen.withLock { seen in
            guard seen[series] != lastReceived else { return false }
            seen[series] = lastReceived
            return true
        }
    }

    func forget(_ series: String) { seen.withLock { _ = $0.removeValue(forKey: series) } }
}
