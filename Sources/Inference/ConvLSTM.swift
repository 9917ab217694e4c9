internal import COpenBLAS
import Foundation

/// One direction of a convolutional LSTM layer: the x and h convolutions of all four gates
/// as one GEMM per time step, [im2col(x_t) | im2col(h_{t-1})] · [W_x; W_h].
struct LSTMDirection: Sendable {
    var weights: [Float]   // (Kx + Kh) × 4f, row-major
    var bias: [Float]      // 4f
}

/// A bidirectional ConvLSTM layer (Keras `Bidirectional(ConvLSTM{2,3}D(padding="same"),
/// merge_mode="sum")`): forward and backward outputs summed.
struct BCLSTMLayer: Sendable {
    let dims: Int, inChannels: Int, filters: Int, kernelX: Int, kernelH: Int
    let returnSequences: Bool
    let forward: LSTMDirection, backward: LSTMDirection

    var kx: Int { Int(pow(Double(kernelX), Double(dims))) * inChannels }
    var kh: Int { Int(pow(Double(kernelH), Double(dims))) * filters }

    /// FLOPs per voxel per time step (both directions).
    var flopsPerVoxelStep: Double { 2 * 2 * Double(kx + kh) * Double(4 * filters) }

    /// Runs the layer over `T` steps of `input` (T × N × C_in, channels-last). Returns
    /// T × N × f when returning sequences, else N × f. `threads`: 2 runs the directions
    /// side by side with one BLAS thread each.
    func run(_ input: UnsafeBufferPointer<Float>, steps T: Int, grid g: Grid, threads: Int) -> [Float] {
        let N = g.count, f = filters
        let outCount = returnSequences ? T * N * f : N * f
        var fwdOut = [Float](repeating: 0, count: outCount)
        var bwdOut = [Float](repeating: 0, count: outCount)
        if threads >= 2 {
            openblas_set_num_threads(1)
            fwdOut.withUnsafeMutableBufferPointer { fo in
                bwdOut.withUnsafeMutableBufferPointer { bo in
                    // The two directions read the same input and write disjoint outputs.
                    nonisolated(unsafe) let fo = fo, bo = bo, input = input
                    DispatchQueue.concurrentPerform(iterations: 2) { d in
                        if d == 0 { direction(forward, reverse: false, input, T, g, out: fo) }
                        else { direction(backward, reverse: true, input, T, g, out: bo) }
                    }
                }
            }
            openblas_set_num_threads(Int32(threads))
        } else {
            fwdOut.withUnsafeMutableBufferPointer { direction(forward, reverse: false, input, T, g, out: $0) }
            bwdOut.withUnsafeMutableBufferPointer { direction(backward, reverse: true, input, T, g, out: $0) }
        }
        for i in 0..<outCount { fwdOut[i] += bwdOut[i] }
        return fwdOut
    }

    /// One pass over time. All buffers are allocated here, before the loop.
    private func direction(_ w: LSTMDirection, reverse: Bool, _ input: UnsafeBufferPointer<Float>, _ T: Int, _ g: Grid,
                           out: UnsafeMutableBufferPointer<Float>) {
        let N = g.count, f = filters, f4 = 4 * f
        let ld = kx + kh
        let col = UnsafeMutablePointer<Float>.allocate(capacity: N * ld)
        let z = UnsafeMutablePointer<Float>.allocate(capacity: N * f4)
        let h = UnsafeMutablePointer<Float>.allocate(capacity: N * f)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: N * f)
        defer { col.deallocate(); z.deallocate(); h.deallocate(); c.deallocate() }
        h.initialize(repeating: 0, count: N * f)
        c.initialize(repeating: 0, count: N * f)
        w.weights.withUnsafeBufferPointer { W in
            w.bias.withUnsafeBufferPointer { b in
                for step in 0..<T {
                    let t = reverse ? T - 1 - step : step
                    let x = input.baseAddress! + t * N * inChannels
                    im2col(x, channels: inChannels, grid: g, k: kernelX, dims: dims, col: col, ld: ld, offset: 0, rows: 0..<N)
                    im2col(h, channels: f, grid: g, k: kernelH, dims: dims, col: col, ld: ld, offset: kx, rows: 0..<N)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(N), Int32(f4), Int32(ld),
                                1, col, Int32(ld), W.baseAddress, Int32(f4), 0, z, Int32(f4))

                    // Gates i, f, c, o (Keras order): c = f·c + i·tanh(g), h = o·tanh(c);
                    // eight filters at a time when f allows, else scalar libm.
                    if f % 8 == 0 {
                        let bp = b.baseAddress!
                        for n in 0..<N {
                            let zr = z + n * f4, cr = c + n * f, hr = h + n * f
                            var j = 0
                            while j < f {
                                let zi = load8(zr + j) + load8(bp + j)
                                let zf = load8(zr + f + j) + load8(bp + f + j)
                                let zg = load8(zr + 2 * f + j) + load8(bp + 2 * f + j)
                                let zo = load8(zr + 3 * f + j) + load8(bp + 3 * f + j)
                                let cn = fastSigmoid(zf) * load8(cr + j) + fastSigmoid(zi) * fastTanh(zg)
                                let hn = fastSigmoid(zo) * fastTanh(cn)
                                store8(cn, cr + j)
                                store8(hn, hr + j)
                                j += 8
                            }
                        }
                    } else {
                        // Other filter counts: eight voxels at a time for one filter
                        // (strided gathers, vector maths), the last N mod 8 voxels scalar.
                        let bp = b.baseAddress!
                        var n0 = 0
                        while n0 + 8 <= N {
                            for j in 0..<f {
                                var zi = V8(), zf = V8(), zg = V8(), zo = V8(), cp = V8()
                                for k in 0..<8 {
                                    let zr = z + (n0 + k) * f4
                                    zi[k] = zr[j]; zf[k] = zr[f + j]; zg[k] = zr[2 * f + j]; zo[k] = zr[3 * f + j]
                                    cp[k] = c[(n0 + k) * f + j]
                                }
                                let cn = fastSigmoid(zf + bp[f + j]) * cp + fastSigmoid(zi + bp[j]) * fastTanh(zg + bp[2 * f + j])
                                let hn = fastSigmoid(zo + bp[3 * f + j]) * fastTanh(cn)
                                for k in 0..<8 { c[(n0 + k) * f + j] = cn[k]; h[(n0 + k) * f + j] = hn[k] }
                            }
                            n0 += 8
                        }
                        for n in n0..<N {
                            let zr = z + n * f4, cr = c + n * f, hr = h + n * f
                            for j in 0..<f {
                                let ig = sigmoid(zr[j] + b[j])
                                let fg = sigmoid(zr[f + j] + b[f + j])
                                let gg = tanhf(zr[2 * f + j] + b[2 * f + j])
                                let og = sigmoid(zr[3 * f + j] + b[3 * f + j])
                                let cn = fg * cr[j] + ig * gg
                                cr[j] = cn
                                hr[j] = og * tanhf(cn)
                            }
                        }
                    }
                    if returnSequences {
                        (out.baseAddress! + t * N * f).update(from: h, count: N * f)
                    }
                }
            }
        }
        if !returnSequences { out.baseAddress!.update(from: h, count: N * f) }
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
