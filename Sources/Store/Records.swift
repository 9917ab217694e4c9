import Foundation

public enum JobState: String, Codable, Sendable, CaseIterable {
    case queued, running, exporting, done, failed, cancelled, superseded

    /// States in which the job still owns work.
    public var isActive: Bool { self == .queued || self == .running || self == .exporting }
}

public struct JobRecord: Encodable, Sendable, Equatable {
    public var id: Int
    public var seriesUID: String
    public var studyUID: String
    public var pipeline: String
    public var state: JobState
    public var stage: String?
    public var progress: Double
    public var instances: Int
    public var rerun: Int
    public var error: String?
    public var qc: String?
    public var createdAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
    public var updatedAt: Double

    enum CodingKeys: String, CodingKey {
        case id, pipeline, state, stage, progress, instances, rerun, error, qc
        case seriesUID = "series_uid", studyUID = "study_uid"
        case createdAt = "created_at", startedAt = "started_at", finishedAt = "finished_at", updatedAt = "updated_at"
    }

    package init(id: Int, seriesUID: String, studyUID: String, pipeline: String, state: JobState, stage: String? = nil, progress: Double, instances: Int, rerun: Int, error: String? = nil, qc: String? = nil, createdAt: Double, startedAt: Double? = nil, finishedAt: Double? = nil, updatedAt: Double) {
        self.id = id; self.seriesUID = seriesUID; self.studyUID = studyUID; self.pipeline = pipeline; self.state = state; self.stage = stage; self.progress = progress; self.instances = instances; self.rerun = rerun; self.error = error; self.qc = qc; self.createdAt = createdAt; self.startedAt = startedAt; self.finishedAt = finishedAt; self.updatedAt = updatedAt
    }
}

/// What the SCP hands the store for one received instance.
public struct InstanceRecord: Sendable {
    public var sopInstanceUID: String
    public var sopClassUID: String
    public var seriesUID: String
    public var studyUID: String
    public var path: String
    public var fileSize: Int
    public var transferSyntax: String
    public var temporalPosition: Int?
    public var temporalPositions: Int?
    public var acquisitionNumber: Int?
    public var imagesInAcquisition: Int?
    public var instanceNumber: Int?
    public var acquisitionTime: String?
    public var contentTime: String?
    public var position: [Double]?
    public var patientID: String
    public var patientName: String
    public var accessionNumber: String = ""
    public var studyDescription: String
    public var seriesDescription: String
    public var modality: String
    public var callingAE: String
    /// The image attributes 4D assembly needs; nil: not read (the row is marked so and
    /// assembly reads that file's header instead).
    public var image: StoredImage?

    public init(sopInstanceUID: String, sopClassUID: String, seriesUID: String, studyUID: String, path: String,
                fileSize: Int, transferSyntax: String = "", temporalPosition: Int? = nil, temporalPositions: Int? = nil,
                acquisitionNumber: Int? = nil, imagesInAcquisition: Int? = nil, instanceNumber: Int? = nil,
                acquisitionTime: String? = nil, contentTime: String? = nil, position: [Double]? = nil,
                patientID: String = "", patientName: String = "", studyDescription: String = "",
                seriesDescription: String = "", modality: String = "CT", callingAE: String = "", accessionNumber: String = "") {
        self.accessionNumber = accessionNumber
        self.sopInstanceUID = sopInstanceUID; self.sopClassUID = sopClassUID; self.seriesUID = seriesUID
        self.studyUID = studyUID; self.path = path; self.fileSize = fileSize; self.transferSyntax = transferSyntax
        self.temporalPosition = temporalPosition; self.temporalPositions = temporalPositions
        self.acquisitionNumber = acquisitionNumber; self.imagesInAcquisition = imagesInAcquisition
        self.instanceNumber = instanceNumber; self.acquisitionTime = acquisitionTime; self.contentTime = contentTime
        self.position = position; self.patientID = patientID; self.patientName = patientName
        self.studyDescription = studyDescription; self.seriesDescription = seriesDescription
        self.modality = modality; self.callingAE = callingAE
    }
}

/// An instance as stored: what 4D assembly needs to find and order it.
public struct StoredInstance: Sendable, Equatable {
    public var sopInstanceUID: String
    public var path: String
    public var temporalPosition: Int?
    public var acquisitionNumber: Int?
    public var instanceNumber: Int?
    public var acquisitionTime: String?
    public var contentTime: String?
    /// ImagePositionPatient as recorded (three numbers), nil when absent.
    public var position: [Double]? = nil
    /// The image attributes recorded at ingest; nil for rows recorded without them (before
    /// migration 007).
    public var image: StoredImage? = nil
    package init(sopInstanceUID: String, path: String, temporalPosition: Int? = nil, acquisitionNumber: Int? = nil, instanceNumber: Int? = nil, acquisitionTime: String? = nil, contentTime: String? = nil, position: [Double]? = nil, image: StoredImage? = nil) {
        self.sopInstanceUID = sopInstanceUID; self.path = path; self.temporalPosition = temporalPosition; self.acquisitionNumber = acquisitionNumber; self.instanceNumber = instanceNumber; self.acquisitionTime = acquisitionTime; self.contentTime = contentTime; self.position = position; self.image = image
    }

