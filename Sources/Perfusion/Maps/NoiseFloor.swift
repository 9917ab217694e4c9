import Foundation

/// Noise lifts low flow: CBF is the maximum of the deconvolved residue, and the maximum of a
/// noisy residue is positive even where nothing flows. In an infarct core (CBF of a few
/// ml/100g/min, enhancement under 1 HU) that floor is of the same size as the flow, so the
/// core reads above the rCBF < 30 % cut and is lost.
///
/// The floor is measured for the study: curves of pure noise at the residual noise left
/// after the in-plane smoothing (measured on the difference of the two pre-bolus frames,
/// smoothed like the curves), sampled at the scanner's frame times, baseline-subtracted and
/// resampled like the tissue curves, go through the same deconvolution; their mean
/// maximum, in CBF units, is the floor. The core threshold compares max(0, CBF − floor)
/// with 30 % of the healthy side's mean of the same quantity; the CBF map itself is
/// reported as measured.
struct NoiseFloor {
    static func cbf(residualNoise sigma: Double, frameTimes: [Double], dt: Double, samples n: Int, baselineSamples: Int,
                    deconvolution d: Deconvolution, scale: Double) -> Double {
        guard sigma > 0, frameTimes.count >= 2 else { return 0 }
        let m = 2048
        var rng = SeededRandom(seed: 0x5EED_F100)
        var curves = [Float](repeating: 0, count: n * m)
        var raw = [Double](repeating: 0, count: frameTimes.count)
        var grid = [Double](repeating: 0, count: n)
        for v in 0..<m {
            for i in raw.indices { raw[i] = sigma * rng.gaussian() }
            // Linear interpolation onto the uniform grid, as `Prepared` does.
            var k = 0
            for j in 0..<n {
                let t = Double(j) * dt
                while k + 1 < frameTimes.count - 1 && frameTimes[k + 1] < t { k += 1 }
                let t0 = frameTimes[k], t1 = frameTimes[min(k + 1, frameTimes.count - 1)]
                let w = t1 > t0 ? max(0, min(1, (t - t0) / (t1 - t0))) : 0
                grid[j] = raw[k] * (1 - w) + raw[min(k + 1, raw.count - 1)] * w
            }
            let base = grid[0..<max(1, baselineSamples)].reduce(0, +) / Double(max(1, baselineSamples))
            for j in 0..<n { curves[j * m + v] = Float(grid[j] - base) }
        }
        let k = d.residues(curves: curves, count: m)
        var sum = 0.0
        for v in 0..<m { sum += Double(TmaxCalibration.peak(k, voxel: v, count: m, l: d.l, dt: d.dt).value) }
        return scale * sum / Double(m)
    }
}
