internal import CInferenceKernels
internal import COpenBLAS
import Foundation

/// How a ConvLSTM layer computes its convolutions. All give the same result up to float
/// rounding; `auto` picks the fastest that applies (`ConvKernel.resolve`).
public enum ConvKernel: String, Sendable, CaseIterable {
    case auto
    /// im2col of x_t and h_{t−1} into one matrix and one sgemm per step: any shape.
    case im2col
    /// A direct convolution on channel planes, vectorised over voxels, gates fused: 2D,
    /// f ≤ 64; the fastest for few filters, where sgemm's shapes are poor.
    case direct
    /// Winograd F(4×4, 3×3), the n² products and the gates fused per band of tiles: 2D, 3×3
    /// kernels; 4 times fewer multiplications than the direct sum.
    case winograd
    /// Winograd F(2×2, 3×3): 2.25 times fewer multiplications and a smaller float error (on
    /// the parity cases at most 1.1e-6 of max |y| against F(4×4, 3×3)'s 2.2e-6; tolerance 1e-4).
    case winograd2

    /// The kernel a layer of this shape uses when `requested`; throws when it cannot.
    /// `auto`'s choice was measured on AVX-512 at 256×256: Winograd F(4×4) from 8 filters
    /// when f is a multiple of 4 and from 16 otherwise (its channel loops then end in scalar
    /// tails), the direct kernel below that.
    static func resolve(_ requested: ConvKernel, dims: Int, filters f: Int, kernelX kx: Int, kernelH kh: Int) throws -> ConvKernel {
        let direct = dims == 2 && f <= 64
        let winograd = dims == 2 && kx == 3 && kh == 3
        switch requested {
        case .auto:
            if winograd && (f >= 16 || (f >= 8 && f % 4 == 0)) { return .winograd }
            if direct { return .direct }
            return winograd ? .winograd : .im2col
        case .im2col: return .im2col
        case .direct where direct, .winograd where winograd, .winograd2 where winograd: return requested
        default:
            throw InferenceError("the \(requested.rawValue) kernel does not apply to a \(dims)D layer with \(f) filters and kernels \(kx)/\(kh)")
        }
    }
}

/// One direction of a convolutional LSTM layer.
struct LSTMDirection: Sendable {
    var weights: [Float]   // (Kx + Kh) × 4f, row-major: Keras's kernel rows, then the recurrent kernel's
    var bias: [Float]      // 4f
    var packed: [Float] = []   // the weights rearranged for the direct or Winograd kernel
}

/// A bidirectional ConvLSTM layer (Keras `Bidirectional(ConvLSTM{2,3}D(padding="same"),
/// merge_mode="sum")`): forward and backward outputs summed.
struct BCLSTMLayer: Sendable {
    let dims: Int, inChannels: Int, filters: Int, kernelX: Int, kernelH: Int
    let returnSequences: Bool
    let kernel: ConvKernel
    let forward: LSTMDirection, backward: LSTMDirection

    init(dims: Int, inChannels: Int, filters: Int, kernelX: Int, kernelH: Int, returnSequences: Bool, kernel: ConvKernel,
         forward: LSTMDirection, backward: LSTMDirection) {
        self.dims = dims; self.inChannels = inChannels; self.filters = filters
        self.kernelX = kernelX; self.kernelH = kernelH; self.returnSequences = returnSequences; self.kernel = kernel
        // The weights rearranged once for the kernel that will run them.
        func packed(_ w: [Float]) -> [Float] {
            switch kernel {
            case .direct:
                var s = Self.planes(inChannels, filters, kernelX, kernelH, Grid(depth: 1, height: 1, width: 1))
                var p = [Float](repeating: 0, count: w.count)
                cik_direct_pack(&s, w, &p)
                return p
            case .winograd, .winograd2:
                var s = cik_wino(height: 1, width: 1, cx: Int32(inChannels), f: Int32(filters), tile: kernel == .winograd ? 4 : 2)
                var u = [Float](repeating: 0, count: cik_wino_weights_size(&s))
                cik_wino_pack(&s, w, &u)
                return u
            default:
                return []
            }
        }
        var fw = forward, bw = backward
        fw.packed = packed(forward.weights)
        bw.packed = packed(backward.weights)
        self.forward = fw; self.backward = bw
    }

