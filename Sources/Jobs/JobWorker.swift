import Config
import DICOM
import Foundation
import Ingest
import Store
import Logging
import Operations
import Pipelines
import Rendering
import ServiceLifecycle
import Synchronization
import Volume

/// Runs queued jobs through their stages, committing each stage before the next starts,
/// so a restart resumes a running job where it stood.
public struct JobWorkerService: Service {
    let store: any PerfdStore
    let config: Config
    let logger: Logger
    let poll: Duration
    /// Counts each finished perfusion job's QC outcome for /metrics.
    let metrics: PerfdMetrics?
    let clock: any DaemonClock

    public init(store: any PerfdStore, config: Config, logger: Logger, poll: Duration = .milliseconds(250), metrics: PerfdMetrics? = nil,
                clock: any DaemonClock = LiveClock()) {
        self.store = store; self.config = config; self.logger = logger; self.poll = poll; self.metrics = metrics; self.clock = clock
    }

    /// Where a job keeps its intermediate and final files.
    public static func workDirectory(config: Config, job: Int) -> String {
        let base = (config.spoolDir as NSString).deletingLastPathComponent
        return "\(base.isEmpty ? "." : base)/work/job-\(job)"
    }

    public func run() async throws {
        let busy = BusySet()
        // One long-lived thread per worker: a job runs for seconds to minutes, off the pool.
        let executor = BlockingExecutor(threads: config.workers, name: "perfd-job")
        defer { executor.stop() }
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<config.workers {
                group.addTask {
                    // Woken early when this process queues a job (a series completed).
                    await PollingLoop.run(every: poll, wakeOn: store.jobsQueued, clock: clock) {
                        let claimed: JobRecord? = await busy.claim { excluded in
                            do { return try store.claimNextJob(excluding: excluded, now: clock.now()) } catch {
                                logger.error("job queue: \(error)"); return nil
                            }
                        }
                        guard let job = claimed else { return false }
                        await executor.run { process(job) }
                        await busy.release(job.id)
                        return true
                    }
                }
            }
        }
    }

    /// Start-ups that may resume one job before it is failed: a series that crashes the
    /// daemon would otherwise crash it at every restart and hold up every job behind it.
    public static let maxResumes = 2

    /// Runs all remaining stages of one job (blocking; call off the cooperative pool).
    public func process(_ job: JobRecord) {
        let workDir = Self.workDirectory(config: config, job: job.id)
        let observer = StoreObserver(store: store, job: job.id)
        if let n = try? store.timesResumed(job: job.id), n >= Self.maxResumes {
            let stage = job.stage ?? "assemble"
            let reason = "perfd stopped \(n + 1) times while processing this job (last at stage \(stage)); it is failed so that the jobs behind it run — the series may crash perfd: keep its files for a bug report, `perfd retry \(job.id)` tries again"
            logger.error("job \(job.id): \(reason)")
            fail(job, stage: stage, reason: reason, notice: "perfd stopped \(n + 1) times while processing this series", workDir: workDir)
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            let instances = try store.instances(ofSeries: job.seriesUID)
            let paths = instances.map(\.path)
            if let short = try shortfall(job, instances: paths.count) {
                // A partial series gives a wrong result that looks like a right one (a core
                // of 0 ml): it is failed, never processed.
                let reason = "incomplete series: received \(short) the series declares (NumberOfTemporalPositions × ImagesInAcquisition); the scanner stopped sending — send the whole series again"
                logger.error("job \(job.id): \(reason)")
                fail(job, stage: "assemble", reason: reason, notice: "incomplete series: received \(short)", workDir: workDir)
                return
            }
            if let first = paths.first, let what = Self.ownOutput(first) {
                // perfd's derived NCCT is a CT Image, which perfd accepts: a PACS rule that
                // forwards every CT sends it back. It is not processed and gets no failure
                // notice (a notice per echo would fill the study).
                let reason = "this series is perfd's own output (\(what)), sent back to perfd — probably by a PACS routing rule that forwards every CT: not processed; leave series with Manufacturer \"perfd\" out of that rule"
                logger.warning("job \(job.id): \(reason)")
                _ = try store.fail(job: job.id, stage: "assemble", reason: reason)
                return
            }
            let rule = config.pipelines.first { $0.pipeline == job.pipeline }
            let processing = Processing(pipelineName: job.pipeline, rerun: job.rerun, outputDirectory: workDir, job: job.id,
                                        motionThresholdMM: config.motionThresholdMM,
                                        modelDirectory: config.pipelines.first { $0.pipeline == job.pipeline && $0.model != nil }?.model,
                                        fallbackPipeline: rule.map { $0.fallback } ?? Config.defaultFallback,
                                        slabMM: config.analysisSlabMM,
                                        memoryBudget: MemoryBudget(limitGB: config.memoryLimitGB / Double(max(1, config.workers))))
            // Assembly takes the headers recorded at ingest; only pixel data is read from the files.
            let (report, outputs) = try processing.run(observer: observer) { try StoredHeaders.sliceHeaders(instances) }
            if let r = report.registration {
                // The job's QC: the perfusion checks' outcome when there are any, else the registration's flag.
                try store.setQC(job: job.id, report.qc?.line ?? r.qc)
                if r.qc == "motion" {
                    try store.addEvent(job: job.id, .warning, "head motion: max displacement \(r.maxDisplacementMM) mm (threshold \(config.motionThresholdMM) mm)\(r.note.map { "; \($0)" } ?? "")")
                }
            }
            if let qc = report.qc {
                metrics?.add("perfd_job_qc_total{outcome=\"\(qc.outcome.rawValue)\"}")
                for c in qc.flagged where c.name != "motion" {
                    metrics?.add("perfd_qc_flags_total{check=\"\(c.name)\",outcome=\"\(c.outcome)\"}")
                    try store.addEvent(job: job.id, .warning, "QC \(c.name) \(c.outcome): \(c.reason)")
                }
                if let f = qc.fallback { try store.addEvent(job: job.id, .warning, "\(f): results are perfusion-svd's") }
            }
            var entries: [OutboxEntry] = []
            for d in config.destinations {
                let dest = try store.destinationID(aeTitle: d.aeTitle, host: d.host, port: d.port)
                for o in outputs {
                    for (n, f) in o.files.enumerated() {
                        entries.append(OutboxEntry(destinationID: dest, seriesUID: o.seriesUID,
                                                   sopInstanceUID: o.instanceUIDs[n], path: f, kind: .result))
                    }
                }
            }
            try store.finishRender(job: job.id, result: Self.json(["outputs": outputs.map { ["series_uid": $0.seriesUID, "description": $0.description, "instances": $0.instances] }]),
                                   report: report.json(), outbox: entries)
            logger.info("job \(job.id): rendered \(outputs.count) series; \(entries.isEmpty ? "done" : "exporting \(entries.count) files")")
        } catch let gone as JobGone {
            logger.notice("job \(job.id) stopped: \(gone)")
        } catch {
            let reason = "\(error)"
            let stage = observer.current ?? "assemble"
            logger.error("job \(job.id) failed at \(stage): \(reason)")
            fail(job, stage: stage, reason: reason, notice: reason, workDir: workDir)
        }
    }

    /// A short description when the file is one perfd wrote (Manufacturer "perfd", Image
    /// Type DERIVED), else nil.
    static func ownOutput(_ path: String) -> String? {
        guard let f = try? DicomFile(path: path), f.string("Manufacturer") == "perfd",
              let type = f.string("ImageType"), type.hasPrefix("DERIVED") else { return nil }
        return "\(f.string("SeriesDescription") ?? "no description"), Manufacturer perfd, Image Type \(type)"
    }

    /// What the job's series lacks of the count it declares, or nil when it is all there
    /// (or declares nothing).
    func shortfall(_ job: JobRecord, instances: Int) throws -> String? {
        guard let s = try store.series(job.seriesUID) else { return nil }
        let shape = try store.seriesShape(job.seriesUID)
        return SeriesCompletion.shortfall(SeriesCompletion.Snapshot(
            instanceCount: instances, temporalPositions: s.temporalPositions, imagesInAcquisition: s.imagesInAcquisition,
            distinctPositions: shape.positions, distinctTimepoints: shape.timepoints, lastReceived: s.lastReceived))
    }

    /// Fails the job and sends the failure notice (`notice` is the reason it shows). A job
    /// superseded or cancelled meanwhile stays so, and sends no notice: its successor (or
    /// nobody) speaks for the series.
    func fail(_ job: JobRecord, stage: String, reason: String, notice: String, workDir: String) {
        metrics?.add("perfd_jobs_failed_total{stage=\"\(stage)\"}")
        if (try? store.fail(job: job.id, stage: stage, reason: reason)) ?? true {
            sendFailureNotice(job: job, stage: stage, reason: notice, workDir: workDir)
        }
    }

    /// Renders the one-image "processing failed" series and queues it for every destination.
    func sendFailureNotice(job: JobRecord, stage: String, reason: String, workDir: String) {
        do {
            var source = SourceInfo()
            if let first = try store.instances(ofSeries: job.seriesUID).first, let s = try? SourceInfo.read(path: first.path) {
                source = s
            } else {
                source.studyUID = job.studyUID
                source.seriesUID = job.seriesUID
            }
            // Any instance of the series received in a lossy transfer syntax marks the notice too.
            for ts in (try? store.transferSyntaxes(ofSeries: job.seriesUID)) ?? [] {
                source.lossyCompressionMethods = LossyCompression.merge(source.lossyCompressionMethods,
                                                                         LossyCompression.method(transferSyntax: ts).map { [$0] })
            }
            let writer = SecondaryCaptureWriter(source: source, key: [job.seriesUID, job.pipeline, "failure", String(job.id), String(job.rerun)],
                                                directory: workDir + "/dicom")
            let picture = Pictures.failureNotice(seriesDescription: source.seriesDescription, seriesUID: job.seriesUID,
                                                 stage: stage, reason: reason, job: job.id)
            let out = try writer.writeRGB([picture], output: "failure-notice", seriesNumber: Processing.failureNoticeSeriesNumber(rerun: job.rerun),
                                          description: "perfd PROCESSING FAILED - \(job.pipeline)" + (job.rerun > 0 ? " re-run \(job.rerun)" : ""),
                                          derivation: "perfd could not process this series: \(reason)")
            let entries = try config.destinations.flatMap { d in
                let dest = try store.destinationID(aeTitle: d.aeTitle, host: d.host, port: d.port)
                return zip(out.files, out.instanceUIDs).map { OutboxEntry(destinationID: dest, seriesUID: out.seriesUID,
                                                                          sopInstanceUID: $1, path: $0, kind: .failureNotice) }
            }
            try store.enqueueNotice(job: job.id, entries)
            try store.addEvent(job: job.id, .info, "failure notice queued for \(config.destinations.count) destination(s)")
        } catch {
            logger.error("job \(job.id): cannot render the failure notice: \(error)")
        }
    }

    static func json(_ object: Any) -> String {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }
}

