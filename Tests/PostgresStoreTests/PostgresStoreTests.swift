import Foundation
@testable import JobStore
import PerfdTestSupport
import Store
@testable import PostgresStore
import Synchronization
import Testing

/// An instance whose file exists (the PostgreSQL store reads the bytes it acknowledges).
func instance(_ n: Int, series: String = "1.2.3.4", study: String = "1.2.3", patient: String = "P1", in dir: TempDir,
              content: String? = nil, path: String? = nil) -> InstanceRecord {
    let p = path ?? dir.sub("spool/\(series)") + "/\(n).dcm"
    let bytes = Data((content ?? "DICM instance \(n) of \(series) " + String(repeating: "\(n % 10)", count: 3000)).utf8)
    FileManager.default.createFile(atPath: p, contents: bytes)
    var i = InstanceRecord(sopInstanceUID: "\(series).\(n)", sopClassUID: "1.2.840.10008.5.1.4.1.1.2", seriesUID: series,
                           studyUID: study, path: p, fileSize: bytes.count, transferSyntax: "1.2.840.10008.1.2.1", temporalPosition: n / 2 + 1,
                           temporalPositions: 2, imagesInAcquisition: 2, instanceNumber: n, position: [0, 0, Double(n % 2)],
                           patientID: patient, patientName: "Doe^J", callingAE: "SCANNER", accessionNumber: "A1")
    // Odd instances carry the image attributes ingest records (even ones: a row without them).
    if n % 2 == 1 {
        i.image = StoredImage(rows: 64, columns: 48, frames: nil, orientation: "1\\0\\0\\0\\1\\0", pixelSpacing: "0.5\\0.5",
                              sliceThickness: "5", rescaleSlope: "1", rescaleIntercept: "-1024", photometric: "MONOCHROME2",
                              bitsAllocated: 16, bitsStored: 12, pixelRepresentation: 0, samplesPerPixel: 1)
    }
    return i
}

