import DICOM
import Foundation
import Ingest
import JobStore
import Logging
import PerfdTestSupport
import Store
import Testing

/// Start-up reconciliation against a real database and real spool files.
@Suite struct ReconcileTests {
    @Test func rowsWithoutFilesAreDroppedAndTemporaryFilesRemoved() throws {
        let dir = TempDir()
        let spool = dir.path + "/spool", series = "1.2.9"
        try FileManager.default.createDirectory(atPath: spool + "/" + series, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: spool + "/.incoming", withIntermediateDirectories: true)
        let store = try JobStore(path: dir.path + "/db.sqlite")
        for i in 0..<3 {
            let path = "\(spool)/\(series)/\(series).\(i).dcm"
            // Instance 2's row was committed but its file never reached the disk.
            if i < 2 { try Data(repeating: 7, count: 100).write(to: URL(fileURLWithPath: path)) }
            try store.recordInstance(InstanceRecord(sopInstanceUID: "\(series).\(i)", sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
                                                    seriesUID: series, studyUID: "1.2", path: path, fileSize: 100))
        }
        try Data(repeating: 1, count: 10).write(to: URL(fileURLWithPath: spool + "/.incoming/tmp-1.dcm"))
        let out = try SpoolReconciler.run(spoolDir: spool, store: store, logger: Logger(label: "test"))
        #expect(out.droppedRows == 1)
        #expect(out.removedTemporary == 1)
        #expect(out.reindexed == 0)
        #expect(try store.series(series)?.instanceCount == 2)
        #expect(try store.instances(ofSeries: series).map(\.sopInstanceUID).sorted() == ["1.2.9.0", "1.2.9.1"])
        // A second run finds nothing left to do.
        let again = try SpoolReconciler.run(spoolDir: spool, store: store, logger: Logger(label: "test"))
        #expect(again.droppedRows == 0 && again.removedTemporary == 0)
    }

    /// Unindexed spool files under a known SOP Instance UID (a crash between the SCP's rename
    /// and the commit): an identical copy and one with other content are both removed, the
    /// indexed files and rows stay as they were.
    @Test func unindexedCopiesOfKnownInstancesAreRemovedNotIndexed() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.sub("ph"), size: 8, slices: 1, timepoints: 2)
        let spool = dir.path + "/spool", seriesDir = spool + "/" + ph.seriesUID
        try FileManager.default.createDirectory(atPath: seriesDir, withIntermediateDirectories: true)
        let store = try JobStore(path: dir.path + "/db.sqlite")
        var sops: [String] = []
        for f in ph.files {
            let d = try DicomFile(path: f)
            let sop = try #require(d.string("SOPInstanceUID"))
            let path = "\(seriesDir)/\(sop).dcm"
            try FileManager.default.copyItem(atPath: f, toPath: path)
            try store.recordInstance(InstanceRecord(sopInstanceUID: sop, sopClassUID: d.string("SOPClassUID") ?? "", seriesUID: ph.seriesUID,
                                                    studyUID: ph.studyUID, path: path, fileSize: 1, patientID: d.string("PatientID") ?? ""))
            sops.append(sop)
        }
        let identical = "\(seriesDir)/\(sops[0])-1.dcm", changed = "\(seriesDir)/\(sops[1])-1.dcm"
        try FileManager.default.copyItem(atPath: ph.files[0], toPath: identical)
        try FileManager.default.copyItem(atPath: ph.files[1], toPath: changed)
        #expect(try runTool("dcmodify", ["-nb", "-i", "(0020,4000)=changed", changed]).status == 0)
        let out = try SpoolReconciler.run(spoolDir: spool, store: store, logger: Logger(label: "test"))
        #expect(out.reindexed == 0)
        #expect(!FileManager.default.fileExists(atPath: identical) && !FileManager.default.fileExists(atPath: changed))
        #expect(try store.instances(ofSeries: ph.seriesUID).map(\.path).sorted() == sops.map { "\(seriesDir)/\($0).dcm" }.sorted())
        #expect(try store.auditTrail().filter { $0.outcome == "refused" }.count == 1)
    }
}
