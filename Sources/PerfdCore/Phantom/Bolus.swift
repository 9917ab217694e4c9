import Foundation

/// Contrast kinetics of the phantom: a gamma-variate arterial input with recirculation,
/// and tissue curves C(t) = (ρ/k_H)·CBF·(AIF ⊛ R)(t) for a residue function R.
public enum Bolus {
    public static let rho = 1.04      // g/ml, brain density
    public static let kH = 0.73       // large-to-small vessel haematocrit correction

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

        public func value(_ t: Double) -> Double {
            Bolus.gammaVariate(t, arrival: arrival, timeToPeak: timeToPeak, alpha: alpha, peak: peakHU)
                + Bolus.gammaVariate(t, arrival: arrival + recirculationDelay, timeToPeak: timeToPeak * 1.6, alpha: 2,
                                     peak: peakHU * recirculationFraction)
        }
    }

    public enum Residue: String, Sendable, Codable {
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

    /// Tissue enhancement (HU) at times `times` for CBF in ml/100g/min, MTT in s and a
    /// bolus delay in s; integrated on a 0.05 s grid.
    public static func tissueCurve(times: [Double], aif: Arterial, cbf: Double, mtt: Double, delay: Double,
                                   residue: Residue) -> [Double] {
        let dt = 0.05
        let flow = cbf / 6000      // ml/g/s
        let span = (times.max() ?? 0) + dt
        let n = Int(span / dt) + 1
        let a = (0..<n).map { aif.value(Double($0) * dt - delay) }
        let r = (0..<n).map { residue.value(Double($0) * dt, mtt: mtt) }
        return times.map { t in
            let k = Int(t / dt)
            var s = 0.0
            if k > 0 { for j in 0...k { s += a[j] * r[k - j] } }
            return (rho / kH) * flow * s * dt
        }
    }
}
