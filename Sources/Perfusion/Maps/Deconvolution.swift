internal import COpenBLAS
import Foundation

/// Block-circulant deconvolution of tissue curves by an arterial input (Wu et al., MRM 2003),
/// fitted to the observed samples only.
///
/// The AIF a (N samples, step Δt) is zero-padded to L = 2N and put in an L×L circulant
/// matrix D_ij = Δt·a_((i−j) mod L); a tissue curve is D·k with k the flow-scaled residue on
/// L samples, indices past L/2 standing for negative delays. The circulant form is what makes
/// the estimate insensitive to the tissue's delay relative to the AIF.
///
/// Classic block-circulant SVD also pads the tissue curve with zeros, i.e. it asserts that
/// the curve is back at baseline after the last frame. A short acquisition (36 s) ends while
/// late, slow lesion curves are still near their peak, so the fit must put a large negative
/// lobe into k to bring them down to zero; truncation spreads that lobe over the residue and
/// moves its peak from one threshold to the next (a curve arriving 6 s late with MTT 10 s and
/// 1 s dispersion, true Tmax 8.5 s, peaked at 9.3–12.5 s over thresholds 0.04–0.3; fitted as
/// below, at 9.9–11.3 s). Here only the N observed rows A = D[0..<N, ·]
/// are fitted and what comes after the acquisition is left free: the truncated-SVD solution
/// is k = Aᵀ·U·diag(w)·Uᵀ·c with A·Aᵀ = U·diag(s²)·Uᵀ (an N×N symmetric eigenproblem, solved
/// once per study by Jacobi rotations in double precision) and w = 1/s² for singular values
/// s ≥ P·max s, 0 below. Delay insensitivity is kept (CBF within 5 % and Tmax following the
/// delay, for delays of −3…9 s). The L×N operators of all thresholds are
/// applied to all voxels at once with one sgemm.
///
/// Truncation is chosen per voxel by the oscillation index (OI) of Wu et al.:
/// OI = (1/L)(1/max k)·Σ_(i=2)^(L−1) |k_i − 2k_(i−1) + k_(i−2)|; the smallest threshold P of a
/// ladder whose residue has OI ≤ the method's threshold is used. Tikhonov regularisation
/// (w = 1/(s² + μ²), μ = α·max s) is the alternative.
public struct Deconvolution: Sendable {
    public enum Method: Sendable, Equatable {
        /// Oscillation-index-controlled truncated SVD over a ladder of thresholds P.
        case oscillationIndex(threshold: Double = 0.035, ladder: [Double] = [0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3])
        /// Truncated SVD at one threshold P (fraction of the largest singular value).
        case truncated(Double)
        /// Tikhonov with μ = α·max singular value.
        case tikhonov(alpha: Double)
    }

    public let n: Int           // samples per curve
    public let l: Int           // padded length
    public let dt: Double
    public let method: Method
    /// One L×N block per filter, stacked: rows (level·L + i), columns j.
    let operators: [Float]
    let levels: Int

    /// The singular values of the observed rows of the padded circulant AIF matrix, largest first.
    public let singularValues: [Double]

