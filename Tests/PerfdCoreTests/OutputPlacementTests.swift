import DICOM
import Foundation
import Jobs
import PerfdTestSupport
import Pipelines
import Rendering
import Testing
import Volume

/// Outputs a viewer can place (issue 19): every output kind passes dciodvfy with neither
/// errors nor warnings; colour maps and the summary page carry the source's frame of
/// reference and the plane of their slice, and their pixels lie on the source's voxels;
/// orientation letters and the slice's location are burned in; our text keeps out of the
/// corners; no empty Laterality; re-runs are told apart.
@Suite struct OutputPlacementTests {
    func source() -> SourceInfo {
        var s = SourceInfo()
        s.patientName = "Doe^Jane"; s.patientID = "P123"; s.patientBirthDate = "19500101"; s.patientSex = "F"
        s.studyUID = "1.2.3.4.5"; s.studyDate = "20260101"; s.studyTime = "080000"; s.studyID = "7"
        s.accessionNumber = "ACC1"; s.seriesUID = "1.2.3.4.5.6"; s.frameOfReferenceUID = "1.2.3.4.9"
        s.patientPosition = "HFS"; s.kvp = "80"
        return s
    }

    /// An oblique slab (rows turned 20° about the patient's long axis), 3 slices.
    func volume(nan: Bool = false) -> Volume3D {
        let a = 20 * Double.pi / 180
        let row = SIMD3(cos(a), sin(a), 0), col = SIMD3(-sin(a), cos(a), 0)
        let g = Geometry(origin: SIMD3(-90, -110, 12.5), rowDirection: row, columnDirection: col,
                         sliceDirection: SIMD3(0, 0, 1), spacing: SIMD3(5, 1.5, 2))
        var v = Volume3D(depth: 3, height: 40, width: 50, voxels: [Float](repeating: .nan, count: 3 * 40 * 50), geometry: g)
        if !nan { for z in 0..<3 { for y in 5..<35 { for x in 4..<46 { v[z, y, x] = Float(x + 10 * z) } } } }
        return v
    }

    func dciodvfyFindings(_ path: String) throws -> [String] {
        let r = try runTool("dciodvfy", [path])
        return r.output.split(separator: "\n").map(String.init).filter { $0.hasPrefix("Error") || $0.hasPrefix("Warning") }
    }

    /// Every kind perfd writes: derived NCCT, a colour map, the summary page, a failure notice.
    func writeEveryKind(_ dir: String) throws -> [String: OutputSeries] {
        let w = SecondaryCaptureWriter(source: source(), key: ["1.2.3.4.5.6", "perfusion-svd", "0", "0"], directory: dir)
        var grey = volume()
        for i in 0..<grey.voxels.count where !grey.voxels[i].isFinite { grey.voxels[i] = -1000 }
        var out: [String: OutputSeries] = [:]
        out["ncct"] = try w.writeGrey(grey, output: "ncct", seriesNumber: 9001, description: "Derived NCCT NOT FOR DIAGNOSIS",
                                      derivation: "test", window: (40, 80), sourceSlices: [("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5.6.7")])
        let v = volume()
        let pics = (0..<v.depth).map { Pictures.colourSlice(v, z: $0, title: "CBF — perfd test", unit: "ml/100g/min", range: (0, 80),
                                                            footer: "perfd test: not for diagnosis") }
        out["cbf"] = try w.writeRGB(pics, output: "cbf", seriesNumber: 9002, description: "CBF NOT FOR DIAGNOSIS", derivation: "test")
        let page = SummaryPage(maps: ["cbf": v], lesion: nil, anatomy: grey, enhancement: [Float](repeating: 0, count: 40 * 50),
                               summary: ["core_ml": .number(1)], motionQC: "ok", maxDisplacementMM: 0.2, pipeline: "perfusion-svd")
        let c = page.render()
        out["summary"] = try w.writeRGB([Picture(rgb: c.rgbBytes(), width: c.width, height: c.height, plane: page.plane)],
                                        output: "summary", seriesNumber: 9003, description: "Summary NOT FOR DIAGNOSIS", derivation: "test")
        let notice = Pictures.failureNotice(seriesDescription: "CTP", seriesUID: "1.2.3.4.5.6", stage: "assemble", reason: "test", job: 1)
        out["notice"] = try w.writeRGB([notice], output: "failure-notice", seriesNumber: 9999, description: "perfd PROCESSING FAILED", derivation: "x")
        return out
    }

