import Store
import Logging

/// Writes through another handler with control characters in messages and metadata made
/// visible (`PeerText.escaped`): log lines quote AE titles and attribute values a peer
/// chose, and a CR/LF there must not start a forged line, nor an ESC drive the terminal of
/// whoever tails the journal.
public struct EscapingLogHandler: LogHandler {
    public var inner: any LogHandler

    public init(_ inner: any LogHandler) { self.inner = inner }

    public func log(event: LogEvent) {
        var e = event
        e.message = Logger.Message(stringLiteral: PeerText.escaped(event.message.description))
        e.metadata = event.metadata.map(Self.escaped)
        inner.log(event: e)
    }

    static func escaped(_ m: Logger.Metadata) -> Logger.Metadata { m.mapValues(escaped) }

    static func escaped(_ v: Logger.MetadataValue) -> Logger.MetadataValue {
        switch v {
        case .string(let s): .string(PeerText.escaped(s))
        case .stringConvertible(let c): .string(PeerText.escaped(c.description))
        case .dictionary(let d): .dictionary(escaped(d))
        case .array(let a): .array(a.map(escaped))
        }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }
    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }
    public var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }
}
