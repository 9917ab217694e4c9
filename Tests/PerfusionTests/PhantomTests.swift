import Foundation
import PerfdTestSupport
import Perfusion
import Phantom
import Testing
import Volume

/// The phantom's truth agrees with the curves it generates and with its own label map.
@Suite struct PhantomTests {
    /// ∫C_t/∫C_a = (ρ/k_H)·CBF·MTT/6000 also with dispersion (the kernel keeps ∫R_eff = ∫R),
    /// by independent trapezoidal integration over a window long enough for both to return.
    @Test(arguments: [(Bolus.Residue.box, 0.0), (.exponential, 0.0), (.box, 2.0), (.exponential, 2.5)])
    func curveAreaIsCBFTimesMTT(_ r: Bolus.Residue, _ tau: Double) {
        var aif = Bolus.Arterial()
        aif.recirculationFraction = 0
        let times = stride(from: 0.0, through: 160, by: 0.5).map { $0 }
        let cbf = 30.0, mtt = 7.0
        let tissue = Bolus.tissueCurve(times: times, aif: aif, cbf: cbf, mtt: mtt, delay: 3, residue: r, dispersion: tau)
        func area(_ y: [Double]) -> Double { zip(y, y.dropFirst()).map { ($0 + $1) * 0.25 }.reduce(0, +) }
        let ratio = area(tissue) / area(times.map(aif.value))
        let expected = (Bolus.rho / Bolus.kH) * cbf * mtt / 6000
        #expect(abs(ratio - expected) / expected < 0.01, "ratio \(ratio) vs \(expected)")
    }

    /// Tmax truth: the peak of h_τ ⊛ R. Exponential: t* = ln(m/τ)·τm/(m−τ) (set the
    /// derivative of (e^{−t/m} − e^{−t/τ}) to zero); box: the end of the box, m.
    @Test func residuePeakTimeMatchesAnalyticForms() {
        let m = 8.0, tau = 2.0
        let analytic = log(m / tau) * tau * m / (m - tau)
        #expect(abs(Bolus.residuePeakTime(.exponential, mtt: m, dispersion: tau) - analytic) <= 0.06)
        #expect(abs(Bolus.residuePeakTime(.box, mtt: m, dispersion: tau) - m) <= 0.06)
        #expect(Bolus.residuePeakTime(.exponential, mtt: m, dispersion: 0) == 0)
    }

