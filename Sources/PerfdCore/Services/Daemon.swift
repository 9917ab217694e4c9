import Foundation
import JobStore
import Logging
import ServiceLifecycle

/// Builds perfd's services from a config, in dependency order (they stop in reverse).
public struct Daemon {
    public let store: JobStore
    public let ingest: IngestService
    public let services: [Service]

    public init(config: Config, logger: Logger) throws {
        DICOMInit.once
        store = try JobStore(path: config.database)
        _ = try SpoolReconciler.run(spoolDir: config.spoolDir, store: store, logger: logger)
        ingest = try IngestService(config: config, store: store, logger: logger)
        services = [
            HeartbeatService(store: store, logger: logger),
            ExporterService(store: store, config: config, logger: logger),
            JobWorkerService(store: store, config: config, logger: logger),
            SeriesTrackerService(store: store, config: config, logger: logger),
            ingest,
        ]
    }

    /// Runs until SIGTERM/SIGINT, then drains: the listener finishes running associations,
    /// workers stop between stages.
    public func run(logger: Logger) async throws {
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }
}

import DICOM
enum DICOMInit {
    static let once: Void = DCMTK.initialize()
}
