import Foundation
import Perfusion

/// Kinetic parameters of one perfused region. The generating parameters (`flow`, `transit`,
/// delay, dispersion, residue) make its curve, C = (ρ/k_H)·flow·AIF ⊛ (h_τ ⊛ R)(t − delay);
/// the truth is what that curve holds (docs/ARCHITECTURE.md §8: CBV = CBF·∫R, MTT = ∫R, Tmax = delay +
/// argmax R) for the residue a deconvolution with the measured AIF can see, the effective
/// residue R_eff = h_τ ⊛ R scaled to a peak of 1: R_t = R_eff / max R_eff. So
///   CBF = flow·max R_eff,  CBV = flow·transit/60,  MTT = ∫R_t = transit / max R_eff,
///   Tmax = delay + argmax R_eff.
/// Without dispersion max R_eff = 1 and the truth is the generating flow and transit.
public struct Kinetics: Sendable {
    public let flow: Double         // ml/100g/min, before dispersion
    public let transit: Double      // s, ∫R before dispersion
    public let delay: Double        // s, bolus arrival after the measured AIF
    public let dispersion: Double   // s, τ of the exponential dispersion kernel (0: none)
    public let residue: Bolus.Residue
    /// max R_eff and the time (s) at which R_eff reaches it (`Bolus.residuePeak`).
    public let residuePeak: Double
    public let residuePeakTime: Double

    public init(flow: Double, transit: Double, delay: Double, dispersion: Double, residue: Bolus.Residue) {
        self.flow = flow; self.transit = transit; self.delay = delay; self.dispersion = dispersion; self.residue = residue
        (residuePeakTime, residuePeak) = Bolus.residuePeak(residue, mtt: transit, dispersion: dispersion)
    }

    /// The region whose truth CBF is `cbf`: the generating flow is cbf / max R_eff.
    public init(truthCBF cbf: Double, transit: Double, delay: Double, dispersion: Double, residue: Bolus.Residue) {
        let peak = Bolus.residuePeak(residue, mtt: transit, dispersion: dispersion).value
        self.init(flow: cbf / peak, transit: transit, delay: delay, dispersion: dispersion, residue: residue)
    }

    public var cbf: Double { flow * residuePeak }   // ml/100g/min
    public var cbv: Double { flow * transit / 60 }  // ml/100g
    public var mtt: Double { transit / residuePeak } // s
    public var tmax: Double { delay + residuePeakTime } // s
}

/// Everything about a phantom that its seed decides: baseline HU per tissue, the arterial
/// input, per-region kinetics and the lesion.
public struct PhantomModel: Sendable {
    public var baseHU: [Tissue: Double]
    public var aif: Bolus.Arterial
    public var kinetics: [Tissue: Kinetics]
    public var lesion: Lesion?
    /// Venous outflow: the AIF through the brain (delay and dispersion; same area as the AIF).
    public var venousDelay: Double
    public var venousDispersion: Double

