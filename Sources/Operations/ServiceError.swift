/// A daemon service (retention, metrics) cannot do its work: the message names the path or
/// setting and the fix.
public struct ServiceError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
    package init(message: String) { self.message = message }
}
