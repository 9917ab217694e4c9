import Foundation
import Registration
import Synchronization
import Volume

/// The register stage: every time point aligned to t = 0, the series resampled onto t = 0,
/// and what was found for report.json and QC.
public struct MotionCorrection: Sendable {
    public struct Outcome: Sendable {
        public var series: Series4D
        public var transforms: [RigidTransform]   // t = 0 point → its position at t
        public var converged: [Bool]
        public var maxDisplacementMM: Double
        public var qc: String                     // "ok" | "motion"
        public var note: String?
        /// Per voxel of a frame: its source stayed inside the slab at every time point.
        public var valid: [Bool] { series.validity ?? Array(repeating: true, count: series.frameSize) }

        /// report.json's `registration` block (docs/ARCHITECTURE.md §7).
        public var report: Report.Registration {
            Report.Registration(
                transforms: transforms.enumerated().map { t, x in
                    .init(t: t, rotationDeg: x.anglesDegrees, translationMM: [x.translation.x, x.translation.y, x.translation.z],
                          matrix: x.inverseMatrix, converged: converged[t])
                },
                maxDisplacementMM: maxDisplacementMM, qc: qc, note: note)
        }
    }

    public var thresholdMM: Double
    public init(thresholdMM: Double = 3) { self.thresholdMM = thresholdMM }

    public func run(_ s: Series4D, progress: @Sendable (Double) -> Void) -> Outcome {
        let T = s.timepoints
        let fixed = s.frame(0)
        let centre = s.geometry.centre(depth: s.depth, height: s.height, width: s.width)
        guard s.width >= 32, s.height >= 32 else {
            return Outcome(series: s, transforms: Array(repeating: RigidTransform(centre: centre), count: T),
                           converged: Array(repeating: true, count: T), maxDisplacementMM: 0, qc: "ok",
                           note: "images smaller than 32×32: not registered")
        }
        let box = ResultBox(count: T)
        box.set(0, RigidTransform(centre: centre), true, fixed)
        // Time points side by side on the cores, sharing the fixed frame's metric points.
        let registration = RigidRegistration()
        let prepared = registration.prepare(fixed: fixed)
        DispatchQueue.concurrentPerform(iterations: T - 1) { k in
            let t = k + 1
            let moving = s.frame(t)
            let r = registration.register(prepared, moving: moving)
            box.set(t, r.transform, r.converged, moving.resampled(through: r.transform))
            progress(Double(box.done) / Double(T))
        }
        var voxels = [Float]()
        voxels.reserveCapacity(s.voxels.count)
        let frames = box.frames
        for t in 0..<T { voxels.append(contentsOf: frames[t]!.voxels) }
        var registered = s
        registered.voxels = voxels
        let transforms = box.transforms.map { $0! }
        registered.validity = Self.validity(s, transforms: transforms)
        return Self.outcome(series: registered, fixed: fixed, transforms: transforms, converged: box.converged.map { $0 ?? false },
                            thresholdMM: thresholdMM)
    }

    /// The outcome of registered time points: the largest displacement of any brain voxel
    /// (t = 0 HU between −20 and 100) at any time, and the QC flag.
    static func outcome(series registered: Series4D, fixed: Volume3D, transforms: [RigidTransform], converged: [Bool],
                        thresholdMM: Double) -> Outcome {
        let s = registered
        var maxD = 0.0
        for z in 0..<s.depth { for y in stride(from: 0, to: s.height, by: 4) { for x in stride(from: 0, to: s.width, by: 4) {
            let hu = fixed[z, y, x]
            guard hu > -20 && hu < 100 else { continue }
            let p = s.geometry.position(z: Double(z), y: Double(y), x: Double(x))
            for tr in transforms {
                let d = tr.apply(p) - p
                maxD = max(maxD, (d * d).sum().squareRoot())
            }
        } } }
        let qc = maxD > thresholdMM || converged.contains(false) ? "motion" : "ok"
        return Outcome(series: registered, transforms: transforms, converged: converged,
                       maxDisplacementMM: (maxD * 1000).rounded() / 1000, qc: qc,
                       note: converged.contains(false) ? "registration did not converge at t = \(converged.indices.filter { !converged[$0] })" : nil)
    }
}

extension MotionCorrection {
    /// Whether each voxel of time point 0 stays inside the scanned slab at every time point:
    /// its position at t (through that time point's transform) must lie within half a voxel
    /// of the outermost voxel centres on every axis, the extent the resampling reads (beyond
    /// it the registered frame holds fill, within half a voxel of an edge the edge's value).
    /// The map is exact per voxel; the arterial input and the QC use it.
    public static func validity(_ s: Series4D, transforms: [RigidTransform]) -> [Bool] {
        let g = s.geometry
        var valid = [Bool](repeating: true, count: s.frameSize)
        let hi = SIMD3(Double(s.width) - 0.5, Double(s.height) - 0.5, Double(s.depth) - 0.5)
        let lo = SIMD3<Double>(repeating: -0.5)
        for tr in transforms {
            let (b, ax, ay, az) = tr.indexAffine(in: g)
            for z in 0..<s.depth { for y in 0..<s.height {
                var i = b + ay * Double(y) + az * Double(z)
                let row = (z * s.height + y) * s.width
                for x in 0..<s.width {
                    if !(all(i .>= lo) && all(i .<= hi)) { valid[row + x] = false }
                    i += ax
                }
            } }
        }
        return valid
    }
}

/// Results written from concurrent registrations.
final class ResultBox: Sendable {
    private struct Results {
        var transforms: [RigidTransform?], converged: [Bool?], frames: [Volume3D?]
        var done = 0
        /// The first error of a streamed registration (the other workers stop at their next time point).
        var error: Error?
    }
    private let results: Mutex<Results>
    init(count: Int) {
        results = Mutex(Results(transforms: Array(repeating: nil, count: count), converged: Array(repeating: nil, count: count),
                                frames: Array(repeating: nil, count: count)))
    }
    func set(_ t: Int, _ x: RigidTransform, _ ok: Bool, _ frame: Volume3D?) {
        results.withLock { r in r.transforms[t] = x; r.converged[t] = ok; r.frames[t] = frame; r.done += 1 }
    }
    func fail(_ e: Error) { results.withLock { r in if r.error == nil { r.error = e } } }
    var failed: Bool { results.withLock { $0.error != nil } }
    var error: Error? { results.withLock { $0.error } }
    var done: Int { results.withLock { $0.done } }
    var transforms: [RigidTransform?] { results.withLock { $0.transforms } }
    var converged: [Bool?] { results.withLock { $0.converged } }
    var frames: [Volume3D?] { results.withLock { $0.frames } }
}