/// The same operations, with the same arguments and times, on the SQLite store and on the
/// PostgreSQL store: every answer written down, and the two transcripts compared line by
/// line. Where the stores differ on purpose (the claim's event text names the attempt and
/// node; the heartbeat is the database's clock), the line says only what they share.
func transcript(_ s: some StoreOperations, _ dir: TempDir) throws -> [String] {
    var out: [String] = []
    func log(_ label: String, _ value: Any) { out.append("\(label): \(value)") }
    func events(_ id: Int) throws -> [String] {
        try s.events(job: id).filter { !$0.message.hasPrefix("started") && !$0.message.hasPrefix("resumed") }.map { "\($0.at) \($0.level) \($0.message)" }
    }
    func caught(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(type(of: error)): \(error)" }
    }
    var t = 1_000.0
    func now() -> Double { t += 1; return t }
    let a = "1.2.3.4", b = "1.2.3.5", c = "1.2.3.6"
    for n in 0..<4 { log("record \(n)", try s.recordInstance(instance(n, in: dir), sameContent: nil, now: now())) }
    // An identical re-send under another path, then different content under the same UID.
    let copy = dir.sub("copy") + "/0.dcm"
    try FileManager.default.copyItem(atPath: instance(0, in: dir).path, toPath: copy)
    log("identical", try s.recordInstance(instance(0, in: dir, path: copy), sameContent: { _ in true }, now: now()))
    log("different", try s.recordInstance(instance(1, in: dir, content: "other bytes", path: dir.sub("x") + "/1.dcm"), sameContent: { _ in false }, now: now()))
    log("other study", try s.recordInstance(instance(9, study: "9.9", in: dir), sameContent: nil, now: now()))
    log("other patient", try s.recordInstance(instance(9, patient: "P2", in: dir), sameContent: nil, now: now()))
    log("uid in other series", try s.recordInstance(instance(0, series: b, in: dir, path: dir.sub("y") + "/0.dcm").with { $0.sopInstanceUID = "\(a).0" }, sameContent: nil, now: now()))
    log("series", try s.series(a) as Any)
    log("receiving", try s.receivingSeries())
    log("shape", try s.seriesShape(a))
    log("instances", try s.instances(ofSeries: a))
    log("syntaxes", try s.transferSyntaxes(ofSeries: a))
    log("paths", try s.knownPaths().sorted())
    log("spool bytes", try s.spoolBytes())
    let jobA = try #require(try s.completeSeries(a, reason: "test", pipeline: "baseline-t0", now: now()))
    log("complete", jobA)
    log("complete again", try s.completeSeries(a, reason: "again", pipeline: "baseline-t0", now: now()) as Any)
    log("late while queued", try s.recordInstance(instance(4, in: dir), sameContent: nil, now: now()))
    log("job", try s.job(jobA.id) as Any)
    let claimed = try #require(try s.claimNextJob(excluding: [], now: now()))
    log("claimed", "\(claimed.id) \(claimed.state) \(claimed.startedAt ?? -1) \(claimed.instances)")
    log("claimed job", try s.job(jobA.id) as Any)
    log("resumed", try s.timesResumed(job: jobA.id))
    try s.beginStage(job: jobA.id, stage: "assemble", now: now())
    try s.setProgress(job: jobA.id, 0.5, now: now())
    log("progress", try s.job(jobA.id)?.progress as Any)
    try s.finishStage(job: jobA.id, stage: "assemble", result: "{\"n\":4}", now: now())
    log("finished stages", try s.finishedStages(job: jobA.id).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
    log("stages", try s.stages(job: jobA.id))
    try s.setQC(job: jobA.id, "motion")
    log("motion", try s.recentMotion(limit: 5).map(\.id))
    let pacs = try s.destinationID(aeTitle: "PACS", host: "127.0.0.1", port: 4242)
    log("destination again", try s.destinationID(aeTitle: "PACS", host: "127.0.0.1", port: 4242) == pacs)
    let archive = try s.destinationID(aeTitle: "ARCHIVE", host: "::1", port: 11112)
    log("destinations", "\(pacs) \(archive) \(try s.destination(id: archive) as Any) \(try s.destination(id: 99) as Any)")
    try s.beginStage(job: jobA.id, stage: "render", now: now())
    try s.finishRender(job: jobA.id, result: "{}", report: "{\"r\":1}", outbox: (0..<3).map {
        OutboxEntry(destinationID: pacs, seriesUID: "2.25.1", sopInstanceUID: "2.25.1.\($0)", path: "/out/\($0).dcm", kind: .result)
    }, now: now())
    log("exporting", try s.job(jobA.id) as Any)
    log("report", try s.report(job: jobA.id) as Any)
    let batch = try s.nextOutboxBatch(now: now(), limit: 500)
    log("batch", batch)
    log("pending", try s.isPending(outbox: batch[0].id))
    try s.markSent([batch[0].id], now: now())
    let retryAt = now() + 100
    try s.markRetry([batch[1].id], error: "busy", nextAttemptAt: retryAt)
    try s.markFailed([batch[2].id], error: "refused")
    try s.setExportProgress(job: jobA.id, now: now())
    log("export progress", try s.job(jobA.id)?.progress as Any)
    log("summary", try s.outboxSummary(now: now()).map { "\($0.destination) \($0.pending) \($0.sent) \($0.failed) \($0.nextAttemptInSeconds as Any) \($0.lastError as Any)" })
    log("outbox", try s.outbox(job: jobA.id))
    log("not due yet", try s.nextOutboxBatch(now: now(), limit: 500))
    let due = try s.nextOutboxBatch(now: retryAt + 1, limit: 500)
    log("due", due)
    try s.markSent(due.map(\.id), now: now())
    try s.settleExport(job: jobA.id, now: now())
    log("settled", try s.job(jobA.id) as Any)
    log("drained", try s.settleDrainedExports(now: now()))
    log("retry", try s.retry(job: jobA.id, actor: "admin", now: now()))
    log("outbox after retry", try s.outbox(job: jobA.id))
    log("cancel", try s.cancel(job: jobA.id, actor: "admin", now: now()))
    log("cancel again", caught { try s.cancel(job: jobA.id, actor: "admin", now: now()) })
    log("retry again", try s.retry(job: jobA.id, actor: "admin", now: now()))
    log("retry active", caught { _ = try s.retry(job: jobA.id, actor: "admin", now: now()) })
    log("retry missing", caught { _ = try s.retry(job: 999, actor: "admin", now: now()) })
    // Series b: a running job superseded by a late instance.
    for n in 0..<2 { _ = try s.recordInstance(instance(n, series: b, in: dir), sameContent: nil, now: now()) }
    let jobB = try #require(try s.completeSeries(b, reason: "quiet", pipeline: "baseline-t0", now: now()))
    log("claim b", try s.claimNextJob(excluding: [jobA.id], now: now())?.id as Any)
    try s.enqueueNotice(job: jobB.id, [OutboxEntry(destinationID: archive, seriesUID: "2.25.2", sopInstanceUID: "2.25.2.1", path: "/out/n.dcm", kind: .failureNotice)], now: now())
    log("late while running", try s.recordInstance(instance(2, series: b, in: dir), sameContent: nil, now: now()))
    log("stage of superseded", caught { try s.beginStage(job: jobB.id, stage: "assemble", now: now()) })
    log("fail superseded", try s.fail(job: jobB.id, stage: "assemble", reason: "late", now: now()))
    try s.addEvent(job: jobB.id, .warning, "note\r\nforged", now: now())
    log("events a", try events(jobA.id))
    log("events b", try events(jobB.id))
    log("outbox b", try s.outbox(job: jobB.id))
    // Series b again: complete, claim, fail.
    let jobB2 = try #require(try s.completeSeries(b, reason: "quiet", pipeline: "baseline-t0", now: now()))
    log("claim b2", try s.claimNextJob(excluding: [jobA.id], now: now())?.id as Any)
    log("fail b2", try s.fail(job: jobB2.id, stage: "register", reason: "slice spacing is not uniform", now: now()))
    log("failures", try s.recentFailures(limit: 5).map(\.id))
    log("counts", try s.jobCounts().sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key)=\($0.value)" })
    log("jobs", try s.jobs(state: nil, limit: 1000).map(\.id))
    log("queued jobs", try s.jobs(state: .queued, limit: 1000).map(\.id))
    let filtered = try s.jobs(JobStore.JobFilter(patientID: "P1", accession: "A1"), limit: 1)
    log("filtered", "\(filtered.jobs.map(\.id)) of \(filtered.total)")
    log("filtered all", try s.jobs(JobStore.JobFilter(since: 0), limit: nil).jobs.map(\.id))
    // Series c: rows whose spool files are gone before any job ran.
    for n in 0..<2 { _ = try s.recordInstance(instance(n, series: c, in: dir), sameContent: nil, now: now()) }
    log("dropped", try s.dropUnacknowledged(paths: [dir.path + "/spool/\(c)/0.dcm", "/nowhere.dcm"], now: now()))
    log("series c", try s.series(c) as Any)
    // Global events, audit, the daemon's row.
    try s.logEvent(kind: "start", "perfd started\u{1b}[2J", now: now())
    log("recent events", try s.recentEvents(limit: 5).map { "\($0.at) \($0.kind) \($0.message)" })
    try s.audit(AuditEntry(kind: .association, outcome: "refused", actor: "EVIL\r\n", host: "10.0.0.1", detail: "not allowed", count: 3), now: now())
    let trail = try s.auditTrail(since: 0, limit: 100_000)
    log("audit", trail)
    log("audit since", try s.auditTrail(since: trail.last!.at, limit: 10).count)
    try s.daemonStarted(pid: 42, aeTitle: "PERFD", port: 11112, now: now())
    try s.daemonHeartbeat(now: now())
    try s.daemonStopped(now: now())
    let d = try #require(try s.daemon())
    log("daemon", "\(d.pid) \(d.aeTitle) \(d.port) \(d.startedAt) \(d.stoppedAt as Any) heartbeat set: \(d.heartbeatAt > 0)")
    // Statistics (dictionaries written in key order).
    let st = try s.statistics(now: now())
    log("statistics", "\(st.jobsByState.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key)=\($0.value)" }) \(st.outboxByState.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }) \(st.oldestQueuedSeconds) \(st.seriesReceiving)")
    log("stage histograms", st.stageHistograms.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" })
    log("time to result", st.timeToResult)
    // Retention: series a's last job finished (cancel it), then purge it.
    _ = try s.cancel(job: jobA.id, actor: "admin", now: now())
    let candidates = try s.purgeCandidates(finishedBefore: now() + 10)
    log("candidates", candidates)
    for cand in candidates {
        log("still purgeable", try s.isStillPurgeable(cand))
        try s.markPurged(cand, actor: "retention", now: now())
    }
    log("purged a", try s.series(a) as Any)
    log("instances a", try s.instances(ofSeries: a).count)
    log("pruned", try s.pruneAudit(before: 1_010))
    log("audit after prune", try s.auditTrail(since: 0, limit: 100_000).count)
    log("health", s.healthProblem(timeout: 5) ?? "ok")
    log("checkpoint", try s.checkpointTruncate())
    return out
}

