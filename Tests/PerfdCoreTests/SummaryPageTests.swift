import DICOM
import Foundation
import PerfdTestSupport
import Pipelines
import Rendering
import Testing
import Volume

/// The perfusion summary page: drawn from known maps, it shows the lesion in the stated
/// colours, the curves, the QC flag, and passes dciodvfy as an RGB Secondary Capture.
@Suite struct SummaryPageTests {
    func volume(_ f: (Int, Int) -> Float) -> Volume3D {
        let n = 64
        let g = Geometry(origin: SIMD3(0, 0, 0), rowDirection: SIMD3(1, 0, 0), columnDirection: SIMD3(0, 1, 0),
                         sliceDirection: SIMD3(0, 0, 1), spacing: SIMD3(5, 2, 2))
        let voxels = (0..<(2 * n * n)).map { i in (i / (n * n)) == 1 ? f((i / n) % n, i % n) : 0 }
        return Volume3D(depth: 2, height: n, width: n, voxels: voxels, geometry: g)
    }

    func page(qc: String) -> SummaryPage {
        let maps = ["cbf": volume { _, x in Float(x) }, "cbv": volume { _, _ in 3 }, "mtt": volume { _, _ in 5 }, "tmax": volume { y, _ in Float(y) / 5 }]
        // Slice 2 holds the lesion: a core block inside a penumbra block.
        let lesion = volume { y, x in (28..<36).contains(y) && (10..<18).contains(x) ? 1 : ((20..<44).contains(y) && (4..<24).contains(x) ? 2 : 0) }
        let t = (0..<30).map(Double.init)
        let summary: [String: SummaryValue] = [
            "core_ml": .number(12.5), "penumbra_ml": .number(40), "hypoperfused_ml": .number(52.5), "mismatch_ratio": .number(4.2),
            "reference_cbf": .number(30), "curve_times_s": .numbers(t),
            "aif_delta_hu": .numbers(t.map { 400 * exp(-pow(($0 - 10) / 3, 2)) }), "vof_delta_hu": .numbers(t.map { 300 * exp(-pow(($0 - 16) / 4, 2)) }),
            "aif_voxels_zyx": .table([[1, 20, 30]]), "vof_voxels_zyx": .table([[1, 60, 32]]), "aif_partial_volume_scale": .number(1.1),
        ]
        return SummaryPage(maps: maps, lesion: lesion, anatomy: volume { _, _ in 35 }, enhancement: [Float](repeating: 0, count: 64 * 64),
                           summary: summary, motionQC: qc, maxDisplacementMM: qc == "ok" ? 0.4 : 4.2, pipeline: "perfusion-svd")
    }

    func count(_ rgb: [UInt8], _ test: (UInt8, UInt8, UInt8) -> Bool) -> Int {
        stride(from: 0, to: rgb.count, by: 3).filter { test(rgb[$0], rgb[$0 + 1], rgb[$0 + 2]) }.count
    }

    @Test func showsLesionCurvesAndPassesDciodvfy() throws {
        let p = page(qc: "ok")
        #expect(p.slice == 1)
        let c = p.render()
        let rgb = c.rgbBytes()
        #expect(c.width == SummaryPage.width && c.height == SummaryPage.height)
        // Core 8×8 and penumbra 24×20 − 8×8 voxels, drawn at 280/64 ≈ 4.4 pixels per voxel.
        let core = count(rgb) { r, g, b in r > 150 && g < 100 && b < 100 }
        let penumbra = count(rgb) { r, g, b in g > 150 && r < 100 && b < 100 }
        #expect(core > 64 * 15, "core pixels \(core)")
        #expect(penumbra > 416 * 15, "penumbra pixels \(penumbra)")
        let dir = TempDir()
        try c.writePNG(to: dir.path + "/summary.png")
        #expect(FileManager.default.fileExists(atPath: dir.path + "/summary.png"))
        var s = SourceInfo()
        s.patientName = "Doe^Jane"; s.patientID = "P123"; s.studyUID = "1.2.3.4.5"; s.seriesUID = "1.2.3.4.5.6"
        s.studyDate = "20260101"; s.studyTime = "080000"; s.frameOfReferenceUID = "1.2.3.4.9"
        let w = SecondaryCaptureWriter(source: s, key: ["1.2.3.4.5.6", "perfusion-svd", "0", "0"], directory: dir.path)
        let out = try w.writeRGB([Picture(rgb: rgb, width: c.width, height: c.height, plane: p.plane)], output: "summary", seriesNumber: 9006,
                                 description: "Perfusion summary perfd perfusion-svd NOT FOR DIAGNOSIS", derivation: "test")
        let r = try runTool("dciodvfy", [out.files[0]])
        #expect(r.output.split(separator: "\n").filter { $0.hasPrefix("Error") } == [])
    }

    @Test func motionFlagIsRedWhenQCFails() {
        // The flag box sits in the header's second row, centred: green for "ok", red for "motion".
        func flagPixels(_ p: SummaryPage) -> (red: Int, green: Int) {
            let rgb = p.render().rgbBytes(), y = 52
            let row = (0..<SummaryPage.width).map { x in (rgb[(y * SummaryPage.width + x) * 3], rgb[(y * SummaryPage.width + x) * 3 + 1]) }
            return (row.filter { $0.0 > 150 && $0.1 < 40 }.count, row.filter { $0.1 > 80 && $0.0 < 40 }.count)
        }
        let ok = flagPixels(page(qc: "ok")), moved = flagPixels(page(qc: "motion"))
        #expect(ok.green > 150 && ok.red == 0, "ok flag \(ok)")
        #expect(moved.red > 150 && moved.green == 0, "motion flag \(moved)")
    }
}