    @Test func everyOutputKindPassesDciodvfyWithNoErrorsAndNoWarnings() throws {
        let dir = TempDir()
        for (kind, series) in try writeEveryKind(dir.path) {
            for f in series.files {
                #expect(try dciodvfyFindings(f) == [], "\(kind) \(f)")
                // Laterality: absent (a head is not a paired body part), never empty.
                let d = try DicomFile(path: f)
                #expect(d.string("Laterality") == nil, "\(kind)")
                #expect(d.string("BodyPartExamined") == "HEAD", "\(kind)")
            }
        }
    }

    @Test func derivedNCCTIsACTImageInTheSourcesFrameOfReference() throws {
        let dir = TempDir()
        let ncct = try #require(try writeEveryKind(dir.path)["ncct"])
        let v = volume()
        for (z, path) in ncct.files.enumerated() {
            let f = try DicomFile(path: path)
            #expect(f.string("SOPClassUID") == "1.2.840.10008.5.1.4.1.1.2")
            #expect(f.string("FrameOfReferenceUID") == "1.2.3.4.9")
            #expect(f.string("PatientPosition") == "HFS")
            let ipp = try #require(f.doubles("ImagePositionPatient"))
            let expected = v.geometry.position(z: Double(z), y: 0, x: 0)
            #expect(abs(ipp[0] - expected.x) < 1e-4 && abs(ipp[1] - expected.y) < 1e-4 && abs(ipp[2] - expected.z) < 1e-4)
            #expect(abs((f.double("SliceLocation") ?? .nan) - expected.z) < 1e-4)
        }
    }

    /// The colour map's plane, read back from the file, puts each voxel's colour where the
    /// voxel is: for every voxel, its patient position goes through the file's position,
    /// orientation and spacing to a picture pixel, and that pixel has the voxel's colour.
    @Test func colourMapPixelsLieOnTheSourceVoxels() throws {
        let dir = TempDir()
        let cbf = try #require(try writeEveryKind(dir.path)["cbf"])
        let v = volume()
        #expect(cbf.files.count == v.depth)
        for (z, path) in cbf.files.enumerated() {
            let f = try DicomFile(path: path)
            #expect(f.string("SOPClassUID") == "1.2.840.10008.5.1.4.1.1.7.4")
            #expect(f.string("FrameOfReferenceUID") == "1.2.3.4.9")
            #expect(f.int("NumberOfFrames") == 1)
            let iop = try #require(f.doubles("SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient"))
            let spacing = try #require(f.doubles("SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing"))
            let ipp = try #require(f.doubles("PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient"))
            #expect(f.double("SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness") == 5)
            let row = SIMD3(iop[0], iop[1], iop[2]), col = SIMD3(iop[3], iop[4], iop[5]), origin = SIMD3(ipp[0], ipp[1], ipp[2])
            #expect(simd_distance(row, v.geometry.rowDirection) < 1e-6 && simd_distance(col, v.geometry.columnDirection) < 1e-6)
            let width = try #require(f.int("Columns"))
            let rgb = try f.storedPixels().map { UInt8($0) }
            var checked = 0, wrong = 0
            for y in 0..<v.height { for x in 0..<v.width {
                let value = v[z, y, x]
                let p = v.geometry.position(z: Double(z), y: Double(y), x: Double(x)) - origin
                let c = Int(((p * row).sum() / spacing[1]).rounded()), r = Int(((p * col).sum() / spacing[0]).rounded())
                let i = (r * width + c) * 3
                let want: (UInt8, UInt8, UInt8) = value.isFinite ? ColourMap.perfusion[Int((max(0, min(1, Double(value) / 80)) * 255).rounded())] : (0, 0, 0)
                checked += 1
                if (rgb[i], rgb[i + 1], rgb[i + 2]) != want { wrong += 1 }
            } }
            #expect(checked == v.height * v.width && wrong == 0, "slice \(z): \(wrong) of \(checked) voxels off their place")
            // The picture's plane is the slice's: same location along the normal.
            let loc = (origin * SIMD3(0, 0, 1)).sum()
            #expect(abs(loc - v.geometry.position(z: Double(z), y: 0, x: 0).z) < 1e-6)
        }
    }

