internal import CDCMTK
import Foundation

/// Transfer syntaxes perfd writes (and, as SCP, accepts).
public enum TransferSyntax: Int32, CaseIterable, Sendable {
    case explicitLittleEndian = 0, implicitLittleEndian, explicitBigEndian, deflated, jpegLossless, jpegLSLossless, rle

    public var uid: String {
        switch self {
        case .explicitLittleEndian: "1.2.840.10008.1.2.1"
        case .implicitLittleEndian: "1.2.840.10008.1.2"
        case .explicitBigEndian: "1.2.840.10008.1.2.2"
        case .deflated: "1.2.840.10008.1.2.1.99"
        case .jpegLossless: "1.2.840.10008.1.2.4.70"
        case .jpegLSLossless: "1.2.840.10008.1.2.4.80"
        case .rle: "1.2.840.10008.1.2.5"
        }
    }
}

/// Builds a dataset attribute by attribute and writes it as a Part 10 file (DCMTK does
/// the encoding, compression and file meta information).
public final class DatasetWriter {
    private let handle: OpaquePointer

    public init() {
        DCMTK.initialize()
        handle = pdcm_ds_new()
    }

    deinit { pdcm_ds_free(handle) }

    /// Sets an attribute from its string form; `tagPath` may reach into sequences
    /// ("ReferencedSeriesSequence[0].SeriesInstanceUID"). The VR comes from DCMTK's dictionary.
    public func set(_ tagPath: String, _ value: String) throws {
        let (rc, err) = withErrorBuffer { pdcm_ds_put(handle, tagPath, value, $0, $1) }
        guard rc == 0 else { throw DICOMError(.invalidArgument, err) }
    }

    public func set(_ tagPath: String, _ value: Int) throws { try set(tagPath, String(value)) }

    public func set(_ tagPath: String, _ values: [Double]) throws {
        try set(tagPath, values.map { Self.decimalString($0) }.joined(separator: "\\"))
    }

    /// A US attribute (Rows, Columns, BitsAllocated, ...) by group and element.
    public func setUS(_ group: UInt16, _ element: UInt16, _ value: UInt16) throws {
        guard pdcm_ds_put_u16(handle, group, element, value) == 0 else {
            throw DICOMError(.invalidArgument, String(format: "cannot set (%04X,%04X)", group, element))
        }
    }

    public func setPixelData(_ words: [UInt16]) throws {
        guard words.withUnsafeBufferPointer({ pdcm_ds_put_pixels16(handle, $0.baseAddress, $0.count) }) == 0 else {
            throw DICOMError(.writeFailed, "cannot set 16-bit Pixel Data")
        }
    }

    public func setPixelData(_ bytes: [UInt8]) throws {
        guard bytes.withUnsafeBufferPointer({ pdcm_ds_put_pixels8(handle, $0.baseAddress, $0.count) }) == 0 else {
            throw DICOMError(.writeFailed, "cannot set 8-bit Pixel Data")
        }
    }

    /// Writes the file and fsyncs it; with `durable: false` it is left to the page cache
    /// (a writer of many files then calls `syncFileSystem` once when it has written them).
    public func save(to path: String, transferSyntax: TransferSyntax = .explicitLittleEndian, durable: Bool = true) throws {
        let (rc, err) = withErrorBuffer { pdcm_ds_save(handle, path, transferSyntax.rawValue, durable ? 1 : 0, $0, $1) }
        guard rc == 0 else { throw DICOMError(.writeFailed, err) }
    }

    /// Flushes everything written on the file system holding `path` to disk (one syncfs).
    public static func syncFileSystem(of path: String) throws {
        let (rc, err) = withErrorBuffer { pdcm_sync_filesystem(path, $0, $1) }
        guard rc == 0 else { throw DICOMError(.writeFailed, err) }
    }

    /// A DS value: at most 16 characters, no exponent unless needed.
    public static func decimalString(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        for digits in stride(from: 10, through: 1, by: -1) {
            let s = String(format: "%.\(digits)g", v)
            if s.count <= 16 { return s }
        }
        return String(format: "%.6e", v)
    }
}
