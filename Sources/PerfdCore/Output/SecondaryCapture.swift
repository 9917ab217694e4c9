import DICOM
import Foundation
import Volume

/// One output series as written: what the exporter sends and report.json lists.
public struct OutputSeries: Sendable, Codable {
    public var seriesUID: String
    public var description: String
    public var files: [String]
    public var instanceUIDs: [String] = []
    public var instances: Int { files.count }

    enum CodingKeys: String, CodingKey { case seriesUID = "series_uid", description, instances, files }
    public func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(seriesUID, forKey: .seriesUID)
        try c.encode(description, forKey: .description)
        try c.encode(instances, forKey: .instances)
        try c.encode(files, forKey: .files)
    }
    public init(seriesUID: String, description: String, files: [String], instanceUIDs: [String] = []) {
        self.seriesUID = seriesUID; self.description = description; self.files = files; self.instanceUIDs = instanceUIDs
    }
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        seriesUID = try c.decode(String.self, forKey: .seriesUID)
        description = try c.decode(String.self, forKey: .description)
        files = try c.decode([String].self, forKey: .files)
    }
}

/// Writes Secondary Capture objects (DCMTK encodes them) that carry the source's patient
/// and study, a new series, DERIVED\SECONDARY, and a reference to the source series.
public struct SecondaryCaptureWriter: Sendable {
    public static let sopClass = "1.2.840.10008.5.1.4.1.1.7"
    public var source: SourceInfo
    /// Everything that makes this output unique: (input series, pipeline, model version, re-run).
    public var key: [String]
    public var directory: String
    public var softwareVersion = "perfd 0.1"

    public init(source: SourceInfo, key: [String], directory: String) {
        self.source = source; self.key = key; self.directory = directory
    }

    public func seriesUID(_ output: String) -> String { DerivedUID.make((key + ["series", output]).joined(separator: "|")) }
    func instanceUID(_ output: String, _ n: Int) -> String { DerivedUID.make((key + ["instance", output, String(n)]).joined(separator: "|")) }

    /// The attributes every output instance shares.
    func base(_ ds: DatasetWriter, output: String, seriesNumber: Int, description: String, instance: Int, burnedIn: Bool,
              derivation: String, sourceImage: (sopClass: String, sopInstance: String)?) throws {
        let now = Date()
        let df = DateFormatter()
        df.locale = Locale(identifier: "en_US_POSIX")
        df.timeZone = TimeZone.current
        df.dateFormat = "yyyyMMdd"
        let date = df.string(from: now)
        df.dateFormat = "HHmmss"
        let time = df.string(from: now)
        let attrs: [(String, String)] = [
            ("SpecificCharacterSet", source.specificCharacterSet), ("ImageType", "DERIVED\\SECONDARY"),
            ("SOPClassUID", Self.sopClass), ("SOPInstanceUID", instanceUID(output, instance)),
            ("StudyDate", source.studyDate), ("StudyTime", source.studyTime), ("SeriesDate", date), ("SeriesTime", time),
            ("ContentDate", date), ("ContentTime", time), ("AccessionNumber", source.accessionNumber),
            ("Modality", source.modality), ("ConversionType", "WSD"), ("Manufacturer", "perfd"),
            ("ReferringPhysicianName", source.referringPhysician), ("StudyDescription", source.studyDescription),
            ("SeriesDescription", String(description.prefix(64))), ("DerivationDescription", String(derivation.prefix(1024))),
            ("PatientName", source.patientName), ("PatientID", source.patientID),
            ("PatientBirthDate", source.patientBirthDate), ("PatientSex", source.patientSex),
            ("SecondaryCaptureDeviceManufacturer", "perfd"), ("SecondaryCaptureDeviceManufacturerModelName", "perfd"),
            ("SecondaryCaptureDeviceSoftwareVersions", softwareVersion), ("SoftwareVersions", softwareVersion),
            ("StudyInstanceUID", source.studyUID), ("SeriesInstanceUID", seriesUID(output)), ("StudyID", source.studyID),
            ("SeriesNumber", String(seriesNumber)), ("InstanceNumber", String(instance)),
            ("BurnedInAnnotation", burnedIn ? "YES" : "NO"), ("Laterality", ""),
            ("RelatedSeriesSequence[0].StudyInstanceUID", source.studyUID),
            ("RelatedSeriesSequence[0].SeriesInstanceUID", source.seriesUID),
        ]
        for (k, v) in attrs { try ds.set(k, v) }
        // Pixels derived from lossily compressed ones carry that loss (PS3.3 C.7.6.1.1.5).
        if let methods = source.lossyCompressionMethods {
            try ds.set("LossyImageCompression", "01")
            if !methods.isEmpty { try ds.set("LossyImageCompressionMethod", methods.joined(separator: "\\")) }
        }
        // Purpose of reference: "Source image for image processing operation" (DCM 121322).
        try ds.set("RelatedSeriesSequence[0].PurposeOfReferenceCodeSequence[0].CodeValue", "121322")
        try ds.set("RelatedSeriesSequence[0].PurposeOfReferenceCodeSequence[0].CodingSchemeDesignator", "DCM")
        try ds.set("RelatedSeriesSequence[0].PurposeOfReferenceCodeSequence[0].CodeMeaning", "Source image for image processing operation")
        if let src = sourceImage {
            try ds.set("SourceImageSequence[0].ReferencedSOPClassUID", src.sopClass)
            try ds.set("SourceImageSequence[0].ReferencedSOPInstanceUID", src.sopInstance)
        }
    }

