import DICOM
import Foundation
import PerfdTestSupport
import Testing

@Suite struct DatasetRoundTrip {
    /// Every transfer syntax the SCP negotiates must decode back to the exact stored values.
    @Test(arguments: TransferSyntax.allCases)
    func pixelsSurviveEveryTransferSyntax(_ ts: TransferSyntax) throws {
        let dir = TempDir()
        let w = DatasetWriter()
        try w.set("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2")
        try w.set("SOPInstanceUID", DCMTK.generateUID())
        try w.set("PatientName", "Test^Round Trip")
        try w.set("ImagePositionPatient", [-12.5, 3.25, 40])
        try w.set("PhotometricInterpretation", "MONOCHROME2")
        try w.setUS(0x0028, 0x0002, 1)
        try w.setUS(0x0028, 0x0010, 16)
        try w.setUS(0x0028, 0x0011, 24)
        try w.setUS(0x0028, 0x0100, 16)
        try w.setUS(0x0028, 0x0101, 12)
        try w.setUS(0x0028, 0x0102, 11)
        try w.setUS(0x0028, 0x0103, 0)
        let words = (0..<(16 * 24)).map { UInt16(($0 * 37) % 4096) }
        try w.setPixelData(words)
        let path = dir.path + "/x.dcm"
        try w.save(to: path, transferSyntax: ts)

        let f = try DicomFile(path: path)
        #expect(f.transferSyntaxUID == ts.uid)
        #expect(f.string("PatientName") == "Test^Round Trip")
        #expect(f.doubles("ImagePositionPatient") == [-12.5, 3.25, 40])
        #expect(f.int("Rows") == 16)
        #expect(try f.storedPixels() == words.map(Float.init))
    }

    @Test func signedPixelsAreSignExtended() throws {
        let dir = TempDir()
        let w = DatasetWriter()
        try w.set("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2")
        try w.set("SOPInstanceUID", DCMTK.generateUID())
        try w.set("PhotometricInterpretation", "MONOCHROME2")
        for (e, v) in [(0x0002, 1), (0x0010, 1), (0x0011, 4), (0x0100, 16), (0x0101, 12), (0x0102, 11), (0x0103, 1)] as [(UInt16, UInt16)] {
            try w.setUS(0x0028, e, v)
        }
        // 12-bit two's complement: 0xFFF = -1, 0x800 = -2048, 0x7FF = 2047.
        try w.setPixelData([0x0FFF, 0x0800, 0x07FF, 0] as [UInt16])
        try w.save(to: dir.path + "/s.dcm")
        #expect(try DicomFile(path: dir.path + "/s.dcm").storedPixels() == [-1, -2048, 2047, 0])
    }

    /// A Latin-1 (ISO_IR 100) patient name reads back as the same text, not as replacement
    /// characters; DCMTK's dcmconv makes the Latin-1 file.
    @Test func latin1TextIsReadAsUnicode() throws {
        let dir = TempDir()
        let w = DatasetWriter()
        try w.set("SpecificCharacterSet", "ISO_IR 192")
        try w.set("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2")
        try w.set("SOPInstanceUID", DCMTK.generateUID())
        try w.set("PatientName", "Müller^Jürgen")
        try w.set("StudyDescription", "Schädel Perfusion")
        try w.save(to: dir.path + "/utf8.dcm")
        let r = try runTool("dcmconv", ["+L1", dir.path + "/utf8.dcm", dir.path + "/latin1.dcm"])
        #expect(r.status == 0, "\(r.output)")
        let raw = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/latin1.dcm"))
        #expect(raw.range(of: Data([0x4D, 0xFC, 0x6C])) != nil)  // "Mül" in Latin-1 really is in the file
        let f = try DicomFile(path: dir.path + "/latin1.dcm")
        #expect(f.string("PatientName") == "Müller^Jürgen")
        #expect(f.string("StudyDescription") == "Schädel Perfusion")
    }

    @Test func unreadableFileNamesItself() throws {
        let dir = TempDir()
        let path = dir.path + "/junk.dcm"
        try Data((0..<300).map { UInt8($0 % 251) }).write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try DicomFile(path: path)
        } throws: { error in
            "\(error)".contains("junk.dcm")
        }
    }

    @Test func decimalStringsFitDS() {
        #expect(DatasetWriter.decimalString(3) == "3")
        #expect(DatasetWriter.decimalString(0.46875) == "0.46875")
        #expect(DatasetWriter.decimalString(-119.765625).count <= 16)
        #expect(DatasetWriter.decimalString(1.0 / 3.0).count <= 16)
    }
}

