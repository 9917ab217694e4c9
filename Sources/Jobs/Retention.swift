import Config
import Foundation
import Store
import Logging
import Operations
import ServiceLifecycle

/// Patient data is kept only as long as it is needed: once every job on a series has been
/// finished for `retention_days`, its spool files, its jobs' work directories (rendered
/// outputs) and its instance rows go. Job rows, their events and the audit trail stay,
/// without the patient's name or ID; audit rows go after `audit_retention_days`. A series
/// with a queued, running or exporting job, or still receiving, is never touched.
public struct Retention: Sendable {
    let store: any PerfdStore
    let config: Config
    let logger: Logger

    public init(store: any PerfdStore, config: Config, logger: Logger) {
        self.store = store; self.config = config; self.logger = logger
    }

    public struct Outcome: Sendable, Codable {
        public var series: [PurgeCandidate]
        public var files: Int
        public var bytes: Int
        public var dryRun: Bool
        /// Audit rows deleted for being older than audit_retention_days.
        public var auditRows = 0
        enum CodingKeys: String, CodingKey { case series, files, bytes, dryRun = "dry_run", auditRows = "audit_rows" }
    }

    /// The series past the window at `now` (none when retention_days is 0: keep forever).
    public func plan(now: Double = WallClock.now()) throws -> [PurgeCandidate] {
        guard config.retentionDays > 0 else { return [] }
        return try store.purgeCandidates(finishedBefore: now - config.retentionDays * 86_400)
    }

    /// Deletes what `plan` lists (or only reports it when `dryRun`). Files go first, then
    /// the rows: a crash in between leaves rows whose files are gone, and the next run
    /// finishes the job; the reverse order would let start-up reconciliation re-ingest files.
    public func run(now: Double = WallClock.now(), dryRun: Bool, actor: String) throws -> Outcome {
        let candidates = try plan(now: now)
        var out = Outcome(series: candidates, files: 0, bytes: 0, dryRun: dryRun)
        let fm = FileManager.default
        for c in candidates {
            if !dryRun, try !store.isStillPurgeable(c) {
                logger.notice("retention: series \(c.seriesUID) changed since it was listed (sent again, or a job started); kept")
                out.series.removeAll { $0.seriesUID == c.seriesUID }
                continue
            }
            out.files += c.paths.count
            out.bytes += c.bytes
            guard !dryRun else { continue }
            for path in c.paths where unlink(path) != 0 && errno != ENOENT {
                throw ServiceError(message: "retention: cannot delete \(path): \(String(cString: strerror(errno))); fix the permissions and run `perfd purge` again")
            }
            if let dir = c.paths.first.map({ ($0 as NSString).deletingLastPathComponent }) { rmdir(dir) }
            for job in c.jobIDs {
                let work = JobWorkerService.workDirectory(config: config, job: job)
                if fm.fileExists(atPath: work) { try fm.removeItem(atPath: work) }
            }
            try store.markPurged(c, actor: actor, now: now)
            logger.info("retention: purged series \(c.seriesUID) (\(c.paths.count) files, jobs \(c.jobIDs.map(String.init).joined(separator: ",")))")
        }
        if !dryRun && config.auditRetentionDays > 0 {
            out.auditRows = try store.pruneAudit(before: now - config.auditRetentionDays * 86_400)
            if out.auditRows > 0 { logger.info("retention: \(out.auditRows) audit rows older than \(config.auditRetentionDays) days deleted (audit_retention_days)") }
        }
        if !dryRun && (!out.series.isEmpty || out.auditRows > 0) { scrubWAL() }
        return out
    }

    /// secure_delete zeroed the purged names in the database's pages; the WAL still holds
    /// older images of those pages until it is checkpointed and truncated.
    func scrubWAL() {
        do {
            if try !store.checkpointTruncate() {
                logger.warning("retention: readers kept the WAL from being truncated; purged names may stay in \(store.path)-wal until the next purge or restart")
            }
        } catch {
            logger.warning("retention: cannot checkpoint the WAL after the purge: \(error)")
        }
    }
}

/// Runs retention at start and then hourly.
public struct RetentionService: Service {
    let retention: Retention
    let logger: Logger
    let interval: Duration
    let clock: any DaemonClock

    public init(store: any PerfdStore, config: Config, logger: Logger, interval: Duration = .seconds(3600), clock: any DaemonClock = LiveClock()) {
        retention = Retention(store: store, config: config, logger: logger)
        self.logger = logger
        self.interval = interval
        self.clock = clock
    }

    public func run() async throws {
        let executor = BlockingExecutor(threads: 1, name: "perfd-retention")
        defer { executor.stop() }
        let retention = self.retention, logger = self.logger, clock = self.clock
        // The loop's wait ends at a drain: an hour's sleep never holds one up.
        await PollingLoop.run(every: interval, clock: clock) {
            do {
                let now = clock.now()
                let r = try await executor.run { Result { try retention.run(now: now, dryRun: false, actor: "perfd (retention_days)") } }.get()
                if !r.series.isEmpty { logger.info("retention: \(r.series.count) series, \(r.files) files purged") }
            } catch { logger.error("\(error)") }
            return false
        }
    }
}
