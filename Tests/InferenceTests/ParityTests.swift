import Foundation
import Inference
import PerfdTestSupport
import Testing

/// The engine against Keras 3 (JAX backend): random 2D and 3D models, K = 1…3, f ∈ {4, 16},
/// kernels 1 and 3, both return_sequences settings, T from 2 to 19, saved by Keras,
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
        #expect(names.filter { $0.hasPrefix("keras-") }.count == 11)
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

    @Test func npyRoundTrip() throws {
        let dir = TempDir()
        let t = Tensor(shape: [2, 3, 4], data: (0..<24).map { Float($0) * 0.5 - 3 })
        try NPY.write(t, to: dir.path + "/t.npy")
        #expect(try NPY.read(dir.path + "/t.npy") == t)
        let py = try runTool(Paths.root + "/.venv/bin/python", ["-c", "import numpy as np; a = np.load('\(dir.path)/t.npy'); print(a.shape, a.dtype, a[1, 2, 3])"])
        #expect(py.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "(2, 3, 4) float32 8.5")
    }
}