    var kx: Int { Int(pow(Double(kernelX), Double(dims))) * inChannels }
    var kh: Int { Int(pow(Double(kernelH), Double(dims))) * filters }

    /// FLOPs per voxel per time step (both directions), counted as a direct convolution.
    var flopsPerVoxelStep: Double { 2 * 2 * Double(kx + kh) * Double(4 * filters) }

    /// The direct kernel's plane geometry for a grid.
    static func planes(_ cx: Int, _ f: Int, _ kx: Int, _ kh: Int, _ g: Grid) -> cik_planes {
        let pad = max(kx, kh) / 2
        return cik_planes(height: Int32(g.height), width: Int32(g.width), pad: Int32(pad),
                          stride: Int32(2 * pad + (g.width + 15) / 16 * 16), cx: Int32(cx), f: Int32(f), kx: Int32(kx), kh: Int32(kh))
    }

    /// Runs the layer over all steps of `input`. Returns T maps of f channels when returning
    /// sequences, else one, in the layout of the layer's kernel. `threads`: 2 runs the
    /// directions side by side (BLAS runs one thread, see `ConvLSTMModel.run`). Buffers come
    /// from and go back to `pool`.
    func run(_ input: FeatureMaps, grid g: Grid, threads: Int, pool: BufferPool) -> FeatureMaps {
        let T = input.steps, f = filters
        let layout: FeatureMaps.Layout
        let planes = Self.planes(inChannels, f, kernelX, kernelH, g)
        var wino = cik_wino(height: Int32(g.height), width: Int32(g.width), cx: Int32(inChannels), f: Int32(f),
                            tile: kernel == .winograd ? 4 : 2)
        switch kernel {
        case .direct: layout = .planes(pad: Int(planes.pad), stride: Int(planes.stride))
        case .winograd, .winograd2: layout = .padded(rows: Int(cik_wino_rows(&wino)), cols: Int(cik_wino_cols(&wino)))
        default: layout = .channelsLast
        }
        let x = input.converted(to: layout, grid: g, pool: pool)
        defer { if input.layout != layout { pool.give(x.data) } }
        let inStep = layout.stepSize(channels: inChannels, grid: g), outStep = layout.stepSize(channels: f, grid: g)
        let steps = returnSequences ? T : 1
        var fwdOut = pool.take(steps * outStep), bwdOut = pool.take(steps * outStep)

        let N = g.count, ld = kx + kh
        let scratch: Int
        switch kernel {
        case .direct: scratch = 0
        case .winograd, .winograd2: scratch = cik_wino_scratch_size(&wino)
        default: scratch = N * (ld + 4 * f)   // im2col rows, then z
        }

        // One pass over time. The buffers are taken here, before the loop: the cell state,
        // the kernel's scratch, and h: written into the output when the layer keeps every
        // step, else into two buffers in turn (a step reads h_{t-1} while it writes h_t).
        @Sendable func direction(_ w: LSTMDirection, reverse: Bool, _ xs: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, step: Step) {
            var state = pool.take(4 * outStep + scratch)
            state.withUnsafeMutableBufferPointer { buffer in
                let c = buffer.baseAddress!, hs = c + outStep, work = c + 4 * outStep
                var prev = UnsafePointer(hs)   // h_{-1} = 0
                for s in 0..<T {
                    let t = reverse ? T - 1 - s : s
                    let h = returnSequences ? out + t * outStep : hs + (1 + s % 2) * outStep
                    step(w, xs + t * inStep, prev, c, h, work)
                    prev = UnsafePointer(h)
                }
                if !returnSequences { out.update(from: prev, count: outStep) }
            }
            pool.give(state)
        }

        func both(_ step: Step) {
            x.data.withUnsafeBufferPointer { xb in
                fwdOut.withUnsafeMutableBufferPointer { fo in
                    bwdOut.withUnsafeMutableBufferPointer { bo in
                        // The two directions read the same input and write disjoint outputs.
                        nonisolated(unsafe) let xs = xb.baseAddress!, fo = fo.baseAddress!, bo = bo.baseAddress!
                        if threads >= 2 {
                            DispatchQueue.concurrentPerform(iterations: 2) { d in
                                if d == 0 { direction(forward, reverse: false, xs, out: fo, step: step) }
                                else { direction(backward, reverse: true, xs, out: bo, step: step) }
                            }
                        } else {
                            direction(forward, reverse: false, xs, out: fo, step: step)
                            direction(backward, reverse: true, xs, out: bo, step: step)
                        }
                    }
                }
            }
        }

        switch kernel {
        case .direct:
            let rows = Int32(g.height), shape = planes
            both { w, x, hp, c, h, _ in
                var s = shape
                cik_direct_step(&s, w.packed, w.bias, x, hp, c, h, 0, rows)
            }
        case .winograd, .winograd2:
            let shape = wino
            both { w, x, hp, c, h, work in
                var s = shape
                cik_wino_step(&s, w.packed, w.bias, x, hp, c, h, work)
            }
        default:
            both { w, x, hp, c, h, work in im2colStep(w, x, hp, c, h, work, grid: g) }
        }
        cik_add(&fwdOut, bwdOut, fwdOut.count)
        pool.give(bwdOut)
        return FeatureMaps(layout: layout, steps: steps, channels: f, data: fwdOut)
    }

