import Config
import DICOM
import Foundation
import Store
import Logging
import Operations
import ServiceLifecycle
import Synchronization

/// Backoff policy of the outbox: exponential from `initial` to `max`, give up after `giveUp`.
public struct ExportBackoff: Sendable {
    public var initial: Double, max: Double, giveUp: Double
    public init(_ r: Config.ExportRetry) { initial = r.initialSeconds; max = r.maxSeconds; giveUp = r.giveUpHours * 3600 }

    /// Seconds to wait after the `attempts`-th failed attempt (1-based).
    public func delay(afterAttempt attempts: Int) -> Double {
        Swift.min(max, initial * pow(2, Double(Swift.max(0, attempts - 1))))
    }
}

/// Sends the outbox to the PACS: one association per (job, destination) batch, DCMTK's
/// storage SCU with Nagle off, exponential backoff, survives restarts (the outbox is in
/// SQLite). A file leaves the outbox only when the PACS answered success.
public struct ExporterService: Service {
    let store: any PerfdStore
    let config: Config
    let logger: Logger
    let poll: Duration
    let metrics: PerfdMetrics
    let clock: any DaemonClock
    /// The configured destinations by their id in the store, looked up (and recorded) at
    /// the first batch of this start, not at every batch: the config does not change while
    /// the daemon runs (a changed config takes a restart, which looks them up again).
    let destinations = ConfiguredDestinations()
    /// How many times this exporter looked its configured destinations up in the store.
    public var destinationLookups: Int { destinations.resolutions }

    public init(store: any PerfdStore, config: Config, logger: Logger, poll: Duration = .milliseconds(300), metrics: PerfdMetrics = PerfdMetrics(),
                clock: any DaemonClock = LiveClock()) {
        self.store = store; self.config = config; self.logger = logger; self.poll = poll; self.metrics = metrics; self.clock = clock
    }

    public func run() async throws {
        // One long-lived thread: associations are sent one batch at a time.
        let executor = BlockingExecutor(threads: 1, name: "perfd-export")
        defer { executor.stop() }
        await PollingLoop.run(every: poll, wakeOn: store.outboxFilled, clock: clock) {
            if await executor.run({ (try? self.sendNextBatch(now: clock.now())) ?? false }) { return true }
            // Idle: settle any job whose export drained without being settled (a crash
            // between markSent and settleExport; see JobStore.settleDrainedExports).
            if let settled = try? store.settleDrainedExports(now: clock.now()), !settled.isEmpty {
                logger.notice("settled the export of job(s) \(settled.map(String.init).joined(separator: ", ")), left unsettled before")
            }
            return false
        }
    }

