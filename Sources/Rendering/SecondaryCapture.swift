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

/// Where a picture lies in the patient: the plane of the source slice it shows, so a viewer
/// can place it beside the source CT (cross-reference lines, linked cursors). The whole
/// picture is that plane, legend and text included; the map itself covers the source's
/// voxels exactly.
public struct PicturePlane: Sendable, Equatable {
    /// Patient position (LPS mm) of the centre of the picture's top-left pixel.
    public var position: SIMD3<Double>
    public var rowDirection: SIMD3<Double>
    public var columnDirection: SIMD3<Double>
    /// mm between rows, between columns (PixelSpacing order).
    public var spacing: SIMD2<Double>
    public var sliceThickness: Double

    /// The plane of slice `z` of a volume drawn with its voxel (0, 0) top-left corner at
    /// picture point (`x`, `y`) and `scale` picture pixels per voxel. A picture pixel j has its
    /// centre at j + 0.5, which is voxel (j + 0.5 − x) / scale − 0.5.
    public static func of(_ g: Geometry, z: Int, x: Double, y: Double, scale: Double) -> PicturePlane {
        let p = g.position(z: Double(z), y: (0.5 - y) / scale - 0.5, x: (0.5 - x) / scale - 0.5)
        return PicturePlane(position: p, rowDirection: g.rowDirection, columnDirection: g.columnDirection,
                            spacing: SIMD2(g.rowSpacing / scale, g.columnSpacing / scale), sliceThickness: g.sliceSpacing)
    }

    /// Distance along the plane's normal (row × column) from the patient origin: the
    /// location viewers show for a slice.
    public var location: Double { Orientation.location(position, rowDirection, columnDirection) }
}

/// A picture to write: packed RGB, and the plane it shows when it shows one slice.
public struct Picture: Sendable {
    public var rgb: [UInt8]
    public var width: Int
    public var height: Int
    public var plane: PicturePlane?
    public init(rgb: [UInt8], width: Int, height: Int, plane: PicturePlane? = nil) {
        self.rgb = rgb; self.width = width; self.height = height; self.plane = plane
    }
}

/// Orientation letters and slice locations from direction cosines (patient LPS).
public enum Orientation {
    /// The letters a direction points to, strongest first, components under 0.25 left out:
    /// (1, 0, 0) "L", (−0.7, 0.7, 0) "RP".
    public static func letters(_ v: SIMD3<Double>) -> String {
        let named: [(Double, String)] = [(v.x, v.x > 0 ? "L" : "R"), (v.y, v.y > 0 ? "P" : "A"), (v.z, v.z > 0 ? "H" : "F")]
        let strong = named.filter { abs($0.0) >= 0.25 }.sorted { abs($0.0) > abs($1.0) }
        return strong.isEmpty ? "?" : strong.map(\.1).joined()
    }

    /// What the left, right, top and bottom edges of an image face, for rows along `row`
    /// and columns along `column`.
    public static func edges(row: SIMD3<Double>, column: SIMD3<Double>) -> (left: String, right: String, top: String, bottom: String) {
        (letters(-row), letters(row), letters(-column), letters(column))
    }

    /// Signed distance of `p` along row × column (mm).
    public static func location(_ p: SIMD3<Double>, _ row: SIMD3<Double>, _ column: SIMD3<Double>) -> Double {
        let n = SIMD3(row.y * column.z - row.z * column.y, row.z * column.x - row.x * column.z, row.x * column.y - row.y * column.x)
        return (p * n).sum()
    }

    /// "slice 5/8 · 42.5 mm": which slice, and where along the normal.
    public static func sliceLabel(_ g: Geometry, z: Int, depth: Int) -> String {
        let mm = location(g.position(z: Double(z), y: 0, x: 0), g.rowDirection, g.columnDirection)
        return "slice \(z + 1)/\(depth) · \(String(format: "%.1f", mm)) mm"
    }
}

