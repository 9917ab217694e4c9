import Foundation
import Operations
import PerfdTestSupport
import Testing

/// What an admin relies on: TLS, the disk guard, the audit trail, metrics and /health,
/// retention — each against `perfd serve` as a process and DCMTK's tools as peers.
@Suite(.serialized) struct OperationsTests {

    struct AuditRow: Decodable {
        var kind: String
        var outcome: String
        var actor: String
        var host: String
        var series_uid: String?
        var job_id: Int?
        var detail: String
    }

    func audit(_ server: PerfdServer, _ extra: [String] = []) throws -> [AuditRow] {
        let r = try server.cli(["audit", "--json"] + extra)
        guard r.status == 0 else { throw TestFailure("perfd audit: \(r.output)") }
        return try JSONDecoder().decode([AuditRow].self, from: Data(r.stdout.utf8))
    }

    @Test func tlsListenerAcceptsATrustedScannerAndRefusesPlainAndUntrustedClients() throws {
        let dir = TempDir()
        let pki = try TestPKI(in: dir.sub("pki"))
        let port = freePort(), tlsPort = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: pki.listenerYAML(port: tlsPort))
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        #expect(portOpen(tlsPort))
        #expect(try server.cli(["status"]).stdout.contains("DICOM over TLS on port \(tlsPort)"))
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 3)
        let trusted = try storescu(ph.files, port: tlsPort, options: ["+tls", pki.clientKey, pki.clientCert, "+cf", pki.caCert])
        #expect(trusted.status == 0, "\(trusted.output)")
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM instances") == ph.files.count)

        let other = try makePhantom(in: dir.sub("ph2"), size: 16, slices: 1, timepoints: 2, seed: 2)
        // A plain scanner on the TLS port, a client whose certificate no trusted CA signed,
        // and an anonymous TLS client: all refused, nothing stored.
        let plain = try storescu(other.files, port: tlsPort)
        let rogue = try storescu(other.files, port: tlsPort, options: ["+tls", pki.rogueKey, pki.rogueCert, "+cf", pki.caCert])
        let anonymous = try storescu(other.files, port: tlsPort, options: ["+tla", "+cf", pki.caCert])
        for r in [plain, rogue, anonymous] { #expect(r.status != 0, "\(r.output)") }
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM instances WHERE series_uid = '\(other.seriesUID)'") == 0)
        // The plain listener still serves plain scanners.
        #expect(try storescu(other.files, port: port).status == 0)

        let rows = try audit(server)
        #expect(rows.contains { $0.kind == "association" && $0.outcome == "accepted" && $0.actor == "SCANNER" && $0.detail.contains("TLS listener") })
        let tlsRefusals = rows.filter { $0.kind == "association" && $0.outcome == "refused" && $0.detail.contains("TLS") }
        #expect(tlsRefusals.count >= 3, "\(rows)")
        #expect(server.log.contains("TLS connection failed"))
    }

    @Test func diskGuardRefusesStoresBelowTheLimitAndAcceptsAgainWhenSpaceReturns() throws {
        let dir = TempDir()
        let port = freePort(), metricsPort = freePort()
        // The limit sits 400 MB below today's free space; a filler file crosses it.
        let free = try #require(DiskSpace.freeBytes(dir.path))
        let limitGB = (free - 400e6) / 1_073_741_824
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, minFreeDiskGB: limitGB, extra: "metrics_port: \(metricsPort)")
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 1, timepoints: 3)
        #expect(try storescu([ph.files[0]], port: port).status == 0)
        #expect(try httpGet(port: metricsPort, "/health").status == 200)

        // Sized from the free space now, not at the start: other processes on a shared
        // machine free and take space meanwhile. The filler leaves 500 MB under the limit.
        let freeNow = try #require(DiskSpace.freeBytes(dir.path))
        let fill = max(100e6, freeNow - limitGB * 1_073_741_824 + 500e6)
        let filler = dir.path + "/filler"
        let f = try runTool("fallocate", ["-l", String(Int64(fill)), filler])
        #expect(f.status == 0, "\(f.output)")
        let refused = try storescu([ph.files[1]], port: port, options: ["-v"])
        #expect(refused.output.contains("Refused: OutOfResources"), "\(refused.output)")
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM instances") == 1)
        #expect(server.log.contains("below min_free_disk_gb"))
        let health = try httpGet(port: metricsPort, "/health")
        #expect(health.status == 503, "\(health.body)")
        #expect(health.body.contains("below min_free_disk_gb"))
        #expect(try httpGet(port: metricsPort, "/metrics").body.contains("perfd_stores_rejected_total{status=\"0xA700\"} 1"))

        try FileManager.default.removeItem(atPath: filler)
        #expect(try storescu([ph.files[1], ph.files[2]], port: port).status == 0)
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM instances") == 3)
        #expect(try httpGet(port: metricsPort, "/health").status == 200)
    }

    @Test func auditTrailRecordsRefusedAndAcceptedAssociationsStoredSeriesAndAdminActions() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 30), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 3)
        #expect(try storescu(ph.files, port: port, aet: "INTRUDER").status != 0)
        #expect(try storescu(ph.files, port: port).status == 0)
        try waitFor(20, "the job to finish") { try server.jobs().first?.state == "done" }
        let job = try #require(try server.jobs().first)
        #expect(try server.cli(["retry", String(job.id)]).status == 0)

        let rows = try audit(server)
        let refused = try #require(rows.first { $0.kind == "association" && $0.outcome == "refused" })
        #expect(refused.actor == "INTRUDER")
        #expect(refused.host == "127.0.0.1")
        #expect(refused.detail.contains("not in allowed_peers"))
        #expect(rows.contains { $0.kind == "association" && $0.outcome == "accepted" && $0.actor == "SCANNER" && $0.host == "127.0.0.1" })
        let stored = try #require(rows.first { $0.kind == "series" })
        #expect(stored.outcome == "stored" && stored.series_uid == ph.seriesUID && stored.actor == "SCANNER")
        #expect(stored.detail.contains("\(ph.files.count) instances"))
        let retry = try #require(rows.first { $0.kind == "admin" && $0.outcome == "retry" })
        #expect(retry.job_id == job.id && !retry.actor.isEmpty)
        // --since filters by time; the table view names the refusal.
        #expect(try audit(server, ["--since", "2999-01-01"]).isEmpty)
        #expect(try server.cli(["audit", "--since", "2000-01-01"]).stdout.contains("INTRUDER"))
    }

    @Test func metricsEndpointCountsWhatTheTestSent() throws {
        let dir = TempDir()
        let port = freePort(), metricsPort = freePort(), deadPort = freePort()
        // A destination nobody answers: the export is retried (and counted).
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: """
            metrics_port: \(metricsPort)
            destinations:
              - ae_title: PACS
                host: 127.0.0.1
                port: \(deadPort)
            export_retry:
              initial_seconds: 0.2
              max_seconds: 0.5
            """)
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 3)
        #expect(try storescu(ph.files, port: port, aet: "INTRUDER").status != 0)
        #expect(try storescu(ph.files, port: port, aet: "STRANGER").status != 0)
        #expect(try storescu(ph.files, port: port).status == 0)
        try waitFor(30, "the job to reach export") { try server.jobs().first?.state == "exporting" }
        func metric(_ text: String, _ name: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        var text = ""
        try waitFor(10, "an export retry") {
            text = try httpGet(port: metricsPort, "/metrics").body
            return (metric(text, "perfd_export_retries_total") ?? 0) >= 1
        }
        #expect(metric(text, "perfd_instances_received_total") == Double(ph.files.count), "\(text)")
        // Bytes as kept in the spool (the received dataset with the meta header DCMTK writes).
        let spool = dir.path + "/state/spool/" + ph.seriesUID
        let bytes = try FileManager.default.contentsOfDirectory(atPath: spool).reduce(0) {
            $0 + ((try FileManager.default.attributesOfItem(atPath: spool + "/" + $1)[.size] as? Int) ?? 0)
        }
        #expect(metric(text, "perfd_received_bytes_total") == Double(bytes))
        #expect(metric(text, "perfd_associations_refused_total") == 2)
        #expect(metric(text, "perfd_associations_total{outcome=\"accepted\"}") == 1)
        #expect(metric(text, "perfd_jobs{state=\"exporting\"}") == 1)
        #expect(metric(text, "perfd_jobs{state=\"queued\"}") == 0)
        #expect(metric(text, "perfd_queue_oldest_age_seconds") == 0)
        #expect((metric(text, "perfd_outbox_files{state=\"pending\"}") ?? 0) >= 1)
        for stage in ["assemble", "register", "pipeline", "render"] {
            #expect(metric(text, "perfd_stage_duration_seconds_count{stage=\"\(stage)\"}") == 1, "\(stage)")
            #expect((metric(text, "perfd_stage_duration_seconds_sum{stage=\"\(stage)\"}") ?? -1) >= 0)
        }
        #expect((metric(text, "perfd_spool_free_bytes") ?? 0) > 0)
        #expect(text.contains("# TYPE perfd_instances_received_total counter"))
        let health = try httpGet(port: metricsPort, "/health")
        #expect(health.status == 200 && health.body.contains("listener: ok"), "\(health.body)")
        #expect(try server.cli(["status"]).stdout.contains("metrics http://127.0.0.1:\(metricsPort)/metrics"))
        #expect(try httpGet(port: metricsPort, "/nothing").status == 404)
    }

    @Test func purgeDeletesFinishedSeriesAfterTheWindowAndAuditsIt() throws {
        let dir = TempDir()
        let port = freePort()
        // A retention window of about one second.
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: "retention_days: 0.00001")
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 3)
        #expect(try storescu(ph.files, port: port).status == 0)
        try waitFor(20, "the job to finish") { try server.jobs().first?.state == "done" }
        let spool = dir.path + "/state/spool/" + ph.seriesUID
        let spooled = try FileManager.default.contentsOfDirectory(atPath: spool)
        #expect(spooled.count == ph.files.count)
        // Patient data is perfd's alone: no group or other bits on the database, the spool
        // directories and files.
        for path in [dir.path + "/state/perfd.sqlite", dir.path + "/state/spool", spool, spool + "/" + spooled[0]] {
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
            #expect(mode & 0o077 == 0, "\(path) has mode \(String(mode, radix: 8))")
        }
        Thread.sleep(forTimeInterval: 1.5)
        let dry = try server.cli(["purge", "--dry-run"])
        #expect(dry.status == 0 && dry.stdout.contains("would delete series \(ph.seriesUID): \(ph.files.count) files"), "\(dry.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool).count == ph.files.count)
        let real = try server.cli(["purge"])
        #expect(real.status == 0 && real.stdout.contains("deleted series \(ph.seriesUID)"), "\(real.output)")
        #expect(!FileManager.default.fileExists(atPath: spool))
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM instances") == 0)
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM series WHERE patient_name = '' AND purged_at IS NOT NULL") == 1)
        #expect(try server.jobs().first?.state == "done")
        #expect(try audit(server).contains { $0.kind == "admin" && $0.outcome == "purge" && $0.series_uid == ph.seriesUID })
        #expect(try server.cli(["purge", "--dry-run"]).stdout.contains("nothing to purge"))
    }
}
