import DICOM
import Foundation
import Store
import Volume

// The one mapping between an instance's header (`InstanceHeader`, from the C extraction the
// SCP and file reads share) and its row in the store, both ways: ingest and reconciliation
// record it, the job worker reads it back for 4D assembly.

extension InstanceRecord {
    /// The row for an instance stored at `path`.
    public init(_ h: InstanceHeader, path: String, fileSize: Int, callingAE: String) {
        self.init(sopInstanceUID: h.sopInstanceUID, sopClassUID: h.sopClassUID, seriesUID: h.seriesUID, studyUID: h.studyUID,
                  path: path, fileSize: fileSize, transferSyntax: h.transferSyntaxUID,
                  temporalPosition: h.temporalPosition, temporalPositions: h.temporalPositions,
                  acquisitionNumber: h.acquisitionNumber, imagesInAcquisition: h.imagesInAcquisition,
                  instanceNumber: h.instanceNumber, acquisitionTime: h.acquisitionTime, contentTime: h.contentTime,
                  position: h.imagePosition, patientID: h.patientID, patientName: h.patientName,
                  studyDescription: h.studyDescription, seriesDescription: h.seriesDescription,
                  modality: h.modality, callingAE: callingAE, accessionNumber: h.accessionNumber)
        image = StoredImage(h.image)
    }
}

extension StoredImage {
    public init(_ a: ImageAttributes) {
        self.init(rows: a.rows, columns: a.columns, frames: a.frames, orientation: a.orientation, pixelSpacing: a.pixelSpacing,
                  sliceThickness: a.sliceThickness, rescaleSlope: a.rescaleSlope, rescaleIntercept: a.rescaleIntercept,
                  photometric: a.photometric, bitsAllocated: a.bitsAllocated, bitsStored: a.bitsStored,
                  pixelRepresentation: a.pixelRepresentation, samplesPerPixel: a.samplesPerPixel)
    }
}

extension ImageAttributes {
    init(_ s: StoredImage) {
        self.init(rows: s.rows, columns: s.columns, frames: s.frames, orientation: s.orientation, pixelSpacing: s.pixelSpacing,
                  sliceThickness: s.sliceThickness, rescaleSlope: s.rescaleSlope, rescaleIntercept: s.rescaleIntercept,
                  photometric: s.photometric, bitsAllocated: s.bitsAllocated, bitsStored: s.bitsStored,
                  pixelRepresentation: s.pixelRepresentation, samplesPerPixel: s.samplesPerPixel)
    }
}

public enum StoredHeaders {
    /// The assembly headers of a stored series from its rows; no file is opened for a row
    /// that holds its image attributes. A row recorded before migration 007 (none) has its
    /// file's header read instead, side by side. `parsed` counts the files opened.
    public static func sliceHeaders(_ instances: [StoredInstance]) throws -> (headers: [SliceHeader], parsed: Int) {
        guard !instances.isEmpty else { throw AssemblyError("the series has no instances") }
        var headers = [SliceHeader?](repeating: nil, count: instances.count)
        var missing: [Int] = []
        for (k, i) in instances.enumerated() {
            guard let image = i.image else { missing.append(k); continue }
            headers[k] = try SliceHeader(path: i.path, image: ImageAttributes(image), position: i.position,
                                         temporalPosition: i.temporalPosition, acquisitionNumber: i.acquisitionNumber,
                                         acquisitionTime: i.acquisitionTime, contentTime: i.contentTime)
        }
        if !missing.isEmpty {
            let read = try Assembler.readHeaders(paths: missing.map { instances[$0].path })
            for (k, h) in zip(missing, read) { headers[k] = h }
        }
        return (headers.map { $0! }, missing.count)
    }
}
