import Foundation

/// Reads a .safetensors file: an 8-byte little-endian header length, a JSON header naming
/// each tensor's dtype, shape and byte range, then the raw data. float32 only.
public struct SafeTensors: Sendable {
    public var tensors: [String: Tensor]

    public init(tensors: [String: Tensor]) { self.tensors = tensors }

    public init(path: String) throws {
        guard let d = FileManager.default.contents(atPath: path), d.count >= 8 else { throw InferenceError("cannot read \(path)") }
        let n = d.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        guard n < d.count - 8 else { throw InferenceError("\(path): header length \(n) exceeds the file") }
        guard let header = try JSONSerialization.jsonObject(with: d.subdata(in: 8..<(8 + Int(n)))) as? [String: Any] else {
            throw InferenceError("\(path): header is not a JSON object")
        }
        let base = 8 + Int(n)
        var out: [String: Tensor] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let range = info["data_offsets"] as? [Int], range.count == 2 else {
                throw InferenceError("\(path): tensor \"\(name)\" has a malformed header entry")
            }
            guard dtype == "F32" else { throw InferenceError("\(path): tensor \"\(name)\" is \(dtype); perfd reads F32 only") }
            guard let count = checkedElementCount(shape) else {
                throw InferenceError("\(path): tensor \"\(name)\" has an impossible shape \(shape)")
            }
            // Offsets count from the end of the header and must lie inside the file: checked
            // without arithmetic that could wrap.
            guard range[0] >= 0, range[1] >= range[0], range[1] <= d.count - base, range[1] - range[0] == 4 * count else {
                throw InferenceError("\(path): tensor \"\(name)\" byte range \(range) does not match shape \(shape) within the file's \(d.count - base) data bytes")
            }
            let data: [Float] = d.withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: base + range[0] + 4 * $0, as: Float.self) } }
            out[name] = Tensor(shape: shape, data: data)
        }
        tensors = out
    }

    /// The named tensor, which must have exactly `shape`; the error names both shapes.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        guard let t = tensors[name] else { throw InferenceError("tensor \"\(name)\" is missing from weights.safetensors") }
        guard t.shape == shape else { throw InferenceError("tensor \"\(name)\": expected \(shape), file has \(t.shape)") }
        return t
    }
}
