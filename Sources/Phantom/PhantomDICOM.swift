import DICOM
import Foundation

/// Writes the phantom's slices as single-frame CT Image Storage files. AcquisitionTime and
/// ContentTime carry each time point's real (possibly irregular) time from 08:00:00.
/// Pixels are stored in 0.1 HU steps (16 bits, RescaleSlope 0.1): whole-HU storage, as a
/// scanner writes, rounds a noise-free phantom's curves the same way in every voxel of a
/// tissue, and that coherent ±0.5 HU per frame shifted white matter's CBV by up to 17 %
/// (seed 106); with noise the rounding averages out, without it nothing hides it.
struct PhantomDICOM {
    let directory: String
    let o: PhantomOptions
    let times: [Double]
    let studyUID: String
    let seriesUID: String
    let frameUID = DCMTK.generateUID()
    /// HU per stored unit (see above); stored 0…65535 covers −1024…5529 HU.
    static let slope = 0.1

    init(directory: String, options: PhantomOptions, times: [Double]) throws {
        self.directory = directory; o = options; self.times = times
        studyUID = options.studyUID ?? DCMTK.generateUID()
        seriesUID = options.seriesUID ?? DCMTK.generateUID()
    }

    /// The attributes' tags, as DCMTK paths "(gggg,eeee)": a keyword would make DCMTK search
    /// its whole dictionary by name for every attribute of every file (a fifth of the
    /// phantom's time at 8,000 files); a tag is found by hash.
    private enum T {
        static let SOPClassUID = "(0008,0016)"
        static let SOPInstanceUID = "(0008,0018)"
        static let SpecificCharacterSet = "(0008,0005)"
        static let ImageType = "(0008,0008)"
        static let StudyDate = "(0008,0020)"
        static let SeriesDate = "(0008,0021)"
        static let AcquisitionDate = "(0008,0022)"
        static let ContentDate = "(0008,0023)"
        static let StudyTime = "(0008,0030)"
        static let SeriesTime = "(0008,0031)"
        static let AcquisitionTime = "(0008,0032)"
        static let ContentTime = "(0008,0033)"
        static let AccessionNumber = "(0008,0050)"
        static let Modality = "(0008,0060)"
        static let Manufacturer = "(0008,0070)"
        static let ReferringPhysicianName = "(0008,0090)"
        static let StudyDescription = "(0008,1030)"
        static let SeriesDescription = "(0008,103E)"
        static let PatientName = "(0010,0010)"
        static let PatientID = "(0010,0020)"
        static let PatientBirthDate = "(0010,0030)"
        static let PatientSex = "(0010,0040)"
        static let BodyPartExamined = "(0018,0015)"
        static let PatientPosition = "(0018,5100)"
        static let SliceThickness = "(0018,0050)"
        static let KVP = "(0018,0060)"
        static let StudyInstanceUID = "(0020,000D)"
        static let SeriesInstanceUID = "(0020,000E)"
        static let StudyID = "(0020,0010)"
        static let SeriesNumber = "(0020,0011)"
        static let AcquisitionNumber = "(0020,0012)"
        static let InstanceNumber = "(0020,0013)"
        static let ImagePositionPatient = "(0020,0032)"
        static let ImageOrientationPatient = "(0020,0037)"
        static let FrameOfReferenceUID = "(0020,0052)"
        static let PositionReferenceIndicator = "(0020,1040)"
        static let SliceLocation = "(0020,1041)"
        static let TemporalPositionIdentifier = "(0020,0100)"
        static let NumberOfTemporalPositions = "(0020,0105)"
        static let ImagesInAcquisition = "(0020,1002)"
        static let PhotometricInterpretation = "(0028,0004)"
        static let PixelSpacing = "(0028,0030)"
        static let RescaleIntercept = "(0028,1052)"
        static let RescaleSlope = "(0028,1053)"
        static let RescaleType = "(0028,1054)"
        static let WindowCenter = "(0028,1050)"
        static let WindowWidth = "(0028,1051)"
    }

