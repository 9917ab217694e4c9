/// Public initialisers for the values the store's methods return, so a second
/// implementation of the store in another module (`Sources/PostgresStore`) builds the very
/// same records from its own rows. Nothing here changes how `JobStore` behaves. (Their
/// first labels differ from the synthesised memberwise initialisers', which stay internal.)

extension Row {
    public init(columns: [String: SQLValue]) { self.init(values: columns) }
}

extension JobRecord {
    /// A row of `jobs` (static, not an initialiser: `JobRecord.init` stays unambiguous).
    public static func from(_ row: Row) -> JobRecord { JobRecord(row) }
}

extension SeriesRecord {
    public static func from(_ row: Row) -> SeriesRecord { SeriesRecord(row) }
}

extension OutboxItem {
    /// A row of `outbox` joined with its destination's `ae_title`, `host` and `port`.
    public static func from(_ row: Row) -> OutboxItem { OutboxItem(row) }
}

extension StoredInstance {
    /// An `instances` row as both stores read it (position and the image attributes of
    /// migration 007 included).
    public static func from(_ r: Row) -> StoredInstance {
        StoredInstance(sopInstanceUID: r["sop_instance_uid"].text ?? "", path: r["path"].text ?? "",
                       temporalPosition: r["temporal_position"].int, acquisitionNumber: r["acquisition_number"].int,
                       instanceNumber: r["instance_number"].int, acquisitionTime: r["acquisition_time"].text,
                       contentTime: r["content_time"].text, position: r["position"].text.flatMap(StoredInstance.numbers),
                       image: StoredImage(r))
    }
}

extension JobEvent {
    public init(time at: Double, level: String, message: String) { self.at = at; self.level = level; self.message = message }
}

extension StageRecord {
    public init(name stage: String, startedAt: Double, finishedAt: Double?, result: String?) {
        self.stage = stage; self.startedAt = startedAt; self.finishedAt = finishedAt; self.result = result
    }
}

extension DaemonRecord {
    public init(process pid: Int, aeTitle: String, port: Int, startedAt: Double, heartbeatAt: Double, stoppedAt: Double?) {
        self.pid = pid; self.aeTitle = aeTitle; self.port = port; self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt; self.stoppedAt = stoppedAt
    }
}

extension GlobalEvent {
    public init(time at: Double, kind: String, message: String) { self.at = at; self.kind = kind; self.message = message }
}

extension DestinationRecord {
    public init(destination id: Int, aeTitle: String, host: String, port: Int) { self.id = id; self.aeTitle = aeTitle; self.host = host; self.port = port }
}

extension OutboxSummary {
    public init(name destination: String, pending: Int, sent: Int, failed: Int, nextAttemptInSeconds: Double?, lastError: String?) {
        self.destination = destination; self.pending = pending; self.sent = sent; self.failed = failed
        self.nextAttemptInSeconds = nextAttemptInSeconds; self.lastError = lastError
    }
}

extension PurgeCandidate {
    public init(series seriesUID: String, studyUID: String, jobIDs: [Int], instanceCount: Int, bytes: Int, finishedAt: Double,
                lastReceived: Double, paths: [String]) {
        self.seriesUID = seriesUID; self.studyUID = studyUID; self.jobIDs = jobIDs; self.instanceCount = instanceCount
        self.bytes = bytes; self.finishedAt = finishedAt; self.lastReceived = lastReceived; self.paths = paths
    }
}

extension JobStore.RecordOutcome {
    public init(new isNew: Bool, superseding supersededJob: Int?, refused: String? = nil, keptPath: String? = nil) {
        self.isNew = isNew; self.supersededJob = supersededJob; self.refused = refused; self.keptPath = keptPath
    }
}

extension JobStore.JobGone {
    public init(job id: Int, state: JobState) { self.id = id; self.state = state }
}

extension StoreStatistics {
    /// Nothing counted yet (the synthesised `init()` is internal).
    public static var empty: StoreStatistics { StoreStatistics() }
}
