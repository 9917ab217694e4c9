import Foundation

/// Tmax from a regularised deconvolution comes out late: truncating the small singular
/// values (or the OI ladder choosing a stronger filter) smooths the residue in time, and the
/// peak of a smoothed residue that starts abruptly at the bolus delay lies after that delay.
/// On the phantoms the shift is 2–3 s in healthy tissue — enough to push noisy white matter
/// over the 6 s penumbra threshold.
///
/// The shift depends on the study's own AIF and sampling, so it is measured on them: noise-free
/// tissue curves with known delays (exponential residues of several MTTs, the AIF shifted
/// and convolved exactly) go through the same deconvolution as the patient's voxels, and the
/// measured Tmax → true delay relation, averaged over MTT and made monotonic, is inverted by
/// linear interpolation. What it cannot see: extra smoothing that noise makes the OI ladder
/// choose (noisy voxels stay a little late).
struct TmaxCalibration {
    /// (measured, true) pairs, measured increasing.
    let points: [(measured: Double, truth: Double)]

    static let delays = Array(stride(from: 0.0, through: 14.0, by: 1.0))
    static let transitTimes = [3.0, 6.0, 12.0]

    init(aif: [Double], dt: Double, deconvolution d: Deconvolution) {
        let n = aif.count
        func aifAt(_ t: Double) -> Double {
            guard t >= 0 else { return 0 }
            let x = t / dt, i = Int(x), f = x - Double(i)
            guard i + 1 < n else { return i < n ? aif[i] : 0 }
            return aif[i] * (1 - f) + aif[i + 1] * f
        }
        // Curves: delay-major, then MTT; C(t) = ∫ a(t' − τ) R(t − t') dt' on a 0.1 s grid.
        let fine = 0.1
        var curves = [Float](repeating: 0, count: n * Self.delays.count * Self.transitTimes.count)
        let count = Self.delays.count * Self.transitTimes.count
        for (a, tau) in Self.delays.enumerated() { for (b, mtt) in Self.transitTimes.enumerated() {
            let v = a * Self.transitTimes.count + b
            for j in 0..<n {
                let t = Double(j) * dt
                var s = 0.0
                var u = 0.0
                while u <= t { s += aifAt(u - tau) * exp(-(t - u) / mtt); u += fine }
                curves[j * count + v] = Float(s * fine)
            }
        } }
        let k = d.residues(curves: curves, count: count)
        var pairs: [(Double, Double)] = []
        for (a, tau) in Self.delays.enumerated() {
            var sum = 0.0
            for b in 0..<Self.transitTimes.count {
                sum += Self.peakTime(k, voxel: a * Self.transitTimes.count + b, count: count, l: d.l, dt: dt)
            }
            pairs.append((sum / Double(Self.transitTimes.count), tau))
        }
        // Monotonic in the measured value (a later delay never maps earlier).
        var out: [(Double, Double)] = []
        for p in pairs where out.last.map({ p.0 > $0.0 }) ?? true { out.append(p) }
        points = out
    }

    /// The residue's peak time with parabolic interpolation between samples; indices past
    /// L/2 are negative times (the residue wrapped around the padded circle).
    static func peakTime(_ k: [Float], voxel v: Int, count m: Int, l: Int, dt: Double) -> Double {
        var best = 0, top = -Float.infinity
        for i in 0..<l where k[i * m + v] > top { top = k[i * m + v]; best = i }
        let prev = Double(k[((best - 1 + l) % l) * m + v]), next = Double(k[((best + 1) % l) * m + v]), mid = Double(top)
        let denom = prev - 2 * mid + next
        let offset = denom < 0 ? max(-0.5, min(0.5, 0.5 * (prev - next) / denom)) : 0
        let index = Double(best <= l / 2 ? best : best - l) + offset
        return index * dt
    }

    /// The delay a measured Tmax corresponds to; beyond the table, the nearest end's shift.
    func corrected(_ measured: Double) -> Double {
        guard let first = points.first, let last = points.last, points.count > 1 else { return measured }
        if measured <= first.measured { return measured - (first.measured - first.truth) }
        if measured >= last.measured { return measured - (last.measured - last.truth) }
        var i = 1
        while points[i].measured < measured { i += 1 }
        let a = points[i - 1], b = points[i]
        let w = (measured - a.measured) / (b.measured - a.measured)
        return a.truth + w * (b.truth - a.truth)
    }
}
