import Foundation

/// Filters on the coarse grid of `Prepared` that make the lesion thresholds robust to noise.
enum MapFilters {
    /// Image noise σ (HU) of one sample, from differences of horizontally adjacent tissue
    /// voxels: for independent noise, x_i − x_(i+1) has σ·√2, and the median absolute
    /// difference (×1.4826, the normal consistency factor) ignores the few pairs that
    /// straddle a tissue boundary. A noise-free series gives about 0 (only boundaries
    /// differ, and they are a minority of pairs). Spatially correlated noise makes
    /// neighbours alike, so this underestimates σ somewhat; it is used only to scale the
    /// smoothing, never reported as a measurement.
    static func noiseSigma(_ values: [Float], mask: [Bool], width: Int) -> Double {
        var d: [Float] = []
        for i in 0..<(values.count - 1) where mask[i] && mask[i + 1] && (i + 1) % width != 0 {
            d.append(abs(values[i] - values[i + 1]))
        }
        guard !d.isEmpty else { return 0 }
        d.sort()
        return 1.4826 * Double(d[d.count / 2]) / 2.0.squareRoot()
    }

    /// σ of zero-mean noise over the mask: median absolute value × 1.4826 (the normal
    /// consistency factor), so a few outliers do not count. Applied to the difference of two
    /// frames taken before the bolus it gives σ·√2 whatever the noise's spatial correlation
    /// (which makes the neighbour estimate above read low on fine grids).
    static func robustSigma(_ values: [Float], mask: [Bool]) -> Double {
        var d: [Float] = []
        for (k, x) in values.enumerated() where mask[k] { d.append(abs(x)) }
        guard !d.isEmpty else { return 0 }
        d.sort()
        return 1.4826 * Double(d[d.count / 2])
    }

    /// 3×3 in-plane median of `map` over `mask` voxels only (neighbours outside the mask
    /// are left out), so a single noisy voxel cannot cross a threshold on its own while
    /// edges between tissue and CSF are kept.
    static func median3x3(_ map: [Float], mask: [Bool], depth: Int, height h: Int, width w: Int) -> [Float] {
        var out = map
        var window: [Float] = []
        window.reserveCapacity(9)
        for z in 0..<depth { for y in 0..<h { for x in 0..<w {
            let i = (z * h + y) * w + x
            guard mask[i] else { continue }
            window.removeAll(keepingCapacity: true)
            for dy in -1...1 { for dx in -1...1 {
                let yy = y + dy, xx = x + dx
                guard yy >= 0, yy < h, xx >= 0, xx < w else { continue }
                let j = (z * h + yy) * w + xx
                if mask[j] && map[j].isFinite { window.append(map[j]) }
            } }
            if !window.isEmpty { window.sort(); out[i] = window[window.count / 2] }
        } } }
        return out
    }

    /// Drops 3D connected components (6-neighbourhood) of `m` smaller than `minVoxels`:
    /// scattered specks are noise, an infarct is a contiguous region.
    static func removingSmallComponents(_ m: [Bool], depth: Int, height h: Int, width w: Int, minVoxels: Int) -> [Bool] {
        guard minVoxels > 1 else { return m }
        var out = m
        var seen = [Bool](repeating: false, count: m.count)
        var stack: [Int] = [], component: [Int] = []
        let plane = h * w
        for start in m.indices where m[start] && !seen[start] {
            stack = [start]; component.removeAll(keepingCapacity: true)
            seen[start] = true
            while let i = stack.popLast() {
                component.append(i)
                let z = i / plane, y = (i / w) % h, x = i % w
                var next: [Int] = []
                if x > 0 { next.append(i - 1) }
                if x < w - 1 { next.append(i + 1) }
                if y > 0 { next.append(i - w) }
                if y < h - 1 { next.append(i + w) }
                if z > 0 { next.append(i - plane) }
                if z < depth - 1 { next.append(i + plane) }
                for j in next where m[j] && !seen[j] { seen[j] = true; stack.append(j) }
            }
            if component.count < minVoxels { for i in component { out[i] = false } }
        }
        return out
    }
}
