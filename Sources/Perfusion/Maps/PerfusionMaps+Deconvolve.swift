import Foundation

extension PerfusionMaps {
    struct Maps { var cbf, cbv, mtt, tmax, ttp: [Float] }

    /// CBF, CBV, MTT, Tmax and TTP of every tissue voxel; NaN elsewhere. Curves go through
    /// the deconvolution in chunks (one sgemm per chunk) to bound memory.
    ///   CBF = (k_H/ρ)·max k·6000 [ml/100g/min]   CBV = (k_H/ρ)·100·ΣC_t/ΣC_a [ml/100g]
    ///   MTT = 60·CBV/CBF [s]   Tmax = argmax k·Δt (sub-sample peak, indices past L/2 wrapped
    ///   to negative times), corrected for the deconvolution's own delay (TmaxCalibration) [s]
    ///   TTP = argmax C_t·Δt [s from the first frame]
    static func deconvolve(curves: [Float], samples n: Int, frame: Int, tissue: [Bool], aif: [Double],
                           deconvolution d: Deconvolution, tmaxLimit: Float? = nil,
                           progress: (Double) -> Void) throws -> Maps {
        let l = d.l, dt = d.dt
        let scale = Float(Bolus.kH / Bolus.rho)
        let aifArea = Float(aif.reduce(0, +))
        guard aifArea > 0 else { throw PerfusionError("the arterial input has no area above baseline; check the series' timing") }
        var maps = Maps(cbf: .init(repeating: .nan, count: frame), cbv: .init(repeating: .nan, count: frame),
                        mtt: .init(repeating: .nan, count: frame), tmax: .init(repeating: .nan, count: frame),
                        ttp: .init(repeating: .nan, count: frame))
        let calibration = TmaxCalibration(aif: aif, dt: dt, deconvolution: d, limit: tmaxLimit)
        let voxels = (0..<frame).filter { tissue[$0] }
        let chunk = 16384
        var start = 0
        while start < voxels.count {
            let ids = Array(voxels[start..<min(voxels.count, start + chunk)])
            let m = ids.count
            var c = [Float](repeating: 0, count: n * m)
            for j in 0..<n { for (v, id) in ids.enumerated() { c[j * m + v] = curves[j * frame + id] } }
            let ks = d.residues(curves: c, count: m, limits: tmaxLimit.map { [d.oscillationLimit, $0] } ?? [d.oscillationLimit])
            let k = ks[0], kt = ks[ks.count - 1]
            for (v, id) in ids.enumerated() {
                let kmax = TmaxCalibration.peak(k, voxel: v, count: m, l: l, dt: dt).value
                let kPeakTime = TmaxCalibration.peak(kt, voxel: v, count: m, l: l, dt: dt).time
                var area: Float = 0, peak = -Float.infinity, tp = 0
                for j in 0..<n {
                    let x = c[j * m + v]
                    area += x
                    if x > peak { peak = x; tp = j }
                }
                let cbf = scale * kmax * 6000
                let cbv = scale * 100 * area / aifArea
                maps.cbf[id] = cbf
                maps.cbv[id] = cbv
                maps.mtt[id] = cbf > 0 ? 60 * cbv / cbf : .nan
                maps.tmax[id] = Float(calibration.corrected(kPeakTime))
                maps.ttp[id] = Float(Double(tp) * dt)
            }
            start += m
            progress(Double(start) / Double(max(1, voxels.count)))
        }
        return maps
    }
}