    /// Sends one due batch; returns whether there was one.
    @discardableResult
    public func sendNextBatch(now: Double = WallClock.now()) throws -> Bool {
        let batch = try store.nextOutboxBatch(now: now)
        guard let first = batch.first else { return false }
        let backoff = ExportBackoff(config.exportRetry)
        guard let peer = try store.destination(id: first.destinationID) else {
            try store.markFailed(batch.map(\.id), error: "destination \(first.destinationID) is not in the database")
            try store.settleExport(job: first.jobID)
            return true
        }
        // TLS settings live in the config, found by the destination's id; a destination
        // dropped from the config since the row was queued is sent to as recorded.
        let configured = try destinations.byID { try configuredDestinations() }[peer.id]
        let target = DICOMPeer(aeTitle: peer.aeTitle, host: peer.host, port: peer.port, tls: configured?.tls)
        var sent: [Int] = [], refused: [(Int, String)] = []
        var withdrawn: Set<Int> = []
        var associationError: String?
        // Success, or a warning (0x0001, 0xB000–0xBFFF): the PACS has the object.
        func accepted(_ status: UInt16) -> Bool { status == 0 || status == 1 || (status & 0xF000) == 0xB000 }
        // Each file is looked up right before it goes (a superseded or cancelled job's rows
        // are withdrawn while its batch is on the wire), and marked sent as soon as the PACS
        // has accepted it, so a crash mid-batch resends only what the PACS did not answer.
        var statuses = [UInt16](repeating: 0xFFFF, count: batch.count)
        do {
            statuses = try StorageSCU.send(batch.map(\.path), to: target, callingAE: config.aeTitle, shouldSend: { i in
                // A row that cannot be read is not sent now: it stays pending for the retry.
                guard (try? store.isPending(outbox: batch[i].id)) == true else { withdrawn.insert(batch[i].id); return false }
                return true
            }, answered: { i, status in
                guard accepted(status) else { return }
                do {
                    try store.markSent([batch[i].id], now: now)
                    sent.append(batch[i].id)
                } catch {
                    logger.error("cannot record that \(batch[i].sopInstanceUID) reached \(first.destination): \(error)")
                }
            })
            for (item, status) in zip(batch, statuses) where !accepted(status) && !withdrawn.contains(item.id) {
                refused.append((item.id, String(format: "%@ answered 0x%04X for %@", target.description, status, item.sopInstanceUID)))
            }
        } catch let partial as StorageSCU.PartialFailure {
            // Files the PACS accepted before the association failed are sent; the rest retry.
            statuses = partial.statuses
            associationError = "\(partial)"
        } catch {
            associationError = "\(error)"
        }
        // Accepted files whose row could not be marked at once: marked now (or the error ends
        // the batch, and they are sent again).
        let unmarked = zip(batch, statuses).filter { accepted($1) && !sent.contains($0.id) }.map { $0.0.id }
        if !unmarked.isEmpty {
            try store.markSent(unmarked, now: now)
            sent += unmarked
        }
        if !sent.isEmpty {
            metrics.add("perfd_exported_instances_total", Double(sent.count))
            logger.info("exported \(sent.count) files of job \(first.jobID) to \(first.destination)")
        }
        if !withdrawn.isEmpty {
            logger.notice("\(withdrawn.count) files of job \(first.jobID) not sent to \(first.destination): withdrawn while the batch was going out")
        }
        let failed = associationError.map { e in batch.filter { !sent.contains($0.id) && !withdrawn.contains($0.id) }.map { ($0.id, e) } } ?? refused
        var gaveUp: Set<Int> = []
        for (id, error) in failed {
            guard let item = batch.first(where: { $0.id == id }) else { continue }
            if now - item.createdAt >= backoff.giveUp {
                try store.markFailed([id], error: "gave up after \(item.attempts + 1) attempts: \(error)")
                gaveUp.insert(id)
            } else {
                try store.markRetry([id], error: error, nextAttemptAt: now + backoff.delay(afterAttempt: item.attempts + 1))
            }
        }
        audit(batch: batch.filter { !withdrawn.contains($0.id) }, failed: Dictionary(failed, uniquingKeysWith: { a, _ in a }), gaveUp: gaveUp, target: target, now: now)
        if !failed.isEmpty { metrics.add("perfd_export_retries_total", 1) }
        if let e = associationError {
            let next = backoff.delay(afterAttempt: first.attempts + 1)
            logger.warning("export of job \(first.jobID) to \(first.destination) failed (attempt \(first.attempts + 1)), retrying in \(Int(next)) s: \(e)")
        }
        try store.setExportProgress(job: first.jobID, now: now)
        try store.settleExport(job: first.jobID, now: now)
        return associationError == nil
    }

    /// The configured destinations by their id in the store.
    func configuredDestinations() throws -> [Int: Config.Destination] {
        var byID: [Int: Config.Destination] = [:]
        for d in config.destinations { byID[try store.destinationID(aeTitle: d.aeTitle, host: d.host, port: d.port)] = d }
        return byID
    }

    /// One audit row per series in the batch: sent, or retry/failed (given up) with the reason.
    func audit(batch: [OutboxItem], failed: [Int: String], gaveUp: Set<Int>, target: DICOMPeer, now: Double) {
        for (series, items) in Dictionary(grouping: batch, by: \.seriesUID).sorted(by: { $0.key < $1.key }) {
            let bad = items.filter { failed[$0.id] != nil }
            let outcome = bad.isEmpty ? "sent" : (bad.contains { gaveUp.contains($0.id) } ? "failed" : "retry")
            let why = bad.first.flatMap { failed[$0.id] }.map { ": " + $0 } ?? ""
            try? store.audit(AuditEntry(kind: .export, outcome: outcome, actor: target.aeTitle, host: "\(target.host):\(target.port)",
                                        seriesUID: series, jobID: items[0].jobID,
                                        detail: "\(items.count - bad.count) of \(items.count) files accepted by \(target.description)\(why)"), now: now)
        }
    }
}

/// The exporter's configured destinations by id, resolved once (see `ExporterService.destinations`).
final class ConfiguredDestinations: Sendable {
    private let resolved = Mutex<[Int: Config.Destination]?>(nil)
    private let lookups = Mutex(0)
    /// How many times the ids were looked up in the store (tests read it).
    var resolutions: Int { lookups.withLock { $0 } }

    func byID(_ resolve: () throws -> [Int: Config.Destination]) throws -> [Int: Config.Destination] {
        try resolved.withLock { cached in
            if let cached { return cached }
            let ids = try resolve()
            lookups.withLock { $0 += 1 }
            cached = ids
            return ids
        }
    }
}
