import Foundation
import JobStore
import Logging
import ServiceLifecycle

/// Decides when a series is complete. Pure: the service below feeds it snapshots.
public enum SeriesCompletion {
    public enum Decision: Equatable, Sendable {
        case waiting
        case complete(reason: String)
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
    public static func expectedCount(_ s: Snapshot) -> Int? {
        guard let t = s.temporalPositions, t > 0 else { return nil }
        if let n = s.imagesInAcquisition, n > 0 { return t * n }
        guard s.distinctTimepoints == t, s.distinctPositions > 0 else { return nil }
        return t * s.distinctPositions
    }

    public static func decide(_ s: Snapshot, now: Double, quietSeconds: Double) -> Decision {
        if let e = expectedCount(s), s.instanceCount >= e {
            return .complete(reason: "expected count \(e) reached")
        }
        if now - s.lastReceived >= quietSeconds {
            return .complete(reason: "no new instance for \(Int(quietSeconds)) s")
        }
        return .waiting
    }
}

/// Watches receiving series and queues a job when one completes.
public struct SeriesTrackerService: Service {
    let store: JobStore
    let config: Config
    let logger: Logger
    let interval: Duration

    public init(store: JobStore, config: Config, logger: Logger, interval: Duration = .milliseconds(250)) {
        self.store = store; self.config = config; self.logger = logger; self.interval = interval
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do { try tick() } catch { logger.error("series tracker: \(error)") }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }

    /// One pass over the receiving series; returns the jobs it queued.
    @discardableResult
    public func tick(now: Double = Clock.now()) throws -> [JobRecord] {
        var queued: [JobRecord] = []
        for s in try store.receivingSeries() {
            let shape = try store.seriesShape(s.seriesUID)
            let snap = SeriesCompletion.Snapshot(instanceCount: s.instanceCount, temporalPositions: s.temporalPositions,
                                                 imagesInAcquisition: s.imagesInAcquisition, distinctPositions: shape.positions,
                                                 distinctTimepoints: shape.timepoints, lastReceived: s.lastReceived)
            guard case .complete(let reason) = SeriesCompletion.decide(snap, now: now, quietSeconds: config.seriesQuietSeconds) else { continue }
            let pipeline = config.pipeline(modality: s.modality, seriesDescription: s.seriesDescription, timepoints: s.temporalPositions ?? shape.timepoints)
            if let job = try store.completeSeries(s.seriesUID, reason: reason, pipeline: pipeline, now: now) {
                logger.info("job \(job.id) queued: series \(s.seriesUID) complete (\(reason)), \(job.instances) instances, pipeline \(pipeline)")
                queued.append(job)
            }
        }
        return queued
    }
}
