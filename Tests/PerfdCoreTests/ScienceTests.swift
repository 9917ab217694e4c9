import Foundation
import PerfdTestSupport
import Perfusion
import Pipelines
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

/// Rows turned 20° about the long axis, columns tilted 13° towards the feet; slices along
/// row × column (all three exactly orthonormal).
private let oblique: (row: SIMD3<Double>, col: SIMD3<Double>, slice: SIMD3<Double>) = {
    let a = 20 * Double.pi / 180, b = 13 * Double.pi / 180
    let row = SIMD3(cos(a), sin(a), 0), col = SIMD3(-sin(a) * cos(b), cos(a) * cos(b), -sin(b))
    let n = SIMD3(row.y * col.z - row.z * col.y, row.z * col.x - row.x * col.z, row.x * col.y - row.y * col.x)
    return (row, col, n)
}()

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

    /// nibabel (an independent reader) builds the affine from the qform and from the sform:
    /// the two agree, for axial, reversed-slice (left-handed), flipped and oblique geometries.
    /// The qform was an identity with qform_code 1, so a reader using it swapped left and right.
    @Test(arguments: [
        ("axial", SIMD3(1.0, 0, 0), SIMD3(0.0, 1, 0), SIMD3(0.0, 0, 1)),
        ("slices downwards", SIMD3(1.0, 0, 0), SIMD3(0.0, 1, 0), SIMD3(0.0, 0, -1)),
        ("rows right to left", SIMD3(-1.0, 0, 0), SIMD3(0.0, 1, 0), SIMD3(0.0, 0, 1)),
        ("coronal", SIMD3(1.0, 0, 0), SIMD3(0.0, 0, -1), SIMD3(0.0, 1, 0)),
        ("oblique", oblique.row, oblique.col, oblique.slice),
    ])
    func qformAgreesWithSformInNibabel(_ name: String, _ row: SIMD3<Double>, _ col: SIMD3<Double>, _ slice: SIMD3<Double>) throws {
        let g = Geometry(origin: SIMD3(-120, -100, 30), rowDirection: row, columnDirection: col, sliceDirection: slice, spacing: SIMD3(5, 0.5, 0.25))
        let v = Volume3D(depth: 2, height: 3, width: 4, voxels: (0..<24).map(Float.init), geometry: g)
        let dir = TempDir()
        try NIfTI.write(v, to: dir.path + "/v.nii")
        let script = """
        import sys, json, nibabel as nib, numpy as np
        img = nib.load(sys.argv[1])
        q, qc = img.get_qform(coded=True)
        s, sc = img.get_sform(coded=True)
        print(json.dumps({"qcode": int(qc), "scode": int(sc), "diff": float(np.abs(q - s).max())}))
        """
        let r = try runTool(Paths.root + "/.venv/bin/python", ["-c", script, dir.path + "/v.nii"])
        #expect(r.status == 0, "\(r.output)")
        let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(o?["qcode"] as? Int == 1 && o?["scode"] as? Int == 1, "\(name): \(r.stdout)")
        // float32 storage: agreement to 1e-4 mm.
        #expect((o?["diff"] as? Double ?? 1) < 1e-4, "\(name): \(r.stdout)")
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
