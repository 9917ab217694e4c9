import Volume

extension Volume3D {
    /// Trilinear sample at continuous voxel index (x = column, y = row, z = slice); nil
    /// outside the volume.
    @inline(__always)
    public func sample(_ i: SIMD3<Double>) -> Float? {
        let x = i.x, y = i.y, z = i.z
        guard x >= 0, y >= 0, z >= 0, x <= Double(width - 1), y <= Double(height - 1), z <= Double(depth - 1) else { return nil }
        let x0 = min(Int(x), width - 2 >= 0 ? width - 2 : 0), y0 = min(Int(y), height - 2 >= 0 ? height - 2 : 0)
        let z0 = min(Int(z), depth - 2 >= 0 ? depth - 2 : 0)
        let fx = Float(x - Double(x0)), fy = Float(y - Double(y0)), fz = Float(z - Double(z0))
        let x1 = min(x0 + 1, width - 1), y1 = min(y0 + 1, height - 1), z1 = min(z0 + 1, depth - 1)
        return voxels.withUnsafeBufferPointer { v in
            let plane = height * width
            @inline(__always) func at(_ zz: Int, _ yy: Int, _ xx: Int) -> Float { v[zz * plane + yy * width + xx] }
            let c00 = at(z0, y0, x0) * (1 - fx) + at(z0, y0, x1) * fx
            let c01 = at(z0, y1, x0) * (1 - fx) + at(z0, y1, x1) * fx
            let c10 = at(z1, y0, x0) * (1 - fx) + at(z1, y0, x1) * fx
            let c11 = at(z1, y1, x0) * (1 - fx) + at(z1, y1, x1) * fx
            let c0 = c00 * (1 - fy) + c01 * fy, c1 = c10 * (1 - fy) + c11 * fy
            return c0 * (1 - fz) + c1 * fz
        }
    }

    /// In-plane block average by `factor` (slices kept): a pyramid level.
    public func downsampledInPlane(_ factor: Int) -> Volume3D {
        guard factor > 1 else { return self }
        let h = height / factor, w = width / factor
        var out = [Float](repeating: 0, count: depth * h * w)
        let inv = 1 / Float(factor * factor)
        for z in 0..<depth { for y in 0..<h { for x in 0..<w {
            var s: Float = 0
            for dy in 0..<factor { for dx in 0..<factor { s += self[z, y * factor + dy, x * factor + dx] } }
            out[(z * h + y) * w + x] = s * inv
        } } }
        var g = geometry
        // Block centres: the first block's centre is half a block minus half a voxel in.
        let shift = Double(factor - 1) / 2
        g.origin = geometry.position(z: 0, y: shift, x: shift)
        g.spacing = SIMD3(geometry.sliceSpacing, geometry.rowSpacing * Double(factor), geometry.columnSpacing * Double(factor))
        return Volume3D(depth: depth, height: h, width: w, voxels: out, geometry: g)
    }
}
