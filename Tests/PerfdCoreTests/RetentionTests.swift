import Config
import Foundation
import Jobs
@testable import JobStore
import Logging
import PerfdTestSupport
import Store
import Testing

/// Retention against a real database and real files, with the clock passed in.
@Suite struct RetentionTests {
    let day = 86_400.0

    /// A series of `n` spool files with their rows.
    func series(_ store: JobStore, _ spool: String, _ uid: String, files n: Int, at t: Double) throws -> [String] {
        try FileManager.default.createDirectory(atPath: spool + "/" + uid, withIntermediateDirectories: true)
        return try (0..<n).map { i in
            let path = "\(spool)/\(uid)/\(uid).\(i).dcm"
            try Data(repeating: 7, count: 100).write(to: URL(fileURLWithPath: path))
            try store.recordInstance(InstanceRecord(sopInstanceUID: "\(uid).\(i)", sopClassUID: "1.2.840.10008.5.1.4.1.1.2", seriesUID: uid,
                                                    studyUID: "1.2", path: path, fileSize: 100, patientID: "P1", patientName: "Doe^Jane"), now: t)
            return path
        }
    }

    /// Completes a series and runs its job to "done" at time `t`.
    func finish(_ store: JobStore, _ uid: String, at t: Double) throws -> Int {
        let job = try #require(try store.completeSeries(uid, reason: "test", pipeline: "baseline-t0", now: t))
        _ = try store.claimNextJob(now: t)
        try store.beginStage(job: job.id, stage: "render", now: t)
        try store.finishRender(job: job.id, result: "{}", report: "{}", outbox: [], now: t)
        return job.id
    }

    /// A database and a config whose spool and database live in `dir`/state.
    static func state(_ dir: TempDir) throws -> (JobStore, Config) {
        var config = Config()
        config.spoolDir = dir.path + "/state/spool"
        config.database = dir.path + "/state/perfd.sqlite"
        config.retentionDays = 7
        return (try JobStore(path: config.database), config)
    }

    @Test func finishedSeriesGoAfterTheWindowAndNothingElseIsTouched() throws {
        let dir = TempDir()
        var (store, config) = try Self.state(dir)
        let t0 = 1_000_000.0
        let old = try series(store, config.spoolDir, "1.2.1", files: 3, at: t0)
        let oldJob = try finish(store, "1.2.1", at: t0 + 60)
        let work = JobWorkerService.workDirectory(config: config, job: oldJob)
        try FileManager.default.createDirectory(atPath: work + "/dicom", withIntermediateDirectories: true)
        try Data([1]).write(to: URL(fileURLWithPath: work + "/dicom/out.dcm"))
        // Finished, but inside the window.
        let recent = try series(store, config.spoolDir, "1.2.2", files: 2, at: t0 + 5 * day)
        _ = try finish(store, "1.2.2", at: t0 + 5 * day)
        // Old and finished once, then retried: queued again, so kept.
        let retried = try series(store, config.spoolDir, "1.2.4", files: 2, at: t0)
        let retriedJob = try finish(store, "1.2.4", at: t0)
        try store.retry(job: retriedJob, actor: "admin", now: t0 + day)
        // Old, but its job is still queued (an unfinished job).
        let queued = try series(store, config.spoolDir, "1.2.3", files: 2, at: t0)
        _ = try #require(try store.completeSeries("1.2.3", reason: "test", pipeline: "baseline-t0", now: t0))
        // Old, still receiving (no job yet).
        let receiving = try series(store, config.spoolDir, "1.2.5", files: 1, at: t0)

        let retention = Retention(store: store, config: config, logger: Logger(label: "test"))
        let now = t0 + 8 * day
        #expect(try retention.plan(now: now).map(\.seriesUID) == ["1.2.1"])
        let dry = try retention.run(now: now, dryRun: true, actor: "admin")
        #expect(dry.files == 3 && dry.bytes == 300)
        #expect(old.allSatisfy { FileManager.default.fileExists(atPath: $0) })

        let done = try retention.run(now: now, dryRun: false, actor: "admin")
        #expect(done.series.map(\.seriesUID) == ["1.2.1"])
        #expect(old.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
        #expect(!FileManager.default.fileExists(atPath: work))
        #expect(try store.instances(ofSeries: "1.2.1").isEmpty)
        for kept in [recent, queued, retried, receiving] {
            #expect(kept.allSatisfy { FileManager.default.fileExists(atPath: $0) })
        }
        #expect(try store.instances(ofSeries: "1.2.3").count == 2)
        // The job row and its events stay; the series row loses the patient's name and ID.
        let job = try #require(try store.job(oldJob))
        #expect(job.state == .done)
        #expect(try store.events(job: oldJob).contains { $0.message.contains("purged") })
        let s = try #require(try store.series("1.2.1"))
        #expect(s.patientID.isEmpty && s.instanceCount == 3)
        let name = try store.db.read { tx in try tx.query("SELECT patient_name FROM series WHERE series_uid = ?", "1.2.1").first?["patient_name"].text }
        #expect(name == "")
        let audit = try store.auditTrail().filter { $0.outcome == "purge" }
        #expect(audit.count == 1 && audit[0].seriesUID == "1.2.1" && audit[0].actor == "admin")
        // Nothing left to do; the recent series goes once its own window has passed.
        #expect(try retention.plan(now: now).isEmpty)
        #expect(try retention.plan(now: t0 + 13 * day).map(\.seriesUID) == ["1.2.2"])
        // retention_days 0 keeps everything.
        config.retentionDays = 0
        #expect(try Retention(store: store, config: config, logger: Logger(label: "test")).plan(now: t0 + 1000 * day).isEmpty)
    }
}

