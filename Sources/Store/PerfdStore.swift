import Foundation

/// What the daemon's services (ingest, series tracking, jobs, export, retention, metrics,
/// status, heartbeat) ask of the store. `JobStore` is the SQLite implementation; every
/// method is one transaction there, and another implementation must keep that: each call
/// commits all of its effect or none of it. `now` is seconds since 1970 (`WallClock`).
public protocol PerfdStore: AnyObject, Sendable {
    /// Where the store lives (the database file), for status and logs.
    var path: String { get }
    /// Rung after a commit that queues a job.
    var jobsQueued: WorkSignal { get }
    /// Rung after a commit that adds rows to the outbox.
    var outboxFilled: WorkSignal { get }

    // Ingest and series completion
    @discardableResult
    func recordInstance(_ i: InstanceRecord, sameContent: ((String) -> Bool?)?, now: Double) throws -> RecordOutcome
    func dropUnacknowledged(paths: [String], now: Double) throws -> [String]
    func knownPaths() throws -> Set<String>
    func receivingSeries() throws -> [SeriesRecord]
    func series(_ uid: String) throws -> SeriesRecord?
    func seriesShape(_ uid: String) throws -> (positions: Int, timepoints: Int)
    func completeSeries(_ uid: String, reason: String, pipeline: String, now: Double) throws -> JobRecord?
    func instances(ofSeries uid: String) throws -> [StoredInstance]
    func transferSyntaxes(ofSeries uid: String) throws -> [String]

    // Jobs
    func jobs(state: JobState?, limit: Int) throws -> [JobRecord]
    func claimNextJob(excluding busy: Set<Int>, now: Double) throws -> JobRecord?
    func timesResumed(job id: Int) throws -> Int
    func beginStage(job id: Int, stage: String, now: Double) throws
    func setProgress(job id: Int, _ progress: Double, now: Double) throws
    func finishStage(job id: Int, stage: String, result: String?, now: Double) throws
    func setQC(job id: Int, _ qc: String) throws
    @discardableResult
    func fail(job id: Int, stage: String?, reason: String, now: Double) throws -> Bool
    func addEvent(job id: Int, _ level: EventLevel, _ message: String, now: Double) throws
    func jobCounts() throws -> [JobState: Int]
    func recentMotion(limit: Int) throws -> [JobRecord]
    func recentFailures(limit: Int) throws -> [JobRecord]

    // Events and the daemon row
    func logEvent(kind: String, _ message: String, now: Double) throws
    func recentEvents(limit: Int) throws -> [GlobalEvent]
    func daemonStarted(pid: Int, aeTitle: String, port: Int, now: Double) throws
    func daemonHeartbeat(now: Double) throws
    func daemonStopped(now: Double) throws
    func daemon() throws -> DaemonRecord?

    // The outbox
    func destinationID(aeTitle: String, host: String, port: Int) throws -> Int
    func destination(id: Int) throws -> DestinationRecord?
    func finishRender(job id: Int, result: String, report: String, outbox: [OutboxEntry], now: Double) throws
    func enqueueNotice(job id: Int, _ entries: [OutboxEntry], now: Double) throws
    func nextOutboxBatch(now: Double, limit: Int) throws -> [OutboxItem]
    func isPending(outbox id: Int) throws -> Bool
    func markSent(_ ids: [Int], now: Double) throws
    func markRetry(_ ids: [Int], error: String, nextAttemptAt: Double) throws
    func markFailed(_ ids: [Int], error: String) throws
    func settleExport(job id: Int, now: Double) throws
    @discardableResult
    func settleDrainedExports(now: Double) throws -> [Int]
    func setExportProgress(job id: Int, now: Double) throws
    func outboxSummary(now: Double) throws -> [OutboxSummary]

