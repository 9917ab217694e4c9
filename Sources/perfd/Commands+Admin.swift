import ArgumentParser
import Config
import DICOM
import Foundation
import JobStore
import Logging
import Operations
import Inference
import Pipelines
import Store

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One screen: listener, series being received, jobs per state, running jobs, failures, spool disk use.",
        discussion: "Exit status 0 when the daemon is running, 3 when it is not (no heartbeat in the database within 15 s, or its pid is gone), 1 on an error. A missing database is reported, not created.")
    @OptionGroup var options: ConfigOption
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let config = try options.load()
        guard FileManager.default.fileExists(atPath: config.database) else {
            // Opening it would create an empty database (owned by whoever ran status).
            if json {
                struct Missing: Encodable { var running = false; var database: String; var problem: String }
                try printJSON(Missing(database: config.database, problem: "no database: perfd has not run with this config"))
            } else {
                print("daemon     not running: no database at \(config.database) (perfd serve has never run with \(options.config), or `database` points elsewhere)")
            }
            throw ExitCode(3)
        }
        let (_, store) = try options.store()
        let report = try StatusReport.gather(store: store, config: config)
        if json { try printJSON(report) } else { print(report.text()) }
        if !report.listener.running { throw ExitCode(3) }
    }
}

struct Jobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List jobs, newest first.",
        discussion: "Shows --limit jobs (50 by default, 0 for all) and says how many more match; with --json the list is the jobs shown and stderr says when it was cut.")
    @OptionGroup var options: ConfigOption
    @Option(help: "Only jobs in this state (\(JobState.allCases.map(\.rawValue).joined(separator: ", "))).") var state: String?
    @Option(help: "Only jobs queued at or after this time: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC), or seconds since 1970.") var since: String?
    @Option(help: "Only jobs of this Patient ID (exact).") var patient: String?
    @Option(help: "Only jobs of this Accession Number (exact).") var accession: String?
    @Option(help: "At most this many jobs (0: all).") var limit = 50
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        guard limit >= 0 else { throw CLIError("--limit must be 0 (all) or more") }
        var filter = JobStore.JobFilter(patientID: patient, accession: accession)
        if let state {
            guard let s = JobState(rawValue: state) else {
                throw CLIError("unknown state \"\(state)\"; use one of \(JobState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter.state = s
        }
        filter.since = try since.map(Audit.parseTime)
        let (_, store) = try options.store()
        let (jobs, total) = try store.jobs(filter, limit: limit == 0 ? nil : limit)
        let more = total - jobs.count
        if json {
            try printJSON(jobs)
            if more > 0 { FileHandle.standardError.write(Data("perfd jobs: \(jobs.count) of \(total) matching jobs shown; --limit 0 for all\n".utf8)) }
            return
        }
        defer { if more > 0 { print("… \(more) more matching job\(more == 1 ? "" : "s") not shown (\(total) in all); --limit \(total) or --limit 0 shows them") } }
        if jobs.isEmpty { print("no jobs"); return }
        print("ID".padding(6) + "STATE".padding(11) + "STAGE".padding(10) + "PIPELINE".padding(18) + "INST".padding(6) + "SERIES")
        for j in jobs {
            // UIDs and errors quote what peers sent.
            print(PeerText.escaped("\(j.id)".padding(6) + j.state.rawValue.padding(11) + (j.stage ?? "-").padding(10) + j.pipeline.padding(18)
                  + "\(j.instances)".padding(6) + j.seriesUID + (j.error.map { "  error: \($0)" } ?? "")
                  + (j.qc.flatMap { $0 == "ok" ? nil : "  QC \($0)" } ?? "")))
        }
    }
}

struct JobDetail: Encodable {
    var job: JobRecord
    var stages: [StageRecord]
    var events: [JobEvent]
    var outbox: [OutboxRow]
    var report: String?
}

struct OutboxRow: Encodable {
    var destination: String
    var series_uid: String
    var state: String
    var attempts: Int
    var last_error: String?
}

/// The `qc` of a stored report.json.
struct QCOnly: Decodable { var qc: QCReport? }

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One job: stages, timings, events, errors, outputs.")
    @OptionGroup var options: ConfigOption
    @Argument(help: "Job id (see `perfd jobs`).") var job: Int
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let (_, store) = try options.store()
        guard let j = try store.job(job) else { throw CLIError("no job \(job); `perfd jobs` lists them") }
        let outbox = try store.outbox(job: job).map {
            OutboxRow(destination: $0.destination, series_uid: $0.seriesUID, state: $0.state.rawValue, attempts: $0.attempts, last_error: $0.lastError)
        }
        let detail = JobDetail(job: j, stages: try store.stages(job: job), events: try store.events(job: job), outbox: outbox,
                               report: try store.report(job: job))
        if json { try printJSON(detail); return }
        print("job \(j.id): \(j.state.rawValue)\(j.stage.map { " at \($0)" } ?? "")  pipeline \(j.pipeline)  re-run \(j.rerun)")
        print(PeerText.escaped("series \(j.seriesUID) (study \(j.studyUID)), \(j.instances) instances"))
        if let e = j.error { print("error: \(PeerText.escaped(e))") }
        if let qc = j.qc {
            print("registration QC: \(qc.contains("motion") ? "motion" : "ok")")
            print("QC: \(qc)")
        }
        if let text = detail.report, let data = text.data(using: .utf8),
           let r = try? JSONDecoder().decode(QCOnly.self, from: data), let qc = r.qc {
            if let f = qc.fallback { print("fallback: \(f)") }
            for c in qc.checks {
                print("  \(c.name.padding(16)) \(c.outcome.rawValue.padding(8)) \(c.reason)")
            }
        }
        if !detail.stages.isEmpty {
            print("stages:")
            for s in detail.stages {
                let dur = s.finishedAt.map { String(format: "%.2f s", $0 - s.startedAt) } ?? "unfinished"
                print("  \(s.stage.padding(10)) \(dur)\(s.result.map { "  \($0)" } ?? "")")
            }
        }
        if !outbox.isEmpty {
            print("outputs:")
            var groups: [String: [OutboxRow]] = [:]
            for o in outbox { groups["\(o.series_uid) → \(o.destination)", default: []].append(o) }
            for (k, rows) in groups.sorted(by: { $0.key < $1.key }) {
                let sent = rows.filter { $0.state == "sent" }.count
                print("  \(k): \(sent)/\(rows.count) sent\(rows.compactMap(\.last_error).last.map { "  (last error: \($0))" } ?? "")")
            }
        }
        print("events:")
        let f = ISO8601DateFormatter()
        for e in detail.events { print("  \(f.string(from: Date(timeIntervalSince1970: e.at)))  \(e.level.padding(8)) \(PeerText.escaped(e.message))") }
    }
}

