import ArgumentParser
import DICOM
import Foundation
import JobStore
import Logging
import Inference

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Run or describe a ConvLSTM model directory (model.json + weights.safetensors).",
        subcommands: [ModelRun.self, ModelInfo.self, ModelSgemm.self])
}

struct ModelRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the raw network (no pre/post-processing) on a float32 .npy: (T, H, W) or (T, D, H, W) in (a model with C > 1 input channels: (T, …, C)), (C, …) out.")
    @Argument(help: "Model directory.") var model: String
    @Option(help: "Input .npy (float32).") var input: String
    @Option(help: "Output .npy.") var output: String
    @Option(help: "Threads (BLAS and directions).") var threads = 2
    @Option(help: "Compute in tiles of this many voxels per spatial axis (bounded memory).") var tile: Int?
    @Option(help: "Halo around each tile (default: the exact halo, so tiled equals untiled).") var halo: Int?
    @Option(help: "Convolution kernel of the recurrent layers: auto, im2col, direct, winograd (F(4×4, 3×3)) or winograd2 (F(2×2, 3×3)); for comparisons.") var kernel = "auto"

    func run() throws {
        guard let k = ConvKernel(rawValue: kernel) else {
            throw CLIError("--kernel: \(ConvKernel.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        do {
            let m = try ConvLSTMModel(directory: model, threads: threads, kernel: k)
            let x = try NPY.read(input)
            let start = Date()
            let y: Tensor
            if let tile {
                // (T, spatial…) or, with C > 1 input channels, (T, spatial…, C).
                try m.checkInput(shape: x.shape)
                let C = m.inputChannels
                let spatial = Array(x.shape.dropFirst().prefix(m.spec.spatialDims)), T = x.shape[0]
                y = try m.runTiled(shape: spatial, timepoints: T, tile: tile, halo: halo, read: { origin, size in
                    // Gather the box from the (T, spatial…[, C]) array.
                    var out: [Float] = []
                    out.reserveCapacity(T * size.reduce(1, *) * C)
                    let inner = size.last!, boxRows = size.dropLast().reduce(1, *)
                    for t in 0..<T {
                        for r in 0..<boxRows {
                            var rem = r, offset = 0, step = spatial.last!
                            for a in Swift.stride(from: spatial.count - 2, through: 0, by: -1) {
                                offset += (origin[a] + rem % size[a]) * step
                                rem /= size[a]
                                step *= spatial[a]
                            }
                            let base = t * spatial.reduce(1, *) + offset + origin.last!
                            out.append(contentsOf: x.data[(base * C)..<((base + inner) * C)])
                        }
                    }
                    return out
                })
            } else {
                y = try m.run(x)
            }
            let seconds = Date().timeIntervalSince(start)
            try NPY.write(y, to: output)
            let voxels = Double(x.shape.dropFirst().prefix(m.spec.spatialDims).reduce(1, *))
            let gflops = m.flopsPerVoxel(timepoints: x.shape[0]) * voxels / seconds / 1e9
            // Nominal rate: the direct convolution's FLOPs over the time, whatever the kernel did.
            FileHandle.standardError.write(Data(String(format: "%@ → %@ in %.3f s (%.1f GFLOP/s)\n", "\(x.shape)", "\(y.shape)", seconds, gflops).utf8))
        } catch {
            throw CLIError("\(error)")
        }
    }
}

struct ModelInfo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Print the architecture, parameter count and FLOPs per voxel.")
    @Argument(help: "Model directory.") var model: String
    @Option(help: "Time points for the FLOP count (default: what the model was trained on).") var timepoints: Int?

    func run() throws {
        do { print(try ConvLSTMModel(directory: model, threads: 1).describe(timepoints: timepoints)) } catch { throw CLIError("\(error)") }
    }
}

struct ModelSgemm: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sgemm", abstract: "Measure OpenBLAS sgemm GFLOP/s on a ConvLSTM-step shape (for benchmarks).")
    @Option(help: "Rows (voxels).") var m = 65536
    @Option(help: "Columns (4f).") var n = 128
    @Option(help: "Inner dimension (k^d·(C_in+f)).") var k = 576
    @Option(help: "Threads.") var threads = 2
    func run() throws {
        print(String(format: "sgemm %dx%dx%d, %d threads: %.1f GFLOP/s", m, n, k, threads, SgemmBenchmark.gflops(m: m, n: n, k: k, threads: threads)))
    }
}
