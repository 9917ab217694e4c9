import Foundation

/// Kinetic parameters of one perfused region: flow, transit, bolus delay and dispersion.
public struct Kinetics: Sendable {
    public var cbf: Double          // ml/100g/min
    public var mtt: Double          // s, = ∫R
    public var delay: Double        // s, bolus arrival after the measured AIF
    public var dispersion: Double   // s, τ of the exponential dispersion kernel (0: none)
    public var residue: Bolus.Residue

    public var cbv: Double { cbf * mtt / 60 }   // ml/100g
    /// Tmax truth: delay + the time at which the effective residue h_τ ⊛ R peaks (what an
    /// ideal deconvolution with the measured AIF would show; see `Bolus.effectiveResidue`).
    public var tmax: Double { delay + Bolus.residuePeakTime(residue, mtt: mtt, dispersion: dispersion) }
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
        // One residue family for the healthy brain and one for the lesion, per seed.
        let healthy: Bolus.Residue = u(0...1) < 0.7 ? .exponential : .box
        let ischaemic: Bolus.Residue = u(0...1) < 0.7 ? .exponential : .box
        let gk = Kinetics(cbf: u(50...70), mtt: u(3.5...4.5), delay: u(0.3...1.2), dispersion: 0, residue: healthy)
        let wk = Kinetics(cbf: u(18...26), mtt: u(5...6.5), delay: u(0.6...1.6), dispersion: 0, residue: healthy)
        kinetics = [.grey: gk, .white: wk]
        // Core: flow 5–15 % of a healthy hemisphere's mean flow H (about 0.15·grey +
        // 0.85·white in this anatomy), so an ideal measurement puts it under the clinical
        // rCBF < 30 % rule; MTT 2–3× the tissue's. Penumbra: flow 55–80 % of the tissue's,
        // MTT 1.6–2.2× (CBV normal or raised). Both arrive late (collaterals), dispersed,
        // with Tmax > 6 s.
        let h = 0.15 * gk.cbf + 0.85 * wk.cbf
        let cf = u(0.05...0.15), cm = u(2...3), pf = u(0.55...0.8), pm = u(1.6...2.2)
        let cd = u(4.5...7), ct = u(0.5...2), pd = u(5...7), pt = u(0.5...2)
        for (tissue, base) in [(Tissue.coreGrey, gk), (.coreWhite, wk)] {
            kinetics[tissue] = Kinetics(cbf: h * cf, mtt: base.mtt * cm, delay: cd, dispersion: ct, residue: ischaemic)
        }
        for (tissue, base) in [(Tissue.penumbraGrey, gk), (.penumbraWhite, wk)] {
            kinetics[tissue] = Kinetics(cbf: base.cbf * pf, mtt: base.mtt * pm, delay: pd, dispersion: pt, residue: ischaemic)
        }
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
                return Bolus.tissueCurve(times: times, aif: aif, cbf: k.cbf, mtt: k.mtt, delay: k.delay,
                                         residue: k.residue, dispersion: k.dispersion)
            }
        }
    }
}
