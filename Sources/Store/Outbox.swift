import Foundation

/// Where a row of the outbox is in its life.
public enum OutboxState: String, Sendable, Codable {
    case pending, sent, failed
}

/// What a row of the outbox carries.
public enum OutboxKind: String, Sendable, Codable {
    /// A result object (map, summary page, derived NCCT).
    case result
    /// The notice that tells the PACS a job failed.
    case failureNotice = "failure_notice"
}

/// A DICOM peer the outbox sends to, by the id the store gave it. Its TLS settings are not
/// here: they are the configuration's, found by this id (see ExporterService).
public struct DestinationRecord: Sendable, Hashable {
    public var id: Int
    public var aeTitle: String
    public var host: String
    public var port: Int
    /// "AE@host:port", as logs, `perfd status` and the audit trail show it.
    public var name: String { "\(aeTitle)@\(host):\(port)" }
    package init(id: Int, aeTitle: String, host: String, port: Int) {
        self.id = id; self.aeTitle = aeTitle; self.host = host; self.port = port
    }
}

/// One file waiting to reach (or having reached) one destination.
public struct OutboxItem: Sendable, Equatable {
    public var id: Int
    public var jobID: Int
    public var destinationID: Int
    /// The destination's "AE@host:port".
    public var destination: String
    public var seriesUID: String
    public var sopInstanceUID: String
    public var path: String
    public var kind: OutboxKind
    public var state: OutboxState
    public var attempts: Int
    public var nextAttemptAt: Double
    public var lastError: String?
    public var createdAt: Double

    package init(id: Int, jobID: Int, destinationID: Int, destination: String, seriesUID: String, sopInstanceUID: String, path: String, kind: OutboxKind, state: OutboxState, attempts: Int, nextAttemptAt: Double, lastError: String? = nil, createdAt: Double) {
        self.id = id; self.jobID = jobID; self.destinationID = destinationID; self.destination = destination; self.seriesUID = seriesUID; self.sopInstanceUID = sopInstanceUID; self.path = path; self.kind = kind; self.state = state; self.attempts = attempts; self.nextAttemptAt = nextAttemptAt; self.lastError = lastError; self.createdAt = createdAt
    }
}

/// A file to queue for export.
public struct OutboxEntry: Sendable {
    public var destinationID: Int
    public var seriesUID: String
    public var sopInstanceUID: String
    public var path: String
    public var kind: OutboxKind
    public init(destinationID: Int, seriesUID: String, sopInstanceUID: String, path: String, kind: OutboxKind) {
        self.destinationID = destinationID; self.seriesUID = seriesUID; self.sopInstanceUID = sopInstanceUID
        self.path = path; self.kind = kind
    }
}

public struct OutboxSummary: Codable, Sendable {
    public var destination: String
    public var pending: Int
    public var sent: Int
    public var failed: Int
    public var nextAttemptInSeconds: Double?
    public var lastError: String?
    enum CodingKeys: String, CodingKey {
        case destination, pending, sent, failed, nextAttemptInSeconds = "next_attempt_in_s", lastError = "last_error"
    }
    package init(destination: String, pending: Int, sent: Int, failed: Int, nextAttemptInSeconds: Double? = nil, lastError: String? = nil) {
        self.destination = destination; self.pending = pending; self.sent = sent; self.failed = failed; self.nextAttemptInSeconds = nextAttemptInSeconds; self.lastError = lastError
    }
}
