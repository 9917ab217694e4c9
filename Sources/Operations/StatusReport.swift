import Config
import Foundation
import Store

/// What `perfd status` shows, read straight from the database (so it works whether the
/// daemon runs or not).
public struct StatusReport: Codable, Sendable {
    public struct Listener: Codable, Sendable {
        public var running: Bool
        public var aeTitle: String?
        public var port: Int?
        public var pid: Int?
        public var upSince: String?
        public var lastHeartbeatSecondsAgo: Double?
        /// From the config: the DICOM-over-TLS port and the metrics endpoint, when configured.
        public var tlsPort: Int?
        public var metrics: String?
        enum CodingKeys: String, CodingKey {
            case running, port, pid, aeTitle = "ae_title", upSince = "up_since", lastHeartbeatSecondsAgo = "last_heartbeat_s_ago"
            case tlsPort = "tls_port", metrics
        }
    }
    public struct RunningJob: Codable, Sendable {
        public var id: Int
        public var pipeline: String
        public var state: String
        public var stage: String?
        public var progress: Double
        public var qc: String?

        init(_ j: JobRecord) {
            id = j.id; pipeline = j.pipeline; state = j.state.rawValue; stage = j.stage; progress = j.progress; qc = j.qc
        }
    }
    public struct Failure: Codable, Sendable {
        public var id: Int
        public var seriesUID: String
        public var stage: String?
        public var error: String
        public var at: String?
        enum CodingKeys: String, CodingKey { case id, stage, error, at, seriesUID = "series_uid" }
    }
    public struct Disk: Codable, Sendable {
        public var spoolDir: String
        public var spoolBytes: Int
        public var freeBytes: Int?
        public var minFreeBytes: Int
        /// Pre-written spool files ready for incoming instances (`spool_reserve_mb`).
        public var reserveBytes: Int
        enum CodingKeys: String, CodingKey {
            case spoolDir = "spool_dir", spoolBytes = "spool_bytes", freeBytes = "free_bytes", minFreeBytes = "min_free_bytes"
            case reserveBytes = "reserve_bytes"
        }
    }

    public var database: String
    public var listener: Listener
    public var receiving: [SeriesRecord]
    public var jobs: [String: Int]
    public var active: [RunningJob]
    public var recentFailures: [Failure]
    /// Recent jobs whose QC flagged something: head motion, a warning, withheld volumes (they carried on).
    public var recentMotion: [RunningJob]
    public var recentEvents: [GlobalEvent]
    public var outbox: [OutboxSummary]
    public var disk: Disk

    enum CodingKeys: String, CodingKey {
        case database, listener, receiving, jobs, active, disk, outbox
        case recentFailures = "recent_failures", recentEvents = "recent_events", recentMotion = "recent_motion"
    }

    public static func gather(store: any PerfdStore, config: Config, now: Double = WallClock.now()) throws -> StatusReport {
        let d = try store.daemon()
        var running = false
        if let d, d.stoppedAt == nil, now - d.heartbeatAt < 15, kill(pid_t(d.pid), 0) == 0 { running = true }
        let listener = Listener(running: running, aeTitle: d?.aeTitle, port: d?.port, pid: d?.pid,
                                upSince: running ? d.map { iso($0.startedAt) } : nil,
                                lastHeartbeatSecondsAgo: d.map { ((now - $0.heartbeatAt) * 10).rounded() / 10 },
                                tlsPort: config.tls?.port,
                                metrics: config.metricsPort.map { "http://\(config.metricsAddress):\($0)/metrics" })
        let counts = try store.jobCounts()
        var jobs: [String: Int] = [:]
        for s in JobState.allCases { jobs[s.rawValue] = counts[s] ?? 0 }
        let active = try (store.jobs(state: .running) + store.jobs(state: .exporting)).map(RunningJob.init)
        let failures = try store.recentFailures().map {
            Failure(id: $0.id, seriesUID: $0.seriesUID, stage: $0.stage, error: $0.error ?? "", at: $0.finishedAt.map(iso))
        }
        let free = DiskSpace.freeBytes(config.spoolDir).map { Int($0) }
        let spoolBytes = try store.spoolBytes()
        let motion = try store.recentMotion().map(RunningJob.init)
        return StatusReport(database: store.path, listener: listener, receiving: try store.receivingSeries(), jobs: jobs,
                            active: active, recentFailures: failures, recentMotion: motion, recentEvents: try store.recentEvents(limit: 5),
                            outbox: try store.outboxSummary(now: now),
                            disk: Disk(spoolDir: config.spoolDir, spoolBytes: spoolBytes, freeBytes: free,
                                       minFreeBytes: Int(config.minFreeDiskGB * 1_073_741_824),
                                       reserveBytes: DiskSpace.reserveBytes(config.spoolDir)))
    }

