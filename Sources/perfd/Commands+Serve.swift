import ArgumentParser
import DICOM
import Foundation
import JobStore
import Logging
import PerfdCore
import Inference

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the daemon (the systemd unit's ExecStart). SIGTERM drains gracefully.")
    @OptionGroup var options: ConfigOption

    func run() async throws {
        let config = try options.load()
        let logger = makeLogger(level: config.logLevel)
        // Patient data: every file and directory perfd creates is its user's alone.
        umask(0o077)
        let daemon: Daemon
        do { daemon = try Daemon(config: config, logger: logger) } catch { throw CLIError("cannot start: \(error)") }
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
            let (report, outputs) = try processing.run(paths: files, observer: TerminalObserver())
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
