import DICOM
import Foundation
import Registration
import Volume
import Synchronization

/// What a job may use of the machine's memory (`memory_limit_gb`), and the estimate of a
/// series' working set it is checked against before any pixel is decoded.
public struct MemoryBudget: Sendable, Equatable {
    public var limitGB: Double
    public init(limitGB: Double) { self.limitGB = limitGB }

    /// The default: three quarters of the machine's memory (the rest for the page cache, the
    /// SCP and the other services).
    public static var machineDefaultGB: Double {
        let gb = Double(ProcessInfo.processInfo.physicalMemory) / 1e9
        return gb > 0 ? (gb * 0.75 * 10).rounded(.down) / 10 : 4
    }

    /// Bytes the daemon holds besides the series: code, models, DCMTK, the SCP's buffers.
    static let fixedBytes = 450e6
    /// How many copies of the slab 4D series the pipelines may hold at their peak (the
    /// series, the perfusion pipelines' preprocessed curves and maps). Kept high on purpose:
    /// the estimate is an upper bound (3.9 GB for 512² × 320 × 25, where scripts/bench-scale
    /// measured 1.8–2.2 GB peak RSS).
    static let seriesCopies = 2.2

    /// The working set of a series of T time points × `native` slices of H×W analysed on
    /// `slabs`, with `workers` time points decoded and resampled at once.
    public static func estimateBytes(timepoints T: Int, height H: Int, width W: Int, slabs: SlabPlan, workers: Int) -> Double {
        let plane = Double(H * W) * 4
        let nativeFrame = Double(slabs.nativeDepth) * plane, slabFrame = Double(slabs.count) * plane
        let slab4D = Double(T) * slabFrame
        return fixedBytes + Double(workers) * (nativeFrame + 2 * slabFrame) + slab4D * (1 + seriesCopies)
    }
}

/// The register stage streamed by time point (docs/ARCHITECTURE.md "Bounded working set"):
/// time point 0 is decoded and averaged into the slab grid as the reference; then, for each
/// other time point, its slices are decoded, averaged into slabs (the reduced representation
/// the rigid transform is estimated from), the native frame is resampled through that
/// transform and averaged straight into the slab 4D series, and the native frame is dropped.
/// What stays resident: the reference slabs, one native frame per worker, the slab 4D.
public struct SeriesStream: Sendable {
    public let layout: Assembler.Layout
    public let slabs: SlabPlan
    public let workers: Int
    public let estimateBytes: Double
    public let height: Int, width: Int

    /// Plans the stream and checks it against the budget: with two workers if it fits,
    /// else one (a smaller piece in memory at a time), else it throws naming the size and
    /// the setting.
    public init(layout: Assembler.Layout, slabMM: Double, budget: MemoryBudget) throws {
        self.layout = layout
        let T = layout.grid.count, D = layout.grid[0].count
        height = layout.grid[0][0].rows; width = layout.grid[0][0].columns
        slabs = SlabPlan(nativeDepth: D, sliceSpacingMM: layout.geometry.sliceSpacing, slabMM: slabMM)
        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let limit = budget.limitGB * 1e9
        var chosen: (Int, Double)?
        for w in stride(from: min(2, cores, max(1, T - 1)), through: 1, by: -1) {
            let e = MemoryBudget.estimateBytes(timepoints: T, height: height, width: width, slabs: slabs, workers: w)
            if e <= limit { chosen = (w, e); break }
        }
        guard let (w, e) = chosen else {
            let need = MemoryBudget.estimateBytes(timepoints: T, height: height, width: width, slabs: slabs, workers: 1)
            throw AssemblyError(String(format: "the series (%d time points × %d slices of %d×%d, analysed as %d slabs of %.2f mm) needs about %.1f GB to process, more than memory_limit_gb = %g GB; raise memory_limit_gb (and the unit's MemoryMax=) or analyse thicker slabs (analysis_slab_mm)",
                                      T, D, width, height, slabs.count, layout.geometry.sliceSpacing * Double(slabs.factor), need / 1e9, budget.limitGB))
        }
        workers = w; estimateBytes = e
    }

    /// In-plane pyramid factors of the native refinement of a thin-slice transform (none:
    /// no refinement, transforms from the slabs alone).
    static let refinementLevels = [1]

    public var timepoints: Int { layout.grid.count }
    public var slabGeometry: Geometry { slabs.geometry(native: layout.geometry) }

