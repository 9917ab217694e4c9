import Foundation
import Store

extension JobStore {
    /// Series whose every job is finished (done, failed, cancelled, superseded), the last one
    /// before `cutoff`, and that still hold instances. A series still receiving, or with any
    /// queued, running or exporting job, is never a candidate.
    public func purgeCandidates(finishedBefore cutoff: Double) throws -> [PurgeCandidate] {
        try db.read { tx in
            let rows = try tx.query("""
                SELECT s.series_uid, s.study_uid, s.instance_count, s.bytes, s.last_received, MAX(j.finished_at) AS last_finished,
                       GROUP_CONCAT(j.id) AS job_ids
                FROM series s JOIN jobs j ON j.series_uid = s.series_uid
                WHERE s.state = 'complete' AND s.purged_at IS NULL
                GROUP BY s.series_uid
                HAVING SUM(CASE WHEN j.state IN ('queued', 'running', 'exporting') OR j.finished_at IS NULL THEN 1 ELSE 0 END) = 0
                   AND MAX(j.finished_at) < ?
                ORDER BY last_finished
                """, cutoff)
            return try rows.map { r in
                let uid = r["series_uid"].text ?? ""
                let paths = try tx.query("SELECT path FROM instances WHERE series_uid = ? ORDER BY path", uid).compactMap { $0["path"].text }
                let ids = (r["job_ids"].text ?? "").split(separator: ",").compactMap { Int($0) }.sorted()
                return PurgeCandidate(seriesUID: uid, studyUID: r["study_uid"].text ?? "", jobIDs: ids,
                                      instanceCount: r["instance_count"].int ?? paths.count, bytes: r["bytes"].int ?? 0,
                                      finishedAt: r["last_finished"].double ?? 0, lastReceived: r["last_received"].double ?? 0, paths: paths)
            }
        }
    }

    /// Whether the series has a queued, running or exporting job.
    static func hasActiveJob(_ tx: Transaction, series: String) throws -> Bool {
        try tx.query("SELECT COUNT(*) AS n FROM jobs WHERE series_uid = ? AND state IN ('queued', 'running', 'exporting')",
                     series).first?["n"].int ?? 0 > 0
    }

    /// Whether a listed candidate is still one right before its files are deleted: complete,
    /// unpurged, nothing received since it was listed, no job started. (An instance sent
    /// again between the listing and the deletion would otherwise lose its file.)
    public func isStillPurgeable(_ c: PurgeCandidate) throws -> Bool {
        try db.read { tx in
            guard let s = try tx.query("SELECT state, purged_at, last_received FROM series WHERE series_uid = ?", c.seriesUID).first,
                  s["state"].text == "complete", s["purged_at"].double == nil, s["last_received"].double == c.lastReceived else { return false }
            return try !Self.hasActiveJob(tx, series: c.seriesUID)
        }
    }

    /// Forgets a purged series' instances (after its files were deleted): instance rows go,
    /// the series row keeps its UIDs and counts but loses the patient's name and ID; jobs,
    /// their events and the audit trail stay. One audit row records the purge.
    public func markPurged(_ c: PurgeCandidate, actor: String, now: Double = WallClock.now()) throws {
        try db.write { tx in
            // Only if nothing started on the series since the candidate list was made.
            guard try !Self.hasActiveJob(tx, series: c.seriesUID) else { return }
            // Only the rows of the files that were deleted: an instance that arrived since the
            // candidate list was made (the series sent again) keeps its row, and the series
            // then stays unpurged, counting what it still holds.
            for path in c.paths { try tx.execute("DELETE FROM instances WHERE series_uid = ? AND path = ?", c.seriesUID, path) }
            let left = try tx.query("SELECT COUNT(*) AS n, COALESCE(SUM(file_size), 0) AS b FROM instances WHERE series_uid = ?",
                                    c.seriesUID).first
            if let n = left?["n"].int, n > 0 {
                try tx.execute("UPDATE series SET instance_count = ?, bytes = ? WHERE series_uid = ?", n, left?["b"].int ?? 0, c.seriesUID)
            } else {
                try tx.execute("UPDATE series SET purged_at = ?, patient_name = '', patient_id = '', accession_number = '' WHERE series_uid = ?", now, c.seriesUID)
            }
            for id in c.jobIDs {
                try Self.addEvent(tx, id, .info, "spool files of the series purged (retention): \(c.instanceCount) instances", now)
            }
            try Self.audit(tx, AuditEntry(kind: .admin, outcome: "purge", actor: actor, seriesUID: c.seriesUID, jobID: c.jobIDs.last,
                                          detail: "\(c.instanceCount) instances, \(c.bytes) bytes deleted; jobs \(c.jobIDs.map(String.init).joined(separator: ","))"), now)
        }
    }
}
