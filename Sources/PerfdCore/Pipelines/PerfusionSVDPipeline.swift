import Foundation
import Perfusion
import Volume

/// `perfusion-svd`: classical maps by block-circulant SVD deconvolution (the Perfusion
/// target does the science); this adapts them to the pipeline contract and report.json.
public struct PerfusionSVDPipeline: Pipeline {
    public let name = "perfusion-svd"
    public var options = PerfusionOptions()
    public init() {}

    public func run(_ series: Series4D, progress: @Sendable (Double) -> Void) throws -> [QuantitativeVolume] {
        try runWithSummary(series, progress: progress).volumes
    }

    public func runWithSummary(_ series: Series4D, progress: @Sendable (Double) -> Void) throws -> PipelineOutput {
        let r = try PerfusionMaps.compute(series, options: options, progress: progress)
        let volumes = [
            QuantitativeVolume(name: "cbf", unit: "ml/100g/min", volume: r.cbf),
            QuantitativeVolume(name: "cbv", unit: "ml/100g", volume: r.cbv),
            QuantitativeVolume(name: "mtt", unit: "s", volume: r.mtt),
            QuantitativeVolume(name: "tmax", unit: "s", volume: r.tmax),
            QuantitativeVolume(name: "ttp", unit: "s", volume: r.ttp),
        ]
        func round(_ x: Double, _ digits: Double = 1000) -> Double { (x * digits).rounded() / digits }
        let v = r.volumes
        let summary: [String: SummaryValue] = [
            "core_ml": .number(round(v.coreML)), "penumbra_ml": .number(round(v.penumbraML)),
            "hypoperfused_ml": .number(round(v.hypoperfusedML)),
            "mismatch_ratio": .number(v.mismatchRatio.isFinite ? round(v.mismatchRatio) : -1),
            "core_rule": .text("rCBF < \(Int(options.coreRelativeCBF * 100)) % of the healthy hemisphere's mean CBF, within Tmax > \(options.penumbraTmax) s"),
            "penumbra_rule": .text("Tmax > \(options.penumbraTmax) s outside the core; mismatch ratio = Tmax>\(options.penumbraTmax) s volume / core volume (-1: no core)"),
            "reference_cbf": .number(round(v.referenceCBF)), "healthy_side": .text(v.healthySide),
            "aif_voxels_zyx": .table(r.aifVoxels.map { [Double($0.x), Double($0.y), Double($0.z)] }),
            "vof_voxels_zyx": .table(r.vofVoxels.map { [Double($0.x), Double($0.y), Double($0.z)] }),
            "aif_delta_hu": .numbers(r.aif.map { round($0, 10) }), "vof_delta_hu": .numbers(r.vof.map { round($0, 10) }),
            "curve_times_s": .numbers(r.curveTimes.map { round($0) }),
            "aif_partial_volume_scale": .number(round(r.aifScale)), "baseline_s": .number(round(r.baselineSeconds)),
            "noise_hu": .number(round(r.noiseHU, 100)), "smoothing_mm": .number(round(r.smoothingMM, 100)),
            "cbf_noise_floor": .number(round(r.cbfNoiseFloor, 100)),
        ]
        return PipelineOutput(volumes: volumes, summary: summary, lesion: r.lesion)
    }
}
