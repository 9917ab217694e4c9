import Foundation

// The values of the admin commands (`perfd jobs`, `retry`, `cancel`), which every store
// implementation answers alike.

/// What `perfd jobs` filters on; every field optional.
public struct JobFilter: Sendable {
    public var state: JobState?
    /// Jobs created at or after this time (seconds since 1970).
    public var since: Double?
    /// The series' Patient ID, exactly.
    public var patientID: String?
    /// The series' Accession Number, exactly.
    public var accession: String?
    public init(state: JobState? = nil, since: Double? = nil, patientID: String? = nil, accession: String? = nil) {
        self.state = state; self.since = since; self.patientID = patientID; self.accession = accession
    }
}

/// Why `retry` or `cancel` did nothing.
public enum AdminError: Error, CustomStringConvertible {
    case noSuchJob(Int), notRetryable(Int, JobState), notCancellable(Int, JobState)
    public var description: String {
        switch self {
        case .noSuchJob(let id): "no job \(id); `perfd jobs` lists them"
        case .notRetryable(let id, let s): "job \(id) is \(s.rawValue); only failed, cancelled, superseded or done jobs can be retried"
        case .notCancellable(let id, let s): "job \(id) is \(s.rawValue) already; only queued, running or exporting jobs can be cancelled"
        }
    }
}
