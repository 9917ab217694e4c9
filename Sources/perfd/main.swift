import ArgumentParser
import DICOM
import Foundation
import JobStore
import Logging
import PerfdCore
import Inference

@main
struct Perfd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perfd",
        abstract: "CT perfusion daemon: receives CTP series over DICOM, computes derived NCCT or perfusion maps, sends them back to the PACS.",
        discussion: "Start with `perfd check-config --config perfd.yaml`, then `perfd serve`. `perfd status` shows what the daemon is doing.",
        subcommands: [Serve.self, Status.self, Jobs.self, Show.self, Retry.self, Cancel.self, CheckConfig.self, RunCommand.self, ModelCommand.self, PhantomCommand.self])
}

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Path of perfd.yaml.")
    var config: String = "/etc/perfd/perfd.yaml"

    func load() throws -> Config {
        do { return try Config.load(path: config) } catch { throw CLIError("\(error)") }
    }

    func store() throws -> (Config, JobStore) {
        let c = try load()
        do { return (c, try JobStore(path: c.database)) } catch {
            throw CLIError("cannot open the database \(c.database): \(error) (check `database` in \(config) and its permissions)")
        }
    }
}

/// A one-line error for stderr; ArgumentParser prints it and exits non-zero.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(data: try e.encode(value), encoding: .utf8)!)
}

func makeLogger(level: String) -> Logger {
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    var logger = Logger(label: "perfd")
    logger.logLevel = Logger.Level(rawValue: level) ?? .info
    return logger
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the daemon (the systemd unit's ExecStart). SIGTERM drains gracefully.")
    @OptionGroup var options: ConfigOption

    func run() async throws {
        let config = try options.load()
        let logger = makeLogger(level: config.logLevel)
        let daemon: Daemon
        do { daemon = try Daemon(config: config, logger: logger) } catch { throw CLIError("cannot start: \(error)") }
        try await daemon.run(logger: logger)
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One screen: listener, series being received, jobs per state, running jobs, failures, spool disk use.")
    @OptionGroup var options: ConfigOption
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let (config, store) = try options.store()
        let report = try StatusReport.gather(store: store, config: config)
        if json { try printJSON(report) } else { print(report.text()) }
    }
}

struct Jobs: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List jobs, newest first.")
    @OptionGroup var options: ConfigOption
    @Option(help: "Only jobs in this state (\(JobState.allCases.map(\.rawValue).joined(separator: ", "))).") var state: String?
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let (_, store) = try options.store()
        var filter: JobState?
        if let state {
            guard let s = JobState(rawValue: state) else {
                throw CLIError("unknown state \"\(state)\"; use one of \(JobState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter = s
        }
        let jobs = try store.jobs(state: filter)
        if json { try printJSON(jobs); return }
        if jobs.isEmpty { print("no jobs"); return }
        print("ID".padding(6) + "STATE".padding(11) + "STAGE".padding(10) + "PIPELINE".padding(18) + "INST".padding(6) + "SERIES")
        for j in jobs {
            print("\(j.id)".padding(6) + j.state.rawValue.padding(11) + (j.stage ?? "-").padding(10) + j.pipeline.padding(18)
                  + "\(j.instances)".padding(6) + j.seriesUID + (j.error.map { "  error: \($0)" } ?? ""))
        }
    }
}

struct JobDetail: Encodable {
    var job: JobRecord
    var stages: [StageRecord]
    var events: [JobEvent]
    var outbox: [OutboxRow]
    var report: String?
}

struct OutboxRow: Encodable {
    var destination: String
    var series_uid: String
    var state: String
    var attempts: Int
    var last_error: String?
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One job: stages, timings, events, errors, outputs.")
    @OptionGroup var options: ConfigOption
    @Argument(help: "Job id (see `perfd jobs`).") var job: Int
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let (_, store) = try options.store()
        guard let j = try store.job(job) else { throw CLIError("no job \(job); `perfd jobs` lists them") }
        let outbox = try store.outbox(job: job).map {
            OutboxRow(destination: $0.destination, series_uid: $0.seriesUID, state: $0.state, attempts: $0.attempts, last_error: $0.lastError)
        }
        let detail = JobDetail(job: j, stages: try store.stages(job: job), events: try store.events(job: job), outbox: outbox,
                               report: try store.report(job: job))
        if json { try printJSON(detail); return }
        print("job \(j.id): \(j.state.rawValue)\(j.stage.map { " at \($0)" } ?? "")  pipeline \(j.pipeline)  re-run \(j.rerun)")
        print("series \(j.seriesUID) (study \(j.studyUID)), \(j.instances) instances")
        if let e = j.error { print("error: \(e)") }
        if let qc = j.qc { print("registration QC: \(qc)") }
        if !detail.stages.isEmpty {
            print("stages:")
            for s in detail.stages {
                let dur = s.finishedAt.map { String(format: "%.2f s", $0 - s.startedAt) } ?? "unfinished"
                print("  \(s.stage.padding(10)) \(dur)\(s.result.map { "  \($0)" } ?? "")")
            }
        }
        if !outbox.isEmpty {
            print("outputs:")
            var groups: [String: [OutboxRow]] = [:]
            for o in outbox { groups["\(o.series_uid) → \(o.destination)", default: []].append(o) }
            for (k, rows) in groups.sorted(by: { $0.key < $1.key }) {
                let sent = rows.filter { $0.state == "sent" }.count
                print("  \(k): \(sent)/\(rows.count) sent\(rows.compactMap(\.last_error).last.map { "  (last error: \($0))" } ?? "")")
            }
        }
        print("events:")
        let f = ISO8601DateFormatter()
        for e in detail.events { print("  \(f.string(from: Date(timeIntervalSince1970: e.at)))  \(e.level.padding(8)) \(e.message)") }
    }
}