    /// The truth of a dispersed tissue is what its curve holds: the curve equals
    /// (ρ/k_H)·(CBF/6000)·AIF ⊛ R_t(t − delay) with R_t = R_eff / max R_eff, a residue that
    /// peaks at 1, built here from the closed form of an exponential residue through an
    /// exponential kernel, R_eff(t) = m/(m−τ)·(e^{−t/m} − e^{−t/τ}), and convolved by the
    /// trapezoidal rule on a 0.02 s grid. A deconvolution with the measured AIF therefore
    /// reads max(CBF·R_t) = CBF; MTT = ∫R_t; Tmax = delay + argmax R_t.
    @Test(arguments: [(8.0, 0.5), (12.0, 2.0), (20.0, 1.2)])
    func truthIsWhatTheCurveHolds(_ m: Double, _ tau: Double) {
        let aif = Bolus.Arterial()
        let k = Kinetics(truthCBF: 10, transit: m, delay: 5, dispersion: tau, residue: .exponential)
        let tStar = log(m / tau) * tau * m / (m - tau)
        func rEff(_ t: Double) -> Double { t < 0 ? 0 : m / (m - tau) * (exp(-t / m) - exp(-t / tau)) }
        let peak = rEff(tStar)
        #expect(abs(k.cbf - 10) < 1e-9)
        #expect(abs(k.residuePeak - peak) < 0.01 * peak, "max R_eff \(k.residuePeak) vs \(peak)")
        #expect(abs(k.flow - 10 / peak) < 0.01 * k.flow)
        #expect(abs(k.mtt - m / peak) < 0.01 * k.mtt, "MTT truth \(k.mtt) vs ∫R_t \(m / peak)")
        #expect(abs(k.cbv - k.cbf * k.mtt / 60) < 1e-9)
        #expect(abs(k.tmax - (5 + tStar)) <= 0.06)
        let times = stride(from: 0.0, through: 40, by: 2).map { $0 }
        let curve = Bolus.tissueCurve(times: times, aif: aif, cbf: k.flow, mtt: k.transit, delay: k.delay,
                                      residue: .exponential, dispersion: tau)
        let h = 0.02, scale = (Bolus.rho / Bolus.kH) * k.cbf / 6000
        let expected = times.map { t -> Double in
            let u = t - k.delay
            guard u > 0 else { return 0 }
            let steps = Int((u / h).rounded())
            var s = 0.0
            for j in 0...steps {
                let w = j == 0 || j == steps ? 0.5 : 1
                s += w * aif.value(Double(j) * h) * rEff(u - Double(j) * h) / peak
            }
            return scale * s * h
        }
        let top = expected.max()!
        for (a, b) in zip(curve, expected) { #expect(abs(a - b) < 0.01 * top, "curve \(a) vs \(b) HU") }
    }

    /// The lesion's truth obeys the clinical rules its labels stand for, with margin
    /// (H = 0.15·grey + 0.85·white, the healthy hemisphere's mean flow): core CBF 5–15 % of H,
    /// penumbra CBF ≥ 50 % of H, Tmax 7.5–12.7 s for both (rule: > 6 s; the later of grey and
    /// white peaks up to 1.6 s after the drawn Tmax, plus the 0.05 s grid), exponential
    /// residues; healthy tissue is undispersed, so its truth is its generating flow.
    @Test func lesionTruthObeysTheClinicalRules() {
        for seed in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89] as [UInt64] {
            let k = PhantomModel(seed: seed, lesion: true).kinetics
            let grey = k[.grey]!, white = k[.white]!
            #expect(grey.cbf == grey.flow && grey.mtt == grey.transit && grey.tmax == grey.delay)
            let h = 0.15 * grey.cbf + 0.85 * white.cbf
            for t in [Tissue.coreGrey, .coreWhite, .penumbraGrey, .penumbraWhite] {
                let l = k[t]!
                #expect(l.residue == .exponential && l.dispersion >= 0.5 && l.dispersion <= 2)
                #expect(l.tmax >= 7.5 && l.tmax <= 12.7, "seed \(seed) \(t.name) Tmax \(l.tmax) s")
                #expect(abs(l.cbv - l.cbf * l.mtt / 60) < 1e-9 && l.cbf < l.flow && l.mtt > l.transit)
                let r = l.cbf / h
                if t.isCore { #expect(r >= 0.05 - 1e-9 && r <= 0.15 + 1e-9, "seed \(seed) \(t.name) rCBF \(r)") }
                else { #expect(r >= 0.5 - 1e-9, "seed \(seed) \(t.name) rCBF \(r)") }
            }
        }
    }

    @Test func truthMapsAndVolumesAreConsistent() throws {
        let dir = TempDir()
        var o = PhantomOptions()
        o.size = 96; o.slices = 6; o.seed = 9201; o.noiseSigma = 0; o.writeDICOM = false; o.writeNPY = true
        let r = try Phantom.write(to: dir.path, options: o)
        let truth = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.path + "/truth.json"))) as! [String: Any]
        for t in truth["tissues"] as! [[String: Any]] {
            let cbf = t["cbf"] as! Double, cbv = t["cbv"] as! Double, mtt = t["mtt_s"] as! Double
            #expect(abs(cbv - cbf * mtt / 60) < 1e-9, "\(t)")
            let flow = t["flow_before_dispersion"] as! Double, transit = t["mtt_before_dispersion_s"] as! Double
            #expect(abs(cbv - flow * transit / 60) < 1e-9 && cbf <= flow + 1e-9, "\(t)")
        }
        let labels = try NIfTI.read(dir.path + "/truth/labels.nii").voxels
        let cbf = try NIfTI.read(dir.path + "/truth/cbf.nii").voxels, cbv = try NIfTI.read(dir.path + "/truth/cbv.nii").voxels
        let mtt = try NIfTI.read(dir.path + "/truth/mtt.nii").voxels
        for i in labels.indices where cbf[i] > 0 { #expect(abs(mtt[i] - 60 * cbv[i] / cbf[i]) < 1e-3 * mtt[i]) }
        let voxelML = o.sliceThickness * o.pixelMM * o.pixelMM / 1000
        let core = Double(labels.filter { $0 == 7 || $0 == 8 }.count) * voxelML
        let pen = Double(labels.filter { $0 == 9 || $0 == 10 }.count) * voxelML
        let vols = truth["volumes_ml"] as! [String: Double]
        #expect(abs(vols["core"]! - core) < 1e-9 && abs(r.coreML - core) < 1e-9)
        #expect(abs(vols["penumbra"]! - pen) < 1e-9)
        #expect(core > 1 && pen > 1, "the lesion is in the slab: core \(core) ml, penumbra \(pen) ml")
        let series = try npyFloats(dir.path + "/series.npy")
        #expect(series.count == 19 * 6 * 96 * 96)
    }

    /// Irregular frame times are 1–3 s apart and reach the DICOM AcquisitionTime exactly
    /// (read back by the 4D assembly).
    @Test func irregularTimesReachTheDicomFiles() throws {
        let dir = TempDir()
        var o = PhantomOptions()
        o.size = 16; o.slices = 2; o.timepoints = 8; o.irregular = true; o.seed = 4
        let r = try Phantom.write(to: dir.path, options: o)
        let gaps = zip(r.frameTimes.dropFirst(), r.frameTimes).map { $0 - $1 }
        #expect(gaps.allSatisfy { (1...3).contains($0) } && Set(gaps.map { ($0 * 100).rounded() }).count > 1, "\(gaps)")
        let s = try Assembler.assemble(paths: r.files)
        #expect(zip(s.frameTimes, r.frameTimes).allSatisfy { abs($0 - $1) < 1e-4 }, "\(s.frameTimes) vs \(r.frameTimes)")
    }
}

/// Float32 values of a .npy file written by `NPY.write` (header skipped by its length).
func npyFloats(_ path: String) throws -> [Float] {
    let d = try Data(contentsOf: URL(fileURLWithPath: path))
    let headerLen = Int(d[8]) | Int(d[9]) << 8
    return d.withUnsafeBytes { raw in
        (0..<((d.count - 10 - headerLen) / 4)).map { raw.loadUnaligned(fromByteOffset: 10 + headerLen + 4 * $0, as: Float.self) }
    }
}
