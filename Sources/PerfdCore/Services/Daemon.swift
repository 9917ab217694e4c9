import Config
import Foundation
import Ingest
import Jobs
import JobStore
import Logging
import Operations
import ServiceLifecycle
import Store

/// Builds perfd's services from a config, in dependency order (they stop in reverse).
public struct Daemon {
    public let store: JobStore
    public let ingest: IngestService
    public let metrics = PerfdMetrics()
    public let metricsServer: MetricsServer?
    public let services: [Service]
    /// Held while the daemon lives: no second daemon on this database or spool.
    public let lock: DaemonLock

    /// What `perfd serve` never changes: the in-process test harness (Tests/PerfdTestSupport)
    /// sets these to run the daemon inside a test process.
    public struct Options: Sendable {
        /// The services' clock (timers, back-off, retention window, heartbeat, poll waits).
        public var clock: any DaemonClock = LiveClock()
        /// Let a port be 0, so the kernel picks free ones; read them back from
        /// `ingest.port` / `ingest.tlsPort` / `metricsServer?.port`. A config file with
        /// port 0 is still refused by `perfd serve` and `perfd check-config`.
        public var ephemeralPorts = false
        public init(clock: any DaemonClock = LiveClock(), ephemeralPorts: Bool = false) {
            self.clock = clock; self.ephemeralPorts = ephemeralPorts
        }
    }

    /// Runs `ConfigValidation` first (the same checks as `perfd check-config`) and refuses
    /// to start on any problem, before the lock, the database or a port is touched.
    public init(config: Config, configPath: String, logger: Logger, options: Options = Options()) throws {
        let clock = options.clock
        let validation = ConfigValidation.run(config, configPath: configPath, ephemeralPorts: options.ephemeralPorts)
        guard validation.ok else {
            throw ConfigError(path: configPath, problems: validation.problems + ["(perfd check-config --config \(configPath) lists the same problems)"])
        }
        for (pipeline, dir) in validation.models.sorted(by: { $0.key < $1.key }) {
            logger.info("model for pipeline \(pipeline): \(dir)")
        }
        // Before anything is opened, reconciled or resumed.
        lock = try DaemonLock(database: config.database, spoolDir: config.spoolDir)
        DICOMInit.once
        let store = try JobStore(path: config.database)
        self.store = store
        _ = try SpoolReconciler.run(spoolDir: config.spoolDir, store: store, logger: logger)
        let ingest = try IngestService(config: config, store: store, logger: logger, metrics: metrics, clock: clock)
        self.ingest = ingest
        let minFree = config.minFreeDiskGB * 1_073_741_824
        metricsServer = try config.metricsPort.map { [metrics] port in
            try MetricsServer(
                address: config.metricsAddress, port: port,
                metrics: { metrics.render(store: store, spoolDir: config.spoolDir, minFreeBytes: minFree) },
                health: HealthChecks(listener: { ingest.isListening }, database: { store.healthProblem() },
                                     spool: { HealthChecks.spool(config.spoolDir, minFreeBytes: minFree) }),
                logger: logger)
        }
        services = [
            HeartbeatService(store: store, logger: logger, clock: clock),
            RetentionService(store: store, config: config, logger: logger, clock: clock),
            ExporterService(store: store, config: config, logger: logger, metrics: metrics, clock: clock),
            JobWorkerService(store: store, config: config, logger: logger, metrics: metrics, clock: clock),
            SeriesTrackerService(store: store, config: config, logger: logger, clock: clock),
        ] + (metricsServer.map { [$0] } ?? []) + [ingest]
    }

    /// Runs until SIGTERM/SIGINT, then drains: the listener finishes running associations,
    /// workers stop between stages.
    public func run(logger: Logger) async throws {
        try await serviceGroup(logger: logger).run()
    }

    /// The services as one group, drained by SIGTERM/SIGINT — or, with `signals` false (a
    /// daemon inside a test process), only by `triggerGracefulShutdown()`.
    public func serviceGroup(logger: Logger, signals: Bool = true) -> ServiceGroup {
        ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: signals ? [.sigterm, .sigint] : [],
            logger: logger))
    }
}

import DICOM
enum DICOMInit {
    static let once: Void = DCMTK.initialize()
}