/// Runs `body(0..<n)` on n threads at once (concurrentPerform would run only as many at a
/// time as there are cores) and returns when all are done.
func inParallel(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for k in 0..<n {
        group.enter()
        Thread { body(k); group.leave() }.start()
    }
    group.wait()
}

/// A value threads share (a Mutex a closure that escapes can hold).
final class Shared<T: Sendable>: Sendable {
    private let m: Mutex<T>
    init(_ v: T) { m = Mutex(v) }
    func withLock<R>(_ body: (inout T) -> R) -> R { m.withLock { body(&$0) } }
}

extension InstanceRecord {
    func with(_ change: (inout InstanceRecord) -> Void) -> InstanceRecord { var c = self; change(&c); return c }
}

@Suite(.enabled(if: PostgresTestServer.available, PostgresTestServer.skipReason))
struct PostgresStoreTests {
    /// Every operation, on both stores, gives the same answers.
    @Test func everyOperationAnswersAsTheSQLiteStoreDoes() throws {
        let url = try freshDatabaseURL()
        let dirA = TempDir(), dirB = TempDir()
        let sqlite = try transcript(try JobStore(path: dirA.path + "/db.sqlite"), dirA)
        let pg = try PostgresStore(url: url, node: "node-a")
        let postgres = try transcript(pg, dirB)
        #expect(sqlite.count == postgres.count)
        // The temporary folders differ: compare with each one's path taken out.
        for (l, r) in zip(sqlite, postgres) {
            #expect(l.replacingOccurrences(of: dirA.path, with: "DIR") == r.replacingOccurrences(of: dirB.path, with: "DIR"))
        }
        // What only the PostgreSQL store has: the bytes of what it acknowledged (those of the
        // purged series a and b went with their rows), the migrations, the node row.
        let c1 = try #require(try pg.instanceBytes("1.2.3.6.1"))
        #expect(c1 == [UInt8](try Data(contentsOf: URL(fileURLWithPath: dirB.path + "/spool/1.2.3.6/1.dcm"))))
        #expect(try pg.instanceBytes("1.2.3.4.0") == nil && pg.instanceBytes("1.2.3.5.0") == nil)
        #expect(try pg.db.read { tx in try tx.query("SELECT COUNT(*) AS n FROM instance_blobs").first?["n"].int } == 1)
        let names = try pg.db.read { tx in try tx.query("SELECT name FROM migrations ORDER BY name").compactMap { $0["name"].text } }
        #expect(names == PostgresMigrations.all.map(\.name))
        #expect(try pg.nodes().map(\.name) == ["node-a"])
        // Migrating again (a second node starting) changes nothing.
        _ = try PostgresStore(url: url, node: "node-b")
        #expect(try pg.db.read { tx in try tx.query("SELECT COUNT(*) AS n FROM migrations").first?["n"].int } == PostgresMigrations.all.count)
    }

