import Foundation
import Volume

public struct PerfusionOptions: Sendable {
    /// OI threshold 0.02 rather than Wu's 0.035: smoother residues, whose peaks noise moves
    /// less. At 10 HU (5 mm smoothing, phantom seeds 101–116) the mean |error| of core and
    /// penumbra volume went from 31 % and 33 % (healthy white matter read Tmax > 6 s in up to
    /// 13 % of voxels) to 23 % and 20 %; the price is a more truncated, lower CBF noise-free
    /// (grey matter on seeds 101–108: −43…−51 % instead of −33…−41 % with exponential
    /// residues, −35 % instead of +1 % on the box seed 106). Healthy white matter, noise-free:
    /// −30…−37 % (exponential, seeds 101–104), −9…−19 % (box, 106, 110). Lesion tissue, whose
    /// transit is long and whose truth is the peak of its dispersed residue, loses little:
    /// noise-free penumbra −10…+7 %, core −27…+40 % (a few ml/100g/min) on 101–104, 106, 110.
    public var method: Deconvolution.Method = .oscillationIndex(threshold: 0.02)
    /// In-plane grid of the analysis: source pixels are averaged in blocks to about this size.
    public var targetPixelMM = 1.5
    /// σ (mm) of the in-plane Gaussian that smooths tissue curves (within tissue only);
    /// nil: chosen from the measured image noise (see `smoothing(forNoise:)`).
    public var smoothingMM: Double?
    /// Core and penumbra: CBF and Tmax are 3×3 median-filtered within tissue before the
    /// thresholds, and connected regions smaller than this are dropped (ml). 3 ml rather than
    /// 1: at 10 HU, healthy white matter with an exponential residue still reads Tmax > 6 s in
    /// 4–10 % of voxels, and some of those specks join into 1–3 ml blobs (seeds 101–116).
    public var minLesionML = 3.0
    /// Step of the uniform time grid (default: the shortest frame interval, at most 1 s).
    public var timeStep: Double?
    public var coreRelativeCBF = 0.3
    public var penumbraTmax = 6.0
    public init() {}

