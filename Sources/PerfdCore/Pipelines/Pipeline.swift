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
}

/// A daemon service (retention, metrics) cannot do its work: the message names the path or
/// setting and the fix.
public struct ServiceError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

public enum Pipelines {
    /// The pipelines this build can run. `model` is the model directory of a learned
    /// pipeline (`ncct`, `perfusion`); nil finds the default model (see `ModelLocator`).
    public static func make(_ name: String, model: String? = nil) throws -> Pipeline {
        switch name {
        case "baseline-t0": return BaselinePipeline(name: name, frames: .first)
        case "baseline-mean03": return BaselinePipeline(name: name, frames: .firstFour)
        case "baseline-mean-all": return BaselinePipeline(name: name, frames: .all)
        case "perfusion-svd": return PerfusionSVDPipeline()
        case "ncct", "perfusion": return try CLSTMPipeline(name: name, model: model)
        default:
            throw PipelineError(message: "pipeline \"\(name)\" is not available in this build (available: \(Config.pipelineNames.joined(separator: ", "))); choose one in the config's pipelines/default_pipeline")
        }
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