    public init(aif: [Double], dt: Double, method: Method = .oscillationIndex()) {
        n = aif.count
        l = 2 * n
        self.dt = dt
        self.method = method
        let n = self.n, l = self.l
        // A_ij = Δt·a_((i−j) mod L), i < N.
        func a(_ i: Int, _ j: Int) -> Double {
            let k = ((i - j) % l + l) % l
            return k < n ? dt * aif[k] : 0
        }
        var gram = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for k in i..<n {
            var s = 0.0
            for j in 0..<l { s += a(i, j) * a(k, j) }
            gram[i * n + k] = s; gram[k * n + i] = s
        } }
        let (values, vectors) = Self.symmetricEigen(gram, n)
        let sv = values.map { max(0, $0).squareRoot() }
        singularValues = sv
        let top = sv.first ?? 0
        func truncation(_ p: Double) -> [Double] { sv.map { $0 >= p * top && $0 > 0 ? 1 / ($0 * $0) : 0 } }
        let weights: [[Double]]
        switch method {
        case .oscillationIndex(_, let ladder): weights = ladder.map(truncation)
        case .truncated(let p): weights = [truncation(p)]
        case .tikhonov(let alpha): weights = [sv.map { 1 / ($0 * $0 + alpha * alpha * top * top) }]
        }
        levels = weights.count
        // Operator of each filter: P = Aᵀ·(U·diag(w)·Uᵀ), L×N.
        var ops = [Float](repeating: 0, count: levels * l * n)
        var m = [Double](repeating: 0, count: n * n)
        for (v, w) in weights.enumerated() {
            for i in m.indices { m[i] = 0 }
            for c in 0..<n where w[c] != 0 {
                for i in 0..<n {
                    let ui = vectors[c * n + i] * w[c]
                    for k in 0..<n { m[i * n + k] += ui * vectors[c * n + k] }
                }
            }
            for r in 0..<l { for k in 0..<n {
                var s = 0.0
                for i in 0..<n { s += a(i, r) * m[i * n + k] }
                ops[(v * l + r) * n + k] = Float(s)
            } }
        }
        operators = ops
    }

    /// Eigen-decomposition of a symmetric n×n matrix by cyclic Jacobi rotations: eigenvalues
    /// in descending order, eigenvectors as columns (vectors[c·n + row]).
    static func symmetricEigen(_ matrix: [Double], _ n: Int) -> (values: [Double], vectors: [Double]) {
        var a = matrix
        var v = [Double](repeating: 0, count: n * n)
        for i in 0..<n { v[i * n + i] = 1 }
        let scale = max(1e-300, (0..<n).reduce(0.0) { $0 + a[$1 * n + $1] * a[$1 * n + $1] })
        for _ in 0..<60 {
            var off = 0.0
            for p in 0..<n { for q in (p + 1)..<n { off += a[p * n + q] * a[p * n + q] } }
            if off <= 1e-26 * scale { break }
            for p in 0..<n { for q in (p + 1)..<n where a[p * n + q] != 0 {
                let theta = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q])
                let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                let c = 1 / (t * t + 1).squareRoot(), s = t * c
                for k in 0..<n {   // columns p, q
                    let x = a[k * n + p], y = a[k * n + q]
                    a[k * n + p] = c * x - s * y; a[k * n + q] = s * x + c * y
                }
                for k in 0..<n {   // rows p, q
                    let x = a[p * n + k], y = a[q * n + k]
                    a[p * n + k] = c * x - s * y; a[q * n + k] = s * x + c * y
                }
                for k in 0..<n {
                    let x = v[k * n + p], y = v[k * n + q]
                    v[k * n + p] = c * x - s * y; v[k * n + q] = s * x + c * y
                }
            } }
        }
        let order = (0..<n).sorted { a[$0 * n + $0] > a[$1 * n + $1] }
        var vectors = [Double](repeating: 0, count: n * n)
        for (c, o) in order.enumerated() { for r in 0..<n { vectors[c * n + r] = v[r * n + o] } }
        return (order.map { a[$0 * n + $0] }, vectors)
    }

    /// The pseudo-inverse of filter `level` as an L×N matrix (row-major), for tests.
    public func inverse(level: Int = 0) -> [Float] { Array(operators[(level * l * n)..<((level + 1) * l * n)]) }

    /// The method's OI limit (∞ for a single filter).
    public var oscillationLimit: Float {
        if case .oscillationIndex(let t, _) = method { return Float(t) }
        return .infinity
    }

    /// Residues of `count` curves given as an N×count row-major matrix (time-major: the
    /// value of curve v at sample j is curves[j·count + v]). Returns, per curve, the
    /// L-sample residue of the filter the method chose.
    public func residues(curves: [Float], count: Int) -> [Float] {
        residues(curves: curves, count: count, limits: [oscillationLimit])[0]
    }

    /// As above, once per OI limit: for each limit, per curve, the residue of the least
    /// truncated filter of the ladder whose OI is within it (one sgemm for all of them).
    public func residues(curves: [Float], count: Int, limits: [Float]) -> [[Float]] {
        precondition(curves.count == n * count, "deconvolution: \(curves.count) values for \(n) samples × \(count) curves")
        let rows = levels * l
        var all = [Float](repeating: 0, count: rows * count)
        operators.withUnsafeBufferPointer { a in
            curves.withUnsafeBufferPointer { b in
                all.withUnsafeMutableBufferPointer { c in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(count), Int32(n),
                                1, a.baseAddress, Int32(n), b.baseAddress, Int32(count), 0, c.baseAddress, Int32(count))
                }
            }
        }
        var outs = limits.map { _ in [Float](repeating: 0, count: l * count) }
        // OI per level, computed only as far as a limit needs (NaN: not yet).
        var oi = [Float](repeating: .nan, count: levels)
        for v in 0..<count {
            for level in 0..<levels { oi[level] = .nan }
            for (o, limit) in limits.enumerated() {
                var chosen = levels - 1
                if levels > 1 {
                    for level in 0..<levels {
                        if oi[level].isNaN { oi[level] = Self.oscillationIndex(all, base: level * l, l: l, column: v, stride: count) }
                        if oi[level] <= limit { chosen = level; break }
                    }
                }
                for i in 0..<l { outs[o][i * count + v] = all[(chosen * l + i) * count + v] }
            }
        }
        return outs
    }

    /// Wu's oscillation index of one residue (∞ when its maximum is not positive).
    static func oscillationIndex(_ k: [Float], base: Int, l: Int, column v: Int, stride s: Int) -> Float {
        var top: Float = 0
        for i in 0..<l { top = max(top, k[(base + i) * s + v]) }
        guard top > 0 else { return .infinity }
        var sum: Float = 0
        for i in 2..<l { sum += abs(k[(base + i) * s + v] - 2 * k[(base + i - 1) * s + v] + k[(base + i - 2) * s + v]) }
        return sum / (Float(l) * top)
    }
}
