import Foundation
import Volume

/// A 4D series brought to what deconvolution needs: a coarser in-plane grid (block means),
/// a uniform time grid, and curves as time-major rows ([sample][voxel]).
struct Prepared {
    var depth: Int, height: Int, width: Int
    var factor: Int                 // in-plane block size in source pixels
    var dt: Double
    var samples: Int
    /// HU on the uniform time grid, [sample][z][y][x].
    var hu: [Float]
    var voxelML: Double
    /// Second minus first acquired frame on the coarse grid, and when the second was taken
    /// (after the first): pure noise while both are before the bolus.
    var firstDifference: [Float] = []
    var secondFrameTime: Double?
    /// Per coarse voxel: inside the slab at every time point (registration; nil: all).
    var valid: [Bool]?
    var frame: Int { depth * height * width }

    /// Block-averages each frame in-plane by `factor`, then resamples every voxel's curve
    /// linearly onto t = 0, dt, 2dt, … ≤ the last frame time.
    init(_ s: Series4D, factor f: Int, dt: Double) {
        factor = f; self.dt = dt
        depth = s.depth; height = (s.height + f - 1) / f; width = (s.width + f - 1) / f
        samples = 0; hu = []; voxelML = 0
        let width = self.width, height = self.height
        let plane = height * width, frame = depth * plane
        let small = s.blockAveraged(f)
        let coarse = small.voxels
        valid = small.validity
        if s.timepoints >= 2 {
            firstDifference = (0..<frame).map { coarse[frame + $0] - coarse[$0] }
            secondFrameTime = s.frameTimes[1] - s.frameTimes[0]
        }
        let last = s.frameTimes.last ?? 0
        samples = Int((last / dt + 1e-6).rounded(.down)) + 1
        hu = [Float](repeating: 0, count: samples * frame)
        var k = 0
        for j in 0..<samples {
            let t = Double(j) * dt
            while k + 1 < s.timepoints - 1 && s.frameTimes[k + 1] < t { k += 1 }
            let t0 = s.frameTimes[k], t1 = s.frameTimes[min(k + 1, s.timepoints - 1)]
            let w = Float(t1 > t0 ? max(0, min(1, (t - t0) / (t1 - t0))) : 0)
            let a = k * frame, b = min(k + 1, s.timepoints - 1) * frame, o = j * frame
            for i in 0..<frame { hu[o + i] = coarse[a + i] * (1 - w) + coarse[b + i] * w }
        }
        voxelML = s.geometry.sliceSpacing * s.geometry.rowSpacing * Double(f) * s.geometry.columnSpacing * Double(f) / 1000
    }

    /// Mean HU of samples 0..<count (the pre-bolus baseline).
    func mean(samples count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: frame)
        for j in 0..<count { for i in 0..<frame { out[i] += hu[j * frame + i] } }
        for i in 0..<frame { out[i] /= Float(count) }
        return out
    }

    /// Normalised-convolution smoothing of every sample in-plane over `mask` voxels only:
    /// S(x·m)/S(m), so CSF, vessels and skull do not leak into tissue.
    func smoothed(_ values: [Float], samples count: Int, mask: [Bool], sigmaPixels s: Double) -> [Float] {
        let plane = height * width
        var weight = [Float](repeating: 0, count: frame)
        for i in 0..<frame where mask[i] { weight[i] = 1 }
        for z in 0..<depth {
            var w = Array(weight[(z * plane)..<((z + 1) * plane)])
            ImageFilter.blur(&w, height: height, width: width, sigmaPixels: s)
            weight.replaceSubrange((z * plane)..<((z + 1) * plane), with: w)
        }
        let h = height, wd = width, m = mask
        let slices: [[Float]] = parallelMap(count * depth) { [values] k in
            let j = k / self.depth, z = k % self.depth
            let o = j * self.frame + z * plane
            var img = (0..<plane).map { m[z * plane + $0] ? values[o + $0] : 0 }
            ImageFilter.blur(&img, height: h, width: wd, sigmaPixels: s)
            return img
        }
        var out = [Float](repeating: 0, count: count * frame)
        for k in 0..<(count * depth) {
            let j = k / depth, z = k % depth
            for i in 0..<plane {
                let wgt = weight[z * plane + i]
                out[j * frame + z * plane + i] = wgt > 1e-3 ? slices[k][i] / wgt : 0
            }
        }
        return out
    }

    /// Gaussian smoothing of every voxel's curve along time (σ in samples; ends clamped).
    static func smoothInTime(_ values: inout [Float], samples n: Int, frame: Int, sigmaSamples s: Double) {
        let k = ImageFilter.gaussianTaps(sigma: s), r = k.count / 2
        var curve = [Float](repeating: 0, count: n)
        for i in 0..<frame {
            for j in 0..<n { curve[j] = values[j * frame + i] }
            for j in 0..<n {
                var a: Float = 0
                for d in 0..<k.count { a += k[d] * curve[min(max(j - r + d, 0), n - 1)] }
                values[j * frame + i] = a
            }
        }
    }
}

extension Prepared {
    /// Cross-bilateral in-plane smoothing of the curves `values` ([sample][voxel], within
    /// `mask`): weights are a spatial Gaussian (σ `s` pixels, radius 2σ) times exp(−D/(2h²)),
    /// D the mean squared difference of the two voxels' `guide` curves, h² = k · guideNoise²
    /// (see `PerfusionOptions.profileSimilarity`).
    func profileSmoothed(_ values: [Float], guide: [Float], samples n: Int, mask: [Bool], sigmaPixels s: Double,
                         guideNoise: Double, k: Double) -> [Float] {
        let plane = height * width, r = max(1, Int((2 * s).rounded(.up)))
        let inv2h2 = Float(1 / (2 * k * guideNoise * guideNoise))
        let kernel: [Float] = (-r...r).flatMap { (dy: Int) -> [Float] in
            (-r...r).map { (dx: Int) -> Float in Float(exp(-Double(dx * dx + dy * dy) / (2 * s * s))) }
        }
        let h = height, w = width, f = frame
        let rows: [[Float]] = parallelMap(depth * h) { [values, guide, kernel] k in
            let z = k / h, y = k % h
            var out = [Float](repeating: 0, count: n * w)
            var acc = [Float](repeating: 0, count: n)
            for x in 0..<w {
                let i = z * plane + y * w + x
                guard mask[i] else { continue }
                for t in 0..<n { acc[t] = 0 }
                var total: Float = 0
                var si = 0
                for dy in -r...r {
                    for dx in -r...r {
                        defer { si += 1 }
                        let yy = y + dy, xx = x + dx
                        guard yy >= 0, yy < h, xx >= 0, xx < w else { continue }
                        let jv = z * plane + yy * w + xx
                        guard mask[jv] else { continue }
                        var d: Float = 0
                        for t in 0..<n { let e = guide[t * f + i] - guide[t * f + jv]; d += e * e }
                        let wt = kernel[si] * Foundation.exp(-d / Float(n) * inv2h2)
                        total += wt
                        for t in 0..<n { acc[t] += wt * values[t * f + jv] }
                    }
                }
                if total > 0 { for t in 0..<n { out[t * w + x] = acc[t] / total } }
            }
            return out
        }
        var result = [Float](repeating: 0, count: n * f)
        for k in 0..<(depth * h) {
            let z = k / h, y = k % h
            for t in 0..<n { for x in 0..<w { result[t * f + z * plane + y * w + x] = rows[k][t * w + x] } }
        }
        return result
    }
}
