import Foundation
import Inference
import Perfusion
import Volume

/// `ncct` and `perfusion`: a stacked bidirectional ConvLSTM (van de Leemput et al. 2020)
/// from a model directory, run slice by slice (2D) over the registered series in tiles with
/// the exact halo; tiles with nothing but air are skipped.
///
/// `ncct`: input HU scaled by the model's input normalisation, the series' own frames (any
/// count; the default model was trained on 19); with `residual_mean_frames` N in model.json
/// the output is a correction to the mean of frames 0…N−1 (the shipped model: N = 4). `perfusion`: the arterial-aligned ΔHU input
/// of `PerfusionInput` (always 19 frames on a 2 s grid; with model.json `"preprocessing":
/// "aif-aligned-delta-hu+aif"` a second channel carries the arterial curve); outputs CBF,
/// CBV, MTT, Tmax, and core/penumbra volumes by the same clinical rules as perfusion-svd.
public struct CLSTMPipeline: Pipeline {
    /// `.ncct` or `.perfusion`.
    public let kind: PipelineKind
    public var name: String { kind.rawValue }
    public let directory: String
    public let model: ConvLSTMModel
    /// Tile edge in voxels (the halo comes on top); bounds memory per tile.
    public var tile = 512
    public var options = PerfusionOptions()