    /// In-plane smoothing σ (mm) for a measured noise σ (HU) on the analysis grid: none
    /// on a noise-free series (smoothing only mixes grey and white matter there), 3 mm at
    /// 10 HU, capped at 6 mm. Smoothing mixes a lesion's curves with its neighbours': the core
    /// takes up its neighbours' flow and reads above the rCBF cut, and Tmax, the peak of a
    /// mixed residue, follows whichever neighbour has the higher flow. Less smoothing lets
    /// noise through (a higher noise floor, noisier Tmax). Core and penumbra volume at 10 HU on
    /// phantom seeds 101–116 (never on the held-out 9001+), with the reference and Tmax
    /// filter below, mean (mean |error|): 2.5 mm +3 % (19 %), +2 % (19 %); 3 mm −7 % (17 %),
    /// +2 % (19 %); 3.5 mm −15 % (18 %), +2 % (19 %). With the former single residue and
    /// mean-of-voxels reference, 4 mm gave −48 % (48 %) and +22 % (29 %) on the current phantom.
    public static func smoothing(forNoise sigma: Double) -> Double { min(6, 0.3 * sigma) }
    /// Noise (HU) the in-plane smoothing leaves in a pre-bolus frame difference: the smoothing
    /// is the least (0.1 mm steps, at most 6 mm) that gets there; `smoothing(forNoise:)` only
    /// when the first two frames do not both precede the bolus. 0.3·σ alone left 2.2 HU on the
    /// 128² phantoms at 10 HU (1.9 mm pixels) but 2.85 HU on a 512² one (0.47 mm pixels averaged
    /// to 1.4 mm: the phantom's noise is correlated over a few pixels, so it averages down less
    /// than its σ suggests), where 11.7 % of healthy white matter then read Tmax > 6 s (7.6 % at
    /// 128², same seed) and the penumbra came out 81 ml for 45 (seed 1, 512² × 32 × 19). With
    /// 2.2 HU as the target: 3.6 mm there, penumbra 48.8 ml, core 23.2 ml for 14.7 (28.1
    /// before); seed 9401 at 512²: 3.7 mm, core 22.8 ml for 24.9 (25.3 before), penumbra 30.4
    /// for 41.2 (unchanged); seeds 101–116 at 128²: core −10 % (16 %), penumbra +2 % (19 %),
    /// 12 and 14 of 16 within 25 % (before −9 % (16 %), +3 % (19 %), 12 and 13). Noise-free
    /// series get none (the storage rounding leaves far less than the target).
    public var residualNoiseHU = 2.2
    /// Edge-preserving smoothing of the tissue curves (nil: the Gaussian alone). A voxel's
    /// curve becomes the mean of its neighbours' unsmoothed curves within a Gaussian of
    /// `profileSmoothingScale` × the smoothing above, each weighted also by
    /// exp(−D / (2·k·r²)), D the mean squared difference of the two voxels' Gaussian-smoothed
    /// curves and r = `residualNoiseHU` (a cross-bilateral filter on time–intensity profiles,
    /// after TIPS, Mendrik et al., IEEE TMI 2011). Why: the Gaussian mixes healthy curves into a
    /// lesion's edge, and a mixed residue peaks where the larger truncated peak is — a box
    /// residue's plateau survives truncation, an exponential's cusp does not — so on phantoms
    /// whose healthy tissue has box residues every penumbra came out small (seeds 101–116:
    /// −9 … −38 %) and on exponential ones every penumbra large (+2 … +39 %). At 10 HU on
    /// seeds 101–116 (k, scale → core mean |error|, within 25 %; penumbra the same):
    /// none 16.2 %, 12/16; 19.0 %, 14/16 · 1, 1 → 16.9 %, 12; 18.4 %, 13 · 1, 1.5 → 16.5 %,
    /// 14; 16.9 %, 15 · 1, 2 → 24.2 %, 12; 18.0 %, 10 · 0.5, 1.5 → 13.6 %, 14; 15.4 %, 14 ·
    /// 0.5, 1.75 → 13.1 %, 14; 15.4 %, 14 · 0.5, 2 → 16.3 %, 14; 15.7 %, 15 · 0.3, 1.75 →
    /// 15.9 %, 14; 15.7 %, 13. Chosen 0.5, 1.75; then once on the nine held-out cases
    /// (9001–9006, 9301–9303): core 18.6 %, 7 of 9 within 25 % (24.4 %, 4 of 9 before),
    /// penumbra 19.2 %, 8 of 9 (23.3 %, 5 of 9).
    public var profileSimilarity: Double? = 0.5
    public var profileSmoothingScale = 1.75
    /// σ (s) of a Gaussian that smooths tissue curves in time (0: none). Off by default:
    /// σ 1–2 s changed neither Tmax nor the lesion volumes at 10 HU on seeds 101–104.
    public var timeSmoothingS = 0.0
    /// The rCBF reference H: the CBF of the healthy hemisphere's mean tissue curve (true), or
    /// the mean of its voxels' CBF less the noise floor (false). Averaging thousands of curves
    /// first removes the noise, so the OI ladder truncates that curve only as much as it
    /// would a noise-free one, whereas each noisy voxel is truncated harder: at 10 HU the
    /// voxel mean read H at about half the truth (and a third after the noise floor, 8.8 vs
    /// 25 ml/100g/min on seed 101), while the core, whose long transit truncation hardly
    /// touches, read near or above its truth, so its rCBF came out 0.4–0.85 and most of it
    /// was missed (core −48 % on seeds 101–116). The mean curve reads H at 14–19 on seeds
    /// 101–116 (still truncated: the healthy transit is short), core rCBF 0.4–0.5 before the
    /// floor subtraction and about 0.2 after.
    public var referenceFromMeanCurve = true
    /// OI limit of the residue whose peak time is Tmax (nil: the method's own). The ladder's
    /// filters are applied to every voxel anyway, so a second choice costs no sgemm. A lower
    /// limit picks a smoother residue, whose peak noise moves less, for Tmax only, while CBF
    /// keeps the less truncated 0.02 residue. On seeds 101–116 at 10 HU (3 mm): Tmax from the
    /// 0.02 residue: core −5 % (17 %), penumbra +11 % (25 %), 12 and 11 of 16 within 25 %;
    /// 0.015: −7 % (17 %), +2 % (19 %), 13 and 14 of 16; 0.01: −9 % (17 %), −4 % (16 %), 12
    /// and 12 of 16. (CBF at 0.035 instead of 0.02 let noise lift the core: 7–8 of 16.)
    public var tmaxOscillationIndex: Double? = 0.015
}

