import DICOM
import Foundation
import PerfdTestSupport
import Perfusion
import Phantom
import Testing

/// The phantom's output is fixed by its seed: speed work on the generator (blur, DICOM
/// encoding, parallel truth) must leave every pixel and attribute as it was.
@Suite struct PhantomOutputTests {
    /// FNV-1a 64 over the float32 bit patterns (little-endian), as numpy's `tobytes()` gives them.
    static func fnv(_ values: [Float]) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for v in values {
            var b = v.bitPattern.littleEndian
            for _ in 0..<4 { h = (h ^ UInt64(b & 0xFF)) &* 0x100_0000_01B3; b >>= 8 }
        }
        return h
    }

    /// Hashes recorded from the phantom before it was made faster (commit 64feb7f): a thin-slice
    /// series (one sample per pixel) and a thick-slice one with motion (five samples, moved labels).
    @Test(arguments: [(11 as UInt64, 0.5, false, 3, UInt64(0xACB0_F8CE_79F3_097C), UInt64(0xA317_B424_B9BD_33C5)),
                      (12, 5.0, true, 2, 0xD7A8_D2A7_9554_DEB1, 0x47D6_70A9_BCF6_A35A)])
    func sameSeedSamePixels(_ seed: UInt64, _ sliceMM: Double, _ moved: Bool, _ slices: Int, _ series: UInt64, _ ncct: UInt64) throws {
        let dir = TempDir()
        var o = PhantomOptions()
        o.size = 64; o.slices = slices; o.timepoints = 3; o.seed = seed; o.sliceThickness = sliceMM
        o.writeDICOM = false; o.writeNPY = true
        if moved { o.motion = (3, 3) }
        _ = try Phantom.write(to: dir.path, options: o)
        #expect(Self.fnv(try npyFloats(dir.path + "/series.npy")) == series)
        #expect(Self.fnv(try npyFloats(dir.path + "/truth/ncct.npy")) == ncct)
    }

    /// Every attribute reaches the file under its keyword (the writer sets them by tag), and
    /// the stored pixels are the series' HU in 0.1 HU steps from −1024.
    @Test func dicomAttributesAndPixels() throws {
        let dir = TempDir()
        var o = PhantomOptions()
        o.size = 32; o.slices = 3; o.timepoints = 2; o.seed = 5; o.sliceThickness = 0.5; o.writeNPY = true
        let r = try Phantom.write(to: dir.path, options: o)
        #expect(r.files.count == 6)
        let series = try npyFloats(dir.path + "/series.npy")
        for (k, path) in r.files.enumerated() {
            let t = k / 3, z = k % 3
            let f = try DicomFile(path: path)
            let expected: [String: String] = [
                "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "Modality": "CT", "ImageType": "ORIGINAL\\PRIMARY\\AXIAL",
                "PatientName": "Phantom^CTP", "PatientID": "PHANTOM-001", "SeriesDescription": "CTP phantom",
                "StudyInstanceUID": r.studyUID, "SeriesInstanceUID": r.seriesUID, "SliceThickness": "0.5",
                "InstanceNumber": "\(k + 1)", "AcquisitionNumber": "\(t + 1)", "TemporalPositionIdentifier": "\(t + 1)",
                "NumberOfTemporalPositions": "2", "ImagesInAcquisition": "3", "SliceLocation": ["-0.5", "0", "0.5"][z],
                "ImagePositionPatient": "-116.25\\-116.25\\\(["-0.5", "0", "0.5"][z])", "PixelSpacing": "7.5\\7.5",
                "ImageOrientationPatient": "1\\0\\0\\0\\1\\0", "RescaleIntercept": "-1024", "RescaleSlope": "0.1",
                "RescaleType": "HU", "PhotometricInterpretation": "MONOCHROME2", "PatientPosition": "HFS",
                "BodyPartExamined": "HEAD", "AcquisitionTime": t == 0 ? "080000.000000" : "080002.000000",
            ]
            for (key, value) in expected { #expect(f.string(key) == value, "\(path) \(key)") }
            #expect(f.string("SOPInstanceUID") != nil && f.string("FrameOfReferenceUID") != nil)
            let stored = try f.storedPixels()
            let image = series[(k * 32 * 32)..<((k + 1) * 32 * 32)]
            #expect(zip(stored, image).allSatisfy { $0 == Float(((($1 + 1024) / 0.1).rounded()).clamped(0, 65535)) })
        }
    }
}

private extension Float {
    func clamped(_ lo: Float, _ hi: Float) -> Float { Swift.min(Swift.max(self, lo), hi) }
}
