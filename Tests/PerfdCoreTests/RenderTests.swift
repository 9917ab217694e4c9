import DICOM
import Foundation
import PerfdTestSupport
import Rendering
import Testing
import Volume

/// Output DICOM: every object must pass dciodvfy with no errors, carry the source's patient
/// and study, and be DERIVED\SECONDARY in a new series.
@Suite struct RenderTests {
    func dciodvfyErrors(_ path: String) throws -> [String] {
        let r = try runTool("dciodvfy", [path])
        return r.output.split(separator: "\n").map(String.init).filter { $0.hasPrefix("Error") }
    }

    func source() -> SourceInfo {
        var s = SourceInfo()
        s.patientName = "Doe^Jane"; s.patientID = "P123"; s.patientBirthDate = "19500101"; s.patientSex = "F"
        s.studyUID = "1.2.3.4.5"; s.studyDate = "20260101"; s.studyTime = "080000"; s.studyID = "7"
        s.accessionNumber = "ACC1"; s.seriesUID = "1.2.3.4.5.6"; s.frameOfReferenceUID = "1.2.3.4.9"
        return s
    }

    func volume() -> Volume3D {
        let g = Geometry(origin: SIMD3(-100, -100, 20), rowDirection: SIMD3(1, 0, 0), columnDirection: SIMD3(0, 1, 0),
                         sliceDirection: SIMD3(0, 0, 1), spacing: SIMD3(5, 2, 2))
        var v = Volume3D(depth: 2, height: 100, width: 100, voxels: [Float](repeating: .nan, count: 20000), geometry: g)
        for z in 0..<2 { for y in 10..<90 { for x in 10..<90 { v[z, y, x] = Float(x) } } }
        return v
    }

    @Test func greySeriesKeepsGeometryAndHU() throws {
        let dir = TempDir()
        let w = SecondaryCaptureWriter(source: source(), key: ["1.2.3.4.5.6", "baseline-t0", "none", "0"], directory: dir.path)
        var v = volume()
        for i in 0..<v.voxels.count where !v.voxels[i].isFinite { v.voxels[i] = -1000 }
        let out = try w.writeGrey(v, output: "ncct", seriesNumber: 9001, description: "Derived NCCT test NOT FOR DIAGNOSIS",
                                  derivation: "test", window: (40, 80), sourceSlices: [("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5.6.7")])
        #expect(out.files.count == 2)
        for f in out.files { #expect(try dciodvfyErrors(f) == []) }
        let f = try DicomFile(path: out.files[1])
        #expect(f.string("ImageType") == "DERIVED\\SECONDARY\\AXIAL")
        #expect(f.string("StudyInstanceUID") == "1.2.3.4.5")
        #expect(f.string("PatientID") == "P123")
        #expect(f.string("SeriesInstanceUID") == out.seriesUID)
        #expect(f.string("SeriesInstanceUID") != "1.2.3.4.5.6")
        #expect(f.string("RelatedSeriesSequence[0].SeriesInstanceUID") == "1.2.3.4.5.6")
        #expect(f.doubles("ImagePositionPatient") == [-100, -100, 25])
        #expect(f.string("WindowCenter") == "40")
        let px = try f.storedPixels()
        #expect(px[0] == -1000)
        #expect(px[50 * 100 + 37] == 37)
        // Same key, same UIDs: a re-render replaces instead of duplicating.
        let again = try w.writeGrey(v, output: "ncct", seriesNumber: 9001, description: "x", derivation: "x", window: (40, 80), sourceSlices: [])
        #expect(again.seriesUID == out.seriesUID)
        #expect(again.instanceUIDs == out.instanceUIDs)
        let rerun = SecondaryCaptureWriter(source: source(), key: ["1.2.3.4.5.6", "baseline-t0", "none", "1"], directory: dir.path)
        #expect(rerun.seriesUID("ncct") != out.seriesUID)
        #expect(out.seriesUID.count <= 64 && out.seriesUID.hasPrefix("2.25."))
    }

    @Test func colourMapAndFailureNoticePassValidation() throws {
        let dir = TempDir()
        let keep = ProcessInfo.processInfo.environment["PERFD_KEEP_RENDER"]
        let base = keep ?? dir.path
        let w = SecondaryCaptureWriter(source: source(), key: ["1.2.3.4.5.6", "perfusion", "1", "0"], directory: base)
        let v = volume()
        let pic = Pictures.colourSlice(v, z: 0, title: "CBF — perfd test", unit: "ml/100g/min", range: (0, 80), footer: "not for diagnosis")
        #expect(pic.width > v.width && pic.rgb.count == pic.width * pic.height * 3)
        let out = try w.writeRGB([pic], output: "cbf", seriesNumber: 9002, description: "CBF test", derivation: "test")
        #expect(try dciodvfyErrors(out.files[0]) == [])
        let notice = Pictures.failureNotice(seriesDescription: "CTP 4D", seriesUID: "1.2.3.4.5.6", stage: "assemble",
                                            reason: "only one time point (24 images at 24 slice positions): a perfusion series needs at least 2", job: 12)
        let n = try w.writeRGB([notice], output: "failure-notice", seriesNumber: 9999, description: "perfd PROCESSING FAILED", derivation: "x")
        #expect(try dciodvfyErrors(n.files[0]) == [])
        // The notice is not blank: its red header and white text are there.
        let reds = stride(from: 0, to: notice.rgb.count, by: 3).filter { notice.rgb[$0] > 140 && notice.rgb[$0 + 1] < 40 }.count
        let whites = stride(from: 0, to: notice.rgb.count, by: 3).filter { notice.rgb[$0] > 220 && notice.rgb[$0 + 1] > 220 && notice.rgb[$0 + 2] > 220 }.count
        #expect(reds > 768 * 40)
        #expect(whites > 500)
        #expect(try DicomFile(path: n.files[0]).string("BurnedInAnnotation") == "YES")
    }

    @Test func derivedUIDsAreStableAndValid() {
        let a = DerivedUID.make("x", "y")
        #expect(a == DerivedUID.make("x", "y"))
        #expect(a != DerivedUID.make("x", "z"))
        #expect(a.count <= 64)
        #expect(a.allSatisfy { $0.isNumber || $0 == "." })
    }
}

/// Slices of any shape render: a wide, short slice left the legend bar a negative height,
/// and a slice 32,700 px tall asked Cairo for a picture it cannot make (both crashed).
@Suite struct OddShapeRenderTests {
    @Test(arguments: [(32, 512), (16, 256), (32_700, 2), (1, 1), (3000, 3000)])
    func colourSliceOfAnyShape(_ h: Int, _ w: Int) {
        let g = Geometry(origin: SIMD3(0, 0, 0), rowDirection: SIMD3(1, 0, 0), columnDirection: SIMD3(0, 1, 0),
                         sliceDirection: SIMD3(0, 0, 1), spacing: SIMD3(5, 1, 1))
        let v = Volume3D(depth: 1, height: h, width: w, voxels: (0..<(h * w)).map { Float($0 % 80) }, geometry: g)
        let pic = Pictures.colourSlice(v, z: 0, title: "CBF", unit: "ml/100g/min", range: (0, 80), footer: "not for diagnosis")
        #expect(pic.width >= 640 && pic.height >= 200 && pic.width <= 2048 + 206 && pic.height <= 2048 + 260)
        #expect(pic.rgb.count == pic.width * pic.height * 3)
        #expect(pic.rgb.contains { $0 > 0 })
    }
}
