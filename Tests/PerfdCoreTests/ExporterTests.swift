import Config
import DICOM
import Foundation
import Jobs
import JobStore
import Logging
import PerfdTestSupport
import Store
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
            OutboxEntry(destinationID: try store.destinationID(aeTitle: "PACS", host: "127.0.0.1", port: port), seriesUID: "2.25.1",
                        sopInstanceUID: "2.25.1.1", path: ph.files[0], kind: .result),
        ])
        var config = Config()
        config.exportRetry.initialSeconds = 5
        config.exportRetry.giveUpHours = 24
        config.destinations = [Config.Destination(aeTitle: "PACS", host: "127.0.0.1", port: port)]
        let exporter = ExporterService(store: store, config: config, logger: Logger(label: "test"))
        let t0 = WallClock.now()
        #expect(try !exporter.sendNextBatch(now: t0 + 1))
        var item = try #require(try store.outbox(job: job.id).first)
        #expect(item.state == .pending && item.attempts == 1)
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
        #expect(item.state == .failed)
        let failed = try #require(try store.job(job.id))
        #expect(failed.state == .failed)
        #expect(failed.error?.contains("gave up after 3 attempts") == true)
        // Three batches, one look-up of the configured destinations' ids (it was one per batch).
        #expect(exporter.destinationLookups == 1)
    }
}

/// A job of series 1.2.3 rendered and exporting `files` to `destination` (result rows
/// 2.25.7.0, 2.25.7.1, …); returns its id.
func exportingJob(_ store: JobStore, files: [String], toPort port: Int) throws -> Int {
    let destination = try store.destinationID(aeTitle: "PACS", host: "127.0.0.1", port: port)
    try store.recordInstance(InstanceRecord(sopInstanceUID: "1.2.3.1", sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
                                            seriesUID: "1.2.3", studyUID: "1.2", path: "/x", fileSize: 1))
    let j = try #require(try store.completeSeries("1.2.3", reason: "t", pipeline: "baseline-t0"))
    _ = try store.claimNextJob()
    try store.beginStage(job: j.id, stage: "render")
    try store.finishRender(job: j.id, result: "{}", report: "{}", outbox: files.enumerated().map {
        OutboxEntry(destinationID: destination, seriesUID: "2.25.7", sopInstanceUID: "2.25.7.\($0.offset)", path: $0.element, kind: .result)
    })
    return j.id
}

/// Export over DICOM TLS to DCMTK's storescp as the PACS, with certificates made by the test.
@Suite struct TLSExportTests {
    @Test func exportOverTLSReachesATrustedPacsAndNotAnUntrustedOne() throws {
        let dir = TempDir()
        let pki = try TestPKI(in: dir.sub("pki"))
        let port = freePort()
        let received = dir.sub("pacs")
        let pacs = try StoreSCPPeer(port: port, received: received, options: ["+tls", pki.serverKey, pki.serverCert, "+cf", pki.caCert])
        defer { withExtendedLifetime(pacs) {} }

        let store = try JobStore(path: dir.path + "/db.sqlite")
        let ph = try makePhantom(in: dir.sub("ph"), size: 8, slices: 1, timepoints: 2)
        func job(_ series: String, toPort port: Int) throws -> Int {
            let destination = try store.destinationID(aeTitle: "PACS", host: "127.0.0.1", port: port)
            try store.recordInstance(InstanceRecord(sopInstanceUID: series + ".1", sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
                                                    seriesUID: series, studyUID: "1.2", path: "/x", fileSize: 1))
            let j = try #require(try store.completeSeries(series, reason: "t", pipeline: "baseline-t0"))
            _ = try store.claimNextJob()
            try store.beginStage(job: j.id, stage: "render")
            try store.finishRender(job: j.id, result: "{}", report: "{}", outbox: [
                OutboxEntry(destinationID: destination, seriesUID: "2.25.\(j.id)", sopInstanceUID: "2.25.\(j.id).1", path: ph.files[j.id - 1], kind: .result),
            ])
            return j.id
        }
        var config = Config()
        config.destinations = [Config.Destination(aeTitle: "PACS", host: "127.0.0.1", port: port, tls: TLSSettings(
            certificate: pki.clientCert, privateKey: pki.clientKey, trustedCertificates: [pki.caCert]))]
        let good = try job("1.2.3", toPort: port)
        #expect(try ExporterService(store: store, config: config, logger: Logger(label: "test")).sendNextBatch())
        #expect(try store.job(good)?.state == .done)
        #expect(try FileManager.default.contentsOfDirectory(atPath: received).count == 1)

        // Trusting only a CA that did not sign the PACS certificate: the handshake fails.
        config.destinations[0].tls = TLSSettings(certificate: pki.rogueCert, privateKey: pki.rogueKey, trustedCertificates: [pki.rogueCert])
        let bad = try job("1.2.4", toPort: port)
        #expect(try !ExporterService(store: store, config: config, logger: Logger(label: "test")).sendNextBatch())
        #expect(try store.job(bad)?.state == .exporting)
        #expect(try store.outbox(job: bad).first?.lastError?.contains("cannot associate") == true)
        let audit = try store.auditTrail().filter { $0.kind == .export }
        #expect(audit.map(\.outcome) == ["sent", "retry"])
    }

