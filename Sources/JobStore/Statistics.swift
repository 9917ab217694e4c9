import Foundation
import Store

extension JobStore {
    public func statistics(now: Double = WallClock.now()) throws -> StoreStatistics {
        try db.read { tx in
            var s = StoreStatistics()
            s.jobsByState = try Self.jobCounts(tx)
            // Bucket counts in SQL: one row per stage, one column per bound.
            func bucketColumns(_ bounds: [Double], _ expr: String) -> String {
                bounds.enumerated().map { "SUM(CASE WHEN \(expr) <= \($0.element) THEN 1 ELSE 0 END) AS b\($0.offset)" }.joined(separator: ", ")
            }
            func histogram(_ r: Row, _ bounds: [Double]) -> StoreStatistics.Histogram {
                var h = StoreStatistics.Histogram(bounds: bounds)
                h.count = r["n"].int ?? 0
                h.sum = r["secs"].double ?? 0
                h.cumulative = bounds.indices.map { r["b\($0)"].int ?? 0 }
                return h
            }
            let stageExpr = "MAX(0, finished_at - started_at)"
            for r in try tx.query("""
                SELECT stage, COUNT(*) AS n, SUM(\(stageExpr)) AS secs, \(bucketColumns(StoreStatistics.stageBuckets, stageExpr))
                FROM job_stages WHERE finished_at IS NOT NULL GROUP BY stage
                """) {
                s.stageHistograms[r["stage"].text ?? ""] = histogram(r, StoreStatistics.stageBuckets)
            }
            let resultExpr = "MAX(0, j.finished_at - CASE WHEN j.rerun = 0 THEN s.first_received ELSE j.created_at END)"
            if let r = try tx.query("""
                SELECT COUNT(*) AS n, SUM(\(resultExpr)) AS secs, \(bucketColumns(StoreStatistics.resultBuckets, resultExpr))
                FROM jobs j JOIN series s ON s.series_uid = j.series_uid WHERE j.state = 'done' AND j.finished_at IS NOT NULL
                """).first {
                s.timeToResult = histogram(r, StoreStatistics.resultBuckets)
            }
            for r in try tx.query("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state") {
                s.outboxByState[r["state"].text ?? ""] = r["n"].int ?? 0
            }
            if let oldest = try tx.query("SELECT MIN(created_at) AS t FROM jobs WHERE state = 'queued'").first?["t"].double {
                s.oldestQueuedSeconds = max(0, now - oldest)
            }
            s.seriesReceiving = try tx.query("SELECT COUNT(*) AS n FROM series WHERE state = 'receiving'").first?["n"].int ?? 0
            return s
        }
    }

    /// Bytes of received DICOM the store indexes (the spool's share of the disk).
    public func spoolBytes() throws -> Int {
        try db.read { tx in try tx.query("SELECT COALESCE(SUM(file_size), 0) AS b FROM instances").first?["b"].int ?? 0 }
    }

    /// Moves the WAL into the database file and truncates it (after a purge); false when
    /// readers kept part of it (see `Database.checkpointTruncate`).
    @discardableResult
    public func checkpointTruncate() throws -> Bool { try db.checkpointTruncate() }

    /// Whether the database takes a write as ingest makes them, within `timeout` seconds
    /// (for /health): nil when it does, else why not.
    public func healthProblem(timeout: Double = 1.5) -> String? {
        db.probe(timeout: timeout)
    }
}
