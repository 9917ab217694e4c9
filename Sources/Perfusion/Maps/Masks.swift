import Foundation

/// Masks on the coarse grid of `Prepared`.
enum Masks {
    /// Voxels enclosed by a wall (bone; a lesion mask): per slice, flood-fill from the image
    /// border over voxels that are not wall; whatever the fill does not reach, and is not
    /// wall, is inside.
    static func enclosed(by wall: [Bool], depth: Int, height h: Int, width w: Int) -> [Bool] {
        var inside = [Bool](repeating: false, count: wall.count)
        let plane = h * w
        for z in 0..<depth {
            let o = z * plane
            var outside = [Bool](repeating: false, count: plane)
            var stack: [Int] = []
            for x in 0..<w { stack.append(x); stack.append((h - 1) * w + x) }
            for y in 0..<h { stack.append(y * w); stack.append(y * w + w - 1) }
            while let i = stack.popLast() {
                guard !outside[i], !wall[o + i] else { continue }
                outside[i] = true
                let x = i % w, y = i / w
                if x > 0 { stack.append(i - 1) }
                if x < w - 1 { stack.append(i + 1) }
                if y > 0 { stack.append(i - w) }
                if y < h - 1 { stack.append(i + w) }
            }
            for i in 0..<plane { inside[o + i] = !outside[i] && !wall[o + i] }
        }
        return inside
    }

    /// Grows a mask by one voxel in-plane (4-neighbourhood).
    static func dilated(_ m: [Bool], depth: Int, height h: Int, width w: Int) -> [Bool] {
        var out = m
        for z in 0..<depth { for y in 0..<h { for x in 0..<w where m[(z * h + y) * w + x] {
            let i = (z * h + y) * w + x
            if x > 0 { out[i - 1] = true }
            if x < w - 1 { out[i + 1] = true }
            if y > 0 { out[i - w] = true }
            if y < h - 1 { out[i + w] = true }
        } } }
        return out
    }
}

/// Core and penumbra by the clinical thresholds (docs/ARCHITECTURE.md §8).
///
/// CBF and Tmax are 3×3 median-filtered within tissue first, and core and hypoperfused
/// regions smaller than `minML` are dropped (noise makes specks; lesions are contiguous).
/// The healthy hemisphere is the one with clearly less delayed tissue (Tmax > the penumbra
/// threshold), split at the tissue's mean column, or both without such an asymmetry; its mean CBF is the reference, or whatever `reference` measures on its voxels
/// (perfusion-svd: the CBF of their mean curve, see `PerfusionOptions.referenceFromMeanCurve`). Core: rCBF < 30 % of that reference inside
/// the hypoperfused region (Tmax > 6 s) or in a hole it encloses in its slice — low flow
/// without delay is CSF partial volume or noise rather than infarct (the RAPID convention),
/// but the core's own Tmax, the peak of a low, flat residue, is the noisiest of all and
/// reads under 6 s in 5–30 % of core voxels at 10 HU. Penumbra: Tmax > 6 s outside the core.
/// The mismatch ratio is hypoperfused (Tmax > 6 s, or core) volume over core volume.
public struct LesionVolumes: Sendable {
    /// Parenchyma for the lesion rule: `mask` voxels whose unenhanced baseline, smoothed
    /// in-plane by a Gaussian of `sigmaMM` within `mask`, is at least `minHU`. CSF has no
    /// flow, so CSF that noise gives a late Tmax reads as infarct core; the tissue mask of
    /// the maps is decided on a baseline smoothed as much as the curves (up to 6 mm at σ 20
    /// HU), which averages sulci and ventricle edges up into the parenchyma's range. CSF
    /// reads 0–10 HU unenhanced, white matter 20–35 HU (oedematous core a few HU less), so
    /// 18 HU on a lightly smoothed baseline (2 mm: about 4 HU of noise left at σ 20 with two
    /// pre-bolus frames) keeps CSF out. Measured on phantom seeds 101–116 at σ 20 HU
    /// (scripts/eval/core_rule.py): perfusion-svd core mean |error| 47 % → 30 %, cores off by
    /// more than 50 % 4 → 2 of 13 (a third of the false core of seed 101 was CSF); 15 HU or a
    /// 3 mm smoothing did a little worse (33–40 %). Through `perfd run` on seeds 101–116:
    /// σ 20 perfusion-svd core mean |error| 43.5 % → 28.8 %, within 25 % 7 → 11 of 16, off by
    /// more than 50 % 5 → 2; the learned pipeline 40.3 % → 29.5 %, 6 → 9, 4 → 2 shown;
    /// σ 10 perfusion-svd core and penumbra mean |error| 13.3 % and 15.3 %, 14 and 14 of 16
    /// within 25 % (13.1 %, 15.4 %, 14 and 14 as recorded at `profileSimilarity`): no change.
    /// The maps do not change (the wider tissue mask stays theirs).
    public static func parenchyma(baseline: [Float], mask: [Bool], depth: Int, height h: Int, width w: Int,
                                  pixelMM: Double, sigmaMM: Double = 2, minHU: Float = 18) -> [Bool] {
        let plane = h * w
        var out = mask
        for z in 0..<depth {
            let r = (z * plane)..<((z + 1) * plane)
            var img = r.map { mask[$0] ? baseline[$0] : 0 }
            var wgt: [Float] = r.map { mask[$0] ? 1 : 0 }
            ImageFilter.blur(&img, height: h, width: w, sigmaPixels: sigmaMM / pixelMM)
            ImageFilter.blur(&wgt, height: h, width: w, sigmaPixels: sigmaMM / pixelMM)
            for i in 0..<plane where mask[z * plane + i] {
                out[z * plane + i] = wgt[i] > 1e-3 && img[i] / wgt[i] >= minHU
            }
        }
        return out
    }

