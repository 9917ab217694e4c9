import Foundation

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
        enum CodingKeys: String, CodingKey {
            case timepoints, shape, seriesUID = "series_uid", spacingMM = "spacing_mm", frameTimesS = "frame_times_s",
                 temporalSource = "temporal_source"
        }
    }
    public struct Output: Codable, Sendable {
        public var seriesUID: String
        public var description: String
        public var instances: Int
        enum CodingKeys: String, CodingKey { case description, instances, seriesUID = "series_uid" }
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

    enum CodingKeys: String, CodingKey {
        case job, pipeline, model, input, registration, outputs, maps, summary, timingsS = "timings_s"
    }

    public func json() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(data: try! e.encode(self), encoding: .utf8)!
    }
}
