import Foundation
import JobStore
import Logging
import ServiceLifecycle
import Volume

/// Runs queued jobs through their stages, committing each stage before the next starts,
/// so a restart resumes a running job where it stood.
public struct JobWorkerService: Service {
    let store: JobStore
    let config: Config
    let logger: Logger
    let poll: Duration

    public init(store: JobStore, config: Config, logger: Logger, poll: Duration = .milliseconds(250)) {
        self.store = store; self.config = config; self.logger = logger; self.poll = poll
    }

    /// Where a job keeps its intermediate and final files.
    public static func workDirectory(config: Config, job: Int) -> String {
        let base = (config.spoolDir as NSString).deletingLastPathComponent
        return "\(base.isEmpty ? "." : base)/work/job-\(job)"
    }

    public func run() async throws {
        let busy = BusySet()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<config.workers {
                group.addTask {
                    while !Task.isCancelled && !Task.isShuttingDownGracefully {
                        let claimed: JobRecord? = await busy.claim { excluded in
                            do { return try store.claimNextJob(excluding: excluded) } catch {
                                logger.error("job queue: \(error)"); return nil
                            }
                        }
                        guard let job = claimed else {
                            try? await Task.sleep(for: poll)
                            continue
                        }
                        await onThread { process(job) }
                        await busy.release(job.id)
                    }
                }
            }
        }
    }

    /// Runs all remaining stages of one job (blocking; call off the cooperative pool).
    public func process(_ job: JobRecord) {
        let workDir = Self.workDirectory(config: config, job: job.id)
        var stage = "assemble"
        do {
            try FileManager.default.createDirectory(atPath: workDir + "/maps", withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            let done = try store.finishedStages(job: job.id)
            if done["pipeline"] != nil {
                try store.setState(job: job.id, .done)
                return
            }
            try store.beginStage(job: job.id, stage: stage)
            let start = Date()
            let paths = try store.instances(ofSeries: job.seriesUID).map(\.path)
            let series = try Assembler.assemble(paths: paths)
            try store.finishStage(job: job.id, stage: stage, result: Self.json([
                "shape": [series.timepoints, series.depth, series.height, series.width],
                "spacing_mm": [series.geometry.spacing.x, series.geometry.spacing.y, series.geometry.spacing.z],
                "frame_times_s": series.frameTimes, "temporal_source": series.temporalSource,
                "seconds": Date().timeIntervalSince(start),
            ]))
            logger.info("job \(job.id): assembled \(series.timepoints)×\(series.depth)×\(series.height)×\(series.width) (\(series.temporalSource))")

            stage = "pipeline"
            try store.beginStage(job: job.id, stage: stage)
            let pStart = Date()
            let pipeline = try Pipelines.make(job.pipeline)
            let store = self.store, id = job.id
            let outputs = try pipeline.run(series) { p in try? store.setProgress(job: id, p) }
            var files: [String] = []
            for o in outputs {
                let path = "\(workDir)/maps/\(o.name).nii"
                try NIfTI.write(o.volume, to: path, description: "perfd \(job.pipeline) \(o.name) [\(o.unit)]")
                files.append(path)
            }
            try store.finishStage(job: job.id, stage: stage, result: Self.json([
                "outputs": outputs.map { ["name": $0.name, "unit": $0.unit] }, "files": files,
                "seconds": Date().timeIntervalSince(pStart),
            ]))
            try store.setState(job: job.id, .done)
            logger.info("job \(job.id) done: \(outputs.map(\.name).joined(separator: ", "))")
        } catch let gone as JobStore.JobGone {
            logger.notice("job \(job.id) stopped: \(gone)")
        } catch {
            let reason = "\(error)"
            logger.error("job \(job.id) failed at \(stage): \(reason)")
            try? store.fail(job: job.id, stage: stage, reason: reason)
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

/// Runs blocking work (file reads, SQLite, number crunching) on its own thread and
/// resumes the caller when it ends, so the cooperative pool is never held.
func onThread(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        let t = Thread { body(); c.resume() }
        t.stackSize = 8 << 20
        t.start()
    }
}
