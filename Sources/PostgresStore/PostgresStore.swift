import Foundation
import Store
import Synchronization

/// perfd's state in PostgreSQL, shared by several nodes: the same operations as `JobStore`
/// (same names, arguments and results), each one transaction, plus what sharing needs —
/// jobs claimed under a lease by the database's clock, fenced commits, a reaper, leased
/// outbox batches, node heartbeats, and the acknowledged DICOM bytes in the database.
///
/// Claim and fencing: `claimNextJob` takes a queued job with `FOR UPDATE SKIP LOCKED` (two
/// nodes never take the same row), adds one to its `attempt`, and sets `lease_owner` to this
/// node and `lease_expires_at` to the server's `now()` + `leaseSeconds`. This object remembers
/// the attempt it claimed; every stage commit checks, in its transaction and under the row's
/// lock, that the job is still running, at that attempt, owned by this node, and its lease
/// not expired — otherwise nothing is written and `LeaseLost` (or `JobStore.JobGone` when the
/// job was superseded or cancelled) is thrown. `daemonHeartbeat` extends the live leases;
/// `requeueExpiredLeases` puts only expired ones back in the queue, where the next claim
/// takes them with attempt + 1, so the old owner's commits are refused from then on.
public final class PostgresStore: Sendable {
    let db: PostgresDatabase
    /// This node's name: the lease owner it writes and the `nodes` row it keeps.
    public let node: String
    /// How long a job claim lasts without a heartbeat.
    public let leaseSeconds: Double
    /// How long an outbox batch claim lasts (heartbeats extend it too).
    public let outboxLeaseSeconds: Double
    /// The claims a reaper gives up on: a job whose lease expired this many times is failed
    /// instead of queued again (a series that kills or hangs every node that takes it).
    public let maxAttempts: Int
    /// The database URL, password hidden (what `JobStore.path` is for the SQLite file).
    public var path: String { PostgresDatabase.redacted(db.url) }
    public let jobsQueued = WorkSignal()
    public let outboxFilled = WorkSignal()
    /// Job id → the attempt this node claimed: the fencing token its commits carry.
    private let held = Mutex<[Int: Int]>([:])

    /// A process-unique default node name: host and pid.
    public static var defaultNodeName: String { "\(ProcessInfo.processInfo.hostName)/\(getpid())" }

    public init(url: String, node: String = PostgresStore.defaultNodeName, leaseSeconds: Double = 30,
                outboxLeaseSeconds: Double = 300, maxAttempts: Int = 3, poolSize: Int = 8) throws {
        precondition(leaseSeconds > 0 && outboxLeaseSeconds > 0 && maxAttempts >= 1)
        db = try PostgresDatabase(url: url, size: poolSize)
        self.node = node; self.leaseSeconds = leaseSeconds; self.outboxLeaseSeconds = outboxLeaseSeconds
        self.maxAttempts = maxAttempts
        try PostgresMigrations.apply(to: db)
    }

    /// The attempt this node holds on a job, if any.
    public func heldAttempt(job id: Int) -> Int? { held.withLock { $0[id] } }

    // MARK: ingest

