import Foundation
import Store

/// perfd's state: instances, series, jobs and their events, in one SQLite file.
/// Every method is one transaction.
public final class JobStore: Sendable {
    /// Only the store's own methods run SQL: the services and admin commands ask it.
    let db: Database
    /// The database file.
    public var path: String { db.path }
    /// Rung after a commit that queues a job (the job worker waits on it between polls).
    public let jobsQueued = WorkSignal()
    /// Rung after a commit that adds rows to the outbox (the exporter waits on it).
    public let outboxFilled = WorkSignal()

    public init(path: String) throws {
        db = try Database(path: path)
    }

    // The store's value types live in the Store target (no SQLite), where the services see
    // them; these names keep `JobStore.RecordOutcome` and the others readable where they were.
    public typealias RecordOutcome = Store.RecordOutcome
    public typealias EventLevel = Store.EventLevel
    public typealias JobGone = Store.JobGone
    public typealias JobFilter = Store.JobFilter
    public typealias AdminError = Store.AdminError

    // MARK: ingest

    /// Commits one received instance. An instance arriving after its series' job started
    /// supersedes that job and sends the series back to "receiving", so a new job covers the
    /// whole series.
    ///
    /// A SOP instance is stored once and never silently changed: a re-send whose data set
    /// `sameContent` (called with the stored copy's path, only when the UID is known) finds
    /// identical is kept once; other content under a known SOP Instance UID, a known one under
    /// another series, and an instance of a known series that names another study or patient
    /// are refused with an audit row. (`sameContent` nil: the content is taken as the same;
    /// it returning nil: the stored copy is unreadable, and the new one takes its place.)
    @discardableResult
    public func recordInstance(_ i: InstanceRecord, sameContent: ((String) -> Bool?)? = nil, now: Double = WallClock.now()) throws -> RecordOutcome {
        try db.write { tx in
            func refuse(_ why: String) throws -> RecordOutcome {
                try Self.audit(tx, AuditEntry(kind: .series, outcome: "refused", actor: i.callingAE, seriesUID: i.seriesUID,
                                              detail: why), now)
                return RecordOutcome(isNew: false, supersededJob: nil, refused: why)
            }
            if let s = try tx.query("SELECT study_uid, patient_id, purged_at FROM series WHERE series_uid = ?", i.seriesUID).first {
                // A series belongs to one study and one patient (a purged series has forgotten
                // its patient, not its study).
                if let study = s["study_uid"].text, study != i.studyUID {
                    return try refuse("instance \(i.sopInstanceUID) names study \(i.studyUID), but series \(i.seriesUID) belongs to study \(study); a Series Instance UID is bound to one study and patient")
                }
                if s["purged_at"].double == nil, let patient = s["patient_id"].text, patient != i.patientID {
                    return try refuse("instance \(i.sopInstanceUID) names patient ID \"\(i.patientID)\", but series \(i.seriesUID) belongs to patient ID \"\(patient)\"; a Series Instance UID is bound to one study and patient")
                }
            }
            let existing = try tx.query("SELECT series_uid, path, file_size FROM instances WHERE sop_instance_uid = ?", i.sopInstanceUID)
            if let old = existing.first {
                let oldSeries = old["series_uid"].text ?? ""
                guard oldSeries == i.seriesUID else {
                    return try refuse("SOP instance \(i.sopInstanceUID) is stored already, in series \(oldSeries); this one names series \(i.seriesUID): a SOP Instance UID identifies one object")
                }
                let oldPath = old["path"].text ?? ""
                let same: Bool? = oldPath == i.path ? nil : (sameContent.map { $0(oldPath) } ?? true)
                if same == false {
                    return try refuse("SOP instance \(i.sopInstanceUID) of series \(i.seriesUID) was stored before with different content; the stored copy is kept (a changed image needs a new SOP Instance UID)")
                }
                if same == true {
                    // An identical re-send: acknowledged, kept once.
                    try tx.execute("UPDATE series SET last_received = ? WHERE series_uid = ?", now, i.seriesUID)
                    return RecordOutcome(isNew: false, supersededJob: nil, keptPath: oldPath)
                }
                // The stored copy is gone or unreadable (or the new one is at its path): the
                // new one takes its place; keep one row.
                try tx.execute("UPDATE instances SET path = ?, file_size = ?, transfer_syntax = ?, received_at = ? WHERE sop_instance_uid = ?",
                               i.path, i.fileSize, i.transferSyntax, now, i.sopInstanceUID)
                try Self.recordImage(tx, i)
                try tx.execute("UPDATE series SET last_received = ?, bytes = bytes - ? + ? WHERE series_uid = ?",
                               now, old["file_size"].int ?? 0, i.fileSize, i.seriesUID)
                return RecordOutcome(isNew: false, supersededJob: nil)
            }
            try tx.execute("""
                INSERT INTO series (series_uid, study_uid, patient_id, patient_name, accession_number, study_description,
                    series_description, modality, calling_ae, first_received, last_received, state)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'receiving')
                ON CONFLICT(series_uid) DO NOTHING
                """, i.seriesUID, i.studyUID, i.patientID, i.patientName, i.accessionNumber, i.studyDescription,
                i.seriesDescription, i.modality, i.callingAE, now, now)
            // A series whose spool files retention purged, sent again: it starts over (its old
            // count would complete it at the first instance, and its files would never be
            // purged again), with the patient's name and ID back.
            try tx.execute("""
                UPDATE series SET purged_at = NULL, instance_count = 0, bytes = 0, patient_id = ?, patient_name = ?, accession_number = ?,
                    first_received = ?, state = 'receiving', completed_at = NULL
                WHERE series_uid = ? AND purged_at IS NOT NULL
                """, i.patientID, i.patientName, i.accessionNumber, now, i.seriesUID)
            let position = i.position.map { $0.map { String($0) }.joined(separator: "\\") }
            try tx.execute("""
                INSERT INTO instances (sop_instance_uid, series_uid, sop_class_uid, path, file_size, transfer_syntax,
                    temporal_position, acquisition_number, instance_number, acquisition_time, content_time, position, received_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, i.sopInstanceUID, i.seriesUID, i.sopClassUID, i.path, i.fileSize, i.transferSyntax,
                i.temporalPosition, i.acquisitionNumber, i.instanceNumber, i.acquisitionTime, i.contentTime, position, now)
            try Self.recordImage(tx, i)
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
                    try tx.execute("UPDATE jobs SET state = 'superseded', finished_at = ?, updated_at = ? WHERE id = ?", now, now, job.id)
                    try Self.addEvent(tx, job.id, .warning, "superseded: instance \(i.sopInstanceUID) arrived while the job was \(job.state.rawValue); a new job will cover the whole series", now)
                    try Self.withdrawPendingResults(tx, job: job.id, why: "superseded", now: now)
                    try tx.execute("UPDATE series SET state = 'receiving', completed_at = NULL WHERE series_uid = ?", i.seriesUID)
                    superseded = job.id
                case .done, .failed, .cancelled, .superseded:
                    try tx.execute("UPDATE series SET state = 'receiving', completed_at = NULL WHERE series_uid = ?", i.seriesUID)
                }
            }
            return RecordOutcome(isNew: true, supersededJob: superseded)
        }
    }

    /// Forgets instances whose spool file is gone, in series not yet handed to a job (or
    /// whose latest job is still queued): a power cut between the row's commit and the
    /// directory fsync, before the instance was acknowledged. Finished series are left to
    /// retention, which deletes files before rows. Returns the SOP instance UIDs dropped.
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

    /// The newest job of a series (the one a late or lost instance affects).
    static func latestJob(_ tx: Transaction, series: String) throws -> JobRecord? {
        try tx.query("SELECT * FROM jobs WHERE series_uid = ? ORDER BY id DESC LIMIT 1", series).first.map(JobRecord.init)
    }

    /// Every spool path the database knows, for start-up reconciliation.
    public func knownPaths() throws -> Set<String> {
        try db.read { tx in Set(try tx.query("SELECT path FROM instances").compactMap { $0["path"].text }) }
    }

    // MARK: series

    public func receivingSeries() throws -> [SeriesRecord] {
        try db.read { tx in try tx.query("SELECT * FROM series WHERE state = 'receiving' ORDER BY first_received").map(SeriesRecord.init) }
    }

    public func series(_ uid: String) throws -> SeriesRecord? {
        try db.read { tx in try tx.query("SELECT * FROM series WHERE series_uid = ?", uid).first.map(SeriesRecord.init) }
    }

    /// (distinct slice positions, distinct temporal positions) seen in a series.
    public func seriesShape(_ uid: String) throws -> (positions: Int, timepoints: Int) {
        try db.read { tx in
            let r = try tx.query("SELECT COUNT(DISTINCT position) AS p, COUNT(DISTINCT temporal_position) AS t FROM instances WHERE series_uid = ?", uid)
            return (r.first?["p"].int ?? 0, r.first?["t"].int ?? 0)
        }
    }

    /// Marks a receiving series complete and queues its job, in one transaction.
    /// Returns nil if the series was no longer receiving (someone else got there first).
    public func completeSeries(_ uid: String, reason: String, pipeline: String, now: Double = WallClock.now()) throws -> JobRecord? {
        defer { jobsQueued.ring() }
        return try db.write { tx in
            guard let s = try tx.query("SELECT * FROM series WHERE series_uid = ? AND state = 'receiving'", uid).first.map(SeriesRecord.init) else { return nil }
            try tx.execute("UPDATE series SET state = 'complete', completed_at = ?, completion_reason = ? WHERE series_uid = ?", now, reason, uid)
            let rerun = try tx.query("SELECT COALESCE(MAX(rerun) + 1, 0) AS r FROM jobs WHERE series_uid = ? AND pipeline = ?", uid, pipeline).first?["r"].int ?? 0
            try tx.execute("""
                INSERT INTO jobs (series_uid, study_uid, pipeline, state, progress, instances, rerun, created_at, updated_at)
                VALUES (?, ?, ?, 'queued', 0, ?, ?, ?, ?)
                """, uid, s.studyUID, pipeline, s.instanceCount, rerun, now, now)
            let id = tx.lastInsertRowID
            try Self.addEvent(tx, id, .info, "queued: series complete (\(reason)), \(s.instanceCount) instances, pipeline \(pipeline)", now)
            try Self.audit(tx, AuditEntry(kind: .series, outcome: "stored", actor: s.callingAE, seriesUID: uid, jobID: id,
                                          detail: "\(s.instanceCount) instances, \(s.bytes) bytes, study \(s.studyUID); job \(id) queued (\(pipeline))"), now)
            return try tx.query("SELECT * FROM jobs WHERE id = ?", id).first.map(JobRecord.init)
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

    /// The image attributes of an instance row (migration 007), written with the row in the
    /// same transaction; a record without them leaves the row marked as not having them.
    static func recordImage(_ tx: Transaction, _ i: InstanceRecord) throws {
        guard let m = i.image else {
            try tx.execute("UPDATE instances SET header_recorded = 0 WHERE sop_instance_uid = ?", i.sopInstanceUID)
            return
        }
        try tx.execute("""
            UPDATE instances SET header_recorded = 1, image_rows = ?, image_columns = ?, number_of_frames = ?, orientation = ?,
                pixel_spacing = ?, slice_thickness = ?, rescale_slope = ?, rescale_intercept = ?, photometric = ?,
                bits_allocated = ?, bits_stored = ?, pixel_representation = ?, samples_per_pixel = ?
            WHERE sop_instance_uid = ?
            """, m.rows, m.columns, m.frames, m.orientation, m.pixelSpacing, m.sliceThickness, m.rescaleSlope,
            m.rescaleIntercept, m.photometric, m.bitsAllocated, m.bitsStored, m.pixelRepresentation, m.samplesPerPixel,
            i.sopInstanceUID)
    }

    /// The transfer syntaxes the series' instances were received in.
    public func transferSyntaxes(ofSeries uid: String) throws -> [String] {
        try db.read { tx in
            try tx.query("SELECT DISTINCT transfer_syntax FROM instances WHERE series_uid = ? ORDER BY transfer_syntax", uid).compactMap { $0["transfer_syntax"].text }
        }
    }

    // MARK: jobs

    public func jobs(state: JobState? = nil, limit: Int = 1000) throws -> [JobRecord] {
        try db.read { tx in
            if let state {
                return try tx.query("SELECT * FROM jobs WHERE state = ? ORDER BY id DESC LIMIT ?", state.rawValue, limit).map(JobRecord.init)
            }
            return try tx.query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", limit).map(JobRecord.init)
        }
    }

    /// Jobs matching `filter`, newest first, at most `limit` (nil: all), and how many match in all.
    public func jobs(_ filter: JobFilter, limit: Int?) throws -> (jobs: [JobRecord], total: Int) {
        var conditions: [String] = []
        var args: [SQLConvertible?] = []
        if let s = filter.state { conditions.append("j.state = ?"); args.append(s.rawValue) }
        if let t = filter.since { conditions.append("j.created_at >= ?"); args.append(t) }
        if let p = filter.patientID { conditions.append("s.patient_id = ?"); args.append(p) }
        if let a = filter.accession { conditions.append("s.accession_number = ?"); args.append(a) }
        let whereSQL = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let from = "FROM jobs j LEFT JOIN series s ON s.series_uid = j.series_uid \(whereSQL)"
        return try db.read { tx in
            let total = try tx.query("SELECT COUNT(*) AS n \(from)", args).first?["n"].int ?? 0
            let rows = try tx.query("SELECT j.* \(from) ORDER BY j.id DESC LIMIT ?", args + [limit ?? -1]).map(JobRecord.init)
            return (rows, total)
        }
    }

    public func job(_ id: Int) throws -> JobRecord? {
        try db.read { tx in try tx.query("SELECT * FROM jobs WHERE id = ?", id).first.map(JobRecord.init) }
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

    /// The next job to work on: a running one (resumed after a restart) before a queued
    /// one, oldest first. The job is marked running in the same transaction.
    public func claimNextJob(excluding busy: Set<Int> = [], now: Double = WallClock.now()) throws -> JobRecord? {
        try db.write { tx in
            let candidates = try tx.query("""
                SELECT * FROM jobs WHERE state IN ('running', 'queued')
                ORDER BY CASE state WHEN 'running' THEN 0 ELSE 1 END, id
                """).map(JobRecord.init).filter { !busy.contains($0.id) }
            guard var job = candidates.first else { return nil }
            if job.state == .queued {
                try tx.execute("UPDATE jobs SET state = 'running', started_at = ?, updated_at = ? WHERE id = ?", now, now, job.id)
                try Self.addEvent(tx, job.id, .info, "started", now)
                job.state = .running
                job.startedAt = now
            } else {
                try Self.addEvent(tx, job.id, .info, "resumed after restart at stage \(job.stage ?? "start")", now)
            }
            return job
        }
    }

    /// How many times the job was taken up again after the daemon stopped while it ran,
    /// since it last started (each start-up that resumed it counts once; see `claimNextJob`;
    /// a retry starts the count again).
    public func timesResumed(job id: Int) throws -> Int {
        try db.read { tx in
            try tx.query("""
                SELECT COUNT(*) AS n FROM job_events e JOIN jobs j ON j.id = e.job_id
                WHERE e.job_id = ? AND e.message LIKE 'resumed after restart%' AND e.at >= COALESCE(j.started_at, 0)
                """, id).first?["n"].int ?? 0
        }
    }

    /// Records that a stage began. Throws `JobGone` when the job was cancelled or
    /// superseded meanwhile, so the worker stops.
    public func beginStage(job id: Int, stage: String, now: Double = WallClock.now()) throws {
        try db.write { tx in
            try Self.requireRunning(tx, id)
            try tx.execute("UPDATE jobs SET stage = ?, progress = 0, updated_at = ? WHERE id = ?", stage, now, id)
            try tx.execute("""
                INSERT INTO job_stages (job_id, stage, started_at) VALUES (?, ?, ?)
                ON CONFLICT(job_id, stage) DO UPDATE SET started_at = excluded.started_at, finished_at = NULL
                """, id, stage, now)
        }
    }

    public func setProgress(job id: Int, _ progress: Double, now: Double = WallClock.now()) throws {
        try db.write { tx in
            try tx.execute("UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND state IN ('running', 'exporting')",
                           min(max(progress, 0), 1), now, id)
        }
    }

    /// Commits a finished stage with its result summary (JSON text).
    public func finishStage(job id: Int, stage: String, result: String?, now: Double = WallClock.now()) throws {
        try db.write { tx in
            try Self.requireRunning(tx, id)
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
            try Self.requireRunning(tx, id)
            let finished: Double? = state.isActive ? nil : now
            try tx.execute("UPDATE jobs SET state = ?, finished_at = ?, updated_at = ? WHERE id = ?", state.rawValue, finished, now, id)
            try Self.addEvent(tx, id, .info, state.rawValue, now)
        }
    }

    public func setQC(job id: Int, _ qc: String) throws {
        try db.write { tx in try tx.execute("UPDATE jobs SET qc = ? WHERE id = ?", qc, id) }
    }

    /// Fails a job with a reason a person can act on; the stage stays recorded. Returns
    /// false when the job was no longer active (superseded or cancelled meanwhile): the
    /// error is still recorded as an event, but the job keeps its state.
    @discardableResult
    public func fail(job id: Int, stage: String?, reason: String, now: Double = WallClock.now()) throws -> Bool {
        try db.write { tx in
            try tx.execute("UPDATE jobs SET state = 'failed', error = ?, stage = COALESCE(?, stage), finished_at = ?, updated_at = ? WHERE id = ? AND state IN ('running', 'exporting', 'queued')",
                           reason, stage, now, now, id)
            let changed = tx.changes > 0
            try Self.addEvent(tx, id, .error, "failed\(stage.map { " at \($0)" } ?? ""): \(reason)\(changed ? "" : " (the job was no longer active)")", now)
            return changed
        }
    }

    /// Result files of a job that stopped (superseded, cancelled) and were not sent yet are
    /// taken out of the outbox: the next job sends the whole series under new UIDs, and a
    /// cancelled job sends nothing more. Failure notices stay.
    static func withdrawPendingResults(_ tx: Transaction, job id: Int, why: String, now: Double) throws {
        try tx.execute("DELETE FROM outbox WHERE job_id = ? AND kind = 'result' AND state = 'pending'", id)
        let n = tx.changes
        if n > 0 { try addEvent(tx, id, .warning, "\(n) result files not sent (\(why))", now) }
    }

    /// Queues a finished job again with the next re-run number (so its outputs get new UIDs).
    @discardableResult
    public func retry(job id: Int, actor: String = "", now: Double = WallClock.now()) throws -> JobRecord {
        defer { jobsQueued.ring() }
        return try db.write { tx in
            guard let job = try tx.query("SELECT * FROM jobs WHERE id = ?", id).first.map(JobRecord.init) else { throw AdminError.noSuchJob(id) }
            guard !job.state.isActive else { throw AdminError.notRetryable(id, job.state) }
            let count = try tx.query("SELECT instance_count FROM series WHERE series_uid = ?", job.seriesUID).first?["instance_count"].int ?? job.instances
            // The next re-run number of the series and pipeline, not of this job alone: a later
            // job of the series may hold this job's rerun + 1, and equal numbers mean equal UIDs.
            let rerun = try tx.query("SELECT MAX(rerun) + 1 AS r FROM jobs WHERE series_uid = ? AND pipeline = ?",
                                     job.seriesUID, job.pipeline).first?["r"].int ?? job.rerun + 1
            try tx.execute("""
                UPDATE jobs SET state = 'queued', stage = NULL, progress = 0, error = NULL, qc = NULL, rerun = ?,
                    instances = ?, started_at = NULL, finished_at = NULL, updated_at = ? WHERE id = ?
                """, rerun, count, now, id)
            try tx.execute("DELETE FROM job_stages WHERE job_id = ?", id)
            // The last run's result rows go: the new run writes its own under new UIDs, and
            // its export is judged on those alone (a file that failed last time would
            // otherwise fail the retry too). What reached the PACS stays in the audit log.
            try tx.execute("DELETE FROM outbox WHERE job_id = ? AND kind = 'result'", id)
            try Self.addEvent(tx, id, .info, "retry requested by admin (was \(job.state.rawValue))", now)
            try Self.audit(tx, AuditEntry(kind: .admin, outcome: "retry", actor: actor, seriesUID: job.seriesUID, jobID: id,
                                          detail: "job \(id) queued again (was \(job.state.rawValue))"), now)
            return try tx.query("SELECT * FROM jobs WHERE id = ?", id).first.map(JobRecord.init)!
        }
    }

    @discardableResult
    public func cancel(job id: Int, actor: String = "", now: Double = WallClock.now()) throws -> JobRecord {
        try db.write { tx in
            guard let job = try tx.query("SELECT * FROM jobs WHERE id = ?", id).first.map(JobRecord.init) else { throw AdminError.noSuchJob(id) }
            guard job.state.isActive else { throw AdminError.notCancellable(id, job.state) }
            try tx.execute("UPDATE jobs SET state = 'cancelled', finished_at = ?, updated_at = ? WHERE id = ?", now, now, id)
            try Self.addEvent(tx, id, .warning, "cancelled by admin", now)
            try Self.withdrawPendingResults(tx, job: id, why: "cancelled", now: now)
            try Self.audit(tx, AuditEntry(kind: .admin, outcome: "cancel", actor: actor, seriesUID: job.seriesUID, jobID: id,
                                          detail: "job \(id) cancelled (was \(job.state.rawValue))"), now)
            return try tx.query("SELECT * FROM jobs WHERE id = ?", id).first.map(JobRecord.init)!
        }
    }

    public func addEvent(job id: Int, _ level: EventLevel, _ message: String, now: Double = WallClock.now()) throws {
        try db.write { tx in try Self.addEvent(tx, id, level, message, now) }
    }

    static func requireRunning(_ tx: Transaction, _ id: Int) throws {
        let state = try tx.query("SELECT state FROM jobs WHERE id = ?", id).first?["state"].text.flatMap(JobState.init) ?? .failed
        guard state == .running || state == .exporting else { throw JobGone(id: id, state: state) }
    }

    static func addEvent(_ tx: Transaction, _ id: Int, _ level: EventLevel, _ message: String, _ now: Double) throws {
        try tx.execute("INSERT INTO job_events (job_id, at, level, message) VALUES (?, ?, ?, ?)", id, now, level.rawValue, PeerText.escaped(message))
    }

    // MARK: daemon and global events

    public func logEvent(kind: String, _ message: String, now: Double = WallClock.now()) throws {
        try db.write { tx in
            try tx.execute("INSERT INTO events (at, kind, message) VALUES (?, ?, ?)", now, kind, PeerText.escaped(message))
            // Keep the table bounded: the log file has the full history.
            try tx.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - 10000")
        }
    }

    public func recentEvents(limit: Int = 20) throws -> [GlobalEvent] {
        try db.read { tx in
            try tx.query("SELECT at, kind, message FROM events ORDER BY id DESC LIMIT ?", limit).map {
                GlobalEvent(at: $0["at"].double ?? 0, kind: $0["kind"].text ?? "", message: $0["message"].text ?? "")
            }
        }
    }

    public func daemonStarted(pid: Int, aeTitle: String, port: Int, now: Double = WallClock.now()) throws {
        try db.write { tx in
            try tx.execute("""
                INSERT INTO daemon (id, pid, ae_title, port, started_at, heartbeat_at, stopped_at) VALUES (1, ?, ?, ?, ?, ?, NULL)
                ON CONFLICT(id) DO UPDATE SET pid = excluded.pid, ae_title = excluded.ae_title, port = excluded.port,
                    started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL
                """, pid, aeTitle, port, now, now)
        }
    }

    public func daemonHeartbeat(now: Double = WallClock.now()) throws {
        try db.write { tx in try tx.execute("UPDATE daemon SET heartbeat_at = ? WHERE id = 1", now) }
    }

    public func daemonStopped(now: Double = WallClock.now()) throws {
        try db.write { tx in try tx.execute("UPDATE daemon SET stopped_at = ? WHERE id = 1", now) }
    }

    public func daemon() throws -> DaemonRecord? {
        try db.read { tx in
            try tx.query("SELECT * FROM daemon WHERE id = 1").first.map {
                DaemonRecord(pid: $0["pid"].int ?? 0, aeTitle: $0["ae_title"].text ?? "", port: $0["port"].int ?? 0,
                             startedAt: $0["started_at"].double ?? 0, heartbeatAt: $0["heartbeat_at"].double ?? 0,
                             stoppedAt: $0["stopped_at"].double)
            }
        }
    }

    public func jobCounts() throws -> [JobState: Int] {
        try db.read { tx in try Self.jobCounts(tx) }
    }

    static func jobCounts(_ tx: Transaction) throws -> [JobState: Int] {
        var out: [JobState: Int] = [:]
        for r in try tx.query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state") {
            if let s = JobState(rawValue: r["state"].text ?? "") { out[s] = r["n"].int ?? 0 }
        }
        return out
    }

    /// Recent jobs whose QC flagged something (head motion, a perfusion warning, withheld volumes).
    public func recentMotion(limit: Int = 5) throws -> [JobRecord] {
        try db.read { tx in try tx.query("SELECT * FROM jobs WHERE qc IS NOT NULL AND qc != 'ok' ORDER BY updated_at DESC LIMIT ?", limit).map(JobRecord.init) }
    }

    public func recentFailures(limit: Int = 5) throws -> [JobRecord] {
        try db.read { tx in try tx.query("SELECT * FROM jobs WHERE state = 'failed' ORDER BY finished_at DESC LIMIT ?", limit).map(JobRecord.init) }
    }
}