    /// A step's work: the weights, x_t, h_{t−1}, c (updated), h_t (written), scratch.
    typealias Step = @Sendable (LSTMDirection, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>,
                                UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void

    /// One im2col step: [im2col(x_t) | im2col(h_{t−1})] · [W_x; W_h] → z (N × 4f), then the cell.
    private func im2colStep(_ w: LSTMDirection, _ x: UnsafePointer<Float>, _ hp: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                            _ h: UnsafeMutablePointer<Float>, _ work: UnsafeMutablePointer<Float>, grid g: Grid) {
        let N = g.count, f4 = 4 * filters, ld = kx + kh
        let col = work, z = work + N * ld
        im2col(x, channels: inChannels, grid: g, k: kernelX, dims: dims, col: col, ld: ld, offset: 0, rows: 0..<N)
        im2col(hp, channels: filters, grid: g, k: kernelH, dims: dims, col: col, ld: ld, offset: kx, rows: 0..<N)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(N), Int32(f4), Int32(ld),
                    1, col, Int32(ld), w.weights, Int32(f4), 0, z, Int32(f4))
        cik_gates(z, w.bias, c, h, N, Int32(filters))
    }
}

/// The head: a k×k(×k) convolution with identity (or ReLU) activation.
struct ConvHead: Sendable {
    let dims: Int, inChannels: Int, outChannels: Int, kernel: Int
    let weights: [Float]   // k^d·C_in × C_out
    let bias: [Float]
    let relu: Bool

    var flopsPerVoxel: Double { 2 * Double(Int(pow(Double(kernel), Double(dims))) * inChannels * outChannels) }

    /// N × C_in → N × C_out.
    func run(_ input: [Float], grid g: Grid) -> [Float] {
        let N = g.count, K = Int(pow(Double(kernel), Double(dims))) * inChannels
        var out = [Float](repeating: 0, count: N * outChannels)
        var col = [Float](repeating: 0, count: N * K)
        input.withUnsafeBufferPointer { x in
            col.withUnsafeMutableBufferPointer { cb in
                im2col(x.baseAddress!, channels: inChannels, grid: g, k: kernel, dims: dims, col: cb.baseAddress!, ld: K, offset: 0, rows: 0..<N)
            }
        }
        for n in 0..<N { for o in 0..<outChannels { out[n * outChannels + o] = bias[o] } }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(N), Int32(outChannels), Int32(K),
                    1, col, Int32(K), weights, Int32(outChannels), 1, &out, Int32(outChannels))
        if relu { for i in 0..<out.count where out[i] < 0 { out[i] = 0 } }
        return out
    }
}
