import DaemonTestSupport
import DICOM
import Foundation
import PerfdTestSupport
import Testing

/// Results back to a real PACS (Orthanc started by the test), retrieved as a viewer would.
/// A test's PACS (Orthanc, started unless `pacsUp` is false) and a perfd exporting to it.
/// Stop it with `defer { rig.stop() }`.
final class PACSRig {
    let dir = TempDir()
    let pacs: OrthancServer
    let port = freePort()
    let configPath: String
    var server: PerfdServer

    init(pacsUp: Bool = true, extra: String = "", environment: [String: String] = [:]) throws {
        pacs = OrthancServer(dir: dir.sub("orthanc"))
        if pacsUp { try pacs.start() }
        configPath = writeConfig(in: dir, port: port, quietSeconds: 1, extra: """
        destinations:
          - ae_title: PACS
            host: 127.0.0.1
            port: \(pacs.dicomPort)
        \(extra)
        """)
        server = try PerfdServer(configPath: configPath, port: port, logPath: dir.path + "/serve.log", environment: environment)
    }

    func restart() throws {
        server = try PerfdServer(configPath: configPath, port: port, logPath: dir.path + "/serve.log")
    }

    func stop() {
        server.stop()
        pacs.stop()
    }
}

@Suite(.serialized) struct PACSIntegrationTests {
    func jobs(_ server: PerfdServer) throws -> [PerfdServer.JobRow] { try server.jobs() }

    @Test func resultsReachOrthancAndAViewerRetrievesValidObjects() throws {
        let rig = try PACSRig()
        defer { rig.stop() }
        let (dir, pacs, port, server) = (rig.dir, rig.pacs, rig.port, rig.server)
        let ph = try makePhantom(in: dir.sub("ph"), size: 64, slices: 4, timepoints: 19)
        try push(ph.files, port: port)
        try waitFor(30, "the job to be done") { try jobs(server).first?.state == "done" }

        let derived = try pacs.series()
        #expect(derived.count == 1, "\(derived)")
        let s = try #require(derived.first)
        #expect(s.study == ph.studyUID)
        #expect(s.uid != ph.seriesUID)
        #expect(s.instances == 4)
        #expect(s.description.contains("NOT FOR DIAGNOSIS"))

        // A viewer retrieves the series with C-GET and every object validates.
        let out = dir.sub("viewer")
        let get = try runTool("getscu", ["-aet", "VIEWER", "-aec", "PACS", "127.0.0.1", String(pacs.dicomPort),
                                         "-k", "QueryRetrieveLevel=SERIES", "-k", "StudyInstanceUID=\(ph.studyUID)",
                                         "-k", "SeriesInstanceUID=\(s.uid)", "-od", out])
        #expect(get.status == 0, "\(get.output)")
        let files = try FileManager.default.contentsOfDirectory(atPath: out)
        #expect(files.count == 4)
        for name in files {
            let f = try DicomFile(path: out + "/" + name)
            #expect(f.string("ImageType") == "DERIVED\\SECONDARY\\AXIAL")
            #expect(f.string("SOPClassUID") == "1.2.840.10008.5.1.4.1.1.2")
            #expect(f.string("StudyInstanceUID") == ph.studyUID)
            #expect(f.string("Modality") == "CT")
            let v = try runTool("dciodvfy", [out + "/" + name])
            #expect(!v.output.contains("Error"), "\(v.output)")
        }
        let status = try server.cli(["status"]).stdout
        #expect(status.contains("outbox     PACS@127.0.0.1:\(pacs.dicomPort): 0 pending, 4 sent, 0 failed"), "\(status)")
    }

