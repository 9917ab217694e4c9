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
            ("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2"), ("SOPInstanceUID", DCMTK.generateUID()),
            ("SpecificCharacterSet", "ISO_IR 100"),
            ("ImageType", "ORIGINAL\\PRIMARY\\AXIAL"), ("StudyDate", date), ("SeriesDate", date),
            ("AcquisitionDate", date), ("ContentDate", date), ("StudyTime", "080000"), ("SeriesTime", "080000"),
            ("AcquisitionTime", tm), ("ContentTime", tm), ("AccessionNumber", "PHANTOM1"), ("Modality", "CT"),
            ("Manufacturer", "perfd phantom"), ("ReferringPhysicianName", ""), ("StudyDescription", "CT perfusion phantom"),
            ("SeriesDescription", o.seriesDescription), ("PatientName", o.patientName), ("PatientID", o.patientID),
            ("PatientBirthDate", "19600101"), ("PatientSex", "O"), ("BodyPartExamined", "HEAD"), ("PatientPosition", "HFS"),
            ("SliceThickness", DatasetWriter.decimalString(o.sliceThickness)), ("KVP", "80"),
            ("StudyInstanceUID", studyUID), ("SeriesInstanceUID", seriesUID), ("StudyID", "1"), ("SeriesNumber", "3"),
            ("AcquisitionNumber", String(t + 1)), ("InstanceNumber", String(instance)),
            ("ImagePositionPatient", [-o.fieldOfView / 2 + pixel / 2, -o.fieldOfView / 2 + pixel / 2, zmm]
                .map(DatasetWriter.decimalString).joined(separator: "\\")),
            ("ImageOrientationPatient", "1\\0\\0\\0\\1\\0"), ("FrameOfReferenceUID", frameUID),
            ("PositionReferenceIndicator", ""), ("SliceLocation", DatasetWriter.decimalString(zmm)),
            ("TemporalPositionIdentifier", String(t + 1)), ("NumberOfTemporalPositions", String(o.timepoints)),
            ("ImagesInAcquisition", String(o.slices)),
            ("PhotometricInterpretation", "MONOCHROME2"),
            ("PixelSpacing", "\(DatasetWriter.decimalString(pixel))\\\(DatasetWriter.decimalString(pixel))"),
            ("RescaleIntercept", "-1024"), ("RescaleSlope", DatasetWriter.decimalString(Self.slope)), ("RescaleType", "HU"),
            ("WindowCenter", "40"), ("WindowWidth", "80"),
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
        try ds.save(to: path, transferSyntax: o.transferSyntax)
        return path
    }
}
