import Foundation
import Inference
import PerfdTestSupport
import Perfusion
import Pipelines
import Testing
import Volume

/// The shipped C-LSTM models through the `ncct` and `perfusion` pipelines on held-out
/// phantoms (seeds 9001+ never enter training), and how a missing or wrong model fails.
@Suite struct CLSTMPipelineTests {
    static let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("models").path

    struct Case {
        var series: Series4D
        var labels: [Float]
        var truth: [String: [Float]]
        var volumes: [String: Double]
    }

    func phantom(_ dir: TempDir, seed: UInt64, noise: Double, slices: Int = 4, size: Int = 128) throws -> Case {
        let ph = try makePhantom(in: dir.path, size: size, slices: slices, timepoints: 19, seed: seed, noise: noise)
        let s = try Assembler.assemble(paths: ph.files)
        var truth: [String: [Float]] = [:]
        for m in ["ncct", "cbf", "cbv", "mtt", "tmax", "labels"] { truth[m] = try NIfTI.read(dir.path + "/truth/\(m).nii").voxels }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.path + "/truth.json"))) as! [String: Any]
        return Case(series: s, labels: truth["labels"]!, truth: truth, volumes: json["volumes_ml"] as! [String: Double])
    }

    func median(_ a: [Double]) -> Double { a.sorted()[a.count / 2] }

    /// Derived NCCT inside the brain (labels 2…10): the model's MSE against the true NCCT is
    /// below the best simple baseline's (mean of frames 0–3), the paper's finding.
    @Test func ncctBeatsMeanOfFirstFrames() throws {
        let dir = TempDir()
        let c = try phantom(dir, seed: 9004, noise: 10)
        let model = try CLSTMPipeline(name: "ncct", model: Self.models + "/ncct-clstm").run(c.series) { _ in }[0].volume.voxels
        let mean03 = try Pipelines.make("baseline-mean03").run(c.series) { _ in }[0].volume.voxels
        let truth = c.truth["ncct"]!
        func mse(_ est: [Float]) -> Double {
            let brain = c.labels.indices.filter { c.labels[$0] >= 2 }
            return brain.reduce(0.0) { $0 + pow(Double(est[$1] - truth[$1]), 2) } / Double(brain.count)
        }
        let (m, b) = (mse(model), mse(mean03))
        #expect(m < 0.9 * b, "ncct-clstm brain MSE \(m) HU² vs baseline-mean03 \(b) HU²")
    }

    /// Perfusion maps at σ = 10 HU against the phantom's truth, within the bounds measured by
    /// scripts/evaluate with a margin (see models/perfusion-clstm/MODEL_CARD.md).
    @Test func perfusionWithinMeasuredAccuracy() throws {
        let dir = TempDir()
        let c = try phantom(dir, seed: 9001, noise: 10, slices: 8)
        let out = try CLSTMPipeline(name: "perfusion", model: Self.models + "/perfusion-clstm").runWithSummary(c.series) { _ in }
        let maps = Dictionary(uniqueKeysWithValues: out.volumes.map { ($0.name, $0.volume.voxels) })
        #expect(out.volumes.map(\.name) == ["cbf", "cbv", "mtt", "tmax"])
        func voxels(_ codes: [Float]) -> [Int] { c.labels.indices.filter { codes.contains(c.labels[$0]) } }
        let white = voxels([4]), grey = voxels([3]), healthy = voxels([3, 4])
        func relError(_ name: String, _ v: [Int]) -> Double {
            median(v.map { abs(Double(maps[name]![$0] - c.truth[name]![$0])) / max(Double(c.truth[name]![$0]), 1e-6) })
        }
        let tmaxError = median(healthy.map { abs(Double(maps["tmax"]![$0] - c.truth["tmax"]![$0])) })
        #expect(relError("cbf", white) < PerfusionBounds.whiteCBF, "white CBF median |error| \(relError("cbf", white))")
        #expect(relError("cbv", white) < PerfusionBounds.whiteCBV, "white CBV median |error| \(relError("cbv", white))")
        #expect(relError("cbf", grey) < PerfusionBounds.greyCBF, "grey CBF median |error| \(relError("cbf", grey))")
        #expect(relError("cbv", grey) < PerfusionBounds.greyCBV, "grey CBV median |error| \(relError("cbv", grey))")
        #expect(tmaxError < PerfusionBounds.tmaxSeconds, "healthy Tmax median |error| \(tmaxError) s")
        guard case .number(let core) = out.summary["core_ml"] else { Issue.record("summary lacks core_ml"); return }
        let trueCore = c.volumes["core"]!
        #expect(abs(core - trueCore) <= PerfusionBounds.core * trueCore, "core \(core) ml vs truth \(trueCore) ml")
        // The summary page's curves: the venous output peaks after the arterial input, on
        // voxels of the phantom's vein (label 6).
        guard case .numbers(let aif)? = out.summary["aif_delta_hu"], case .numbers(let vof)? = out.summary["vof_delta_hu"],
              case .table(let vofVoxels)? = out.summary["vof_voxels_zyx"] else { Issue.record("summary lacks the AIF or VOF"); return }
        #expect(vof.count == c.series.timepoints && aif.count == vof.count)
        #expect(vof.firstIndex(of: vof.max()!)! > aif.firstIndex(of: aif.max()!)!, "VOF \(vof) vs AIF \(aif)")
        let plane = c.series.height * c.series.width
        for v in vofVoxels { #expect(c.labels[Int(v[0]) * plane + Int(v[1]) * c.series.width + Int(v[2])] == 6, "VOF voxel \(v)") }
    }

    /// A series finer than the model's training pixel (model.json "pixel_mm" 1.875): a 256²
    /// phantom (0.94 mm) is analysed on 2×2 blocks and its maps and lesion mask come back on
    /// the 256² grid.
    @Test func finerSeriesIsAnalysedAtTheTrainingPixel() throws {
        let dir = TempDir()
        let c = try phantom(dir, seed: 9001, noise: 10, slices: 8, size: 256)
        let out = try CLSTMPipeline(name: "perfusion", model: Self.models + "/perfusion-clstm").runWithSummary(c.series) { _ in }
        #expect(out.summary["analysis_pixel_mm"] == .number(1.875))
        for v in out.volumes.map(\.volume) + [out.lesion!] {
            #expect(v.height == 256 && v.width == 256 && v.geometry == c.series.geometry)
        }
        let cbf = out.volumes[0].volume.voxels, truth = c.truth["cbf"]!
        let white = c.labels.indices.filter { c.labels[$0] == 4 }
        let err = median(white.map { abs(Double(cbf[$0] - truth[$0])) / max(Double(truth[$0]), 1e-6) })
        #expect(err < PerfusionBounds.whiteCBF, "white CBF median |error| \(err) at 256²")
        guard case .number(let core) = out.summary["core_ml"] else { Issue.record("summary lacks core_ml"); return }
        let trueCore = c.volumes["core"]!
        // Measured (2.1.0): 17.1 ml for 22.4 (−24 %; the 128² run of this head reads 19.8,
        // −12 %; 2.0.0 read 9.8 here): a guard, not the acceptance line.
        #expect(abs(core - trueCore) <= 0.40 * trueCore, "core \(core) ml vs truth \(trueCore) ml at 256²")
        // The lesion mask holds what the summary counts.
        let voxelML = c.series.geometry.sliceSpacing * c.series.geometry.rowSpacing * c.series.geometry.columnSpacing / 1000
        let maskCore = Double(out.lesion!.voxels.filter { $0 == 1 }.count) * voxelML
        #expect(abs(maskCore - core) < 0.01 * max(core, 1), "mask core \(maskCore) ml vs summary \(core) ml")
    }

    /// The first perfusion model (1.0.0: one input channel, "aif-aligned-delta-hu", linear
    /// outputs), kept as a fixture: models of the original contract still load and run.
    static let legacyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("fixtures/perfusion-clstm-1.0.0").path

    @Test func oneChannelModelOfTheFirstContractStillRuns() throws {
        let dir = TempDir()
        let c = try phantom(dir, seed: 9004, noise: 10, slices: 2)
        let pipeline = try CLSTMPipeline(name: "perfusion", model: Self.legacyModel)
        #expect(pipeline.model.inputChannels == 1 && pipeline.model.spec.preprocessing == "aif-aligned-delta-hu")
        let out = try pipeline.runWithSummary(c.series) { _ in }
        #expect(out.volumes.map(\.name) == ["cbf", "cbv", "mtt", "tmax"])
        let cbf = out.volumes[0].volume.voxels, truth = c.truth["cbf"]!
        let white = c.labels.indices.filter { c.labels[$0] == 4 }
        // That model measured 12.7–21 % in white matter (its MODEL_CARD); a wide margin.
        let err = median(white.map { abs(Double(cbf[$0] - truth[$0])) / max(Double(truth[$0]), 1e-6) })
        #expect(err < 0.5, "white CBF median |error| \(err) with the 1.0.0 model")
    }

    /// A model whose first layer does not take the channels its preprocessing makes is refused.
    @Test func preprocessingThatDoesNotFitTheFirstLayerIsRefused() throws {
        let dir = TempDir()
        let m = dir.path + "/model"
        try FileManager.default.copyItem(atPath: Self.legacyModel, toPath: m)
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: m + "/model.json"))) as! [String: Any]
        json["preprocessing"] = "aif-aligned-delta-hu+aif"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: m + "/model.json"))
        let e = #expect(throws: PipelineError.self) { try CLSTMPipeline(name: "perfusion", model: m) }
        #expect(e?.message.contains("2 input channels") == true, "\(e?.message ?? "")")
        json["preprocessing"] = "raw"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: m + "/model.json"))
        let e2 = #expect(throws: PipelineError.self) { try CLSTMPipeline(name: "perfusion", model: m) }
        #expect(e2?.message.contains("\"raw\"") == true, "\(e2?.message ?? "")")
    }

    @Test func explicitDirectoryWithoutModelNamesThePath() throws {
        let dir = TempDir()
        let e = #expect(throws: PipelineError.self) { try CLSTMPipeline(name: "ncct", model: dir.path + "/nowhere") }
        #expect(e?.message.contains(dir.path + "/nowhere") == true)
        #expect(e?.message.contains("model.json") == true)
    }

    @Test func defaultModelIsFoundThroughPERFD_MODELS() throws {
        let dir = TempDir()
        try FileManager.default.copyItem(atPath: Self.models + "/ncct-clstm", toPath: dir.path + "/ncct-clstm")
        let found = try ModelLocator.locate(pipeline: "ncct", explicit: nil, environment: ["PERFD_MODELS": dir.path],
                                            executable: "/nonexistent/bin/perfd", currentDirectory: "/nonexistent")
        #expect(found == dir.path + "/ncct-clstm")
        // Nowhere to be found: the message lists the places and the fixes.
        if !FileManager.default.fileExists(atPath: "/usr/local/share/perfd/models/perfusion-clstm"),
           !FileManager.default.fileExists(atPath: "/usr/share/perfd/models/perfusion-clstm") {
            let e = #expect(throws: PipelineError.self) {
                try ModelLocator.locate(pipeline: "perfusion", explicit: nil, environment: ["PERFD_MODELS": dir.path],
                                        executable: "/nonexistent/bin/perfd", currentDirectory: "/nonexistent")
            }
            #expect(e?.message.contains(dir.path + "/perfusion-clstm") == true)
            #expect(e?.message.contains("PERFD_MODELS") == true)
        }
    }

    @Test func modelOfAnotherTaskIsRefused() throws {
        let e = #expect(throws: PipelineError.self) { try CLSTMPipeline(name: "perfusion", model: Self.models + "/ncct-clstm") }
        #expect(e?.message.contains(Self.models + "/ncct-clstm") == true)
        #expect(e?.message.contains("\"ncct\"") == true)
    }

    /// A model.json that does not match its weights: the error names the directory and the tensor.
    @Test func mismatchedWeightsNameTheTensor() throws {
        let dir = TempDir()
        let m = dir.path + "/broken"
        try FileManager.default.copyItem(atPath: Self.models + "/ncct-clstm", toPath: m)
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: m + "/model.json"))) as! [String: Any]
        var layers = json["layers"] as! [[String: Any]]
        layers[0]["filters"] = (layers[0]["filters"] as! Int) + 1
        json["layers"] = layers
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: m + "/model.json"))
        let e = #expect(throws: PipelineError.self) { try CLSTMPipeline(name: "ncct", model: m) }
        #expect(e?.message.contains(m) == true)
        #expect(e?.message.contains("layers.0.forward.kernel") == true, "\(e?.message ?? "")")
    }
    /// A series without a bolus (frames 0.01 s apart: the contrast never arrives) is refused
    /// with the reason; noise alone lifted its brightest "arteries" by ~25 HU, which the former
    /// 20 HU floor took for an arterial input (and read a 178 ml penumbra).
    @Test func seriesWithoutABolusIsRefused() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.path, size: 64, slices: 2, timepoints: 19, seed: 3, interval: 0.01)
        let s = try Assembler.assemble(paths: ph.files)
        #expect { _ = try CLSTMPipeline(name: "perfusion", model: CLSTMPipelineTests.models + "/perfusion-clstm").runWithSummary(s) { _ in } } throws: {
            "\($0)".contains("no arterial enhancement")
        }
    }
}

/// Tolerances for `perfusionWithinMeasuredAccuracy` (perfusion-clstm 2.1.0): scripts/evaluate
/// at σ = 10 HU measured on this seed (9001) white matter CBF 4.5 %, CBV 8.2 %; grey matter
/// CBF 12.1 %, CBV 19.2 % (11.7 % / 11.6 % over seeds 9001–9003); healthy Tmax 0.17 s; core
/// 19.8 ml for 22.4 ml (−12 %) — plus a margin. A guard against regressions, not the issue's
/// acceptance line (MODEL_CARD.md has that).
enum PerfusionBounds {
    static let whiteCBF = 0.08, whiteCBV = 0.13, greyCBF = 0.20, greyCBV = 0.27, tmaxSeconds = 0.4, core = 0.25

}
