import Foundation
import Volume

/// Rigid 6-DOF registration of a moving frame onto the fixed frame (time point 0).
///
/// Metric: sum of squared HU differences over the skull — fixed-frame voxels above
/// `boneThreshold` and a rim around them — which stay put while contrast arrives (vessels
/// and brain enhance; bone does not). Optimiser: Levenberg–Marquardt on the six parameters,
/// analytic Jacobian from the moving image's gradient (central differences). Pyramid:
/// in-plane factors 4, 2, 1 (slices are already thick). Trilinear sampling throughout.
/// `refine` runs the optimiser again from a transform found elsewhere (a thin-slice frame's
/// slab estimate), on the levels its `Fixed` was prepared with.
public struct RigidRegistration: Sendable {
    public struct Options: Sendable {
        public var levels = [4, 2, 1]
        public var boneThreshold: Float = 600
        public var maxIterations = 40
        /// At most this many metric points per level (a fixed-stride subset beyond it).
        public var maxPoints = 60_000
        public init() {}
    }

    public struct Result: Sendable {
        public var transform: RigidTransform    // fixed (t = 0) point → moving point
        public var iterations: Int
        public var converged: Bool
        public var finalRMS: Double
    }

    public var options: Options
    public init(options: Options = Options()) { self.options = options }

    /// What depends on the fixed frame alone — its metric points per pyramid level —
    /// computed once and shared by the registrations of every time point.
    public struct Fixed: Sendable {
        let centre: SIMD3<Double>
        /// In-plane pyramid factors, coarse to fine, and the metric points at each.
        let levels: [Int]
        let points: [[(SIMD3<Double>, Float)]]
    }

    public func prepare(fixed: Volume3D) -> Fixed {
        prepare(fixed: fixed, centre: fixed.geometry.centre(depth: fixed.depth, height: fixed.height, width: fixed.width),
                levels: options.levels)
    }

    /// The fixed frame's metric points at the given pyramid `levels`, with transforms about
    /// `centre` — for refining, on a thin-slice frame, a transform estimated on its slabs
    /// (whose grid has the same centre). Only the points are kept, not the frame.
    public func prepare(fixed: Volume3D, centre: SIMD3<Double>, levels: [Int]) -> Fixed {
        Fixed(centre: centre, levels: levels,
              points: levels.map { metricPoints(fixed.downsampledInPlane($0), threshold: options.boneThreshold) })
    }

    public func register(fixed: Volume3D, moving: Volume3D) -> Result {
        register(prepare(fixed: fixed), moving: moving)
    }

    public func register(_ fixed: Fixed, moving: Volume3D) -> Result {
        register(fixed, moving: moving, params: [Double](repeating: 0, count: 6))
    }

    /// Refines `start` (a transform estimated elsewhere, e.g. on the slab averages of this
    /// frame) against `fixed`'s points on `moving`, over `fixed`'s levels. `start` may have
    /// any centre; the result is about `fixed`'s and maps every point as `start` does before
    /// the first step.
    public func refine(_ fixed: Fixed, moving: Volume3D, from start: RigidTransform) -> Result {
        let s = start.recentred(at: fixed.centre)
        return register(fixed, moving: moving, params: [s.angles.x, s.angles.y, s.angles.z,
                                                        s.translation.x, s.translation.y, s.translation.z])
    }

    func register(_ fixed: Fixed, moving: Volume3D, params start: [Double]) -> Result {
        let centre = fixed.centre
        var params = start   // rx, ry, rz (rad), tx, ty, tz (mm)
        var iterations = 0, converged = false, rms = 0.0
        for (level, factor) in fixed.levels.enumerated() {
            let m = moving.downsampledInPlane(factor)
            let points = fixed.points[level]
            let r = optimise(points: points, moving: m, centre: centre, start: params)
            params = r.params
            iterations += r.iterations
            converged = r.converged
            rms = r.rms
        }
        return Result(transform: RigidTransform(angles: SIMD3(params[0], params[1], params[2]),
                                                translation: SIMD3(params[3], params[4], params[5]), centre: centre),
                      iterations: iterations, converged: converged, finalRMS: rms)
    }

    /// (patient position, fixed HU) of the skull and a two-voxel rim around it.
    /// The voxels within two voxels in-plane (a 5×5 window) of one above `threshold`, in
    /// slice, row, column order, thinned to at most `maxPoints` by a fixed stride. The window
    /// is taken in two passes (along rows, then along columns) over one slice at a time, and
    /// only the chosen voxels' positions are computed: a 512² × 320 thin-slice frame is
    /// prepared in well under a second and without a copy of the frame.
    func metricPoints(_ f: Volume3D, threshold: Float) -> [(SIMD3<Double>, Float)] {
        let H = f.height, W = f.width, plane = H * W
        var index: [Int] = []
        var rows = [Bool](repeating: false, count: plane)
        f.voxels.withUnsafeBufferPointer { v in
            for z in 0..<f.depth {
                let base = z * plane
                // rows[y, x]: a bone voxel in row y within columns x − 2 ... x + 2.
                for y in 0..<H {
                    var last = -3   // column of the last bone voxel seen in this row, up to x + 2
                    for x in 0..<W {
                        if x + 2 < W, v[base + y * W + x + 2] > threshold { last = x + 2 }
                        if x == 0 { for xx in 0..<min(2, W) where v[base + y * W + xx] > threshold { last = max(last, xx) } }
                        rows[y * W + x] = last >= x - 2
                    }
                }
                for y in 0..<H { for x in 0..<W {
                    var near = false
                    for yy in max(0, y - 2)...min(H - 1, y + 2) where rows[yy * W + x] { near = true; break }
                    if near { index.append(base + y * W + x) }
                } }
            }
        }
        if index.count > options.maxPoints {
            let stride = Double(index.count) / Double(options.maxPoints)
            index = (0..<options.maxPoints).map { index[Int(Double($0) * stride)] }
        }
        return index.map { i in
            let z = i / plane, y = (i % plane) / W, x = i % W
            return (f.geometry.position(z: Double(z), y: Double(y), x: Double(x)), f.voxels[i])
        }
    }