    /// The numbers of a stored position ("x\\y\\z", each written by `String(Double)`, which
    /// reads back to the same value); both stores keep it so.
    package static func numbers(_ text: String) -> [Double]? {
        let v = text.split(separator: "\\").compactMap { Double($0) }
        return v.count == 3 ? v : nil
    }
}

/// The image attributes of an instance as the `instances` table keeps them (migration 007):
/// what 4D assembly checks and uses, so it does not parse every file's header again.
/// Decimal strings are kept as the instance wrote them. Ingest maps them to and from
/// DICOM's `ImageAttributes` (field for field).
public struct StoredImage: Sendable, Equatable {
    public var rows: Int?
    public var columns: Int?
    public var frames: Int?
    public var orientation: String?
    public var pixelSpacing: String?
    public var sliceThickness: String?
    public var rescaleSlope: String?
    public var rescaleIntercept: String?
    public var photometric: String?
    public var bitsAllocated: Int?
    public var bitsStored: Int?
    public var pixelRepresentation: Int?
    public var samplesPerPixel: Int?

    public init(rows: Int?, columns: Int?, frames: Int?, orientation: String?, pixelSpacing: String?, sliceThickness: String?,
                rescaleSlope: String?, rescaleIntercept: String?, photometric: String?, bitsAllocated: Int?, bitsStored: Int?,
                pixelRepresentation: Int?, samplesPerPixel: Int?) {
        self.rows = rows; self.columns = columns; self.frames = frames; self.orientation = orientation
        self.pixelSpacing = pixelSpacing; self.sliceThickness = sliceThickness; self.rescaleSlope = rescaleSlope
        self.rescaleIntercept = rescaleIntercept; self.photometric = photometric; self.bitsAllocated = bitsAllocated
        self.bitsStored = bitsStored; self.pixelRepresentation = pixelRepresentation; self.samplesPerPixel = samplesPerPixel
    }
}

public struct SeriesRecord: Codable, Sendable, Equatable {
    public var seriesUID: String
    public var studyUID: String
    public var patientID: String
    public var seriesDescription: String
    public var modality: String
    public var callingAE: String
    public var firstReceived: Double
    public var lastReceived: Double
    public var instanceCount: Int
    public var bytes: Int
    public var temporalPositions: Int?
    public var imagesInAcquisition: Int?
    public var state: String
    /// When retention deleted its spool files (nil: it holds them).
    public var purgedAt: Double?

    enum CodingKeys: String, CodingKey {
        case seriesUID = "series_uid", studyUID = "study_uid", patientID = "patient_id"
        case seriesDescription = "series_description", modality, callingAE = "calling_ae"
        case firstReceived = "first_received", lastReceived = "last_received", instanceCount = "instances", bytes
        case temporalPositions = "temporal_positions", imagesInAcquisition = "images_in_acquisition", state
        case purgedAt = "purged_at"
    }

    package init(seriesUID: String, studyUID: String, patientID: String, seriesDescription: String, modality: String, callingAE: String, firstReceived: Double, lastReceived: Double, instanceCount: Int, bytes: Int, temporalPositions: Int? = nil, imagesInAcquisition: Int? = nil, state: String, purgedAt: Double? = nil) {
        self.seriesUID = seriesUID; self.studyUID = studyUID; self.patientID = patientID; self.seriesDescription = seriesDescription; self.modality = modality; self.callingAE = callingAE; self.firstReceived = firstReceived; self.lastReceived = lastReceived; self.instanceCount = instanceCount; self.bytes = bytes; self.temporalPositions = temporalPositions; self.imagesInAcquisition = imagesInAcquisition; self.state = state; self.purgedAt = purgedAt
    }
}

public struct JobEvent: Encodable, Sendable {
    public var at: Double
    public var level: String
    public var message: String
    package init(at: Double, level: String, message: String) {
        self.at = at; self.level = level; self.message = message
    }
}

public struct StageRecord: Encodable, Sendable {
    public var stage: String
    public var startedAt: Double
    public var finishedAt: Double?
    public var result: String?

    enum CodingKeys: String, CodingKey {
        case stage, result, startedAt = "started_at", finishedAt = "finished_at"
    }
    package init(stage: String, startedAt: Double, finishedAt: Double? = nil, result: String? = nil) {
        self.stage = stage; self.startedAt = startedAt; self.finishedAt = finishedAt; self.result = result
    }
}

public struct DaemonRecord: Codable, Sendable {
    public var pid: Int
    public var aeTitle: String
    public var port: Int
    public var startedAt: Double
    public var heartbeatAt: Double
    public var stoppedAt: Double?

    enum CodingKeys: String, CodingKey {
        case pid, port, aeTitle = "ae_title", startedAt = "started_at", heartbeatAt = "heartbeat_at", stoppedAt = "stopped_at"
    }
    package init(pid: Int, aeTitle: String, port: Int, startedAt: Double, heartbeatAt: Double, stoppedAt: Double? = nil) {
        self.pid = pid; self.aeTitle = aeTitle; self.port = port; self.startedAt = startedAt; self.heartbeatAt = heartbeatAt; self.stoppedAt = stoppedAt
    }
}

public struct GlobalEvent: Codable, Sendable {
    public var at: Double
    public var kind: String
    public var message: String
    package init(at: Double, kind: String, message: String) {
        self.at = at; self.kind = kind; self.message = message
    }
}
