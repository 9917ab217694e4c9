import Foundation

/// One row of the audit trail: who talked to perfd, what it stored, what it sent, and
/// what an admin did. Rows are never updated; they are deleted after `audit_retention_days`.
/// A burst of identical refusals is one row with a count (see `RefusalRecorder`).
public struct AuditEntry: Sendable, Equatable, Encodable {
    public enum Kind: String, Sendable, Codable, CaseIterable { case association, series, export, admin }
    public var id: Int = 0
    public var at: Double = 0
    public var kind: Kind
    /// accepted / refused for associations, stored for series, sent / retry / failed for
    /// exports, retry / cancel / purge for admin actions.
    public var outcome: String
    /// Calling AE title, destination AE title, or the OS user behind an admin command.
    public var actor: String
    public var host: String
    public var seriesUID: String?
    public var jobID: Int?
    public var detail: String
    /// How many events of the same kind this row stands for (repeated refusals: 1 or more).
    public var count: Int = 1

    public init(kind: Kind, outcome: String, actor: String = "", host: String = "", seriesUID: String? = nil,
                jobID: Int? = nil, detail: String = "", count: Int = 1) {
        self.kind = kind; self.outcome = outcome; self.actor = actor; self.host = host
        self.seriesUID = seriesUID; self.jobID = jobID; self.detail = detail; self.count = max(1, count)
    }

    enum CodingKeys: String, CodingKey {
        case id, at, kind, outcome, actor, host, seriesUID = "series_uid", jobID = "job_id", detail, count
    }
}
