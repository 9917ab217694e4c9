import Foundation

/// Contrast kinetics of the phantom: a gamma-variate arterial input with recirculation,
/// and tissue curves C(t) = (ρ/k_H)·CBF·(AIF ⊛ R_eff)(t − delay) for a residue function R.
public enum Bolus {
    public static let rho = 1.04      // g/ml, brain density
    public static let kH = 0.73       // large-to-small vessel haematocrit correction
    /// Step of the fine grid on which the phantom convolves curves (s).
    public static let fineStep = 0.05

    /// Gamma variate peaking at `peak` HU `timeToPeak` s after `arrival`.
    public static func gammaVariate(_ t: Double, arrival: Double, timeToPeak: Double, alpha: Double, peak: Double) -> Double {
        guard t > arrival else { return 0 }
        let x = (t - arrival) / timeToPeak
        return peak * pow(x, alpha) * exp(alpha * (1 - x))
    }

    public struct Arterial: Sendable, Codable {
        public var arrival = 4.0
        public var timeToPeak = 6.0
        public var alpha = 3.0
        public var peakHU = 400.0
        /// Recirculation: a second, smaller and wider pass.
        public var recirculationFraction = 0.12
        public var recirculationDelay = 14.0
        public init() {}

        /// A seed-dependent input: arrival 3–6 s, peak 300–500 HU, time to peak 5–7.5 s.
        public init<G: RandomNumberGenerator>(random g: inout G) {
            arrival = .random(in: 3...6, using: &g)
            timeToPeak = .random(in: 5...7.5, using: &g)
            alpha = .random(in: 2.5...4, using: &g)
            peakHU = .random(in: 300...500, using: &g)
            recirculationFraction = .random(in: 0.08...0.16, using: &g)
            recirculationDelay = .random(in: 12...16, using: &g)
        }

        public func value(_ t: Double) -> Double {
            Bolus.gammaVariate(t, arrival: arrival, timeToPeak: timeToPeak, alpha: alpha, peak: peakHU)
                + Bolus.gammaVariate(t, arrival: arrival + recirculationDelay, timeToPeak: timeToPeak * 1.6, alpha: 2,
                                     peak: peakHU * recirculationFraction)
        }
    }

    public enum Residue: String, Sendable, Codable, CaseIterable {
        case box, exponential
        /// R(t) for mean transit time `mtt` (∫R = MTT for both families).
        public func value(_ t: Double, mtt: Double) -> Double {
            guard t >= 0 else { return 0 }
            switch self {
            case .box: return t < mtt ? 1 : 0
            case .exponential: return exp(-t / mtt)
            }
        }
    }

    /// The effective residue on the fine grid: R convolved with the dispersion kernel
    /// h(t) = e^{−t/τ}/τ (normalised on the grid, so ∫R_eff = ∫R = MTT exactly). A tissue
    /// fed through a dispersing path sees AIF ⊛ h instead of the measured AIF; since
    /// (AIF ⊛ h) ⊛ R = AIF ⊛ (h ⊛ R), deconvolving with the measured AIF recovers
    /// CBF·R_eff, not CBF·R. With τ = 0, R_eff = R.
    public static func effectiveResidue(_ r: Residue, mtt: Double, dispersion tau: Double, count n: Int) -> [Double] {
        let dt = fineStep
        let raw = (0..<n).map { r.value(Double($0) * dt, mtt: mtt) }
        guard tau > 0 else { return raw }
        var h = (0..<n).map { exp(-Double($0) * dt / tau) }
        let sum = h.reduce(0, +)
        for j in 0..<n { h[j] /= sum }
        var out = [Double](repeating: 0, count: n)
        for k in 0..<n {
            var s = 0.0
            for j in 0...k { s += h[j] * raw[k - j] }
            out[k] = s
        }
        return out
    }

    /// Time (s) at which R_eff first reaches its maximum, and that maximum: (0 s, 1) without
    /// dispersion; with dispersion the delayed, lowered peak of h ⊛ R (for a box residue, the
    /// box's end, on a plateau so flat that the time is ill-posed: lesions use exponentials).
    public static func residuePeak(_ r: Residue, mtt: Double, dispersion tau: Double) -> (time: Double, value: Double) {
        let n = Int((mtt * 4 + tau * 8) / fineStep) + 2
        let reff = effectiveResidue(r, mtt: mtt, dispersion: tau, count: n)
        var best = 0
        for k in 1..<n where reff[k] > reff[best] * (1 + 1e-9) { best = k }
        return (Double(best) * fineStep, reff[best])
    }

    public static func residuePeakTime(_ r: Residue, mtt: Double, dispersion tau: Double) -> Double {
        residuePeak(r, mtt: mtt, dispersion: tau).time
    }

    /// Tissue enhancement (HU) at `times` for CBF in ml/100g/min, MTT in s, a bolus delay
    /// in s and a dispersion time constant τ in s; convolved on a 0.05 s grid.
    public static func tissueCurve(times: [Double], aif: Arterial, cbf: Double, mtt: Double, delay: Double,
                                   residue: Residue, dispersion: Double = 0) -> [Double] {
        let dt = fineStep
        let flow = cbf / 6000      // ml/g/s
        let span = (times.max() ?? 0) + dt
        let n = Int(span / dt) + 2
        let a = (0..<n).map { aif.value(Double($0) * dt) }
        let r = effectiveResidue(residue, mtt: mtt, dispersion: dispersion, count: n)
        var conv = [Double](repeating: 0, count: n)
        for k in 1..<n {
            var s = 0.0
            for j in 0...k { s += a[j] * r[k - j] }
            conv[k] = (rho / kH) * flow * s * dt
        }
        // The delayed curve, linearly interpolated between grid points.
        return times.map { t in
            let u = (t - delay) / dt
            guard u > 0 else { return 0 }
            let k = Int(u), f = u - Double(k)
            guard k + 1 < n else { return conv[n - 1] }
            return conv[k] * (1 - f) + conv[k + 1] * f
        }
    }
}
