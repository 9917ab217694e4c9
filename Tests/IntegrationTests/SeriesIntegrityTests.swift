import DaemonTestSupport
import DICOM
import Foundation
import PerfdTestSupport
import Testing

/// What a pause, a crash or a conflicting re-send does to a series, against `perfd serve`
/// with storescu as the scanner.
@Suite(.serialized) struct SeriesIntegrityTests {
    func store(_ files: [String], port: Int) throws -> ToolResult { try storescu(files, port: port) }

    func quietWarnings(_ dir: TempDir) throws -> Int {
        try databaseInt(dir, "SELECT COUNT(*) FROM events WHERE kind = 'series_quiet'")
    }

    /// Waits out a pause longer than series_quiet_seconds: until the daemon has warned about
    /// it, or (what it did before) turned the partial series into a job.
    func waitOutQuietTimer(_ dir: TempDir, _ server: PerfdServer, warningsBefore: Int = 0) throws {
        try waitFor(10, "the quiet timer to run out") { try quietWarnings(dir) > warningsBefore || !server.jobs().isEmpty }
    }

    /// A series that declares 12 instances (6 time points × 2 slices) pauses after 5 for
    /// longer than series_quiet_seconds: the pause is only a warning, and the rest makes one
    /// job with all 12. Before, the pause completed the series with 5 and a second job
    /// followed with the rest. In-process daemon: the pause is the clock moved 30 s forward.
    @Test func pauseShorterThanTheStallLimitWaitsForTheDeclaredCount() throws {
        let dir = TempDir()
        let server = try InProcessDaemon(configPath: writeConfig(in: dir, port: 0, quietSeconds: 30, extra: "series_stalled_seconds: 600"),
                                         logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let port = server.port
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 6)
        #expect(try store(Array(ph.files[..<5]), port: port).status == 0)
        #expect(try quietWarnings(dir) == 0, "warned before the quiet time passed")
        server.advance(by: 31)
        try waitFor(10, "the quiet warning") { try quietWarnings(dir) > 0 || !server.jobs().isEmpty }
        let early = try server.jobs()
        #expect(early.isEmpty, "a partial series became a job: \(early)")
        #expect(server.log.contains("5 of 12 instances"), "\(server.log)")
        #expect(try store(Array(ph.files[5...]), port: port).status == 0)
        try waitFor(15, "the job to finish") { try server.jobs().first.map { $0.state == "done" || $0.state == "failed" } ?? false }
        let js = try server.jobs()
        #expect(js.count == 1, "\(js)")
        #expect(js.first?.instances == 12)
        #expect(js.first?.state == "done", "\(js)")
    }

