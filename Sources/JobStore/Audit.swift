import Foundation
import Store

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