/// Jobs being worked on in this process, so two workers never take the same one.
actor BusySet {
    private var ids: Set<Int> = []
    func claim(_ take: (Set<Int>) -> JobRecord?) -> JobRecord? {
        guard let job = take(ids) else { return nil }
        ids.insert(job.id)
        return job
    }
    func release(_ id: Int) { ids.remove(id) }
}

/// Commits each stage of a job as the processing reports it.
final class StoreObserver: StageObserver, Sendable {
    let store: any PerfdStore
    let job: Int
    /// When progress was last committed. Stages may report from several threads at once
    /// (motion correction registers time points in parallel).
    let lastProgress = Mutex(Date.distantPast)
    private let stage = Mutex<String?>(nil)
    /// The stage that began last (where a failure is recorded).
    var current: String? { stage.withLock { $0 } }

    init(store: any PerfdStore, job: Int) { self.store = store; self.job = job }

    func begin(_ stage: String) throws {
        self.stage.withLock { $0 = stage }
        try store.beginStage(job: job, stage: stage)
        // Fault-injection knob for crash tests: hold each committed stage for a while so a
        // test can kill the daemon mid-job. Unset in production.
        if let pause = ProcessInfo.processInfo.environment["PERFD_STAGE_PAUSE_SECONDS"].flatMap(Double.init) {
            Thread.sleep(forTimeInterval: pause)
        }
    }

    func progress(_ stage: String, _ fraction: Double) {
        // At most a few commits a second; the clock is read and set under the lock.
        let due: Bool = lastProgress.withLock { last in
            guard Date().timeIntervalSince(last) > 0.25 else { return false }
            last = Date()
            return true
        }
        if due { try? store.setProgress(job: job, fraction) }
    }

    func finish(_ stage: String, result: [String: Any]) throws {
        try store.finishStage(job: job, stage: stage, result: JobWorkerService.json(result))
    }
}
