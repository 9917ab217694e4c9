import JobStore
import PostgresStore

/// Every public operation of `JobStore`, as a protocol both stores conform to with empty
/// extensions: if `PostgresStore` drifts from `JobStore`'s names, labels, argument or result
/// types, this file stops compiling. (The store protocol being extracted from JobStore will
/// replace it; conformance is then one line.) The parity test drives both through it.
protocol StoreOperations: AnyObject, Sendable {
    var path: String { get }
    var jobsQueued: WorkSignal { get }
    var outboxFilled: WorkSignal { get }
    // ingest
    func recordInstance(_ i: InstanceRecord, sameContent: ((String) -> Bool?)?, now: Double) throws -> JobStore.RecordOutcome
    func dropUnacknowledged(paths: [String], now: Double) throws -> [String]
    func knownPaths() throws -> Set<String>
    // series
    func receivingSeries() throws -> [SeriesRecord]
    func series(_ uid: String) throws -> SeriesRecord?
    func seriesShape(_ uid: String) throws -> (positions: Int, timepoints: Int)
    func completeSeries(_ uid: String, reason: String, pipeline: String, now: Double) throws -> JobRecord?
    func instances(ofSeries uid: String) throws -> [StoredInstance]
    func transferSyntaxes(ofSeries uid: String) throws -> [String]
    // jobs
    func jobs(state: JobState?, limit: Int) throws -> [JobRecord]
    func jobs(_ filter: JobStore.JobFilter, limit: Int?) throws -> (jobs: [JobRecord], total: Int)
    func job(_ id: Int) throws -> JobRecord?
    func events(job id: Int) throws -> [JobEvent]
    func stages(job id: Int) throws -> [StageRecord]
    func claimNextJob(excluding busy: Set<Int>, now: Double) throws -> JobRecord?
    func timesResumed(job id: Int) throws -> Int
    func beginStage(job id: Int, stage: String, now: Double) throws
    func setProgress(job id: Int, _ progress: Double, now: Double) throws
    func finishStage(job id: Int, stage: String, result: String?, now: Double) throws
    func finishedStages(job id: Int) throws -> [String: String]
    func setState(job id: Int, _ state: JobState, now: Double) throws
    func setQC(job id: Int, _ qc: String) throws
    func fail(job id: Int, stage: String?, reason: String, now: Double) throws -> Bool
    func retry(job id: Int, actor: String, now: Double) throws -> JobRecord
    func cancel(job id: Int, actor: String, now: Double) throws -> JobRecord
    func addEvent(job id: Int, _ level: JobStore.EventLevel, _ message: String, now: Double) throws
    // daemon and global events
    func logEvent(kind: String, _ message: String, now: Double) throws
    func recentEvents(limit: Int) throws -> [GlobalEvent]
    func daemonStarted(pid: Int, aeTitle: String, port: Int, now: Double) throws
    func daemonHeartbeat(now: Double) throws
    func daemonStopped(now: Double) throws
    func daemon() throws -> DaemonRecord?
    func jobCounts() throws -> [JobState: Int]
    func recentMotion(limit: Int) throws -> [JobRecord]
    func recentFailures(limit: Int) throws -> [JobRecord]
    // outbox
    func destinationID(aeTitle: String, host: String, port: Int) throws -> Int
    func destination(id: Int) throws -> DestinationRecord?
    func finishRender(job id: Int, result: String, report: String, outbox: [OutboxEntry], now: Double) throws
    func enqueueNotice(job id: Int, _ entries: [OutboxEntry], now: Double) throws
    func report(job id: Int) throws -> String?
    func nextOutboxBatch(now: Double, limit: Int) throws -> [OutboxItem]
    func isPending(outbox id: Int) throws -> Bool
    func markSent(_ ids: [Int], now: Double) throws
    func markRetry(_ ids: [Int], error: String, nextAttemptAt: Double) throws
    func markFailed(_ ids: [Int], error: String) throws
    func settleExport(job id: Int, now: Double) throws
    func settleDrainedExports(now: Double) throws -> [Int]
    func setExportProgress(job id: Int, now: Double) throws
    func outboxSummary(now: Double) throws -> [OutboxSummary]
    func outbox(job id: Int) throws -> [OutboxItem]
    // audit
    func audit(_ e: AuditEntry, now: Double) throws
    func pruneAudit(before cutoff: Double) throws -> Int
    func auditTrail(since: Double, limit: Int) throws -> [AuditEntry]
    // retention
    func purgeCandidates(finishedBefore cutoff: Double) throws -> [PurgeCandidate]
    func isStillPurgeable(_ c: PurgeCandidate) throws -> Bool
    func markPurged(_ c: PurgeCandidate, actor: String, now: Double) throws
    // statistics and health
    func statistics(now: Double) throws -> StoreStatistics
    func spoolBytes() throws -> Int
    func checkpointTruncate() throws -> Bool
    func healthProblem(timeout: Double) -> String?
}

extension JobStore: StoreOperations {}
extension PostgresStore: StoreOperations {}