/// CBF, CBV, MTT, Tmax, TTP maps in the series' geometry (NaN outside brain tissue), the
/// lesion volumes and the chosen arterial and venous curves.
public struct PerfusionResult: Sendable {
    public var cbf, cbv, mtt, tmax, ttp: Volume3D
    public var volumes: LesionVolumes
    /// AIF (scaled for partial volume) and VOF ΔHU on the uniform grid `curveTimes`.
    public var aif: [Double], vof: [Double], curveTimes: [Double]
    public var aifScale: Double
    /// Centres of the chosen voxels as (z, y, x) indices of the source series.
    public var aifVoxels: [SIMD3<Int>], vofVoxels: [SIMD3<Int>]
    public var baselineSeconds: Double
    /// Noise σ (HU) measured on the analysis grid, and the in-plane smoothing it chose.
    public var noiseHU: Double, smoothingMM: Double
    /// CBF (ml/100g/min) that noise alone reads after smoothing; subtracted before the core threshold.
    public var cbfNoiseFloor: Double
    /// 1 core, 2 penumbra, 0 elsewhere, on the source grid.
    public var lesion: Volume3D
    /// Arterial candidates looked at and those that failed a plausibility rule (source voxels).
    public var screenedCandidates = 0
    public var rejectedCandidates: [RejectedCandidate] = []
}

