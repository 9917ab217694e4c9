/// The one error type of the DICOM module: what failed, DCMTK's own words, and where.
public struct DICOMError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case readFailed, decodeFailed, writeFailed, listenFailed, invalidArgument
    }
    public var code: Code
    public var message: String
    public var source: String

    public init(_ code: Code, _ message: String, source: String = #function) {
        self.code = code
        self.message = message
        self.source = source
    }

    public var description: String { message }
}

/// DIMSE status codes perfd answers with (PS3.7 Annex C, PS3.4 B.2.3).
public enum DIMSEStatus {
    public static let success: UInt16 = 0x0000
    /// Refused: out of resources (disk full, database unavailable).
    public static let outOfResources: UInt16 = 0xA700
    /// Error: data set does not match SOP class (missing UIDs or pixel attributes).
    public static let dataSetMismatch: UInt16 = 0xA900
    /// Error: cannot understand.
    public static let cannotUnderstand: UInt16 = 0xC000
}
