import Config
import DICOM
import Foundation
import Store
import Synchronization

/// In-process counters (since this process started) plus gauges read from the database
/// and the spool at scrape time, rendered as Prometheus text exposition format 0.0.4.
/// Hand-written rather than swift-prometheus: a few dozen series, two histograms read from
/// the database at scrape time (they survive restarts, which in-process histograms would
/// not), and one dependency fewer in a daemon that must build offline.
public final class PerfdMetrics: Sendable {
    private let counters = Mutex<[String: Double]>([:])
    public let startTime = Date().timeIntervalSince1970

    public init() {}

    /// Adds to a counter; `name` may carry labels: `perfd_x_total{status="0xA700"}`.
    public func add(_ name: String, _ value: Double = 1) {
        counters.withLock { $0[name, default: 0] += value }
    }

    func snapshot() -> [String: Double] { counters.withLock { $0 } }

    static let help: [String: (type: String, help: String)] = [
        "perfd_instances_received_total": ("counter", "Instances stored and acknowledged (0x0000) since start."),
        "perfd_received_bytes_total": ("counter", "Bytes of acknowledged instances since start."),
        "perfd_stores_rejected_total": ("counter", "C-STORE requests answered with a failure status, by status."),
        "perfd_associations_total": ("counter", "Associations since start, by outcome (accepted, refused)."),
        "perfd_associations_refused_total": ("counter", "Associations and connections refused since start (unknown AE or host, TLS failure, stalled handshake, limits)."),
        "perfd_associations_refused_by_reason_total": ("counter", "The same refusals by reason: calling_ae, host, handshake_timeout, not_dicom, tls, host_limit, association_limit."),
        "perfd_exported_instances_total": ("counter", "Result files the PACS accepted since start."),
        "perfd_export_retries_total": ("counter", "Export batches that failed and were scheduled again (or given up) since start."),
        "perfd_jobs_failed_total": ("counter", "Jobs that failed since start, by the stage they failed at."),
        "perfd_jobs": ("gauge", "Jobs in the database, by state."),
        "perfd_job_qc_total": ("counter", "Perfusion jobs finished since start, by QC outcome (ok, warn: results flagged, withhold: volumes withheld)."),
        "perfd_qc_flags_total": ("counter", "QC checks that warned or withheld since start, by check and outcome."),
        "perfd_stage_duration_seconds": ("histogram", "Time spent in finished job stages (all jobs in the database), by stage."),
        "perfd_time_to_result_seconds": ("histogram", "Done jobs: first instance received (a re-run: queued) to results accepted by every destination."),
        "perfd_build_info": ("gauge", "Always 1; the labels say which perfd build is running."),
        "perfd_outbox_files": ("gauge", "Outbox files by state."),
        "perfd_queue_oldest_age_seconds": ("gauge", "How long the oldest queued job has waited."),
        "perfd_series_receiving": ("gauge", "Series still being received."),
        "perfd_spool_free_bytes": ("gauge", "Free bytes on the spool's file system (for perfd's user)."),
        "perfd_spool_min_free_bytes": ("gauge", "Below this free space stores are refused (min_free_disk_gb)."),
        "perfd_spool_reserve_bytes": ("gauge", "Pre-written spool files ready for incoming instances (spool_reserve_mb)."),
        "perfd_start_time_seconds": ("gauge", "When this process started (Unix time)."),
    ]