    @Test func summaryPageIsPlacedOnItsCorePenumbraPanel() throws {
        let dir = TempDir()
        let summary = try #require(try writeEveryKind(dir.path)["summary"])
        let f = try DicomFile(path: summary.files[0])
        #expect(f.string("SOPClassUID") == "1.2.840.10008.5.1.4.1.1.7.4")
        #expect(f.string("FrameOfReferenceUID") == "1.2.3.4.9")
        let ipp = try #require(f.doubles("PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient"))
        let spacing = try #require(f.doubles("SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing"))
        // The anatomy panel: 280 px for the slice's longer side (50 voxels of 2 mm).
        #expect(abs(spacing[1] - 2 * 50 / 280) < 1e-6 && abs(spacing[0] - 1.5 * 50 / 280) < 1e-6)
        let v = volume()
        // Voxel (0, 0) of the slice shown lies at the panel's top-left corner, (16, 478).
        let p = v.geometry.position(z: 1, y: 0, x: 0) - SIMD3(ipp[0], ipp[1], ipp[2])
        let c = (p * v.geometry.rowDirection).sum() / spacing[1], r = (p * v.geometry.columnDirection).sum() / spacing[0]
        #expect(abs(c - (16 + 0.5 * 280 / 50 - 0.5)) < 1e-6 && abs(r - (478 + 0.5 * 280 / 50 - 0.5)) < 1e-6, "\(c), \(r)")
    }

    @Test func failureNoticeStaysASecondaryCaptureWithoutGeometry() throws {
        let dir = TempDir()
        let notice = try #require(try writeEveryKind(dir.path)["notice"])
        let f = try DicomFile(path: notice.files[0])
        #expect(f.string("SOPClassUID") == "1.2.840.10008.5.1.4.1.1.7")
        #expect(f.string("FrameOfReferenceUID") == nil)
    }

    /// Bright pixels in the corners viewers write in: with a blank (NaN) map only our own
    /// text, letters and legend can be bright.
    static func brightInCorners(_ rgb: [UInt8], _ width: Int, _ height: Int) -> Int {
        let cw = Int(Double(width) * 0.18), ch = Int(Double(height) * 0.10)
        var n = 0
        for y in 0..<height { for x in 0..<width where (x < cw || x >= width - cw) && (y < ch || y >= height - ch) {
            let i = (y * width + x) * 3
            if max(rgb[i], rgb[i + 1], rgb[i + 2]) > 120 { n += 1 }
        } }
        return n
    }

    @Test func colourMapTextKeepsOutOfTheCornersAndShowsLettersAndLocation() throws {
        let v = volume(nan: true)
        let pic = Pictures.colourSlice(v, z: 1, title: "CBF — perfd perfusion-svd", unit: "ml/100g/min", range: (0, 80),
                                       footer: "HEAD MOTION 3.2 mm — QC WARNING — perfd perfusion-svd: not for diagnosis (model not clinically validated)")
        #expect(Self.brightInCorners(pic.rgb, pic.width, pic.height) == 0)
        // Something is written at the middle of each edge of the image (the letters).
        let plane = try #require(pic.plane)
        let scale = 2 / plane.spacing.y
        let imgW = Double(v.width) * scale, imgH = Double(v.height) * scale
        let ox = 28.0, oy = 72.0
        func bright(_ x0: Double, _ y0: Double, _ w: Double, _ h: Double) -> Int {
            var n = 0
            for y in Int(y0)..<Int(y0 + h) { for x in Int(x0)..<Int(x0 + w) {
                let i = (y * pic.width + x) * 3
                if pic.rgb[i] > 200 && pic.rgb[i + 1] > 200 { n += 1 }
            } }
            return n
        }
        #expect(bright(0, oy + imgH / 2 - 20, ox, 40) > 10, "left letter")
        #expect(bright(ox + imgW, oy + imgH / 2 - 20, 28, 40) > 10, "right letter")
        #expect(bright(ox + imgW / 2 - 20, oy - 28, 40, 28) > 10, "top letter")
        #expect(bright(ox + imgW / 2 - 20, oy + imgH, 40, 28) > 10, "bottom letter")
    }

