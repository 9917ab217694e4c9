import Foundation
import Logging

/// perfd's log lines on stderr.
///
/// - `text`: `2026-12-02T14:05:00Z info perfd: message key=value`.
/// - `json`: one object per line: `{"time":…,"level":…,"label":…,"message":…,"metadata":{…}}`.
///
/// When stderr is the systemd journal (`JOURNAL_STREAM` names stderr's device and inode, as
/// systemd sets it for a unit's output), every line starts with the sd-daemon priority prefix
/// `<N>` (3 error … 7 debug) so `journalctl -p warning` filters by level; journald strips the
/// prefix, and under journald the time is left out (the journal stamps each line itself).
///
/// Wrap it in `EscapingLogHandler` so a peer's text cannot forge lines.
public struct PerfdLogHandler: LogHandler {
    public enum Format: String, Sendable { case text, json }

    public let label: String
    public let format: Format
    public let journal: Bool
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let sink: @Sendable (String) -> Void

    public init(label: String, format: Format, journal: Bool = PerfdLogHandler.stderrIsJournal(),
                sink: @escaping @Sendable (String) -> Void = PerfdLogHandler.writeStderr) {
        self.label = label; self.format = format; self.journal = journal; self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The sd-daemon priority of a swift-log level (syslog numbers).
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Whether stderr is the journal: JOURNAL_STREAM is "DEVICE:INODE" of the stream systemd
    /// connected, and it must be stderr's own (a child that inherited the variable but whose
    /// stderr was redirected elsewhere writes plain lines).
    public static func stderrIsJournal(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let v = environment["JOURNAL_STREAM"] else { return false }
        let parts = v.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(STDERR_FILENO, &st) == 0 else { return false }
        return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
    }

    public static let writeStderr: @Sendable (String) -> Void = { line in
        let bytes = Array(line.utf8)
        bytes.withUnsafeBytes { b in
            var off = 0
            while off < b.count {
                let n = write(STDERR_FILENO, b.baseAddress! + off, b.count - off)
                if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
                off += n
            }
        }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let p = metadataProvider { all.merge(p.get(), uniquingKeysWith: { _, new in new }) }
        if let m = event.metadata { all.merge(m, uniquingKeysWith: { _, new in new }) }
        sink(Self.line(event: event, metadata: all, label: label, format: format, journal: journal, now: Date()))
    }

    static func line(event: LogEvent, metadata: Logger.Metadata, label: String, format: Format, journal: Bool, now: Date) -> String {
        let prefix = journal ? "<\(priority(event.level))>" : ""
        let time = ISO8601DateFormatter.string(from: now, timeZone: TimeZone(identifier: "UTC")!,
                                               formatOptions: [.withInternetDateTime, .withFractionalSeconds])
        switch format {
        case .json:
            var o = "{\"time\":\(jsonString(time)),\"level\":\(jsonString(event.level.rawValue)),\"priority\":\(priority(event.level)),"
                + "\"label\":\(jsonString(label)),\"message\":\(jsonString(event.message.description))"
            if !metadata.isEmpty { o += ",\"metadata\":" + json(.dictionary(metadata)) }
            return prefix + o + "}\n"
        case .text:
            let meta = metadata.isEmpty ? "" : " " + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            return prefix + (journal ? "" : time + " ") + "\(event.level.rawValue) \(label): \(event.message)\(meta)\n"
        }
    }

    static func json(_ v: Logger.MetadataValue) -> String {
        switch v {
        case .string(let s): jsonString(s)
        case .stringConvertible(let c): jsonString(c.description)
        case .array(let a): "[" + a.map(json).joined(separator: ",") + "]"
        case .dictionary(let d): "{" + d.sorted { $0.key < $1.key }.map { jsonString($0.key) + ":" + json($0.value) }.joined(separator: ",") + "}"
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7f { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}
