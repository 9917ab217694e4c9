internal import COpenBLAS
import Foundation

/// Block-circulant deconvolution of tissue curves by an arterial input (Wu et al., MRM 2003).
///
/// The AIF a (N samples, step Δt) is zero-padded to L ≥ 2N and put in an L×L circulant
/// matrix D_ij = Δt·a_((i−j) mod L); a tissue curve c (padded likewise) is D·k with k the
/// flow-scaled residue. Padding makes the convolution circular without wrap-around, which
/// is what makes the estimate insensitive to the tissue's delay relative to the AIF.
///
/// A circulant matrix is diagonalised by the discrete Fourier transform: D = F⁻¹ΛF with
/// λ_m = Δt·Σ_j a_j e^(−2πi·jm/L), so its singular values are |λ_m| (singular vectors:
/// the Fourier modes). The truncated-SVD pseudo-inverse — keep singular values ≥ P·max —
/// is therefore F⁻¹·diag(g)·F with g_m = 1/λ_m where |λ_m| ≥ P·max|λ| and 0 elsewhere,
/// itself a real circulant matrix. We build it exactly this way in double precision (no
/// iterative SVD needed) and apply it to all voxels at once with one sgemm.
///
/// Truncation is chosen per voxel by the oscillation index (OI) of Wu et al.:
/// OI = (1/L)(1/max k)·Σ_(i=2)^(L−1) |k_i − 2k_(i−1) + k_(i−2)|; the smallest threshold P of a
/// ladder whose residue has OI ≤ 0.035 is used. Tikhonov regularisation (g_m = λ̄_m /
/// (|λ_m|² + μ²), μ = α·max|λ|) is the alternative.
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

    /// The singular values |λ_m| of the padded circulant AIF matrix, largest first.
    public let singularValues: [Double]

    public init(aif: [Double], dt: Double, method: Method = .oscillationIndex()) {
        n = aif.count
        l = 2 * n
        self.dt = dt
        self.method = method
        // λ_m by a direct DFT (L is small: a few dozen).
        var re = [Double](repeating: 0, count: l), im = re
        for m in 0..<l {
            for j in 0..<n {
                let w = -2 * Double.pi * Double(j * m) / Double(l)
                re[m] += dt * aif[j] * cos(w); im[m] += dt * aif[j] * sin(w)
            }
        }
        let mag = (0..<l).map { (re[$0] * re[$0] + im[$0] * im[$0]).squareRoot() }
        let top = mag.max() ?? 0
        singularValues = mag.sorted(by: >)
        let filters: [[(Double, Double)]]
        switch method {
        case .oscillationIndex(_, let ladder):
            filters = ladder.map { p in Self.truncation(re, im, mag, cut: p * top) }
        case .truncated(let p):
            filters = [Self.truncation(re, im, mag, cut: p * top)]
        case .tikhonov(let alpha):
            let mu2 = (alpha * top) * (alpha * top)
            filters = [(0..<l).map { (re[$0] / (mag[$0] * mag[$0] + mu2), -im[$0] / (mag[$0] * mag[$0] + mu2)) }]
        }
        levels = filters.count
        // First column of each inverse circulant: p_k = (1/L)·Re Σ_m g_m e^(2πi·mk/L).
        var ops = [Float](repeating: 0, count: levels * l * n)
        for (v, g) in filters.enumerated() {
            var p = [Double](repeating: 0, count: l)
            for k in 0..<l {
                var s = 0.0
                for m in 0..<l {
                    let w = 2 * Double.pi * Double(m * k) / Double(l)
                    s += g[m].0 * cos(w) - g[m].1 * sin(w)
                }
                p[k] = s / Double(l)
            }
            for i in 0..<l { for j in 0..<n { ops[(v * l + i) * n + j] = Float(p[(i - j + l) % l]) } }
        }
        operators = ops
    }

    /// g_m = 1/λ_m where |λ_m| ≥ cut, else 0 (as real and imaginary parts).
    static func truncation(_ re: [Double], _ im: [Double], _ mag: [Double], cut: Double) -> [(Double, Double)] {
        (0..<re.count).map { m in
            guard mag[m] >= cut, mag[m] > 0 else { return (0, 0) }
            let d = mag[m] * mag[m]
            return (re[m] / d, -im[m] / d)
        }
    }

    /// The pseudo-inverse of filter `level` as an L×N matrix (row-major), for tests.
    public func inverse(level: Int = 0) -> [Float] { Array(operators[(level * l * n)..<((level + 1) * l * n)]) }

    /// Residues of `count` curves given as an N×count row-major matrix (time-major: the
    /// value of curve v at sample j is curves[j·count + v]). Returns, per curve, the
    /// L-sample residue of the filter the method chose.
    public func residues(curves: [Float], count: Int) -> [Float] {
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
        var out = [Float](repeating: 0, count: l * count)
        let limit: Float
        if case .oscillationIndex(let t, _) = method { limit = Float(t) } else { limit = .infinity }
        for v in 0..<count {
            var chosen = levels - 1
            if levels > 1 {
                for level in 0..<levels where Self.oscillationIndex(all, base: level * l, l: l, column: v, stride: count) <= limit {
                    chosen = level; break
                }
            }
            for i in 0..<l { out[i * count + v] = all[(chosen * l + i) * count + v] }
        }
        return out
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