    // Audit, retention, statistics, health
    func audit(_ e: AuditEntry, now: Double) throws
    @discardableResult
    func pruneAudit(before cutoff: Double) throws -> Int
    func purgeCandidates(finishedBefore cutoff: Double) throws -> [PurgeCandidate]
    func isStillPurgeable(_ c: PurgeCandidate) throws -> Bool
    func markPurged(_ c: PurgeCandidate, actor: String, now: Double) throws
    func statistics(now: Double) throws -> StoreStatistics
    func spoolBytes() throws -> Int
    /// Folds the write-ahead log back into the database file and empties it; false when a
    /// reader kept part of it.
    @discardableResult
    func checkpointTruncate() throws -> Bool
    /// Why the store cannot take a write within `timeout` seconds; nil when it can.
    func healthProblem(timeout: Double) -> String?
}

// The forms the services call: the time is now, the limits are the store's usual ones.
extension PerfdStore {
    @discardableResult
    public func recordInstance(_ i: InstanceRecord, sameContent: ((String) -> Bool?)? = nil) throws -> RecordOutcome {
        try recordInstance(i, sameContent: sameContent, now: WallClock.now())
    }
    public func dropUnacknowledged(paths: [String]) throws -> [String] { try dropUnacknowledged(paths: paths, now: WallClock.now()) }
    public func jobs(state: JobState? = nil) throws -> [JobRecord] { try jobs(state: state, limit: 1000) }
    public func claimNextJob(excluding busy: Set<Int> = []) throws -> JobRecord? { try claimNextJob(excluding: busy, now: WallClock.now()) }
    public func beginStage(job id: Int, stage: String) throws { try beginStage(job: id, stage: stage, now: WallClock.now()) }
    public func setProgress(job id: Int, _ progress: Double) throws { try setProgress(job: id, progress, now: WallClock.now()) }
    public func finishStage(job id: Int, stage: String, result: String?) throws {
        try finishStage(job: id, stage: stage, result: result, now: WallClock.now())
    }
    @discardableResult
    public func fail(job id: Int, stage: String?, reason: String) throws -> Bool {
        try fail(job: id, stage: stage, reason: reason, now: WallClock.now())
    }
    public func addEvent(job id: Int, _ level: EventLevel, _ message: String) throws {
        try addEvent(job: id, level, message, now: WallClock.now())
    }
    public func recentMotion() throws -> [JobRecord] { try recentMotion(limit: 5) }
    public func recentFailures() throws -> [JobRecord] { try recentFailures(limit: 5) }
    public func logEvent(kind: String, _ message: String) throws { try logEvent(kind: kind, message, now: WallClock.now()) }
    public func recentEvents() throws -> [GlobalEvent] { try recentEvents(limit: 20) }
    public func daemonStarted(pid: Int, aeTitle: String, port: Int) throws {
        try daemonStarted(pid: pid, aeTitle: aeTitle, port: port, now: WallClock.now())
    }
    public func daemonHeartbeat() throws { try daemonHeartbeat(now: WallClock.now()) }
    public func daemonStopped() throws { try daemonStopped(now: WallClock.now()) }
    public func finishRender(job id: Int, result: String, report: String, outbox: [OutboxEntry]) throws {
        try finishRender(job: id, result: result, report: report, outbox: outbox, now: WallClock.now())
    }
    public func enqueueNotice(job id: Int, _ entries: [OutboxEntry]) throws { try enqueueNotice(job: id, entries, now: WallClock.now()) }
    public func nextOutboxBatch(now: Double) throws -> [OutboxItem] { try nextOutboxBatch(now: now, limit: 500) }
    public func markSent(_ ids: [Int]) throws { try markSent(ids, now: WallClock.now()) }
    public func settleExport(job id: Int) throws { try settleExport(job: id, now: WallClock.now()) }
    @discardableResult
    public func settleDrainedExports() throws -> [Int] { try settleDrainedExports(now: WallClock.now()) }
    public func setExportProgress(job id: Int) throws { try setExportProgress(job: id, now: WallClock.now()) }
    public func audit(_ e: AuditEntry) throws { try audit(e, now: WallClock.now()) }
    public func statistics() throws -> StoreStatistics { try statistics(now: WallClock.now()) }
    public func healthProblem() -> String? { healthProblem(timeout: 1.5) }
}