/// A series sent again after (or while) retention purges it.
@Suite struct RetentionAndResentSeries {
    let day = 86_400.0

    func setUp(_ dir: TempDir) throws -> (JobStore, Config, [String]) {
        let (store, config) = try RetentionTests.state(dir)
        let t = RetentionTests()
        let paths = try t.series(store, config.spoolDir, "1.2.9", files: 3, at: 1_000_000)
        _ = try t.finish(store, "1.2.9", at: 1_000_060)
        return (store, config, paths)
    }

    func resend(_ store: JobStore, _ config: Config, _ i: Int, at t: Double) throws {
        let path = "\(config.spoolDir)/1.2.9/1.2.9.\(i).dcm"
        try FileManager.default.createDirectory(atPath: config.spoolDir + "/1.2.9", withIntermediateDirectories: true)
        try Data(repeating: 9, count: 100).write(to: URL(fileURLWithPath: path))
        try store.recordInstance(InstanceRecord(sopInstanceUID: "1.2.9.\(i)", sopClassUID: "1.2.840.10008.5.1.4.1.1.2", seriesUID: "1.2.9",
                                                studyUID: "1.2", path: path, fileSize: 100, patientID: "P1", patientName: "Doe^Jane"), now: t)
    }

    @Test func sentAgainAfterThePurgeItStartsOver() throws {
        let dir = TempDir()
        let (store, config, _) = try setUp(dir)
        let now = 1_000_000 + 8 * day
        _ = try Retention(store: store, config: config, logger: Logger(label: "test")).run(now: now, dryRun: false, actor: "test")
        #expect(try store.series("1.2.9")?.purgedAt != nil)
        try resend(store, config, 0, at: now + 60)
        let s = try #require(try store.series("1.2.9"))
        #expect(s.instanceCount == 1)           // not 4: the old count would complete it at once
        #expect(s.state == "receiving")
        #expect(s.purgedAt == nil)              // so retention purges it again later
        #expect(s.patientID == "P1")
    }

    @Test func sentAgainWhileListedItKeepsWhatArrived() throws {
        let dir = TempDir()
        let (store, config, paths) = try setUp(dir)
        let now = 1_000_000 + 8 * day
        let listed = try store.purgeCandidates(finishedBefore: now - 7 * day)
        #expect(listed.map(\.seriesUID) == ["1.2.9"])
        try resend(store, config, 0, at: now)   // the same instance again, between listing and deleting
        #expect(try !store.isStillPurgeable(listed[0]))   // Retention.run checks this before each series' files
        // A purge already past its check keeps the rows it did not delete.
        var past = listed[0]
        past.paths = [paths[1], paths[2]]
        try store.markPurged(past, actor: "test", now: now)
        let s = try #require(try store.series("1.2.9"))
        #expect(s.purgedAt == nil)
        #expect(s.instanceCount == 1)
        #expect(try store.instances(ofSeries: "1.2.9").map(\.path) == [paths[0]])
    }
}

/// A series that makes the daemon die mid-job must not keep it down: the job is resumed at
/// start-up at most `JobWorkerService.maxResumes` times, then failed with a notice, and the
/// jobs behind it run.
@Suite struct CrashLoopTests {
    @Test func aJobResumedTwiceIsFailedWithANotice() throws {
        let dir = TempDir()
        var (store, config) = try RetentionTests.state(dir)
        config.destinations = [Config.Destination(aeTitle: "PACS", host: "127.0.0.1", port: 4242)]
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 1, timepoints: 3)
        for (i, f) in ph.files.enumerated() {
            try store.recordInstance(InstanceRecord(sopInstanceUID: "1.2.3.\(i)", sopClassUID: "1.2.840.10008.5.1.4.1.1.2", seriesUID: "1.2.3",
                                                    studyUID: "1.2", path: f, fileSize: 100))
        }
        let job = try #require(try store.completeSeries("1.2.3", reason: "t", pipeline: "baseline-t0"))
        _ = try store.claimNextJob()                      // started; the daemon dies
        _ = try store.claimNextJob(excluding: [])          // resumed at start-up 1; dies again
        #expect(try store.timesResumed(job: job.id) == 1)
        let third = try #require(try store.claimNextJob()) // resumed at start-up 2
        #expect(try store.timesResumed(job: job.id) == 2)
        let worker = JobWorkerService(store: store, config: config, logger: Logger(label: "test"))
        worker.process(third)
        let failed = try #require(try store.job(job.id))
        #expect(failed.state == .failed)
        #expect(failed.error?.contains("perfd stopped 3 times") == true)
        #expect(try store.outbox(job: job.id).contains { $0.kind == .failureNotice })
        // A retry starts the count again and runs the job.
        try store.retry(job: job.id)
        let again = try #require(try store.claimNextJob())
        #expect(try store.timesResumed(job: job.id) == 0)
        worker.process(again)
        #expect(try store.job(job.id)?.state == .exporting)
    }
}
