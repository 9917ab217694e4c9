import DICOM
import Foundation
import Store
import Logging

/// Start-up check of the spool against the database. A file that is in the spool but has
/// no row was fsync'd but its commit was lost (a power cut at synchronous=NORMAL): it is
/// indexed again. A leftover temporary file was never acknowledged: it is removed. A row
/// whose file is missing was committed while its directory entry was still being synced
/// (the acknowledgement waits for both): it is dropped.
public enum SpoolReconciler {
    public struct Outcome: Sendable, Equatable {
        public var reindexed = 0
        public var removedTemporary = 0
        public var unreadable: [String] = []
        public var droppedRows = 0
    }

    public static func run(spoolDir: String, store: any PerfdStore, logger: Logger) throws -> Outcome {
        var out = Outcome()
        let fm = FileManager.default
        guard let seriesDirs = try? fm.contentsOfDirectory(atPath: spoolDir) else { return out }
        let known = try store.knownPaths()
        let missing = known.filter { !fm.fileExists(atPath: $0) }.sorted()
        if !missing.isEmpty {
            let dropped = try store.dropUnacknowledged(paths: missing)
            out.droppedRows = dropped.count
            for sop in dropped { logger.warning("instance \(sop) forgotten: its spool file is missing (it was never acknowledged)") }
        }
        for dir in seriesDirs.sorted() {
            let dirPath = spoolDir + "/" + dir
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: dirPath, isDirectory: &isDir), isDir.boolValue,
                  let names = try? fm.contentsOfDirectory(atPath: dirPath) else { continue }
            for name in names {
                let path = dirPath + "/" + name
                if dir == ".incoming" {
                    // Partly received, never acknowledged.
                    try? fm.removeItem(atPath: path)
                    out.removedTemporary += 1
                    continue
                }
                if name.hasPrefix(".") && name.hasSuffix(".tmp") {
                    try? fm.removeItem(atPath: path)
                    out.removedTemporary += 1
                    continue
                }
                guard name.hasSuffix(".dcm"), !known.contains(path) else { continue }
                do {
                    let f = try DicomFile(path: path)
                    let header = InstanceHeader(file: f)
                    guard !header.sopInstanceUID.isEmpty, !header.seriesUID.isEmpty, !header.studyUID.isEmpty else {
                        throw DICOMError(.readFailed, "UIDs missing")
                    }
                    let size = (try? fm.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
                    let outcome = try store.recordInstance(InstanceRecord(header, path: path, fileSize: size, callingAE: "(recovered)"),
                                                           sameContent: { DicomFile.sameDataset($0, path) })
                    if let why = outcome.refused {
                        // Never acknowledged (it has no row), and in conflict with what is.
                        try? fm.removeItem(atPath: path)
                        logger.warning("spool file \(path) removed: \(why)")
                        continue
                    }
                    if let kept = outcome.keptPath, kept != path {
                        try? fm.removeItem(atPath: path)
                        continue
                    }
                    out.reindexed += 1
                } catch {
                    out.unreadable.append(path)
                    logger.error("spool file \(path) is unreadable and was left in place: \(error)")
                }
            }
        }
        if out.reindexed > 0 || out.removedTemporary > 0 || out.droppedRows > 0 {
            logger.notice("spool reconciled: \(out.reindexed) files re-indexed, \(out.removedTemporary) temporary files removed, \(out.droppedRows) rows without a file dropped")
        }
        return out
    }
}