    /// Issue 19: after `perfd retry` the PACS held two sets of series with the same numbers
    /// and descriptions. A re-run says "re-run N" and takes numbers of its own.
    @Test func aReRunIsToldApartInThePACS() throws {
        let rig = try PACSRig()
        defer { rig.stop() }
        let (dir, pacs, port, server) = (rig.dir, rig.pacs, rig.port, rig.server)
        let ph = try makePhantom(in: dir.sub("ph"), size: 32, slices: 2, timepoints: 19)
        try push(ph.files, port: port)
        try waitFor(30, "the job to be done") { try jobs(server).first?.state == "done" }
        let job = try #require(try jobs(server).first)
        #expect(try server.cli(["retry", String(job.id)]).status == 0)
        try waitFor(60, "the re-run to be done") { try pacs.series().count == 2 && jobs(server).allSatisfy { $0.state == "done" || $0.state == "superseded" } }
        guard let list = try pacs.get("/series?expand") as? [[String: Any]] else { throw TestFailure("no series list") }
        let tags = list.map { $0["MainDicomTags"] as? [String: Any] ?? [:] }
        let numbers = tags.compactMap { ($0["SeriesNumber"] as? String).flatMap { Int($0) } }.sorted()
        let descriptions = tags.compactMap { $0["SeriesDescription"] as? String }
        #expect(numbers == [9001, 9101], "\(tags)")
        #expect(Set(descriptions).count == 2, "\(descriptions)")
        #expect(descriptions.filter { $0.contains("re-run 1") && $0.hasSuffix("NOT FOR DIAGNOSIS") }.count == 1, "\(descriptions)")
    }

    /// The derived NCCT is now a CT Image, which perfd accepts: a PACS that forwards every CT
    /// sends it back. perfd fails that job with the reason and sends nothing (no notice).
    @Test func ownOutputSentBackIsNotProcessedAndGetsNoNotice() throws {
        let rig = try PACSRig()
        defer { rig.stop() }
        let (dir, pacs, port, server) = (rig.dir, rig.pacs, rig.port, rig.server)
        _ = try makePhantom(in: dir.sub("ph"), size: 32, slices: 3, timepoints: 19)
        let run = try runTool(Paths.perfd, ["run", dir.path + "/ph", "--output", dir.path + "/out", "--pipeline", "baseline-t0"])
        #expect(run.status == 0, "\(run.output)")
        let ncct = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/out/dicom/ncct").sorted().map { dir.path + "/out/dicom/ncct/" + $0 }
        #expect(ncct.count == 3)
        try push(ncct, port: port)
        try waitFor(30, "the echo's job to fail") { try jobs(server).first?.state == "failed" }
        let job = try #require(try jobs(server).first)
        #expect(job.error?.contains("perfd's own output") == true, "\(job.error ?? "")")
        // Nothing goes to the PACS: no results, no failure notice.
        Thread.sleep(forTimeInterval: 3)
        #expect(try pacs.instanceCount() == 0)
        #expect(!(try server.cli(["show", String(job.id)]).stdout.contains("failure notice queued")))
    }

    /// The PACS is down when the job finishes and comes back 30 s later: every file arrives
    /// once. In-process daemon: the 30 s are the clock moved forward a second at a time, so
    /// the exporter retries on its back-off (1, 2, 4, 4… s) as it would in real time.
    @Test func pacsDownWhenTheJobFinishesGetsEverythingOnceWhenItReturns() throws {
        let dir = TempDir()
        let pacs = OrthancServer(dir: dir.sub("orthanc"))
        let config = writeConfig(in: dir, port: 0, quietSeconds: 1, extra: """
        destinations:
          - ae_title: PACS
            host: 127.0.0.1
            port: \(pacs.dicomPort)
        export_retry:
          initial_seconds: 1
          max_seconds: 4
        """)
        let server = try InProcessDaemon(configPath: config, logPath: dir.path + "/serve.log")
        defer { server.stop(); pacs.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 48, slices: 3, timepoints: 19)
        try push(ph.files, port: server.port)
        try waitFor(30, "the job to reach export") { try server.jobs().first?.state == "exporting" }
        try waitFor(15, "a failed attempt") { try server.cli(["status"]).stdout.contains("(last error:") }
        let status = try server.cli(["status"]).stdout
        #expect(status.contains("PACS@127.0.0.1:\(pacs.dicomPort): 3 pending, 0 sent"), "\(status)")
        // The PACS comes back 30 s after the job finished.
        server.advance(by: 30, steps: 30, pause: 0.1)
        let attempts = server.log.components(separatedBy: "export of job 1 to PACS@127.0.0.1:\(pacs.dicomPort) failed").count - 1
        #expect(attempts >= 5, "30 s of 1–4 s back-off is at least 5 attempts: \(server.log)")
        try pacs.start()
        server.advance(by: 4)
        try waitFor(30, "the job to be done") { try server.jobs().first?.state == "done" }
        let series = try pacs.series()
        #expect(series.count == 1)
        #expect(series.first?.instances == 3)
        #expect(try pacs.instanceCount() == 3)
        // Each file was delivered in exactly one successful batch: nothing was sent twice.
        #expect(server.log.components(separatedBy: "exported 3 files of job 1").count - 1 == 1, "\(server.log)")
        #expect(!server.log.contains("exported 1 files") && !server.log.contains("exported 2 files"))
        let rows = try runTool("sqlite3", [dir.path + "/state/perfd.sqlite", "SELECT state, COUNT(*) FROM outbox GROUP BY state"])
        #expect(rows.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "sent|3")
    }

