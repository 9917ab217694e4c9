import Foundation

/// Figures the metrics endpoint reads from the database (they survive restarts).
public struct StoreStatistics: Sendable {
    public var jobsByState: [JobState: Int] = [:]
    public var outboxByState: [String: Int] = [:]
    /// Seconds the oldest queued job has waited (0 when none waits).
    public var oldestQueuedSeconds: Double = 0
    public var seriesReceiving: Int = 0
    /// Per stage: how long finished stage runs took, in `stageBuckets`.
    public var stageHistograms: [String: Histogram] = [:]
    /// Done jobs: from the series' first instance received (a re-run: from its queueing) to
    /// the job done with its results accepted by every destination, in `resultBuckets`.
    public var timeToResult = Histogram(bounds: StoreStatistics.resultBuckets)

    /// Upper bounds (seconds) of the stage-duration buckets: a registration or inference stage
    /// takes from a fraction of a second (a small series) to minutes (a large one, slow CPU).
    public static let stageBuckets: [Double] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]
    /// Upper bounds of the time-to-result buckets: a stroke team waits minutes, not hours.
    public static let resultBuckets: [Double] = [15, 30, 60, 90, 120, 180, 300, 600, 900, 1800, 3600]

    /// A Prometheus histogram: cumulative counts per upper bound, plus count and sum.
    public struct Histogram: Sendable, Equatable {
        public var bounds: [Double]
        /// `cumulative[i]`: observations ≤ bounds[i].
        public var cumulative: [Int]
        public var count = 0
        public var sum: Double = 0
        public init(bounds: [Double]) { self.bounds = bounds; cumulative = Array(repeating: 0, count: bounds.count) }
    }

    package init() {}
}
