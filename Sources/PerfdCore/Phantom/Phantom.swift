import DICOM
import Foundation
import Registration
import Volume

/// A synthetic CT perfusion series with known truth: head with skull, CSF, grey and white
/// matter, arteries and a venous sinus, and a contrast bolus over the time points.
public struct PhantomOptions: Sendable {
    public var size = 512
    public var slices = 8
    public var timepoints = 19
    public var sliceThickness = 5.0
    public var fieldOfView = 240.0
    /// Seconds between time points (regular sampling).
    public var frameInterval = 2.0
    public var noiseSigma = 10.0
    public var seed: UInt64 = 1
    public var transferSyntax: TransferSyntax = .explicitLittleEndian
    public var patientID = "PHANTOM-001"
    public var patientName = "Phantom^CTP"
    public var studyUID: String?
    public var seriesUID: String?
    public var seriesDescription = "CTP phantom"
    /// Random rigid head motion per time point after the first: rotations up to `degrees`
    /// and translations up to `millimetres` (each drawn so the total stays within).
    public var motion: (degrees: Double, millimetres: Double)?
    /// In-plane point spread function σ in mm (0: none).
    public var psfSigma = 0.7
    public init() {}
}

public struct PhantomResult: Sendable {
    public var files: [String]
    public var studyUID: String
    public var seriesUID: String
    public var frameTimes: [Double]
    /// Per time point: the head's pose, a rigid transform taking a point of time point 0 to
    /// where it is at time point t (identity without motion).
    public var poses: [RigidTransform]
}

public enum Phantom {
    enum Tissue: Int, CaseIterable { case air, skull, csf, grey, white, artery, vein }

    static let baseHU: [Tissue: Double] = [.air: -1000, .skull: 1100, .csf: 5, .grey: 40, .white: 28, .artery: 40, .vein: 40]
    /// (CBF ml/100g/min, MTT s, delay s) per perfused tissue.
    static let perfusion: [Tissue: (cbf: Double, mtt: Double, delay: Double)] = [.grey: (60, 4, 0.5), .white: (22, 5.5, 1.0)]

    /// Tissue at a point (mm from the head centre, in-plane) and slice offset z (mm).
    static func tissue(x: Double, y: Double, z: Double) -> Tissue {
        // Head: ellipsoid 78 × 96 mm in-plane, shrinking away from the central slice.
        func sq(_ v: Double) -> Double { v * v }
        // A skull is not a smooth ellipsoid: its outline wanders with angle and height
        // (ridges, the frontal and occipital bulges), which is what lets a registration tell
        // a tilt from a shift. A few millimetres of smooth 3D modulation stand in for that.
        let phi = atan2(y, x)
        let wobble = 1 + 0.035 * sin(3 * phi + z / 14) + 0.025 * cos(5 * phi - z / 9) + 0.02 * sin(2 * phi + z / 23)
        let shrink = max(0.4, 1 - sq(z / 110)) * wobble
        let a = 78 * shrink, b = 96 * shrink
        let r = sq(x / a) + sq(y / b)
        if r > 1 { return .air }
        let inner = sq(x / (a - 7)) + sq(y / (b - 7))
        if inner > 1 { return .skull }
        // Superior sagittal sinus: posterior midline, just inside the skull.
        if sq(x / 4) + sq((y - (b - 12)) / 4) <= 1 { return .vein }
        // Middle cerebral arteries: two small vessels left and right.
        for sx in [-1.0, 1.0] where sq((x - sx * 30) / 2.5) + sq((y + 8) / 2.5) <= 1 { return .artery }
        // Lateral ventricles.
        for sx in [-1.0, 1.0] where sq((x - sx * 10) / 6) + sq((y + 5) / 18) <= 1 { return .csf }
        // Cortex: a 5 mm band of grey matter under the skull.
        let cortex = sq(x / (a - 12)) + sq(y / (b - 12))
        return cortex > 1 ? .grey : .white
    }

    /// Separable Gaussian blur of an n×n image (edges clamped).
    static func blur(_ img: [Double], n: Int, sigmaPixels s: Double) -> [Double] {
        let r = max(1, Int((3 * s).rounded(.up)))
        var k = (-r...r).map { exp(-Double($0 * $0) / (2 * s * s)) }
        let sum = k.reduce(0, +)
        k = k.map { $0 / sum }
        var tmp = [Double](repeating: 0, count: n * n), out = tmp
        for y in 0..<n { for x in 0..<n {
            var a = 0.0
            for d in -r...r { a += k[d + r] * img[y * n + min(max(x + d, 0), n - 1)] }
            tmp[y * n + x] = a
        } }
        for y in 0..<n { for x in 0..<n {
            var a = 0.0
            for d in -r...r { a += k[d + r] * tmp[min(max(y + d, 0), n - 1) * n + x] }
            out[y * n + x] = a
        } }
        return out
    }