    /// The exposition text: counters, then database and disk gauges.
    public func render(store: any PerfdStore, spoolDir: String, minFreeBytes: Double) -> String {
        var lines: [String: [String]] = [:]
        func put(_ series: String, _ v: Double) {
            let family = String(series.prefix { $0 != "{" })
            let base = family.hasSuffix("_sum") || family.hasSuffix("_count") || family.hasSuffix("_bucket")
                ? String(family[..<family.lastIndex(of: "_")!]) : family
            lines[base, default: []].append("\(series) \(Self.format(v))")
        }
        /// A histogram's lines: `labels` is "" or `name="value",` (the le label follows).
        func histogram(_ name: String, _ labels: String, _ h: StoreStatistics.Histogram) {
            for (bound, n) in zip(h.bounds, h.cumulative) { put("\(name)_bucket{\(labels)le=\"\(Self.format(bound))\"}", Double(n)) }
            put("\(name)_bucket{\(labels)le=\"+Inf\"}", Double(h.count))
            let plain = labels.isEmpty ? "" : "{\(labels.dropLast())}"
            put("\(name)_sum\(plain)", h.sum)
            put("\(name)_count\(plain)", Double(h.count))
        }
        let counters = snapshot()
        // Counters always appear, at 0 before the first event, so rate() works from the start.
        for name in ["perfd_instances_received_total", "perfd_received_bytes_total", "perfd_associations_refused_total",
                     "perfd_exported_instances_total", "perfd_export_retries_total"] where counters[name] == nil { put(name, 0) }
        for outcome in ["accepted", "refused"] where counters["perfd_associations_total{outcome=\"\(outcome)\"}"] == nil {
            put("perfd_associations_total{outcome=\"\(outcome)\"}", 0)
        }
        // Labelled counters show one zero series until their first event, so the family exists
        // for rate() and for dashboards from the first scrape.
        if !counters.keys.contains(where: { $0.hasPrefix("perfd_stores_rejected_total") }) { put("perfd_stores_rejected_total{status=\"0xA700\"}", 0) }
        if !counters.keys.contains(where: { $0.hasPrefix("perfd_associations_refused_by_reason_total") }) {
            put("perfd_associations_refused_by_reason_total{reason=\"calling_ae\"}", 0)
        }
        if !counters.keys.contains(where: { $0.hasPrefix("perfd_jobs_failed_total") }) { put("perfd_jobs_failed_total{stage=\"assemble\"}", 0) }
        for outcome in ["ok", "warn", "withhold"] where counters["perfd_job_qc_total{outcome=\"\(outcome)\"}"] == nil {
            put("perfd_job_qc_total{outcome=\"\(outcome)\"}", 0)
        }
        for (k, v) in counters { put(k, v) }
        if let s = try? store.statistics() {
            for state in JobState.allCases { put("perfd_jobs{state=\"\(state.rawValue)\"}", Double(s.jobsByState[state] ?? 0)) }
            for (stage, h) in s.stageHistograms.sorted(by: { $0.key < $1.key }) {
                histogram("perfd_stage_duration_seconds", "stage=\"\(stage)\",", h)
            }
            histogram("perfd_time_to_result_seconds", "", s.timeToResult)
            for state in ["pending", "sent", "failed"] { put("perfd_outbox_files{state=\"\(state)\"}", Double(s.outboxByState[state] ?? 0)) }
            put("perfd_queue_oldest_age_seconds", s.oldestQueuedSeconds)
            put("perfd_series_receiving", Double(s.seriesReceiving))
        }
        if let free = DiskSpace.freeBytes(spoolDir) { put("perfd_spool_free_bytes", free) }
        put("perfd_spool_min_free_bytes", minFreeBytes)
        put("perfd_spool_reserve_bytes", Double(DiskSpace.reserveBytes(spoolDir)))
        put("perfd_start_time_seconds", startTime)
        put("perfd_build_info{swift=\"\(PerfdVersion.swift)\",version=\"\(PerfdVersion.string)\"}", 1)
        var out = ""
        for family in lines.keys.sorted() {
            if let h = Self.help[family] { out += "# HELP \(family) \(h.help)\n# TYPE \(family) \(h.type)\n" }
            // Histogram lines keep their order (buckets ascending, +Inf, sum, count); others sort.
            let body = Self.help[family]?.type == "histogram" ? lines[family]! : lines[family]!.sorted()
            out += body.joined(separator: "\n") + "\n"
        }
        return out
    }

    static func format(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }
}

public enum DiskSpace {
    /// Bytes available to an unprivileged user on the file system holding `path`.
    public static func freeBytes(_ path: String) -> Double? {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return nil }
        return Double(s.f_bavail) * Double(s.f_frsize)
    }

    /// Bytes of pre-written spool files ready for incoming instances (`spool_reserve_mb`):
    /// the `blank-*` files (`StorageSCPConfig.reserveFilePrefix`) in the spool's .incoming directory.
    public static func reserveBytes(_ spoolDir: String) -> Int {
        let dir = spoolDir + "/.incoming"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasPrefix(StorageSCPConfig.reserveFilePrefix) }.reduce(0) { sum, name in
            var st = stat()
            return stat(dir + "/" + name, &st) == 0 ? sum + Int(st.st_size) : sum
        }
    }
}