/// The SCP in-process, with DCMTK's storescu/echoscu as the real peer.
@Suite(.serialized) struct StorageSCPTests {
    final class Recorder: StorageSCPDelegate, @unchecked Sendable {
        // @unchecked Sendable: every field is guarded by `lock`.
        let lock = NSLock()
        var stored: [ReceivedInstance] = []
        var rejections: [(UInt16, String)] = []
        var allowed = "SCANNER"
        func decide(_ r: AssociationRequest) -> AssociationDecision {
            r.callingAE == allowed ? .accept : .refuseCallingAE("calling AE \(r.callingAE) not allowed")
        }
        func store(_ i: ReceivedInstance) -> (status: UInt16, reason: String) {
            lock.lock(); defer { lock.unlock() }
            stored.append(i)
            return (0, "")
        }
        func rejected(_ peer: AssociationRequest, status: UInt16, reason: String) {
            lock.lock(); defer { lock.unlock() }
            rejections.append((status, reason))
        }
        func log(level: Int, _ message: String) {}
    }

    func withSCP(_ body: (StorageSCP, Recorder, TempDir) throws -> Void) throws {
        let dir = TempDir()
        let rec = Recorder()
        let scp = try StorageSCP(config: StorageSCPConfig(aeTitle: "PERFD", port: 0, spoolDirectory: dir.sub("spool")), delegate: rec)
        let thread = Thread { scp.run() }
        thread.start()
        defer {
            scp.stop()
            while scp.activeAssociations > 0 || thread.isExecuting { usleep(20_000) }
        }
        try body(scp, rec, dir)
    }

    @Test func portZeroReadsBackTheRealPort() throws {
        try withSCP { scp, _, _ in
            #expect(scp.port > 0)
            let echo = try runTool("echoscu", ["-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(scp.port)])
            #expect(echo.status == 0, "\(echo.output)")
        }
    }

    @Test func storeWritesFsyncedFileAndReportsAttributes() throws {
        try withSCP { scp, rec, dir in
            let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 2)
            let r = try runTool("storescu", ["-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(scp.port)] + ph.files)
            #expect(r.status == 0, "\(r.output)")
            #expect(rec.stored.count == 4)
            for i in rec.stored {
                #expect(i.seriesUID == ph.seriesUID)
                #expect(i.path.hasPrefix(dir.path + "/spool/\(ph.seriesUID)/"))
                #expect(FileManager.default.fileExists(atPath: i.path))
                #expect(i.header.temporalPositions == 2)
                #expect(i.header.imagesInAcquisition == 2)
                #expect(i.header.imagePosition?.count == 3)
                // Every header field, the image attributes assembly needs included, is what
                // the same extraction reads from the file that was sent.
                let sent = try ph.files.map { try DicomFile(path: $0) }.first { $0.string("SOPInstanceUID") == i.sopInstanceUID }!
                #expect(i.header == InstanceHeader(file: sent))
                #expect(i.header.image.rows == 16 && i.header.image.columns == 16 && i.header.image.bitsAllocated == 16)
                #expect(i.header.image.orientation == sent.string("ImageOrientationPatient"))
                #expect(i.header.image.pixelSpacing == sent.string("PixelSpacing"))
                #expect(i.header.image.rescaleIntercept == sent.string("RescaleIntercept"))
            }
            // The spooled file is a complete DICOM file with the same pixels.
            let spooled = try DicomFile(path: rec.stored[0].path)
            let original = try ph.files.map { try DicomFile(path: $0) }.first { $0.string("SOPInstanceUID") == rec.stored[0].sopInstanceUID }!
            #expect(try spooled.storedPixels() == original.storedPixels())
        }
    }

    @Test func unknownCallingAEIsRefused() throws {
        try withSCP { scp, rec, dir in
            let ph = try makePhantom(in: dir.sub("ph"), size: 8, slices: 1, timepoints: 2)
            let r = try runTool("storescu", ["-aet", "INTRUDER", "-aec", "PERFD", "127.0.0.1", String(scp.port)] + ph.files)
            #expect(r.status != 0)
            #expect(r.output.contains("Calling AE Title Not Recognized") || r.output.lowercased().contains("rejected"), "\(r.output)")
            #expect(rec.stored.isEmpty)
        }
    }

    @Test func datasetWithoutSeriesUIDGetsFailureStatus() throws {
        try withSCP { scp, rec, dir in
            let ph = try makePhantom(in: dir.sub("ph"), size: 8, slices: 1, timepoints: 1)
            let bad = dir.path + "/noseries.dcm"
            try FileManager.default.copyItem(atPath: ph.files[0], toPath: bad)
            let e = try runTool("dcmodify", ["-nb", "-ea", "(0020,000e)", bad])
            #expect(e.status == 0, "\(e.output)")
            let r = try runTool("storescu", ["-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(scp.port), bad])
            #expect(r.output.contains("0xa900") || r.output.lowercased().contains("a900") || r.status != 0, "\(r.output)")
            #expect(rec.stored.isEmpty)
            #expect(rec.rejections.first?.0 == DIMSEStatus.dataSetMismatch)
            #expect(rec.rejections.first?.1.contains("SeriesInstanceUID") == true)
        }
    }
}
