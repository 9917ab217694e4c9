import Foundation
import Inference
import PerfdCore
import PerfdTestSupport
import Perfusion
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

    func phantom(_ dir: TempDir, seed: UInt64, noise: Double, slices: Int = 4) throws -> Case {
        let ph = try makePhantom(in: dir.path, size: 128, slices: slices, timepoints: 19, seed: seed, noise: noise)
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
        let c = try phantom(dir, seed: 9005, noise: 10)
        let out = try CLSTMPipeline(name: "perfusion", model: Self.models + "/perfusion-clstm").runWithSummary(c.series) { _ in }
        let maps = Dictionary(uniqueKeysWithValues: out.volumes.map { ($0.name, $0.volume.voxels) })
        #expect(out.volumes.map(\.name) == ["cbf", "cbv", "mtt", "tmax"])
        let tissue = c.labels.indices.filter { [3, 4, 7, 8, 9, 10].contains(c.labels[$0]) }
        func relError(_ name: String) -> Double {
            median(tissue.map { abs(Double(maps[name]![$0] - c.truth[name]![$0])) / max(Double(c.truth[name]![$0]), 1e-6) })
        }
        let tmaxError = median(tissue.map { abs(Double(maps["tmax"]![$0] - c.truth["tmax"]![$0])) })
        #expect(relError("cbf") < PerfusionBounds.cbf, "CBF median |error| \(relError("cbf"))")
        #expect(relError("cbv") < PerfusionBounds.cbv, "CBV median |error| \(relError("cbv"))")
        #expect(tmaxError < PerfusionBounds.tmaxSeconds, "Tmax median |error| \(tmaxError) s")
        guard case .number(let core) = out.summary["core_ml"], case .number(let hypo) = out.summary["hypoperfused_ml"] else {
            Issue.record("summary lacks core_ml / hypoperfused_ml"); return
        }
        let trueCore = c.volumes["core"]!, trueHypo = c.volumes["core"]! + c.volumes["penumbra"]!
        #expect(abs(core - trueCore) <= PerfusionBounds.volume * trueCore + 0.5, "core \(core) ml vs truth \(trueCore) ml")
        #expect(abs(hypo - trueHypo) <= PerfusionBounds.volume * trueHypo + 0.5, "Tmax>6 s \(hypo) ml vs truth \(trueHypo) ml")
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
}

/// Tolerances for `perfusionWithinMeasuredAccuracy`: the held-out evaluation at σ = 10 HU
/// (MODEL_CARD.md) plus a margin for a different seed.
enum PerfusionBounds {
    static let cbf = 0.30, cbv = 0.30, tmaxSeconds = 2.0, volume = 0.5
}
