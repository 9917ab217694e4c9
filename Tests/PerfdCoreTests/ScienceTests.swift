import Foundation
import PerfdCore
import PerfdTestSupport
import Testing
import Volume

@Suite struct BolusTests {
    /// Indicator dilution: ∫C_t = (ρ/k_H)·CBV·∫C_a when the curves return to baseline,
    /// with CBV = CBF·MTT. Checked by independent trapezoidal integration on a long window.
    @Test(arguments: [Bolus.Residue.box, .exponential])
    func tissueAreaMatchesCentralVolume(_ r: Bolus.Residue) {
        var aif = Bolus.Arterial()
        aif.recirculationFraction = 0
        let times = stride(from: 0.0, through: 120, by: 0.5).map { $0 }
        let cbf = 50.0, mtt = 4.0
        let tissue = Bolus.tissueCurve(times: times, aif: aif, cbf: cbf, mtt: mtt, delay: 1, residue: r)
        func area(_ y: [Double]) -> Double { zip(y, y.dropFirst()).map { ($0 + $1) * 0.25 }.reduce(0, +) }
        let ratio = area(tissue) / area(times.map(aif.value))
        let expected = (Bolus.rho / Bolus.kH) * cbf * mtt / 6000
        #expect(abs(ratio - expected) / expected < 0.01, "ratio \(ratio) vs \(expected)")
    }

    @Test func arterialPeakIsWherePlaced() {
        let aif = Bolus.Arterial()
        let peak = Bolus.gammaVariate(aif.arrival + aif.timeToPeak, arrival: aif.arrival, timeToPeak: aif.timeToPeak, alpha: aif.alpha, peak: aif.peakHU)
        #expect(abs(peak - aif.peakHU) < 1e-9)
        #expect(aif.value(aif.arrival - 0.1) == 0)
    }
}

@Suite struct NIfTITests {
    @Test func affineFollowsDicomGeometryInRAS() throws {
        let g = Geometry(origin: SIMD3(-120, -100, 30), rowDirection: SIMD3(1, 0, 0), columnDirection: SIMD3(0, 1, 0),
                         sliceDirection: SIMD3(0, 0, 1), spacing: SIMD3(5, 0.5, 0.25))
        let v = Volume3D(depth: 2, height: 3, width: 4, voxels: (0..<24).map(Float.init), geometry: g)
        let dir = TempDir()
        try NIfTI.write(v, to: dir.path + "/v.nii")
        let r = try NIfTI.read(dir.path + "/v.nii")
        #expect(r.dims == [4, 3, 2])
        #expect(r.voxels == v.voxels)
        // LPS (−120, −100, 30) is RAS (120, 100, 30); x and y axes flip sign.
        #expect(r.affine[0] == [-0.25, 0, 0, 120])
        #expect(r.affine[1] == [0, -0.5, 0, 100])
        #expect(r.affine[2] == [0, 0, 5, 30])
    }
}

@Suite struct BaselineTests {
    func series() -> Series4D {
        let g = Geometry(origin: .zero, rowDirection: SIMD3(1, 0, 0), columnDirection: SIMD3(0, 1, 0), sliceDirection: SIMD3(0, 0, 1), spacing: SIMD3(1, 1, 1))
        // Frame t has every voxel equal to 10·t.
        let vox = (0..<6).flatMap { t in [Float](repeating: Float(10 * t), count: 8) }
        return Series4D(timepoints: 6, depth: 2, height: 2, width: 2, voxels: vox, geometry: g, frameTimes: (0..<6).map(Double.init),
                        temporalSource: "test", files: [])
    }

    @Test func baselinesAverageTheRightFrames() throws {
        let s = series()
        #expect(try Pipelines.make("baseline-t0").run(s) { _ in }[0].volume.voxels.allSatisfy { $0 == 0 })
        #expect(try Pipelines.make("baseline-mean03").run(s) { _ in }[0].volume.voxels.allSatisfy { $0 == 15 })
        #expect(try Pipelines.make("baseline-mean-all").run(s) { _ in }[0].volume.voxels.allSatisfy { $0 == 25 })
    }

    @Test func unknownPipelineNamesTheAlternatives() {
        #expect { try Pipelines.make("nonsense") } throws: {
            "\($0)".contains("not available in this build") && "\($0)".contains("baseline-t0") && "\($0)".contains("perfusion-svd")
        }
    }
}