struct Retry: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Queue a failed, cancelled, superseded or done job again (its outputs get new UIDs).")
    @OptionGroup var options: ConfigOption
    @Argument(help: "Job id.") var job: Int
    func run() throws {
        let (_, store) = try options.store()
        do { let j = try store.retry(job: job); print("job \(j.id) queued again (re-run \(j.rerun))") } catch { throw CLIError("\(error)") }
    }
}

struct Cancel: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a queued or running job (a running job stops at its next stage boundary).")
    @OptionGroup var options: ConfigOption
    @Argument(help: "Job id.") var job: Int
    func run() throws {
        let (_, store) = try options.store()
        do { let j = try store.cancel(job: job); print("job \(j.id) cancelled") } catch { throw CLIError("\(error)") }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-config", abstract: "Validate perfd.yaml and explain every problem.")
    @OptionGroup var options: ConfigOption
    func run() throws {
        let c = try options.load()
        var notes: [String] = []
        if c.allowedPeers.isEmpty { notes.append("allowed_peers is empty: every sender will be refused") }
        if c.destinations.isEmpty { notes.append("no destinations: results stay local") }
        // The spool (and database) directory must exist or be creatable by this user.
        for (key, path) in [("spool_dir", c.spoolDir), ("database", (c.database as NSString).deletingLastPathComponent)] {
            var existing = path
            while !existing.isEmpty && existing != "/" && !FileManager.default.fileExists(atPath: existing) {
                existing = (existing as NSString).deletingLastPathComponent
            }
            if !FileManager.default.isWritableFile(atPath: existing.isEmpty ? "." : existing) {
                notes.append("\(key): \(existing) is not writable by this user; perfd serve will not be able to use \(path)")
            }
        }
        print("\(options.config): OK — AE \(c.aeTitle) on port \(c.port), \(c.allowedPeers.count) allowed peers, \(c.destinations.count) destinations, default pipeline \(c.defaultPipeline)")
        for n in notes { print("note: \(n)") }
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a pipeline offline on a folder of DICOM files: output DICOM, report.json and maps/*.nii.")
    @Argument(help: "Folder with the CTP series (searched recursively for DICOM files).") var input: String
    @Option(help: "Output folder.") var output: String
    @Option(help: "Pipeline: \(Config.pipelineNames.joined(separator: ", ")).") var pipeline = "baseline-mean03"

    func run() throws {
        guard Config.pipelineNames.contains(pipeline) else {
            throw CLIError("unknown pipeline \"\(pipeline)\"; use one of \(Config.pipelineNames.joined(separator: ", "))")
        }
        var files: [String] = []
        guard let e = FileManager.default.enumerator(atPath: input) else { throw CLIError("cannot read the folder \(input)") }
        for case let rel as String in e where !rel.hasSuffix(".json") && !rel.hasSuffix(".nii") {
            let path = input + "/" + rel
            var dir: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &dir), !dir.boolValue { files.append(path) }
        }
        guard !files.isEmpty else { throw CLIError("no files in \(input)") }
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let processing = Processing(pipelineName: pipeline, outputDirectory: output)
        do {
            let (report, outputs) = try processing.run(paths: files, observer: TerminalObserver())
            for o in outputs { print("  \(o.description): \(o.instances) files") }
            print("wrote \(output)/report.json, \(report.maps.keys.sorted().map { "maps/\($0).nii" }.joined(separator: ", ")) (total \(String(format: "%.2f", report.timingsS["total"] ?? 0)) s)")
        } catch {
            throw CLIError("\(error)")
        }
    }
}

/// Prints stages as they go; a progress line on a terminal.
final class TerminalObserver: StageObserver, @unchecked Sendable {
    // @unchecked Sendable: used from the one thread that runs the command.
    let tty = isatty(STDOUT_FILENO) == 1
    var started = Date()
    func begin(_ stage: String) throws {
        started = Date()
        print("\(stage)...", terminator: tty ? "" : "\n")
        fflush(nil)
    }
    func progress(_ stage: String, _ fraction: Double) {
        guard tty else { return }
        print("\r\(stage)... \(Int(fraction * 100))%", terminator: "")
        fflush(nil)
    }
    func finish(_ stage: String, result: [String: Any]) throws {
        print("\(tty ? "\r" : "")\(stage) done in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
    }
}

struct PhantomCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "phantom", abstract: "Write a synthetic CTP series as DICOM files, with its truth in truth.json.")
    @Option(help: "Output directory.") var output: String
    @Option(help: "Rows and columns (square images).") var size = 512
    @Option(help: "Slices per time point.") var slices = 8
    @Option(help: "Time points (at least 2; scanners send 19 or more).") var timepoints = 19
    @Option(help: "Seconds between time points.") var interval = 2.0
    @Option(help: "Slice thickness and spacing in mm.") var sliceThickness = 5.0
    @Option(help: "Image noise σ in HU.") var noise = 10.0
    @Option(help: "Random seed (same seed, same pixels).") var seed: UInt64 = 1
    @Option(help: "Transfer syntax: explicit, implicit, big-endian, deflated, jpeg-lossless, jpeg-ls, rle.") var transferSyntax = "explicit"
    @Option(help: "Study Instance UID to use (default: a new one).") var studyUid: String?
    @Option(help: "Series description.") var seriesDescription = "CTP phantom"
    @Option(help: "Random rigid head motion per time point: DEGREES,MILLIMETRES at most (e.g. 5,5); the poses go to truth.json.") var motion: String?

    func validate() throws {
        guard (8...1024).contains(size) else { throw ValidationError("--size must be between 8 and 1024") }
        guard timepoints >= 1 else { throw ValidationError("--timepoints must be at least 1") }
        guard slices >= 1 else { throw ValidationError("--slices must be at least 1") }
    }

    func run() throws {
        let syntaxes: [String: TransferSyntax] = ["explicit": .explicitLittleEndian, "implicit": .implicitLittleEndian,
                                                  "big-endian": .explicitBigEndian, "deflated": .deflated,
                                                  "jpeg-lossless": .jpegLossless, "jpeg-ls": .jpegLSLossless, "rle": .rle]
        guard let ts = syntaxes[transferSyntax] else {
            throw CLIError("unknown transfer syntax \"\(transferSyntax)\"; use one of \(syntaxes.keys.sorted().joined(separator: ", "))")
        }
        var o = PhantomOptions()
        o.size = size; o.slices = slices; o.timepoints = timepoints; o.frameInterval = interval
        o.sliceThickness = sliceThickness; o.noiseSigma = noise; o.seed = seed; o.transferSyntax = ts
        o.studyUID = studyUid; o.seriesDescription = seriesDescription
        if let motion {
            let parts = motion.split(separator: ",").compactMap { Double($0) }
            guard parts.count == 2, parts.allSatisfy({ $0 >= 0 }) else {
                throw CLIError("--motion takes DEGREES,MILLIMETRES, e.g. --motion 5,5")
            }
            o.motion = (parts[0], parts[1])
        }
        let r = try Phantom.write(to: output, options: o)
        print("wrote \(r.files.count) files (\(timepoints) time points × \(slices) slices, \(size)×\(size)) to \(output); series \(r.seriesUID)")
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self + " " : self + String(repeating: " ", count: n - count) }
}

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Run or describe a ConvLSTM model directory (model.json + weights.safetensors).",
        subcommands: [ModelRun.self, ModelInfo.self, ModelSgemm.self])
}

struct ModelRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the raw network (no pre/post-processing) on a float32 .npy: (T, H, W) or (T, D, H, W) in, (C, …) out.")
    @Argument(help: "Model directory.") var model: String
    @Option(help: "Input .npy (float32).") var input: String
    @Option(help: "Output .npy.") var output: String
    @Option(help: "Threads (BLAS and directions).") var threads = 2
    @Option(help: "Compute in tiles of this many voxels per spatial axis (bounded memory).") var tile: Int?
    @Option(help: "Halo around each tile (default: the exact halo, so tiled equals untiled).") var halo: Int?

    func run() throws {
        do {
            let m = try ConvLSTMModel(directory: model, threads: threads)
            let x = try NPY.read(input)
            let start = Date()
            let y: Tensor
            if let tile {
                let spatial = Array(x.shape.dropFirst()), T = x.shape[0]
                y = try m.runTiled(shape: spatial, timepoints: T, tile: tile, halo: halo, read: { origin, size in
                    // Gather the box from the (T, spatial…) array.
                    var out: [Float] = []
                    out.reserveCapacity(T * size.reduce(1, *))
                    let inner = size.last!, boxRows = size.dropLast().reduce(1, *)
                    for t in 0..<T {
                        for r in 0..<boxRows {
                            var rem = r, offset = 0, step = spatial.last!
                            for a in Swift.stride(from: spatial.count - 2, through: 0, by: -1) {
                                offset += (origin[a] + rem % size[a]) * step
                                rem /= size[a]
                                step *= spatial[a]
                            }
                            let base = t * spatial.reduce(1, *) + offset + origin.last!
                            out.append(contentsOf: x.data[base..<(base + inner)])
                        }
                    }
                    return out
                })
            } else {
                y = try m.run(x)
            }
            let seconds = Date().timeIntervalSince(start)
            try NPY.write(y, to: output)
            let voxels = Double(x.shape.dropFirst().reduce(1, *))
            let gflops = m.flopsPerVoxel(timepoints: x.shape[0]) * voxels / seconds / 1e9
            FileHandle.standardError.write(Data(String(format: "%@ → %@ in %.3f s (%.1f GFLOP/s)\n", "\(x.shape)", "\(y.shape)", seconds, gflops).utf8))
        } catch {
            throw CLIError("\(error)")
        }
    }
}

struct ModelInfo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Print the architecture, parameter count and FLOPs per voxel.")
    @Argument(help: "Model directory.") var model: String
    @Option(help: "Time points for the FLOP count (default: what the model was trained on).") var timepoints: Int?

    func run() throws {
        do { print(try ConvLSTMModel(directory: model, threads: 1).describe(timepoints: timepoints)) } catch { throw CLIError("\(error)") }
    }
}

struct ModelSgemm: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sgemm", abstract: "Measure OpenBLAS sgemm GFLOP/s on a ConvLSTM-step shape (for benchmarks).")
    @Option(help: "Rows (voxels).") var m = 65536
    @Option(help: "Columns (4f).") var n = 128
    @Option(help: "Inner dimension (k^d·(C_in+f)).") var k = 576
    @Option(help: "Threads.") var threads = 2
    func run() throws {
        print(String(format: "sgemm %dx%dx%d, %d threads: %.1f GFLOP/s", m, n, k, threads, SgemmBenchmark.gflops(m: m, n: n, k: k, threads: threads)))
    }
}
