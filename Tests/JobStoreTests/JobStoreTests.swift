import Foundation
@testable import JobStore
import PerfdTestSupport
import Store
import Testing

func instance(_ n: Int, series: String = "1.2.3.4", t: Int? = nil) -> InstanceRecord {
    InstanceRecord(sopInstanceUID: "1.2.3.4.\(n)", sopClassUID: "1.2.840.10008.5.1.4.1.1.2", seriesUID: series,
                   studyUID: "1.2.3", path: "/spool/\(series)/\(n).dcm", fileSize: 1000, temporalPosition: t,
                   temporalPositions: 2, imagesInAcquisition: 2, position: [0, 0, Double(n % 2)], callingAE: "SCANNER")
}

@Suite struct JobStoreTests {
    @Test func sameInstanceTwiceIsKeptOnce() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        #expect(try store.recordInstance(instance(1)).isNew)
        #expect(try !store.recordInstance(instance(1)).isNew)
        #expect(try store.series("1.2.3.4")?.instanceCount == 1)
        #expect(try store.instances(ofSeries: "1.2.3.4").count == 1)
    }

    @Test func completionQueuesOneJobWithEveryInstance() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        for n in 0..<4 { try store.recordInstance(instance(n, t: n / 2 + 1)) }
        let job = try #require(try store.completeSeries("1.2.3.4", reason: "test", pipeline: "baseline-t0"))
        #expect(job.instances == 4)
        #expect(job.state == .queued)
        // A second completion of the same series is a no-op.
        #expect(try store.completeSeries("1.2.3.4", reason: "again", pipeline: "baseline-t0") == nil)
        #expect(try store.jobs().count == 1)
    }

    @Test func lateInstanceSupersedesRunningJobAndRequeuesTheSeries() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        for n in 0..<3 { try store.recordInstance(instance(n)) }
        let first = try #require(try store.completeSeries("1.2.3.4", reason: "quiet", pipeline: "baseline-t0"))
        let claimed = try #require(try store.claimNextJob())
        #expect(claimed.id == first.id)
        let outcome = try store.recordInstance(instance(3))
        #expect(outcome.supersededJob == first.id)
        #expect(try store.job(first.id)?.state == .superseded)
        #expect(try store.series("1.2.3.4")?.state == "receiving")
        // The worker's next bookkeeping call learns the job is gone.
        #expect(throws: JobStore.JobGone.self) { try store.beginStage(job: first.id, stage: "assemble") }
        let second = try #require(try store.completeSeries("1.2.3.4", reason: "quiet", pipeline: "baseline-t0"))
        #expect(second.instances == 4)
        #expect(second.rerun == 1)
    }

    @Test func rowsWithoutFilesAreDroppedOnlyBeforeAJobRuns() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        for n in 0..<3 { try store.recordInstance(instance(n)) }                       // receiving
        for n in 10..<13 { try store.recordInstance(instance(n, series: "1.2.3.5")) }  // queued job
        for n in 20..<23 { try store.recordInstance(instance(n, series: "1.2.3.6")) }  // running job
        _ = try #require(try store.completeSeries("1.2.3.6", reason: "quiet", pipeline: "baseline-t0"))
        #expect(try store.claimNextJob()?.seriesUID == "1.2.3.6")
        let queued = try #require(try store.completeSeries("1.2.3.5", reason: "quiet", pipeline: "baseline-t0"))
        let paths = ["/spool/1.2.3.4/1.dcm", "/spool/1.2.3.5/10.dcm", "/spool/1.2.3.6/20.dcm", "/spool/nowhere.dcm"]
        #expect(Set(try store.dropUnacknowledged(paths: paths)) == ["1.2.3.4.1", "1.2.3.4.10"])
        #expect(try store.series("1.2.3.4")?.instanceCount == 2)
        #expect(try store.series("1.2.3.5")?.instanceCount == 2)
        #expect(try store.job(queued.id)?.instances == 2)
        #expect(try store.series("1.2.3.6")?.instanceCount == 3)   // its job runs: left alone
        #expect(try store.instances(ofSeries: "1.2.3.6").count == 3)
    }

    @Test func lateInstanceWhileQueuedJoinsTheQueuedJob() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        try store.recordInstance(instance(0))
        let job = try #require(try store.completeSeries("1.2.3.4", reason: "quiet", pipeline: "baseline-t0"))
        try store.recordInstance(instance(1))
        #expect(try store.job(job.id)?.instances == 2)
        #expect(try store.job(job.id)?.state == .queued)
    }

    @Test func runningJobsResumeBeforeQueuedOnes() throws {
        let dir = TempDir()
        let path = dir.path + "/db.sqlite"
        do {
            let store = try JobStore(path: path)
            try store.recordInstance(instance(0, series: "1.1"))
            try store.recordInstance(instance(1, series: "1.2"))
            _ = try store.completeSeries("1.1", reason: "q", pipeline: "baseline-t0")
            _ = try store.completeSeries("1.2", reason: "q", pipeline: "baseline-t0")
            let j = try #require(try store.claimNextJob())
            try store.beginStage(job: j.id, stage: "assemble")
            try store.finishStage(job: j.id, stage: "assemble", result: "{}")
        }
        // "Restart": a new connection to the same file.
        let store = try JobStore(path: path)
        let resumed = try #require(try store.claimNextJob())
        #expect(resumed.seriesUID == "1.1")
        #expect(try store.finishedStages(job: resumed.id)["assemble"] == "{}")
        #expect(try store.events(job: resumed.id).last?.message.contains("resumed") == true)
    }

    @Test func retryAndCancelFollowTheRules() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        try store.recordInstance(instance(0))
        let job = try #require(try store.completeSeries("1.2.3.4", reason: "q", pipeline: "baseline-t0"))
        #expect(throws: JobStore.AdminError.self) { try store.retry(job: job.id) }
        try store.cancel(job: job.id)
        #expect(try store.job(job.id)?.state == .cancelled)
        #expect(throws: JobStore.AdminError.self) { try store.cancel(job: job.id) }
        let again = try store.retry(job: job.id)
        #expect(again.state == .queued)
        #expect(again.rerun == 1)
        #expect(throws: JobStore.AdminError.self) { try store.retry(job: 999) }
    }

    @Test func failureKeepsReasonAndStage() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        try store.recordInstance(instance(0))
        let job = try #require(try store.completeSeries("1.2.3.4", reason: "q", pipeline: "baseline-t0"))
        _ = try store.claimNextJob()
        try store.fail(job: job.id, stage: "assemble", reason: "only one time point")
        let j = try #require(try store.job(job.id))
        #expect(j.state == .failed)
        #expect(j.stage == "assemble")
        #expect(j.error == "only one time point")
        #expect(try store.recentFailures().first?.id == job.id)
    }

    @Test func migrationsAreIdempotentAndRecorded() throws {
        let dir = TempDir()
        let path = dir.path + "/db.sqlite"
        _ = try JobStore(path: path)
        let store = try JobStore(path: path)
        let names = try store.db.read { tx in try tx.query("SELECT name FROM migrations").compactMap { $0["name"].text } }
        #expect(names == ["001_initial", "002_outbox", "003_audit_retention", "004_health_audit_count", "005_series_accession",
                          "006_outbox_destination_id", "007_instance_image_header"])
        let mode = try store.db.read { tx in try tx.query("PRAGMA journal_mode").first?["journal_mode"].text }
        #expect(mode == "wal")
    }

    @Test func schemaRejectsInvalidStates() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        try store.recordInstance(instance(0))
        #expect(throws: StoreError.self) {
            try store.db.write { tx in
                try tx.execute("INSERT INTO jobs (series_uid, study_uid, pipeline, state, instances, created_at, updated_at) VALUES ('1.2.3.4', '1', 'x', 'bogus', 1, 0, 0)")
            }
        }
    }
}

