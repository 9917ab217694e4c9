import Foundation

/// Image filters of the phantom: the scanner's point spread and correlated CT noise.
package enum ImageFilter {
    /// Normalised 1D Gaussian taps of σ `s` pixels (radius 3σ, at least 1).
    static func gaussianTaps(sigma s: Double) -> [Float] {
        let r = max(1, Int((3 * s).rounded(.up)))
        let k = (-r...r).map { exp(-Double($0 * $0) / (2 * s * s)) }
        let sum = k.reduce(0, +)
        return k.map { Float($0 / sum) }
    }

    /// Separable Gaussian blur of an h×w image in place (edges clamped).
    package static func blur(_ img: inout [Float], height h: Int, width w: Int, sigmaPixels s: Double) {
        guard s > 0 else { return }
        let k = gaussianTaps(sigma: s)
        let r = k.count / 2
        var tmp = [Float](repeating: 0, count: h * w)
        img.withUnsafeMutableBufferPointer { im in
            tmp.withUnsafeMutableBufferPointer { tp in
                k.withUnsafeBufferPointer { kp in
                    // Rows: the interior is summed tap by tap across the row (the loop over x
                    // vectorises); each pixel still adds its taps in the order d = 0…2r from 0,
                    // so the sums are bit-identical to a per-pixel loop. Edge pixels clamp.
                    for y in 0..<h {
                        let row = y * w
                        for x in 0..<w where x < r || x >= w - r {
                            var a: Float = 0
                            for d in 0...(2 * r) { a += kp[d] * im[row + min(max(x - r + d, 0), w - 1)] }
                            tp[row + x] = a
                        }
                        guard w > 2 * r else { continue }
                        for x in r..<(w - r) { tp[row + x] = 0 }
                        for d in 0...(2 * r) {
                            let kd = kp[d], src = row - r + d
                            for x in r..<(w - r) { tp[row + x] += kd * im[src + x] }
                        }
                    }
                    for y in 0..<h {
                        for x in 0..<w { im[y * w + x] = 0 }
                        for d in 0...(2 * r) {
                            let src = min(max(y - r + d, 0), h - 1) * w
                            let kd = kp[d]
                            for x in 0..<w { im[y * w + x] += kd * tp[src + x] }
                        }
                    }
                }
            }
        }
    }

    /// Spatially correlated Gaussian noise of standard deviation `sigma` (HU): white noise
    /// smoothed by a Gaussian of `correlationPixels` σ, then rescaled by the kernel's
    /// noise gain 1/Σk² (separable: (Σk_1D²)²) so the result has variance σ² away from edges.
    package static func correlatedNoise(height h: Int, width w: Int, sigma: Double, correlationPixels c: Double,
                                rng: inout SeededRandom) -> [Float] {
        var n = [Float](repeating: 0, count: h * w)
        guard sigma > 0 else { return n }
        for i in 0..<(h * w) { n[i] = Float(rng.gaussian()) }
        guard c > 0.05 else {
            for i in 0..<n.count { n[i] *= Float(sigma) }
            return n
        }
        blur(&n, height: h, width: w, sigmaPixels: c)
        let k = gaussianTaps(sigma: c)
        let gain = k.reduce(0) { $0 + Double($1 * $1) }
        let scale = Float(sigma / gain)      // 1 / sqrt((Σk²)²) = 1 / Σk²
        for i in 0..<n.count { n[i] *= scale }
        return n
    }
}