    public var coreML: Double
    public var penumbraML: Double
    public var hypoperfusedML: Double
    public var mismatchRatio: Double
    public var referenceCBF: Double
    public var healthySide: String
    /// Tissue with Tmax beyond the penumbra threshold per half (ml): the evidence for the side.
    public var delayedLowML = 0.0, delayedHighML = 0.0
    public var core: [Bool]
    public var hypoperfused: [Bool]

    public init(cbf rawCBF: [Float], tmax rawTmax: [Float], tissue: [Bool], depth: Int, height: Int, width: Int, voxelML: Double,
         relativeCBF: Double, tmaxThreshold: Double, minML: Double, reference: (([Int]) -> Double)? = nil) {
        let cbf = MapFilters.median3x3(rawCBF, mask: tissue, depth: depth, height: height, width: width)
        let tmax = MapFilters.median3x3(rawTmax, mask: tissue, depth: depth, height: height, width: width)
        let minVoxels = Int((minML / voxelML).rounded())
        var sumX = 0.0, count = 0.0
        for i in tissue.indices where tissue[i] { sumX += Double(i % width); count += 1 }
        let mid = count > 0 ? sumX / count : Double(width) / 2
        let low = tissue.indices.filter { tissue[$0] && Double($0 % width) < mid }
        let high = tissue.indices.filter { tissue[$0] && Double($0 % width) >= mid }
        // The healthy hemisphere by evidence: the side with clearly less delayed tissue
        // (Tmax beyond the penumbra threshold) — by at least `minML` and half as much again as
        // the other side. Without such an asymmetry (no lesion, a lesion across the midline,
        // a noise-free series whose medians tie) both hemispheres are the reference: a tie
        // must not pick a side, which on some series is the lesion's.
        let late0 = Float(tmaxThreshold)
        let delayedLow = Double(low.filter { tmax[$0] > late0 }.count) * voxelML
        let delayedHigh = Double(high.filter { tmax[$0] > late0 }.count) * voxelML
        delayedLowML = delayedLow; delayedHighML = delayedHigh
        let (more, less) = (max(delayedLow, delayedHigh), min(delayedLow, delayedHigh))
        let healthy: [Int]
        if more - less >= minML && more >= 1.5 * less {
            let lowHealthy = delayedLow < delayedHigh
            healthy = lowHealthy ? low : high
            healthySide = lowHealthy ? "low x (image left half, patient right)" : "high x (image right half, patient left)"
        } else {
            healthy = low + high
            healthySide = "both (no perfusion asymmetry)"
        }
        referenceCBF = healthy.isEmpty ? 0
            : reference?(healthy) ?? healthy.reduce(0.0) { $0 + Double(cbf[$1]) } / Double(healthy.count)
        let cut = Float(relativeCBF * referenceCBF), late = Float(tmaxThreshold)
        let hypo = MapFilters.removingSmallComponents(tissue.indices.map { tissue[$0] && tmax[$0] > late },
                                                      depth: depth, height: height, width: width, minVoxels: minVoxels)
        let enclosed = Masks.enclosed(by: hypo, depth: depth, height: height, width: width)
        let core = MapFilters.removingSmallComponents(tissue.indices.map { (hypo[$0] || enclosed[$0]) && tissue[$0] && cbf[$0] < cut },
                                                      depth: depth, height: height, width: width, minVoxels: minVoxels)
        hypoperfused = zip(hypo, core).map { $0 || $1 }
        self.core = core
        let nCore = Double(core.filter { $0 }.count), nHypo = Double(hypoperfused.filter { $0 }.count)
        coreML = nCore * voxelML
        hypoperfusedML = nHypo * voxelML
        penumbraML = (nHypo - nCore) * voxelML
        mismatchRatio = nCore > 0 ? nHypo / nCore : .infinity
    }
}