    public init(kind: PipelineKind, model explicit: String? = nil, threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws {
        guard kind.isLearned else { throw PipelineError(message: "pipeline \"\(kind.rawValue)\" is not a learned pipeline") }
        self.kind = kind
        directory = try ModelLocator.locate(pipeline: kind.rawValue, explicit: explicit)
        model = try ModelLocator.load(pipeline: kind.rawValue, directory: directory, threads: threads)
    }

    /// The pipeline named `name` ("ncct" or "perfusion").
    public init(name: String, model explicit: String? = nil, threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws {
        try self.init(kind: PipelineKind(named: name), model: explicit, threads: threads)
    }

    public var modelInfo: Report.Model { .init(name: model.spec.name, version: model.spec.version) }

    public func run(_ series: Series4D, progress: @Sendable (Double) -> Void) throws -> [QuantitativeVolume] {
        try runWithSummary(series, progress: progress).volumes
    }

    public func runWithSummary(_ s: Series4D, progress: @Sendable (Double) -> Void) throws -> PipelineOutput {
        kind == .ncct ? try runNCCT(s, progress: progress) : try runPerfusion(s, progress: progress)
    }

    func runNCCT(_ s: Series4D, progress: @Sendable (Double) -> Void) throws -> PipelineOutput {
        let norm = model.spec.inputNormalisation!
        let off = Float(norm.offset), inv = 1 / Float(norm.scale)
        let input = s.voxels.map { ($0 + off) * inv }
        let n = s.frameSize
        // Head: anything denser than air at the first time point.
        let head = (0..<n).map { s.voxels[$0] > -500 }
        // A residual model corrects the mean of the first frames (air tiles: no correction).
        let residual = model.spec.residualMeanFrames.map { min(max($0, 1), s.timepoints) }
        var maps = try infer(input: input, timepoints: s.timepoints, mask: head, series: s, airValue: residual == nil ? -1000 : 0, progress: progress)
        if let frames = residual {
            s.voxels.withUnsafeBufferPointer { v in
                for t in 0..<frames { for i in 0..<n { maps[0][i] += v[t * n + i] / Float(frames) } }
            }
        }
        let vol = Volume3D(depth: s.depth, height: s.height, width: s.width, voxels: maps[0], geometry: s.geometry)
        return PipelineOutput(volumes: [QuantitativeVolume(name: "ncct", unit: "HU", volume: vol)],
                              summary: ["model": .text("\(model.spec.name) \(model.spec.version)"), "timepoints": .number(Double(s.timepoints))])
    }

    func runPerfusion(_ s: Series4D, progress: @Sendable (Double) -> Void) throws -> PipelineOutput {
        // A series finer than the training data is analysed on blocks of about the training
        // pixel size (model.json "pixel_mm"), and the maps come back to the series' grid.
        let pixel = min(s.geometry.rowSpacing, s.geometry.columnSpacing)
        if let mm = model.spec.pixelMM, case let f = Int((mm / pixel).rounded()), f > 1, s.height >= 2 * f, s.width >= 2 * f {
            let small = s.blockAveraged(f)
            var out = try runPerfusion(small, progress: progress)
            out.volumes = out.volumes.map { q in
                QuantitativeVolume(name: q.name, unit: q.unit, volume: q.volume.blockExpanded(f, to: s))
            }
            for key in ["aif_voxels_zyx", "vof_voxels_zyx"] {
                if case .table(let rows)? = out.summary[key] {
                    out.summary[key] = .table(rows.map { r in
                        let c = s.blockCentre(z: Int(r[0]), y: Int(r[1]), x: Int(r[2]), factor: f)
                        return [Double(c.x), Double(c.y), Double(c.z)]
                    })
                }
            }
            out.lesion = out.lesion?.blockExpanded(f, to: s)
            if var a = out.arterialInput {
                func back(_ v: [Int]) -> [Int] { let c = s.blockCentre(z: v[0], y: v[1], x: v[2], factor: f); return [c.x, c.y, c.z] }
                a.aifVoxelsZYX = a.aifVoxelsZYX.map(back); a.vofVoxelsZYX = a.vofVoxelsZYX.map(back)
                a.rejected = a.rejected.map { var r = $0; r.zyx = back(r.zyx); return r }
                out.arterialInput = a
            }
            out.summary["analysis_pixel_mm"] = .number(LesionSummary.round(pixel * Double(f)))
            return out
        }
        let p = try PerfusionInput(s, preprocessing: model.spec.preprocessing)
        var maps = try infer(input: p.input, arterial: p.arterial, timepoints: PerfusionInput.frames, mask: p.soft, series: s,
                             airValue: 0, progress: progress)
        // Flows, volumes and times are not negative; outside soft tissue there is no perfusion.
        for c in maps.indices { for i in maps[c].indices { maps[c][i] = p.soft[i] ? max(0, maps[c][i]) : 0 } }
        let outputs = model.spec.outputs!
        let volumes = zip(outputs, maps).map { o, m in
            QuantitativeVolume(name: o.name, unit: o.unit, volume: Volume3D(depth: s.depth, height: s.height, width: s.width, voxels: m, geometry: s.geometry))
        }
        let sp = s.geometry.spacing
        // CSF out of the lesion rule as in perfusion-svd (LesionVolumes.parenchyma).
        let tissue = LesionVolumes.parenchyma(baseline: p.baseline, mask: p.parenchyma(depth: s.depth, height: s.height, width: s.width),
                                              depth: s.depth, height: s.height, width: s.width, pixelMM: min(sp.y, sp.z))
        let v = LesionVolumes(cbf: maps[0], tmax: maps[3], tissue: tissue, depth: s.depth, height: s.height, width: s.width,
                              voxelML: sp.x * sp.y * sp.z / 1000, relativeCBF: options.coreRelativeCBF,
                              tmaxThreshold: options.penumbraTmax, minML: options.minLesionML)
        let round = LesionSummary.round
        let plane = s.height * s.width
        let extra: [String: SummaryValue] = [
            "model": .text("\(model.spec.name) \(model.spec.version)"),
            "aif_voxels_zyx": .table(p.aifVoxels.map { [Double($0 / plane), Double($0 % plane / s.width), Double($0 % s.width)] }),
            "aif_delta_hu": .numbers(p.aif.map { round($0, 10) }), "curve_times_s": .numbers(s.frameTimes.map { round($0, 1000) }),
            "aif_arrival_s": .number(round(p.arrival, 1000)), "aif_peak_delta_hu": .number(round(p.aifPeak, 10)),
        ]
        var summary = LesionSummary.entries(v, options: options).merging(extra) { $1 }
        // The venous output, for the page the stroke team reads (the network needs none):
        // perfusion-svd's selection (ArterialInput) on ΔHU against frames 0–1 at the series'
        // own frame times. No vein found (a slab without the sinus) leaves it out.
        if let venous = Self.venousOutput(s, baseline: p.baseline, inside: p.soft, noise: p.noiseHU), !venous.vofVoxels.isEmpty {
            summary["vof_delta_hu"] = .numbers(venous.vof.map { round($0, 10) })
            summary["vof_voxels_zyx"] = .table(venous.vofVoxels.map { [Double($0 / plane), Double($0 % plane / s.width), Double($0 % s.width)] })
        }
        let lesion = Volume3D(depth: s.depth, height: s.height, width: s.width,
                              voxels: zip(v.core, v.hypoperfused).map { $0 ? 1 : ($1 ? 2 : 0) }, geometry: s.geometry)
        func zyx(_ i: Int) -> [Int] { [i / plane, i % plane / s.width, i % s.width] }
        let selection = ArterialInputReport(
            method: "perfusion (C-LSTM): mean of the \(p.aifVoxels.count) soft-tissue voxels with the highest peaks (as in training), vessel-like ones only when plausible; VOF by perfusion-svd's selection",
            aif: p.aifVoxels.map(zyx), vof: summary["vof_voxels_zyx"].flatMap { if case .table(let t) = $0 { return t.map { $0.map { Int($0) } } }; return nil } ?? [],
            screened: p.screened, rejected: p.rejected.map { RejectedCandidate(zyx: zyx($0.voxel), rule: $0.rule, reason: $0.reason) })
        return PipelineOutput(volumes: volumes, summary: summary, lesion: lesion, arterialInput: selection)
    }

    static func venousOutput(_ s: Series4D, baseline: [Float], inside: [Bool], noise: Double) -> ArterialInput? {
        let n = s.frameSize, T = s.timepoints
        var delta = [Float](repeating: 0, count: T * n)
        s.voxels.withUnsafeBufferPointer { v in
            for i in 0..<n { for t in 0..<T { delta[t * n + i] = v[t * n + i] - baseline[i] } }
        }
        return try? ArterialInput.select(delta: delta, samples: T, frame: n, inside: inside, slices: s.depth,
                                         plausibility: .init(valid: s.validity, baseline: baseline, noiseHU: noise))
    }

    /// Runs the network over every slice of `input` ((T, D, H, W), normalised) and returns one
    /// de-normalised map per output; tiles whose core misses `mask` get `airValue`. With
    /// `arterial` ((T)), the network's input has a second channel holding arterial[t] at
    /// every voxel.
    func infer(input: [Float], arterial: [Float]? = nil, timepoints T: Int, mask: [Bool], series s: Series4D, airValue: Float,
               progress: @Sendable (Double) -> Void) throws -> [[Float]] {
        let H = s.height, W = s.width, plane = H * W, n = s.frameSize
        let outputs = model.spec.outputs!
        var maps = outputs.map { _ in [Float](repeating: 0, count: n) }
        // Skipped tiles come back as NaN, which becomes `airValue` below.
        let fill = Float.nan
        let C = arterial == nil ? 1 : 2
        // Per slice, only the box around the mask plus the network's exact halo is computed:
        // every masked voxel sees the same input as in a whole-slice run, and voxels outside
        // the box (air) get `airValue`.
        let halo = model.halo(timepoints: T)
        for z in 0..<s.depth {
            defer { progress(Double(z + 1) / Double(s.depth)) }
            var y0 = H, y1 = -1, x0 = W, x1 = -1
            for yy in 0..<H { for xx in 0..<W where mask[z * plane + yy * W + xx] {
                y0 = min(y0, yy); y1 = max(y1, yy); x0 = min(x0, xx); x1 = max(x1, xx)
            } }
            for c in outputs.indices { for i in 0..<plane { maps[c][z * plane + i] = airValue } }
            guard y1 >= 0 else { continue }
            let oy = max(0, y0 - halo), ox = max(0, x0 - halo)
            let bh = min(H, y1 + 1 + halo) - oy, bw = min(W, x1 + 1 + halo) - ox
            let y = try model.runTiled(shape: [bh, bw], timepoints: T, tile: tile, fill: fill, read: { origin, size in
                var box = [Float](repeating: 0, count: T * size[0] * size[1] * C)
                var k = 0
                for t in 0..<T { for yy in (oy + origin[0])..<(oy + origin[0] + size[0]) {
                    let row = t * n + z * plane + yy * W + ox + origin[1]
                    if let arterial {   // channels last: (tissue, arterial) per voxel
                        for xx in 0..<size[1] { box[k] = input[row + xx]; box[k + 1] = arterial[t]; k += 2 }
                    } else {
                        for xx in 0..<size[1] { box[k] = input[row + xx]; k += 1 }
                    }
                } }
                return box
            }, mask: { origin, size in
                for yy in (oy + origin[0])..<(oy + origin[0] + size[0]) {
                    let row = z * plane + yy * W + ox
                    for xx in origin[1]..<(origin[1] + size[1]) where mask[row + xx] { return true }
                }
                return false
            })
            let bn = bh * bw
            for (c, o) in outputs.enumerated() {
                for yy in 0..<bh { for xx in 0..<bw {
                    let raw = y.data[c * bn + yy * bw + xx]
                    maps[c][z * plane + (oy + yy) * W + ox + xx] = raw.isNaN ? airValue : o.value(raw)
                } }
            }
        }
        // A model whose output mapping overflows (model.json scale/offset, an exp of a large
        // output) would write inf/NaN maps and read no lesion at all: fail the job instead.
        for (c, o) in outputs.enumerated() where maps[c].contains(where: { !$0.isFinite }) {
            throw PipelineError(message: "model \(model.spec.name) \(model.spec.version) gave non-finite \(o.name) values; check its outputs' scale and offset in model.json")
        }
        return maps
    }
}