    /// A PACS whose certificate chains to the trusted CA but names another host is refused
    /// (someone holding such a certificate could answer for 127.0.0.1 by DNS or ARP
    /// spoofing); `verify_hostname: false` lets it through.
    @Test func exportOverTLSChecksThePacsNamesTheHost() throws {
        let dir = TempDir()
        let pki = try TestPKI(in: dir.sub("pki"))
        let port = freePort()
        let received = dir.sub("pacs")
        let pacs = try StoreSCPPeer(port: port, received: received, options: ["+tls", pki.elsewhereKey, pki.elsewhereCert, "+cf", pki.caCert])
        defer { withExtendedLifetime(pacs) {} }

        let store = try JobStore(path: dir.path + "/db.sqlite")
        let ph = try makePhantom(in: dir.sub("ph"), size: 8, slices: 1, timepoints: 2)
        let j = try exportingJob(store, files: [ph.files[0]], toPort: port)
        var config = Config()
        config.destinations = [Config.Destination(aeTitle: "PACS", host: "127.0.0.1", port: port, tls: TLSSettings(
            certificate: pki.clientCert, privateKey: pki.clientKey, trustedCertificates: [pki.caCert]))]
        #expect(try !ExporterService(store: store, config: config, logger: Logger(label: "test")).sendNextBatch())
        #expect(try FileManager.default.contentsOfDirectory(atPath: received).isEmpty)
        let row = try #require(try store.outbox(job: j).first)
        #expect(row.state == .pending && row.attempts == 1, "\(row)")

        config.destinations[0].tls?.verifyHostname = false
        #expect(try ExporterService(store: store, config: config, logger: Logger(label: "test")).sendNextBatch(now: WallClock.now() + 3600))
        #expect(try store.job(j)?.state == .done)
        #expect(try FileManager.default.contentsOfDirectory(atPath: received).count == 1)
    }
}

@Suite struct PartialExportTests {
    /// The PACS (DCMTK's storescp) dies once it holds the second file: what it accepted is
    /// sent; only the files it did not answer wait for the retry.
    /// (Before, the whole batch was retried and the PACS got the first file twice.)
    @Test func filesAcceptedBeforeTheAssociationFailedAreNotSentAgain() throws {
        let dir = TempDir()
        let port = freePort()
        let received = dir.sub("pacs")
        let dies = "sh -c '[ $(ls \(received) | wc -l) -ge 2 ] && pkill -9 -f \"od \(received) \"; true'"
        let pacs = try StoreSCPPeer(port: port, received: received, options: ["--exec-sync", "-xcr", dies])
        defer { withExtendedLifetime(pacs) {} }

        let store = try JobStore(path: dir.path + "/db.sqlite")
        let ph = try makePhantom(in: dir.sub("ph"), size: 8, slices: 1, timepoints: 3)
        let j = try exportingJob(store, files: ph.files, toPort: port)
        var config = Config()
        config.destinations = [Config.Destination(aeTitle: "PACS", host: "127.0.0.1", port: port)]
        #expect(try !ExporterService(store: store, config: config, logger: Logger(label: "test")).sendNextBatch())
        // Whether the second file's answer left before storescp died is up to storescp; the
        // first was answered, the third never arrived.
        let rows = try store.outbox(job: j)
        #expect(rows[0].state == .sent)
        #expect(rows[2].state == .pending && rows[2].lastError != nil)
        #expect(try store.job(j)?.state == .exporting)
    }
}

@Suite struct WithdrawnExportTests {
    /// The job is superseded while its batch is going out to a PACS that takes a second per
    /// file: the rows withdrawn from the outbox are not sent. Before, the exporter sent the
    /// whole batch it had read, so the superseded results reached the PACS.
    @Test func resultsWithdrawnDuringABatchAreNotSent() throws {
        let dir = TempDir()
        let port = freePort()
        let received = dir.sub("pacs")
        let pacs = try StoreSCPPeer(port: port, received: received, options: ["--exec-sync", "-xcr", "sleep 1"])
        defer { withExtendedLifetime(pacs) {} }

        let store = try JobStore(path: dir.path + "/db.sqlite")
        let ph = try makePhantom(in: dir.sub("ph"), size: 8, slices: 1, timepoints: 5)
        let j = try exportingJob(store, files: ph.files, toPort: port)
        var config = Config()
        config.destinations = [Config.Destination(aeTitle: "PACS", host: "127.0.0.1", port: port)]
        let exporter = ExporterService(store: store, config: config, logger: Logger(label: "test"))
        let done = DispatchSemaphore(value: 0)
        Thread { _ = try? exporter.sendNextBatch(); done.signal() }.start()
        try waitFor(10, "the first file at the PACS") { try FileManager.default.contentsOfDirectory(atPath: received).count >= 1 }
        // A late instance supersedes the job: its pending results are withdrawn.
        let late = try store.recordInstance(InstanceRecord(sopInstanceUID: "1.2.3.2", sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
                                                           seriesUID: "1.2.3", studyUID: "1.2", path: "/y", fileSize: 1))
        #expect(late.supersededJob == j)
        done.wait()
        // The file in flight when the rows went may still arrive; nothing after it.
        let at = try FileManager.default.contentsOfDirectory(atPath: received).count
        #expect(at <= 2, "withdrawn results reached the PACS: \(at) of 5 files")
        #expect(try store.outbox(job: j).allSatisfy { $0.state == .sent })
    }
}
