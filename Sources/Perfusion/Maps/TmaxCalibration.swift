import Foundation

/// Tmax from a regularised deconvolution comes out late: truncating the small singular
/// values (or the OI ladder choosing a stronger filter) smooths the residue in time, and the
/// peak of a smoothed residue that starts abruptly at the bolus delay lies after that delay.
/// On the phantoms the shift is 2–3 s in healthy tissue — enough to push noisy white matter
/// over the 6 s penumbra threshold.
///
/// The shift depends on the study's own AIF and sampling, so it is measured on them: noise-free
/// tissue curves with known delays go through the same deconvolution as the patient's voxels,
/// and the measured Tmax → true Tmax relation, averaged over residue shapes and made monotonic,
/// is inverted by linear interpolation. The shapes are exponential residues (MTT 3, 6, 12 s),
/// each undispersed and dispersed by exponential kernels of 1 and 2 s (true Tmax = delay + peak
/// of the dispersed residue, as in the phantom's truth). A sharp residue is shifted most by the
/// smoothing and a dispersed one least; hypoperfused tissue near the 6 s threshold is typically
/// dispersed, so calibrating on sharp residues alone put the penumbra ~2 s early on a 512²
/// case, while healthy (sharp) tissue now reads up to ~1 s late, far from 6 s. What it cannot
/// see: extra smoothing that noise makes the OI ladder choose.
struct TmaxCalibration {
    /// (measured, true) pairs, measured increasing.
    let points: [(measured: Double, truth: Double)]

    static let delays = Array(stride(from: 0.0, through: 14.0, by: 1.0))
    static let shapes: [(mtt: Double, dispersion: Double)] = [3.0, 6.0, 12.0].flatMap { m in [0.0, 1.0, 2.0].map { (m, $0) } }

    init(aif: [Double], dt: Double, deconvolution d: Deconvolution, limit: Float? = nil) {
        let n = aif.count
        func aifAt(_ t: Double) -> Double {
            guard t >= 0 else { return 0 }
            let x = t / dt, i = Int(x), f = x - Double(i)
            guard i + 1 < n else { return i < n ? aif[i] : 0 }
            return aif[i] * (1 - f) + aif[i + 1] * f
        }
        // Curves: delay-major, then shape; C(t) = ∫ a(u − τ) r(t − u) du on a 0.1 s grid, with
        // r = h ⊛ R the dispersed residue (h(t) = e^(−t/s)/s; r = R when s = 0).
        let fine = 0.1
        let span = Int((Double(n) * dt / fine).rounded(.up)) + 1
        let shapes = Self.shapes
        let count = Self.delays.count * shapes.count
        var residues: [[Double]] = []
        var peaks: [Double] = []
        for shape in shapes {
            let r = (0..<span).map { exp(-Double($0) * fine / shape.mtt) }
            var e = r
            if shape.dispersion > 0 {
                let h = (0..<span).map { exp(-Double($0) * fine / shape.dispersion) * fine / shape.dispersion }
                e = (0..<span).map { i in (0...i).reduce(0.0) { $0 + h[$1] * r[i - $1] } }
            }
            residues.append(e)
            peaks.append(Double(e.indices.max { e[$0] < e[$1] } ?? 0) * fine)
        }
        var curves = [Float](repeating: 0, count: n * count)
        for (a, tau) in Self.delays.enumerated() { for (b, e) in residues.enumerated() {
            let v = a * shapes.count + b
            for j in 0..<n {
                let t = Double(j) * dt
                let steps = Int(t / fine)
                var s = 0.0
                for q in 0...steps { s += aifAt(Double(q) * fine - tau) * e[steps - q] }
                curves[j * count + v] = Float(s * fine)
            }
        } }
        let k = d.residues(curves: curves, count: count, limits: [limit ?? d.oscillationLimit])[0]
        var pairs: [(Double, Double)] = []
        for (a, tau) in Self.delays.enumerated() {
            var measured = 0.0, truth = 0.0
            for b in shapes.indices {
                measured += Self.peak(k, voxel: a * shapes.count + b, count: count, l: d.l, dt: dt).time
                truth += tau + peaks[b]
            }
            pairs.append((measured / Double(shapes.count), truth / Double(shapes.count)))
        }
        // Monotonic in the measured value (a later delay never maps earlier).
        var out: [(Double, Double)] = []
        for p in pairs where out.last.map({ p.0 > $0.0 }) ?? true { out.append(p) }
        points = out
    }

    /// The residue's maximum, and the time of its peak with parabolic interpolation between
    /// samples; indices past L/2 are negative times (the residue wrapped around the padded circle).
    static func peak(_ k: [Float], voxel v: Int, count m: Int, l: Int, dt: Double) -> (value: Float, time: Double) {
        var best = 0, top = -Float.infinity
        for i in 0..<l where k[i * m + v] > top { top = k[i * m + v]; best = i }
        let prev = Double(k[((best - 1 + l) % l) * m + v]), next = Double(k[((best + 1) % l) * m + v]), mid = Double(top)
        let denom = prev - 2 * mid + next
        let offset = denom < 0 ? max(-0.5, min(0.5, 0.5 * (prev - next) / denom)) : 0
        let index = Double(best <= l / 2 ? best : best - l) + offset
        return (top, index * dt)
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
