import Foundation

/// Automatic selection of the arterial input (AIF) and venous output (VOF) functions.
///
/// Method (on the coarse grid, unsmoothed ΔHU so that vessels keep their peaks):
/// 1. Candidates: voxels inside the skull whose peak ΔHU is at least 80 HU and in the top
///    1 % of peaks there (only large vessels enhance that much; tissue peaks at 10–40 HU).
/// 2. AIF: among candidates, those whose bolus arrives early — time to peak within the
///    earliest quarter of candidate TTPs — ranked by peak height over width (FWHM): an
///    artery's first pass is early, high and narrow. Candidates under 60 % of the best
///    peak are dropped as partial-volume voxels. The curve is the mean of the best 6.
/// 3. VOF: candidates peaking at least two samples after the AIF (one sample let a noisy
///    arterial voxel through on a 512² standard case), ranked by area under the curve (the
///    sinus is large, so its centre is free of partial volume); the mean of the best 6.
/// 4. Partial-volume correction: tracer is conserved, so the areas under the arterial and
///    venous curves are equal in the absence of partial volume. A small artery's voxels
///    are diluted by surrounding tissue, which lowers its area; the AIF is scaled by
///    ∫VOF/∫AIF when that ratio exceeds 1 (never scaled down: the venous curve's tail can
///    fall outside the acquisition window, which only underestimates ∫VOF), capped at 3.
public struct ArterialInput: Sendable {
    public var aif: [Double]
    public var vof: [Double]
    public var aifVoxels: [Int]
    public var vofVoxels: [Int]
    public var scale: Double

    /// Peak, time of the peak (sample) and full width at half maximum (samples) of a curve.
    static func shape(_ c: [Double]) -> (peak: Double, ttp: Int, fwhm: Double) {
        var k = 0
        for j in 1..<c.count where c[j] > c[k] { k = j }
        let half = c[k] / 2
        var lo = k, hi = k
        while lo > 0 && c[lo - 1] >= half { lo -= 1 }
        while hi < c.count - 1 && c[hi + 1] >= half { hi += 1 }
        return (c[k], k, Double(hi - lo + 1))
    }

    /// `delta` is ΔHU [sample][voxel] over `frame` voxels; `inside` marks voxels inside the skull.
    public static func select(delta: [Float], samples n: Int, frame: Int, inside: [Bool]) throws -> ArterialInput {
        func curve(_ v: Int) -> [Double] { (0..<n).map { Double(delta[$0 * frame + v]) } }
        var peaks: [(v: Int, peak: Float)] = []
        for v in 0..<frame where inside[v] {
            var p: Float = -.infinity
            for j in 0..<n { p = max(p, delta[j * frame + v]) }
            peaks.append((v, p))
        }
        peaks.sort { $0.peak > $1.peak }
        let top = max(20, peaks.count / 100)
        let candidates = peaks.prefix(top).filter { $0.peak >= 80 }.map { (v: $0.v, shape: shape(curve($0.v))) }
        guard candidates.count >= 2 else {
            throw PerfusionError("no arterial input found: no voxel inside the head enhances by 80 HU or more; is this a contrast-enhanced perfusion series with the bolus inside the acquisition?")
        }
        let ttps = candidates.map(\.shape.ttp).sorted()
        let early = ttps[ttps.count / 4]
        var arterial = candidates.filter { $0.shape.ttp <= early }
        let best = arterial.map(\.shape.peak).max() ?? 0
        arterial = arterial.filter { $0.shape.peak >= 0.6 * best }
            .sorted { $0.shape.peak / $0.shape.fwhm > $1.shape.peak / $1.shape.fwhm }
        let aifVoxels = Array(arterial.prefix(6).map(\.v))
        let aifTTP = arterial.first?.shape.ttp ?? early
        let venous = candidates.filter { $0.shape.ttp >= aifTTP + 2 }
            .map { c in (v: c.v, area: curve(c.v).reduce(0, +)) }
            .sorted { $0.area > $1.area }
        let vofVoxels = Array(venous.prefix(6).map(\.v))
        func mean(_ vs: [Int]) -> [Double] {
            var m = [Double](repeating: 0, count: n)
            for v in vs { for j in 0..<n { m[j] += Double(delta[j * frame + v]) / Double(vs.count) } }
            return m
        }
        var aif = mean(aifVoxels)
        let vof = vofVoxels.isEmpty ? [] : mean(vofVoxels)
        var scale = 1.0
        if !vof.isEmpty {
            let ratio = vof.reduce(0, +) / max(1e-6, aif.reduce(0, +))
            scale = min(3, max(1, ratio))
            aif = aif.map { $0 * scale }
        }
        return ArterialInput(aif: aif, vof: vof, aifVoxels: aifVoxels, vofVoxels: vofVoxels, scale: scale)
    }
}
