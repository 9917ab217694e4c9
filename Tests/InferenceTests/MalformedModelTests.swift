import Foundation
import Inference
import PerfdTestSupport
import Perfusion
import Testing

/// A model directory or .npy file is a user's file: whatever is wrong in it must come back as
/// an error that names it, never as a crash (the engine is built without bounds checks, and a
/// model configured for a pipeline is loaded inside the daemon).
@Suite struct MalformedModelTests {
    /// A copy of the shipped ncct model (or perfusion) in a temporary directory.
    func copy(_ name: String = "ncct-clstm") throws -> TempDir {
        let dir = TempDir()
        for f in ["model.json", "weights.safetensors"] {
            try FileManager.default.copyItem(atPath: "\(Paths.root)/models/\(name)/\(f)", toPath: "\(dir.path)/\(f)")
        }
        return dir
    }

    /// Rewrites one tensor's header entry of weights.safetensors (offsets stay relative to the data).
    func editTensor(_ dir: TempDir, _ name: String, _ edit: (inout [String: Any]) -> Void) throws {
        let path = dir.path + "/weights.safetensors"
        let d = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = Int(d.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try #require(try JSONSerialization.jsonObject(with: d.subdata(in: 8..<(8 + n))) as? [String: Any])
        var entry = try #require(header[name] as? [String: Any])
        edit(&entry)
        header[name] = entry
        let json = try JSONSerialization.data(withJSONObject: header)
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(d.subdata(in: (8 + n)..<d.count))
        try out.write(to: URL(fileURLWithPath: path))
    }

    func editJSON(_ dir: TempDir, _ edit: (inout [String: Any]) -> Void) throws {
        let path = dir.path + "/model.json"
        var spec = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        edit(&spec)
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: path))
    }

    @Test(arguments: [
        ([-1], [33244, 33240]), ([1], [-(1 << 40), -(1 << 40) + 4]), ([1], [-8, -4]),
        ([1], [Int.max - 4, Int.max]), ([1 << 62], [0, 0]),
    ])
    func impossibleTensorEntriesAreRefused(_ shape: [Int], _ offsets: [Int]) throws {
        let dir = try copy()
        try editTensor(dir, "layers.2.bias") { $0["shape"] = shape; $0["data_offsets"] = offsets }
        #expect { _ = try ConvLSTMModel(directory: dir.path) } throws: { "\($0)".contains("layers.2.bias") }
    }

    @Test(arguments: ["head kernel -1", "head kernel 2", "layer kernel_x -1", "layer filters 0", "pixel_mm 1e30"])
    func impossibleModelJSONIsRefused(_ what: String) throws {
        let dir = try copy()
        var named = "kernel"
        try editJSON(dir) { s in
            switch what {
            case "head kernel -1": Self.layer(&s, 2) { $0["kernel"] = -1 }
            case "head kernel 2": Self.layer(&s, 2) { $0["kernel"] = 2 }
            case "layer kernel_x -1": Self.layer(&s, 0) { $0["kernel_x"] = -1 }
            case "layer filters 0": Self.layer(&s, 0) { $0["filters"] = 0 }; named = "filters"
            default: s["pixel_mm"] = 1e30; named = "pixel_mm"
            }
        }
        #expect(Comment(rawValue: what)) { _ = try ConvLSTMModel(directory: dir.path) } throws: { "\($0)".contains(named) }
    }

    static func layer(_ spec: inout [String: Any], _ i: Int, _ edit: (inout [String: Any]) -> Void) {
        var layers = spec["layers"] as! [[String: Any]]
        edit(&layers[i])
        spec["layers"] = layers
    }

    @Test(arguments: [
        [0x93] + Array("NUMPY".utf8) + [2, 0, 0xff, 0xff, 0, 0],                        // version 2, header past the end
        npy(header: "{'descr': '<f4', 'fortran_order': False, 'shape': )16, 16(, }", values: 0),
        npy(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 16, 16), }", values: 16),
        npy(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 16, 16), }", values: 16),
    ])
    func impossibleNPYIsRefused(_ bytes: [UInt8]) throws {
        let dir = TempDir()
        try Data(bytes).write(to: URL(fileURLWithPath: dir.path + "/x.npy"))
        #expect(throws: InferenceError.self) { _ = try NPY.read(dir.path + "/x.npy") }
    }

    static func npy(header: String, values: Int) -> [UInt8] {
        [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)]
            + Array(header.utf8) + [UInt8](repeating: 0, count: 4 * values)
    }

    @Test func badInputShapesAndTilesAreRefused() throws {
        let m = try ConvLSTMModel(directory: Paths.root + "/models/ncct-clstm")
        #expect(throws: InferenceError.self) { _ = try m.run(Tensor(shape: [0, 16, 16], data: [])) }
        #expect(throws: InferenceError.self) {
            _ = try m.runTiled(shape: [16, 16], timepoints: 3, tile: 0, read: { _, size in [Float](repeating: 0, count: 3 * size.reduce(1, *)) })
        }
        #expect(throws: InferenceError.self) {
            _ = try m.runTiled(shape: [16, 16], timepoints: 3, tile: 8, halo: -3, read: { _, size in [Float](repeating: 0, count: 3 * size.reduce(1, *)) })
        }
    }
}
