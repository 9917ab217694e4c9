internal import COpenBLAS
import Foundation

/// A model directory loaded for inference: model.json + weights.safetensors.
public final class ConvLSTMModel: Sendable {
    public let spec: ModelSpec
    let layers: [BCLSTMLayer]
    let head: ConvHead
    public let threads: Int
    /// Buffers reused from one `run` to the next.
    let pool = BufferPool()

    /// `kernel`: how the recurrent layers convolve (`auto`: the fastest that applies to each).
    public convenience init(directory: String, threads: Int = 2, kernel: ConvKernel = .auto) throws {
        let spec = try ModelSpec.load(directory + "/model.json")
        let weights = try SafeTensors(path: directory + "/weights.safetensors")
        try self.init(spec: spec, weights: weights, threads: threads, kernel: kernel)
    }

    public init(spec: ModelSpec, weights: SafeTensors, threads: Int = 2, kernel: ConvKernel = .auto) throws {
        self.spec = spec
        self.threads = max(1, threads)
        let d = spec.spatialDims
        guard d == 2 || d == 3 else { throw InferenceError("model.json: spatial_dims is \(d); 2 or 3 expected") }
        guard let last = spec.layers.last, last.type == "conv" else { throw InferenceError("model.json: the last layer must be the conv head") }
        let inputChannels = spec.inputChannels ?? 1
        guard inputChannels >= 1 else { throw InferenceError("model.json: input_channels is \(inputChannels); at least 1 expected") }
        for o in spec.outputs ?? [] where !(o.transform == nil || o.transform == "linear" || o.transform == "exp") {
            throw InferenceError("model.json: output \"\(o.name)\" has transform \"\(o.transform!)\"; linear or exp expected")
        }
        var channels = inputChannels
        var built: [BCLSTMLayer] = []
        for (i, l) in spec.layers.dropLast().enumerated() {
            guard l.type == "bclstm" else { throw InferenceError("model.json: layer \(i) is \"\(l.type)\"; only bclstm layers precede the head") }
            let kx = l.kernelX ?? 3, kh = l.kernelH ?? 3
            try Self.checkConvolution(kernels: [kx, kh], filters: l.filters, what: "layer \(i)")
            let rs = l.returnSequences ?? true
            if i < spec.layers.count - 2 && !rs {
                throw InferenceError("model.json: layer \(i) must return sequences: another bclstm layer follows it")
            }
            func dir(_ name: String) throws -> LSTMDirection {
                let p = "layers.\(i).\(name)."
                let k = try weights.tensor(p + "kernel", shape: Array(repeating: kx, count: d) + [channels, 4 * l.filters])
                let r = try weights.tensor(p + "recurrent_kernel", shape: Array(repeating: kh, count: d) + [l.filters, 4 * l.filters])
                let b = try weights.tensor(p + "bias", shape: [4 * l.filters])
                return LSTMDirection(weights: k.data + r.data, bias: b.data)
            }
            let k = try ConvKernel.resolve(kernel, dims: d, filters: l.filters, kernelX: kx, kernelH: kh)
            built.append(BCLSTMLayer(dims: d, inChannels: channels, filters: l.filters, kernelX: kx, kernelH: kh, returnSequences: rs,
                                     kernel: k, forward: try dir("forward"), backward: try dir("backward")))
            channels = l.filters
        }
        guard !built.isEmpty else { throw InferenceError("model.json: no bclstm layer") }
        let i = spec.layers.count - 1, k = last.kernel ?? 1
        try Self.checkConvolution(kernels: [k], filters: last.filters, what: "the head")
        for o in spec.outputs ?? [] where !(o.scale.isFinite && o.offset.isFinite && o.scale != 0) {
            throw InferenceError("model.json: output \"\(o.name)\" has scale \(o.scale) and offset \(o.offset); finite numbers, scale not 0, expected")
        }
        if let mm = spec.pixelMM, !(mm.isFinite && mm > 0 && mm < 100) {
            throw InferenceError("model.json: pixel_mm is \(mm); a pixel size in mm (0–100) expected")
        }
        let hk = try weights.tensor("layers.\(i).kernel", shape: Array(repeating: k, count: d) + [channels, last.filters])
        let hb = try weights.tensor("layers.\(i).bias", shape: [last.filters])
        let act = last.activation ?? "linear"
        guard act == "linear" || act == "relu" else { throw InferenceError("model.json: head activation \"\(act)\" is not supported (linear, relu)") }
        head = ConvHead(dims: d, inChannels: channels, outChannels: last.filters, kernel: k, weights: hk.data, bias: hb.data, relu: act == "relu")
        layers = built
    }

    /// Channels per voxel and time point of the input.
    public var inputChannels: Int { layers[0].inChannels }

    /// Whether the last recurrent layer returns a sequence (output then has a time axis).
    public var outputHasTime: Bool { layers.last!.returnSequences }
    public var parameterCount: Int {
        layers.reduce(0) { $0 + 2 * ($1.forward.weights.count + $1.forward.bias.count) } + head.weights.count + head.bias.count
    }

    /// FLOPs per voxel for a series of `timepoints`.
    public func flopsPerVoxel(timepoints T: Int) -> Double {
        layers.reduce(0) { $0 + $1.flopsPerVoxelStep * Double(T) } + head.flopsPerVoxel * Double(outputHasTime ? T : 1)
    }