    func write(_ image: [Float], t: Int, z: Int) throws -> String {
        let n = o.size, pixel = o.pixel
        let pixels = image.map { UInt16(clamping: Int((($0 + 1024) / Float(Self.slope)).rounded()).clamped(0, 65535)) }
        let acqSeconds = 8 * 3600 + times[t]
        let tm = String(format: "%02d%02d%09.6f", Int(acqSeconds) / 3600, (Int(acqSeconds) % 3600) / 60,
                        acqSeconds.truncatingRemainder(dividingBy: 60))
        let date = "20260101"
        let ds = DatasetWriter()
        let zmm = (Double(z) - Double(o.slices - 1) / 2) * o.sliceThickness
        let instance = t * o.slices + z + 1
        let attrs: [(String, String)] = [
            (T.SOPClassUID, "1.2.840.10008.5.1.4.1.1.2"), (T.SOPInstanceUID, DCMTK.generateUID()),
            (T.SpecificCharacterSet, "ISO_IR 100"),
            (T.ImageType, "ORIGINAL\\PRIMARY\\AXIAL"), (T.StudyDate, date), (T.SeriesDate, date),
            (T.AcquisitionDate, date), (T.ContentDate, date), (T.StudyTime, "080000"), (T.SeriesTime, "080000"),
            (T.AcquisitionTime, tm), (T.ContentTime, tm), (T.AccessionNumber, "PHANTOM1"), (T.Modality, "CT"),
            (T.Manufacturer, "perfd phantom"), (T.ReferringPhysicianName, ""), (T.StudyDescription, "CT perfusion phantom"),
            (T.SeriesDescription, o.seriesDescription), (T.PatientName, o.patientName), (T.PatientID, o.patientID),
            (T.PatientBirthDate, "19600101"), (T.PatientSex, "O"), (T.BodyPartExamined, "HEAD"), (T.PatientPosition, "HFS"),
            (T.SliceThickness, DatasetWriter.decimalString(o.sliceThickness)), (T.KVP, "80"),
            (T.StudyInstanceUID, studyUID), (T.SeriesInstanceUID, seriesUID), (T.StudyID, "1"), (T.SeriesNumber, "3"),
            (T.AcquisitionNumber, String(t + 1)), (T.InstanceNumber, String(instance)),
            (T.ImagePositionPatient, [-o.fieldOfView / 2 + pixel / 2, -o.fieldOfView / 2 + pixel / 2, zmm]
                .map(DatasetWriter.decimalString).joined(separator: "\\")),
            (T.ImageOrientationPatient, "1\\0\\0\\0\\1\\0"), (T.FrameOfReferenceUID, frameUID),
            (T.PositionReferenceIndicator, ""), (T.SliceLocation, DatasetWriter.decimalString(zmm)),
            (T.TemporalPositionIdentifier, String(t + 1)), (T.NumberOfTemporalPositions, String(o.timepoints)),
            (T.ImagesInAcquisition, String(o.slices)),
            (T.PhotometricInterpretation, "MONOCHROME2"),
            (T.PixelSpacing, "\(DatasetWriter.decimalString(pixel))\\\(DatasetWriter.decimalString(pixel))"),
            (T.RescaleIntercept, "-1024"), (T.RescaleSlope, DatasetWriter.decimalString(Self.slope)), (T.RescaleType, "HU"),
            (T.WindowCenter, "40"), (T.WindowWidth, "80"),
        ]
        for (k, v) in attrs { try ds.set(k, v) }
        try ds.setUS(0x0028, 0x0002, 1)   // SamplesPerPixel
        try ds.setUS(0x0028, 0x0010, UInt16(n)) // Rows
        try ds.setUS(0x0028, 0x0011, UInt16(n)) // Columns
        try ds.setUS(0x0028, 0x0100, 16)  // BitsAllocated
        try ds.setUS(0x0028, 0x0101, 16)  // BitsStored
        try ds.setUS(0x0028, 0x0102, 15)  // HighBit
        try ds.setUS(0x0028, 0x0103, 0)   // PixelRepresentation
        try ds.setPixelData(pixels)
        let path = String(format: "%@/t%02d_z%03d.dcm", directory, t, z)
        // Not fsync'd one by one: `Phantom.write` syncs the file system once at the end.
        try ds.save(to: path, transferSyntax: o.transferSyntax, durable: false)
        return path
    }
}
