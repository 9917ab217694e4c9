import Foundation

/// Times in JSON output (`perfd jobs/show/audit/status --json`): ISO 8601 strings in UTC with
/// milliseconds, the same everywhere; the database keeps seconds since 1970.
public enum ISOTime {
    public static func string(_ t: Double) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date(timeIntervalSince1970: t))
    }
}

extension KeyedEncodingContainer {
    mutating func encodeTime(_ t: Double, forKey key: Key) throws { try encode(ISOTime.string(t), forKey: key) }
    mutating func encodeTime(_ t: Double?, forKey key: Key) throws {
        if let t { try encode(ISOTime.string(t), forKey: key) } else { try encodeNil(forKey: key) }
    }
}

extension JobRecord {
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(seriesUID, forKey: .seriesUID); try c.encode(studyUID, forKey: .studyUID)
        try c.encode(pipeline, forKey: .pipeline); try c.encode(state, forKey: .state); try c.encode(stage, forKey: .stage)
        try c.encode(progress, forKey: .progress); try c.encode(instances, forKey: .instances); try c.encode(rerun, forKey: .rerun)
        try c.encode(error, forKey: .error); try c.encode(qc, forKey: .qc)
        try c.encodeTime(createdAt, forKey: .createdAt); try c.encodeTime(startedAt, forKey: .startedAt)
        try c.encodeTime(finishedAt, forKey: .finishedAt); try c.encodeTime(updatedAt, forKey: .updatedAt)
    }
}

extension StageRecord {
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(stage, forKey: .stage); try c.encode(result, forKey: .result)
        try c.encodeTime(startedAt, forKey: .startedAt); try c.encodeTime(finishedAt, forKey: .finishedAt)
    }
}

extension JobEvent {
    enum CodingKeys: String, CodingKey { case at, level, message }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeTime(at, forKey: .at); try c.encode(level, forKey: .level); try c.encode(message, forKey: .message)
    }
}

extension AuditEntry {
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encodeTime(at, forKey: .at); try c.encode(kind, forKey: .kind)
        try c.encode(outcome, forKey: .outcome); try c.encode(actor, forKey: .actor); try c.encode(host, forKey: .host)
        try c.encode(seriesUID, forKey: .seriesUID); try c.encode(jobID, forKey: .jobID); try c.encode(detail, forKey: .detail)
        try c.encode(count, forKey: .count)
    }
}