    /// Several nodes claiming from one queue at once: each of 2,000 jobs is claimed exactly
    /// once, at attempt 1, by the node that got it.
    @Test func concurrentClaimersTakeEveryJobExactlyOnce() throws {
        let url = try freshDatabaseURL()
        let setup = try PostgresStore(url: url, node: "setup")
        let total = 2_000
        try setup.db.write { tx in
            try tx.execute("""
                INSERT INTO series (series_uid, study_uid, first_received, last_received, state)
                SELECT '2.25.' || g, '1', 0, 0, 'complete' FROM generate_series(1, ?) g
                """, total)
            try tx.execute("""
                INSERT INTO jobs (series_uid, study_uid, pipeline, state, instances, created_at, updated_at)
                SELECT '2.25.' || g, '1', 'baseline-t0', 'queued', 1, g, g FROM generate_series(1, ?) g
                """, total)
        }
        let claimers = 4
        let stores = try (0..<claimers).map { try PostgresStore(url: url, node: "node-\($0)", leaseSeconds: 600, poolSize: 2) }
        let claimed = Shared<[Int: [Int]]>([:])   // node → jobs
        let failures = Shared<[String]>([])
        let started = Date()
        inParallel(claimers) { k in
            var mine: [Int] = []
            do {
                while let job = try stores[k].claimNextJob() { mine.append(job.id) }
            } catch {
                failures.withLock { $0.append("node-\(k): \(error)") }
            }
            claimed.withLock { $0[k] = mine }
        }
        let seconds = Date().timeIntervalSince(started)
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        let all = claimed.withLock { $0 }
        let ids = all.values.flatMap { $0 }
        #expect(ids.count == total)
        #expect(Set(ids).count == total, "a job was claimed twice")
        let rows = try setup.db.read { tx in try tx.query("SELECT id, attempt, lease_owner, state FROM jobs") }
        #expect(rows.count == total)
        #expect(rows.allSatisfy { $0["attempt"].int == 1 && $0["state"].text == "running" })
        for (k, jobs) in all {
            let owned = Set(rows.filter { $0["lease_owner"].text == "node-\(k)" }.compactMap { $0["id"].int })
            #expect(owned == Set(jobs))
        }
        print("PG-CLAIM | \(total) jobs, \(claimers) claimers: \(all.keys.sorted().map { "node-\($0) \(all[$0]!.count)" }.joined(separator: ", ")); \(String(format: "%.2f", seconds)) s, \(String(format: "%.0f", Double(total) / seconds)) claims/s (fsync on)")
    }

