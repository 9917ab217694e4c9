import DICOM
import Foundation
import PerfdTestSupport
import Testing

/// `perfd run` offline, checked by independent readers (nibabel, pydicom, dciodvfy).
@Suite struct RunCommandTests {
    @Test func runWritesDicomReportAndMapsNibabelOpens() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.sub("ph"), size: 64, slices: 4, timepoints: 19)
        let out = dir.path + "/out"
        let r = try runTool(Paths.perfd, ["run", dir.path + "/ph", "--output", out, "--pipeline", "baseline-t0"])
        #expect(r.status == 0, "\(r.output)")

        let py = Paths.root + "/.venv/bin/python"
        let check = try runTool(py, [Paths.root + "/Tests/IntegrationTests/python/check_nifti.py", out + "/maps/ncct.nii", dir.path + "/ph"])
        #expect(check.status == 0, "\(check.output)")

        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
        #expect(report["pipeline"] as? String == "baseline-t0")
        let input = report["input"] as! [String: Any]
        #expect(input["series_uid"] as? String == ph.seriesUID)
        #expect(input["shape"] as? [Int] == [19, 4, 64, 64])
        #expect(input["frame_times_s"] as? [Double] == ph.frameTimes)
        let outputs = report["outputs"] as! [[String: Any]]
        #expect(outputs.count == 1 && outputs[0]["instances"] as? Int == 4)
        let timings = report["timings_s"] as! [String: Double]
        #expect(timings["total"] != nil && timings["assemble"] != nil && timings["render"] != nil)

        let files = try FileManager.default.contentsOfDirectory(atPath: out + "/dicom/ncct").sorted()
        #expect(files.count == 4)
        for f in files {
            let v = try runTool("dciodvfy", [out + "/dicom/ncct/" + f])
            #expect(!v.output.contains("Error"), "\(v.output)")
        }
        // baseline-t0 is the first time point: the written HU equal the source's.
        let src = try firstFrameHU(dir.path + "/ph")
        let written = try DicomFile(path: out + "/dicom/ncct/0001.dcm").storedPixels()
        #expect(zip(src, written).allSatisfy { abs($0 - $1) <= 0.5 })
    }

    /// Issue 19: the colour maps and the summary page lie on the source (checked pixel by
    /// pixel by pydicom and nibabel), and every output passes dciodvfy with no errors and no
    /// warnings; the derived NCCT too.
    @Test func mapsAndSummaryLieOnTheSourceAndEveryOutputValidatesCleanly() throws {
        let dir = TempDir()
        _ = try makePhantom(in: dir.sub("ph"), size: 64, slices: 4, timepoints: 19)
        let py = Paths.root + "/.venv/bin/python"
        for pipeline in ["perfusion-svd", "baseline-t0"] {
            let out = dir.path + "/out-" + pipeline
            let r = try runTool(Paths.perfd, ["run", dir.path + "/ph", "--output", out, "--pipeline", pipeline])
            #expect(r.status == 0, "\(r.output)")
            let dicom = out + "/dicom"
            let files = try FileManager.default.subpathsOfDirectory(atPath: dicom).filter { $0.hasSuffix(".dcm") }.sorted()
            #expect(files.count == (pipeline == "baseline-t0" ? 4 : 5 * 4 + 1), "\(files)")
            for f in files {
                let v = try runTool("dciodvfy", [dicom + "/" + f])
                let findings = v.output.split(separator: "\n").filter { $0.hasPrefix("Error") || $0.hasPrefix("Warning") }
                #expect(findings.isEmpty, "\(pipeline) \(f): \(findings)")
            }
            if pipeline == "perfusion-svd" {
                let check = try runTool(py, [Paths.root + "/Tests/IntegrationTests/python/check_placement.py", out, dir.path + "/ph"])
                #expect(check.status == 0, "\(check.output)")
            }
        }
    }

    @Test func runOnSomethingThatIsNotASeriesFailsWithAReason() throws {
        let dir = TempDir()
        _ = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 1)
        let r = try runTool(Paths.perfd, ["run", dir.path + "/ph", "--output", dir.path + "/out"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("only one time point"), "\(r.output)")
    }
}

/// HU of time point 1, slice 1 of a phantom folder, read straight from its file.
func firstFrameHU(_ dir: String) throws -> [Float] {
    let f = try DicomFile(path: dir + "/t00_z000.dcm")
    let slope = Float(f.double("RescaleSlope") ?? 1), icpt = Float(f.double("RescaleIntercept") ?? 0)
    return try f.storedPixels().map { $0 * slope + icpt }
}

/// The register stage inside `perfd run`: report.json carries the contract's registration block.
@Suite struct RunRegistrationReportTests {
    @Test func reportHasOneTransformPerTimePointAndAQCFlag() throws {
        let dir = TempDir()
        _ = try makePhantom(in: dir.sub("ph"), size: 64, slices: 4, timepoints: 4, interval: 3)
        let out = dir.path + "/out"
        let r = try runTool(Paths.perfd, ["run", dir.path + "/ph", "--output", out, "--pipeline", "baseline-t0"])
        #expect(r.status == 0, "\(r.output)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
        let reg = try #require(report["registration"] as? [String: Any])
        let transforms = try #require(reg["transforms"] as? [[String: Any]])
        #expect(transforms.count == 4)
        #expect(["ok", "motion"].contains(reg["qc"] as? String ?? ""))
        let m0 = try #require(transforms[0]["matrix"] as? [[Double]])
        #expect(m0 == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        for t in transforms {
            #expect((t["rotation_deg"] as? [Double])?.count == 3 && (t["translation_mm"] as? [Double])?.count == 3)
            let m = try #require(t["matrix"] as? [[Double]])
            #expect(m.count == 4 && m[3] == [0, 0, 0, 1])
        }
        let timings = report["timings_s"] as! [String: Double]
        #expect(timings["register"] != nil)
    }
}