public enum PerfusionMaps {
    public static func compute(_ s: Series4D, options o: PerfusionOptions = PerfusionOptions(),
                               progress: (Double) -> Void = { _ in }) throws -> PerfusionResult {
        guard s.timepoints >= 5 else {
            throw PerfusionError("perfusion maps need at least 5 time points (the series has \(s.timepoints))")
        }
        let pixel = min(s.geometry.rowSpacing, s.geometry.columnSpacing)
        let f = max(1, Int(o.targetPixelMM / pixel))
        let gaps = zip(s.frameTimes.dropFirst(), s.frameTimes).map { $0 - $1 }.filter { $0 > 1e-3 }
        // At most 512 samples on the grid: the deconvolution's operators grow with its square
        // (a 10-minute series at 0.25 s would take minutes and gigabytes).
        let span = (s.frameTimes.last ?? 0) - (s.frameTimes.first ?? 0)
        guard span > 0 else { throw PerfusionError("the series' frame times do not advance (all at \(s.frameTimes.first ?? 0) s)") }
        let dt = max(o.timeStep ?? min(1, max(0.25, gaps.min() ?? 1)), span / 511)
        let p = Prepared(s, factor: f, dt: dt)
        let n = p.samples, frame = p.frame
        progress(0.1)

        // Bone, and what it encloses, from the first sample.
        let first = Array(p.hu[0..<frame])
        var inside = Masks.enclosed(by: first.map { $0 > 150 }, depth: p.depth, height: p.height, width: p.width)
        // Voxels that motion correction moved out of the field of view at some time point
        // (filled with air) have no curve: leave them out.
        for i in 0..<frame where inside[i] {
            if let valid = p.valid, !valid[i] { inside[i] = false; continue }
            for j in 0..<n where p.hu[j * frame + i] < -500 { inside[i] = false; break }
        }
        // The arterial candidates' rules (see ArterialInput.Plausibility); the noise from the
        // first two frames, for how far below baseline a vessel's curve may dip.
        let roughNoise = p.firstDifference.isEmpty ? 10 : MapFilters.robustSigma(p.firstDifference, mask: inside) / 2.0.squareRoot()
        let plausibility = ArterialInput.Plausibility(valid: p.valid, baseline: first, noiseHU: roughNoise)
        // AIF from a first-sample baseline, then the baseline is every sample before arrival.
        var delta = p.hu
        for j in 0..<n { for i in 0..<frame { delta[j * frame + i] -= first[i] } }
        var input = try ArterialInput.select(delta: delta, samples: n, frame: frame, inside: inside, slices: p.depth, dt: dt,
                                             plausibility: plausibility)
        let top = input.aif.max() ?? 0
        let arrival = input.aif.firstIndex { $0 >= 0.1 * top } ?? 1
        let baseCount = max(1, arrival - 1)
        let baseline = p.mean(samples: baseCount)
        delta = p.hu
        for j in 0..<n { for i in 0..<frame { delta[j * frame + i] -= baseline[i] } }
        input = try ArterialInput.select(delta: delta, samples: n, frame: frame, inside: inside, slices: p.depth, dt: dt,
                                         plausibility: plausibility)
        progress(0.2)

        // Tissue: inside the skull, not a vessel (peak ≥ 80 HU, grown by a voxel), not CSF
        // or bone partial volume (smoothed baseline outside 15–80 HU).
        var vessel = [Bool](repeating: false, count: frame)
        for i in 0..<frame where inside[i] { for j in 0..<n where delta[j * frame + i] >= 80 { vessel[i] = true; break } }
        vessel = Masks.dilated(vessel, depth: p.depth, height: p.height, width: p.width)
        let soft = (0..<frame).map { inside[$0] && !vessel[$0] }
        // Noise from the two first frames when both precede the bolus (the AIF's 10 % rise),
        // else from neighbouring voxels of the first sample.
        let preBolusDifference = p.secondFrameTime.flatMap { $0 < Double(arrival) * dt ? p.firstDifference : nil }
        let noise = preBolusDifference.map { MapFilters.robustSigma($0, mask: soft) / 2.0.squareRoot() }
            ?? MapFilters.noiseSigma(Array(p.hu[0..<frame]), mask: soft, width: p.width)
        var smoothingMM = o.smoothingMM ?? PerfusionOptions.smoothing(forNoise: noise)
        if o.smoothingMM == nil, let diff = preBolusDifference {
            // The least smoothing (0.1 mm steps, at most 6 mm) that leaves `residualNoiseHU`
            // in the pre-bolus frame difference (see `PerfusionOptions.residualNoiseHU`).
            func residual(_ mm: Double) -> Double {
                let d = mm > 0 ? p.smoothed(diff, samples: 1, mask: soft, sigmaPixels: mm / (pixel * Double(f))) : diff
                return MapFilters.robustSigma(d, mask: soft) / 2.0.squareRoot()
            }
            smoothingMM = 0
            while smoothingMM < 6 && residual(smoothingMM) > o.residualNoiseHU { smoothingMM = (smoothingMM * 10 + 1).rounded() / 10 }
        }
        let sigma = smoothingMM / (pixel * Double(f))
        let smoothBase = p.smoothed(baseline, samples: 1, mask: soft, sigmaPixels: sigma)
        let tissue = (0..<frame).map { soft[$0] && smoothBase[$0] >= 15 && smoothBase[$0] <= 80 }
        var curves = p.smoothed(delta, samples: n, mask: tissue, sigmaPixels: sigma)
        if let k = o.profileSimilarity, sigma > 0 {
            // Edge-preserving: neighbours weighted by how alike their (Gaussian-smoothed) curves are.
            curves = p.profileSmoothed(delta, guide: curves, samples: n, mask: tissue, sigmaPixels: sigma * o.profileSmoothingScale,
                                       guideNoise: o.residualNoiseHU, k: k)
        }
        if o.timeSmoothingS > 0 { Prepared.smoothInTime(&curves, samples: n, frame: frame, sigmaSamples: o.timeSmoothingS / dt) }
        progress(0.4)

        let deconvolution = Deconvolution(aif: input.aif, dt: dt, method: o.method)
        let maps = try deconvolve(curves: curves, samples: n, frame: frame, tissue: tissue, aif: input.aif,
                                  deconvolution: deconvolution, tmaxLimit: o.tmaxOscillationIndex.map { Float($0) }) {
            progress(0.4 + 0.5 * $0)
        }
        // The CBF that noise alone would read, for the core threshold (see NoiseFloor).
        var floor = 0.0
        if let diff = preBolusDifference {
            let smoothDiff = sigma > 0 ? p.smoothed(diff, samples: 1, mask: tissue, sigmaPixels: sigma) : diff
            let residual = MapFilters.robustSigma(smoothDiff, mask: tissue) / 2.0.squareRoot()
            floor = NoiseFloor.cbf(residualNoise: residual, frameTimes: s.frameTimes.map { $0 - s.frameTimes[0] }, dt: dt, samples: n,
                                   baselineSamples: baseCount, deconvolution: deconvolution,
                                   scale: Bolus.kH / Bolus.rho * 6000)
        }
        let thresholdCBF = maps.cbf.map { $0.isFinite ? max(0, $0 - Float(floor)) : $0 }
        // The lesion rule on parenchyma only: CSF that the smoothed tissue mask let in is left
        // out (see `LesionVolumes.parenchyma`); the maps keep the wider mask.
        let parenchyma = LesionVolumes.parenchyma(baseline: baseline, mask: tissue, depth: p.depth, height: p.height,
                                                  width: p.width, pixelMM: pixel * Double(f))
        let volumes = LesionVolumes(cbf: thresholdCBF, tmax: maps.tmax, tissue: parenchyma, depth: p.depth, height: p.height,
                                    width: p.width, voxelML: p.voxelML, relativeCBF: o.coreRelativeCBF,
                                    tmaxThreshold: o.penumbraTmax, minML: o.minLesionML) { healthy in
            // The healthy side's mean flow, measured on its mean curve (see `referenceFromMeanCurve`).
            guard o.referenceFromMeanCurve else { return healthy.reduce(0.0) { $0 + Double(thresholdCBF[$1]) } / Double(healthy.count) }
            var mean = [Float](repeating: 0, count: n)
            for j in 0..<n {
                var sum = 0.0
                for i in healthy { sum += Double(curves[j * frame + i]) }
                mean[j] = Float(sum / Double(healthy.count))
            }
            let k = deconvolution.residues(curves: mean, count: 1)
            return Bolus.kH / Bolus.rho * 6000 * Double(TmaxCalibration.peak(k, voxel: 0, count: 1, l: deconvolution.l, dt: dt).value)
        }
        func full(_ m: [Float]) -> Volume3D {
            Volume3D(depth: p.depth, height: p.height, width: p.width, voxels: m, geometry: s.geometry).blockExpanded(p.factor, to: s)
        }
        func centre(_ v: Int) -> SIMD3<Int> {
            let z = v / (p.height * p.width), y = (v / p.width) % p.height, x = v % p.width
            return s.blockCentre(z: z, y: y, x: x, factor: f)
        }
        progress(1)
        return PerfusionResult(cbf: full(maps.cbf), cbv: full(maps.cbv), mtt: full(maps.mtt), tmax: full(maps.tmax),
                               ttp: full(maps.ttp), volumes: volumes, aif: input.aif, vof: input.vof,
                               curveTimes: (0..<n).map { Double($0) * dt }, aifScale: input.scale,
                               aifVoxels: input.aifVoxels.map(centre), vofVoxels: input.vofVoxels.map(centre),
                               baselineSeconds: Double(baseCount) * dt, noiseHU: noise, smoothingMM: smoothingMM, cbfNoiseFloor: floor,
                               lesion: full(zip(volumes.core, volumes.hypoperfused).map { $0 ? 1 : ($1 ? 2 : 0) }),
                               screenedCandidates: input.screened,
                               rejectedCandidates: input.rejected.map { r in
                                   let c = centre(r.voxel)
                                   return RejectedCandidate(zyx: [c.x, c.y, c.z], rule: r.rule, reason: r.reason)
                               })
    }
}