    /// A lease that expires is put back in the queue and claimed again with attempt + 1; the
    /// old owner's commits are refused from then on, and a live lease is never reaped.
    @Test func anExpiredLeaseIsReapedReclaimedAndTheOldOwnerFencedOff() throws {
        let url = try freshDatabaseURL()
        let dir = TempDir()
        let lease = 1.0
        let a = try PostgresStore(url: url, node: "node-a", leaseSeconds: lease)
        let b = try PostgresStore(url: url, node: "node-b", leaseSeconds: lease)
        for n in 0..<2 { try a.recordInstance(instance(n, in: dir)) }
        let job = try #require(try a.completeSeries("1.2.3.4", reason: "q", pipeline: "baseline-t0"))
        #expect(try a.claimNextJob()?.id == job.id)
        #expect(try b.claimNextJob() == nil)                     // held: not claimable
        #expect(a.heldAttempt(job: job.id) == 1)
        try a.beginStage(job: job.id, stage: "assemble")
        // Heartbeats keep it: past the first expiry, still a's, and the reaper leaves it.
        for _ in 0..<3 {
            usleep(400_000)
            try a.daemonHeartbeat()
        }
        #expect(try b.requeueExpiredLeases().isEmpty)
        try a.finishStage(job: job.id, stage: "assemble", result: "{}")
        let held = try #require(try a.lease(job: job.id))
        #expect(held.attempt == 1 && held.owner == "node-a" && (held.secondsLeft ?? 0) > 0.5)
        // a stops heartbeating (a hang, a cut cable): the lease expires by the server's clock.
        try a.beginStage(job: job.id, stage: "register")
        usleep(UInt32((lease + 0.3) * 1_000_000))
        #expect(throws: PostgresStore.LeaseLost.self) { try a.finishStage(job: job.id, stage: "register", result: "{}") }
        let reaped = try b.requeueExpiredLeases()
        #expect(reaped.map(\.job) == [job.id] && reaped[0].attempt == 1 && reaped[0].owner == "node-a" && !reaped[0].failed)
        #expect(try b.job(job.id)?.state == .queued)
        // b claims it again: attempt 2, its stages kept, the resume recorded.
        let again = try #require(try b.claimNextJob())
        #expect(again.id == job.id)
        #expect(try b.lease(job: job.id)?.attempt == 2 && b.lease(job: job.id)?.owner == "node-b")
        #expect(try b.finishedStages(job: job.id)["assemble"] == "{}")
        #expect(try b.timesResumed(job: job.id) == 1)
        // a wakes up: every commit it tries is refused, naming the attempts; nothing changes.
        do {
            try a.finishStage(job: job.id, stage: "register", result: "{\"stale\":true}")
            Issue.record("the stale owner's commit went through")
        } catch let e as PostgresStore.LeaseLost {
            #expect(e.heldAttempt == 1 && e.currentAttempt == 2 && e.currentOwner == "node-b")
            #expect("\(e)".contains("attempt 2, owned by node-b"))
        }
        #expect(throws: PostgresStore.LeaseLost.self) { try a.beginStage(job: job.id, stage: "render") }
        #expect(throws: PostgresStore.LeaseLost.self) {
            try a.finishRender(job: job.id, result: "{}", report: "{}", outbox: [])
        }
        #expect(try a.fail(job: job.id, stage: "register", reason: "stale") == false)
        try a.setProgress(job: job.id, 0.9)
        #expect(try b.job(job.id)?.state == .running)
        #expect(try b.job(job.id)?.progress != 0.9)
        #expect(try b.stages(job: job.id).first { $0.stage == "register" }?.result == nil)
        // a's heartbeat finds the lease lost and forgets it; b's keeps its own.
        #expect(try a.extendLeases() == [job.id])
        #expect(a.heldAttempt(job: job.id) == nil)
        #expect(try b.extendLeases().isEmpty)
        // b finishes the job.
        try b.beginStage(job: job.id, stage: "render")
        try b.finishRender(job: job.id, result: "{}", report: "{}", outbox: [])
        #expect(try b.job(job.id)?.state == .done)
        #expect(try b.events(job: job.id).contains { $0.message.contains("lease of node node-a (attempt 1) expired") })
    }

    /// A job whose lease expired `maxAttempts` times is failed with the reason, not queued
    /// for ever (a series that kills every node that takes it).
    @Test func aJobThatExhaustsItsAttemptsIsFailed() throws {
        let url = try freshDatabaseURL()
        let dir = TempDir()
        let s = try PostgresStore(url: url, node: "node-a", leaseSeconds: 0.3, maxAttempts: 2)
        try s.recordInstance(instance(0, in: dir))
        let job = try #require(try s.completeSeries("1.2.3.4", reason: "q", pipeline: "baseline-t0"))
        for attempt in 1...2 {
            #expect(try s.claimNextJob()?.id == job.id)
            usleep(450_000)
            let r = try s.requeueExpiredLeases()
            #expect(r.map(\.attempt) == [attempt])
            #expect(r.first?.failed == (attempt == 2))
        }
        let j = try #require(try s.job(job.id))
        #expect(j.state == .failed)
        #expect(j.error?.contains("given up after 2 attempts") == true)
        #expect(try s.claimNextJob() == nil)
    }

    /// Outbox batches are claimed under a lease: a second exporter gets nothing while it is
    /// live, and the same rows (same UIDs) once it expires.
    @Test func outboxBatchesAreLeased() throws {
        let url = try freshDatabaseURL()
        let dir = TempDir()
        let a = try PostgresStore(url: url, node: "node-a", outboxLeaseSeconds: 0.5)
        let b = try PostgresStore(url: url, node: "node-b", outboxLeaseSeconds: 0.5)
        try a.recordInstance(instance(0, in: dir))
        let job = try #require(try a.completeSeries("1.2.3.4", reason: "q", pipeline: "baseline-t0"))
        _ = try #require(try a.claimNextJob())
        try a.beginStage(job: job.id, stage: "render")
        let pacs = try a.destinationID(aeTitle: "PACS", host: "127.0.0.1", port: 4242)
        try a.finishRender(job: job.id, result: "{}", report: "{}", outbox: (0..<4).map {
            OutboxEntry(destinationID: pacs, seriesUID: "2.25.7", sopInstanceUID: "2.25.7.\($0)", path: "/out/\($0).dcm", kind: .result)
        })
        let first = try a.nextOutboxBatch(limit: 3)
        #expect(first.count == 3)
        let rest = try b.nextOutboxBatch()
        #expect(rest.map(\.sopInstanceUID) == ["2.25.7.3"])        // only the row a did not take
        #expect(try b.nextOutboxBatch().isEmpty)
        try b.markSent(rest.map(\.id))
        try a.markSent([first[0].id])
        // a dies between the PACS's answer and marking the other two sent: after the lease,
        // b takes exactly those two, under their UIDs.
        usleep(700_000)
        let retaken = try b.nextOutboxBatch()
        #expect(retaken.map(\.sopInstanceUID) == ["2.25.7.1", "2.25.7.2"])
        try b.markSent(retaken.map(\.id))
        try b.settleExport(job: job.id)
        #expect(try b.job(job.id)?.state == .done)
        #expect(try b.outbox(job: job.id).allSatisfy { $0.state == .sent })
    }

    /// The same instances arriving through two nodes at once: one row each, counted once,
    /// each acknowledged as new exactly once.
    @Test func theSameInstancesThroughTwoNodesAtOnceAreStoredOnce() throws {
        let url = try freshDatabaseURL()
        let dir = TempDir()
        let nodes = try (0..<2).map { try PostgresStore(url: url, node: "node-\($0)", poolSize: 2) }
        let records = (0..<150).map { instance($0, in: dir) }
        let newCount = Shared(0)
        let failures = Shared<[String]>([])
        inParallel(4) { k in
            for r in (k % 2 == 0 ? records : records.reversed()) {
                do {
                    if try nodes[k % 2].recordInstance(r).isNew { newCount.withLock { $0 += 1 } }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 }.prefix(3))")
        #expect(newCount.withLock { $0 } == records.count)
        let s = try #require(try nodes[0].series("1.2.3.4"))
        #expect(s.instanceCount == records.count)
        #expect(s.bytes == records.map(\.fileSize).reduce(0, +))
        #expect(try nodes[0].instances(ofSeries: "1.2.3.4").count == records.count)
        let blobs = try nodes[0].db.read { tx in try tx.query("SELECT COUNT(*) AS n FROM instance_blobs").first?["n"].int }
        #expect(blobs == records.count)
    }

    /// A client that dies mid-transaction (its socket closed under it, as the kernel does for
    /// a killed process) leaves nothing of that transaction: no series, instance or bytes.
    /// The store reports it, drops the connection, and the next call works.
    @Test func aClientKilledMidTransactionLeavesNothingHalfWritten() throws {
        let url = try freshDatabaseURL()
        let dir = TempDir()
        let s = try PostgresStore(url: url, node: "node-a", poolSize: 1)
        try s.recordInstance(instance(0, series: "1.2.3.9", in: dir))   // another series, committed
        s.db.beforeStatement.withLock {
            $0 = { sql, socket in if sql.contains("INSERT INTO instance_blobs") { shutdown(socket, Int32(SHUT_RDWR)) } }
        }
        do {
            try s.recordInstance(instance(0, in: dir))
            Issue.record("the cut connection went unnoticed")
        } catch let e as PostgresError {
            #expect(e.isConnectionFailure, "\(e)")
        }
        s.db.beforeStatement.withLock { $0 = nil }
        // Seen from another node: the rows written before the cut (series, instance) are gone.
        let other = try PostgresStore(url: url, node: "node-b")
        #expect(try other.series("1.2.3.4") == nil)
        #expect(try other.instances(ofSeries: "1.2.3.4").isEmpty)
        #expect(try other.instanceBytes("1.2.3.4.0") == nil)
        #expect(try other.series("1.2.3.9")?.instanceCount == 1)
        // The same store goes on (a new connection) and the resend is recorded whole.
        #expect(try s.recordInstance(instance(0, in: dir)).isNew)
        #expect(try other.series("1.2.3.4")?.instanceCount == 1)
        #expect(try other.instanceBytes("1.2.3.4.0")?.isEmpty == false)
    }

    /// Errors carry the server's message and SQLSTATE; an unreachable server is named.
    @Test func errorsNameTheServersMessageAndSQLState() throws {
        let url = try freshDatabaseURL()
        let s = try PostgresStore(url: url, node: "node-a")
        do {
            try s.db.write { tx in
                try tx.execute("INSERT INTO series (series_uid, study_uid, first_received, last_received, state) VALUES (?, '1', 0, 0, 'bogus')", "1.2")
            }
            Issue.record("a state outside the CHECK was accepted")
        } catch let e as PostgresError {
            #expect(e.sqlState == "23514")
            #expect("\(e)".contains("SQLSTATE 23514") && "\(e)".contains("series_state_check"))
        }
        do {
            try s.db.write { tx in _ = try tx.query("SELECT no_such_column FROM jobs") }
        } catch let e as PostgresError {
            #expect(e.sqlState == "42703" && e.message.contains("no_such_column"))
        }
        let closed = freePort()
        do {
            _ = try PostgresStore(url: "postgresql://perfd:secret@127.0.0.1:\(closed)/x", node: "n")
            Issue.record("connected to a closed port")
        } catch let e as PostgresError {
            #expect(e.sqlState == nil && e.isConnectionFailure)
            #expect("\(e)".contains("cannot connect to postgresql://perfd:***@127.0.0.1:\(closed)/x"))
            #expect(!"\(e)".contains("secret"))
        }
        // A received file that cannot be read: nothing recorded, the reason named.
        let dir = TempDir()
        var gone = instance(0, in: dir)
        try FileManager.default.removeItem(atPath: gone.path)
        gone.sopInstanceUID = "1.2.3.4.77"
        #expect(throws: PostgresStore.UnreadableInstance.self) { try s.recordInstance(gone) }
        #expect(try s.series("1.2.3.4") == nil)
        // A value with quotes and a semicolon is data, never SQL.
        let evil = "x'); DROP TABLE jobs; --"
        try s.logEvent(kind: evil, evil)
        #expect(try s.recentEvents(limit: 1).first?.kind == evil)
        #expect(try s.jobCounts().isEmpty)
    }

    /// The acknowledged bytes are stored compressed by the server (lz4 in TOAST); printed.
    @Test func blobsAreStoredCompressed() throws {
        let url = try freshDatabaseURL()
        let dir = TempDir()
        let s = try PostgresStore(url: url, node: "node-a")
        // A CT-like payload: 16-bit pixels, smooth with a little noise.
        var rng = SystemRandomNumberGenerator()
        for n in 0..<4 {
            var bytes = [UInt8](repeating: 0, count: 132)
            for i in 0..<(256 * 256) {
                let v = UInt16(1000 + (i % 256) / 4 + Int.random(in: 0..<8, using: &rng))
                bytes.append(UInt8(v & 0xff)); bytes.append(UInt8(v >> 8))
            }
            let p = dir.sub("spool") + "/\(n).dcm"
            FileManager.default.createFile(atPath: p, contents: Data(bytes))
            var r = instance(n, in: dir)
            r.path = p; r.fileSize = bytes.count
            try s.recordInstance(r)
            #expect(try s.instanceBytes(r.sopInstanceUID) == bytes)
        }
        let sizes = try s.blobSizes(ofSeries: "1.2.3.4")
        #expect(sizes.stored < sizes.raw)
        print("PG-BLOB | 4 instances, \(sizes.raw) bytes received, \(sizes.stored) stored (\(String(format: "%.2f", Double(sizes.raw) / Double(sizes.stored)))×)")
        // One client recording a series of such instances, one transaction each (series
        // upsert, instance, bytes, counters), as ingest would: printed, not asserted.
        let n = 100
        let started = Date()
        for k in 0..<n {
            var r = instance(1000 + k, series: "1.2.3.8", in: dir)
            r.path = dir.path + "/spool/0.dcm"; r.fileSize = 132 + 2 * 256 * 256
            try s.recordInstance(r)
        }
        let ms = Date().timeIntervalSince(started) * 1000 / Double(n)
        #expect(try s.series("1.2.3.8")?.instanceCount == n)
        print("PG-INGEST | \(n) instances of 128 KiB, one client, fsync on: \(String(format: "%.1f", ms)) ms each (\(String(format: "%.0f", 1000 / ms))/s)")
    }
}