    @Test func orientationLettersAndSliceLocationFollowTheGeometry() {
        let axial = Orientation.edges(row: SIMD3(1, 0, 0), column: SIMD3(0, 1, 0))
        #expect(axial.left == "R" && axial.right == "L" && axial.top == "A" && axial.bottom == "P")
        let flipped = Orientation.edges(row: SIMD3(-1, 0, 0), column: SIMD3(0, -1, 0))
        #expect(flipped.left == "L" && flipped.right == "R" && flipped.top == "P" && flipped.bottom == "A")
        let coronal = Orientation.edges(row: SIMD3(1, 0, 0), column: SIMD3(0, 0, -1))
        #expect(coronal.top == "H" && coronal.bottom == "F")
        let v = volume()
        // 20° oblique: rows mostly to the left, a little posterior.
        #expect(Orientation.letters(v.geometry.rowDirection) == "LP")
        #expect(Orientation.sliceLabel(v.geometry, z: 2, depth: 3) == "slice 3/3 · 22.5 mm")
    }

    @Test func summaryPageTextKeepsOutOfTheCorners() {
        let v = volume(nan: true)
        let maps = ["cbf": v, "cbv": v, "mtt": v, "tmax": v]
        let t = (0..<30).map(Double.init)
        let summary: [String: SummaryValue] = [
            "core_ml": .number(12.5), "penumbra_ml": .number(40), "hypoperfused_ml": .number(52.5), "mismatch_ratio": .number(4.2),
            "reference_cbf": .number(30), "curve_times_s": .numbers(t), "aif_delta_hu": .numbers(t.map { 400 * exp(-pow(($0 - 10) / 3, 2)) }),
            "vof_delta_hu": .numbers(t.map { 300 * exp(-pow(($0 - 16) / 4, 2)) }),
        ]
        for qc in ["ok", "motion"] {
            let page = SummaryPage(maps: maps, lesion: nil, anatomy: v, enhancement: [Float](repeating: 0, count: 40 * 50),
                                   summary: summary, motionQC: qc, maxDisplacementMM: 4.2, pipeline: "perfusion-svd")
            let c = page.render()
            #expect(Self.brightInCorners(c.rgbBytes(), c.width, c.height) == 0, "\(qc)")
        }
    }

    @Test func reRunsSayReRunNAndTakeTheirOwnSeriesNumbers() {
        let first = Processing.describe("Perfusion summary", "perfusion-svd", flags: ["MOTION", "QC WARN", "FALLBACK"], rerun: 0)
        #expect(!first.contains("re-run"))
        for n in [1, 2, 12] {
            let d = Processing.describe("Perfusion summary", "perfusion-svd", flags: ["MOTION", "QC WARN", "FALLBACK"], rerun: n)
            #expect(d.contains("re-run \(n)") && d.hasSuffix("NOT FOR DIAGNOSIS") && d.count <= 64, "\(d)")
        }
        let numbers = (0...3).flatMap { r in (1...6).map { Processing.seriesNumber($0, rerun: r) } + [Processing.failureNoticeSeriesNumber(rerun: r)] }
        #expect(Set(numbers).count == numbers.count)
        #expect(Processing.seriesNumber(1, rerun: 0) == 9001 && Processing.failureNoticeSeriesNumber(rerun: 0) == 9999)
    }
}

private func simd_distance(_ a: SIMD3<Double>, _ b: SIMD3<Double>) -> Double { ((a - b) * (a - b)).sum().squareRoot() }