    @Test func failedJobSendsANoticeAndShowsItsReason() throws {
        let rig = try PACSRig()
        defer { rig.stop() }
        let (dir, pacs, port, server) = (rig.dir, rig.pacs, rig.port, rig.server)
        let ph = try makePhantom(in: dir.sub("ph"), size: 32, slices: 3, timepoints: 1)
        try push(ph.files, port: port)
        try waitFor(30, "the job to fail") { try jobs(server).first?.state == "failed" }
        try waitFor(30, "the notice in the PACS") { try pacs.series().contains { $0.description.contains("PROCESSING FAILED") } }
        let notice = try #require(try pacs.series().first)
        #expect(notice.study == ph.studyUID)
        #expect(notice.instances == 1)
        let job = try #require(try jobs(server).first)
        #expect(job.error?.contains("only one time point") == true)
        #expect(try server.cli(["status"]).stdout.contains("job \(job.id) at assemble: only one time point"))
        #expect(try server.cli(["show", String(job.id)]).stdout.contains("only one time point"))
    }

    @Test func killedDuringAJobTheRestartFinishesItAndThePACSHoldsItOnce() throws {
        let rig = try PACSRig(environment: ["PERFD_STAGE_PAUSE_SECONDS": "2"])
        defer { rig.stop() }
        let (dir, pacs, port) = (rig.dir, rig.pacs, rig.port)
        let ph = try makePhantom(in: dir.sub("ph"), size: 48, slices: 3, timepoints: 19)
        try push(ph.files, port: port)
        try waitFor(30, "the job to run") { try jobs(rig.server).first.map { $0.state == "running" && $0.stage == "pipeline" } ?? false }
        rig.server.kill9()
        #expect(try jobs(rig.server).first?.state == "running")
        try rig.restart()
        let server = rig.server
        try waitFor(30, "the resumed job to be done") { try jobs(server).first?.state == "done" }
        #expect(try jobs(server).count == 1)
        let series = try pacs.series()
        #expect(series.count == 1)
        #expect(series.first?.instances == 3)
        #expect(try pacs.instanceCount() == 3)
        #expect(try server.cli(["show", "1"]).stdout.contains("resumed after restart"))
    }
}

/// A moving head: the job carries on, and the motion flag shows in status, show and the output.
@Suite(.serialized) struct MotionFlagIntegrationTests {
    @Test func motionIsFlaggedEverywhereAndTheJobCarriesOn() throws {
        let rig = try PACSRig(extra: "motion_threshold_mm: 1")
        defer { rig.stop() }
        let (dir, pacs, port, server) = (rig.dir, rig.pacs, rig.port, rig.server)
        let ph = try makePhantom(in: dir.sub("ph"), size: 96, slices: 6, timepoints: 5, seed: 4, motion: (5, 5), interval: 3)
        let r = try runTool("storescu", ["-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(port)] + ph.files)
        #expect(r.status == 0, "\(r.output)")
        try waitFor(60, "the job to be done") { try server.cli(["jobs"]).stdout.contains(" done ") }
        let status = try server.cli(["status"]).stdout
        #expect(status.contains("MOTION"), "\(status)")
        let show = try server.cli(["show", "1"]).stdout
        #expect(show.contains("registration QC: motion"), "\(show)")
        #expect(show.contains("head motion: max displacement"), "\(show)")
        let series = try pacs.series()
        #expect(series.first?.description.contains("MOTION") == true, "\(series)")
    }
}
