import Foundation
import Volume

/// A rigid transform in patient coordinates (mm, DICOM LPS): rotation R = Rz·Ry·Rx about a
/// centre c, then a translation: T(p) = R·(p − c) + c + t.
public struct RigidTransform: Sendable, Equatable {
    /// Rotations about x, y, z in radians.
    public var angles: SIMD3<Double>
    /// Translation in mm.
    public var translation: SIMD3<Double>
    public var centre: SIMD3<Double>

    public init(angles: SIMD3<Double> = .zero, translation: SIMD3<Double> = .zero, centre: SIMD3<Double> = .zero) {
        self.angles = angles; self.translation = translation; self.centre = centre
    }

    public static func rotation(_ a: SIMD3<Double>) -> [[Double]] {
        let (cx, sx, cy, sy, cz, sz) = (cos(a.x), sin(a.x), cos(a.y), sin(a.y), cos(a.z), sin(a.z))
        let rx = [[1, 0, 0], [0, cx, -sx], [0, sx, cx]]
        let ry = [[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]
        let rz = [[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]
        return mul(rz, mul(ry, rx))
    }

    static func mul(_ a: [[Double]], _ b: [[Double]]) -> [[Double]] {
        (0..<3).map { i in (0..<3).map { j in (0..<3).reduce(0) { $0 + a[i][$1] * b[$1][j] } } }
    }

    /// The 4×4 row-major homogeneous matrix of T.
    public var matrix: [[Double]] {
        let r = Self.rotation(angles)
        let rc = SIMD3((0..<3).map { i in r[i][0] * centre.x + r[i][1] * centre.y + r[i][2] * centre.z })
        let off = centre + translation - rc
        return [[r[0][0], r[0][1], r[0][2], off.x], [r[1][0], r[1][1], r[1][2], off.y], [r[2][0], r[2][1], r[2][2], off.z], [0, 0, 0, 1]]
    }

    /// The inverse as a 4×4 matrix (rotation transposed).
    public var inverseMatrix: [[Double]] {
        let m = matrix
        let rt = (0..<3).map { i in (0..<3).map { j in m[j][i] } }
        let o = (0..<3).map { i in -(rt[i][0] * m[0][3] + rt[i][1] * m[1][3] + rt[i][2] * m[2][3]) }
        return [rt[0] + [o[0]], rt[1] + [o[1]], rt[2] + [o[2]], [0, 0, 0, 1]]
    }

    public func apply(_ p: SIMD3<Double>) -> SIMD3<Double> { Self.apply(matrix, p) }

    public static func apply(_ m: [[Double]], _ p: SIMD3<Double>) -> SIMD3<Double> {
        SIMD3(m[0][0] * p.x + m[0][1] * p.y + m[0][2] * p.z + m[0][3],
              m[1][0] * p.x + m[1][1] * p.y + m[1][2] * p.z + m[1][3],
              m[2][0] * p.x + m[2][1] * p.y + m[2][2] * p.z + m[2][3])
    }

    /// The same map written about another centre: R(p − c) + c + t = R(p − c′) + c′ + t′
    /// with t′ = R(c′ − c) + c − c′ + t (the angles are unchanged).
    public func recentred(at c2: SIMD3<Double>) -> RigidTransform {
        let r = Self.rotation(angles), d = c2 - centre
        let rd = SIMD3(r[0][0] * d.x + r[0][1] * d.y + r[0][2] * d.z,
                       r[1][0] * d.x + r[1][1] * d.y + r[1][2] * d.z,
                       r[2][0] * d.x + r[2][1] * d.y + r[2][2] * d.z)
        return RigidTransform(angles: angles, translation: rd - d + translation, centre: c2)
    }

    /// Degrees, for people.
    public var anglesDegrees: [Double] { [angles.x, angles.y, angles.z].map { $0 * 180 / .pi } }
}

extension Geometry {
    /// Voxel index (x, y, z as continuous column, row, slice) of a patient-space point.
    @inline(__always)
    public func index(of p: SIMD3<Double>) -> SIMD3<Double> {
        let d = p - origin
        return SIMD3((d * rowDirection).sum() / columnSpacing, (d * columnDirection).sum() / rowSpacing, (d * sliceDirection).sum() / sliceSpacing)
    }

    /// Centre of a volume of the given size, in patient space.
    public func centre(depth: Int, height: Int, width: Int) -> SIMD3<Double> {
        position(z: Double(depth - 1) / 2, y: Double(height - 1) / 2, x: Double(width - 1) / 2)
    }
}

extension RigidTransform {
    /// This transform in voxel-index space of `g`: index' = origin + x·ax + y·ay + z·az for
    /// voxel (x, y, z) (voxel → patient → moved → voxel folded into one affine map).
    public func indexAffine(in g: Geometry) -> (origin: SIMD3<Double>, ax: SIMD3<Double>, ay: SIMD3<Double>, az: SIMD3<Double>) {
        let m = matrix
        func toIndex(_ p: SIMD3<Double>) -> SIMD3<Double> { g.index(of: RigidTransform.apply(m, p)) }
        let b = toIndex(g.position(z: 0, y: 0, x: 0))
        return (b, toIndex(g.position(z: 0, y: 0, x: 1)) - b, toIndex(g.position(z: 0, y: 1, x: 0)) - b,
                toIndex(g.position(z: 1, y: 0, x: 0)) - b)
    }
}