    /// A 16-bit grey series, one instance per slice, in HU with the slice geometry kept.
    public func writeGrey(_ v: Volume3D, output: String, seriesNumber: Int, description: String, derivation: String,
                          window: (center: Double, width: Double), sourceSlices: [(sopClass: String, sopInstance: String)]) throws -> OutputSeries {
        let dir = "\(directory)/\(output)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var files: [String] = []
        let g = v.geometry
        let plane = v.height * v.width
        for z in 0..<v.depth {
            let ds = DatasetWriter()
            try base(ds, output: output, seriesNumber: seriesNumber, description: description, instance: z + 1, burnedIn: false,
                     derivation: derivation, sourceImage: z < sourceSlices.count ? sourceSlices[z] : nil)
            let pos = g.position(z: Double(z), y: 0, x: 0)
            try ds.set("PatientOrientation", Self.patientOrientation(g))
            try ds.set("ImagePositionPatient", [pos.x, pos.y, pos.z])
            try ds.set("ImageOrientationPatient", [g.rowDirection.x, g.rowDirection.y, g.rowDirection.z,
                                                   g.columnDirection.x, g.columnDirection.y, g.columnDirection.z])
            try ds.set("PixelSpacing", [g.spacing.y, g.spacing.z])
            try ds.set("SliceThickness", DatasetWriter.decimalString(g.spacing.x))
            if !source.frameOfReferenceUID.isEmpty { try ds.set("FrameOfReferenceUID", source.frameOfReferenceUID) }
            try ds.set("PhotometricInterpretation", "MONOCHROME2")
            try ds.set("RescaleIntercept", "0")
            try ds.set("RescaleSlope", "1")
            try ds.set("RescaleType", "HU")
            try ds.set("WindowCenter", DatasetWriter.decimalString(window.center))
            try ds.set("WindowWidth", DatasetWriter.decimalString(window.width))
            try ds.setUS(0x0028, 0x0002, 1)
            try ds.setUS(0x0028, 0x0010, UInt16(v.height))
            try ds.setUS(0x0028, 0x0011, UInt16(v.width))
            try ds.setUS(0x0028, 0x0100, 16)
            try ds.setUS(0x0028, 0x0101, 16)
            try ds.setUS(0x0028, 0x0102, 15)
            try ds.setUS(0x0028, 0x0103, 1)
            var words = [UInt16](repeating: 0, count: plane)
            for i in 0..<plane {
                let hu = v.voxels[z * plane + i]
                let clamped = hu.isFinite ? max(-32768, min(32767, hu.rounded())) : -1024
                words[i] = UInt16(bitPattern: Int16(clamped))
            }
            try ds.setPixelData(words)
            let path = String(format: "%@/%04d.dcm", dir, z + 1)
            try ds.save(to: path)
            files.append(path)
        }
        return OutputSeries(seriesUID: seriesUID(output), description: description, files: files,
                            instanceUIDs: (0..<files.count).map { instanceUID(output, $0 + 1) })
    }

    /// An RGB series of pictures (colour maps with legends, summaries, notices).
    public func writeRGB(_ images: [(rgb: [UInt8], width: Int, height: Int)], output: String, seriesNumber: Int,
                         description: String, derivation: String) throws -> OutputSeries {
        let dir = "\(directory)/\(output)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var files: [String] = []
        for (n, img) in images.enumerated() {
            let ds = DatasetWriter()
            try base(ds, output: output, seriesNumber: seriesNumber, description: description, instance: n + 1, burnedIn: true,
                     derivation: derivation, sourceImage: nil)
            try ds.set("PatientOrientation", "")
            try ds.set("PhotometricInterpretation", "RGB")
            try ds.setUS(0x0028, 0x0002, 3)
            try ds.setUS(0x0028, 0x0006, 0)   // PlanarConfiguration: interleaved
            try ds.setUS(0x0028, 0x0010, UInt16(img.height))
            try ds.setUS(0x0028, 0x0011, UInt16(img.width))
            try ds.setUS(0x0028, 0x0100, 8)
            try ds.setUS(0x0028, 0x0101, 8)
            try ds.setUS(0x0028, 0x0102, 7)
            try ds.setUS(0x0028, 0x0103, 0)
            try ds.setPixelData(img.rgb)
            let path = String(format: "%@/%04d.dcm", dir, n + 1)
            try ds.save(to: path)
            files.append(path)
        }
        return OutputSeries(seriesUID: seriesUID(output), description: description, files: files,
                            instanceUIDs: (0..<files.count).map { instanceUID(output, $0 + 1) })
    }

    /// Patient Orientation (row, column directions) for an axis-aligned geometry.
    static func patientOrientation(_ g: Geometry) -> String {
        func letter(_ v: SIMD3<Double>) -> String {
            let a = [abs(v.x), abs(v.y), abs(v.z)]
            switch a.firstIndex(of: a.max()!)! {
            case 0: return v.x > 0 ? "L" : "R"
            case 1: return v.y > 0 ? "P" : "A"
            default: return v.z > 0 ? "H" : "F"
            }
        }
        return letter(g.rowDirection) + "\\" + letter(g.columnDirection)
    }
}
