import Foundation
import Volume

/// A named quantitative result with its unit, e.g. ("ncct", "HU") or ("cbf", "ml/100g/min").
public struct QuantitativeVolume: Sendable {
    public var name: String
    public var unit: String
    public var volume: Volume3D
    public init(name: String, unit: String, volume: Volume3D) { self.name = name; self.unit = unit; self.volume = volume }
}

/// A method that turns a (registered) 4D series into quantitative volumes; rendering turns
/// those into DICOM series.
public protocol Pipeline: Sendable {
    var name: String { get }
    func run(_ series: Series4D, progress: @Sendable (Double) -> Void) throws -> [QuantitativeVolume]
    /// The volumes and the figures for report.json's `summary` (perfusion volumes, the
    /// arterial and venous curves). Pipelines without figures keep the default: none.
    func runWithSummary(_ series: Series4D, progress: @Sendable (Double) -> Void) throws -> PipelineOutput
}

public struct PipelineOutput: Sendable {
    public var volumes: [QuantitativeVolume]
    public var summary: [String: SummaryValue]
    /// Perfusion pipelines: 1 core, 2 penumbra, 0 elsewhere (written as maps/lesion.nii and
    /// drawn on the summary page).
    public var lesion: Volume3D?
    /// Perfusion pipelines: how the arterial input was chosen (report.json `arterial_input`).
    public var arterialInput: ArterialInputReport?
    public init(volumes: [QuantitativeVolume], summary: [String: SummaryValue] = [:], lesion: Volume3D? = nil,
                arterialInput: ArterialInputReport? = nil) {
        self.volumes = volumes; self.summary = summary; self.lesion = lesion; self.arterialInput = arterialInput
    }
}

extension Pipeline {
    public func runWithSummary(_ series: Series4D, progress: @Sendable (Double) -> Void) throws -> PipelineOutput {
        PipelineOutput(volumes: try run(series, progress: progress))
    }
}

/// A value in report.json's `summary`: a number, a list, a table or a text.
public enum SummaryValue: Codable, Sendable, Equatable {
    case number(Double), numbers([Double]), table([[Double]]), text(String)

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let x): try c.encode(x.isFinite ? x : 0)
        case .numbers(let x): try c.encode(x)
        case .table(let x): try c.encode(x)
        case .text(let x): try c.encode(x)
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let x = try? c.decode(Double.self) { self = .number(x) }
        else if let x = try? c.decode([Double].self) { self = .numbers(x) }
        else if let x = try? c.decode([[Double]].self) { self = .table(x) }
        else { self = .text(try c.decode(String.self)) }
    }
}

/// A job's pipeline cannot run or finish: the message names what is wrong and the fix; it
/// is recorded as the job's error.
public struct PipelineError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
    package init(message: String) { self.message = message }
}

/// Every pipeline this build can run, by the name the config, the CLI, job rows and
/// report.json use: the one place that says what each is, makes, needs and writes.
public enum PipelineKind: String, CaseIterable, Sendable, Codable {
    case baselineT0 = "baseline-t0"
    case baselineMean03 = "baseline-mean03"
    case baselineMeanAll = "baseline-mean-all"
    case ncct
    case perfusion
    case perfusionSVD = "perfusion-svd"

    public static var names: [String] { allCases.map(\.rawValue) }

    /// The kind of `name`, or an error that lists the pipelines there are.
    public init(named name: String) throws {
        guard let k = PipelineKind(rawValue: name) else {
            throw PipelineError(message: "pipeline \"\(name)\" is not available in this build (available: \(Self.names.joined(separator: ", "))); choose one in the config's pipelines/default_pipeline")
        }
        self = k
    }

    /// The quantitative volumes it gives, by name (the learned ones' model.json `outputs`).
    public var outputs: [String] {
        switch self {
        case .baselineT0, .baselineMean03, .baselineMeanAll, .ncct: return ["ncct"]
        case .perfusion, .perfusionSVD: return ["cbf", "cbv", "mtt", "tmax"]
        }
    }

    /// Whether its results are perfusion maps (quality-checked, with core and penumbra).
    public var isPerfusion: Bool { outputs != ["ncct"] }

    /// The model a learned pipeline runs when none is named (see `ModelLocator`).
    public var defaultModel: String? {
        switch self {
        case .ncct: return "ncct-clstm"
        case .perfusion: return "perfusion-clstm"
        default: return nil
        }
    }

    public var isLearned: Bool { defaultModel != nil }

    /// What the outputs' DerivationDescription says made them.
    public func derivation(model: Report.Model? = nil) -> String {
        switch self {
        case .ncct, .perfusion:
            let m = model.map { "\($0.name) \($0.version)" } ?? "model"
            return "perfd \(rawValue): bidirectional ConvLSTM \(m) trained on synthetic phantoms only"
        case .baselineT0: return "perfd baseline-t0: the first CTP time point as a derived non-contrast CT"
        case .baselineMean03: return "perfd baseline-mean03: mean of CTP time points 1-4 as a derived non-contrast CT"
        case .baselineMeanAll: return "perfd baseline-mean-all: mean of all CTP time points as a derived non-contrast CT"
        case .perfusionSVD: return "perfd perfusion-svd: block-circulant SVD deconvolution (oscillation-index truncation) with automatic AIF/VOF"
        }
    }

    /// The pipeline itself. `model` is the model directory of a learned pipeline; nil
    /// finds the default model.
    public func make(model: String? = nil) throws -> Pipeline {
        switch self {
        case .baselineT0: return BaselinePipeline(name: rawValue, frames: .first)
        case .baselineMean03: return BaselinePipeline(name: rawValue, frames: .firstFour)
        case .baselineMeanAll: return BaselinePipeline(name: rawValue, frames: .all)
        case .perfusionSVD: return PerfusionSVDPipeline()
        case .ncct, .perfusion: return try CLSTMPipeline(kind: self, model: model)
        }
    }
}

public enum Pipelines {
    /// The pipeline named `name` (see `PipelineKind`).
    public static func make(_ name: String, model: String? = nil) throws -> Pipeline {
        try PipelineKind(named: name).make(model: model)
    }
}

/// The paper's baselines for a derived NCCT: the first frame, the mean of frames 0–3, or
/// the mean of all frames (van de Leemput et al. 2020, §IV).
public struct BaselinePipeline: Pipeline {
    public enum Frames: Sendable { case first, firstFour, all }
    public let name: String
    let frames: Frames

    public func run(_ s: Series4D, progress: @Sendable (Double) -> Void) throws -> [QuantitativeVolume] {
        let count: Int
        switch frames {
        case .first: count = 1
        case .firstFour: count = min(4, s.timepoints)
        case .all: count = s.timepoints
        }
        let n = s.frameSize
        var out = [Float](repeating: 0, count: n)
        s.voxels.withUnsafeBufferPointer { v in
            for t in 0..<count {
                let base = t * n
                for i in 0..<n { out[i] += v[base + i] }
                progress(Double(t + 1) / Double(count))
            }
        }
        let scale = 1 / Float(count)
        for i in 0..<n { out[i] *= scale }
        let vol = Volume3D(depth: s.depth, height: s.height, width: s.width, voxels: out, geometry: s.geometry)
        return [QuantitativeVolume(name: "ncct", unit: "HU", volume: vol)]
    }
}
