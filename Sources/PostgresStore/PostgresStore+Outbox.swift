import Foundation
import Store
import Synchronization

// The outbox (claimed in leased batches), the audit trail, retention, statistics, events,
// and this node's row — `JobStore`'s Outbox, Audit, Retention and Statistics files.
extension PostgresStore {
    // MARK: outbox

    static let outboxSelect = "SELECT o.*, d.ae_title, d.host, d.port FROM outbox o JOIN destinations d ON d.id = o.destination_id"

    public func destinationID(aeTitle: String, host: String, port: Int) throws -> Int {
        try db.write { tx in
            // As in SQLite, an insert that meets the row uses up an id; ids stay the same in both.
            try tx.execute("INSERT INTO destinations (ae_title, host, port) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", aeTitle, host, port)
            guard let id = try tx.query("SELECT id FROM destinations WHERE ae_title = ? AND host = ? AND port = ?", aeTitle, host, port).first?["id"].int else {
                throw PostgresError(sqlState: nil, message: "destination \(aeTitle)@\(host):\(port) was not recorded")
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

    static func insertOutbox(_ tx: PGTransaction, job: Int, _ entries: [OutboxEntry], now: Double) throws {
        for e in entries {
            try tx.execute("""
                INSERT INTO outbox (job_id, destination_id, series_uid, sop_instance_uid, path, kind, state, attempts, next_attempt_at, created_at)
                VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)
                ON CONFLICT (job_id, destination_id, sop_instance_uid) DO UPDATE SET path = excluded.path,
                    state = CASE WHEN outbox.state = 'sent' THEN 'sent' ELSE 'pending' END
                """, job, e.destinationID, e.seriesUID, e.sopInstanceUID, e.path, e.kind.rawValue, now, now)
        }
    }

    /// `JobStore.finishRender`, fenced like a stage commit; the job's lease ends here (the
    /// outbox rows carry their own).
    public func finishRender(job id: Int, result: String, report: String, outbox: [OutboxEntry], now: Double = WallClock.now()) throws {
        defer { outboxFilled.ring() }
        try db.write { tx in
            try fence(tx, id)
            try tx.execute("UPDATE job_stages SET finished_at = ?, result = ? WHERE job_id = ? AND stage = 'render'", now, result, id)
            try Self.insertOutbox(tx, job: id, outbox, now: now)
            let state = outbox.isEmpty ? "done" : "exporting"
            try tx.execute("""
                UPDATE jobs SET report = ?, state = ?, stage = ?, progress = ?, finished_at = ?, updated_at = ?, lease_expires_at = NULL WHERE id = ?
                """, report, state, outbox.isEmpty ? "render" : "export", outbox.isEmpty ? 1.0 : 0.0, outbox.isEmpty ? now : nil, now, id)
            try Self.addEvent(tx, id, .info, outbox.isEmpty ? "done (no destinations configured)" : "exporting \(outbox.count) files", now)
            if !outbox.isEmpty { try tx.execute("SELECT pg_notify('perfd_outbox', ?)", String(id)) }
        }
    }

    public func enqueueNotice(job id: Int, _ entries: [OutboxEntry], now: Double = WallClock.now()) throws {
        defer { outboxFilled.ring() }
        try db.write { tx in try Self.insertOutbox(tx, job: id, entries, now: now) }
    }

    public func report(job id: Int) throws -> String? {
        try db.read { tx in try tx.query("SELECT report FROM jobs WHERE id = ?", id).first?["report"].text }
    }

    /// The next batch to send, claimed for this node: due rows of one (job, destination),
    /// oldest first, that no other exporter holds a live lease on. Claimed rows get this
    /// node as owner and a lease of `outboxLeaseSeconds` by the server's clock; marking them
    /// sent, retried or failed ends it. An exporter that dies mid-batch leaves rows whose lease
    /// expires and another node sends them again — under the same UIDs, so the PACS replaces
    /// rather than duplicates.
    public func nextOutboxBatch(now: Double = WallClock.now(), limit: Int = 500) throws -> [OutboxItem] {
        try db.write { tx in
            let free = "state = 'pending' AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at <= now())"
            guard let first = try tx.query("""
                SELECT job_id, destination_id FROM outbox WHERE \(free)
                ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
                """, now).first else { return [] }
            let ids = try tx.query("""
                UPDATE outbox SET lease_owner = ?, lease_expires_at = now() + make_interval(secs => ?)
                WHERE id IN (SELECT id FROM outbox WHERE job_id = ? AND destination_id = ? AND \(free)
                             ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)
                RETURNING id
                """, node, outboxLeaseSeconds, first["job_id"].int, first["destination_id"].int, now, limit).compactMap { $0["id"].int }
            return try tx.query("\(Self.outboxSelect) WHERE o.id = ANY (?::bigint[]) ORDER BY o.id", PGIntArray(ids)).map { OutboxItem($0) }
        }
    }

    public func isPending(outbox id: Int) throws -> Bool {
        try db.read { tx in try tx.query("SELECT state FROM outbox WHERE id = ?", id).first?["state"].text == "pending" }
    }

    /// The PACS accepted them: sent, whoever holds the lease.
    public func markSent(_ ids: [Int], now: Double = WallClock.now()) throws {
        try db.write { tx in
            try tx.execute("""
                UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL, lease_owner = NULL, lease_expires_at = NULL
                WHERE id = ANY (?::bigint[])
                """, now, PGIntArray(ids))
        }
    }

    public func markRetry(_ ids: [Int], error: String, nextAttemptAt: Double) throws {
        try db.write { tx in
            try tx.execute("""
                UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL
                WHERE id = ANY (?::bigint[]) AND state = 'pending'
                """, error, nextAttemptAt, PGIntArray(ids))
        }
    }

    public func markFailed(_ ids: [Int], error: String) throws {
        try db.write { tx in
            try tx.execute("""
                UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?, lease_owner = NULL, lease_expires_at = NULL
                WHERE id = ANY (?::bigint[]) AND state = 'pending'
                """, error, PGIntArray(ids))
        }
    }

    public func settleExport(job id: Int, now: Double = WallClock.now()) throws {
        try db.write { tx in
            guard let job = try tx.query("SELECT state FROM jobs WHERE id = ? FOR UPDATE", id).first, job["state"].text == "exporting" else { return }
            let r = try tx.query("""
                SELECT COUNT(*) FILTER (WHERE state = 'pending') AS pending, COUNT(*) FILTER (WHERE state = 'failed') AS failed,
                       COUNT(*) FILTER (WHERE state = 'sent') AS sent, MAX(last_error) AS err
                FROM outbox WHERE job_id = ? AND kind = 'result'
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

    @discardableResult
    public func settleDrainedExports(now: Double = WallClock.now()) throws -> [Int] {
        let ids = try db.read { tx in
            try tx.query("""
                SELECT j.id FROM jobs j WHERE j.state = 'exporting'
                AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = j.id AND o.kind = 'result' AND o.state = 'pending')
                ORDER BY j.id
                """).compactMap { $0["id"].int }
        }
        for id in ids { try settleExport(job: id, now: now) }
        return ids
    }

    public func setExportProgress(job id: Int, now: Double = WallClock.now()) throws {
        try db.write { tx in
            let r = try tx.query("SELECT COUNT(*) AS n, COUNT(*) FILTER (WHERE state <> 'pending') AS d FROM outbox WHERE job_id = ? AND kind = 'result'", id).first
            let n = r?["n"].int ?? 0, d = r?["d"].int ?? 0
            if n > 0 { try tx.execute("UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND state = 'exporting'", Double(d) / Double(n), now, id) }
        }
    }

    public func outboxSummary(now: Double = WallClock.now()) throws -> [OutboxSummary] {
        try db.read { tx in
            try tx.query("""
                SELECT d.ae_title || '@' || d.host || ':' || d.port AS destination,
                       COUNT(*) FILTER (WHERE o.state = 'pending') AS pending, COUNT(*) FILTER (WHERE o.state = 'sent') AS sent,
                       COUNT(*) FILTER (WHERE o.state = 'failed') AS failed,
                       MIN(CASE WHEN o.state = 'pending' THEN o.next_attempt_at END) AS next_at,
                       (SELECT last_error FROM outbox o2 WHERE o2.destination_id = o.destination_id AND o2.last_error IS NOT NULL
                        ORDER BY o2.id DESC LIMIT 1) AS err
                FROM outbox o JOIN destinations d ON d.id = o.destination_id
                GROUP BY o.destination_id, d.ae_title, d.host, d.port ORDER BY destination
                """).map {
                OutboxSummary(destination: $0["destination"].text ?? "", pending: $0["pending"].int ?? 0, sent: $0["sent"].int ?? 0,
                              failed: $0["failed"].int ?? 0,
                              nextAttemptInSeconds: $0["next_at"].double.map { max(0, ($0 - now) * 10).rounded() / 10 },
                              lastError: $0["err"].text)
            }
        }
    }

    public func outbox(job id: Int) throws -> [OutboxItem] {
        try db.read { tx in try tx.query("\(Self.outboxSelect) WHERE o.job_id = ? ORDER BY o.id", id).map { OutboxItem($0) } }
    }

    // MARK: audit

    public func audit(_ e: AuditEntry, now: Double = WallClock.now()) throws {
        try db.write { tx in try Self.audit(tx, e, now) }
    }

    static func audit(_ tx: PGTransaction, _ e: AuditEntry, _ now: Double) throws {
        try tx.execute("""
            INSERT INTO audit (at, kind, outcome, actor, host, series_uid, job_id, detail, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, now, e.kind.rawValue, e.outcome, PeerText.escaped(e.actor), PeerText.escaped(e.host), e.seriesUID.map(PeerText.escaped),
            e.jobID, PeerText.escaped(e.detail), max(1, e.count))
    }

    @discardableResult
    public func pruneAudit(before cutoff: Double) throws -> Int {
        try db.write { tx in try tx.execute("DELETE FROM audit WHERE at < ?", cutoff) }
    }

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

    // MARK: retention

    public func purgeCandidates(finishedBefore cutoff: Double) throws -> [PurgeCandidate] {
        try db.read { tx in
            let rows = try tx.query("""
                SELECT s.series_uid, s.study_uid, s.instance_count, s.bytes, s.last_received, MAX(j.finished_at) AS last_finished,
                       string_agg(j.id::text, ',') AS job_ids
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

    static func hasActiveJob(_ tx: PGTransaction, series: String) throws -> Bool {
        try tx.query("SELECT COUNT(*) AS n FROM jobs WHERE series_uid = ? AND state IN ('queued', 'running', 'exporting')",
                     series).first?["n"].int ?? 0 > 0
    }

    public func isStillPurgeable(_ c: PurgeCandidate) throws -> Bool {
        try db.read { tx in
            guard let s = try tx.query("SELECT state, purged_at, last_received FROM series WHERE series_uid = ?", c.seriesUID).first,
                  s["state"].text == "complete", s["purged_at"].double == nil, s["last_received"].double == c.lastReceived else { return false }
            return try !Self.hasActiveJob(tx, series: c.seriesUID)
        }
    }

    /// `JobStore.markPurged`; the instances' bytes in `instance_blobs` go with their rows.
    public func markPurged(_ c: PurgeCandidate, actor: String, now: Double = WallClock.now()) throws {
        try db.write { tx in
            _ = try tx.query("SELECT 1 AS one FROM series WHERE series_uid = ? FOR UPDATE", c.seriesUID)
            guard try !Self.hasActiveJob(tx, series: c.seriesUID) else { return }
            try tx.execute("DELETE FROM instances WHERE series_uid = ? AND path = ANY (?::text[])", c.seriesUID, Self.textArray(c.paths))
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

    /// A text[] parameter in PostgreSQL's array syntax, each element quoted and escaped.
    static func textArray(_ values: [String]) -> String {
        "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "}"
    }

    // MARK: statistics and health

    public func statistics(now: Double = WallClock.now()) throws -> StoreStatistics {
        try db.read { tx in
            var s = StoreStatistics()
            s.jobsByState = try Self.jobCounts(tx)
            func bucketColumns(_ bounds: [Double], _ expr: String) -> String {
                bounds.enumerated().map { "SUM(CASE WHEN \(expr) <= \($0.element) THEN 1 ELSE 0 END) AS b\($0.offset)" }.joined(separator: ", ")
            }
            func histogram(_ r: PGRow, _ bounds: [Double]) -> StoreStatistics.Histogram {
                var h = StoreStatistics.Histogram(bounds: bounds)
                h.count = r["n"].int ?? 0
                h.sum = r["secs"].double ?? 0
                h.cumulative = bounds.indices.map { r["b\($0)"].int ?? 0 }
                return h
            }
            let stageExpr = "GREATEST(0, finished_at - started_at)"
            for r in try tx.query("""
                SELECT stage, COUNT(*) AS n, SUM(\(stageExpr)) AS secs, \(bucketColumns(StoreStatistics.stageBuckets, stageExpr))
                FROM job_stages WHERE finished_at IS NOT NULL GROUP BY stage
                """) {
                s.stageHistograms[r["stage"].text ?? ""] = histogram(r, StoreStatistics.stageBuckets)
            }
            let resultExpr = "GREATEST(0, j.finished_at - CASE WHEN j.rerun = 0 THEN s.first_received ELSE j.created_at END)"
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

    public func spoolBytes() throws -> Int {
        try db.read { tx in try tx.query("SELECT COALESCE(SUM(file_size), 0) AS b FROM instances").first?["b"].int ?? 0 }
    }

    /// SQLite's WAL truncation has no PostgreSQL counterpart a client can run (the server
    /// recycles its WAL at checkpoints); what it is for — not keeping a purged patient's rows
    /// around — is VACUUM's job here: the dead rows of the purge tables are removed. True
    /// when VACUUM ran.
    @discardableResult
    public func checkpointTruncate() throws -> Bool {
        // VACUUM cannot run inside a transaction block: straight on a pooled connection.
        try db.withConnection { c in try c.script("VACUUM series, instances, instance_blobs") }
        return true
    }

    /// Whether the database takes a write as ingest makes them within `timeout` seconds: a
    /// committed write to this node's `health` row, then, rolled back, the inserts one
    /// received instance makes and a read of the job queue, on a connection of its own with
    /// `statement_timeout` set. nil when all of it worked, else why not.
    public func healthProblem(timeout: Double = 1.5) -> String? {
        let started = WallClock.now()
        do {
            let c = try PGConnection(url: db.url)
            try c.script("SET statement_timeout = \(Int(timeout * 1000)); SET lock_timeout = \(Int(timeout * 1000))")
            try c.script("BEGIN")
            do {
                let now = PGValue.double(WallClock.now())
                _ = try c.execute("INSERT INTO health (node, at, pid) VALUES ($1, $2, $3) ON CONFLICT (node) DO UPDATE SET at = excluded.at, pid = excluded.pid",
                                  [.text(node), now, .int(Int64(getpid()))])
                try c.script("SAVEPOINT probe")
                let uid = PGValue.text("perfd-health-probe")
                _ = try c.execute("INSERT INTO series (series_uid, study_uid, first_received, last_received, state) VALUES ($1, '', $2, $2, 'receiving')", [uid, now])
                _ = try c.execute("INSERT INTO instances (sop_instance_uid, series_uid, sop_class_uid, path, file_size, received_at) VALUES ($1, $1, '', '', 0, $2)", [uid, now])
                _ = try c.execute("SELECT id, state FROM jobs WHERE state IN ('running', 'queued') ORDER BY id LIMIT 1", [])
                try c.script("ROLLBACK TO SAVEPOINT probe; RELEASE SAVEPOINT probe; COMMIT")
            } catch {
                try? c.script("ROLLBACK")
                throw error
            }
        } catch let e as PostgresError {
            if e.sqlState == "57014" || e.sqlState == "55P03" {
                return String(format: "not answering within %.1f s (%@)", WallClock.now() - started, e.message)
            }
            return e.description
        } catch {
            return "\(error)"
        }
        return nil
    }

    // MARK: events, nodes

    public func logEvent(kind: String, _ message: String, now: Double = WallClock.now()) throws {
        try db.write { tx in
            try tx.execute("INSERT INTO events (at, kind, message) VALUES (?, ?, ?)", now, kind, PeerText.escaped(message))
            try tx.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - 10000")
        }
    }

    public func recentEvents(limit: Int = 20) throws -> [GlobalEvent] {
        try db.read { tx in
            try tx.query("SELECT at, kind, message FROM events ORDER BY id DESC LIMIT ?", limit).map {
                GlobalEvent(at: $0["at"].double ?? 0, kind: $0["kind"].text ?? "", message: $0["message"].text ?? "")
            }
        }
    }

    /// This node's row in `nodes` (SQLite's one-row `daemon` table).
    public func daemonStarted(pid: Int, aeTitle: String, port: Int, now: Double = WallClock.now()) throws {
        try db.write { tx in
            try tx.execute("""
                INSERT INTO nodes (name, pid, ae_title, port, started_at, heartbeat_at, stopped_at) VALUES (?, ?, ?, ?, ?, now(), NULL)
                ON CONFLICT (name) DO UPDATE SET pid = excluded.pid, ae_title = excluded.ae_title, port = excluded.port,
                    started_at = excluded.started_at, heartbeat_at = now(), stopped_at = NULL
                """, node, pid, aeTitle, port, now)
        }
    }

    /// The node's heartbeat by the database's clock, and its leases extended, in one
    /// transaction. Leases found lost are forgotten (see `extendLeases`).
    public func daemonHeartbeat(now: Double = WallClock.now()) throws {
        try db.write { tx in try tx.execute("UPDATE nodes SET heartbeat_at = now() WHERE name = ?", node) }
        try extendLeases()
    }

    public func daemonStopped(now: Double = WallClock.now()) throws {
        try db.write { tx in try tx.execute("UPDATE nodes SET stopped_at = ? WHERE name = ?", now, node) }
    }

    public func daemon() throws -> DaemonRecord? {
        try db.read { tx in
            try tx.query("SELECT *, EXTRACT(EPOCH FROM heartbeat_at) AS heartbeat_s FROM nodes WHERE name = ?", node).first.map(Self.daemonRecord)
        }
    }

    static func daemonRecord(_ r: PGRow) -> DaemonRecord {
        DaemonRecord(pid: r["pid"].int ?? 0, aeTitle: r["ae_title"].text ?? "", port: r["port"].int ?? 0,
                     startedAt: r["started_at"].double ?? 0, heartbeatAt: r["heartbeat_s"].double ?? 0, stoppedAt: r["stopped_at"].double)
    }

    /// Every node that ever started on this database: its record, the age of its heartbeat
    /// by the database's clock, and the jobs it holds a live lease on.
    public func nodes() throws -> [(name: String, record: DaemonRecord, heartbeatAgeSeconds: Double, runningJobs: Int)] {
        try db.read { tx in
            try tx.query("""
                SELECT n.*, EXTRACT(EPOCH FROM n.heartbeat_at) AS heartbeat_s, EXTRACT(EPOCH FROM (now() - n.heartbeat_at)) AS age_s,
                       (SELECT COUNT(*) FROM jobs j WHERE j.state = 'running' AND j.lease_owner = n.name AND j.lease_expires_at > now()) AS running
                FROM nodes n ORDER BY n.name
                """).map { ($0["name"].text ?? "", Self.daemonRecord($0), $0["age_s"].double ?? 0, $0["running"].int ?? 0) }
        }
    }

    public func jobCounts() throws -> [JobState: Int] {
        try db.read { tx in try Self.jobCounts(tx) }
    }

    static func jobCounts(_ tx: PGTransaction) throws -> [JobState: Int] {
        var out: [JobState: Int] = [:]
        for r in try tx.query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state") {
            if let s = JobState(rawValue: r["state"].text ?? "") { out[s] = r["n"].int ?? 0 }
        }
        return out
    }

    public func recentMotion(limit: Int = 5) throws -> [JobRecord] {
        try db.read { tx in try tx.query("SELECT * FROM jobs WHERE qc IS NOT NULL AND qc <> 'ok' ORDER BY updated_at DESC LIMIT ?", limit).map { JobRecord($0) } }
    }

    public func recentFailures(limit: Int = 5) throws -> [JobRecord] {
        try db.read { tx in try tx.query("SELECT * FROM jobs WHERE state = 'failed' ORDER BY finished_at DESC NULLS LAST LIMIT ?", limit).map { JobRecord($0) } }
    }
}
