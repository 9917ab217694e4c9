import Config
import DICOM
import Foundation
import PerfdTestSupport
import Phantom
import Testing

/// Issue 19, a hospital's first day: a staged install that runs the perfusion pipeline with
/// the models it installed, check-config refusing exactly what serve refuses, logs journald
/// and log shippers can read, /metrics and /health under idle and slow clients, promtool on
/// the real scrape and the shipped rules, and the small admin commands.
@Suite(.serialized) struct DayOneTests {
    static let install = Paths.root + "/deploy/install.sh"

    /// `perfd serve` that must refuse to start: its exit status and output (killed after 20 s
    /// if it does start, so a config serve accepts fails the test instead of hanging it).
    func serveRefusal(_ binary: String, _ config: String, directory: String? = nil) throws -> ToolResult {
        var args = ["20", binary, "serve", "--config", config]
        if let directory { args = ["-C", directory, "timeout"] + args; return try runTool("env", args) }
        return try runTool("timeout", args)
    }

    // MARK: High — models installed, found without PERFD_MODELS

    /// The demo's pipeline (`default_pipeline: perfusion`, the shipped perfusion-clstm) from a
    /// staged install, no PERFD_MODELS, working directory outside the checkout: the job is
    /// done and the PACS (Orthanc) holds its series. Before the fix install.sh copied no model
    /// and every job failed at assemble.
    @Test func stagedInstallRunsThePerfusionPipelineWithoutPERFD_MODELS() throws {
        let dir = TempDir("perfd-dayone")
        let root = dir.path + "/root"
        let staged = try runTool("/bin/bash", [Self.install, "--destdir", root, "--binary", Paths.perfd])
        #expect(staged.status == 0, "\(staged.output)")
        let bin = root + "/usr/local/bin/perfd"
        for m in ["perfusion-clstm", "ncct-clstm"] {
            #expect(FileManager.default.fileExists(atPath: root + "/usr/local/share/perfd/models/\(m)/model.json"), "\(m) not installed")
            #expect(FileManager.default.contentsEqual(atPath: root + "/usr/local/share/perfd/models/\(m)/weights.safetensors",
                                                      andPath: Paths.root + "/models/\(m)/weights.safetensors"))
        }
        // Man page and completion scripts come with it.
        #expect(FileManager.default.fileExists(atPath: root + "/usr/local/share/man/man1/perfd.1"))
        let bashCompletion = root + "/usr/local/share/bash-completion/completions/perfd"
        #expect((try? String(contentsOfFile: bashCompletion, encoding: .utf8))?.contains("check-config") == true)
        #expect(try runTool("bash", ["-n", bashCompletion]).status == 0)
        #expect((try? String(contentsOfFile: root + "/usr/local/share/zsh/site-functions/_perfd", encoding: .utf8))?.contains("#compdef perfd") == true)

        let pacs = OrthancServer(dir: dir.sub("orthanc"))
        try pacs.start()
        defer { pacs.stop() }
        let port = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 1, extra: """
        default_pipeline: perfusion
        destinations:
          - ae_title: PACS
            host: 127.0.0.1
            port: \(pacs.dicomPort)
        """)
        let check = try runTool("env", ["-u", "PERFD_MODELS", "-C", dir.path, bin, "check-config", "--config", config])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.stdout.contains("model for perfusion: \(root)/usr/local/bin/../share/perfd/models/perfusion-clstm")
                || check.stdout.contains("model for perfusion: \(root)/usr/local/share/perfd/models/perfusion-clstm"), "\(check.output)")
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log",
                                     executable: bin, unset: ["PERFD_MODELS"], directory: dir.path)
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 64, slices: 4, timepoints: 19)
        try push(ph.files, port: port)
        try waitFor(120, "the perfusion job to finish") { try ["done", "failed"].contains(server.jobs().first?.state ?? "") }
        let job = try #require(try server.jobs().first)
        #expect(job.state == "done", "job: \(job.state) \(job.error ?? "") — \(server.log)")
        #expect(job.pipeline == "perfusion")
        let series = try pacs.series()
        #expect(series.count >= 2, "maps and the summary page in the PACS: \(series)")
        #expect(!series.contains { $0.description.lowercased().contains("fail") }, "\(series)")
    }

    /// Without an installed model check-config says so (it said OK before) and serve refuses
    /// to start with the same words, instead of failing every job.
    @Test func checkConfigAndServeRefuseAPipelineWhoseModelIsMissing() throws {
        let dir = TempDir("perfd-dayone")
        // A copy of the binary outside the checkout: no models beside it or below the cwd.
        let bin = dir.sub("bin") + "/perfd"
        try FileManager.default.copyItem(atPath: Paths.perfd, toPath: bin)
        let config = writeConfig(in: dir, port: freePort(), extra: "default_pipeline: perfusion")
        let check = try runTool("env", ["-u", "PERFD_MODELS", "-C", dir.path, bin, "check-config", "--config", config])
        #expect(check.status != 0, "check-config passed a pipeline without its model: \(check.output)")
        #expect(check.stderr.contains("default_pipeline") && check.stderr.contains("perfusion-clstm"), "\(check.output)")
        let serve = try runTool("env", ["-u", "PERFD_MODELS", "-C", dir.path, "timeout", "20", bin, "serve", "--config", config])
        #expect(serve.status != 0 && serve.status != 124, "serve must refuse at start: \(serve.output)")
        #expect(serve.output.contains("perfusion-clstm"), "\(serve.output)")
    }

    // MARK: Medium — one validation for check-config and serve

    struct BadConfig: CustomStringConvertible, Sendable {
        var name: String
        /// Extra YAML (port is `PORT`, a free port, substituted).
        var yaml: String
        var port: String = "PORT"
        /// Words the refusal must contain, from check-config and from serve alike.
        var says: String
        var description: String { name }
    }

    static let badConfigs: [BadConfig] = [
        BadConfig(name: "metrics_port equal to port", yaml: "metrics_port: PORT", says: "metrics_port"),
        BadConfig(name: "metrics_address not an address", yaml: "metrics_port: MPORT\nmetrics_address: 999.1.1.1", says: "metrics_address"),
        BadConfig(name: "TLS files that are not PEM", yaml: """
            tls:
              port: MPORT
              certificate: DIR/cert.pem
              private_key: DIR/key.pem
              require_peer_certificate: false
            """, says: "PEM"),
        BadConfig(name: "port 0", yaml: "", port: "0", says: "port is 0"),
        BadConfig(name: "a port below 1024", yaml: "", port: "104", says: "below"),
        BadConfig(name: "a model directory that does not exist", yaml: """
            pipelines:
              - pipeline: perfusion
                model: DIR/no-such-model
            """, says: "no-such-model"),
        BadConfig(name: "an unresolvable destination", yaml: """
            destinations:
              - ae_title: PACS
                host: no-such-pacs.invalid
                port: 11112
            """, says: "no-such-pacs.invalid"),
    ]

    @Test(arguments: badConfigs) func checkConfigRefusesWhatServeRefuses(_ bad: BadConfig) throws {
        let dir = TempDir("perfd-dayone")
        try "this is not a certificate\n".write(toFile: dir.path + "/cert.pem", atomically: true, encoding: .utf8)
        try "this is not a key\n".write(toFile: dir.path + "/key.pem", atomically: true, encoding: .utf8)
        let port = freePort()
        let yaml = bad.yaml.replacingOccurrences(of: "MPORT", with: String(freePort()))
            .replacingOccurrences(of: "PORT", with: String(port)).replacingOccurrences(of: "DIR", with: dir.path)
        var config = writeConfig(in: dir, port: port, extra: yaml)
        if bad.port != "PORT" {
            let text = try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "port: \(port)\n", with: "port: \(bad.port)\n")
            config = dir.path + "/bad.yaml"
            try text.write(toFile: config, atomically: true, encoding: .utf8)
        }
        let check = try runTool(Paths.perfd, ["check-config", "--config", config])
        #expect(check.status != 0, "\(bad.name): check-config passed it: \(check.output)")
        #expect(check.stderr.contains(bad.says), "\(bad.name): \(check.output)")
        let serve = try serveRefusal(Paths.perfd, config)
        #expect(serve.status != 0 && serve.status != 124, "\(bad.name): serve must refuse at start: \(serve.output)")
        #expect(serve.output.contains(bad.says), "\(bad.name): \(serve.output)")
    }

    /// A staged install's config whose spool is outside the unit's ReadWritePaths: refused by
    /// both (the unit runs with ProtectSystem=strict, so serve could not write there).
    @Test func spoolOutsideTheUnitsWritablePathsIsRefused() throws {
        let dir = TempDir("perfd-dayone")
        let root = dir.path + "/root"
        let staged = try runTool("/bin/bash", [Self.install, "--destdir", root, "--binary", Paths.perfd])
        #expect(staged.status == 0, "\(staged.output)")
        let config = root + "/etc/perfd/perfd.yaml"
        let sample = try String(contentsOfFile: config, encoding: .utf8)
        // The sample's PACS name resolves nowhere here: point it at this machine.
        let fixed = sample.replacingOccurrences(of: "pacs.example.org", with: "127.0.0.1")
        try fixed.write(toFile: config, atomically: true, encoding: .utf8)
        let ok = try runTool(root + "/usr/local/bin/perfd", ["check-config", "--config", config])
        #expect(ok.status == 0, "\(ok.output)")
        #expect(ok.stdout.contains("unit: \(root)/etc/systemd/system/perfd.service"), "\(ok.output)")
        try fixed.replacingOccurrences(of: "spool_dir: /var/lib/perfd/spool", with: "spool_dir: /srv/perfd-spool")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let bad = try runTool(root + "/usr/local/bin/perfd", ["check-config", "--config", config])
        #expect(bad.status != 0, "\(bad.output)")
        #expect(bad.stderr.contains("spool_dir /srv/perfd-spool is outside the unit's writable paths"), "\(bad.output)")
        // And the unchanged sample names its unresolvable PACS.
        try sample.write(toFile: config, atomically: true, encoding: .utf8)
        let unedited = try runTool(root + "/usr/local/bin/perfd", ["check-config", "--config", config])
        #expect(unedited.status != 0 && unedited.stderr.contains("pacs.example.org"), "\(unedited.output)")
    }

    // MARK: Medium — logs

    /// Under journald (JOURNAL_STREAM naming stderr) every line starts with its priority;
    /// with log_format json every line is a JSON object; the patient's name and ID appear in
    /// neither at info level.
    @Test func logsCarryJournalPrioritiesOrJSONAndNoPatientIdentity() throws {
        for format in ["text", "json"] {
            let dir = TempDir("perfd-dayone")
            let port = freePort()
            let config = writeConfig(in: dir, port: port, quietSeconds: 1, extra: "log_format: \(format)")
            let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log", journal: true)
            let ph = try makePhantom(in: dir.sub("ph"), size: 32, slices: 2, timepoints: 5)
            try push(ph.files, port: port)
            // An unknown caller: a refusal, logged as a warning.
            _ = try runTool("echoscu", ["-aet", "INTRUDER", "-aec", "PERFD", "127.0.0.1", String(port)])
            try waitFor(30, "the job to finish") { try server.jobs().first?.state == "done" }
            server.stop()
            let lines = server.log.split(separator: "\n").map(String.init)
            #expect(lines.count >= 3, "\(server.log)")
            for line in lines {
                #expect(line.range(of: #"^<[0-7]>"#, options: .regularExpression) != nil, "\(format): no journald priority: \(line)")
                if format == "json" {
                    let body = line.drop { $0 != "{" }
                    let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
                    #expect(object?["message"] is String && object?["level"] is String, "not a JSON log line: \(line)")
                }
            }
            #expect(lines.contains { $0.hasPrefix("<6>") }, "no info line: \(server.log)")
            #expect(lines.contains { $0.hasPrefix("<4>") || $0.hasPrefix("<5>") }, "the refused association is not a warning or notice: \(server.log)")
            #expect(!server.log.contains("Phantom^CTP") && !server.log.contains("PHANTOM-001"), "patient identity in the log: \(server.log)")
        }
    }

    // MARK: Medium — /health and /metrics under idle and slow clients

    func rawRequest(port: Int, _ text: String) -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        guard connectLoopback(fd, port) else { return "" }
        _ = text.withCString { send(fd, $0, strlen($0), 0) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    func connectLoopback(_ fd: Int32, _ port: Int) -> Bool {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }

    @Test func healthAnswersWhileIdleAndTricklingClientsHoldConnections() throws {
        let dir = TempDir("perfd-dayone")
        let port = freePort(), metricsPort = freePort()
        let config = writeConfig(in: dir, port: port, extra: "metrics_port: \(metricsPort)")
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        try waitFor(10, "metrics to listen") { portOpen(metricsPort) }

        // HEAD: the status and headers, no body.
        let head = rawRequest(port: metricsPort, "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(head.hasPrefix("HTTP/1.1 200"), "\(head)")
        let parts = head.components(separatedBy: "\r\n\r\n")
        #expect(parts.count == 2 && parts[1].isEmpty, "HEAD returned a body: \(head)")
        #expect(head.contains("Content-Length: "), "\(head)")

        // 40 connections that send nothing and 4 that trickle a byte every 0.3 s.
        var idle: [Int32] = []
        defer { idle.forEach { close($0) } }
        for _ in 0..<40 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if connectLoopback(fd, metricsPort) { idle.append(fd) } else { close(fd) }
        }
        final class Trickle: @unchecked Sendable {
            // @unchecked Sendable: `cutOff` is written by the one thread, read after join.
            var cutOff = false
            var sent = 0
        }
        let trickles = (0..<4).map { _ in Trickle() }
        let group = DispatchGroup()
        for t in trickles {
            DispatchQueue.global().async(group: group) {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                guard self.connectLoopback(fd, metricsPort) else { return }
                // 40 bytes at 0.3 s: 12 s if the server let it.
                for byte in Array("GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaa".utf8) {
                    var b = byte
                    if send(fd, &b, 1, Int32(MSG_NOSIGNAL)) != 1 { t.cutOff = true; return }
                    t.sent += 1
                    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    if poll(&p, 1, 300) > 0 { t.cutOff = true; return }  // an answer or a close: the server ended it
                }
            }
        }
        usleep(300_000)
        // /health answers while all of those are open (before: 503 "too many requests in
        // progress" until the idle ones timed out, and for as long as a trickle went on).
        for _ in 0..<5 {
            let h = try httpGet(port: metricsPort, "/health")
            #expect(h.status == 200, "\(h)")
            let m = try httpGet(port: metricsPort, "/metrics")
            #expect(m.status == 200 && m.body.contains("perfd_build_info"))
        }
        group.wait()
        for t in trickles {
            #expect(t.cutOff, "a client sending a byte every 0.3 s was never cut off (\(t.sent) bytes sent)")
        }
    }

    // MARK: metrics, promtool, dashboards

    @Test func metricsPassPromtoolAndTheRulesAndDashboardUseRealSeries() throws {
        let dir = TempDir("perfd-dayone")
        let port = freePort(), metricsPort = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 1, extra: "metrics_port: \(metricsPort)")
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 32, slices: 2, timepoints: 5)
        try push(ph.files, port: port)
        try waitFor(30, "the job to finish") { try server.jobs().first?.state == "done" }
        let text = try httpGet(port: metricsPort, "/metrics").body
        try text.write(toFile: dir.path + "/metrics.txt", atomically: true, encoding: .utf8)

        // Histograms with buckets, for every stage and end to end; the build.
        #expect(text.contains("# TYPE perfd_stage_duration_seconds histogram"))
        #expect(text.contains("perfd_stage_duration_seconds_bucket{stage=\"assemble\",le=\"+Inf\"} 1"), "\(text)")
        #expect(text.contains("# TYPE perfd_time_to_result_seconds histogram"))
        #expect(text.contains("perfd_time_to_result_seconds_count 1"), "\(text)")
        let version = try runTool(Paths.perfd, ["--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(version.hasPrefix("perfd "), "\(version)")
        #expect(text.contains("perfd_build_info{swift=\"") && text.contains("version=\"\(version.dropFirst("perfd ".count))\"} 1"), "\(text)")

        let metrics = try runTool("/bin/sh", ["-c", "promtool check metrics < \"$0\"", dir.path + "/metrics.txt"])
        #expect(metrics.status == 0 && metrics.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty,
                "promtool check metrics: \(metrics.output)")
        let rules = try runTool("promtool", ["check", "rules", Paths.root + "/deploy/prometheus/perfd-alerts.yml"])
        #expect(rules.status == 0, "\(rules.output)")
        let ruleTests = try runTool("promtool", ["test", "rules", Paths.root + "/deploy/prometheus/perfd-alerts.test.yml"])
        #expect(ruleTests.status == 0, "\(ruleTests.output)")

        // Every perfd series the rules and the dashboard name is one the daemon exports.
        let exported = Set(text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            String(line.prefix { $0 != "{" && $0 != " " })
        })
        let rulesText = try String(contentsOfFile: Paths.root + "/deploy/prometheus/perfd-alerts.yml", encoding: .utf8)
        let dashboard = try String(contentsOfFile: Paths.root + "/deploy/grafana/perfd.json", encoding: .utf8)
        #expect((try? JSONSerialization.jsonObject(with: Data(dashboard.utf8))) != nil, "perfd.json is not JSON")
        let names = try NSRegularExpression(pattern: "perfd_[a-z_]+")
        for (file, body) in [("perfd-alerts.yml", rulesText), ("perfd.json", dashboard)] {
            let used = Set(names.matches(in: body, range: NSRange(body.startIndex..., in: body)).map { String(body[Range($0.range, in: body)!]) })
            for name in used where !["perfd_alerts"].contains(name) {
                #expect(exported.contains(name), "\(file) uses \(name), which /metrics does not export")
            }
        }
        for panel in ["Queue depth", "Time to result", "Failures", "Disk", "Exports"] {
            #expect(dashboard.contains("\"title\": \"\(panel)"), "the dashboard has no \(panel) panel")
        }
    }

    // MARK: --version, man page

    @Test func versionManPageAndCompletionCoverEveryCommand() throws {
        let v = try runTool(Paths.perfd, ["--version"])
        #expect(v.status == 0 && v.stdout.hasPrefix("perfd \(PerfdVersion.string)"), "\(v.output)")
        let man = try String(contentsOfFile: Paths.root + "/deploy/perfd.1", encoding: .utf8)
        #expect(man.contains("perfd \(PerfdVersion.string)"), "perfd.1's header names another version")
        let help = try runTool(Paths.perfd, ["--help"]).stdout
        // Subcommand lines are indented two spaces; their wrapped descriptions more.
        let subcommands = help.components(separatedBy: "SUBCOMMANDS:").last!.split(separator: "\n")
            .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") && !$0.contains("perfd help") }
            .compactMap { $0.trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) }
        #expect(subcommands.count >= 10, "\(help)")
        for name in subcommands {
            #expect(man.contains(".B \(name.replacingOccurrences(of: "-", with: "\\-"))"), "perfd.1 does not describe \(name)")
        }
        let lint = try runTool("groff", ["-man", "-ww", "-z", Paths.root + "/deploy/perfd.1"])
        #expect(lint.status == 0 && lint.stderr.isEmpty, "groff: \(lint.output)")
    }

    // MARK: Low — admin commands

    @Test func adminCommandsReportStatusFilterJobsAndSpeakJSON() throws {
        let dir = TempDir("perfd-dayone")
        let port = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 1)
        // status against a database that does not exist: not created, exit 3 (not running).
        let missing = try runTool(Paths.perfd, ["status", "--config", config])
        #expect(missing.status == 3, "\(missing.output)")
        #expect(missing.stdout.contains("no database"), "\(missing.output)")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/state/perfd.sqlite"), "status created the database")

        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        let a = try makePhantom(in: dir.sub("a"), size: 32, slices: 2, timepoints: 5, seed: 1)
        try push(a.files, port: port)
        try waitFor(30, "the first job") { try server.jobs().first?.state == "done" }
        let b = try makePhantom(in: dir.sub("b"), size: 32, slices: 2, timepoints: 5, seed: 2)
        try push(b.files, port: port)
        try waitFor(30, "the second job") { try server.jobs().count == 2 && server.jobs().allSatisfy { $0.state == "done" } }
        #expect(try server.cli(["status"]).status == 0)

        // jobs: --limit says what it left out; patient, accession and since filter.
        let one = try server.cli(["jobs", "--limit", "1"])
        #expect(one.status == 0 && one.stdout.contains("1 more matching job not shown"), "\(one.output)")
        let oneJSON = try server.cli(["jobs", "--limit", "1", "--json"])
        #expect(oneJSON.stderr.contains("1 of 2"), "\(oneJSON.output)")
        let all = try JSONSerialization.jsonObject(with: Data(try server.cli(["jobs", "--json"]).stdout.utf8)) as? [[String: Any]] ?? []
        #expect(all.count == 2)
        // Times are ISO strings here as in status.
        #expect((all.first?["created_at"] as? String)?.hasSuffix("Z") == true, "\(all)")
        #expect(try server.cli(["jobs", "--patient", "PHANTOM-001", "--json"]).stdout.contains(a.seriesUID))
        #expect(!(try server.cli(["jobs", "--patient", "SOMEONE-ELSE", "--json"]).stdout.contains(a.seriesUID)))
        #expect(try server.cli(["jobs", "--accession", "PHANTOM1", "--json"]).stdout.contains(b.seriesUID))
        #expect(!(try server.cli(["jobs", "--since", "2999-01-01", "--json"]).stdout.contains(a.seriesUID)))

        // --json on retry, cancel and check-config.
        let id = try #require(all.last?["id"] as? Int)
        let retry = try server.cli(["retry", String(id), "--json"])
        #expect((try? JSONSerialization.jsonObject(with: Data(retry.stdout.utf8)) as? [String: Any])?["rerun"] as? Int == 1, "\(retry.output)")
        let cancel = try server.cli(["cancel", String(id), "--json"])
        let cancelled = try? JSONSerialization.jsonObject(with: Data(cancel.stdout.utf8)) as? [String: Any]
        #expect(cancel.status != 0 || cancelled?["state"] as? String == "cancelled", "\(cancel.output)")
        let check = try runTool(Paths.perfd, ["check-config", "--json", "--config", config])
        #expect((try? JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])?["ok"] as? Bool == true, "\(check.output)")

        // Audit rows in time order; times ISO.
        let audit = try JSONSerialization.jsonObject(with: Data(try server.cli(["audit", "--json"]).stdout.utf8)) as? [[String: Any]] ?? []
        let times = audit.compactMap { $0["at"] as? String }
        #expect(times.count == audit.count && !times.isEmpty)
        #expect(times == times.sorted(), "audit rows out of time order")
        // A cut list says so, and the time it prints (ISO with its zone) is taken by --since.
        if audit.count >= 2 {
            let cut = try server.cli(["audit", "--json", "--limit", "1"])
            #expect((try? JSONSerialization.jsonObject(with: Data(cut.stdout.utf8)) as? [Any])?.count == 1, "\(cut.output)")
            #expect(cut.stderr.contains("more follow"), "\(cut.output)")
            let since = try server.cli(["audit", "--json", "--since", times[0]])
            let later = (try? JSONSerialization.jsonObject(with: Data(since.stdout.utf8)) as? [Any])?.count ?? -1
            #expect(since.status == 0 && later >= 1 && later <= audit.count, "\(since.output)")
        }

        // status exits 3 once the daemon is down.
        server.stop()
        let down = try runTool(Paths.perfd, ["status", "--config", config])
        #expect(down.status == 3, "\(down.output)")
    }

    /// `perfd run` reports in-stage progress (not only one line per stage) and --json.
    @Test func runShowsInStageProgressAndSpeaksJSON() throws {
        let dir = TempDir("perfd-dayone")
        let ph = try makePhantom(in: dir.sub("ph"), size: 64, slices: 4, timepoints: 19)
        let r = try runTool(Paths.perfd, ["run", dir.path + "/ph", "--output", dir.path + "/out", "--pipeline", "perfusion-svd", "--json"])
        #expect(r.status == 0, "\(r.output)")
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect((summary?["outputs"] as? [Any])?.isEmpty == false, "\(r.stdout)")
        #expect(r.stderr.contains("% ") || r.stderr.contains("%\n"), "no in-stage progress: \(r.stderr)")
        let percentLines = r.stderr.split(separator: "\n").filter { $0.hasSuffix("%") && !$0.hasSuffix(" 0%") }
        #expect(!percentLines.isEmpty, "only stage lines, no progress within a stage: \(r.stderr)")
        _ = ph
    }
}
