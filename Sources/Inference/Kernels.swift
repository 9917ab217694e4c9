import Foundation

/// Spatial extent of a feature map; `depth` is 1 for 2D models.
public struct Grid: Sendable, Equatable {
    public var depth: Int, height: Int, width: Int
    public init(depth: Int, height: Int, width: Int) { self.depth = depth; self.height = height; self.width = width }
    public var count: Int { depth * height * width }
}

/// Copies the k×k(×k) neighbourhood of every voxel ("same" zero padding) into one row of
/// `col`, starting at column `offset` of a row `ld` wide: column index ((kz·k + ky)·k + kx)·C + c,
/// which is how a Keras kernel [k…, C, out] flattens. Rows `rows` only (for threading).
@inline(__always)
func im2col(_ src: UnsafePointer<Float>, channels C: Int, grid g: Grid, k: Int, dims: Int,
            col: UnsafeMutablePointer<Float>, ld: Int, offset: Int, rows: Range<Int>) {
    let r = k / 2
    let kz = dims == 3 ? k : 1, rz = dims == 3 ? r : 0
    let plane = g.height * g.width
    for n in rows {
        let z = n / plane, rem = n % plane, y = rem / g.width, x = rem % g.width
        var dst = col + n * ld + offset
        if k == 1 {
            dst.update(from: src + n * C, count: C)
            continue
        }
        for dz in 0..<kz {
            let zz = z + dz - rz
            for dy in 0..<k {
                let yy = y + dy - r
                let rowOK = zz >= 0 && zz < g.depth && yy >= 0 && yy < g.height
                for dx in 0..<k {
                    let xx = x + dx - r
                    if rowOK && xx >= 0 && xx < g.width {
                        dst.update(from: src + ((zz * g.height + yy) * g.width + xx) * C, count: C)
                    } else {
                        dst.update(repeating: 0, count: C)
                    }
                    dst += C
                }
            }
        }
    }
}