    /// `JobStore.recordInstance`, with the instance's bytes: the file at `i.path` is read and
    /// stored in `instance_blobs` in the same transaction as the rows, so a commit means the
    /// bytes are in the database (an unreadable file fails the call and writes nothing).
    ///
    /// Two nodes receiving the same series or the same SOP instance at once: the series row
    /// is created with ON CONFLICT DO NOTHING and then locked (FOR UPDATE), which orders all
    /// of a series' instances; an instance of the same UID committed meanwhile under another
    /// series is found by the unique key, and the whole check runs again.
    @discardableResult
    public func recordInstance(_ i: InstanceRecord, sameContent: ((String) -> Bool?)? = nil, now: Double = WallClock.now()) throws -> RecordOutcome {
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: i.path)))
        } catch {
            throw UnreadableInstance(sopInstanceUID: i.sopInstanceUID, path: i.path, reason: error.localizedDescription)
        }
        return try db.write { tx in
            for _ in 0..<3 {
                if let outcome = try recordOnce(tx, i, bytes, sameContent, now) { return outcome }
            }
            throw PostgresError(sqlState: nil, message: "instance \(i.sopInstanceUID) kept colliding with concurrent writes of the same UID")
        }
    }

    /// The received file could not be read, so nothing was recorded (the sender gets no
    /// success and resends).
    public struct UnreadableInstance: Error, CustomStringConvertible, Sendable {
        public var sopInstanceUID: String
        public var path: String
        public var reason: String
        public var description: String { "instance \(sopInstanceUID): cannot read \(path) to store its bytes (\(reason)); nothing was recorded" }
    }

    /// One pass of `recordInstance` inside a savepoint; nil when a concurrent commit of the
    /// same SOP Instance UID was found and the pass must run again.
    private func recordOnce(_ tx: PGTransaction, _ i: InstanceRecord, _ bytes: [UInt8], _ sameContent: ((String) -> Bool?)?,
                            _ now: Double) throws -> RecordOutcome? {
        try tx.script("SAVEPOINT record")
        func refuse(_ why: String) throws -> RecordOutcome {
            try tx.script("ROLLBACK TO SAVEPOINT record")
            try Self.audit(tx, AuditEntry(kind: .series, outcome: "refused", actor: i.callingAE, seriesUID: i.seriesUID, detail: why), now)
            return RecordOutcome(isNew: false, supersededJob: nil, refused: why)
        }
        try tx.execute("""
            INSERT INTO series (series_uid, study_uid, patient_id, patient_name, accession_number, study_description,
                series_description, modality, calling_ae, first_received, last_received, state)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'receiving')
            ON CONFLICT (series_uid) DO NOTHING
            """, i.seriesUID, i.studyUID, i.patientID, i.patientName, i.accessionNumber, i.studyDescription,
            i.seriesDescription, i.modality, i.callingAE, now, now)
        guard let s = try tx.query("SELECT study_uid, patient_id, purged_at FROM series WHERE series_uid = ? FOR UPDATE", i.seriesUID).first else {
            throw PostgresError(sqlState: nil, message: "series \(i.seriesUID) vanished while its instance was recorded")
        }
        if let study = s["study_uid"].text, study != i.studyUID {
            return try refuse("instance \(i.sopInstanceUID) names study \(i.studyUID), but series \(i.seriesUID) belongs to study \(study); a Series Instance UID is bound to one study and patient")
        }
        if s["purged_at"].double == nil, let patient = s["patient_id"].text, patient != i.patientID {
            return try refuse("instance \(i.sopInstanceUID) names patient ID \"\(i.patientID)\", but series \(i.seriesUID) belongs to patient ID \"\(patient)\"; a Series Instance UID is bound to one study and patient")
        }
        if let old = try tx.query("SELECT series_uid, path, file_size FROM instances WHERE sop_instance_uid = ? FOR UPDATE", i.sopInstanceUID).first {
            let oldSeries = old["series_uid"].text ?? ""
            guard oldSeries == i.seriesUID else {
                return try refuse("SOP instance \(i.sopInstanceUID) is stored already, in series \(oldSeries); this one names series \(i.seriesUID): a SOP Instance UID identifies one object")
            }
            let oldPath = old["path"].text ?? ""
            let same = try sameAsStored(tx, i, oldPath: oldPath, bytes, sameContent)
            if same == false {
                return try refuse("SOP instance \(i.sopInstanceUID) of series \(i.seriesUID) was stored before with different content; the stored copy is kept (a changed image needs a new SOP Instance UID)")
            }
            if same == true {
                try tx.execute("UPDATE series SET last_received = ? WHERE series_uid = ?", now, i.seriesUID)
                try tx.script("RELEASE SAVEPOINT record")
                return RecordOutcome(isNew: false, supersededJob: nil, keptPath: oldPath)
            }
            try tx.execute("UPDATE instances SET path = ?, file_size = ?, transfer_syntax = ?, received_at = ? WHERE sop_instance_uid = ?",
                           i.path, i.fileSize, i.transferSyntax, now, i.sopInstanceUID)
            try Self.recordImage(tx, i)
            try tx.execute("""
                INSERT INTO instance_blobs (sop_instance_uid, size, data) VALUES (?, ?, ?)
                ON CONFLICT (sop_instance_uid) DO UPDATE SET size = excluded.size, data = excluded.data
                """, i.sopInstanceUID, bytes.count, bytes)
            try tx.execute("UPDATE series SET last_received = ?, bytes = bytes - ? + ? WHERE series_uid = ?",
                           now, old["file_size"].int ?? 0, i.fileSize, i.seriesUID)
            try tx.script("RELEASE SAVEPOINT record")
            return RecordOutcome(isNew: false, supersededJob: nil)
        }
        try tx.execute("""
            UPDATE series SET purged_at = NULL, instance_count = 0, bytes = 0, patient_id = ?, patient_name = ?, accession_number = ?,
                first_received = ?, state = 'receiving', completed_at = NULL
            WHERE series_uid = ? AND purged_at IS NOT NULL
            """, i.patientID, i.patientName, i.accessionNumber, now, i.seriesUID)
        let position = i.position.map { $0.map { String($0) }.joined(separator: "\\") }
        let inserted = try tx.query("""
            INSERT INTO instances (sop_instance_uid, series_uid, sop_class_uid, path, file_size, transfer_syntax,
                temporal_position, acquisition_number, instance_number, acquisition_time, content_time, position, received_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (sop_instance_uid) DO NOTHING RETURNING sop_instance_uid
            """, i.sopInstanceUID, i.seriesUID, i.sopClassUID, i.path, i.fileSize, i.transferSyntax,
            i.temporalPosition, i.acquisitionNumber, i.instanceNumber, i.acquisitionTime, i.contentTime, position, now)
        guard !inserted.isEmpty else {
            // Committed by another node since the look-up above (under another series: ours
            // is locked): look again from the start.
            try tx.script("ROLLBACK TO SAVEPOINT record")
            return nil
        }
        try Self.recordImage(tx, i)
        try tx.execute("INSERT INTO instance_blobs (sop_instance_uid, size, data) VALUES (?, ?, ?)", i.sopInstanceUID, bytes.count, bytes)
        try tx.execute("""
            UPDATE series SET instance_count = instance_count + 1, bytes = bytes + ?, last_received = ?,
                temporal_positions = COALESCE(?, temporal_positions),
                images_in_acquisition = COALESCE(?, images_in_acquisition)
            WHERE series_uid = ?
            """, i.fileSize, now, i.temporalPositions, i.imagesInAcquisition, i.seriesUID)
        var superseded: Int?
        if let job = try Self.latestJob(tx, series: i.seriesUID) {
            switch job.state {
            case .queued:
                try tx.execute("UPDATE jobs SET instances = instances + 1, updated_at = ? WHERE id = ?", now, job.id)
            case .running, .exporting:
                try tx.execute("UPDATE jobs SET state = 'superseded', lease_expires_at = NULL, finished_at = ?, updated_at = ? WHERE id = ?", now, now, job.id)
                try Self.addEvent(tx, job.id, .warning, "superseded: instance \(i.sopInstanceUID) arrived while the job was \(job.state.rawValue); a new job will cover the whole series", now)
                try Self.withdrawPendingResults(tx, job: job.id, why: "superseded", now: now)
                try tx.execute("UPDATE series SET state = 'receiving', completed_at = NULL WHERE series_uid = ?", i.seriesUID)
                superseded = job.id
            case .done, .failed, .cancelled, .superseded:
                try tx.execute("UPDATE series SET state = 'receiving', completed_at = NULL WHERE series_uid = ?", i.seriesUID)
            }
        }
        try tx.script("RELEASE SAVEPOINT record")
        return RecordOutcome(isNew: true, supersededJob: superseded)
    }

    /// Whether a re-sent instance is the stored one: the same path → nil (it takes its place);
    /// the same bytes → true; else the caller's `sameContent` on the stored copy — on this
    /// node's disk if it is there, else written from the database to a temporary file (the
    /// first copy may have reached another node).
    private func sameAsStored(_ tx: PGTransaction, _ i: InstanceRecord, oldPath: String, _ bytes: [UInt8],
                              _ sameContent: ((String) -> Bool?)?) throws -> Bool? {
        if oldPath == i.path { return nil }
        let stored = try tx.query("SELECT data FROM instance_blobs WHERE sop_instance_uid = ?", i.sopInstanceUID).first?["data"].bytes
        if stored == bytes { return true }
        guard let sameContent else { return true }
        if FileManager.default.fileExists(atPath: oldPath) || stored == nil { return sameContent(oldPath) }
        let tmp = NSTemporaryDirectory() + "perfd-stored-\(UUID().uuidString).dcm"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        guard FileManager.default.createFile(atPath: tmp, contents: Data(stored!)) else { return sameContent(oldPath) }
        return sameContent(tmp)
    }

    /// The acknowledged bytes of an instance, as received.
    public func instanceBytes(_ sopInstanceUID: String) throws -> [UInt8]? {
        try db.read { tx in try tx.query("SELECT data FROM instance_blobs WHERE sop_instance_uid = ?", sopInstanceUID).first?["data"].bytes }
    }

    /// (bytes as received, bytes as the server stores them after compression) over a series.
    public func blobSizes(ofSeries uid: String) throws -> (raw: Int, stored: Int) {
        try db.read { tx in
            let r = try tx.query("""
                SELECT COALESCE(SUM(b.size), 0) AS raw, COALESCE(SUM(pg_column_size(b.data)), 0) AS stored
                FROM instance_blobs b JOIN instances i ON i.sop_instance_uid = b.sop_instance_uid WHERE i.series_uid = ?
                """, uid).first
            return (r?["raw"].int ?? 0, r?["stored"].int ?? 0)
        }
    }

    public func dropUnacknowledged(paths: [String], now: Double = WallClock.now()) throws -> [String] {
        try db.write { tx in
            var dropped: [String] = []
            for path in paths {
                guard let row = try tx.query("""
                    SELECT i.sop_instance_uid, i.series_uid, i.file_size
                    FROM instances i JOIN series s ON s.series_uid = i.series_uid
                    WHERE i.path = ? AND s.purged_at IS NULL
                    """, path).first,
                      let sop = row["sop_instance_uid"].text, let series = row["series_uid"].text else { continue }
                _ = try tx.query("SELECT 1 AS one FROM series WHERE series_uid = ? FOR UPDATE", series)
                let job = try Self.latestJob(tx, series: series)
                guard job == nil || job?.state == .queued else { continue }
                try tx.execute("DELETE FROM instances WHERE sop_instance_uid = ?", sop)
                try tx.execute("UPDATE series SET instance_count = instance_count - 1, bytes = bytes - ? WHERE series_uid = ?",
                               row["file_size"].int ?? 0, series)
                if let job {
                    try tx.execute("UPDATE jobs SET instances = instances - 1, updated_at = ? WHERE id = ?", now, job.id)
                    try Self.addEvent(tx, job.id, .warning, "instance \(sop) dropped at start-up: its spool file \(path) is missing (never acknowledged; the sender resends it)", now)
                }
                dropped.append(sop)
            }
            return dropped
        }
    }

    static func latestJob(_ tx: PGTransaction, series: String) throws -> JobRecord? {
        try tx.query("SELECT * FROM jobs WHERE series_uid = ? ORDER BY id DESC LIMIT 1 FOR UPDATE", series).first.map { JobRecord($0) }
    }

    public func knownPaths() throws -> Set<String> {
        try db.read { tx in Set(try tx.query("SELECT path FROM instances").compactMap { $0["path"].text }) }
    }

    // MARK: series

    public func receivingSeries() throws -> [SeriesRecord] {
        try db.read { tx in try tx.query("SELECT * FROM series WHERE state = 'receiving' ORDER BY first_received").map { SeriesRecord($0) } }
    }

    public func series(_ uid: String) throws -> SeriesRecord? {
        try db.read { tx in try tx.query("SELECT * FROM series WHERE series_uid = ?", uid).first.map { SeriesRecord($0) } }
    }

    public func seriesShape(_ uid: String) throws -> (positions: Int, timepoints: Int) {
        try db.read { tx in
            let r = try tx.query("SELECT COUNT(DISTINCT position) AS p, COUNT(DISTINCT temporal_position) AS t FROM instances WHERE series_uid = ?", uid)
            return (r.first?["p"].int ?? 0, r.first?["t"].int ?? 0)
        }
    }

    /// Marks a receiving series complete and queues its job, in one transaction; nil when the
    /// series was no longer receiving (another node's tracker got there first: the row lock
    /// makes the second one wait and then find it complete).
    public func completeSeries(_ uid: String, reason: String, pipeline: String, now: Double = WallClock.now()) throws -> JobRecord? {
        defer { jobsQueued.ring() }
        return try db.write { tx in
            guard let s = try tx.query("SELECT * FROM series WHERE series_uid = ? AND state = 'receiving' FOR UPDATE", uid).first.map({ SeriesRecord($0) }),
                  s.state == "receiving" else { return nil }
            try tx.execute("UPDATE series SET state = 'complete', completed_at = ?, completion_reason = ? WHERE series_uid = ?", now, reason, uid)
            let rerun = try tx.query("SELECT COALESCE(MAX(rerun) + 1, 0) AS r FROM jobs WHERE series_uid = ? AND pipeline = ?", uid, pipeline).first?["r"].int ?? 0
            guard let id = try tx.query("""
                INSERT INTO jobs (series_uid, study_uid, pipeline, state, progress, instances, rerun, created_at, updated_at)
                VALUES (?, ?, ?, 'queued', 0, ?, ?, ?, ?) RETURNING id
                """, uid, s.studyUID, pipeline, s.instanceCount, rerun, now, now).first?["id"].int else {
                throw PostgresError(sqlState: nil, message: "the job of series \(uid) was not created")
            }
            try Self.addEvent(tx, id, .info, "queued: series complete (\(reason)), \(s.instanceCount) instances, pipeline \(pipeline)", now)
            try Self.audit(tx, AuditEntry(kind: .series, outcome: "stored", actor: s.callingAE, seriesUID: uid, jobID: id,
                                          detail: "\(s.instanceCount) instances, \(s.bytes) bytes, study \(s.studyUID); job \(id) queued (\(pipeline))"), now)
            try tx.execute("SELECT pg_notify('perfd_jobs', ?)", String(id))
            return try Self.job(tx, id)
        }
    }

    public func instances(ofSeries uid: String) throws -> [StoredInstance] {
        try db.read { tx in
            try tx.query("SELECT * FROM instances WHERE series_uid = ? ORDER BY instance_number, sop_instance_uid", uid).map {
                StoredInstance(sopInstanceUID: $0["sop_instance_uid"].text ?? "", path: $0["path"].text ?? "",
                               temporalPosition: $0["temporal_position"].int, acquisitionNumber: $0["acquisition_number"].int,
                               instanceNumber: $0["instance_number"].int, acquisitionTime: $0["acquisition_time"].text,
                               contentTime: $0["content_time"].text,
                               position: $0["position"].text.flatMap(StoredInstance.numbers),
                               image: StoredImage($0))
            }
        }
    }

    /// `JobStore.recordImage`: the image attributes of an instance row (pg003), written with
    /// the row in the same transaction; a record without them leaves the row marked so.
    static func recordImage(_ tx: PGTransaction, _ i: InstanceRecord) throws {
        guard let m = i.image else {
            try tx.execute("UPDATE instances SET header_recorded = false WHERE sop_instance_uid = ?", i.sopInstanceUID)
            return
        }
        try tx.execute("""
            UPDATE instances SET header_recorded = true, image_rows = ?, image_columns = ?, number_of_frames = ?, orientation = ?,
                pixel_spacing = ?, slice_thickness = ?, rescale_slope = ?, rescale_intercept = ?, photometric = ?,
                bits_allocated = ?, bits_stored = ?, pixel_representation = ?, samples_per_pixel = ?
            WHERE sop_instance_uid = ?
            """, m.rows, m.columns, m.frames, m.orientation, m.pixelSpacing, m.sliceThickness, m.rescaleSlope,
            m.rescaleIntercept, m.photometric, m.bitsAllocated, m.bitsStored, m.pixelRepresentation, m.samplesPerPixel,
            i.sopInstanceUID)
    }

    public func transferSyntaxes(ofSeries uid: String) throws -> [String] {
        try db.read { tx in
            try tx.query("SELECT DISTINCT transfer_syntax FROM instances WHERE series_uid = ? ORDER BY transfer_syntax", uid).compactMap { $0["transfer_syntax"].text }
        }
    }

    // MARK: jobs

    static func job(_ tx: PGTransaction, _ id: Int) throws -> JobRecord? {
        try tx.query("SELECT * FROM jobs WHERE id = ?", id).first.map { JobRecord($0) }
    }

    public func jobs(state: JobState? = nil, limit: Int = 1000) throws -> [JobRecord] {
        try db.read { tx in
            if let state {
                return try tx.query("SELECT * FROM jobs WHERE state = ? ORDER BY id DESC LIMIT ?", state.rawValue, limit).map { JobRecord($0) }
            }
            return try tx.query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", limit).map { JobRecord($0) }
        }
    }

    public func jobs(_ filter: JobFilter, limit: Int?) throws -> (jobs: [JobRecord], total: Int) {
        var conditions: [String] = []
        var args: [PGBindable?] = []
        if let s = filter.state { conditions.append("j.state = ?"); args.append(s.rawValue) }
        if let t = filter.since { conditions.append("j.created_at >= ?"); args.append(t) }
        if let p = filter.patientID { conditions.append("s.patient_id = ?"); args.append(p) }
        if let a = filter.accession { conditions.append("s.accession_number = ?"); args.append(a) }
        let whereSQL = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let from = "FROM jobs j LEFT JOIN series s ON s.series_uid = j.series_uid \(whereSQL)"
        return try db.read { tx in
            let total = try tx.query("SELECT COUNT(*) AS n \(from)", args).first?["n"].int ?? 0
            // LIMIT NULL: no limit.
            let rows = try tx.query("SELECT j.* \(from) ORDER BY j.id DESC LIMIT ?", args + [limit as PGBindable?]).map { JobRecord($0) }
            return (rows, total)
        }
    }

    public func job(_ id: Int) throws -> JobRecord? {
        try db.read { tx in try Self.job(tx, id) }
    }

    public func events(job id: Int) throws -> [JobEvent] {
        try db.read { tx in
            try tx.query("SELECT at, level, message FROM job_events WHERE job_id = ? ORDER BY id", id).map {
                JobEvent(at: $0["at"].double ?? 0, level: $0["level"].text ?? "", message: $0["message"].text ?? "")
            }
        }
    }

    public func stages(job id: Int) throws -> [StageRecord] {
        try db.read { tx in
            try tx.query("SELECT * FROM job_stages WHERE job_id = ? ORDER BY started_at", id).map {
                StageRecord(stage: $0["stage"].text ?? "", startedAt: $0["started_at"].double ?? 0,
                            finishedAt: $0["finished_at"].double, result: $0["result"].text)
            }
        }
    }

    /// Claims the next queued job for this node: one whose earlier lease expired (it had
    /// started: `started_at` set) before a fresh one, then oldest first, skipping rows another
    /// node is claiming (`FOR UPDATE SKIP LOCKED`). Sets attempt + 1, this node as owner and
    /// the expiry from the server's clock, in one statement.
    public func claimNextJob(excluding busy: Set<Int> = [], now: Double = WallClock.now()) throws -> JobRecord? {
        let claimed: (JobRecord, Int)? = try db.write { tx in
            guard let row = try tx.query("""
                WITH next AS (
                    SELECT id, started_at AS was_started, stage AS was_stage FROM jobs
                    WHERE state = 'queued' AND NOT (id = ANY (?::bigint[]))
                    ORDER BY (started_at IS NULL), id
                    LIMIT 1 FOR UPDATE SKIP LOCKED)
                UPDATE jobs j SET state = 'running', attempt = j.attempt + 1, lease_owner = ?,
                    lease_expires_at = now() + make_interval(secs => ?),
                    started_at = COALESCE(j.started_at, ?), updated_at = ?
                FROM next WHERE j.id = next.id
                RETURNING j.*, next.was_started, next.was_stage
                """, PGIntArray(busy), node, leaseSeconds, now, now).first else { return nil }
            let job = JobRecord(row)
            let attempt = row["attempt"].int ?? 0
            if row["was_started"].isNull {
                try Self.addEvent(tx, job.id, .info, "started (attempt \(attempt), node \(node))", now)
            } else {
                try Self.addEvent(tx, job.id, .info, "resumed at stage \(row["was_stage"].text ?? "start") on node \(node), attempt \(attempt): the lease of attempt \(attempt - 1) expired", now)
            }
            return (job, attempt)
        }
        guard let (job, attempt) = claimed else { return nil }
        // The fencing token this node's commits on the job carry.
        held.withLock { $0[job.id] = attempt }
        return job
    }

    /// How many times the job was taken up again after a lease expired, since it last
    /// started (a retry starts the count again).
    public func timesResumed(job id: Int) throws -> Int {
        try db.read { tx in
            try tx.query("""
                SELECT COUNT(*) AS n FROM job_events e JOIN jobs j ON j.id = e.job_id
                WHERE e.job_id = ? AND e.message LIKE 'resumed%' AND e.at >= COALESCE(j.started_at, 0)
                """, id).first?["n"].int ?? 0
        }
    }

    /// A commit refused because this node no longer holds the job's lease.
    public struct LeaseLost: Error, CustomStringConvertible, Sendable {
        public var job: Int
        public var node: String
        /// The attempt this node claimed (nil: it never claimed the job).
        public var heldAttempt: Int?
        public var currentAttempt: Int
        public var currentOwner: String?
        public var expired: Bool
        public var description: String {
            guard let heldAttempt else {
                return "job \(job): node \(node) never claimed it (attempt \(currentAttempt) is \(currentOwner ?? "nobody")'s); the commit is refused"
            }
            if heldAttempt == currentAttempt && currentOwner == node && expired {
                return "job \(job): the lease of node \(node) (attempt \(heldAttempt)) expired before this commit (no heartbeat in time); the commit is refused and the reaper queues the job again"
            }
            return "job \(job): node \(node) holds attempt \(heldAttempt), but the job is at attempt \(currentAttempt), owned by \(currentOwner ?? "nobody"): this node's lease expired and the job was claimed again; the commit is refused"
        }
    }

    /// The fence every stage commit passes, under the job row's lock: running at the attempt
    /// this node claimed, owned by this node, lease not expired (an exporting job: the attempt
    /// that rendered it). Throws `JobGone` for a job that stopped, `LeaseLost` otherwise.
    func fence(_ tx: PGTransaction, _ id: Int) throws {
        guard let r = try tx.query("""
            SELECT state, attempt, lease_owner, COALESCE(lease_expires_at <= now(), true) AS expired FROM jobs WHERE id = ? FOR UPDATE
            """, id).first else { throw JobGone(id: id, state: .failed) }
        let state = JobState(rawValue: r["state"].text ?? "") ?? .failed
        guard state == .running || state == .exporting else { throw JobGone(id: id, state: state) }
        let mine = held.withLock { $0[id] }
        let attempt = r["attempt"].int ?? 0, owner = r["lease_owner"].text, expired = r["expired"].bool ?? true
        let ok = state == .running ? (mine == attempt && owner == node && !expired) : (mine == attempt && owner == node)
        guard ok else {
            throw LeaseLost(job: id, node: node, heldAttempt: mine, currentAttempt: attempt, currentOwner: owner, expired: expired)
        }
    }

    public func beginStage(job id: Int, stage: String, now: Double = WallClock.now()) throws {
        try db.write { tx in
            try fence(tx, id)
            try tx.execute("UPDATE jobs SET stage = ?, progress = 0, updated_at = ? WHERE id = ?", stage, now, id)
            try tx.execute("""
                INSERT INTO job_stages (job_id, stage, started_at) VALUES (?, ?, ?)
                ON CONFLICT (job_id, stage) DO UPDATE SET started_at = excluded.started_at, finished_at = NULL
                """, id, stage, now)
        }
    }

    /// Progress is advisory: a stale owner's update changes nothing (no error).
    public func setProgress(job id: Int, _ progress: Double, now: Double = WallClock.now()) throws {
        let attempt = held.withLock { $0[id] }
        try db.write { tx in
            try tx.execute("""
                UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND state IN ('running', 'exporting')
                AND attempt = ? AND lease_owner = ?
                """, min(max(progress, 0), 1), now, id, attempt, node)
        }
    }

    public func finishStage(job id: Int, stage: String, result: String?, now: Double = WallClock.now()) throws {
        try db.write { tx in
            try fence(tx, id)
            try tx.execute("UPDATE job_stages SET finished_at = ?, result = ? WHERE job_id = ? AND stage = ?", now, result, id, stage)
            try tx.execute("UPDATE jobs SET progress = 1, updated_at = ? WHERE id = ?", now, id)
        }
    }

    public func finishedStages(job id: Int) throws -> [String: String] {
        try db.read { tx in
            var out: [String: String] = [:]
            for r in try tx.query("SELECT stage, result FROM job_stages WHERE job_id = ? AND finished_at IS NOT NULL", id) {
                out[r["stage"].text ?? ""] = r["result"].text ?? ""
            }
            return out
        }
    }

    public func setState(job id: Int, _ state: JobState, now: Double = WallClock.now()) throws {
        try db.write { tx in
            try fence(tx, id)
            let finished: Double? = state.isActive ? nil : now
            // A job leaving `running` ends its lease (its owner stays on record).
            try tx.execute("""
                UPDATE jobs SET state = ?, finished_at = ?, updated_at = ?,
                    lease_expires_at = CASE WHEN ? = 'running' THEN lease_expires_at ELSE NULL END WHERE id = ?
                """, state.rawValue, finished, now, state.rawValue, id)
            try Self.addEvent(tx, id, .info, state.rawValue, now)
        }
        if !state.isActive { held.withLock { _ = $0.removeValue(forKey: id) } }
    }

    public func setQC(job id: Int, _ qc: String) throws {
        try db.write { tx in try tx.execute("UPDATE jobs SET qc = ? WHERE id = ?", qc, id) }
    }

    /// `JobStore.fail`, fenced: a running job is failed only by the node holding its lease
    /// (a stale owner's failure is recorded as an event and changes nothing: false).
    @discardableResult
    public func fail(job id: Int, stage: String?, reason: String, now: Double = WallClock.now()) throws -> Bool {
        let attempt = held.withLock { $0[id] }
        let changed: Bool = try db.write { tx in
            let n = try tx.execute("""
                UPDATE jobs SET state = 'failed', error = ?, stage = COALESCE(?, stage), finished_at = ?, updated_at = ?,
                    lease_expires_at = NULL
                WHERE id = ? AND (state IN ('queued', 'exporting')
                                  OR (state = 'running' AND attempt = ? AND lease_owner = ? AND lease_expires_at > now()))
                """, reason, stage, now, now, id, attempt, node)
            let changed = n > 0
            var why = ""
            if !changed {
                let state = try tx.query("SELECT state FROM jobs WHERE id = ?", id).first?["state"].text.flatMap(JobState.init)
                why = state?.isActive == true ? " (this node no longer holds the job's lease)" : " (the job was no longer active)"
            }
            try Self.addEvent(tx, id, .error, "failed\(stage.map { " at \($0)" } ?? ""): \(reason)\(why)", now)
            return changed
        }
        if changed { held.withLock { _ = $0.removeValue(forKey: id) } }
        return changed
    }

    static func withdrawPendingResults(_ tx: PGTransaction, job id: Int, why: String, now: Double) throws {
        let n = try tx.execute("DELETE FROM outbox WHERE job_id = ? AND kind = 'result' AND state = 'pending'", id)
        if n > 0 { try addEvent(tx, id, .warning, "\(n) result files not sent (\(why))", now) }
    }

    /// `JobStore.retry`. The attempt counter is kept (it only grows: a fencing token that
    /// went back to an earlier value could let a stale owner's commit through).
    @discardableResult
    public func retry(job id: Int, actor: String = "", now: Double = WallClock.now()) throws -> JobRecord {
        defer { jobsQueued.ring() }
        return try db.write { tx in
            guard let job = try tx.query("SELECT * FROM jobs WHERE id = ? FOR UPDATE", id).first.map({ JobRecord($0) }) else { throw AdminError.noSuchJob(id) }
            guard !job.state.isActive else { throw AdminError.notRetryable(id, job.state) }
            let count = try tx.query("SELECT instance_count FROM series WHERE series_uid = ?", job.seriesUID).first?["instance_count"].int ?? job.instances
            let rerun = try tx.query("SELECT MAX(rerun) + 1 AS r FROM jobs WHERE series_uid = ? AND pipeline = ?",
                                     job.seriesUID, job.pipeline).first?["r"].int ?? job.rerun + 1
            try tx.execute("""
                UPDATE jobs SET state = 'queued', stage = NULL, progress = 0, error = NULL, qc = NULL, rerun = ?,
                    instances = ?, started_at = NULL, finished_at = NULL, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL
                WHERE id = ?
                """, rerun, count, now, id)
            try tx.execute("DELETE FROM job_stages WHERE job_id = ?", id)
            try tx.execute("DELETE FROM outbox WHERE job_id = ? AND kind = 'result'", id)
            try Self.addEvent(tx, id, .info, "retry requested by admin (was \(job.state.rawValue))", now)
            try Self.audit(tx, AuditEntry(kind: .admin, outcome: "retry", actor: actor, seriesUID: job.seriesUID, jobID: id,
                                          detail: "job \(id) queued again (was \(job.state.rawValue))"), now)
            try tx.execute("SELECT pg_notify('perfd_jobs', ?)", String(id))
            return try Self.job(tx, id)!
        }
    }

    /// `JobStore.cancel`; the lease ends with it, so its holder's next commit gets `JobGone`.
    @discardableResult
    public func cancel(job id: Int, actor: String = "", now: Double = WallClock.now()) throws -> JobRecord {
        try db.write { tx in
            guard let job = try tx.query("SELECT * FROM jobs WHERE id = ? FOR UPDATE", id).first.map({ JobRecord($0) }) else { throw AdminError.noSuchJob(id) }
            guard job.state.isActive else { throw AdminError.notCancellable(id, job.state) }
            try tx.execute("UPDATE jobs SET state = 'cancelled', finished_at = ?, updated_at = ?, lease_expires_at = NULL WHERE id = ?", now, now, id)
            try Self.addEvent(tx, id, .warning, "cancelled by admin", now)
            try Self.withdrawPendingResults(tx, job: id, why: "cancelled", now: now)
            try Self.audit(tx, AuditEntry(kind: .admin, outcome: "cancel", actor: actor, seriesUID: job.seriesUID, jobID: id,
                                          detail: "job \(id) cancelled (was \(job.state.rawValue))"), now)
            return try Self.job(tx, id)!
        }
    }

    public func addEvent(job id: Int, _ level: EventLevel, _ message: String, now: Double = WallClock.now()) throws {
        try db.write { tx in try Self.addEvent(tx, id, level, message, now) }
    }

    static func addEvent(_ tx: PGTransaction, _ id: Int, _ level: EventLevel, _ message: String, _ now: Double) throws {
        try tx.execute("INSERT INTO job_events (job_id, at, level, message) VALUES (?, ?, ?, ?)", id, now, level.rawValue, PeerText.escaped(message))
    }

    // MARK: leases

    /// A lease the reaper took back.
    public struct ReapedLease: Sendable, Equatable {
        public var job: Int
        public var attempt: Int
        public var owner: String
        /// When it expired, seconds since 1970 by the database's clock.
        public var expiredAt: Double
        /// True when the job was failed instead (its attempts reached `maxAttempts`).
        public var failed: Bool
    }

    /// Puts every running job whose lease expired (by the database's clock) back in the
    /// queue — and only those: a live lease is never touched. A job whose expired attempt was
    /// its `maxAttempts`th is failed with the reason instead. Rows being committed right now
    /// are skipped (SKIP LOCKED) and looked at next time.
    @discardableResult
    public func requeueExpiredLeases(now: Double = WallClock.now()) throws -> [ReapedLease] {
        let reaped: [ReapedLease] = try db.write { tx in
            let rows = try tx.query("""
                SELECT id, attempt, lease_owner, EXTRACT(EPOCH FROM lease_expires_at) AS expired_at FROM jobs
                WHERE state = 'running' AND lease_expires_at <= now() ORDER BY id FOR UPDATE SKIP LOCKED
                """)
            var out: [ReapedLease] = []
            for r in rows {
                let id = r["id"].int ?? 0, attempt = r["attempt"].int ?? 0, owner = r["lease_owner"].text ?? ""
                let at = r["expired_at"].double ?? 0
                if attempt >= maxAttempts {
                    let reason = "given up after \(attempt) attempts whose leases all expired (the node died or hung each time, last \(owner)); the series may stop perfd — look at it before a retry"
                    try tx.execute("""
                        UPDATE jobs SET state = 'failed', error = ?, finished_at = ?, updated_at = ?, lease_expires_at = NULL WHERE id = ?
                        """, reason, now, now, id)
                    try Self.addEvent(tx, id, .error, "failed: \(reason)", now)
                    out.append(ReapedLease(job: id, attempt: attempt, owner: owner, expiredAt: at, failed: true))
                } else {
                    try tx.execute("UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, updated_at = ? WHERE id = ?", now, id)
                    try Self.addEvent(tx, id, .warning, "lease of node \(owner) (attempt \(attempt)) expired at \(ISOTime.string(at)) without a heartbeat; queued again", now)
                    out.append(ReapedLease(job: id, attempt: attempt, owner: owner, expiredAt: at, failed: false))
                }
            }
            if out.contains(where: { !$0.failed }) { try tx.execute("SELECT pg_notify('perfd_jobs', 'requeued')") }
            return out
        }
        if reaped.contains(where: { !$0.failed }) { jobsQueued.ring() }
        return reaped
    }

    /// Extends this node's live job leases and outbox claims to the server's now() + their
    /// length. Returns the jobs whose lease was lost (expired, reaped, superseded, cancelled);
    /// they are forgotten here, so their later commits are refused.
    @discardableResult
    public func extendLeases() throws -> [Int] {
        let mine = held.withLock { $0 }
        let lost: [Int] = try db.write { tx in try extendLeases(tx, mine) }
        if !lost.isEmpty { held.withLock { for id in lost { $0.removeValue(forKey: id) } } }
        return lost
    }

    private func extendLeases(_ tx: PGTransaction, _ mine: [Int: Int]) throws -> [Int] {
        let ids = Array(mine.keys).sorted()
        let kept = try tx.query("""
            UPDATE jobs j SET lease_expires_at = now() + make_interval(secs => ?)
            FROM unnest(?::bigint[], ?::bigint[]) AS h(id, attempt)
            WHERE j.id = h.id AND j.attempt = h.attempt AND j.lease_owner = ? AND j.state = 'running' AND j.lease_expires_at > now()
            RETURNING j.id
            """, leaseSeconds, PGIntArray(ids), PGIntArray(ids.map { mine[$0]! }), node).compactMap { $0["id"].int }
        // Exporting jobs hold no lease: they are not lost.
        let exporting = try tx.query("""
            SELECT id FROM jobs WHERE id = ANY (?::bigint[]) AND state = 'exporting' AND lease_owner = ?
            """, PGIntArray(ids), node).compactMap { $0["id"].int }
        try tx.execute("""
            UPDATE outbox SET lease_expires_at = now() + make_interval(secs => ?)
            WHERE lease_owner = ? AND state = 'pending' AND lease_expires_at > now()
            """, outboxLeaseSeconds, node)
        return Array(Set(ids).subtracting(kept).subtracting(exporting)).sorted()
    }

    /// The job's lease as the database has it: (attempt, owner, seconds left by its clock).
    public func lease(job id: Int) throws -> (attempt: Int, owner: String?, secondsLeft: Double?)? {
        try db.read { tx in
            try tx.query("""
                SELECT attempt, lease_owner, EXTRACT(EPOCH FROM (lease_expires_at - now())) AS left_s FROM jobs WHERE id = ?
                """, id).first.map { ($0["attempt"].int ?? 0, $0["lease_owner"].text, $0["left_s"].double) }
        }
    }
}
