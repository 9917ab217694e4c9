import Foundation

/// Whole-volume inference in tiles with an exact halo.
///
/// A voxel of the network's output depends on the input within a radius of
///   Σ_layers [ r_x + (T − 1)·r_h ] + r_head      (r = kernel / 2)
/// voxels: the input convolution reaches r_x, and each of the T − 1 recurrent steps reaches
/// r_h further (in both directions of time). Each tile is computed on its core plus that
/// halo, clipped at the volume's edges where the network's own zero padding applies, so a
/// tiled result equals the untiled one up to float rounding. Memory is bounded by the tile,
/// not the volume. Tiles whose core holds no voxel of the mask (air) are not computed; their
/// outputs are `fill`.
extension ConvLSTMModel {
    /// The exact halo, in voxels along each spatial axis, for a series of `T` time points.
    public func halo(timepoints T: Int) -> Int {
        layers.reduce(0) { $0 + $1.kernelX / 2 + (T - 1) * ($1.kernelH / 2) } + head.kernel / 2
    }

    /// Runs the network over a volume of spatial `shape` ([H, W] or [D, H, W]) and `T` time
    /// points, `tile` voxels per axis at a time. `read(origin, size)` returns the normalised
    /// input of that box as (T, size…) row-major, or (T, size…, C) for a model with C > 1
    /// input channels; `mask(origin, size)` says whether the box
    /// holds anything worth computing. `halo` overrides the exact halo. Returns (C, shape…), or (T, C, shape…) for models
    /// whose last layer returns sequences.
    public func runTiled(shape: [Int], timepoints T: Int, tile: Int, halo haloOverride: Int? = nil, fill: Float = 0,
                         read: ([Int], [Int]) throws -> [Float], mask: (([Int], [Int]) -> Bool)? = nil,
                         progress: ((Double) -> Void)? = nil) throws -> Tensor {
        let d = spec.spatialDims
        // The same input rules as `run`, on the shape the tiles come from.
        try checkInput(shape: [T] + shape + (inputChannels > 1 ? [inputChannels] : []))
        guard tile >= 1 else { throw InferenceError("tile is \(tile); at least 1 expected") }
        if let h = haloOverride, h < 0 { throw InferenceError("halo is \(h); 0 or more expected") }
        // An override trades exactness for speed (results then match within a tolerance
        // that depends on the weights); nil uses the exact halo.
        let h = haloOverride ?? halo(timepoints: T)
        let C = head.outChannels
        let steps = outputHasTime ? T : 1
        let total = shape.reduce(1, *)
        var out = Tensor(shape: (outputHasTime ? [steps] : []) + [C] + shape, data: [Float](repeating: fill, count: steps * C * total))
        // Tile origins along each axis.
        let origins = shape.map { n in stride(from: 0, to: n, by: tile).map { $0 } }
        var boxes: [[Int]] = [[]]
        for axis in origins { boxes = boxes.flatMap { b in axis.map { b + [$0] } } }
        for (done, core) in boxes.enumerated() {
            defer { progress?(Double(done + 1) / Double(boxes.count)) }
            let coreSize = zip(core, shape).map { min(tile, $1 - $0) }
            if let mask, !mask(core, coreSize) { continue }
            let lo = zip(core, shape).map { c, _ in max(0, c - h) }
            let hi = (0..<d).map { min(shape[$0], core[$0] + coreSize[$0] + h) }
            let size = zip(hi, lo).map { $0 - $1 }
            let input = try read(lo, size)
            let cin = inputChannels
            guard input.count == T * size.reduce(1, *) * cin else {
                throw InferenceError("tile reader returned \(input.count) values for \(T)×\(size)\(cin > 1 ? "×\(cin)" : "")")
            }
            let y = try run(Tensor(shape: [T] + size + (cin > 1 ? [cin] : []), data: input))
            // Copy the core back: y is (steps·C, size…).
            let n = size.reduce(1, *)
            let coreCount = coreSize.reduce(1, *)
            for s in 0..<(steps * C) {
                for i in 0..<coreCount {
                    // Core-local index → coordinates → tile index and volume index.
                    var rem = i, tIdx = 0, vIdx = 0
                    var strideT = 1, strideV = 1
                    for a in stride(from: d - 1, through: 0, by: -1) {
                        let coord = rem % coreSize[a]
                        rem /= coreSize[a]
                        tIdx += (core[a] - lo[a] + coord) * strideT
                        vIdx += (core[a] + coord) * strideV
                        strideT *= size[a]
                        strideV *= shape[a]
                    }
                    out.data[s * total + vIdx] = y.data[s * n + tIdx]
                }
            }
        }
        return out
    }
}
