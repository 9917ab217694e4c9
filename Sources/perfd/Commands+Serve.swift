import ArgumentParser
import Config
import DICOM
import Foundation
import Jobs
import JobStore
import Logging
import PerfdCore
import Inference
import Pipelines
import Synchronization

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the daemon (the systemd unit's ExecStart). SIGTERM drains gracefully.")
    @OptionGroup var options: ConfigOption

    func run() async throws {
        let config = try options.load()
        let logger = makeLogger(level: config.logLevel, format: config.logFormat)
        // Patient data: every file and directory perfd creates is its user's alone.
        umask(0o077)
        let daemon: Daemon
        do { daemon = try Daemon(config: config, configPath: options.config, logger: logger) } catch { throw CLIError("cannot start: \(error)") }
        try await daemon.run(logger: logger)
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a pipeline offline on a folder of DICOM files: output DICOM, report.json and maps/*.nii.")
    @Argument(help: "Folder with the CTP series (searched recursively for DICOM files).") var input: String
    @Option(help: "Output folder.") var output: String
    @Option(help: "Pipeline: \(Config.pipelineNames.joined(separator: ", ")).") var pipeline = "baseline-mean03"
    @Option(help: "Model directory for ncct/perfusion (model.json + weights.safetensors); default: the shipped model.") var model: String?
    @Option(help: "What perfusion runs instead on a series outside its model's training envelope: perfusion-svd, or none (volumes withheld).") var fallback = "perfusion-svd"
    @Option(name: .customLong("slab-mm"), help: "Average thin slices into analysis slabs of at most this many mm (0: analyse every slice as it is).") var slabMM = Processing.defaultSlabMM
    @Option(name: .customLong("memory-limit-gb"), help: "Memory the run may use (GB); default: three quarters of the machine's.") var memoryLimitGB: Double?
    @Flag(help: "Machine-readable output on stdout (progress goes to stderr).") var json = false

    struct Summary: Encodable {
        struct Output: Encodable { var description: String; var series_uid: String; var instances: Int; var files: [String] }
        var output: String
        var pipeline: String
        var outputs: [Output]
        var qc: String?
        var qc_flags: [String]
        var maps: [String]
        var timings_s: [String: Double]
    }

    func run() throws {
        guard Config.pipelineNames.contains(pipeline) else {
            throw CLIError("unknown pipeline \"\(pipeline)\"; use one of \(Config.pipelineNames.joined(separator: ", "))")
        }
        var files: [String] = []
        guard let e = FileManager.default.enumerator(atPath: input) else { throw CLIError("cannot read the folder \(input)") }
        for case let rel as String in e where ![".json", ".nii", ".npy"].contains(where: { rel.hasSuffix($0) }) {
            let path = input + "/" + rel
            var dir: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &dir), !dir.boolValue { files.append(path) }
        }
        guard !files.isEmpty else { throw CLIError("no files in \(input)") }
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        guard ["perfusion-svd", "none"].contains(fallback) else { throw CLIError("--fallback must be perfusion-svd or none") }
        guard slabMM >= 0, slabMM <= 100 else { throw CLIError("--slab-mm must be between 0 and 100") }
        guard (memoryLimitGB ?? 1) > 0 else { throw CLIError("--memory-limit-gb must be positive") }
        let processing = Processing(pipelineName: pipeline, outputDirectory: output, modelDirectory: model,
                                    fallbackPipeline: fallback == "none" ? nil : fallback, slabMM: slabMM,
                                    memoryBudget: MemoryBudget(limitGB: memoryLimitGB ?? MemoryBudget.machineDefaultGB))
        do {
            let (report, outputs) = try processing.run(paths: files, observer: TerminalObserver(toStderr: json))
            if json {
                try printJSON(Summary(output: output, pipeline: pipeline,
                                      outputs: outputs.map { .init(description: $0.description, series_uid: $0.seriesUID, instances: $0.instances, files: $0.files) },
                                      qc: report.qc?.line, qc_flags: report.qc?.flagged.map { "\($0.name) \($0.outcome): \($0.reason)" } ?? [],
                                      maps: report.maps.keys.sorted().map { "\(output)/maps/\($0).nii" }, timings_s: report.timingsS))
                return
            }
            for o in outputs { print("  \(o.description): \(o.instances) files") }
            if let qc = report.qc {
                print("QC: \(qc.line)\(qc.fallback.map { " (\($0))" } ?? "")")
                for c in qc.flagged { print("  \(c.name) \(c.outcome): \(c.reason)") }
            }
            print("wrote \(output)/report.json, \(report.maps.keys.sorted().map { "maps/\($0).nii" }.joined(separator: ", ")) (total \(String(format: "%.2f", report.timingsS["total"] ?? 0)) s)")
        } catch {
            throw CLIError("\(error)")
        }
    }
}

/// Prints stages as they go with their in-stage progress (the percentages the daemon
/// records on the job): one updating line on a terminal, a line per 10 % step otherwise.
final class TerminalObserver: StageObserver, Sendable {
    // begin/finish come from the thread that runs the command; progress also from the
    // threads a stage fans out to (concurrentPerform in registration and the maps).
    let fd: Int32
    let tty: Bool
    let started = Mutex(Date())
    let lastStep = Mutex(-1)
    init(toStderr: Bool = false) {
        fd = toStderr ? STDERR_FILENO : STDOUT_FILENO
        tty = isatty(fd) == 1
    }
    func say(_ s: String) {
        let b = Array(s.utf8)
        _ = b.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
    func begin(_ stage: String) throws {
        started.withLock { $0 = Date() }
        lastStep.withLock { $0 = 0 }
        fflush(nil)
        say(tty ? "\(stage)... 0%" : "\(stage)... 0%\n")
    }
    func progress(_ stage: String, _ fraction: Double) {
        let percent = Int((min(max(fraction, 0), 1) * 100).rounded(.down))
        if tty {
            say("\r\(stage)... \(percent)%")
        } else if percent < 100, let step = lastStep.withLock({ last -> Int? in
            guard percent / 10 > last else { return nil }
            last = percent / 10
            return last
        }) {
            say("\(stage)... \(step * 10)%\n")
        }
    }
    func finish(_ stage: String, result: [String: Any]) throws {
        say("\(tty ? "\r" : "")\(stage) done in \(String(format: "%.2f", Date().timeIntervalSince(started.withLock { $0 }))) s\n")
    }
}
