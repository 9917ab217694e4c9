import Foundation
import Inference
import Testing

/// The direct and Winograd kernels against the im2col + sgemm path on random 2D models:
/// odd sizes and edges (maps narrower than a vector or a tile, one row, one column), both
/// directions (every layer is bidirectional), return_sequences both ways, kernels 1, 3 and 5,
/// filter counts that leave partial vectors and register blocks, at every instruction set the
/// CPU has. Tolerance: max |kernel − im2col| ≤ 2e-5 · max |im2col| for the direct kernel and
/// F(2×2, 3×3) (two float summation orders), 5e-5 for F(4×4, 3×3) (its transforms scale by up
/// to 8); the parity tolerance against Keras is 1e-4.
@Suite(.serialized) struct KernelTests {
    struct Net: CustomStringConvertible {
        var cin = 1
        var filters: [Int]
        var kx = 3
        var kh = 3
        var lastSeq: Bool
        var T: Int
        var description: String { "f \(filters) k \(kx)/\(kh) T \(T) seq \(lastSeq)" }
    }

    static let nets: [Net] = [
        Net(filters: [6, 6], lastSeq: false, T: 4),             // the shipped models' shape
        Net(filters: [4, 4], lastSeq: true, T: 3),
        Net(filters: [8], lastSeq: false, T: 1),
        Net(filters: [16, 16], lastSeq: false, T: 5),
        Net(filters: [20], lastSeq: true, T: 2),                // 4f = 80: partial groups and blocks
        Net(filters: [28, 12], lastSeq: false, T: 3),
        Net(filters: [32, 32], lastSeq: false, T: 3),           // benchmark (a)'s layers
        Net(filters: [5, 3], kx: 1, kh: 3, lastSeq: true, T: 3),
        Net(filters: [3], kx: 5, kh: 3, lastSeq: false, T: 4),
        Net(filters: [12], kx: 3, kh: 1, lastSeq: false, T: 3),
    ]
    static let sizes = [[13, 21], [1, 7], [7, 1], [16, 16], [3, 40], [2, 17]]

    /// A deterministic uniform stream in [−1, 1).
    struct Random {
        var state: UInt64
        mutating func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
        mutating func tensor(_ shape: [Int], scale: Float) -> Tensor {
            Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in next() * scale })
        }
    }

    static func spec(_ n: Net) throws -> ModelSpec {
        var layers = n.filters.enumerated().map { i, f in
            "{\"type\": \"bclstm\", \"filters\": \(f), \"kernel_x\": \(n.kx), \"kernel_h\": \(n.kh), \"return_sequences\": \(i < n.filters.count - 1 || n.lastSeq)}"
        }
        layers.append("{\"type\": \"conv\", \"filters\": 2, \"kernel\": 1}")
        let json = "{\"name\": \"t\", \"version\": \"0\", \"task\": \"test\", \"spatial_dims\": 2, \"layers\": [\(layers.joined(separator: ", "))]}"
        return try JSONDecoder().decode(ModelSpec.self, from: Data(json.utf8))
    }

    static func weights(_ n: Net, seed: UInt64) -> SafeTensors {
        var r = Random(state: seed), t: [String: Tensor] = [:], c = n.cin
        for (i, f) in n.filters.enumerated() {
            for d in ["forward", "backward"] {
                let fanIn = Float(n.kx * n.kx * c + n.kh * n.kh * f)
                t["layers.\(i).\(d).kernel"] = r.tensor([n.kx, n.kx, c, 4 * f], scale: 2 / fanIn.squareRoot())
                t["layers.\(i).\(d).recurrent_kernel"] = r.tensor([n.kh, n.kh, f, 4 * f], scale: 2 / fanIn.squareRoot())
                t["layers.\(i).\(d).bias"] = r.tensor([4 * f], scale: 0.5)
            }
            c = f
        }
        t["layers.\(n.filters.count).kernel"] = r.tensor([1, 1, c, 2], scale: 1)
        t["layers.\(n.filters.count).bias"] = r.tensor([2], scale: 0.5)
        return SafeTensors(tensors: t)
    }

    /// max |kernel − im2col| / max |im2col| over the nets and sizes the kernel applies to.
    func worstError(_ kernel: ConvKernel) throws -> (Double, Int) {
        var worst = 0.0, cases = 0
        for (i, n) in Self.nets.enumerated() {
            let spec = try Self.spec(n), w = Self.weights(n, seed: UInt64(i + 1))
            guard let m = try? ConvLSTMModel(spec: spec, weights: w, kernel: kernel) else { continue }
            let reference = try ConvLSTMModel(spec: spec, weights: w, kernel: .im2col)
            for (j, size) in Self.sizes.enumerated() {
                var r = Random(state: UInt64(100 * i + j))
                let x = r.tensor([n.T] + size, scale: 1)
                let want = try reference.run(x), got = try m.run(x)
                #expect(got.shape == want.shape)
                let scale = want.data.map { abs($0) }.max()!
                let err = zip(got.data, want.data).map { abs($0 - $1) }.max()!
                #expect(err <= (kernel == .winograd ? 5e-5 : 2e-5) * scale, "\(kernel) \(n) size \(size) ISA \(KernelISA.name): error \(err), max |y| \(scale)")
                worst = max(worst, Double(err / scale))
                cases += 1
            }
        }
        return (worst, cases)
    }

    @Test(arguments: [ConvKernel.direct, .winograd, .winograd2])
    func kernelMatchesIm2col(_ kernel: ConvKernel) throws {
        let cpu = KernelISA.level
        defer { KernelISA.cap(nil) }
        for level in stride(from: cpu, through: 0, by: -1) {
            #expect(KernelISA.cap(level) == level)
            let (worst, cases) = try worstError(kernel)
            #expect(cases == (kernel == .direct ? 60 : 42))
            print("\(kernel) at \(KernelISA.name): \(cases) cases, worst relative error \(worst)")
        }
    }

    @Test func autoPicksByShape() throws {
        func kernel(_ n: Net) throws -> String {
            let m = try ConvLSTMModel(spec: try Self.spec(n), weights: Self.weights(n, seed: 1))
            return String(m.describe().split(separator: "\n")[1].split(separator: "(").last!.dropLast())
        }
        #expect(try kernel(Net(filters: [6], lastSeq: false, T: 2)) == "direct kernel")
        #expect(try kernel(Net(filters: [8], lastSeq: false, T: 2)) == "winograd kernel")
        #expect(try kernel(Net(filters: [10], lastSeq: false, T: 2)) == "direct kernel")
        #expect(try kernel(Net(filters: [18], lastSeq: false, T: 2)) == "winograd kernel")
        #expect(try kernel(Net(filters: [32], lastSeq: false, T: 2)) == "winograd kernel")
        #expect(try kernel(Net(filters: [16], kx: 1, kh: 3, lastSeq: false, T: 2)) == "direct kernel")
        let n = Net(filters: [6], kx: 1, kh: 3, lastSeq: false, T: 2)
        #expect(throws: InferenceError.self) {
            try ConvLSTMModel(spec: try Self.spec(n), weights: Self.weights(n, seed: 1), kernel: .winograd)
        }
    }
}
