import Foundation
import Inference
import PerfdTestSupport
import Testing

/// Tiled inference with the exact halo must reproduce untiled inference.
@Suite struct TilingTests {
    func model(_ name: String) throws -> ConvLSTMModel {
        try ConvLSTMModel(directory: ParityTests.cases.dir.path + "/" + name + "/model", threads: 2)
    }

    func randomInput(_ shape: [Int], seed: UInt64) -> Tensor {
        var state = seed
        let data = (0..<shape.reduce(1, *)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
        return Tensor(shape: shape, data: data)
    }

    /// Reads a box out of a (T, spatial…) tensor.
    func reader(_ x: Tensor) -> ([Int], [Int]) -> [Float] {
        { origin, size in
            let spatial = Array(x.shape.dropFirst()), T = x.shape[0]
            var out: [Float] = []
            out.reserveCapacity(T * size.reduce(1, *))
            for t in 0..<T {
                if spatial.count == 2 {
                    for y in 0..<size[0] { for xx in 0..<size[1] {
                        out.append(x.data[(t * spatial[0] + origin[0] + y) * spatial[1] + origin[1] + xx])
                    } }
                } else {
                    for z in 0..<size[0] { for y in 0..<size[1] { for xx in 0..<size[2] {
                        out.append(x.data[((t * spatial[0] + origin[0] + z) * spatial[1] + origin[1] + y) * spatial[2] + origin[2] + xx])
                    } } }
                }
            }
            return out
        }
    }

    @Test(arguments: ["keras-04-2d-K2-f4-k3-T3-seq", "keras-05-2d-K3-f16-k3-T11-last", "keras-06-3d-K1-f4-k3-T4-last"])
    func tiledEqualsUntiled(_ name: String) throws {
        let m = try model(name)
        let T = m.spec.timepoints ?? 3
        let shape = m.spec.spatialDims == 2 ? [41, 37] : [13, 12, 11]
        let x = randomInput([T] + shape, seed: 5)
        let whole = try m.run(x)
        let tiled = try m.runTiled(shape: shape, timepoints: T, tile: m.spec.spatialDims == 2 ? 16 : 5, read: reader(x))
        #expect(tiled.shape == whole.shape)
        let err = zip(tiled.data, whole.data).map { abs($0 - $1) }.max()!
        let scale = whole.data.map { abs($0) }.max()!
        #expect(err <= 1e-5 * scale, "\(name): tiled differs by \(err) (halo \(m.halo(timepoints: T)))")
    }

    @Test func maskedTilesAreSkippedAndFilled() throws {
        let m = try model("keras-00-2d-K1-f4-k3-T2-last")
        let x = randomInput([2, 32, 32], seed: 9)
        var computed = 0
        let y = try m.runTiled(shape: [32, 32], timepoints: 2, tile: 16, fill: -7, read: reader(x)) { origin, _ in
            computed += origin == [0, 0] ? 1 : 0
            return origin == [0, 0]
        }
        #expect(computed == 1)
        let whole = try m.run(x)
        // Top-left tile computed (and equal to untiled); everything else is the fill value.
        #expect(abs(y.data[0] - whole.data[0]) < 1e-5)
        #expect(y.data[31] == -7 && y.data[32 * 31] == -7)
        #expect(m.halo(timepoints: 19) == 1 + 18)
    }
}
