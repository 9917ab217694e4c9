import Foundation
internal import CDCMTK

/// A parsed DICOM file: attributes by tag path, pixels decoded by DCMTK.
public final class DicomFile {
    private let handle: OpaquePointer
    public let path: String

    public init(path: String) throws {
        DCMTK.initialize()
        let (h, err) = withErrorBuffer { pdcm_file_open(path, $0, $1) }
        guard let h else { throw DICOMError(.readFailed, err) }
        self.handle = h
        self.path = path
    }

    deinit { pdcm_file_close(handle) }

    /// The attribute's value(s) as DICOM writes them (multiple values joined by `\`),
    /// or nil when absent or empty. `tagPath` is a keyword ("PatientName"), a tag
    /// ("(0020,0032)") or a path into sequences ("Seq[0].Attr").
    public func string(_ tagPath: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let found = buf.withUnsafeMutableBufferPointer { pdcm_file_get_string(handle, tagPath, $0.baseAddress!, $0.count) }
        return found == 1 ? Self.text(buf).trimmingSpaces() : nil
    }

    public func int(_ tagPath: String) -> Int? {
        string(tagPath).flatMap { Int($0.split(separator: "\\").first.map(String.init)?.trimmingSpaces() ?? "") }
    }

    public func doubles(_ tagPath: String) -> [Double]? {
        string(tagPath).flatMap(Self.decimals)
    }

    /// The fields `InstanceHeader` is built from (strings valid while the file is open).
    var headerFields: pdcm_header { pdcm_file_header(handle).pointee }

    public func double(_ tagPath: String) -> Double? { doubles(tagPath)?.first }

    public var transferSyntaxUID: String {
        var buf = [CChar](repeating: 0, count: 128)
        buf.withUnsafeMutableBufferPointer { pdcm_file_transfer_syntax(handle, $0.baseAddress!, $0.count) }
        return Self.text(buf)
    }

    /// A C buffer's text up to its terminating NUL.
    private static func text(_ buf: [CChar]) -> String {
        String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The largest Rows or Columns accepted (the SCP refuses larger images at C-STORE).
    public static let maxImageSide = Int(PDCM_MAX_IMAGE_SIDE)
    /// The most pixel values one file may declare (all frames and samples).
    public static let maxPixelValues = Int(PDCM_MAX_INSTANCE_BYTES) / 2

    /// Stored pixel values (no rescale), all frames, row-major, as Float.
    public func storedPixels() throws -> [Float] {
        let rows = int("Rows") ?? 0, cols = int("Columns") ?? 0
        let spp = int("SamplesPerPixel") ?? 1, frames = max(int("NumberOfFrames") ?? 1, 1)
        // Checked before allocating: a header is not trusted with the size of the buffer
        // (files may predate the SCP's bounds, or come from elsewhere).
        guard rows <= Self.maxImageSide, cols <= Self.maxImageSide, (1...4).contains(spp), (1...Self.maxPixelValues).contains(frames) else {
            throw DICOMError(.decodeFailed, "\(path): declares \(cols)×\(rows)×\(spp) samples × \(frames) frames; at most \(Self.maxImageSide)×\(Self.maxImageSide) is read")
        }
        let n = rows * cols * spp * frames
        guard n > 0 else { throw DICOMError(.decodeFailed, "\(path): Rows or Columns missing") }
        guard n <= Self.maxPixelValues else {
            throw DICOMError(.decodeFailed, "\(path): declares \(n) pixel values, more than the \(Self.maxPixelValues) read from one file")
        }
        var out = [Float](repeating: 0, count: n)
        let (rc, err) = out.withUnsafeMutableBufferPointer { o in
            withErrorBuffer { pdcm_file_decode_pixels(handle, o.baseAddress!, n, $0, $1) }
        }
        guard rc == 0 else { throw DICOMError(.decodeFailed, "\(path): \(err)") }
        return out
    }

    /// Where the data set starts in a Part 10 file: after the 128-byte preamble, "DICM" and
    /// the file meta group (0002,xxxx, explicit VR little endian). nil when `bytes` is not a
    /// Part 10 file.
    public static func datasetOffset(_ bytes: Data) -> Int? {
        let b = [UInt8](bytes.prefix(64 * 1024))
        guard b.count >= 132, b[128] == 0x44, b[129] == 0x49, b[130] == 0x43, b[131] == 0x4D else { return nil }
        func u16(_ i: Int) -> Int { Int(b[i]) | Int(b[i + 1]) << 8 }
        func u32(_ i: Int) -> Int { u16(i) | u16(i + 2) << 16 }
        var at = 132
        while at + 8 <= b.count, u16(at) == 0x0002 {
            let vr = String(decoding: b[(at + 4)..<(at + 6)], as: UTF8.self)
            if ["OB", "OW", "OF", "SQ", "UT", "UN"].contains(vr) {
                guard at + 12 <= b.count else { return nil }
                at += 12 + u32(at + 8)
            } else {
                at += 8 + u16(at + 6)
            }
        }
        return at <= b.count ? at : nil
    }

    /// Whether two Part 10 files hold the same data set, byte for byte (their file meta
    /// headers may differ: they say who wrote the file, not what it holds). nil when either
    /// cannot be read.
    public static func sameDataset(_ a: String, _ b: String) -> Bool? {
        guard let ha = FileHandle(forReadingAtPath: a), let hb = FileHandle(forReadingAtPath: b) else { return nil }
        defer { try? ha.close(); try? hb.close() }
        guard let headA = try? ha.read(upToCount: 64 * 1024), let headB = try? hb.read(upToCount: 64 * 1024),
              let oa = datasetOffset(headA), let ob = datasetOffset(headB) else { return nil }
        guard (try? ha.seek(toOffset: UInt64(oa))) != nil, (try? hb.seek(toOffset: UInt64(ob))) != nil else { return nil }
        do {
            while true {
                let ca = try ha.read(upToCount: 1 << 20) ?? Data(), cb = try hb.read(upToCount: 1 << 20) ?? Data()
                if ca != cb { return false }
                if ca.isEmpty { return true }
            }
        } catch { return nil }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\0" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\0" { s = s.dropLast() }
        return String(s)
    }
}