    struct Step { var params: [Double]; var iterations: Int; var converged: Bool; var rms: Double }

    func optimise(points: [(SIMD3<Double>, Float)], moving m: Volume3D, centre: SIMD3<Double>, start: [Double]) -> Step {
        var p = start
        var lambda = 1e-3
        let g = m.geometry
        // Finite-difference steps for the image gradient, one voxel along each axis, in mm.
        let hx = g.rowDirection * g.columnSpacing, hy = g.columnDirection * g.rowSpacing, hz = g.sliceDirection * g.sliceSpacing
        func evaluate(_ p: [Double], withJacobian: Bool) -> (cost: Double, n: Int, jtj: [[Double]], jtr: [Double]) {
            let r = RigidTransform.rotation(SIMD3(p[0], p[1], p[2]))
            // Derivatives of R with respect to each angle, by central differences.
            let eps = 1e-6
            let dR: [[[Double]]] = withJacobian ? (0..<3).map { k in
                var a = SIMD3(p[0], p[1], p[2]), b = a
                a[k] += eps; b[k] -= eps
                let ra = RigidTransform.rotation(a), rb = RigidTransform.rotation(b)
                return (0..<3).map { i in (0..<3).map { j in (ra[i][j] - rb[i][j]) / (2 * eps) } }
            } : []
            let t = SIMD3(p[3], p[4], p[5])
            var cost = 0.0, n = 0
            var jtj = [[Double]](repeating: [Double](repeating: 0, count: 6), count: 6)
            var jtr = [Double](repeating: 0, count: 6)
            for (q, fv) in points {
                let d = q - centre
                let rd = SIMD3(r[0][0] * d.x + r[0][1] * d.y + r[0][2] * d.z,
                               r[1][0] * d.x + r[1][1] * d.y + r[1][2] * d.z,
                               r[2][0] * d.x + r[2][1] * d.y + r[2][2] * d.z)
                let mp = rd + centre + t
                guard let mv = m.sample(g.index(of: mp)) else { continue }
                let res = Double(mv - fv)
                cost += res * res
                n += 1
                guard withJacobian else { continue }
                guard let xp = m.sample(g.index(of: mp + hx)), let xm = m.sample(g.index(of: mp - hx)),
                      let yp = m.sample(g.index(of: mp + hy)), let ym = m.sample(g.index(of: mp - hy)) else { continue }
                let zp = m.sample(g.index(of: mp + hz)) ?? mv, zm = m.sample(g.index(of: mp - hz)) ?? mv
                // Gradient in patient space: along each (orthonormal) axis, divided by the step.
                let grad = g.rowDirection * (Double(xp - xm) / (2 * g.columnSpacing))
                    + g.columnDirection * (Double(yp - ym) / (2 * g.rowSpacing))
                    + g.sliceDirection * (Double(zp - zm) / (2 * g.sliceSpacing))
                var j = [Double](repeating: 0, count: 6)
                for k in 0..<3 {
                    let dk = dR[k]
                    let v = SIMD3(dk[0][0] * d.x + dk[0][1] * d.y + dk[0][2] * d.z,
                                  dk[1][0] * d.x + dk[1][1] * d.y + dk[1][2] * d.z,
                                  dk[2][0] * d.x + dk[2][1] * d.y + dk[2][2] * d.z)
                    j[k] = (grad * v).sum()
                }
                j[3] = grad.x; j[4] = grad.y; j[5] = grad.z
                for a in 0..<6 {
                    jtr[a] += j[a] * res
                    for b in a..<6 { jtj[a][b] += j[a] * j[b] }
                }
            }
            for a in 0..<6 { for b in 0..<a { jtj[a][b] = jtj[b][a] } }
            return (cost, n, jtj, jtr)
        }
        var current = evaluate(p, withJacobian: true)
        var iterations = 0, converged = false
        while iterations < options.maxIterations {
            iterations += 1
            var a = current.jtj
            for k in 0..<6 { a[k][k] *= 1 + lambda }
            guard let delta = solve6(a, current.jtr.map { -$0 }) else { break }
            let trial = zip(p, delta).map { $0 + $1 }
            let next = evaluate(trial, withJacobian: true)
            let meanNow = current.cost / Double(max(current.n, 1)), meanNext = next.cost / Double(max(next.n, 1))
            if meanNext <= meanNow {
                p = trial
                current = next
                lambda = max(lambda / 3, 1e-7)
                // Steps below ~0.005 mm anywhere in a head (1e-4 rad × 100 mm + 5e-3 mm) no longer matter.
                let small = abs(delta[0]) + abs(delta[1]) + abs(delta[2]) < 1e-4 && abs(delta[3]) + abs(delta[4]) + abs(delta[5]) < 5e-3
                if small { converged = true; break }
            } else {
                lambda *= 4
                if lambda > 1e3 { converged = true; break }   // no better step exists: a minimum
            }
        }
        return Step(params: p, iterations: iterations, converged: converged,
                    rms: (current.cost / Double(max(current.n, 1))).squareRoot())
    }
}

