/// Feature maps passed from layer to layer: `steps` time points of `channels` channels over a
/// grid, in the layout of the kernel that made them. A layer whose kernel wants another layout
/// converts (one copy); consecutive layers with the same kernel pass their maps on as they are.
struct FeatureMaps {
    enum Layout: Equatable {
        /// steps × voxels × channels: the model's input and the head's layout (2D and 3D).
        case channelsLast
        /// steps × channels × plane (2D): each plane `height + 2·pad` rows of `stride` floats,
        /// voxel (y, x) at (y + pad)·stride + pad + x, zero elsewhere (the direct kernel's).
        case planes(pad: Int, stride: Int)
        /// steps × padded voxels × channels (2D): `rows` × `cols` voxels, voxel (y, x) at
        /// (y + 1, x + 1), zero elsewhere (the Winograd kernel's).
        case padded(rows: Int, cols: Int)

        /// Floats per time step.
        func stepSize(channels: Int, grid g: Grid) -> Int {
            switch self {
            case .channelsLast: g.count * channels
            case .planes(let pad, let stride): channels * (g.height + 2 * pad) * stride
            case .padded(let rows, let cols): rows * cols * channels
            }
        }

        /// Where row `r` (of depth·height) of channel `ch` starts within a step, and the
        /// distance between neighbours along the row.
        func row(_ r: Int, channel ch: Int, channels: Int, grid g: Grid) -> (start: Int, step: Int) {
            switch self {
            case .channelsLast: (r * g.width * channels + ch, channels)
            case .planes(let pad, let stride): ((ch * (g.height + 2 * pad) + r + pad) * stride + pad, 1)
            case .padded(_, let cols): (((r + 1) * cols + 1) * channels + ch, channels)
            }
        }
    }

    var layout: Layout
    var steps: Int, channels: Int
    var data: [Float]

    /// The same maps in `target` layout (self when it already is; else in a buffer from `pool`).
    func converted(to target: Layout, grid g: Grid, pool: BufferPool) -> FeatureMaps {
        guard target != layout else { return self }
        precondition(g.depth == 1 || (layout == .channelsLast && target == .channelsLast), "padded layouts are 2D")
        let C = channels, rows = g.depth * g.height, W = g.width
        let from = layout.stepSize(channels: C, grid: g), to = target.stepSize(channels: C, grid: g)
        var out = pool.take(steps * to)
        data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for t in 0..<steps {
                    for ch in 0..<C {
                        for r in 0..<rows {
                            let s = layout.row(r, channel: ch, channels: C, grid: g), d = target.row(r, channel: ch, channels: C, grid: g)
                            var i = t * from + s.start, o = t * to + d.start
                            for _ in 0..<W {
                                dst[o] = src[i]
                                i += s.step
                                o += d.step
                            }
                        }
                    }
                }
            }
        }
        return FeatureMaps(layout: target, steps: steps, channels: C, data: out)
    }
}
