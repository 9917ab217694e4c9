import DICOM
import Foundation

/// Patient, study and series attributes of the source series, copied into every output.
public struct SourceInfo: Sendable, Codable {
    public var patientName = "", patientID = "", patientBirthDate = "", patientSex = ""
    public var studyUID = "", studyDate = "", studyTime = "", referringPhysician = "", studyID = ""
    public var accessionNumber = "", studyDescription = ""
    public var modality = "CT", seriesUID = "", seriesNumber = 0, seriesDescription = ""
    public var specificCharacterSet = "ISO_IR 100"
    public var frameOfReferenceUID = ""
    public var sopClassUID = ""
    /// Copied to the outputs: Body Part Examined (when it names the head), and for the
    /// derived CT, Patient Position and the tube voltage its pixels were acquired at.
    public var bodyPartExamined = "", patientPosition = "", kvp = ""
    /// nil when the source's pixels were stored losslessly; else the lossy compression
    /// methods (LossyImageCompressionMethod terms, empty when unknown) they went through.
    public var lossyCompressionMethods: [String]?

    public init() {}

    public static func read(path: String) throws -> SourceInfo {
        let f = try DicomFile(path: path)
        var s = SourceInfo()
        s.patientName = f.string("PatientName") ?? ""
        s.patientID = f.string("PatientID") ?? ""
        s.patientBirthDate = f.string("PatientBirthDate") ?? ""
        s.patientSex = f.string("PatientSex") ?? ""
        s.studyUID = f.string("StudyInstanceUID") ?? ""
        s.studyDate = f.string("StudyDate") ?? ""
        s.studyTime = f.string("StudyTime") ?? ""
        s.referringPhysician = f.string("ReferringPhysicianName") ?? ""
        s.studyID = f.string("StudyID") ?? ""
        s.accessionNumber = f.string("AccessionNumber") ?? ""
        s.studyDescription = f.string("StudyDescription") ?? ""
        s.modality = f.string("Modality") ?? "CT"
        s.seriesUID = f.string("SeriesInstanceUID") ?? ""
        s.seriesNumber = f.int("SeriesNumber") ?? 0
        s.seriesDescription = f.string("SeriesDescription") ?? ""
        s.specificCharacterSet = f.string("SpecificCharacterSet") ?? "ISO_IR 100"
        s.frameOfReferenceUID = f.string("FrameOfReferenceUID") ?? ""
        s.sopClassUID = f.string("SOPClassUID") ?? ""
        s.bodyPartExamined = f.string("BodyPartExamined") ?? ""
        s.patientPosition = f.string("PatientPosition") ?? ""
        s.kvp = f.string("KVP") ?? ""
        s.lossyCompressionMethods = LossyCompression.methods(of: f)
        return s
    }
}
