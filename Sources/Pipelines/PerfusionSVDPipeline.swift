import Foundation
import Perfusion
import Volume

/// `perfusion-svd`: classical maps by block-circulant SVD deconvolution (the Perfusion
/// target does the science); this adapts them to the pipeline contract and report.json.
public struct PerfusionSVDPipeline: Pipeline {
    public let name = PipelineKind.perfusionSVD.rawValue
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
        let round = LesionSummary.round
        let extra: [String: SummaryValue] = [
            "aif_voxels_zyx": .table(r.aifVoxels.map { [Double($0.x), Double($0.y), Double($0.z)] }),
            "vof_voxels_zyx": .table(r.vofVoxels.map { [Double($0.x), Double($0.y), Double($0.z)] }),
            "aif_delta_hu": .numbers(r.aif.map { round($0, 10) }), "vof_delta_hu": .numbers(r.vof.map { round($0, 10) }),
            "curve_times_s": .numbers(r.curveTimes.map { round($0, 1000) }),
            "aif_partial_volume_scale": .number(round(r.aifScale, 1000)), "baseline_s": .number(round(r.baselineSeconds, 1000)),
            "noise_hu": .number(round(r.noiseHU, 100)), "smoothing_mm": .number(round(r.smoothingMM, 100)),
            "cbf_noise_floor": .number(round(r.cbfNoiseFloor, 100)),
        ]
        let summary = LesionSummary.entries(r.volumes, options: options).merging(extra) { $1 }
        let selection = ArterialInputReport(
            method: "perfusion-svd: mean of the 6 earliest, highest and narrowest plausible arterial candidates (peak/FWHM) on the analysis grid; VOF the 6 largest-area candidates peaking 2+ samples later",
            aif: r.aifVoxels.map { [$0.x, $0.y, $0.z] }, vof: r.vofVoxels.map { [$0.x, $0.y, $0.z] },
            screened: r.screenedCandidates, rejected: r.rejectedCandidates)
        return PipelineOutput(volumes: volumes, summary: summary, lesion: r.lesion, arterialInput: selection)
    }
}
