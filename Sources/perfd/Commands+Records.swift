import ArgumentParser
import Foundation
import Jobs
import JobStore
import Logging
import Store

/// Who ran an admin command, for the audit trail: the user behind sudo if any, else the
/// login of the process.
func adminActor() -> String {
    if let sudo = ProcessInfo.processInfo.environment["SUDO_USER"], !sudo.isEmpty { return sudo }
    if let pw = getpwuid(getuid()), let name = pw.pointee.pw_name { return String(cString: name) }
    return "uid \(getuid())"
}

struct Purge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete the spool files of series whose jobs finished more than retention_days ago.",
        discussion: """
            The daemon does this every hour by itself. Job rows, their events and the audit trail stay \
            (without the patient's name and ID); a series with a queued, running or exporting job is never touched.
            """)
    @OptionGroup var options: ConfigOption
    @Flag(name: .customLong("dry-run"), help: "Only show what would be deleted.") var dryRun = false
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let (config, store) = try options.store()
        let logger = Logger(label: "perfd.purge")
        let outcome: Retention.Outcome
        do {
            outcome = try Retention(store: store, config: config, logger: logger).run(dryRun: dryRun, actor: adminActor())
        } catch { throw CLIError("\(error)") }
        if json { try printJSON(outcome); return }
        if outcome.auditRows > 0 { print("deleted \(outcome.auditRows) audit rows older than \(Self.days(config.auditRetentionDays)) (audit_retention_days)") }
        if config.retentionDays <= 0 { print("retention_days is 0: spool files are kept until you delete them"); return }
        let verb = dryRun ? "would delete" : "deleted"
        if outcome.series.isEmpty {
            print("nothing to purge: no series has had all its jobs finished for more than \(Self.days(config.retentionDays))")
            return
        }
        let f = ISO8601DateFormatter()
        for c in outcome.series {
            print("\(verb) series \(c.seriesUID): \(c.paths.count) files, \(Self.mb(c.bytes)); jobs \(c.jobIDs.map(String.init).joined(separator: ", ")) finished \(f.string(from: Date(timeIntervalSince1970: c.finishedAt)))")
        }
        print("\(dryRun ? "would free" : "freed") \(Self.mb(outcome.bytes)) in \(outcome.files) files of \(outcome.series.count) series")
    }

    static func mb(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }
    static func days(_ d: Double) -> String { d >= 1 ? String(format: "%g days", d) : String(format: "%g s", d * 86_400) }
}

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The audit trail: associations (accepted or refused and why), stored series, exports, admin actions.")
    @OptionGroup var options: ConfigOption
    @Option(help: "Only rows at or after this time: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC), or seconds since 1970.")
    var since: String?
    @Option(help: "At most this many rows, oldest first (0: all).") var limit = 100_000
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let (_, store) = try options.store()
        let from = try since.map(Self.parseTime) ?? 0
        // One row more than asked for tells whether the list was cut.
        var rows = try store.auditTrail(since: from, limit: limit > 0 ? limit + 1 : Int.max)
        let cut = limit > 0 && rows.count > limit
        if cut { rows.removeLast() }
        if cut {
            let last = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: rows.last?.at ?? from))
            FileHandle.standardError.write(Data("perfd audit: the first \(limit) rows shown; more follow — use --since \(last) or --limit 0\n".utf8))
        }
        if json { try printJSON(rows); return }
        if rows.isEmpty { print("no audit rows\(since.map { " since \($0)" } ?? "")"); return }
        let f = ISO8601DateFormatter()
        print("TIME".padding(21) + "KIND".padding(12) + "OUTCOME".padding(10) + "ACTOR".padding(17) + "HOST".padding(16) + "DETAIL")
        for r in rows {
            var detail = r.detail
            if let j = r.jobID { detail = "job \(j): " + detail }
            if r.count > 1 { detail = "\(r.count)× " + detail }
            // Rows written before peer text was escaped on the way in are escaped here.
            print(PeerText.escaped(f.string(from: Date(timeIntervalSince1970: r.at)).padding(21) + r.kind.rawValue.padding(12) + r.outcome.padding(10)
                  + (r.actor.isEmpty ? "-" : r.actor).padding(17) + (r.host.isEmpty ? "-" : r.host).padding(16) + detail))
        }
    }

    static func parseTime(_ s: String) throws -> Double {
        if let v = Double(s) { return v }
        // ISO 8601 with a zone ("2026-12-02T14:00:00Z", "+01:00"), as the JSON output prints.
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime]] {
            let iso = ISO8601DateFormatter()
            iso.formatOptions = options
            if let d = iso.date(from: s) { return d.timeIntervalSince1970 }
        }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        for format in ["yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm", "yyyy-MM-dd"] {
            f.dateFormat = format
            if let d = f.date(from: s) { return d.timeIntervalSince1970 }
        }
        throw CLIError("--since \"\(s)\" is not a time; use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)")
    }
}
