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
