import Foundation

/// Figures the metrics endpoint reads from the database (they survive restarts).
public struct StoreStatistics: Sendable {
    public var jobsByState: [JobState: Int] = [:]
    /// Per stage: (finished stage runs, total seconds).
    public var stageDurations: [String: (count: Int, seconds: Double)] = [:]
    public var outboxByState: [String: Int] = [:]
    /// Seconds the oldest queued job has waited (0 when none waits).
    public var oldestQueuedSeconds: Double = 0
    public var seriesReceiving: Int = 0
}

extension JobStore {
    public func statistics(now: Double = Clock.now()) throws -> StoreStatistics {
        try db.read { tx in
            var s = StoreStatistics()
            s.jobsByState = try Self.jobCounts(tx)
            for r in try tx.query("""
                SELECT stage, COUNT(*) AS n, SUM(finished_at - started_at) AS secs FROM job_stages
                WHERE finished_at IS NOT NULL GROUP BY stage
                """) {
                s.stageDurations[r["stage"].text ?? ""] = (r["n"].int ?? 0, r["secs"].double ?? 0)
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
