import CSQLite
import Foundation
import Store

extension JobStore {
    /// The id of the destination AE@host:port, recorded on first use.
    public func destinationID(aeTitle: String, host: String, port: Int) throws -> Int {
        try db.write { tx in
            try tx.execute("INSERT INTO destinations (ae_title, host, port) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", aeTitle, host, port)
            guard let id = try tx.query("SELECT id FROM destinations WHERE ae_title = ? AND host = ? AND port = ?", aeTitle, host, port).first?["id"].int else {
                throw StoreError(code: SQLITE_INTERNAL, message: "destination \(aeTitle)@\(host):\(port) was not recorded", sql: "")
            }
            return id
        }
    }

    public func destination(id: Int) throws -> DestinationRecord? {
        try db.read { tx in
            try tx.query("SELECT * FROM destinations WHERE id = ?", id).first.map {
                DestinationRecord(id: id, aeTitle: $0["ae_title"].text ?? "", host: $0["host"].text ?? "", port: $0["port"].int ?? 0)
            }
        }
    }

    static func insertOutbox(_ tx: Transaction, job: Int, _ entries: [OutboxEntry], now: Double) throws {
        for e in entries {
            // Deterministic UIDs: a re-render after a crash maps onto the same rows, and a
            // row already sent stays sent, so the PACS never gets a file twice.
            try tx.execute("""
                INSERT INTO outbox (job_id, destination_id, series_uid, sop_instance_uid, path, kind, state, attempts, next_attempt_at, created_at)
                VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)
                ON CONFLICT(job_id, destination_id, sop_instance_uid) DO UPDATE SET path = excluded.path,
                    state = CASE WHEN outbox.state = 'sent' THEN 'sent' ELSE 'pending' END
                """, job, e.destinationID, e.seriesUID, e.sopInstanceUID, e.path, e.kind.rawValue, now, now)
        }
    }

    /// Commits the render stage, its report and the outbox rows in one transaction, and
    /// moves the job to exporting (or done when there is nowhere to send).
    public func finishRender(job id: Int, result: String, report: String, outbox: [OutboxEntry], now: Double = WallClock.now()) throws {
        defer { outboxFilled.ring() }
        try db.write { tx in
            try Self.requireRunning(tx, id)
            try tx.execute("UPDATE job_stages SET finished_at = ?, result = ? WHERE job_id = ? AND stage = 'render'", now, result, id)
            try Self.insertOutbox(tx, job: id, outbox, now: now)
            let state = outbox.isEmpty ? "done" : "exporting"
            try tx.execute("UPDATE jobs SET report = ?, state = ?, stage = ?, progress = ?, finished_at = ?, updated_at = ? WHERE id = ?",
                           report, state, outbox.isEmpty ? "render" : "export", outbox.isEmpty ? 1.0 : 0.0,
                           outbox.isEmpty ? now : nil, now, id)
            try Self.addEvent(tx, id, .info, outbox.isEmpty ? "done (no destinations configured)" : "exporting \(outbox.count) files", now)
        }
    }

    /// Queues a failure notice for export (whatever the job's state).
    public func enqueueNotice(job id: Int, _ entries: [OutboxEntry], now: Double = WallClock.now()) throws {
        defer { outboxFilled.ring() }
        try db.write { tx in try Self.insertOutbox(tx, job: id, entries, now: now) }
    }

    public func report(job id: Int) throws -> String? {
        try db.read { tx in try tx.query("SELECT report FROM jobs WHERE id = ?", id).first?["report"].text }
    }

    /// The next batch to send: due rows of one (job, destination), oldest first.
    public func nextOutboxBatch(now: Double = WallClock.now(), limit: Int = 500) throws -> [OutboxItem] {
        try db.read { tx in
            guard let first = try tx.query("""
                SELECT job_id, destination_id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?
                ORDER BY next_attempt_at, id LIMIT 1
                """, now).first else { return [] }
            return try tx.query("""
                \(OutboxItem.select) WHERE o.state = 'pending' AND o.job_id = ? AND o.destination_id = ? AND o.next_attempt_at <= ?
                ORDER BY o.id LIMIT ?
                """, first["job_id"].int, first["destination_id"].int, now, limit).map(OutboxItem.init)
        }
    }

    /// Whether an outbox row is still waiting to be sent (false once it was withdrawn,
    /// sent or failed).
    public func isPending(outbox id: Int) throws -> Bool {
        try db.read { tx in try tx.query("SELECT state FROM outbox WHERE id = ?", id).first?["state"].text == "pending" }
    }

