import DICOM
import Foundation
import PerfdTestSupport
import Perfusion
import Testing

/// `perfd serve` as a real process, DCMTK's storescu as the scanner, on loopback.
@Suite(.serialized) struct IngestIntegrationTests {
    func jobs(_ server: PerfdServer) throws -> [PerfdServer.JobRow] { try server.jobs() }

    func store(_ files: [String], port: Int, aet: String = "SCANNER") throws -> ToolResult { try storescu(files, port: port, aet: aet) }

    func rowCount(_ dir: TempDir, _ series: String) throws -> Int {
        try databaseInt(dir, "SELECT COUNT(*) FROM instances WHERE series_uid = '\(series)'")
    }

    @Test func phantomPushedByStorescuBecomesOneJobWithEveryInstance() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 30), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 64, slices: 4, timepoints: 19)
        let r = try store(ph.files, port: port)
        #expect(r.status == 0, "\(r.output)")
        // Expected count (19 × 4) completes the series without waiting for the 30 s timer.
        try waitFor(10, "a job") { try !jobs(server).isEmpty }
        let js = try jobs(server)
        #expect(js.count == 1)
        #expect(js[0].series_uid == ph.seriesUID)
        #expect(js[0].study_uid == ph.studyUID)
        #expect(js[0].instances == 76)
        #expect(try rowCount(dir, ph.seriesUID) == 76)
        // The job runs: assembly then the default baseline pipeline.
        try waitFor(20, "the job to finish") { try jobs(server).first?.state == "done" }
        let status = try server.cli(["status"])
        #expect(status.stdout.contains("listener   running: AE PERFD on port \(port)"), "\(status.output)")
        #expect(status.stdout.contains("done 1"))
    }

    /// The header fields assembly needs are recorded at ingest and read back from the store:
    /// storescu → perfd serve, every instance row holds the file's image attributes (checked
    /// against the files read by keyword), the job opened no file for its header, and after
    /// PixelSpacing is rewritten in every spool file a re-run still assembles with the
    /// spacing the series was received with (on code that re-parses headers it takes 0.25).
    @Test func headersRecordedAtIngestAreWhatAssemblyReads() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 30), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 32, slices: 4, timepoints: 5)
        #expect(try store(ph.files, port: port).status == 0)
        try waitFor(20, "a job") { try !jobs(server).isEmpty }
        let id = try jobs(server)[0].id
        try waitFor(30, "the job to finish") { try jobs(server).first?.state == "done" }
        let columns = "sop_instance_uid, image_rows, image_columns, orientation, pixel_spacing, rescale_slope, rescale_intercept, bits_allocated, bits_stored, pixel_representation, samples_per_pixel, photometric, number_of_frames, slice_thickness, header_recorded"
        let q = try runTool("sqlite3", ["-separator", "|", dir.path + "/state/perfd.sqlite",
                                        "SELECT \(columns) FROM instances WHERE series_uid = '\(ph.seriesUID)' ORDER BY sop_instance_uid"])
        let rows = q.stdout.split(separator: "\n").map(String.init)
        #expect(rows.count == ph.files.count, "\(q.output)")
        var expected: [String] = []
        for path in ph.files {
            let f = try DicomFile(path: path)
            let fields: [String?] = [f.string("SOPInstanceUID"), f.string("Rows"), f.string("Columns"), f.string("ImageOrientationPatient"),
                                     f.string("PixelSpacing"), f.string("RescaleSlope"), f.string("RescaleIntercept"),
                                     f.string("BitsAllocated"), f.string("BitsStored"), f.string("PixelRepresentation"),
                                     f.string("SamplesPerPixel"), f.string("PhotometricInterpretation"), f.string("NumberOfFrames"),
                                     f.string("SliceThickness"), "1"]
            #expect(fields[3] != nil && fields[4] != nil && fields[6] != nil)
            expected.append(fields.map { $0 ?? "" }.joined(separator: "|"))
        }
        #expect(rows == expected.sorted())
        #expect(try databaseInt(dir, "SELECT json_extract(result, '$.header_files_read') FROM job_stages WHERE job_id = \(id) AND stage = 'assemble'") == 0)

        let received = try #require(DicomFile(path: ph.files[0]).doubles("PixelSpacing"))
        #expect(received[0] != 0.25)
        let spooled = try runTool("sqlite3", [dir.path + "/state/perfd.sqlite", "SELECT path FROM instances WHERE series_uid = '\(ph.seriesUID)'"])
        let paths = spooled.stdout.split(separator: "\n").map(String.init)
        #expect(paths.count == ph.files.count)
        #expect(try runTool("dcmodify", ["-nb", "-m", "(0028,0030)=0.25\\0.25"] + paths).status == 0)
        #expect(try server.cli(["retry", String(id)]).status == 0)
        try waitFor(30, "the re-run to finish") { try jobs(server).first?.state == "done" }
        let spacing = try runTool("sqlite3", [dir.path + "/state/perfd.sqlite", "SELECT json_extract(report, '$.input.spacing_mm[1]') FROM jobs WHERE id = \(id)"])
        #expect(Double(spacing.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) == received[0], "\(spacing.output)")
    }

    @Test func killedMidSeriesRestartsAndLosesNothing() throws {
        let dir = TempDir()
        let port = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 30)
        let ph = try makePhantom(in: dir.sub("ph"), size: 48, slices: 4, timepoints: 19)
        let half = ph.files.count / 2
        var server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        #expect(try store(Array(ph.files[..<half]), port: port).status == 0)
        server.kill9()
        #expect(try rowCount(dir, ph.seriesUID) == half)
        // While stopped, status still answers from the database, and exits 3: not running.
        let offline = try runTool(Paths.perfd, ["status", "--config", config])
        #expect(offline.status == 3, "\(offline.output)")
        #expect(offline.stdout.contains("receiving  1 series"), "\(offline.output)")
        server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        #expect(try store(Array(ph.files[half...]), port: port).status == 0)
        try waitFor(10, "a job") { try !jobs(server).isEmpty }
        let js = try jobs(server)
        #expect(js.count == 1)
        #expect(js.first?.instances == ph.files.count)
        #expect(try rowCount(dir, ph.seriesUID) == ph.files.count)
    }

    @Test func unknownCallingAEIsRefusedAndTheAllowedOneStores() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 1), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 3)
        let refused = try store(ph.files, port: port, aet: "INTRUDER")
        #expect(refused.status != 0)
        #expect(refused.output.contains("Calling AE Title Not Recognized"), "\(refused.output)")
        #expect(try rowCount(dir, ph.seriesUID) == 0)
        #expect(server.log.contains("calling AE \"INTRUDER\" from 127.0.0.1 is not in allowed_peers"))
        let status = try server.cli(["status"])
        #expect(status.stdout.contains("association_refused"), "\(status.output)")
        #expect(try store(ph.files, port: port).status == 0)
        #expect(try rowCount(dir, ph.seriesUID) == 6)
    }

    @Test func badInputIsAnsweredAndTheDaemonKeepsServing() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 1), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let bad = dir.sub("bad")
        let src = try makePhantom(in: dir.sub("src"), size: 32, slices: 1, timepoints: 1)
        let good = try Data(contentsOf: URL(fileURLWithPath: src.files[0]))
        // A truncated file: the header survives, the pixel data is cut.
        try good.prefix(good.count / 2).write(to: URL(fileURLWithPath: bad + "/truncated.dcm"))
        // Random bytes.
        var rng = SeededRandom(seed: 3)
        try Data((0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }).write(to: URL(fileURLWithPath: bad + "/random.dcm"))
        // Missing UIDs.
        for (name, tag) in [("nostudy", "(0020,000d)"), ("noseries", "(0020,000e)")] {
            try FileManager.default.copyItem(atPath: src.files[0], toPath: "\(bad)/\(name).dcm")
            #expect(try runTool("dcmodify", ["-nb", "-ea", tag, "\(bad)/\(name).dcm"]).status == 0)
        }
        // Missing pixel data.
        try FileManager.default.copyItem(atPath: src.files[0], toPath: "\(bad)/nopixels.dcm")
        #expect(try runTool("dcmodify", ["-nb", "-ea", "(7fe0,0010)", "\(bad)/nopixels.dcm"]).status == 0)
        // A non-CT object (MR Image Storage): no presentation context is accepted for it.
        try FileManager.default.copyItem(atPath: src.files[0], toPath: "\(bad)/mr.dcm")
        #expect(try runTool("dcmodify", ["-nb", "-m", "SOPClassUID=1.2.840.10008.5.1.4.1.1.4", "\(bad)/mr.dcm"]).status == 0)

        for name in ["truncated", "random", "nostudy", "noseries", "nopixels", "mr"] {
            _ = try runTool("storescu", ["-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(port), "\(bad)/\(name).dcm"])
            #expect(portOpen(port), "perfd stopped listening after \(name)")
        }
        // Garbage PDUs: random bytes, and an A-ASSOCIATE-RQ header announcing 2 GB.
        sendRaw((0..<512).map { _ in UInt8.random(in: 0...255, using: &rng) }, port: port)
        sendRaw([0x01, 0x00, 0x7F, 0xFF, 0xFF, 0xFF, 0x00, 0x01, 0x00, 0x00], port: port)
        sendRaw([], port: port)
        #expect(server.process.isRunning, "\(server.log)")
        #expect(try rowCount(dir, src.seriesUID) == 0)
        let refused = server.log.components(separatedBy: "answered 0xA900").count - 1
        #expect(refused >= 3, "\(server.log)")

        // A good series afterwards still becomes a job.
        let ph = try makePhantom(in: dir.sub("ph"), size: 32, slices: 2, timepoints: 4, seed: 9)
        #expect(try store(ph.files, port: port).status == 0)
        try waitFor(10, "a job for the good series") { try jobs(server).contains { $0.series_uid == ph.seriesUID && $0.instances == 8 } }
    }

    /// A client that connects and says nothing, or sends the 6-byte header of an
    /// A-ASSOCIATE-RQ and then nothing, must not hold the scanners back: its handshake runs on
    /// a thread of its own and is cut off 3 s after connecting (HostileNetworkTests has the
    /// many-socket cases). Before the short receive timeout, the header alone held the one
    /// accept loop for DCMTK's 60 s socket timeout.
    @Test(arguments: [[UInt8](), [0x01, 0x00, 0x00, 0x00, 0x03, 0xE8]])
    func silentClientDoesNotBlockScanners(_ says: [UInt8]) throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 30), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let silent = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(silent) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(silent, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(rc == 0)
        if !says.isEmpty { #expect(says.withUnsafeBytes { send(silent, $0.baseAddress, $0.count, 0) } == says.count) }
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 1, timepoints: 2)
        let r = try runTool("storescu", ["-ta", "12", "-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(port)] + ph.files)
        #expect(r.status == 0, "\(r.output)")
        #expect(try rowCount(dir, ph.seriesUID) == 2)
    }

    @Test func fourScannersAtOnceMakeFourCompleteJobs() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 30), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let series = try (0..<4).map { try makePhantom(in: dir.sub("ph\($0)"), size: 64, slices: 4, timepoints: 19, seed: UInt64(10 + $0)) }
        let procs: [Process] = try series.map { ph in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/storescu")
            p.arguments = ["-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(port)] + ph.files
            p.environment = ["TCP_NODELAY": "1"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }
        for p in procs { p.waitUntilExit(); #expect(p.terminationStatus == 0) }
        try waitFor(10, "four jobs") { try jobs(server).count == 4 }
        let js = try jobs(server)
        #expect(Set(js.map(\.series_uid)) == Set(series.map(\.seriesUID)))
        #expect(js.allSatisfy { $0.instances == 76 })
    }

    /// With a reserve of pre-written spool files, instances are received into those files
    /// (same inodes), cut to length, and end up byte for byte what DCMTK's own receive into
    /// a new file writes (a daemon without a reserve, same series).
    @Test func reservedSpoolFilesHoldExactlyWhatDCMTKWouldWrite() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.sub("ph"), size: 48, slices: 2, timepoints: 19)
        let fm = FileManager.default
        func inode(_ path: String) throws -> UInt64 {
            try (fm.attributesOfItem(atPath: path)[.systemFileNumber] as! NSNumber).uint64Value
        }
        var spools: [String] = []
        var dirs: [TempDir] = []   // kept until the comparison
        var blankInodes: Set<UInt64> = []
        for reserve in [0.0, 24.0] {
            let d = TempDir()
            dirs.append(d)
            let port = freePort()
            let server = try PerfdServer(configPath: writeConfig(in: d, port: port, quietSeconds: 30, spoolReserveMB: reserve),
                                         port: port, logPath: d.path + "/serve.log")
            defer { server.stop() }
            let incoming = d.path + "/state/spool/.incoming"
            func blanks() -> [String] {
                ((try? fm.contentsOfDirectory(atPath: incoming)) ?? []).filter { $0.hasPrefix("blank-") }.map { incoming + "/" + $0 }
            }
            if reserve > 0 {
                // 24 MB of 576 KiB blanks: 42, more than the 38 instances.
                try waitFor(20, "the reserve to fill") { blanks().count >= ph.files.count }
                blankInodes = Set(try blanks().map(inode))
                let status = try server.cli(["status"]).stdout
                #expect(status.contains("written ahead"), "\(status)")
                #expect(!status.contains(" 0 B written ahead"), "\(status)")
            } else {
                #expect(blanks().isEmpty)
            }
            #expect(try store(ph.files, port: port).status == 0)
            try waitFor(10, "every row") { try rowCount(d, ph.seriesUID) == ph.files.count }
            spools.append(d.path + "/state/spool/" + ph.seriesUID)
        }
        let names = try fm.contentsOfDirectory(atPath: spools[0]).sorted()
        #expect(names.count == ph.files.count)
        #expect(try fm.contentsOfDirectory(atPath: spools[1]).sorted() == names)
        for name in names {
            let plain = try Data(contentsOf: URL(fileURLWithPath: spools[0] + "/" + name))
            let reserved = try Data(contentsOf: URL(fileURLWithPath: spools[1] + "/" + name))
            #expect(plain == reserved, "\(name): \(plain.count) vs \(reserved.count) bytes")
            #expect(blankInodes.contains(try inode(spools[1] + "/" + name)), "\(name) was not received into a reserved file")
        }
    }

    @Test func seriesThatIsNotFourDFailsWithAReason() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 1), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 3, timepoints: 1)
        #expect(try store(ph.files, port: port).status == 0)
        try waitFor(15, "the job to fail") { try jobs(server).first?.state == "failed" }
        let job = try #require(try jobs(server).first)
        #expect(job.stage == "assemble")
        #expect(job.error?.contains("only one time point") == true)
        let show = try server.cli(["show", String(job.id)])
        #expect(show.stdout.contains("only one time point"))
        let status = try server.cli(["status"])
        #expect(status.stdout.contains("job \(job.id) at assemble: only one time point"), "\(status.output)")
        // retry queues it again; it fails again for the same reason.
        #expect(try server.cli(["retry", String(job.id)]).status == 0)
        try waitFor(15, "the retried job to fail") { try jobs(server).first?.state == "failed" }
        #expect(try server.cli(["cancel", String(job.id)]).stderr.contains("only queued, running or exporting jobs can be cancelled"))
    }
}
