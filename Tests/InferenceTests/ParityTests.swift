import Foundation
import Inference
import PerfdTestSupport
import Perfusion
import Testing

/// The engine against Keras 3 (JAX backend): random 2D and 3D models, K = 1…3, f ∈ {4, 12, 16},
/// kernels 1 and 3, both return_sequences settings, T from 2 to 19, 1 to 3 input channels, saved by Keras,
/// converted by models/convert.py and run with `perfd model run`; plus models with an input
/// kernel unlike the recurrent kernel against a plain-numpy ConvLSTM.
/// Tolerance: max |engine − reference| ≤ 1e-4 · max |reference|.
@Suite(.serialized) struct ParityTests {
    static let cases: (dir: TempDir, names: [String]) = {
        let dir = TempDir("perfd-parity")
        let r = try! runTool(Paths.root + "/.venv/bin/python",
                             [Paths.root + "/Tests/InferenceTests/python/make_cases.py", dir.path],
                             environment: ["KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"])
        precondition(r.status == 0, "make_cases.py failed (run scripts/install-deps for the venv): \(r.output)")
        let names = try! JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.path + "/cases.json"))) as! [String]
        return (dir, names)
    }()

    @Test func everyCaseMatchesItsReference() throws {
        let (dir, names) = Self.cases
        #expect(names.filter { $0.hasPrefix("keras-") }.count == 14)
        #expect(names.filter { $0.hasSuffix("-c2") || $0.hasSuffix("-c3") }.count == 3)
        #expect(names.filter { $0.hasPrefix("numpy-") }.count == 3)
        for name in names {
            let d = dir.path + "/" + name
            let r = try runTool(Paths.perfd, ["model", "run", d + "/model", "--input", d + "/in.npy", "--output", d + "/out.npy"])
            #expect(r.status == 0, "\(name): \(r.output)")
            let expected = try NPY.read(d + "/expected.npy"), got = try NPY.read(d + "/out.npy")
            #expect(got.shape == expected.shape, "\(name)")
            guard got.shape == expected.shape else { continue }
            let scale = expected.data.map { abs($0) }.max()!
            let err = zip(got.data, expected.data).map { abs($0 - $1) }.max()!
            #expect(err <= 1e-4 * scale, "\(name): max error \(err), max |y| \(scale)")
        }
    }

    @Test func modelInfoCountsParametersAndFlops() throws {
        let d = Self.cases.dir.path + "/keras-01-2d-K2-f16-k3-T19-last/model"
        let r = try runTool(Paths.perfd, ["model", "info", d])
        #expect(r.status == 0)
        // Layer 0: 2·(3·3·1·64 + 3·3·16·64 + 64); layer 1: 2·(3·3·16·64 + 3·3·16·64 + 64); head 16·2 + 2.
        let params = 2 * (576 + 9216 + 64) + 2 * (9216 + 9216 + 64) + 34
        #expect(r.stdout.contains("parameters: \(params)"), "\(r.stdout)")
        // FLOPs per voxel: Σ layers T·2 directions·2·(Kx + Kh)·4f + head 2·f·C.
        let flops = 19 * 2 * 2 * (9 + 144) * 64 + 19 * 2 * 2 * (144 + 144) * 64 + 2 * 16 * 2
        #expect(r.stdout.contains("FLOPs per voxel at T=19: \(flops) "), "\(r.stdout)")
    }
}

@Suite struct LoaderTests {
    @Test func missingTensorAndWrongShapeAreNamed() throws {
        let d = ParityTests.cases.dir.path + "/keras-00-2d-K1-f4-k3-T2-last/model"
        let broken = TempDir()
        try FileManager.default.copyItem(atPath: d + "/weights.safetensors", toPath: broken.path + "/weights.safetensors")
        var spec = try String(contentsOfFile: d + "/model.json", encoding: .utf8)
        spec = spec.replacingOccurrences(of: "\"filters\": 4", with: "\"filters\": 5")
        try spec.write(toFile: broken.path + "/model.json", atomically: true, encoding: .utf8)
        #expect {
            _ = try ConvLSTMModel(directory: broken.path)
        } throws: { "\($0)" == "tensor \"layers.0.forward.kernel\": expected [3, 3, 1, 20], file has [3, 3, 1, 16]" }
    }

    /// Output mappings: linear y'·scale + offset, "exp" exp(y')·scale + offset; others refused.
    @Test func outputTransforms() throws {
        let lin = ModelSpec.Output(name: "cbv", unit: "ml/100g", scale: 4, offset: -0.1)
        let ex = ModelSpec.Output(name: "cbf", unit: "ml/100g/min", scale: 50, offset: -1, transform: "exp")
        #expect(abs(lin.value(0.5) - 1.9) < 1e-6)
        #expect(abs(ex.value(Float(log(0.4))) - 19) < 1e-4)
        #expect(abs(ex.value(-40) - -1) < 1e-6)
        let d = ParityTests.cases.dir.path + "/keras-00-2d-K1-f4-k3-T2-last/model"
        let broken = TempDir()
        try FileManager.default.copyItem(atPath: d + "/weights.safetensors", toPath: broken.path + "/weights.safetensors")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: d + "/model.json"))) as! [String: Any]
        json["outputs"] = [["name": "a", "unit": "1", "scale": 1, "offset": 0, "transform": "sqrt"],
                           ["name": "b", "unit": "1", "scale": 1, "offset": 0]]
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: broken.path + "/model.json"))
        #expect {
            _ = try ConvLSTMModel(directory: broken.path)
        } throws: { "\($0)".contains("transform \"sqrt\"") }
    }

    /// A model with two input channels takes (T, H, W, 2) and says what it wanted otherwise.
    @Test func inputChannelsAreChecked() throws {
        let m = try ConvLSTMModel(directory: ParityTests.cases.dir.path + "/keras-11-2d-K2-f12-k3-T19-last-c2/model")
        #expect(m.inputChannels == 2)
        #expect {
            _ = try m.run(Tensor(shape: [19, 6, 5], data: [Float](repeating: 0, count: 19 * 30)))
        } throws: { "\($0)".contains("(T, H, W, 2)") }
        // Tiled equals untiled with channels too.
        let x = Tensor(shape: [19, 14, 13, 2], data: (0..<(19 * 14 * 13 * 2)).map { Float(sin(Double($0) * 0.37)) })
        let whole = try m.run(x)
        let tiled = try m.runTiled(shape: [14, 13], timepoints: 19, tile: 5, read: { origin, size in
            var out: [Float] = []
            for t in 0..<19 { for y in origin[0]..<(origin[0] + size[0]) {
                let base = ((t * 14 + y) * 13 + origin[1]) * 2
                out.append(contentsOf: x.data[base..<(base + size[1] * 2)])
            } }
            return out
        })
        let err = zip(whole.data, tiled.data).map { abs($0 - $1) }.max()!
        #expect(whole.shape == tiled.shape && err <= 1e-5 * whole.data.map { abs($0) }.max()!, "tiled vs whole \(err)")
    }

    @Test func npyRoundTrip() throws {
        let dir = TempDir()
        let t = Tensor(shape: [2, 3, 4], data: (0..<24).map { Float($0) * 0.5 - 3 })
        try NPY.write(t, to: dir.path + "/t.npy")
        #expect(try NPY.read(dir.path + "/t.npy") == t)
        let py = try runTool(Paths.root + "/.venv/bin/python", ["-c", "import numpy as np; a = np.load('\(dir.path)/t.npy'); print(a.shape, a.dtype, a[1, 2, 3])"])
        #expect(py.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "(2, 3, 4) float32 8.5")
    }
}
