import CSQLite
import Foundation
import Store

// Rows read back into the Store target's records.

extension JobRecord {
    init(_ r: Row) {
        self.init(
            id: r["id"].int ?? 0,
            seriesUID: r["series_uid"].text ?? "",
            studyUID: r["study_uid"].text ?? "",
            pipeline: r["pipeline"].text ?? "",
            state: JobState(rawValue: r["state"].text ?? "") ?? .failed,
            stage: r["stage"].text,
            progress: r["progress"].double ?? 0,
            instances: r["instances"].int ?? 0,
            rerun: r["rerun"].int ?? 0,
            error: r["error"].text,
            qc: r["qc"].text,
            createdAt: r["created_at"].double ?? 0,
            startedAt: r["started_at"].double,
            finishedAt: r["finished_at"].double,
            updatedAt: r["updated_at"].double ?? 0
        )
    }
}

extension SeriesRecord {
    init(_ r: Row) {
        self.init(
            seriesUID: r["series_uid"].text ?? "",
            studyUID: r["study_uid"].text ?? "",
            patientID: r["patient_id"].text ?? "",
            seriesDescription: r["series_description"].text ?? "",
            modality: r["modality"].text ?? "",
            callingAE: r["calling_ae"].text ?? "",
            firstReceived: r["first_received"].double ?? 0,
            lastReceived: r["last_received"].double ?? 0,
            instanceCount: r["instance_count"].int ?? 0,
            bytes: r["bytes"].int ?? 0,
            temporalPositions: r["temporal_positions"].int,
            imagesInAcquisition: r["images_in_acquisition"].int,
            state: r["state"].text ?? "",
            purgedAt: r["purged_at"].double
        )
    }
}

extension OutboxItem {
    init(_ r: Row) {
        self.init(
            id: r["id"].int ?? 0,
            jobID: r["job_id"].int ?? 0,
            destinationID: r["destination_id"].int ?? 0,
            destination: "\(r["ae_title"].text ?? "")@\(r["host"].text ?? ""):\(r["port"].int ?? 0)",
            seriesUID: r["series_uid"].text ?? "",
            sopInstanceUID: r["sop_instance_uid"].text ?? "",
            path: r["path"].text ?? "",
            kind: OutboxKind(rawValue: r["kind"].text ?? "") ?? .result,
            state: OutboxState(rawValue: r["state"].text ?? "") ?? .pending,
            attempts: r["attempts"].int ?? 0,
            nextAttemptAt: r["next_attempt_at"].double ?? 0,
            lastError: r["last_error"].text,
            createdAt: r["created_at"].double ?? 0
        )
    }

    /// Every column of a row and its destination.
    static let select = "SELECT o.*, d.ae_title, d.host, d.port FROM outbox o JOIN destinations d ON d.id = o.destination_id"
}

extension StoredImage {
    /// The row's attributes, or nil when it was recorded without them.
    init?(_ r: Row) {
        guard r["header_recorded"].int == 1 else { return nil }
        self.init(rows: r["image_rows"].int, columns: r["image_columns"].int, frames: r["number_of_frames"].int,
                  orientation: r["orientation"].text, pixelSpacing: r["pixel_spacing"].text, sliceThickness: r["slice_thickness"].text,
                  rescaleSlope: r["rescale_slope"].text, rescaleIntercept: r["rescale_intercept"].text, photometric: r["photometric"].text,
                  bitsAllocated: r["bits_allocated"].int, bitsStored: r["bits_stored"].int,
                  pixelRepresentation: r["pixel_representation"].int, samplesPerPixel: r["samples_per_pixel"].int)
    }
}
