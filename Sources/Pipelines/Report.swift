import Foundation
import Perfusion

/// report.json (docs/ARCHITECTURE.md §7): what was done to which input, what came out, how long it took.
public struct Report: Codable, Sendable {
    public struct Model: Codable, Sendable { public var name: String; public var version: String }
    public struct Input: Codable, Sendable {
        public var seriesUID: String
        public var timepoints: Int
        public var shape: [Int]
        public var spacingMM: [Double]
        public var frameTimesS: [Double]
        public var temporalSource: String
        /// The analysis grid against the series as sent (nil in reports written before it).
        public var grid: Grid?
        enum CodingKeys: String, CodingKey {
            case timepoints, shape, grid, seriesUID = "series_uid", spacingMM = "spacing_mm", frameTimesS = "frame_times_s",
                 temporalSource = "temporal_source"
        }
        package init(seriesUID: String, timepoints: Int, shape: [Int], spacingMM: [Double], frameTimesS: [Double], temporalSource: String, grid: Grid? = nil) {
            self.seriesUID = seriesUID; self.timepoints = timepoints; self.shape = shape; self.spacingMM = spacingMM; self.frameTimesS = frameTimesS; self.temporalSource = temporalSource; self.grid = grid
        }
    }
    /// report.json `input.grid`: the series as sent (native) and the slab grid the maps and
    /// outputs lie on (`input.shape`/`spacing_mm`); `slices_per_slab` native slices, from
    /// `first_slice`, are averaged into each slab; `origin_mm` is the first slab's centre.
    public struct Grid: Codable, Sendable {
        public var nativeShape: [Int]
        public var nativeSpacingMM: [Double]
        public var slabMM: Double
        public var slicesPerSlab: Int
        public var firstSlice: Int
        public var slabs: Int
        public var originMM: [Double]
        public var workers: Int
        public var memoryEstimateGB: Double
        public var memoryLimitGB: Double
        enum CodingKeys: String, CodingKey {
            case slabs, workers, nativeShape = "native_shape", nativeSpacingMM = "native_spacing_mm", slabMM = "slab_mm",
                 slicesPerSlab = "slices_per_slab", firstSlice = "first_slice", originMM = "origin_mm",
                 memoryEstimateGB = "memory_estimate_gb", memoryLimitGB = "memory_limit_gb"
        }
        package init(nativeShape: [Int], nativeSpacingMM: [Double], slabMM: Double, slicesPerSlab: Int, firstSlice: Int, slabs: Int, originMM: [Double], workers: Int, memoryEstimateGB: Double, memoryLimitGB: Double) {
            self.nativeShape = nativeShape; self.nativeSpacingMM = nativeSpacingMM; self.slabMM = slabMM; self.slicesPerSlab = slicesPerSlab; self.firstSlice = firstSlice; self.slabs = slabs; self.originMM = originMM; self.workers = workers; self.memoryEstimateGB = memoryEstimateGB; self.memoryLimitGB = memoryLimitGB
        }
    }
    public struct Output: Codable, Sendable {
        public var seriesUID: String
        public var description: String
        public var instances: Int
        enum CodingKeys: String, CodingKey { case description, instances, seriesUID = "series_uid" }
        package init(seriesUID: String, description: String, instances: Int) {
            self.seriesUID = seriesUID; self.description = description; self.instances = instances
        }
    }

    public struct Registration: Codable, Sendable {
        public struct Transform: Codable, Sendable {
            public var t: Int
            public var rotationDeg: [Double]
            public var translationMM: [Double]
            /// 4×4 row-major, patient coordinates (mm, LPS): a point of time point t → time point 0.
            public var matrix: [[Double]]
            public var converged: Bool
            enum CodingKeys: String, CodingKey { case t, matrix, converged, rotationDeg = "rotation_deg", translationMM = "translation_mm" }
        }
        public var transforms: [Transform]
        public var maxDisplacementMM: Double
        public var qc: String
        public var note: String?
        enum CodingKeys: String, CodingKey { case transforms, qc, note, maxDisplacementMM = "max_displacement_mm" }
    }

    public var job: Int?
    public var pipeline: String
    public var model: Model?
    public var input: Input
    public var registration: Registration?
    public var outputs: [Output]
    public var maps: [String: String]
    public var summary: [String: SummaryValue]
    public var timingsS: [String: Double]
    /// Perfusion pipelines: how the arterial input was chosen, and the quality checks.
    public var arterialInput: ArterialInputReport? = nil
    public var qc: QCReport? = nil

    enum CodingKeys: String, CodingKey {
        case job, pipeline, model, input, registration, outputs, maps, summary, qc, timingsS = "timings_s", arterialInput = "arterial_input"
    }

    public func json() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(data: try! e.encode(self), encoding: .utf8)!
    }
    package init(job: Int? = nil, pipeline: String, model: Model? = nil, input: Input, registration: Registration? = nil, outputs: [Output], maps: [String: String], summary: [String: SummaryValue], timingsS: [String: Double], arterialInput: ArterialInputReport? = nil, qc: QCReport? = nil) {
        self.job = job; self.pipeline = pipeline; self.model = model; self.input = input; self.registration = registration; self.outputs = outputs; self.maps = maps; self.summary = summary; self.timingsS = timingsS; self.arterialInput = arterialInput; self.qc = qc
    }
}

/// report.json's `arterial_input`: the rules every arterial candidate must pass, the chosen
/// voxels, and why each candidate passed over failed.
public struct ArterialInputReport: Codable, Sendable, Equatable {
    public struct Rejected: Codable, Sendable, Equatable {
        public var zyx: [Int]
        public var rule: String
        public var reason: String
    }
    public var method: String
    public var rules: [String]
    public var aifVoxelsZYX: [[Int]]
    public var vofVoxelsZYX: [[Int]]
    /// Vessel-like voxels (≥ 80 HU) looked at, rejected ones per rule, and the first of them.
    public var screened: Int
    public var rejectedCounts: [String: Int]
    public var rejected: [Rejected]

    public static let rules = [
        "inside the skull (enclosed by bone, > 150 HU at baseline)",
        "inside the scanned slab at every time point after registration (slab)",
        "no bone-like baseline, > 150 HU (bone)",
        "no dip below baseline beyond 5 σ of a two-sample difference's noise (5·√2·σ), at least 50 HU (negative_swing)",
        "one bolus: no second peak higher than half the first (and than that noise limit) above the trough between them (several_peaks)",
        "peak enhancement at least 80 HU",
        "peaks before the brain tissue's mean curve; later is a vein (late)",
        "from more than one slice where the slab has arterial candidates on another",
    ]

    public init(method: String, aif: [[Int]], vof: [[Int]], screened: Int, rejected: [RejectedCandidate]) {
        self.method = method; rules = Self.rules; aifVoxelsZYX = aif; vofVoxelsZYX = vof; self.screened = screened
        rejectedCounts = rejected.reduce(into: [:]) { $0[$1.rule, default: 0] += 1 }
        self.rejected = rejected.prefix(20).map { Rejected(zyx: $0.zyx, rule: $0.rule, reason: $0.reason) }
    }

    enum CodingKeys: String, CodingKey {
        case method, rules, screened, rejected, aifVoxelsZYX = "aif_voxels_zyx", vofVoxelsZYX = "vof_voxels_zyx",
             rejectedCounts = "rejected_counts"
    }
}