    public func markSent(_ ids: [Int], now: Double = WallClock.now()) throws {
        try db.write { tx in
            for id in ids {
                try tx.execute("UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?", now, id)
            }
        }
    }

    public func markRetry(_ ids: [Int], error: String, nextAttemptAt: Double) throws {
        try db.write { tx in
            for id in ids {
                try tx.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?", error, nextAttemptAt, id)
            }
        }
    }

    public func markFailed(_ ids: [Int], error: String) throws {
        try db.write { tx in
            for id in ids { try tx.execute("UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?", error, id) }
        }
    }

    /// An exporting job whose outbox has drained becomes done, or failed if any result
    /// file could not be delivered.
    public func settleExport(job id: Int, now: Double = WallClock.now()) throws {
        try db.write { tx in
            guard let job = try tx.query("SELECT state FROM jobs WHERE id = ?", id).first, job["state"].text == "exporting" else { return }
            let r = try tx.query("""
                SELECT SUM(state = 'pending') AS pending, SUM(state = 'failed') AS failed, SUM(state = 'sent') AS sent,
                       MAX(last_error) AS err FROM outbox WHERE job_id = ? AND kind = 'result'
                """, id).first
            guard (r?["pending"].int ?? 0) == 0 else { return }
            if (r?["failed"].int ?? 0) > 0 {
                let reason = "export failed: \(r?["err"].text ?? "the PACS did not accept the results")"
                try tx.execute("UPDATE jobs SET state = 'failed', error = ?, finished_at = ?, updated_at = ? WHERE id = ?", reason, now, now, id)
                try Self.addEvent(tx, id, .error, reason, now)
            } else {
                try tx.execute("UPDATE jobs SET state = 'done', progress = 1, finished_at = ?, updated_at = ? WHERE id = ?", now, now, id)
                try Self.addEvent(tx, id, .info, "done: \(r?["sent"].int ?? 0) files delivered", now)
            }
        }
    }

    /// Settles every exporting job whose result rows have all left 'pending': the exporter
    /// settles a job after each batch, but a crash between marking a batch sent and settling
    /// (or a database error there) would otherwise leave the job exporting for ever — never
    /// retryable, never purged. Returns the jobs it looked at.
    @discardableResult
    public func settleDrainedExports(now: Double = WallClock.now()) throws -> [Int] {
        let ids = try db.read { tx in
            try tx.query("""
                SELECT j.id FROM jobs j WHERE j.state = 'exporting'
                AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = j.id AND o.kind = 'result' AND o.state = 'pending')
                """).compactMap { $0["id"].int }
        }
        for id in ids { try settleExport(job: id, now: now) }
        return ids
    }

    public func setExportProgress(job id: Int, now: Double = WallClock.now()) throws {
        try db.write { tx in
            let r = try tx.query("SELECT COUNT(*) AS n, SUM(state != 'pending') AS d FROM outbox WHERE job_id = ? AND kind = 'result'", id).first
            let n = r?["n"].int ?? 0, d = r?["d"].int ?? 0
            if n > 0 { try tx.execute("UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND state = 'exporting'", Double(d) / Double(n), now, id) }
        }
    }

    public func outboxSummary(now: Double = WallClock.now()) throws -> [OutboxSummary] {
        try db.read { tx in
            try tx.query("""
                SELECT d.ae_title || '@' || d.host || ':' || d.port AS destination,
                       SUM(o.state = 'pending') AS pending, SUM(o.state = 'sent') AS sent, SUM(o.state = 'failed') AS failed,
                       MIN(CASE WHEN o.state = 'pending' THEN o.next_attempt_at END) AS next_at,
                       (SELECT last_error FROM outbox o2 WHERE o2.destination_id = o.destination_id AND o2.last_error IS NOT NULL
                        ORDER BY o2.id DESC LIMIT 1) AS err
                FROM outbox o JOIN destinations d ON d.id = o.destination_id GROUP BY o.destination_id ORDER BY destination
                """).map {
                OutboxSummary(destination: $0["destination"].text ?? "", pending: $0["pending"].int ?? 0, sent: $0["sent"].int ?? 0,
                              failed: $0["failed"].int ?? 0,
                              nextAttemptInSeconds: $0["next_at"].double.map { max(0, ($0 - now) * 10).rounded() / 10 },
                              lastError: $0["err"].text)
            }
        }
    }

    public func outbox(job id: Int) throws -> [OutboxItem] {
        try db.read { tx in try tx.query("\(OutboxItem.select) WHERE o.job_id = ? ORDER BY o.id", id).map(OutboxItem.init) }
    }
}
