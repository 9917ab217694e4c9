import Foundation
import PerfdTestSupport
import Phantom
import Testing

/// One daemon per database, a /health that tells the truth about the database, no patient
/// names left behind by a purge, peer text that cannot forge log lines, refusal floods that
/// cost a few rows, and lossy sources that stay marked lossy — each against `perfd serve`
/// or `perfd run` as a process.
@Suite(.serialized) struct DaemonSafetyTests {
    /// An A-ASSOCIATE-RQ for Verification, the calling AE title as raw bytes (up to 16).
    static func associateRQ(calling: [UInt8], called: String = "PERFD") -> [UInt8] {
        func field(_ b: [UInt8]) -> [UInt8] { Array((b + [UInt8](repeating: 0x20, count: 16)).prefix(16)) }
        func item(_ type: UInt8, _ body: [UInt8]) -> [UInt8] { [type, 0, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body }
        let presentation = item(0x20, [1, 0, 0, 0] + item(0x30, Array("1.2.840.10008.1.1".utf8)) + item(0x40, Array("1.2.840.10008.1.2".utf8)))
        let user = item(0x50, item(0x51, [0, 0, 0x40, 0]) + item(0x52, Array("1.2.3.4".utf8)))
        let body: [UInt8] = [0, 1, 0, 0] + field(Array(called.utf8)) + field(calling) + [UInt8](repeating: 0, count: 32)
            + item(0x10, Array("1.2.840.10008.3.1.1.1".utf8)) + presentation + user
        let n = body.count
        return [0x01, 0, UInt8(n >> 24 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + body
    }

    /// Sends an A-ASSOCIATE-RQ, returns the type of the PDU answered (3: rejected) or nil.
    @discardableResult
    static func associate(port: Int, calling: [UInt8]) -> UInt8? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { return nil }
        let rq = associateRQ(calling: calling)
        _ = rq.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buf = [UInt8](repeating: 0, count: 64)
        return recv(fd, &buf, buf.count, 0) > 0 ? buf[0] : nil
    }

    struct AuditRow: Decodable {
        var kind: String
        var outcome: String
        var actor: String
        var host: String
        var detail: String
        var count: Int?
    }

    func audit(_ server: PerfdServer) throws -> [AuditRow] {
        let r = try server.cli(["audit", "--json"])
        guard r.status == 0 else { throw TestFailure("perfd audit: \(r.output)") }
        return try JSONDecoder().decode([AuditRow].self, from: Data(r.stdout.utf8))
    }

    /// Runs `perfd serve` to its end (it should refuse at once); nil when it still runs after `seconds`.
    func serveToTheEnd(_ config: String, log: String, seconds: Double) throws -> (status: Int32, output: String, elapsed: Double)? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Paths.perfd)
        p.arguments = ["serve", "--config", config]
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let h = FileHandle(forWritingAtPath: log)!
        p.standardOutput = h
        p.standardError = h
        let started = Date()
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        try? waitFor(seconds, "the second perfd serve to exit") { !p.isRunning }
        guard !p.isRunning else { return nil }
        return (p.terminationStatus, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "", Date().timeIntervalSince(started))
    }

    // MARK: item 7

