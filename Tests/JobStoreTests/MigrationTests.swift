import Foundation
@testable import JobStore
import PerfdTestSupport
import Store
import Testing

@Suite struct MigrationTests {
    /// A database written before outbox rows named their destination by id: its pending and
    /// sent rows keep their destination (split from "AE@host:port", an IPv6 host included)
    /// and the exporter's batch query finds them.
    @Test func outboxRowsWithDestinationTextMoveToDestinationIDs() throws {
        let dir = TempDir()
        let path = dir.path + "/db.sqlite"
        do {
            // The schema as migrations 001–004 left it, with rows of that time.
            let c = try Connection(path: path)
            try c.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
            for m in Migrations.all.prefix(while: { $0.name != "006_outbox_destination_id" }) {
                try c.execute(m.sql)
                try c.execute("INSERT INTO migrations (name, applied_at) VALUES (?, 0)", [.text(m.name)])
            }
            try c.execute("""
                INSERT INTO series (series_uid, study_uid, first_received, last_received, state) VALUES ('1.2', '1', 0, 0, 'complete');
                INSERT INTO jobs (id, series_uid, study_uid, pipeline, state, progress, instances, created_at, updated_at)
                    VALUES (7, '1.2', '1', 'baseline-t0', 'exporting', 0, 1, 0, 0);
                INSERT INTO outbox (job_id, destination, series_uid, sop_instance_uid, path, kind, state, attempts, next_attempt_at, created_at)
                    VALUES (7, 'PACS@127.0.0.1:4242', '2.25.1', '2.25.1.1', '/out/1.dcm', 'result', 'pending', 0, 0, 0),
                           (7, 'PACS@127.0.0.1:4242', '2.25.1', '2.25.1.2', '/out/2.dcm', 'result', 'sent', 1, 0, 0),
                           (7, 'ARCHIVE@::1:11112', '2.25.1', '2.25.1.1', '/out/1.dcm', 'failure_notice', 'pending', 0, 0, 0);
                """)
        }
        let store = try JobStore(path: path)
        let rows = try store.outbox(job: 7)
        #expect(rows.map(\.destination) == ["PACS@127.0.0.1:4242", "PACS@127.0.0.1:4242", "ARCHIVE@::1:11112"])
        #expect(rows.map(\.state) == [.pending, .sent, .pending])
        #expect(rows.map(\.kind) == [.result, .result, .failureNotice])
        let archive = try #require(try store.destination(id: rows[2].destinationID))
        #expect(archive.aeTitle == "ARCHIVE" && archive.host == "::1" && archive.port == 11112)
        #expect(rows[0].destinationID == rows[1].destinationID && rows[0].destinationID != rows[2].destinationID)
        // The same peer configured again gets the id its old rows have.
        #expect(try store.destinationID(aeTitle: "PACS", host: "127.0.0.1", port: 4242) == rows[0].destinationID)
        let batch = try store.nextOutboxBatch(now: 1)
        #expect(batch.count == 1 && batch[0].sopInstanceUID == "2.25.1.1" && batch[0].destination == "PACS@127.0.0.1:4242")
    }

    /// Instance rows written before migration 007 keep what they had and read back with no
    /// image attributes (assembly reads their files' headers); a row recorded after it holds
    /// them, an instance recorded without them (reconciled from an unreadable header) is
    /// marked so.
    @Test func instanceRowsFromBeforeImageHeadersReadBackWithout() throws {
        let dir = TempDir()
        let path = dir.path + "/db.sqlite"
        do {
            let c = try Connection(path: path)
            try c.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
            for m in Migrations.all.prefix(while: { $0.name != "007_instance_image_header" }) {
                try c.execute(m.sql)
                try c.execute("INSERT INTO migrations (name, applied_at) VALUES (?, 0)", [.text(m.name)])
            }
            try c.execute("""
                INSERT INTO series (series_uid, study_uid, first_received, last_received, state) VALUES ('1.2', '1', 0, 0, 'receiving');
                INSERT INTO instances (sop_instance_uid, series_uid, sop_class_uid, path, file_size, temporal_position, position, received_at)
                    VALUES ('1.2.1', '1.2', '1.2.840.10008.5.1.4.1.1.2', '/spool/1.dcm', 10, 1, '0.5\\-2.0\\30.0', 0);
                """)
        }
        let store = try JobStore(path: path)
        var r = InstanceRecord(sopInstanceUID: "1.2.2", sopClassUID: "1.2.840.10008.5.1.4.1.1.2", seriesUID: "1.2", studyUID: "1",
                               path: "/spool/2.dcm", fileSize: 10, temporalPosition: 2, position: [0.5, -2, 30])
        let image = StoredImage(rows: 512, columns: 512, frames: nil, orientation: "1\\0\\0\\0\\1\\0", pixelSpacing: "0.48828125\\0.48828125",
                                sliceThickness: "0.5", rescaleSlope: "1", rescaleIntercept: "-1024", photometric: "MONOCHROME2",
                                bitsAllocated: 16, bitsStored: 12, pixelRepresentation: 0, samplesPerPixel: 1)
        r.image = image
        try store.recordInstance(r)
        var bare = r
        bare.sopInstanceUID = "1.2.3"; bare.path = "/spool/3.dcm"; bare.image = nil
        try store.recordInstance(bare)
        let rows = try store.instances(ofSeries: "1.2").sorted { $0.sopInstanceUID < $1.sopInstanceUID }
        #expect(rows.map(\.image) == [nil, image, nil])
        #expect(rows.map(\.position) == [[0.5, -2, 30], [0.5, -2, 30], [0.5, -2, 30]])
        #expect(rows[0].temporalPosition == 1 && rows[0].path == "/spool/1.dcm")
    }
}