struct Retry: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Queue a failed, cancelled, superseded or done job again (its outputs get new UIDs).")
    @OptionGroup var options: ConfigOption
    @Argument(help: "Job id.") var job: Int
    @Flag(help: "Machine-readable output (the job as it now is).") var json = false
    func run() throws {
        let (_, store) = try options.store()
        do {
            let j = try store.retry(job: job, actor: adminActor())
            if json { try printJSON(j) } else { print("job \(j.id) queued again (re-run \(j.rerun))") }
        } catch let e as CLIError { throw e } catch { throw CLIError("\(error)") }
    }
}

struct Cancel: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a queued or running job (a running job stops at its next stage boundary).")
    @OptionGroup var options: ConfigOption
    @Argument(help: "Job id.") var job: Int
    @Flag(help: "Machine-readable output (the job as it now is).") var json = false
    func run() throws {
        let (_, store) = try options.store()
        do {
            let j = try store.cancel(job: job, actor: adminActor())
            if json { try printJSON(j) } else { print("job \(j.id) cancelled") }
        } catch let e as CLIError { throw e } catch { throw CLIError("\(error)") }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate perfd.yaml with every check `perfd serve` runs at start-up (models loaded, ports, TLS files, destinations) and explain every problem.")
    @OptionGroup var options: ConfigOption
    @Flag(help: "Machine-readable output.") var json = false

    struct Result: Encodable {
        var config: String
        var ok: Bool
        var problems: [String]
        var notes: [String]
        var models: [String: String]
        var unit_file: String?
    }

    func run() throws {
        let c: Config
        do { c = try Config.load(path: options.config) } catch let e as ConfigError {
            if json { try printJSON(Result(config: options.config, ok: false, problems: e.problems, notes: [], models: [:], unit_file: nil)); throw ExitCode(1) }
            throw CLIError("\(e)")
        }
        DCMTK.initialize()
        let v = ConfigValidation.run(c, configPath: options.config)
        var notes: [String] = []
        if c.allowedPeers.isEmpty { notes.append("allowed_peers is empty: every sender will be refused") }
        if c.destinations.isEmpty { notes.append("no destinations: results stay local") }
        // The spool (and database) directory must exist or be creatable by this user.
        for (key, path) in [("spool_dir", c.spoolDir), ("database", (c.database as NSString).deletingLastPathComponent)] {
            var existing = path
            while !existing.isEmpty && existing != "/" && !FileManager.default.fileExists(atPath: existing) {
                existing = (existing as NSString).deletingLastPathComponent
            }
            if !FileManager.default.isWritableFile(atPath: existing.isEmpty ? "." : existing) {
                notes.append("\(key): \(existing) is not writable by this user; perfd serve will not be able to use \(path)")
            }
        }
        if json {
            try printJSON(Result(config: options.config, ok: v.ok, problems: v.problems, notes: notes, models: v.models, unit_file: v.unitFile))
            if !v.ok { throw ExitCode(1) }
            return
        }
        guard v.ok else {
            throw CLIError("\(ConfigError(path: options.config, problems: v.problems))")
        }
        var listeners: [String] = []
        if c.plainListener { listeners.append("port \(c.port)") }
        if let t = c.tls { listeners.append("TLS port \(t.port)\(t.settings.requirePeerCertificate ? " (client certificates required)" : "")") }
        print("\(options.config): OK — AE \(c.aeTitle) on \(listeners.joined(separator: " and ")), \(c.allowedPeers.count) allowed peers, \(c.destinations.count) destinations\(c.destinations.contains { $0.tls != nil } ? " (TLS to some)" : ""), default pipeline \(c.defaultPipeline)")
        for (pipeline, dir) in v.models.sorted(by: { $0.key < $1.key }) { print("model for \(pipeline): \(dir) (loaded)") }
        if let m = c.metricsPort { print("metrics: http://\(c.metricsAddress):\(m)/metrics and /health") }
        if let u = v.unitFile { print("unit: \(u) (spool and database inside its writable paths)") }
        print("retention: " + (c.retentionDays > 0 ? "spool files kept \(c.retentionDays) days after their jobs finish" : "off (retention_days 0): spool files are kept"))
        for n in notes { print("note: \(n)") }
    }
}