    /// A second `perfd serve` on the same database and spool (same config, or another port)
    /// exits at once naming the lock file and the first daemon's pid; the first daemon's
    /// files in .incoming (being received, or written ahead) and its daemon row are untouched.
    @Test func aSecondServeOnTheSameDatabaseRefusesBeforeTouchingAnything() throws {
        let dir = TempDir()
        let port = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 30)
        let first = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/first.log")
        defer { first.stop() }
        let pid = first.process.processIdentifier
        // A file the first daemon is receiving into (reconciliation deletes what it finds in .incoming).
        let incoming = dir.path + "/state/spool/.incoming"
        let inFlight = incoming + "/in-flight-by-the-first-daemon"
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: inFlight))
        let before = Set(try FileManager.default.contentsOfDirectory(atPath: incoming))

        // The same config (a busy port too), and the same database and spool on another port.
        let otherDir = TempDir()
        let otherConfig = writeConfig(in: otherDir, port: freePort(), quietSeconds: 30)
        let text = try String(contentsOfFile: otherConfig, encoding: .utf8)
            .replacingOccurrences(of: otherDir.path + "/state", with: dir.path + "/state")
        try text.write(toFile: otherConfig, atomically: true, encoding: .utf8)
        for (name, cfg) in [("same config", config), ("other port", otherConfig)] {
            let second = try #require(try serveToTheEnd(cfg, log: dir.path + "/second.log", seconds: 10),
                                      "\(name): the second daemon kept running beside the first")
            print("\(name): the second perfd serve exited \(second.status) after \(String(format: "%.2f", second.elapsed)) s")
            #expect(second.status != 0, "\(name)")
            #expect(second.output.contains(dir.path + "/state/perfd.sqlite.lock"), "\(name): \(second.output)")
            #expect(second.output.contains("pid \(pid)"), "\(name): \(second.output)")
            #expect(second.elapsed < 5, "\(name)")
            #expect(first.process.isRunning)
            #expect(FileManager.default.fileExists(atPath: inFlight), "\(name): the first daemon's file in .incoming was deleted")
            #expect(before.isSubset(of: Set(try FileManager.default.contentsOfDirectory(atPath: incoming))), "\(name)")
            #expect(try databaseInt(dir, "SELECT pid FROM daemon") == Int(pid), "\(name): the second daemon wrote its own daemon row")
        }
        // Admin commands still work beside the daemon, and the first one still serves.
        let status = try first.cli(["status"])
        #expect(status.status == 0 && status.stdout.contains("pid \(pid)"), "\(status.output)")
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 1, timepoints: 2)
        #expect(try storescu(ph.files, port: port).status == 0)
        // The lock dies with its holder: a daemon started after the first stopped runs.
        first.stop()
        let third = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/third.log")
        third.stop()
    }

    // MARK: item 8

    /// Another process holds the database's write lock: /health answers 503 with the reason
    /// within about 3 s (it used to say ok, or not answer), and 200 once the lock is gone.
    @Test func healthAnswers503QuicklyWhileAnotherProcessLocksTheDatabase() throws {
        let dir = TempDir()
        let port = freePort(), metricsPort = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: "metrics_port: \(metricsPort)")
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        try waitFor(10, "/health 200") { (try? httpGet(port: metricsPort, "/health").status) == 200 }

        let locker = Process()
        locker.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        locker.arguments = ["python3", "-c", """
            import sqlite3, sys, time
            c = sqlite3.connect(sys.argv[1], isolation_level=None)
            c.execute("BEGIN EXCLUSIVE")
            c.execute("INSERT INTO events (at, kind, message) VALUES (0, 'test', 'held')")
            print("locked", flush=True)
            time.sleep(30)
            """, dir.path + "/state/perfd.sqlite"]
        let out = Pipe()
        locker.standardOutput = out
        try locker.run()
        defer { if locker.isRunning { kill(locker.processIdentifier, SIGKILL); locker.waitUntilExit() } }
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        #expect(line.contains("locked"))

        let started = Date()
        let health = try httpGet(port: metricsPort, "/health")
        let elapsed = Date().timeIntervalSince(started)
        print("/health with the database locked: \(health.status) after \(String(format: "%.2f", elapsed)) s: \(health.body)")
        #expect(health.status == 503, "\(health.body)")
        #expect(health.body.contains("database: locked"), "\(health.body)")
        #expect(elapsed < 3.5)

        kill(locker.processIdentifier, SIGKILL)
        locker.waitUntilExit()
        try waitFor(10, "/health 200 once the lock is gone") { (try? httpGet(port: metricsPort, "/health").status) == 200 }
    }

    /// A damaged index page (one every stored instance writes to): /health answers 503 and
    /// names the damage, where it used to say "database: ok" while every store failed.
    @Test func healthAnswers503WhenAPageIngestWritesIsDamaged() throws {
        let dir = TempDir()
        let port = freePort(), metricsPort = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: "metrics_port: \(metricsPort)")
        var server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 2)
        #expect(try storescu(ph.files, port: port).status == 0)
        server.stop()   // the last connection checkpoints: the file holds every page

        let db = dir.path + "/state/perfd.sqlite"
        let pageSize = try databaseInt(dir, "PRAGMA page_size")
        let root = try databaseInt(dir, "SELECT rootpage FROM sqlite_master WHERE name = 'instances_by_series'")
        #expect(pageSize > 0 && root > 1)
        let h = try #require(FileHandle(forUpdatingAtPath: db))
        try h.seek(toOffset: UInt64((root - 1) * pageSize))
        try h.write(contentsOf: Data(repeating: 0xA5, count: pageSize))
        try h.close()

        server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve2.log")
        defer { server.stop() }
        let started = Date()
        let health = try httpGet(port: metricsPort, "/health")
        print("/health with a damaged page: \(health.status) after \(String(format: "%.2f", Date().timeIntervalSince(started))) s: \(health.body)")
        #expect(health.status == 503, "\(health.body)")
        #expect(health.body.contains("database: ") && health.body.contains("malformed"), "\(health.body)")
    }

    // MARK: item 10

    /// After a purge the patient's name and ID are in neither the database file nor its WAL.
    @Test func purgeLeavesNoPatientNameInTheDatabaseOrItsWAL() throws {
        let dir = TempDir()
        let port = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: "retention_days: 0.00001")
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        var o = PhantomOptions()
        o.size = 16; o.slices = 2; o.timepoints = 3
        o.patientName = "Quaxlemby^Thessaly"
        o.patientID = "PID-QX-77431"
        let ph = try Phantom.write(to: dir.sub("ph"), options: o)
        #expect(try storescu(ph.files, port: port).status == 0)
        try waitFor(20, "the job to finish") { try server.jobs().first?.state == "done" }
        let files = [dir.path + "/state/perfd.sqlite", dir.path + "/state/perfd.sqlite-wal"]
        func holds(_ text: String) -> Bool {
            files.contains { (FileManager.default.contents(atPath: $0) ?? Data()).range(of: Data(text.utf8)) != nil }
        }
        #expect(holds(o.patientName) && holds(o.patientID), "the test's premise: the name is in the database before the purge")
        try waitFor(10, "the series to be due for purging") { try server.cli(["purge", "--dry-run"]).stdout.contains(ph.seriesUID) }
        let purge = try server.cli(["purge"])
        #expect(purge.status == 0, "\(purge.output)")
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM series WHERE purged_at IS NOT NULL") == 1)
        #expect(!holds(o.patientName), "the patient's name is still in the database file or its WAL")
        #expect(!holds(o.patientID), "the patient's ID is still in the database file or its WAL")
    }

    // MARK: item 11

    /// A calling AE title with CR, LF and ESC is refused, and appears escaped (\x0d, \x1b)
    /// in the log, the events table, the audit trail and `perfd status`: no forged line,
    /// no terminal escape.
    @Test func controlCharactersInACallingAETitleAreEscapedEverywhere() throws {
        let dir = TempDir()
        let port = freePort()
        let evil: [UInt8] = Array("EV".utf8) + [0x0D, 0x0A] + Array("IL".utf8) + [0x1B] + Array("[2J".utf8)
        let config = writeConfig(in: dir, port: port, quietSeconds: 30)
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        #expect(Self.associate(port: port, calling: evil) == 0x03, "the association was not rejected")
        let escaped = "EV\\x0d\\x0aIL\\x1b[2J"
        try waitFor(5, "the refusal in the log") { server.log.contains("association refused") }
        let log = server.log
        #expect(log.contains(escaped), "\(log)")
        #expect(!log.contains("\u{1b}") && !log.contains("\r"), "raw control characters in the log")
        #expect(!log.contains("\nIL"), "a forged log line")
        let status = try server.cli(["status"])
        #expect(status.stdout.contains(escaped), "\(status.stdout)")
        #expect(!status.stdout.contains("\u{1b}") && !status.stdout.contains("\r"))
        let events = try runTool("sqlite3", [dir.path + "/state/perfd.sqlite", "SELECT message FROM events"]).stdout
        #expect(events.contains(escaped) && !events.contains("\u{1b}"), "\(events)")
        let refused = try audit(server).filter { $0.outcome == "refused" }
        #expect(refused.count == 1 && refused.first?.actor == escaped, "\(refused)")
        let table = try server.cli(["audit"]).stdout
        #expect(table.contains(escaped) && !table.contains("\u{1b}"))
    }

    // MARK: item 12

    /// 500 refused associations from one host and AE: a handful of audit rows whose counts
    /// add up to 500, a handful of log lines; /metrics-style counting is not the audit's job.
    @Test func aBurstOfRefusedAssociationsCostsAFewAuditRowsAndLogLines() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 30), port: port,
                                     logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let n = 500
        var rejected = 0
        let started = Date()
        for _ in 0..<n where Self.associate(port: port, calling: Array("INTRUDER".utf8)) == 0x03 { rejected += 1 }
        print("\(rejected) of \(n) refused in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        #expect(rejected == n)
        // A graceful stop writes the counts of the open window.
        server.stop()
        let rows = try audit(server).filter { $0.kind == "association" && $0.outcome == "refused" }
        let total = rows.reduce(0) { $0 + ($1.count ?? 1) }
        let lines = server.log.split(separator: "\n").filter { $0.contains("INTRUDER") }
        print("audit rows \(rows.count) (counts \(rows.map { $0.count ?? 1 })), log lines naming the AE \(lines.count)")
        #expect(total == n, "\(rows.map { ($0.count ?? 1, $0.detail) })")
        #expect(rows.count <= 6, "\(rows.count) audit rows for one refusal repeated")
        #expect(rows.allSatisfy { $0.actor == "INTRUDER" && $0.host == "127.0.0.1" })
        #expect(lines.count <= 6, "\(lines.count) log lines")
        let all = server.log.split(separator: "\n")
        print("log: \(all.count) lines in all")
        #expect(all.count <= 20, "\(all.suffix(30).joined(separator: "\n"))")
        #expect(lines.contains { $0.contains("more refusals from 127.0.0.1") }, "\(lines)")
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM events WHERE kind = 'association_refused'") <= 6)
    }

    /// Audit rows older than audit_retention_days go at the next purge; newer ones stay.
    @Test func auditRowsOlderThanTheirRetentionArePruned() throws {
        let dir = TempDir()
        let port = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: "audit_retention_days: 30")
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let now = Date().timeIntervalSince1970
        let insert = try runTool("sqlite3", [dir.path + "/state/perfd.sqlite", """
            INSERT INTO audit (at, kind, outcome, actor, host, detail) VALUES
              (\(now - 40 * 86_400), 'association', 'refused', 'OLD', '10.0.0.1', 'forty days ago'),
              (\(now - 20 * 86_400), 'association', 'refused', 'RECENT', '10.0.0.2', 'twenty days ago');
            """])
        #expect(insert.status == 0, "\(insert.output)")
        let purge = try server.cli(["purge"])
        #expect(purge.status == 0, "\(purge.output)")
        let actors = try audit(server).map(\.actor)
        #expect(!actors.contains("OLD"), "\(actors)")
        #expect(actors.contains("RECENT"), "\(actors)")
    }

    // MARK: item 13

    /// A JPEG-LS near-lossless source (pixels up to 1 off): the derived NCCT, the colour maps
    /// and the summary page carry LossyImageCompression 01 and the method; outputs of a
    /// lossless source do not.
    @Test func outputsOfANearLosslessSourceCarryLossyImageCompression() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.sub("ph"), size: 64, slices: 1, timepoints: 19)
        let lossy = dir.sub("lossy")
        for (i, f) in ph.files.enumerated() {
            let out = lossy + String(format: "/%04d.dcm", i)
            let r = try runTool("dcmcjpls", ["+en", "+md", "1", f, out])
            #expect(r.status == 0, "\(r.output)")
            // Only the transfer syntax tells: the attribute a scanner would also set is removed.
            try runTool("dcmodify", ["-nb", "-ea", "(0028,2110)", "-ea", "(0028,2112)", "-ea", "(0028,2114)", out])
        }
        let probe = try runTool("dcmdump", ["-M", lossy + "/0000.dcm"]).stdout
        #expect(probe.contains("=JPEGLSLossy") && !probe.contains("(0028,2110)"), "\(probe)")

        func outputs(_ input: String, _ pipeline: String) throws -> [String] {
            let out = dir.path + "/out-\(pipeline)-\((input as NSString).lastPathComponent)"
            let r = try runTool(Paths.perfd, ["run", input, "--output", out, "--pipeline", pipeline])
            guard r.status == 0 else { throw TestFailure("perfd run: \(r.output)") }
            let e = FileManager.default.enumerator(atPath: out + "/dicom")!
            return e.compactMap { $0 as? String }.filter { $0.hasSuffix(".dcm") }.map { out + "/dicom/" + $0 }
        }
        let derived = try outputs(lossy, "baseline-mean03") + outputs(lossy, "perfusion-svd")
        #expect(derived.count == 1 + 5 + 1, "\(derived)")   // NCCT; CBF, CBV, MTT, Tmax, TTP; summary
        for f in derived {
            let d = try runTool("dcmdump", ["+P", "0028,2110", "+P", "0028,2114", f]).stdout
            #expect(d.contains("[01]") && d.contains("ISO_14495_1"), "\(f): \(d)")
        }
        for f in try outputs(dir.path + "/ph", "baseline-mean03") {
            #expect(!(try runTool("dcmdump", ["+P", "0028,2110", f]).stdout.contains("[01]")), "\(f)")
        }
    }

    /// A job on a lossy series that fails: its "processing failed" notice says so too.
    @Test func theFailureNoticeOfALossySeriesCarriesLossyImageCompression() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 1), port: port,
                                     logPath: dir.path + "/serve.log")
        defer { server.stop() }
        // Time points 100 s apart: a 700 s acquisition, which assembly refuses.
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 1, timepoints: 8, interval: 100)
        let lossy = dir.sub("lossy")
        var files: [String] = []
        for (i, f) in ph.files.enumerated() {
            files.append(lossy + String(format: "/%04d.dcm", i))
            #expect(try runTool("dcmcjpls", ["+en", "+md", "1", f, files[i]]).status == 0)
            try runTool("dcmodify", ["-nb", "-ea", "(0028,2110)", "-ea", "(0028,2112)", "-ea", "(0028,2114)", files[i]])
        }
        let sent = try runTool("storescu", ["-xu", "-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(port)] + files)
        #expect(sent.status == 0, "\(sent.output)")
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM instances WHERE transfer_syntax = '1.2.840.10008.1.2.4.81'") == files.count)
        try waitFor(20, "the job to fail") { try server.jobs().first?.state == "failed" }
        let job = try #require(try server.jobs().first)
        let notice = dir.path + "/state/work/job-\(job.id)/dicom/failure-notice/0001.dcm"
        try waitFor(10, "the failure notice") { FileManager.default.fileExists(atPath: notice) }
        let d = try runTool("dcmdump", ["+P", "0028,2110", "+P", "0028,2114", notice]).stdout
        #expect(d.contains("[01]") && d.contains("ISO_14495_1"), "\(d)")
    }
}
