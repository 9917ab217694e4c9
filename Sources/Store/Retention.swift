import Foundation

/// A series whose spool files may go: every job on it finished before the retention window.
public struct PurgeCandidate: Sendable, Equatable, Codable {
    public var seriesUID: String
    public var studyUID: String
    public var jobIDs: [Int]
    public var instanceCount: Int
    public var bytes: Int
    /// When its last job finished (seconds since 1970).
    public var finishedAt: Double
    /// When the series last received an instance, as listed (a later one means it was sent again).
    public var lastReceived: Double
    public var paths: [String]

    enum CodingKeys: String, CodingKey {
        case seriesUID = "series_uid", studyUID = "study_uid", jobIDs = "jobs", instanceCount = "instances", bytes
        case finishedAt = "finished_at", lastReceived = "last_received", paths
    }
    package init(seriesUID: String, studyUID: String, jobIDs: [Int], instanceCount: Int, bytes: Int, finishedAt: Double, lastReceived: Double, paths: [String]) {
        self.seriesUID = seriesUID; self.studyUID = studyUID; self.jobIDs = jobIDs; self.instanceCount = instanceCount; self.bytes = bytes; self.finishedAt = finishedAt; self.lastReceived = lastReceived; self.paths = paths
    }
}
