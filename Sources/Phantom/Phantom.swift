import DICOM
import Foundation
import Perfusion
import Registration
import Volume

/// A synthetic CT perfusion series with known truth (docs/ARCHITECTURE.md §8 "The phantom").
public struct PhantomOptions: Sendable {
    public var size = 512
    public var slices = 8
    public var timepoints = 19
    public var sliceThickness = 5.0
    public var fieldOfView = 240.0
    /// Seconds between time points (regular sampling).
    public var frameInterval = 2.0
    /// Irregular sampling: each interval drawn from 1–3 s (`frameInterval` is then unused).
    public var irregular = false
    /// σ of the (spatially correlated) image noise in HU, 0–20.
    public var noiseSigma = 10.0
    /// σ (mm) of the Gaussian that correlates the noise in-plane (0: white noise).
    public var noiseCorrelationMM = 0.8
    /// σ of the noise of the true NCCT (a higher-dose scan than the perfusion series).
    public var ncctNoiseSigma = 3.0
    public var seed: UInt64 = 1
    /// An ischaemic lesion (core + penumbra) in one hemisphere.
    public var lesion = true
    /// Write the series as DICOM (else only `series.npy` and the truth).
    public var writeDICOM = true
    /// Also write the series as NumPy `series.npy`, float32 HU (T, D, H, W), and the truth
    /// maps as `truth/*.npy` (D, H, W): what training reads.
    public var writeNPY = false
    public var transferSyntax: TransferSyntax = .explicitLittleEndian
    public var patientID = "PHANTOM-001"
    public var patientName = "Phantom^CTP"
    public var studyUID: String?
    public var seriesUID: String?
    public var seriesDescription = "CTP phantom"
    /// Random rigid head motion per time point after the first: rotations up to `degrees`
    /// and translations up to `millimetres` (each drawn so the total stays within).
    public var motion: (degrees: Double, millimetres: Double)?
    /// A contrast bolus (false: the series is scanned without contrast reaching the head).
    public var bolus = true
    /// The two middle cerebral arteries inside the slab (false: a slab with veins only).
    public var arteriesInSlab = true
    /// Put the lesion in this hemisphere: +1 positive x (patient left, image right), −1
    /// negative x (patient right, image left); nil: the seed decides.
    public var lesionSide: Double?
    /// In-plane point spread function σ in mm (0: none).
    public var psfSigma = 0.7
    public init() {}

    public var pixelMM: Double { fieldOfView / Double(size) }
    var pixel: Double { pixelMM }
}

public struct PhantomResult: Sendable {
    public var files: [String]
    public var studyUID: String
    public var seriesUID: String
    public var frameTimes: [Double]
    /// Per time point: the head's pose, a rigid transform taking a point of time point 0 to
    /// where it is at time point t (identity without motion).
    public var poses: [RigidTransform]
    public var model: PhantomModel
    /// Lesion volumes in ml from the label map (voxel count × voxel volume).
    public var coreML: Double
    public var penumbraML: Double
}

public enum Phantom {
    /// Frame times: regular steps, or (irregular) steps drawn from 1–3 s.
    static func frameTimes(_ o: PhantomOptions) -> [Double] {
        guard o.irregular else { return (0..<o.timepoints).map { Double($0) * o.frameInterval } }
        var g = SeededRandom(seed: o.seed &+ 0x7157)
        var t = 0.0
        return (0..<o.timepoints).map { k in
            if k > 0 { t += (Double.random(in: 1...3, using: &g) * 1000).rounded() / 1000 }
            return t
        }
    }

    /// Head poses: identity at t = 0; with motion, a random rigid transform per time point
    /// about the volume centre (the origin of the phantom's coordinates).
    static func poses(_ o: PhantomOptions) -> [RigidTransform] {
        var motionRNG = SeededRandom(seed: o.seed &+ 0x5EED)
        return (0..<o.timepoints).map { t in
            guard t > 0, let m = o.motion else { return RigidTransform() }
            let s3 = 3.0.squareRoot()
            func u(_ limit: Double) -> Double { Double.random(in: -limit...limit, using: &motionRNG) / s3 }
            let deg = m.degrees * .pi / 180
            return RigidTransform(angles: SIMD3(u(deg), u(deg), u(deg)), translation: SIMD3(u(m.millimetres), u(m.millimetres), u(m.millimetres)))
        }
    }

    /// Writes the series (DICOM files and/or series.npy), `truth.json` and `truth/*.nii`.
    public static func write(to directory: String, options o: PhantomOptions) throws -> PhantomResult {
        try FileManager.default.createDirectory(atPath: directory + "/truth", withIntermediateDirectories: true)
        var model = PhantomModel(seed: o.seed, lesion: o.lesion)
        if let side = o.lesionSide, let l = model.lesion, l.side * side < 0 { model.lesion = l.mirrored() }
        let times = frameTimes(o)
        let poses = poses(o)
        let enhancement = o.bolus ? model.enhancement(times: times)
            : Tissue.allCases.map { _ in [Double](repeating: 0, count: times.count) }
        let layout = SliceSampler(options: o, lesion: model.lesion)
        let still = parallelMap(o.slices) { layout.labels(z: $0, pose: nil) }
        let writer = o.writeDICOM ? try PhantomDICOM(directory: directory, options: o, times: times) : nil
        var series: [Float] = o.writeNPY ? [] : []
        if o.writeNPY { series.reserveCapacity(o.timepoints * o.slices * o.size * o.size) }
        var files: [String] = []
        for t in 0..<o.timepoints {
            let hu = Tissue.allCases.map { model.baseHU[$0]! + enhancement[$0.rawValue][t] }
            let moved = o.motion != nil && t > 0
            let inverse = poses[t].inverseMatrix
            // Each slice is drawn and encoded on the cores side by side; only --format npy
            // keeps the pixels once written.
            let slices = parallelMap(o.slices) { z -> Result<(image: [Float], path: String?), Error> in
                let lab = moved ? layout.labels(z: z, pose: inverse) : still[z]
                var rng = SeededRandom(seed: o.seed &* 0x9E37_79B9 &+ UInt64(t) << 32 &+ UInt64(z) &+ 0xA11CE)
                let image = layout.image(labels: lab, hu: hu, noise: o.noiseSigma, rng: &rng)
                do {
                    let path = try writer?.write(image, t: t, z: z)
                    return .success((o.writeNPY ? image : [], path))
                } catch { return .failure(error) }
            }
            for z in 0..<o.slices {
                let r = try slices[z].get()
                if let p = r.path { files.append(p) }
                if o.writeNPY { series.append(contentsOf: r.image) }
            }
        }
        if o.writeNPY {
            try NPY.write(series, shape: [o.timepoints, o.slices, o.size, o.size], to: directory + "/series.npy")
        }
        let truth = try PhantomTruth.write(directory: directory, options: o, model: model, layout: layout, labels: still,
                                           times: times, poses: poses, uids: (writer?.studyUID ?? "", writer?.seriesUID ?? ""))
        // The series' files were written without an fsync each (8,000 of them for a whole
        // brain): one sync of the file system now, so the phantom is on disk when this returns.
        if writer != nil { try DatasetWriter.syncFileSystem(of: directory) }
        return PhantomResult(files: files, studyUID: writer?.studyUID ?? "", seriesUID: writer?.seriesUID ?? "", frameTimes: times,
                             poses: poses, model: model, coreML: truth.coreML, penumbraML: truth.penumbraML)
    }
}

extension Comparable {
    func clamped(_ lo: Self, _ hi: Self) -> Self { min(max(self, lo), hi) }
}
