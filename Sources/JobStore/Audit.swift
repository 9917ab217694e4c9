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

extension JobStore {
    public func audit(_ e: AuditEntry, now: Double = WallClock.now()) throws {
        try db.write { tx in try Self.audit(tx, e, now) }
    }

    static func audit(_ tx: Transaction, _ e: AuditEntry, _ now: Double) throws {
        // Peer-supplied text (AE titles above all) is stored escaped: `perfd audit` prints it.
        try tx.execute("""
            INSERT INTO audit (at, kind, outcome, actor, host, series_uid, job_id, detail, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, now, e.kind.rawValue, e.outcome, PeerText.escaped(e.actor), PeerText.escaped(e.host), e.seriesUID.map(PeerText.escaped),
            e.jobID, PeerText.escaped(e.detail), max(1, e.count))
    }

    /// Deletes audit rows older than `cutoff` (seconds since 1970); returns how many went.
    @discardableResult
    public func pruneAudit(before cutoff: Double) throws -> Int {
        try db.write { tx in
            try tx.execute("DELETE FROM audit WHERE at < ?", cutoff)
            return tx.changes
        }
    }

    /// Audit rows at or after `since` (seconds since 1970), oldest first.
    public func auditTrail(since: Double = 0, limit: Int = 100_000) throws -> [AuditEntry] {
        try db.read { tx in
            try tx.query("SELECT * FROM audit WHERE at >= ? ORDER BY at, id LIMIT ?", since, limit).map { r in
                var e = AuditEntry(kind: AuditEntry.Kind(rawValue: r["kind"].text ?? "") ?? .admin, outcome: r["outcome"].text ?? "",
                                   actor: r["actor"].text ?? "", host: r["host"].text ?? "", seriesUID: r["series_uid"].text,
                                   jobID: r["job_id"].int, detail: r["detail"].text ?? "")
                e.id = r["id"].int ?? 0
                e.at = r["at"].double ?? 0
                e.count = r["count"].int ?? 1
                return e
            }
        }
    }
}