    /// kill -9 while a declared series is half received: the restart does not complete it
    /// (its last instance is older than series_quiet_seconds by then), so no partial job and
    /// no failure notice; the rest makes one job. Before, the restarted daemon queued the half
    /// at once.
    @Test func restartDuringReceiveDoesNotCompleteAPartialSeries() throws {
        let dir = TempDir()
        let port = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 1, extra: "series_stalled_seconds: 60")
        var server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 6)
        #expect(try store(Array(ph.files[..<6]), port: port).status == 0)
        server.kill9()
        let warnings = try quietWarnings(dir)
        server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        try waitOutQuietTimer(dir, server, warningsBefore: warnings)
        let early = try server.jobs()
        #expect(early.isEmpty, "the restart queued a partial series: \(early)")
        #expect(try store(Array(ph.files[6...]), port: port).status == 0)
        try waitFor(15, "the job to finish") { try server.jobs().first.map { $0.state == "done" || $0.state == "failed" } ?? false }
        let js = try server.jobs()
        #expect(js.count == 1 && js.first?.instances == 12 && js.first?.state == "done", "\(js)")
    }

    /// The scanner stops for good after 5 of 12: after series_stalled_seconds the series
    /// fails once as incomplete, naming the counts, with one failure notice. In-process
    /// daemon: the stall is the clock moved past series_stalled_seconds (a realistic 300 s).
    @Test func stalledSeriesFailsOnceAsIncomplete() throws {
        let dir = TempDir()
        let pacsPort = freePort()
        let received = dir.sub("pacs")
        let pacs = try StoreSCPPeer(port: pacsPort, received: received, options: [])
        defer { withExtendedLifetime(pacs) {} }
        let server = try InProcessDaemon(configPath: writeConfig(in: dir, port: 0, quietSeconds: 30, extra: """
            series_stalled_seconds: 300
            destinations:
              - ae_title: PACS
                host: 127.0.0.1
                port: \(pacsPort)
            """), logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 6)
        #expect(try store(Array(ph.files[..<5]), port: server.port).status == 0)
        // Past the quiet time but short of the stall limit: a warning, no job.
        server.advance(by: 60)
        try waitFor(10, "the quiet warning") { try quietWarnings(dir) > 0 }
        #expect(try server.jobs().isEmpty)
        server.advance(by: 241)
        try waitFor(12, "the job to end") { try server.jobs().first.map { $0.state == "done" || $0.state == "failed" } ?? false }
        let js = try server.jobs()
        #expect(js.count == 1, "\(js)")
        let error = js.first?.error ?? ""
        #expect(error.contains("incomplete series") && error.contains("5 of 12"), "\(js)")
        try waitFor(10, "the failure notice at the PACS") { try databaseInt(dir, "SELECT COUNT(*) FROM outbox WHERE kind = 'failure_notice' AND state = 'sent'") == 1 }
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM outbox WHERE kind = 'failure_notice'") == 1)
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM outbox WHERE kind = 'result'") == 0)
    }

    // MARK: SOP Instance UID policy

    func refusals(_ dir: TempDir, _ sop: String) throws -> Int {
        try databaseInt(dir, "SELECT COUNT(*) FROM audit WHERE kind = 'series' AND outcome = 'refused' AND detail LIKE '%\(sop)%'")
    }

    /// A modified copy of `file` at `dir/name.dcm` (dcmodify -m for each key=value).
    func modified(_ file: String, _ dir: String, _ name: String, _ changes: [String]) throws -> String {
        let path = "\(dir)/\(name).dcm"
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: file, toPath: path)
        let r = try runTool("dcmodify", ["-nb"] + changes.flatMap { ["-i", $0] } + [path])
        guard r.status == 0 else { throw TestFailure("dcmodify failed: \(r.output)") }
        return path
    }

    func datasetBytes(_ path: String) throws -> Data {
        let d = try Data(contentsOf: URL(fileURLWithPath: path))
        return d.suffix(from: DicomFile.datasetOffset(d) ?? 0)
    }

    /// After the job of a series finished: an identical re-send is acknowledged and kept once;
    /// other content under a known SOP Instance UID, a known SOP Instance UID under another
    /// series, and an instance of the series naming another study or patient are each refused
    /// with a failure status and an audit row, and change nothing stored. Before, all four were
    /// answered 0x0000: the first replaced the acknowledged file, the second re-pointed the row
    /// to the other series' file, the last two were merged into the series.
    @Test func conflictingInstancesAreRefusedAndAnIdenticalResendIsKeptOnce() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 30), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 3)
        #expect(try store(ph.files, port: port).status == 0)
        try waitFor(15, "the job to finish") { try server.jobs().first?.state == "done" }
        let spool = dir.path + "/state/spool/" + ph.seriesUID
        let first = try DicomFile(path: ph.files[0])
        let sop = try #require(first.string("SOPInstanceUID"))
        let kept = spool + "/" + sop + ".dcm"
        let original = try datasetBytes(kept)
        let work = dir.sub("work")

        // An identical re-send.
        #expect(try store([ph.files[0]], port: port).status == 0)
        #expect(try refusals(dir, sop) == 0, "\(server.log)")
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM instances WHERE series_uid = '\(ph.seriesUID)'") == 6)
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool).filter { $0.hasSuffix(".dcm") }.count == 6)

        // Other content under the same SOP Instance UID.
        let changed = try modified(ph.files[0], work, "changed", ["(0020,4000)=edited after the fact"])
        _ = try store([changed], port: port)
        #expect(try datasetBytes(kept) == original, "the acknowledged file was replaced")
        #expect(try refusals(dir, sop) == 1, "\(server.log)")
        #expect(server.log.contains("answered 0xA900") && server.log.contains("different content"), "\(server.log)")

        // The same SOP Instance UID under another series.
        let sop2 = try #require(try DicomFile(path: ph.files[1]).string("SOPInstanceUID"))
        let moved = try modified(ph.files[1], work, "moved", ["(0020,000E)=2.25.99887766"])
        _ = try store([moved], port: port)
        #expect(try refusals(dir, sop2) == 1, "\(server.log)")
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM instances WHERE sop_instance_uid = '\(sop2)' AND series_uid = '\(ph.seriesUID)' AND path LIKE '\(spool)/%'") == 1)
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM instances WHERE series_uid = '2.25.99887766'") == 0)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/state/spool/2.25.99887766/\(sop2).dcm"))

        // New instances of the known series that name another study, or another patient.
        let otherStudy = try modified(ph.files[2], work, "study", ["(0008,0018)=2.25.5551", "(0020,000D)=2.25.5552"])
        let otherPatient = try modified(ph.files[3], work, "patient", ["(0008,0018)=2.25.5553", "(0010,0020)=SOMEONE-ELSE"])
        _ = try store([otherStudy], port: port)
        _ = try store([otherPatient], port: port)
        let audit = try runTool("sqlite3", [dir.path + "/state/perfd.sqlite", "SELECT outcome, detail FROM audit WHERE kind = 'series'"]).stdout
        #expect(try refusals(dir, "2.25.5551") == 1, "\(audit)")
        #expect(try refusals(dir, "2.25.5553") == 1, "\(audit)")
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM instances WHERE series_uid = '\(ph.seriesUID)'") == 6)
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool).filter { $0.hasSuffix(".dcm") }.count == 6)
        // Nothing was merged: no second job.
        #expect(try server.jobs().count == 1)
        #expect(server.process.isRunning)
    }

    // MARK: export and kill -9

    /// kill -9 while a job's results go to a PACS that takes a second per file: after the
    /// restart only what the PACS had not acknowledged is sent. storescp logs each file as it
    /// receives it, before it answers, so at the kill every logged file but the last was
    /// acknowledged. Before, the whole batch was sent again.
    @Test func killDuringExportResendsOnlyWhatThePacsDidNotAcknowledge() throws {
        let dir = TempDir()
        let port = freePort()
        let pacsPort = freePort()
        let received = dir.sub("pacs")
        let log = dir.path + "/pacs.log"
        let pacs = try StoreSCPPeer(port: pacsPort, received: received, options: [
            "--exec-sync", "-xcr", "sh -c 'echo #f >> \(log); sleep 1'"])
        defer { withExtendedLifetime(pacs) {} }
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: """
            destinations:
              - ae_title: PACS
                host: 127.0.0.1
                port: \(pacsPort)
            """)
        var server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        let ph = try makePhantom(in: dir.sub("ph"), size: 32, slices: 6, timepoints: 6)
        #expect(try store(ph.files, port: port).status == 0)
        func logged() -> [String] {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        try waitFor(30, "3 files at the PACS") { logged().count >= 3 }
        server.kill9()
        let before = logged()
        let acknowledged = Set(before.dropLast())
        server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        try waitFor(30, "the job to be done") { try server.jobs().first?.state == "done" }
        let after = Array(logged().dropFirst(before.count))
        #expect(!after.isEmpty)
        let again = after.filter { acknowledged.contains($0) }
        #expect(again.isEmpty, "sent again after the PACS acknowledged them: \(again); before the kill: \(before)")
        let total = try databaseInt(dir, "SELECT COUNT(*) FROM outbox WHERE kind = 'result'")
        #expect(Set(before + after).count == total)
        print("kill -9 during export: \(before.count) files logged before, \(after.count) after, \(total) in the batch")
    }
}