/// Writes the output objects (DCMTK encodes them), each in the source's patient and study,
/// a new series, DERIVED\SECONDARY, with a reference to the source series:
/// - grey volumes (derived NCCT): CT Image, one instance per slice, geometry and frame of
///   reference of the source (Image Plane and Frame of Reference modules);
/// - pictures of one slice (colour maps, the summary page): Multi-frame True Color
///   Secondary Capture, one single-frame instance per picture, the plane of the slice in
///   its functional groups (Pixel Measures, Plane Position, Plane Orientation) and the
///   source's Frame of Reference UID;
/// - pictures of no slice (the failure notice): Secondary Capture.
/// No Laterality (a head is not a paired body part); Body Part Examined says HEAD.
public struct SecondaryCaptureWriter: Sendable {
    public static let sopClass = "1.2.840.10008.5.1.4.1.1.7"
    public static let trueColorSOPClass = "1.2.840.10008.5.1.4.1.1.7.4"
    public static let ctSOPClass = "1.2.840.10008.5.1.4.1.1.2"
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

    /// The source's frame of reference; a source without one (not a valid CT) gets one of
    /// the output's own, so its slices still relate to each other, never to the source.
    var frameOfReference: String {
        source.frameOfReferenceUID.isEmpty ? DerivedUID.make((key + ["frame-of-reference"]).joined(separator: "|")) : source.frameOfReferenceUID
    }

    /// Body Part Examined: the source's when it names the head, else HEAD (perfd's
    /// pipelines are brain perfusion); with it, Laterality is rightly absent.
    var bodyPart: String {
        let s = source.bodyPartExamined.uppercased()
        return ["HEAD", "BRAIN", "SKULL", "HEADNECK"].contains(s) ? s : "HEAD"
    }

