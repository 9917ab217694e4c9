import Foundation
import PerfdTestSupport
import Perfusion
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

    @Test func truthMapsAndVolumesAreConsistent() throws {
        let dir = TempDir()
        var o = PhantomOptions()
        o.size = 96; o.slices = 6; o.seed = 9201; o.noiseSigma = 0; o.writeDICOM = false; o.writeNPY = true
        let r = try Phantom.write(to: dir.path, options: o)
        let truth = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.path + "/truth.json"))) as! [String: Any]
        for t in truth["tissues"] as! [[String: Any]] {
            let cbf = t["cbf"] as! Double, cbv = t["cbv"] as! Double, mtt = t["mtt_s"] as! Double
            #expect(abs(cbv - cbf * mtt / 60) < 1e-9, "\(t)")
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