    public init(seed: UInt64, lesion withLesion: Bool) {
        var g = SeededRandom(seed: seed &+ 0xB01)
        func u(_ r: ClosedRange<Double>) -> Double { Double.random(in: r, using: &g) }
        let grey = u(38...42), white = u(26...30)
        // Ischaemic tissue is a little darker (oedema) than the tissue it came from.
        baseHU = [.air: -1000, .skull: u(1000...1200), .csf: u(3...8), .grey: grey, .white: white,
                  .artery: u(38...44), .vein: u(38...44),
                  .coreGrey: grey - 3, .coreWhite: white - 2, .penumbraGrey: grey - 1, .penumbraWhite: white - 0.5]
        aif = seed == 1 ? Bolus.Arterial() : Bolus.Arterial(random: &g)
        // One residue family for the healthy brain, per seed. Lesions always use the
        // exponential: they are dispersed, and a dispersed box has a plateau so flat that its
        // argmax (the Tmax truth) jumps between the box's start and end. (The draw is kept so
        // that a seed's lesion and venous outflow stay what they were.)
        let healthy: Bolus.Residue = u(0...1) < 0.7 ? .exponential : .box
        _ = u(0...1)
        let gk = Kinetics(flow: u(50...70), transit: u(3.5...4.5), delay: u(0.3...1.2), dispersion: 0, residue: healthy)
        let wk = Kinetics(flow: u(18...26), transit: u(5...6.5), delay: u(0.6...1.6), dispersion: 0, residue: healthy)
        kinetics = [.grey: gk, .white: wk]
        // The lesion's truth (after dispersion) obeys the clinical rules its labels stand for,
        // with margin, against H, the mean flow of the healthy hemisphere: the pipelines'
        // reference, the mean CBF over that hemisphere's grey and white matter, which is about
        // 0.15·grey + 0.85·white in this anatomy.
        //   Core: truth CBF 5–15 % of H (rule: < 30 %); MTT 2–3× the tissue's.
        //   Penumbra: truth CBF 55–85 % of the tissue's and at least 50 % of H (rule: ≥ 30 %),
        //   MTT 1.6–2.2× (CBV normal or raised).
        //   Both arrive late (collaterals), dispersed (τ 0.5–2 s), with Tmax truth 8–11 s
        //   (core) and 7.5–10 s (penumbra) (rule: > 6 s): the delay is the drawn Tmax less the
        //   earlier of the grey and white residue peaks, so neither reads under it; the later
        //   one reads up to 1.6 s more. At most 12.6 s: measurable in a 19-frame 2 s acquisition,
        //   whose deconvolution wraps residue times at 36 s.
        let h = 0.15 * gk.cbf + 0.85 * wk.cbf
        let cf = u(0.05...0.15), cm = u(2...3), pu = u(0...1), pm = u(1.6...2.2)
        let ctmax = u(8...11), ct = u(0.5...2), ptmax = u(7.5...10), pt = u(0.5...2)
        func ischaemic(_ tissues: [(Tissue, Kinetics)], transit m: Double, tmax: Double, tau: Double,
                       cbf: (Kinetics) -> Double) -> [(Tissue, Kinetics)] {
            let peak = tissues.map { Bolus.residuePeakTime(.exponential, mtt: $0.1.transit * m, dispersion: tau) }.min()!
            return tissues.map { tissue, base in
                (tissue, Kinetics(truthCBF: cbf(base), transit: base.transit * m, delay: tmax - peak,
                                  dispersion: tau, residue: .exponential))
            }
        }
        let core = ischaemic([(.coreGrey, gk), (.coreWhite, wk)], transit: cm, tmax: ctmax, tau: ct) { _ in h * cf }
        let penumbra = ischaemic([(.penumbraGrey, gk), (.penumbraWhite, wk)], transit: pm, tmax: ptmax, tau: pt) { base in
            let lo = max(0.55, 0.5 * h / base.cbf)
            return base.cbf * (lo + pu * (0.85 - lo))
        }
        for (tissue, k) in core + penumbra { kinetics[tissue] = k }
        lesion = withLesion ? Lesion(random: &g) : nil
        venousDelay = u(3...5)
        venousDispersion = u(2.5...4)
    }

    /// Enhancement (HU above baseline) of every tissue at `times`.
    public func enhancement(times: [Double]) -> [[Double]] {
        let zero = [Double](repeating: 0, count: times.count)
        return Tissue.allCases.map { t in
            switch t {
            case .artery: return times.map(aif.value)
            case .vein:
                // AIF ⊛ (h_τv ⊛ e^{−t/1 s}), delayed: a kernel of unit area, so the venous
                // curve has the AIF's area (tracer is conserved; what the VOF scaling relies on).
                // The flow is chosen so that the (ρ/k_H)·CBF/6000 factor is 1.
                return Bolus.tissueCurve(times: times, aif: aif, cbf: 6000 * Bolus.kH / Bolus.rho, mtt: 1,
                                         delay: venousDelay, residue: .exponential, dispersion: venousDispersion)
            default:
                guard let k = kinetics[t] else { return zero }
                return Bolus.tissueCurve(times: times, aif: aif, cbf: k.flow, mtt: k.transit, delay: k.delay,
                                         residue: k.residue, dispersion: k.dispersion)
            }
        }
    }
}