/// Solves a 6×6 system by Gaussian elimination with partial pivoting; nil if singular.
func solve6(_ a0: [[Double]], _ b0: [Double]) -> [Double]? {
    var a = a0, b = b0
    let n = 6
    for c in 0..<n {
        guard let piv = (c..<n).max(by: { abs(a[$0][c]) < abs(a[$1][c]) }), abs(a[piv][c]) > 1e-12 else { return nil }
        a.swapAt(c, piv); b.swapAt(c, piv)
        for r in (c + 1)..<n {
            let f = a[r][c] / a[c][c]
            for k in c..<n { a[r][k] -= f * a[c][k] }
            b[r] -= f * b[c]
        }
    }
    var x = [Double](repeating: 0, count: n)
    for r in stride(from: n - 1, through: 0, by: -1) {
        var s = b[r]
        for k in (r + 1)..<n { s -= a[r][k] * x[k] }
        x[r] = s / a[r][r]
    }
    return x
}

extension Volume3D {
    /// This (moving) frame resampled onto the fixed grid through `t` (fixed → moving).
    /// Points that fall outside take `outside`. A voxel covers half a voxel either side of its
    /// centre, so a point up to half a voxel beyond the outermost centres takes the edge value
    /// (otherwise a transform a micrometre from identity would blank the first and last
    /// slices). The voxel → patient → moved → voxel chain is folded into one affine map in
    /// index space, stepped along each row.
    public func resampled(through t: RigidTransform, outside: Float = -1000) -> Volume3D {
        let g = geometry
        // Index-space affine: idx' = A · (x, y, z) + b.
        let (b, ax, ay, az) = t.indexAffine(in: g)
        let top = SIMD3(Double(width - 1), Double(height - 1), Double(depth - 1))
        let lo = SIMD3<Double>(repeating: -0.5), hi = top + 0.5
        var out = [Float](repeating: outside, count: voxels.count)
        out.withUnsafeMutableBufferPointer { o in
            for z in 0..<depth { for y in 0..<height {
                var i = b + ay * Double(y) + az * Double(z)
                let row = (z * height + y) * width
                for x in 0..<width {
                    if let v = sample(i) {
                        o[row + x] = v
                    } else if all(i .>= lo) && all(i .<= hi), let v = sample(i.clamped(lowerBound: .zero, upperBound: top)) {
                        o[row + x] = v
                    }
                    i += ax
                }
            } }
        }
        return Volume3D(depth: depth, height: height, width: width, voxels: out, geometry: geometry)
    }
}

extension Volume3D {
    /// This (native, thin-slice) frame resampled through `t` onto the slab grid of `plan`
    /// and averaged: slab k, pixel (y, x) is the mean of the trilinear samples at the
    /// `plan.factor` native voxel centres (k·factor + first + j, y, x), each moved by `t`,
    /// with the same edge and fill rules as `resampled(through:)`. Written into `out`
    /// (plan.count × height × width floats). Factor 1 gives exactly `resampled(through:)`.
    public func resampledIntoSlabs(through t: RigidTransform, plan: SlabPlan, into out: UnsafeMutableBufferPointer<Float>,
                                   outside: Float = -1000) {
        let g = geometry
        let (b, ax, ay, az) = t.indexAffine(in: g)
        let top = SIMD3(Double(width - 1), Double(height - 1), Double(depth - 1))
        let lo = SIMD3<Double>(repeating: -0.5), hi = top + 0.5
        let plane = height * width
        let inv = 1 / Float(plan.factor)
        precondition(out.count >= plan.count * plane, "slab buffer too small")
        for k in 0..<plan.count { for y in 0..<height {
            let row = k * plane + y * width
            for x in 0..<width { out[row + x] = 0 }
            for j in 0..<plan.factor {
                let z = plan.first + k * plan.factor + j
                var i = b + ay * Double(y) + az * Double(z)
                for x in 0..<width {
                    var v = outside
                    if let s = sample(i) {
                        v = s
                    } else if all(i .>= lo) && all(i .<= hi), let s = sample(i.clamped(lowerBound: .zero, upperBound: top)) {
                        v = s
                    }
                    out[row + x] += plan.factor == 1 ? v : v * inv
                    i += ax
                }
            }
        } }
    }
}