/// The outbox follows the job: what a stopped job has not sent yet is withdrawn, a drained
/// export is settled even if the exporter died before settling it, and a retry is judged on
/// its own files under new UIDs.
@Suite struct OutboxFollowsTheJob {
    /// A job of series `series` through render, with `files` result rows for one destination.
    func exportingJob(_ store: JobStore, series: String = "1.2.3.4", files: Int = 3) throws -> JobRecord {
        for n in 0..<2 { try store.recordInstance(instance(n + 100 * files, series: series)) }
        let job = try #require(try store.completeSeries(series, reason: "q", pipeline: "baseline-t0"))
        _ = try #require(try store.claimNextJob())
        try store.beginStage(job: job.id, stage: "render")
        let pacs = try store.destinationID(aeTitle: "PACS", host: "127.0.0.1", port: 4242)
        try store.finishRender(job: job.id, result: "{}", report: "{}", outbox: (0..<files).map {
            OutboxEntry(destinationID: pacs, seriesUID: "2.25.\(job.id)", sopInstanceUID: "2.25.\(job.id).\(job.rerun).\($0)",
                        path: "/out/\(job.id)/\($0).dcm", kind: .result)
        })
        return try #require(try store.job(job.id))
    }

    @Test func lateInstanceWithdrawsTheSupersededJobsUnsentResults() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        let job = try exportingJob(store)
        #expect(job.state == .exporting)
        let batch = try store.nextOutboxBatch()
        try store.markSent([batch[0].id])                       // one file reached the PACS
        #expect(try store.recordInstance(instance(7)).supersededJob == job.id)
        #expect(try store.nextOutboxBatch().isEmpty)            // the other two are not sent
        #expect(try store.outbox(job: job.id).map(\.state) == [.sent])
        #expect(try store.events(job: job.id).contains { $0.message.contains("2 result files not sent (superseded)") })
    }

    @Test func cancelStopsTheExport() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        let job = try exportingJob(store)
        try store.cancel(job: job.id)
        #expect(try store.nextOutboxBatch().isEmpty)
        #expect(try store.job(job.id)?.state == .cancelled)
    }

    @Test func aDrainedExportLeftUnsettledIsSettled() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        let job = try exportingJob(store)
        // The exporter marks the last batch sent and dies before settleExport.
        try store.markSent(try store.nextOutboxBatch().map(\.id))
        #expect(try store.job(job.id)?.state == .exporting)
        #expect(try store.settleDrainedExports() == [job.id])
        #expect(try store.job(job.id)?.state == .done)
        #expect(try store.settleDrainedExports().isEmpty)
    }

    @Test func retryIsJudgedOnItsOwnFilesUnderANewRerun() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        let job = try exportingJob(store)
        try store.markFailed(try store.nextOutboxBatch().map(\.id), error: "PACS refused")
        try store.settleExport(job: job.id)
        #expect(try store.job(job.id)?.state == .failed)
        // A later job of the same series took rerun 1 meanwhile (superseded, say).
        try store.recordInstance(instance(50))
        let later = try #require(try store.completeSeries("1.2.3.4", reason: "q", pipeline: "baseline-t0"))
        #expect(later.rerun == 1)
        try store.cancel(job: later.id)
        let again = try store.retry(job: job.id)
        #expect(again.rerun == 2)                                // not 1: that is the later job's UIDs
        #expect(try store.outbox(job: job.id).isEmpty)          // last run's failed rows gone
        _ = try #require(try store.claimNextJob())
        try store.beginStage(job: job.id, stage: "render")
        try store.finishRender(job: job.id, result: "{}", report: "{}", outbox: [
            OutboxEntry(destinationID: try store.destinationID(aeTitle: "PACS", host: "127.0.0.1", port: 4242), seriesUID: "2.25.9",
                        sopInstanceUID: "2.25.9.2.0", path: "/out/x.dcm", kind: .result)])
        try store.markSent(try store.nextOutboxBatch().map(\.id))
        try store.settleExport(job: job.id)
        #expect(try store.job(job.id)?.state == .done)
    }

    @Test func failingAJobThatIsNoLongerActiveChangesNothing() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        for n in 0..<2 { try store.recordInstance(instance(n)) }
        let job = try #require(try store.completeSeries("1.2.3.4", reason: "q", pipeline: "baseline-t0"))
        _ = try store.claimNextJob()
        try store.recordInstance(instance(9))                  // supersedes it mid-run
        #expect(try store.fail(job: job.id, stage: "assemble", reason: "lacks a slice") == false)
        #expect(try store.job(job.id)?.state == .superseded)
    }
}