    /// Writes the series as single-frame CT Image Storage files into `directory`.
    public static func write(to directory: String, options o: PhantomOptions) throws -> PhantomResult {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var rng = SeededRandom(seed: o.seed)
        let studyUID = o.studyUID ?? DCMTK.generateUID()
        let seriesUID = o.seriesUID ?? DCMTK.generateUID()
        let frameUID = DCMTK.generateUID()
        let times = (0..<o.timepoints).map { Double($0) * o.frameInterval }
        let aif = Bolus.Arterial()
        var venous = Bolus.Arterial()
        venous.arrival += 5; venous.timeToPeak *= 1.3; venous.peakHU *= 0.9
        var enhancement: [Tissue: [Double]] = [.artery: times.map(aif.value), .vein: times.map(venous.value)]
        for (t, p) in perfusion {
            enhancement[t] = Bolus.tissueCurve(times: times, aif: aif, cbf: p.cbf, mtt: p.mtt, delay: p.delay, residue: .exponential)
        }
        let n = o.size
        let pixel = o.fieldOfView / Double(n)
        // Head poses: identity at t = 0; with motion, a random rigid transform per time point
        // about the volume centre (the origin of these coordinates).
        var motionRNG = SeededRandom(seed: o.seed &+ 0x5EED)
        let poses: [RigidTransform] = (0..<o.timepoints).map { t in
            guard t > 0, let m = o.motion else { return RigidTransform() }
            let s3 = 3.0.squareRoot()
            func u(_ limit: Double) -> Double { Double.random(in: -limit...limit, using: &motionRNG) / s3 }
            let deg = m.degrees * .pi / 180
            return RigidTransform(angles: SIMD3(u(deg), u(deg), u(deg)), translation: SIMD3(u(m.millimetres), u(m.millimetres), u(m.millimetres)))
        }
        // The tissue map per time point and slice: a voxel at p sees the head at pose⁻¹(p).
        // Each voxel averages `sub` samples across the slice thickness (partial volume, as a
        // detector row integrates over its slab).
        let sub = o.sliceThickness > 1.5 ? 5 : 1
        func labelsFor(t: Int, z: Int) -> [UInt8] {
            let inverse = poses[t].inverseMatrix
            let moved = o.motion != nil && t > 0
            var out = [UInt8](repeating: 0, count: n * n * sub)
            for s in 0..<sub {
                let offset = sub == 1 ? 0 : (Double(s) + 0.5) / Double(sub) - 0.5
                let zmm = (Double(z) - Double(o.slices - 1) / 2 + offset) * o.sliceThickness
                for i in 0..<(n * n) {
                    let x = (Double(i % n) + 0.5) * pixel - o.fieldOfView / 2
                    let y = (Double(i / n) + 0.5) * pixel - o.fieldOfView / 2
                    let tissue: Tissue
                    if moved {
                        let q = RigidTransform.apply(inverse, SIMD3(x, y, zmm))
                        tissue = Self.tissue(x: q.x, y: q.y, z: q.z)
                    } else {
                        tissue = Self.tissue(x: x, y: y, z: zmm)
                    }
                    out[i * sub + s] = UInt8(tissue.rawValue)
                }
            }
            return out
        }
        let still = (0..<o.slices).map { labelsFor(t: 0, z: $0) }
        let date = "20260101"
        var files: [String] = []
        var pixels = [UInt16](repeating: 0, count: n * n)
        for t in 0..<o.timepoints {
            let acqSeconds = 8 * 3600 + times[t]
            let tm = String(format: "%02d%02d%09.6f", Int(acqSeconds) / 3600, (Int(acqSeconds) % 3600) / 60, acqSeconds.truncatingRemainder(dividingBy: 60))
            for z in 0..<o.slices {
                let lab = (o.motion != nil && t > 0) ? labelsFor(t: t, z: z) : still[z]
                let huOf = Tissue.allCases.map { baseHU[$0]! + (enhancement[$0]?[t] ?? 0) }
                var clean = [Double](repeating: 0, count: n * n)
                var air = [Bool](repeating: true, count: n * n)
                for i in 0..<(n * n) {
                    var hu = 0.0
                    for s in 0..<sub {
                        let k = Int(lab[i * sub + s])
                        hu += huOf[k]
                        air[i] = air[i] && k == 0
                    }
                    clean[i] = hu / Double(sub)
                }
                // The scanner's in-plane point spread: a Gaussian of σ = psfSigma mm.
                if o.psfSigma > 0 { clean = Self.blur(clean, n: n, sigmaPixels: o.psfSigma / pixel) }
                for i in 0..<(n * n) {
                    var hu = clean[i]
                    if !air[i] { hu += o.noiseSigma * rng.gaussian() }
                    pixels[i] = UInt16(clamping: Int((hu + 1024).rounded()).clamped(0, 4095))
                }
                let ds = DatasetWriter()
                let zmm = (Double(z) - Double(o.slices - 1) / 2) * o.sliceThickness
                let instance = t * o.slices + z + 1
                let attrs: [(String, String)] = [
                    ("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2"), ("SOPInstanceUID", DCMTK.generateUID()),
                    ("SpecificCharacterSet", "ISO_IR 100"),
                    ("ImageType", "ORIGINAL\\PRIMARY\\AXIAL"), ("StudyDate", date), ("SeriesDate", date),
                    ("AcquisitionDate", date), ("ContentDate", date), ("StudyTime", "080000"), ("SeriesTime", "080000"),
                    ("AcquisitionTime", tm), ("ContentTime", tm), ("AccessionNumber", "PHANTOM1"), ("Modality", "CT"),
                    ("Manufacturer", "perfd phantom"), ("ReferringPhysicianName", ""), ("StudyDescription", "CT perfusion phantom"),
                    ("SeriesDescription", o.seriesDescription), ("PatientName", o.patientName), ("PatientID", o.patientID),
                    ("PatientBirthDate", "19600101"), ("PatientSex", "O"), ("BodyPartExamined", "HEAD"), ("PatientPosition", "HFS"),
                    ("SliceThickness", DatasetWriter.decimalString(o.sliceThickness)), ("KVP", "80"),
                    ("StudyInstanceUID", studyUID), ("SeriesInstanceUID", seriesUID), ("StudyID", "1"), ("SeriesNumber", "3"),
                    ("AcquisitionNumber", String(t + 1)), ("InstanceNumber", String(instance)),
                    ("ImagePositionPatient", [-o.fieldOfView / 2 + pixel / 2, -o.fieldOfView / 2 + pixel / 2, zmm].map(DatasetWriter.decimalString).joined(separator: "\\")),
                    ("ImageOrientationPatient", "1\\0\\0\\0\\1\\0"), ("FrameOfReferenceUID", frameUID),
                    ("PositionReferenceIndicator", ""), ("SliceLocation", DatasetWriter.decimalString(zmm)),
                    ("TemporalPositionIdentifier", String(t + 1)), ("NumberOfTemporalPositions", String(o.timepoints)),
                    ("ImagesInAcquisition", String(o.slices)),
                    ("PhotometricInterpretation", "MONOCHROME2"), ("PixelSpacing", "\(DatasetWriter.decimalString(pixel))\\\(DatasetWriter.decimalString(pixel))"),
                    ("RescaleIntercept", "-1024"), ("RescaleSlope", "1"), ("RescaleType", "HU"),
                    ("WindowCenter", "40"), ("WindowWidth", "80"),
                ]
                for (k, v) in attrs { try ds.set(k, v) }
                try ds.setUS(0x0028, 0x0002, 1)   // SamplesPerPixel
                try ds.setUS(0x0028, 0x0010, UInt16(n)) // Rows
                try ds.setUS(0x0028, 0x0011, UInt16(n)) // Columns
                try ds.setUS(0x0028, 0x0100, 16)  // BitsAllocated
                try ds.setUS(0x0028, 0x0101, 12)  // BitsStored
                try ds.setUS(0x0028, 0x0102, 11)  // HighBit
                try ds.setUS(0x0028, 0x0103, 0)   // PixelRepresentation
                try ds.setPixelData(pixels)
                let path = String(format: "%@/t%02d_z%03d.dcm", directory, t, z)
                try ds.save(to: path, transferSyntax: o.transferSyntax)
                files.append(path)
            }
        }
        let motionTruth: [[String: Any]] = poses.enumerated().map { t, pose in
            ["t": t, "rotation_deg": pose.anglesDegrees, "translation_mm": [pose.translation.x, pose.translation.y, pose.translation.z],
             "matrix": pose.inverseMatrix, "pose_matrix": pose.matrix]
        }
        let truth: [String: Any] = [
            "motion": motionTruth,
            "study_uid": studyUID, "series_uid": seriesUID, "frame_times_s": times,
            "shape": [o.timepoints, o.slices, n, n], "spacing_mm": [o.sliceThickness, pixel, pixel],
            "noise_sigma_hu": o.noiseSigma, "seed": o.seed,
            "aif": ["arrival_s": aif.arrival, "time_to_peak_s": aif.timeToPeak, "alpha": aif.alpha, "peak_hu": aif.peakHU],
            "tissues": perfusion.map { ["tissue": "\($0.key)", "cbf": $0.value.cbf, "mtt_s": $0.value.mtt, "delay_s": $0.value.delay,
                                        "cbv": $0.value.cbf * $0.value.mtt / 60] },
        ]
        let data = try JSONSerialization.data(withJSONObject: truth, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: directory + "/truth.json"))
        return PhantomResult(files: files, studyUID: studyUID, seriesUID: seriesUID, frameTimes: times, poses: poses)
    }
}

extension Comparable {
    func clamped(_ lo: Self, _ hi: Self) -> Self { min(max(self, lo), hi) }
}
