import DICOM
import Foundation
import JobStore
import Ingest
import Jobs
import PerfdTestSupport
import Store
import Testing
import Volume

/// Assembly of a stored series from the header fields recorded at ingest (migration 007),
/// against the same files' headers read from disk.
@Suite struct StoredHeaderTests {
    /// Records every file of a phantom as ingest does (the SCP's extraction, here of the
    /// file) and returns the rows read back.
    func recordAll(_ files: [String], store: JobStore, seriesUID: String, withImage: (Int) -> Bool = { _ in true }) throws -> [StoredInstance] {
        for (k, f) in files.enumerated() {
            var r = InstanceRecord(InstanceHeader(file: try DicomFile(path: f)), path: f, fileSize: 1, callingAE: "TEST")
            if !withImage(k) { r.image = nil }   // a row as recorded before migration 007
            try store.recordInstance(r)
        }
        return try store.instances(ofSeries: seriesUID)
    }

    func expectSame(_ a: [SliceHeader], _ b: [SliceHeader]) {
        #expect(a.count == b.count)
        for (x, y) in zip(a, b) {
            #expect(x.path == y.path && x.rows == y.rows && x.columns == y.columns && x.frames == y.frames)
            #expect(x.position == y.position && x.rowDirection == y.rowDirection && x.columnDirection == y.columnDirection)
            #expect(x.pixelSpacing.row == y.pixelSpacing.row && x.pixelSpacing.column == y.pixelSpacing.column)
            #expect(x.temporalPosition == y.temporalPosition && x.acquisitionNumber == y.acquisitionNumber && x.time == y.time)
            #expect(x.slope == y.slope && x.intercept == y.intercept)
        }
    }

    /// Every field assembly uses reads back from the store exactly as from the file, and no
    /// file is opened for it; the maps of a stored series are byte for byte those of the
    /// same files read from disk.
    @Test func storedHeadersEqualFileHeadersAndGiveTheSameMaps() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.sub("ph"), size: 64, slices: 4, timepoints: 19, seed: 5, motion: (2, 2))
        let store = try JobStore(path: dir.path + "/db.sqlite")
        let rows = try recordAll(ph.files, store: store, seriesUID: ph.seriesUID)
        #expect(rows.allSatisfy { $0.image != nil })
        let stored = try StoredHeaders.sliceHeaders(rows)
        #expect(stored.parsed == 0)
        expectSame(stored.headers, try Assembler.readHeaders(paths: rows.map(\.path)))

        let fromFiles = Processing(pipelineName: "perfusion-svd", outputDirectory: dir.sub("files"))
        _ = try fromFiles.run(paths: rows.map(\.path), observer: QuietObserver())
        let fromStore = Processing(pipelineName: "perfusion-svd", outputDirectory: dir.sub("store"))
        let (report, _) = try fromStore.run(observer: QuietObserver()) { try StoredHeaders.sliceHeaders(rows) }
        #expect(!report.maps.isEmpty)
        for (name, path) in report.maps {
            let other = path.replacingOccurrences(of: dir.sub("store"), with: dir.sub("files"))
            #expect(FileManager.default.contentsEqual(atPath: path, andPath: other), "map \(name) differs")
        }
    }

    /// Assembly of a stored series takes geometry from the store, not from the files: with
    /// PixelSpacing rewritten in every file after ingest, the stored series keeps the
    /// spacing it was received with (the files' headers are not read), while the files read
    /// from disk (`perfd run`) show the rewritten one.
    @Test func assemblyOfAStoredSeriesDoesNotReadTheFilesHeaders() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.sub("ph"), size: 32, slices: 3, timepoints: 3)
        let store = try JobStore(path: dir.path + "/db.sqlite")
        let rows = try recordAll(ph.files, store: store, seriesUID: ph.seriesUID)
        let received = try #require(DicomFile(path: ph.files[0]).doubles("PixelSpacing"))
        #expect(received != [0.25, 0.25])
        let r = try runTool("dcmodify", ["-nb", "-m", "(0028,0030)=0.25\\0.25"] + ph.files)
        #expect(r.status == 0, "\(r.output)")
        let fromStore = try Assembler.plan(StoredHeaders.sliceHeaders(rows).headers)
        #expect(fromStore.geometry.spacing.y == received[0] && fromStore.geometry.spacing.z == received[1])
        let fromFiles = try Assembler.plan(Assembler.readHeaders(paths: rows.map(\.path)))
        #expect(fromFiles.geometry.spacing.y == 0.25 && fromFiles.geometry.spacing.z == 0.25)
    }

    /// Rows recorded before migration 007 carry no image attributes: those files' headers
    /// are read (and only those), giving the same headers.
    @Test func rowsWithoutImageAttributesFallBackToTheirFiles() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 4)
        let store = try JobStore(path: dir.path + "/db.sqlite")
        let rows = try recordAll(ph.files, store: store, seriesUID: ph.seriesUID, withImage: { $0 % 2 == 0 })
        #expect(rows.filter { $0.image == nil }.count == ph.files.count / 2)
        let stored = try StoredHeaders.sliceHeaders(rows)
        #expect(stored.parsed == ph.files.count / 2)
        expectSame(stored.headers, try Assembler.readHeaders(paths: rows.map(\.path)))
    }

    /// A broken header recorded at ingest is refused at assembly with the same message
    /// naming the file and attribute as when it is read from the file.
    @Test func badStoredAttributesAreRefusedNamingThem() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 2)
        #expect(try runTool("dcmodify", ["-nb", "-m", "(0028,1053)=abc", ph.files[1]]).status == 0)
        let store = try JobStore(path: dir.path + "/db.sqlite")
        let rows = try recordAll(ph.files, store: store, seriesUID: ph.seriesUID)
        var messages: [String] = []
        for attempt in [{ _ = try StoredHeaders.sliceHeaders(rows) }, { _ = try Assembler.readHeaders(paths: rows.map(\.path)) }] {
            do { try attempt(); Issue.record("a non-numeric RescaleSlope was accepted") } catch { messages.append("\(error)") }
        }
        #expect(messages.count == 2 && messages[0] == messages[1], "\(messages)")
        #expect(messages.first?.contains("RescaleSlope is not a number (abc)") == true, "\(messages)")
    }
}
