/// Lossy compression in a source: an output derived from lossily compressed pixels must say
/// so (LossyImageCompression 01, PS3.3 C.7.6.1.1.5), however it was encoded itself.
public enum LossyCompression {
    /// The LossyImageCompressionMethod term of a transfer syntax that loses information,
    /// nil for a lossless one.
    public static func method(transferSyntax uid: String) -> String? {
        switch uid {
        case "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51": "ISO_10918_1"      // JPEG baseline, extended
        case "1.2.840.10008.1.2.4.81": "ISO_14495_1"                                 // JPEG-LS near-lossless
        case "1.2.840.10008.1.2.4.91": "ISO_15444_1"                                 // JPEG 2000 (lossy allowed)
        case "1.2.840.10008.1.2.4.93": "ISO_15444_2"                                 // JPEG 2000 Part 2 (lossy allowed)
        case "1.2.840.10008.1.2.4.203": "ISO_15444_15"                               // HTJ2K (lossy allowed)
        case "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101": "ISO_13818_2"    // MPEG-2
        case "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104",
             "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.106": "ISO_14496_10"   // MPEG-4 AVC
        case "1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108": "ISO_23008_2"    // HEVC
        default: nil
        }
    }

    /// The methods a file's pixels went through when they were lossily compressed (its
    /// LossyImageCompressionMethod, else the one its transfer syntax implies; empty when
    /// unknown), nil when they were not.
    public static func methods(of f: DicomFile) -> [String]? {
        let byTS = method(transferSyntax: f.transferSyntaxUID)
        guard byTS != nil || f.string("LossyImageCompression") == "01" else { return nil }
        var out = (f.string("LossyImageCompressionMethod") ?? "").split(separator: "\\").map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
        if let byTS, !out.contains(byTS) { out.append(byTS) }
        return out
    }

    /// Two sources' lossy histories together (nil: neither was lossy).
    public static func merge(_ a: [String]?, _ b: [String]?) -> [String]? {
        guard let a else { return b }
        guard let b else { return a }
        return a + b.filter { !a.contains($0) }
    }
}
