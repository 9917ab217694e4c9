import Foundation
import Inference

/// Finds the model directory a learned pipeline runs.
///
/// In order: an explicit directory (`perfd run --model DIR`, or the config rule's `model:`),
/// which must hold a model; otherwise the default model's name (`ncct-clstm`,
/// `perfusion-clstm`) under `$PERFD_MODELS`, under `share/perfd/models` beside the
/// executable's prefix (an installed `/usr/local/bin/perfd` finds
/// `/usr/local/share/perfd/models`), under `/usr/share/perfd/models`, and under `models/` of
/// a source checkout that holds the executable (`.build/release/perfd`) or the current
/// directory.
public enum ModelLocator {
    /// Default model names by pipeline name (from `PipelineKind.defaultModel`).
    public static let defaultModels = Dictionary(uniqueKeysWithValues: PipelineKind.allCases.compactMap { k in
        k.defaultModel.map { (k.rawValue, $0) }
    })

    /// This process's executable: /proc/self/exe, so `perfd` started through PATH (argv[0]
    /// "perfd", no directory) still finds share/perfd/models beside its own prefix.
    public static func currentExecutable() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n > 0 { return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        return CommandLine.arguments.first ?? ""
    }

    /// The directories searched for a default model, first match wins.
    public static func searchRoots(environment: [String: String] = ProcessInfo.processInfo.environment,
                                   executable: String = ModelLocator.currentExecutable(),
                                   currentDirectory: String = FileManager.default.currentDirectoryPath) -> [String] {
        var roots: [String] = []
        if let env = environment["PERFD_MODELS"], !env.isEmpty { roots.append(env) }
        let exe = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
        roots.append(exe.deletingLastPathComponent().appendingPathComponent("share/perfd/models").path)
        roots.append("/usr/local/share/perfd/models")
        roots.append("/usr/share/perfd/models")
        // A source checkout: walk up from the executable (…/.build/release/perfd) to a models/ folder.
        var dir = exe
        for _ in 0..<5 {
            roots.append(dir.appendingPathComponent("models").path)
            dir = dir.deletingLastPathComponent()
        }
        roots.append(currentDirectory + "/models")
        var seen = Set<String>()
        return roots.filter { seen.insert($0).inserted }
    }

    /// The model directory for `pipeline` (its task), or an error that names where it looked and the fix.
    public static func locate(pipeline: String, explicit: String?,
                              environment: [String: String] = ProcessInfo.processInfo.environment,
                              executable: String = ModelLocator.currentExecutable(),
                              currentDirectory: String = FileManager.default.currentDirectoryPath) throws -> String {
        let fm = FileManager.default
        if let explicit {
            guard fm.fileExists(atPath: explicit + "/model.json") else {
                throw PipelineError(message: "model directory \(explicit) for pipeline \"\(pipeline)\" has no model.json; "
                                    + "point `model:` (config) or --model at a folder written by models/convert.py (model.json + weights.safetensors)")
            }
            return explicit
        }
        guard let name = defaultModels[pipeline] else {
            throw PipelineError(message: "pipeline \"\(pipeline)\" does not run a model")
        }
        let roots = searchRoots(environment: environment, executable: executable, currentDirectory: currentDirectory)
        for root in roots where fm.fileExists(atPath: "\(root)/\(name)/model.json") {
            return "\(root)/\(name)"
        }
        throw PipelineError(message: "default model \"\(name)\" for pipeline \"\(pipeline)\" not found (looked in "
                            + roots.map { "\($0)/\(name)" }.joined(separator: ", ")
                            + "); install it to /usr/local/share/perfd/models/\(name), set PERFD_MODELS to the folder that holds \(name)/, "
                            + "or give the pipeline rule a `model:` directory")
    }

    /// Loads the model at `directory` and checks that it does `pipeline`'s task.
    public static func load(pipeline: String, directory: String, threads: Int) throws -> ConvLSTMModel {
        let model: ConvLSTMModel
        do { model = try ConvLSTMModel(directory: directory, threads: threads) } catch {
            throw PipelineError(message: "cannot load the model for pipeline \"\(pipeline)\" from \(directory): \(error)")
        }
        guard model.spec.task == pipeline else {
            throw PipelineError(message: "model \(directory) is for task \"\(model.spec.task)\", not \"\(pipeline)\"; "
                                + "point the pipeline at a model.json with \"task\": \"\(pipeline)\"")
        }
        guard model.spec.spatialDims == 2 else {
            throw PipelineError(message: "model \(directory) is \(model.spec.spatialDims)D; pipeline \"\(pipeline)\" runs 2D models slice by slice")
        }
        guard !model.outputHasTime else {
            throw PipelineError(message: "model \(directory) returns a sequence; pipeline \"\(pipeline)\" needs a last layer with return_sequences false")
        }
        let kind = try PipelineKind(named: pipeline)
        let wanted = kind.outputs
        let names = (model.spec.outputs ?? []).map(\.name)
        guard names == wanted, model.spec.layers.last?.filters == wanted.count, model.spec.inputNormalisation != nil else {
            throw PipelineError(message: "model \(directory): model.json must give input_normalisation and outputs named \(wanted) "
                                + "(found \(names)) with unit, scale and offset, and a head with \(wanted.count) output channels")
        }
        // The perfusion pipeline prepares one of the inputs of `PerfusionInput`; the ncct
        // pipeline feeds HU, one channel.
        let preprocessing = model.spec.preprocessing ?? (kind.isPerfusion ? PerfusionInput.preprocessings[0] : "hu")
        let known = kind.isPerfusion ? PerfusionInput.preprocessings : ["hu"]
        guard known.contains(preprocessing) else {
            throw PipelineError(message: "model \(directory): preprocessing \"\(preprocessing)\" is not one pipeline \"\(pipeline)\" knows (\(known.joined(separator: ", ")))")
        }
        let channels = PerfusionInput.channels(for: preprocessing)
        guard model.inputChannels == channels else {
            throw PipelineError(message: "model \(directory): preprocessing \"\(preprocessing)\" gives \(channels) input channel\(channels > 1 ? "s" : ""), "
                                + "the first layer takes \(model.inputChannels)")
        }
        return model
    }
}