    /// model.json sizes the engine can run: odd kernels of 1–15 ("same" padding) and 1–4096
    /// filters, for a bclstm layer or the head (`what` names it in the error).
    static func checkConvolution(kernels: [Int], filters: Int, what: String) throws {
        for k in kernels where k < 1 || k % 2 == 0 || k > 15 {
            throw InferenceError("model.json: \(what) has kernel \(k); \"same\" padding needs an odd kernel of 1–15")
        }
        guard (1...4096).contains(filters) else { throw InferenceError("model.json: \(what) has \(filters) filters; 1–4096 expected") }
    }

    /// Throws unless `shape` is an input this model takes: (T, spatial…) or, with C > 1 input
    /// channels, (T, spatial…, C), every size at least 1.
    public func checkInput(shape: [Int]) throws {
        let d = spec.spatialDims, cin = inputChannels
        let expected = d + (cin > 1 ? 2 : 1)
        guard shape.count == expected, cin == 1 || shape.last == cin else {
            let spatial = d == 2 ? "H, W" : "D, H, W"
            throw InferenceError("input has shape \(shape); a \(d)D model with \(cin) input channel\(cin > 1 ? "s" : "") takes (T, \(spatial)\(cin > 1 ? ", \(cin)" : ""))")
        }
        guard shape.allSatisfy({ $0 >= 1 }), checkedElementCount(shape) != nil else {
            throw InferenceError("input has shape \(shape); every size must be at least 1")
        }
    }

    /// The raw network on a normalised input: (T, H, W) or (T, D, H, W) → (C, …) or,
    /// when the last layer returns sequences, (T, C, …). A model with `input_channels` C > 1
    /// takes (T, H, W, C) or (T, D, H, W, C), channels last.
    public func run(_ input: Tensor) throws -> Tensor {
        let d = spec.spatialDims, cin = inputChannels
        try checkInput(shape: input.shape)
        guard checkedElementCount(input.shape) == input.data.count else {
            throw InferenceError("input has shape \(input.shape) but \(input.data.count) values")
        }
        let T = input.shape[0]
        let g = d == 2 ? Grid(depth: 1, height: input.shape[1], width: input.shape[2])
                       : Grid(depth: input.shape[1], height: input.shape[2], width: input.shape[3])
        // The engine's parallelism is its two directions, so BLAS runs one thread. OpenBLAS's
        // workers also spin for a while after each multi-threaded call, and in a slice-by-slice
        // run that spinning took a core from the next slice's kernels. Restored at the end.
        let blasThreads = openblas_get_num_threads()
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(blasThreads) }
        var maps = FeatureMaps(layout: .channelsLast, steps: T, channels: cin, data: input.data)
        for (i, l) in layers.enumerated() {
            let next = l.run(maps, grid: g, threads: threads, pool: pool)
            if i > 0 { pool.give(maps.data) }   // not the caller's input
            maps = next
        }
        let last = maps.converted(to: .channelsLast, grid: g, pool: pool)
        let x = last.data
        defer {
            pool.give(maps.data)
            if last.layout != maps.layout { pool.give(last.data) }
        }
        let steps = maps.steps, N = g.count, C = head.outChannels, f = layers.last!.filters
        var out = [Float](repeating: 0, count: steps * C * N)
        for t in 0..<steps {
            let y = Array(x[(t * N * f)..<((t + 1) * N * f)])
            let h = head.run(y, grid: g)
            // channels-last → channels-first
            for n in 0..<N { for c in 0..<C { out[(t * C + c) * N + n] = h[n * C + c] } }
        }
        let spatial = Array(input.shape.dropFirst().prefix(d))
        return Tensor(shape: (outputHasTime ? [steps] : []) + [C] + spatial, data: out)
    }

    /// A description for `perfd model info`.
    public func describe(timepoints: Int? = nil) -> String {
        let T = timepoints ?? spec.timepoints ?? 19
        var lines = ["\(spec.name) \(spec.version) — task \(spec.task), \(spec.spatialDims)D, trained on \(spec.timepoints.map(String.init) ?? "?") time points"]
        for (i, l) in layers.enumerated() {
            let k = { (k: Int) in Array(repeating: String(k), count: l.dims).joined(separator: "×") }
            lines.append("  layer \(i): bidirectional ConvLSTM, \(l.filters) filters, input kernel \(k(l.kernelX)), recurrent kernel \(k(l.kernelH)), in \(l.inChannels) channels, return_sequences \(l.returnSequences), merge sum (\(l.kernel.rawValue) kernel)")
        }
        lines.append("  head: conv \(Array(repeating: String(head.kernel), count: head.dims).joined(separator: "×")), \(head.inChannels) → \(head.outChannels) channels, \(head.relu ? "relu" : "identity")")
        if let p = spec.preprocessing { lines.append("  preprocessing: \(p)") }
        lines.append("  parameters: \(parameterCount); SIMD kernels: \(KernelISA.name)")
        lines.append(String(format: "  FLOPs per voxel at T=%d: %.0f (%.2f MFLOP)", T, flopsPerVoxel(timepoints: T), flopsPerVoxel(timepoints: T) / 1e6))
        if let n = spec.inputNormalisation { lines.append("  input: x' = (HU + \(n.offset)) / \(n.scale)") }
        for o in spec.outputs ?? [] {
            lines.append("  output \(o.name) [\(o.unit)] = \(o.transform == "exp" ? "exp(y')" : "y'") · \(o.scale) + \(o.offset)")
        }
        return lines.joined(separator: "\n")
    }
}
