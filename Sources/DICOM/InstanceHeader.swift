import Foundation
internal import CDCMTK

/// The header fields perfd keeps of one instance: what ingest indexes (identity, series
/// bookkeeping) and what 4D assembly needs (geometry, rescale, pixel format). Built from the
/// one C extraction (`pdcm_header`), whether the dataset came over the network (the SCP) or
/// from a file (reconciliation, `perfd run`), so a stored series and the same files read
/// from disk give the same values.
public struct InstanceHeader: Sendable, Equatable {
    public var sopClassUID: String
    public var sopInstanceUID: String
    public var studyUID: String
    public var seriesUID: String
    public var modality: String
    public var patientID: String
    public var patientName: String
    public var accessionNumber: String
    public var studyDescription: String
    public var seriesDescription: String
    public var transferSyntaxUID: String
    public var acquisitionTime: String?
    public var contentTime: String?
    public var temporalPosition: Int?
    public var temporalPositions: Int?
    public var acquisitionNumber: Int?
    public var imagesInAcquisition: Int?
    public var instanceNumber: Int?
    /// ImagePositionPatient: three finite numbers, else nil.
    public var imagePosition: [Double]?
    /// The image attributes 4D assembly checks and uses.
    public var image: ImageAttributes

    /// Reads the header of an open file (no pixel data is decoded).
    public init(file f: DicomFile) {
        self.init(f.headerFields)
    }

    init(_ h: pdcm_header) {
        func opt(_ v: Int) -> Int? { v < 0 ? nil : v }
        func text(_ p: UnsafePointer<CChar>?) -> String { string(p).trimmingSpaces() }
        func optText(_ p: UnsafePointer<CChar>?) -> String? { let s = text(p); return s.isEmpty ? nil : s }
        sopClassUID = text(h.sop_class_uid); sopInstanceUID = text(h.sop_instance_uid)
        studyUID = text(h.study_uid); seriesUID = text(h.series_uid); modality = text(h.modality)
        patientID = text(h.patient_id); patientName = text(h.patient_name); accessionNumber = text(h.accession_number)
        studyDescription = text(h.study_description); seriesDescription = text(h.series_description)
        transferSyntaxUID = text(h.transfer_syntax)
        acquisitionTime = optText(h.acquisition_time); contentTime = optText(h.content_time)
        temporalPosition = opt(h.temporal_position); temporalPositions = opt(h.temporal_positions)
        acquisitionNumber = opt(h.acquisition_number); imagesInAcquisition = opt(h.images_in_acquisition)
        instanceNumber = opt(h.instance_number)
        imagePosition = optText(h.image_position).flatMap(DicomFile.decimals).flatMap { $0.count == 3 ? $0 : nil }
        image = ImageAttributes(rows: opt(h.rows), columns: opt(h.columns), frames: opt(h.frames),
                                orientation: optText(h.image_orientation), pixelSpacing: optText(h.pixel_spacing),
                                sliceThickness: optText(h.slice_thickness), rescaleSlope: optText(h.rescale_slope),
                                rescaleIntercept: optText(h.rescale_intercept), photometric: optText(h.photometric),
                                bitsAllocated: opt(h.bits_allocated), bitsStored: opt(h.bits_stored),
                                pixelRepresentation: opt(h.pixel_representation), samplesPerPixel: opt(h.samples_per_pixel))
    }
}

/// The image attributes of one instance that 4D assembly reads. Decimal strings (DS) are
/// kept as the instance wrote them (trimmed), so the store holds exactly what the file says
/// and assembly parses them the same way whichever it reads. nil: absent.
public struct ImageAttributes: Sendable, Equatable {
    public var rows: Int?
    public var columns: Int?
    public var frames: Int?
    public var orientation: String?
    public var pixelSpacing: String?
    public var sliceThickness: String?
    public var rescaleSlope: String?
    public var rescaleIntercept: String?
    public var photometric: String?
    public var bitsAllocated: Int?
    public var bitsStored: Int?
    public var pixelRepresentation: Int?
    public var samplesPerPixel: Int?

    public init(rows: Int? = nil, columns: Int? = nil, frames: Int? = nil, orientation: String? = nil, pixelSpacing: String? = nil,
                sliceThickness: String? = nil, rescaleSlope: String? = nil, rescaleIntercept: String? = nil,
                photometric: String? = nil, bitsAllocated: Int? = nil, bitsStored: Int? = nil,
                pixelRepresentation: Int? = nil, samplesPerPixel: Int? = nil) {
        self.rows = rows; self.columns = columns; self.frames = frames; self.orientation = orientation
        self.pixelSpacing = pixelSpacing; self.sliceThickness = sliceThickness; self.rescaleSlope = rescaleSlope
        self.rescaleIntercept = rescaleIntercept; self.photometric = photometric; self.bitsAllocated = bitsAllocated
        self.bitsStored = bitsStored; self.pixelRepresentation = pixelRepresentation; self.samplesPerPixel = samplesPerPixel
    }
}

extension DicomFile {
    /// A decimal string's values, or nil unless every one is a finite number (Swift's
    /// `Double` also reads "nan", "inf" and "1e400", which DS is not).
    public static func decimals(_ s: String) -> [Double]? {
        let values = s.split(separator: "\\", omittingEmptySubsequences: false).map { Double(String($0).trimmingSpaces()) }
        guard values.allSatisfy({ $0?.isFinite == true }) else { return nil }
        return values.map { $0! }
    }
}