    /// The attributes every output instance shares.
    func base(_ ds: DatasetWriter, sopClass: String, output: String, seriesNumber: Int, description: String, instance: Int, burnedIn: Bool,
              derivation: String, sourceImage: (sopClass: String, sopInstance: String)?) throws {
        let now = Date()
        let df = DateFormatter()
        df.locale = Locale(identifier: "en_US_POSIX")
        df.timeZone = TimeZone.current
        df.dateFormat = "yyyyMMdd"
        let date = df.string(from: now)
        df.dateFormat = "HHmmss"
        let time = df.string(from: now)
        let ct = sopClass == Self.ctSOPClass
        var attrs: [(String, String)] = [
            ("SpecificCharacterSet", source.specificCharacterSet), ("ImageType", ct ? "DERIVED\\SECONDARY\\AXIAL" : "DERIVED\\SECONDARY"),
            ("SOPClassUID", sopClass), ("SOPInstanceUID", instanceUID(output, instance)),
            ("StudyDate", source.studyDate), ("StudyTime", source.studyTime), ("SeriesDate", date), ("SeriesTime", time),
            ("ContentDate", date), ("ContentTime", time), ("AccessionNumber", source.accessionNumber),
            ("Modality", source.modality), ("Manufacturer", "perfd"),
            ("ReferringPhysicianName", source.referringPhysician), ("StudyDescription", source.studyDescription),
            ("SeriesDescription", String(description.prefix(64))), ("DerivationDescription", String(derivation.prefix(1024))),
            ("PatientName", source.patientName), ("PatientID", source.patientID),
            ("PatientBirthDate", source.patientBirthDate), ("PatientSex", source.patientSex),
            ("SoftwareVersions", softwareVersion), ("BodyPartExamined", bodyPart),
            ("StudyInstanceUID", source.studyUID), ("SeriesInstanceUID", seriesUID(output)), ("StudyID", source.studyID),
            ("SeriesNumber", String(seriesNumber)), ("InstanceNumber", String(instance)),
            ("BurnedInAnnotation", burnedIn ? "YES" : "NO"),
            ("RelatedSeriesSequence[0].StudyInstanceUID", source.studyUID),
            ("RelatedSeriesSequence[0].SeriesInstanceUID", source.seriesUID),
        ]
        if !ct {
            // SC Equipment module: only the Secondary Capture IODs have it.
            attrs += [("ConversionType", "WSD"), ("SecondaryCaptureDeviceManufacturer", "perfd"),
                      ("SecondaryCaptureDeviceManufacturerModelName", "perfd"), ("SecondaryCaptureDeviceSoftwareVersions", softwareVersion)]
        }
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

    /// A 16-bit grey CT series, one instance per slice, in HU with the slice geometry and
    /// the source's frame of reference.
    public func writeGrey(_ v: Volume3D, output: String, seriesNumber: Int, description: String, derivation: String,
                          window: (center: Double, width: Double), sourceSlices: [(sopClass: String, sopInstance: String)]) throws -> OutputSeries {
        let dir = "\(directory)/\(output)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var files: [String] = []
        let g = v.geometry
        let plane = v.height * v.width
        for z in 0..<v.depth {
            let ds = DatasetWriter()
            try base(ds, sopClass: Self.ctSOPClass, output: output, seriesNumber: seriesNumber, description: description, instance: z + 1,
                     burnedIn: false, derivation: derivation, sourceImage: z < sourceSlices.count ? sourceSlices[z] : nil)
            let pos = g.position(z: Double(z), y: 0, x: 0)
            try ds.set("ImagePositionPatient", [pos.x, pos.y, pos.z])
            try ds.set("ImageOrientationPatient", [g.rowDirection.x, g.rowDirection.y, g.rowDirection.z,
                                                   g.columnDirection.x, g.columnDirection.y, g.columnDirection.z])
            try ds.set("PixelSpacing", [g.rowSpacing, g.columnSpacing])
            try ds.set("SliceThickness", DatasetWriter.decimalString(g.sliceSpacing))
            try ds.set("SliceLocation", DatasetWriter.decimalString(Orientation.location(pos, g.rowDirection, g.columnDirection)))
            try ds.set("FrameOfReferenceUID", frameOfReference)
            try ds.set("PositionReferenceIndicator", "")
            try ds.set("PatientPosition", source.patientPosition)
            try ds.set("KVP", source.kvp)
            try ds.set("AcquisitionNumber", "")
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

    /// An RGB series of pictures (colour maps with legends, summaries, notices). Pictures
    /// that show a slice (all of them have a plane) are written as Multi-frame True Color SC
    /// with that plane; others as Secondary Capture.
    public func writeRGB(_ images: [Picture], output: String, seriesNumber: Int,
                         description: String, derivation: String) throws -> OutputSeries {
        let dir = "\(directory)/\(output)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var files: [String] = []
        let placed = !images.isEmpty && images.allSatisfy { $0.plane != nil }
        for (n, img) in images.enumerated() {
            let ds = DatasetWriter()
            try base(ds, sopClass: placed ? Self.trueColorSOPClass : Self.sopClass, output: output, seriesNumber: seriesNumber,
                     description: description, instance: n + 1, burnedIn: true, derivation: derivation, sourceImage: nil)
            if placed, let p = img.plane {
                // Patient Orientation: what the rows and columns point to (the same letters burned in).
                try ds.set("PatientOrientation", Orientation.letters(p.rowDirection) + "\\" + Orientation.letters(p.columnDirection))
                try ds.set("NumberOfFrames", "1")
                try ds.set("FrameOfReferenceUID", frameOfReference)
                try ds.set("PositionReferenceIndicator", "")
                let shared = "SharedFunctionalGroupsSequence[0]."
                try ds.set(shared + "PixelMeasuresSequence[0].PixelSpacing", [p.spacing.x, p.spacing.y])
                try ds.set(shared + "PixelMeasuresSequence[0].SliceThickness", DatasetWriter.decimalString(p.sliceThickness))
                try ds.set(shared + "PlaneOrientationSequence[0].ImageOrientationPatient",
                           [p.rowDirection.x, p.rowDirection.y, p.rowDirection.z, p.columnDirection.x, p.columnDirection.y, p.columnDirection.z])
                try ds.set("PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient",
                           [p.position.x, p.position.y, p.position.z])
            } else {
                try ds.set("PatientOrientation", "")
            }
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
}
