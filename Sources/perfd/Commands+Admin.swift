import ArgumentParser
import DICOM
import Foundation
import JobStore
import Logging
import PerfdCore
import Inference

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One screen: listener, series being received, jobs per state, running jobs, failures, spool disk use.")
    @OptionGroup var options: ConfigOption
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let (config, store) = try options.store()
        let report = try StatusReport.gather(store: store, config: config)
        if json { try printJSON(report) } else { print(report.text()) }
    }
}

struct Jobs: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List jobs, newest first.")
    @OptionGroup var options: ConfigOption
    @Option(help: "Only jobs in this state (\(JobState.allCases.map(\.rawValue).joined(separator: ", "))).") var state: String?
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let (_, store) = try options.store()
        var filter: JobState?
        if let state {
            guard let s = JobState(rawValue: state) else {
                throw CLIError("unknown state \"\(state)\"; use one of \(JobState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter = s
        }
        let jobs = try store.jobs(state: filter)
        if json { try printJSON(jobs); return }
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
                print("  \(c.name.padding(16)) \(c.outcome.padding(8)) \(c.reason)")
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
    func run() throws {
        let (_, store) = try options.store()
        do { let j = try store.retry(job: job, actor: adminActor()); print("job \(j.id) queued again (re-run \(j.rerun))") } catch { throw CLIError("\(error)") }
    }
}

struct Cancel: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a queued or running job (a running job stops at its next stage boundary).")
    @OptionGroup var options: ConfigOption
    @Argument(help: "Job id.") var job: Int
    func run() throws {
        let (_, store) = try options.store()
        do { let j = try store.cancel(job: job, actor: adminActor()); print("job \(j.id) cancelled") } catch { throw CLIError("\(error)") }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-config", abstract: "Validate perfd.yaml and explain every problem.")
    @OptionGroup var options: ConfigOption
    func run() throws {
        let c = try options.load()
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
        var listeners: [String] = []
        if c.plainListener { listeners.append("port \(c.port)") }
        if let t = c.tls { listeners.append("TLS port \(t.port)\(t.settings.requirePeerCertificate ? " (client certificates required)" : "")") }
        print("\(options.config): OK — AE \(c.aeTitle) on \(listeners.joined(separator: " and ")), \(c.allowedPeers.count) allowed peers, \(c.destinations.count) destinations\(c.destinations.contains { $0.tls != nil } ? " (TLS to some)" : ""), default pipeline \(c.defaultPipeline)")
        if let m = c.metricsPort { print("metrics: http://\(c.metricsAddress):\(m)/metrics and /health") }
        print("retention: " + (c.retentionDays > 0 ? "spool files kept \(c.retentionDays) days after their jobs finish" : "off (retention_days 0): spool files are kept"))
        for n in notes { print("note: \(n)") }
    }
}
