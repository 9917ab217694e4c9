import Foundation

/// NumPy .npy (format 1.0/2.0) reading and writing for little-endian float32 arrays,
/// C order — what `perfd model run` takes and gives.
public enum NPY {
    public static func read(_ path: String) throws -> Tensor {
        guard let d = FileManager.default.contents(atPath: path) else { throw InferenceError("cannot read \(path)") }
        let bytes = [UInt8](d)
        guard bytes.count > 10, bytes[0] == 0x93, String(decoding: bytes[1..<6], as: UTF8.self) == "NUMPY" else {
            throw InferenceError("\(path) is not a .npy file")
        }
        let major = bytes[6]
        let headerLen: Int, start: Int
        if major == 1 {
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8
            start = 10
        } else {
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            start = 12
        }
        guard headerLen <= bytes.count - start else { throw InferenceError("\(path): header length \(headerLen) exceeds the file") }
        let header = String(decoding: bytes[start..<(start + headerLen)], as: UTF8.self)
        guard header.contains("'descr': '<f4'") else {
            throw InferenceError("\(path): dtype must be little-endian float32 ('<f4'); convert with array.astype(numpy.float32)")
        }
        guard header.contains("'fortran_order': False") else { throw InferenceError("\(path): Fortran order is not supported; save a C-ordered array") }
        guard let open = header.firstIndex(of: "("), let close = header[open...].firstIndex(of: ")") else {
            throw InferenceError("\(path): no shape in header")
        }
        let shape = header[header.index(after: open)..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard let n = checkedElementCount(shape) else { throw InferenceError("\(path): impossible shape \(shape)") }
        let offset = start + headerLen
        guard (bytes.count - offset) / 4 >= n else { throw InferenceError("\(path): file holds fewer than \(n) values") }
        let data: [Float] = d.withUnsafeBytes { raw in (0..<n).map { raw.loadUnaligned(fromByteOffset: offset + 4 * $0, as: Float.self) } }
        return Tensor(shape: shape, data: data)
    }

    public static func write(_ t: Tensor, to path: String) throws {
        let shapeText = t.shape.count == 1 ? "(\(t.shape[0]),)" : "(" + t.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var out = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)])
        out.append(contentsOf: Array(header.utf8))
        t.data.withUnsafeBufferPointer { out.append(Data(buffer: $0)) }
        guard FileManager.default.createFile(atPath: path, contents: out) else { throw InferenceError("cannot write \(path)") }
    }
}
