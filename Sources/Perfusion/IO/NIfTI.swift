import Foundation
import Volume

/// NIfTI-1 single-file (.nii) writer and reader for float32 volumes, with the affine
/// taken from the DICOM geometry (LPS converted to NIfTI's RAS).
public enum NIfTI {
    /// The 4×4 voxel-to-RAS affine (row-major) of a DICOM geometry; index order (i, j, k) = (x, y, z).
    public static func affine(_ g: Geometry) -> [[Double]] {
        let cols: [SIMD3<Double>] = [g.rowDirection * g.columnSpacing, g.columnDirection * g.rowSpacing, g.sliceDirection * g.sliceSpacing]
        let flip = SIMD3<Double>(-1, -1, 1)  // LPS → RAS
        let c = cols.map { $0 * flip }
        let o = g.origin * flip
        return (0..<3).map { r in [c[0][r], c[1][r], c[2][r], o[r]] } + [[0, 0, 0, 1]]
    }

    /// The qform of a geometry: the rotation taking voxel axes (i, j, k) to RAS as a unit
    /// quaternion (a ≥ 0; b, c, d stored), qfac −1 when the axes are left-handed (k then
    /// runs against the rotation's third column), and the RAS position of voxel (0, 0, 0).
    /// Slices are taken along the plane's normal: a tilted (sheared) series, which no
    /// rotation can describe, keeps its exact affine in the sform only.
    public static func quaternion(_ g: Geometry) -> (b: Double, c: Double, d: Double, qfac: Double, offset: SIMD3<Double>) {
        let flip = SIMD3<Double>(-1, -1, 1)  // LPS → RAS
        let i = g.rowDirection * flip, j = g.columnDirection * flip
        let n = SIMD3(i.y * j.z - i.z * j.y, i.z * j.x - i.x * j.z, i.x * j.y - i.y * j.x)
        let k = g.sliceDirection * flip
        let qfac: Double = (n * k).sum() < 0 ? -1 : 1
        // Rotation matrix r[row][column] with columns i, j, n (proper: determinant +1).
        let r = [[i.x, j.x, n.x], [i.y, j.y, n.y], [i.z, j.z, n.z]]
        var a = r[0][0] + r[1][1] + r[2][2] + 1, b = 0.0, c = 0.0, d = 0.0
        if a > 0.5 {
            a = 0.5 * a.squareRoot()
            b = 0.25 * (r[2][1] - r[1][2]) / a; c = 0.25 * (r[0][2] - r[2][0]) / a; d = 0.25 * (r[1][0] - r[0][1]) / a
        } else {
            let xd = 1 + r[0][0] - (r[1][1] + r[2][2]), yd = 1 + r[1][1] - (r[0][0] + r[2][2]), zd = 1 + r[2][2] - (r[0][0] + r[1][1])
            if xd > 1 {
                b = 0.5 * xd.squareRoot(); c = 0.25 * (r[0][1] + r[1][0]) / b; d = 0.25 * (r[0][2] + r[2][0]) / b; a = 0.25 * (r[2][1] - r[1][2]) / b
            } else if yd > 1 {
                c = 0.5 * yd.squareRoot(); b = 0.25 * (r[0][1] + r[1][0]) / c; d = 0.25 * (r[1][2] + r[2][1]) / c; a = 0.25 * (r[0][2] - r[2][0]) / c
            } else {
                d = 0.5 * zd.squareRoot(); b = 0.25 * (r[0][2] + r[2][0]) / d; c = 0.25 * (r[1][2] + r[2][1]) / d; a = 0.25 * (r[1][0] - r[0][1]) / d
            }
            if a < 0 { b = -b; c = -c; d = -d }
        }
        return (b, c, d, qfac, g.origin * flip)
    }

    public static func write(_ v: Volume3D, to path: String, description: String = "perfd") throws {
        var header = Data(count: 348)
        func put<T>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value) { header.replaceSubrange(offset..<(offset + $0.count), with: $0) }
        }
        put(Int32(348), at: 0)
        let dims: [Int16] = [3, Int16(v.width), Int16(v.height), Int16(v.depth), 1, 1, 1, 1]
        for (i, d) in dims.enumerated() { put(d, at: 40 + 2 * i) }
        put(Int16(16), at: 70)   // datatype FLOAT32
        put(Int16(32), at: 72)   // bitpix
        let q = quaternion(v.geometry)
        let pix: [Float] = [Float(q.qfac), Float(v.geometry.columnSpacing), Float(v.geometry.rowSpacing), Float(v.geometry.sliceSpacing), 1, 1, 1, 1]
        for (i, p) in pix.enumerated() { put(p, at: 76 + 4 * i) }
        put(Float(352), at: 108) // vox_offset
        put(Float(1), at: 112)   // scl_slope
        put(UInt8(2), at: 123)   // xyzt_units: mm
        let desc = Array(description.utf8.prefix(79))
        header.replaceSubrange(148..<(148 + desc.count), with: desc)
        put(Int16(1), at: 252)   // qform_code: scanner
        put(Int16(1), at: 254)   // sform_code: scanner
        // The qform says the same as the sform, as a rotation (quaternion b, c, d), the
        // voxel sizes and a handedness sign (pixdim[0]); readers that prefer it agree.
        for (i, x) in [q.b, q.c, q.d, q.offset.x, q.offset.y, q.offset.z].enumerated() { put(Float(x), at: 256 + 4 * i) }
        let a = affine(v.geometry)
        for r in 0..<3 { for c in 0..<4 { put(Float(a[r][c]), at: 280 + 16 * r + 4 * c) } }
        header.replaceSubrange(344..<348, with: Array("n+1\0".utf8))
        var data = header
        data.append(Data(count: 4))  // no extensions
        v.voxels.withUnsafeBufferPointer { data.append(Data(buffer: $0)) }
        guard FileManager.default.createFile(atPath: path, contents: data) else {
            throw PerfusionError("cannot write \(path): check that the folder exists and is writable")
        }
    }

    /// Reads back a float32 file written by `write` (shape and voxels; affine as stored).
    public static func read(_ path: String) throws -> (dims: [Int], affine: [[Float]], voxels: [Float]) {
        guard let d = FileManager.default.contents(atPath: path), d.count >= 352 else { throw PerfusionError("cannot read \(path): not a NIfTI-1 file written by perfd") }
        func get<T>(_ type: T.Type, _ o: Int) -> T { d.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: T.self) } }
        let dims = (1...3).map { Int(get(Int16.self, 40 + 2 * $0)) }
        let aff = (0..<3).map { r in (0..<4).map { c in get(Float.self, 280 + 16 * r + 4 * c) } }
        let off = Int(get(Float.self, 108))
        let n = dims.reduce(1, *)
        let vox: [Float] = d.withUnsafeBytes { raw in (0..<n).map { raw.loadUnaligned(fromByteOffset: off + 4 * $0, as: Float.self) } }
        return (dims, aff, vox)
    }
}
