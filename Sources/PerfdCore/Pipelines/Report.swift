import Foundation

/// report.json (DESIGN §3): what was done to which input, what came out, how long it took.
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

    public var job: Int?
    public var pipeline: String
    public var model: Model?
    public var input: Input
    public var outputs: [Output]
    public var maps: [String: String]
    public var summary: [String: Double]
    public var timingsS: [String: Double]

    enum CodingKeys: String, CodingKey {
        case job, pipeline, model, input, outputs, maps, summary, timingsS = "timings_s"
    }

    public func json() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(data: try! e.encode(self), encoding: .utf8)!
    }
}