    /// One screen for a person.
    public func text(now: Double = WallClock.now()) -> String {
        var out: [String] = []
        if listener.running {
            out.append("listener   running: AE \(listener.aeTitle ?? "?") on port \(listener.port ?? 0), pid \(listener.pid ?? 0), up since \(listener.upSince ?? "?")")
            if let t = listener.tlsPort { out.append("           DICOM over TLS on port \(t)") }
            if let m = listener.metrics { out.append("           metrics \(m), health check at /health") }
        } else if let port = listener.port {
            out.append("listener   stopped (last seen as \(listener.aeTitle ?? "?") on port \(port), \(Int(listener.lastHeartbeatSecondsAgo ?? 0)) s ago)")
        } else {
            out.append("listener   stopped (never started with this database)")
        }
        out.append("database   \(database)")
        if receiving.isEmpty {
            out.append("receiving  none")
        } else {
            out.append("receiving  \(receiving.count) series")
            for s in receiving.prefix(10) {
                let expected = s.temporalPositions.flatMap { t in s.imagesInAcquisition.map { " of \(t * $0)" } } ?? ""
                out.append("  \(s.seriesUID)  \(s.instanceCount)\(expected) instances from \(s.callingAE), last \(Int(now - s.lastReceived)) s ago")
            }
        }
        let order = JobState.allCases.map(\.rawValue)
        out.append("jobs       " + order.map { "\($0) \(jobs[$0] ?? 0)" }.joined(separator: ", "))
        for j in active {
            out.append("  job \(j.id)  \(j.pipeline)  \(j.state) at \(j.stage ?? "start") \(Int(j.progress * 100))%\(j.qc?.contains("motion") == true ? "  MOTION" : "")")
        }
        if outbox.isEmpty {
            out.append("outbox     empty")
        } else {
            for o in outbox {
                var line = "outbox     \(o.destination): \(o.pending) pending, \(o.sent) sent, \(o.failed) failed"
                if o.pending > 0, let n = o.nextAttemptInSeconds { line += ", next attempt in \(Int(n.rounded())) s" }
                if o.pending > 0, let e = o.lastError { line += " (last error: \(e))" }
                out.append(line)
            }
        }
        if !recentMotion.isEmpty {
            out.append("QC         (motion, warnings, withheld volumes; the jobs carried on)")
            for j in recentMotion {
                out.append("  job \(j.id)  \(j.pipeline)  \(j.state)  QC \(j.qc ?? "?")\(j.qc?.contains("motion") == true ? "  MOTION" : "")")
            }
        }
        if !recentFailures.isEmpty {
            out.append("failures   (most recent first)")
            for f in recentFailures { out.append("  job \(f.id) at \(f.stage ?? "?"): \(f.error)") }
        }
        if !recentEvents.isEmpty {
            out.append("events     (most recent first)")
            for e in recentEvents { out.append("  \(StatusReport.iso(e.at))  \(e.kind): \(e.message)") }
        }
        let freeText = disk.freeBytes.map { "\(Self.bytes($0)) free" } ?? "free space unknown"
        out.append("spool      \(disk.spoolDir): \(Self.bytes(disk.spoolBytes)) in use, \(Self.bytes(disk.reserveBytes)) written ahead, "
                   + "\(freeText) (refuses below \(Self.bytes(disk.minFreeBytes)))")
        // AE titles, events and errors quote what peers sent: one line stays one line, and
        // nothing reaches the admin's terminal as a control sequence.
        return out.map(PeerText.escaped).joined(separator: "\n")
    }

    static func iso(_ t: Double) -> String { ISOTime.string(t) }
    static func isoSeconds(_ t: Double) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: Date(timeIntervalSince1970: t))
    }

    static func bytes(_ b: Int) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var v = Double(b), i = 0
        while v >= 1000 && i < units.count - 1 { v /= 1000; i += 1 }
        return i == 0 ? "\(b) B" : String(format: "%.1f %@", v, units[i])
    }
}
