import Foundation
import JobStore
import Logging
import PerfdCore
import PerfdTestSupport
import Testing

@Suite struct ExporterTests {
    @Test func backoffDoublesUpToTheCap() {
        var r = Config.ExportRetry()
        r.initialSeconds = 5; r.maxSeconds = 600
        let b = ExportBackoff(r)
        #expect((1...9).map { b.delay(afterAttempt: $0) } == [5, 10, 20, 40, 80, 160, 320, 600, 600])
    }

    /// A destination that never answers: retried with backoff, then after give_up_hours the
    /// rows fail and the job fails visibly with the reason.
    @Test func unreachablePacsIsRetriedThenTheJobFailsVisibly() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        try store.recordInstance(InstanceRecord(sopInstanceUID: "1.2.3.1", sopClassUID: "1.2.840.10008.5.1.4.1.1.2", seriesUID: "1.2.3",
                                                studyUID: "1.2", path: "/x", fileSize: 1))
        let job = try #require(try store.completeSeries("1.2.3", reason: "t", pipeline: "baseline-t0"))
        _ = try store.claimNextJob()
        try store.beginStage(job: job.id, stage: "render")
        // A real file to send, to a port nobody listens on.
        let ph = try makePhantom(in: dir.sub("ph"), size: 8, slices: 1, timepoints: 1)
        let port = freePort()
        try store.finishRender(job: job.id, result: "{}", report: "{}", outbox: [
            OutboxEntry(destination: "PACS@127.0.0.1:\(port)", seriesUID: "2.25.1", sopInstanceUID: "2.25.1.1", path: ph.files[0], kind: "result"),
        ])
        var config = Config()
        config.exportRetry.initialSeconds = 5
        config.exportRetry.giveUpHours = 24
        let exporter = ExporterService(store: store, config: config, logger: Logger(label: "test"))
        let t0 = Clock.now()
        #expect(try !exporter.sendNextBatch(now: t0 + 1))
        var item = try #require(try store.outbox(job: job.id).first)
        #expect(item.state == "pending" && item.attempts == 1)
        #expect(abs(item.nextAttemptAt - (t0 + 1 + 5)) < 0.01)
        #expect(item.lastError?.contains("cannot associate with PACS@127.0.0.1:\(port)") == true)
        // Not due yet: nothing is sent.
        #expect(try store.nextOutboxBatch(now: t0 + 3).isEmpty)
        #expect(try !exporter.sendNextBatch(now: t0 + 7))
        item = try #require(try store.outbox(job: job.id).first)
        #expect(item.attempts == 2 && abs(item.nextAttemptAt - (t0 + 7 + 10)) < 0.01)
        #expect(try store.job(job.id)?.state == .exporting)
        // A day later the exporter gives up; the job fails with the reason.
        _ = try exporter.sendNextBatch(now: t0 + 24 * 3600 + 60)
        item = try #require(try store.outbox(job: job.id).first)
        #expect(item.state == "failed")
        let failed = try #require(try store.job(job.id))
        #expect(failed.state == .failed)
        #expect(failed.error?.contains("gave up after 3 attempts") == true)
    }
}