/// A client killed with SIGKILL in the middle of its transaction: a second process (this
/// test binary again, running only `KilledClient.holdTheTransactionOpen`) records an instance
/// and stops inside the transaction once the series, instance and bytes are written and only
/// the counters remain; it is killed there. Nothing of its transaction may remain, and the
/// same instance recorded again afterwards is new and complete.
@Suite(.enabled(if: PostgresTestServer.available, PostgresTestServer.skipReason))
struct KilledClientTests {
    @Test func aClientKilledWithSIGKILLMidTransactionLeavesNothing() throws {
        let url = try freshDatabaseURL()
        let dir = TempDir()
        let ready = dir.path + "/ready"
        let store = try PostgresStore(url: url, node: "survivor")
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        child.arguments = ["--testing-library", "swift-testing", "--filter", "KilledClient/holdTheTransactionOpen"]
        var env = ProcessInfo.processInfo.environment
        env["PERFD_PG_KILLED_CLIENT_URL"] = url
        env["PERFD_PG_KILLED_CLIENT_READY"] = ready
        child.environment = env
        // Its output to a file, not a pipe (a pipe could fill, and is read only on failure).
        let logPath = dir.path + "/child.log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        child.standardOutput = log
        child.standardError = log
        try child.run()
        defer { if child.isRunning { kill(child.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: ready) {
            guard child.isRunning, Date() < deadline else {
                Issue.record("the child never reached the middle of its transaction (running: \(child.isRunning)): \((try? String(contentsOfFile: logPath, encoding: .utf8))?.suffix(3000) ?? "")")
                return
            }
            usleep(50_000)
        }
        // Inside its transaction: what it wrote is not visible, and the counters not yet written.
        #expect(try store.series("1.2.3.4") == nil)
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        #expect(child.terminationReason == .uncaughtSignal)
        // The server ends the dead client's session (its socket closed with the process).
        let gone = Date().addingTimeInterval(30)
        while try store.db.read({ tx in try tx.query("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'").first?["n"].int }) ?? 0 > 0 {
            guard Date() < gone else { Issue.record("the killed client's session is still open"); return }
            usleep(50_000)
        }
        #expect(try store.series("1.2.3.4") == nil)
        #expect(try store.instances(ofSeries: "1.2.3.4").isEmpty)
        #expect(try store.instanceBytes("1.2.3.4.0") == nil)
        let counts = try store.db.read { tx in
            try tx.query("SELECT (SELECT COUNT(*) FROM series) + (SELECT COUNT(*) FROM instances) + (SELECT COUNT(*) FROM instance_blobs) AS n").first?["n"].int
        }
        #expect(counts == 0)
        // The resend (the scanner got no answer) is recorded whole.
        #expect(try store.recordInstance(instance(0, in: dir)).isNew)
        #expect(try store.series("1.2.3.4")?.instanceCount == 1)
        #expect(try store.instanceBytes("1.2.3.4.0")?.isEmpty == false)
    }
}

/// Run only as the child of `aClientKilledWithSIGKILLMidTransactionLeavesNothing` (skipped
/// otherwise): records an instance and blocks inside the transaction before the counters.
@Suite struct KilledClient {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["PERFD_PG_KILLED_CLIENT_URL"] != nil,
                   "runs only as the child process of KilledClientTests"))
    func holdTheTransactionOpen() throws {
        let env = ProcessInfo.processInfo.environment
        let store = try PostgresStore(url: env["PERFD_PG_KILLED_CLIENT_URL"]!, node: "doomed")
        let ready = env["PERFD_PG_KILLED_CLIENT_READY"]!
        store.db.beforeStatement.withLock {
            $0 = { sql, _ in
                guard sql.contains("UPDATE series SET instance_count") else { return }
                FileManager.default.createFile(atPath: ready, contents: nil)
                while true { sleep(60) }
            }
        }
        let dir = TempDir()
        try store.recordInstance(instance(0, in: dir))
        Issue.record("the transaction was not held open")
    }
}