    /// One time point's native frame, decoded with `threads` files at a time.
    func nativeFrame(_ t: Int, threads: Int, lossy: LossyBox) throws -> Volume3D {
        let D = slabs.nativeDepth
        var voxels = [Float](repeating: 0, count: D * height * width)
        let m = try voxels.withUnsafeMutableBufferPointer { try Assembler.decode(layout.grid[t], into: $0, threads: threads) }
        lossy.merge(m)
        return Volume3D(depth: D, height: height, width: width, voxels: voxels, geometry: layout.geometry)
    }

    /// Time point 0 on the slab grid (the assemble stage's result).
    public func reference() throws -> (slabs: Volume3D, lossy: [String]?) {
        let box = LossyBox()
        let native = try nativeFrame(0, threads: ProcessInfo.processInfo.activeProcessorCount, lossy: box)
        return (native.slabAveraged(slabs), box.methods)
    }

    /// Registers and resamples every time point onto the slab grid: the slab 4D series and
    /// the registration's outcome.
    public func register(reference fixed: Volume3D, lossy: [String]?, thresholdMM: Double,
                         progress: @escaping @Sendable (Double) -> Void) throws -> MotionCorrection.Outcome {
        let T = timepoints, H = height, W = width, frame = slabs.count * H * W
        let centre = fixed.geometry.centre(depth: fixed.depth, height: H, width: W)
        let registerable = W >= 32 && H >= 32
        let box = ResultBox(count: T)
        box.set(0, RigidTransform(centre: centre), true, fixed)
        var voxels = [Float](repeating: 0, count: T * frame)
        let lossyBox = LossyBox()
        lossyBox.merge(lossy)
        let errors = ResultBox(count: 0)
        let registration = RigidRegistration()
        let prepared = registerable ? registration.prepare(fixed: fixed) : nil
        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let threads = max(1, cores / workers)
        // Thin slices: each transform estimated on the slabs is then refined on the native
        // frame against time point 0's native metric points (slab averages blur the skull
        // through the plane, which costs accuracy). Time point 0 is decoded once more for
        // them and dropped; only the points (at most `maxPoints`) stay. Thick series skip this.
        let native0: RigidRegistration.Fixed? = try registerable && slabs.factor > 1 && !Self.refinementLevels.isEmpty
            ? registration.prepare(fixed: nativeFrame(0, threads: cores, lossy: lossyBox), centre: centre, levels: Self.refinementLevels)
            : nil
        voxels.withUnsafeMutableBufferPointer { all in
            for i in 0..<frame { all[i] = fixed.voxels[i] }
            let out = SendableBuffer(all)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                for t in stride(from: w + 1, to: T, by: workers) where !errors.failed {
                    do {
                        let native = try nativeFrame(t, threads: threads, lossy: lossyBox)
                        let target = UnsafeMutableBufferPointer(rebasing: out.buffer[(t * frame)..<((t + 1) * frame)])
                        if let prepared {
                            var r = registration.register(prepared, moving: native.slabAveraged(slabs))
                            if let native0 { r = registration.refine(native0, moving: native, from: r.transform) }
                            native.resampledIntoSlabs(through: r.transform, plan: slabs, into: target)
                            box.set(t, r.transform, r.converged, nil)
                        } else {
                            let s = native.slabAveraged(slabs)
                            for i in 0..<frame { target[i] = s.voxels[i] }
                            box.set(t, RigidTransform(centre: centre), true, nil)
                        }
                        progress(Double(box.done) / Double(T))
                    } catch { errors.fail(error) }
                }
            }
        }
        if let e = errors.error { throw e }
        var series = Series4D(timepoints: T, depth: slabs.count, height: H, width: W, voxels: voxels, geometry: fixed.geometry,
                              frameTimes: layout.frameTimes, temporalSource: layout.temporalSource,
                              files: layout.grid.map { g in (0..<slabs.count).map { g[slabs.middleSlice($0)].path } })
        series.lossyCompressionMethods = lossyBox.methods
        let transforms = box.transforms.map { $0! }
        guard registerable else {
            return MotionCorrection.Outcome(series: series, transforms: transforms, converged: Array(repeating: true, count: T),
                                            maxDisplacementMM: 0, qc: "ok", note: "images smaller than 32×32: not registered")
        }
        series.validity = MotionCorrection.validity(series, transforms: transforms)
        return MotionCorrection.outcome(series: series, fixed: fixed, transforms: transforms,
                                        converged: box.converged.map { $0 ?? false }, thresholdMM: thresholdMM)
    }
}

/// Lossy-compression methods met while decoding, merged across workers.
final class LossyBox: Sendable {
    private let value = Mutex<[String]?>(nil)
    func merge(_ m: [String]?) { value.withLock { $0 = LossyCompression.merge($0, m) } }
    var methods: [String]? { value.withLock { $0 } }
}
