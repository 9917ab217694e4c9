import Foundation
import Perfusion

/// NumPy .npy (format 1.0) writing of little-endian float32 arrays in C order, for the
/// training side (numpy.load reads them as they are): the phantom's series and truth maps.
/// Internal: the public `NPY` (read and write, of tensors) is the Inference target's; this
/// writer stays here because Perfusion does not depend on Inference.
enum NPY {
    static func write(_ values: [Float], shape: [Int], to path: String) throws {
        precondition(values.count == shape.reduce(1, *), "npy: \(values.count) values do not fill shape \(shape)")
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var out = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)])
        out.append(contentsOf: Array(header.utf8))
        values.withUnsafeBufferPointer { out.append(Data(buffer: $0)) }
        guard FileManager.default.createFile(atPath: path, contents: out) else {
            throw PerfusionError("cannot write \(path): check that the folder exists and is writable")
        }
    }
}
