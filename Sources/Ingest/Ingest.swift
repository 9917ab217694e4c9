import Config
import DICOM
import Foundation
import Store
import Logging
import Operations
import ServiceLifecycle
import Synchronization

/// The storage SCP's policy: who may associate, and what "stored" means (fsync'd file +
/// committed row). Called on DCMTK's worker threads.
public final class IngestHandler: StorageSCPDelegate {
    let store: any PerfdStore
    let allowedPeers: [Config.Peer]
    let logger: Logger
    let metrics: PerfdMetrics
    /// "TLS" or "plain": which listener this handler serves, for the audit trail.
    let listener: String
    /// Refusals are logged, evented and audited once per peer, AE and reason per window.
    let refusals: RefusalRecorder
    /// The SCP's own warnings (refused connections, a full house) alike, by text.
    let warnings: RepeatWindow<String, Int>
    /// When an instance counts as received (the series tracker's quiet and stalled timers).
    let clock: any DaemonClock

    public init(store: any PerfdStore, allowedPeers: [Config.Peer], logger: Logger, metrics: PerfdMetrics = PerfdMetrics(),
                listener: String = "plain", refusals: RefusalRecorder? = nil, clock: any DaemonClock = LiveClock()) {
        self.clock = clock
        self.store = store
        self.allowedPeers = allowedPeers
        self.logger = logger
        self.metrics = metrics
        self.listener = listener
        let refusals = refusals ?? RefusalRecorder(store: store, logger: logger)
        self.refusals = refusals
        let seconds = RefusalRecorder.grouped(Int(refusals.interval.rounded()))
        warnings = RepeatWindow(interval: refusals.interval, overflow: "") { due in
            for d in due {
                let what = d.key.isEmpty ? "other warnings" : "the same warning"
                let line = "... and \(RefusalRecorder.grouped(d.repeats)) more of \(what) in the last \(seconds) s\(d.key.isEmpty ? "" : ": " + d.key)"
                if d.sample >= 3 { logger.error("\(line)") } else { logger.warning("\(line)") }
            }
        }
    }

    public func decide(_ r: AssociationRequest) -> AssociationDecision {
        let decision = Self.decide(r, allowedPeers: allowedPeers)
        switch decision {
        case .accept:
            logger.debug("association accepted", metadata: ["calling_ae": "\(r.callingAE)", "host": "\(r.host)"])
            metrics.add("perfd_associations_total{outcome=\"accepted\"}")
            try? store.audit(AuditEntry(kind: .association, outcome: "accepted", actor: r.callingAE, host: r.host,
                                        detail: "called AE \(r.calledAE), \(listener) listener"))
        case .refuseCallingAE(let why), .refuseHost(let why):
            metrics.add("perfd_associations_total{outcome=\"refused\"}")
            metrics.add("perfd_associations_refused_total")
            if case .refuseHost = decision { metrics.add(#"perfd_associations_refused_by_reason_total{reason="host"}"#) }
            else { metrics.add(#"perfd_associations_refused_by_reason_total{reason="calling_ae"}"#) }
            refusals.refused(host: r.host, actor: r.callingAE, reason: why, logLine: "association refused: \(why)", event: why,
                             detail: "\(why); \(listener) listener")
        }
        return decision
    }

    public func connectionRefused(host: String, kind: String, reason: String) {
        metrics.add("perfd_associations_total{outcome=\"refused\"}")
        metrics.add("perfd_associations_refused_total")
        metrics.add("perfd_associations_refused_by_reason_total{reason=\"\(kind)\"}")
        refusals.refused(host: host, actor: "", reason: reason,
                         logLine: "connection\(host.isEmpty ? "" : " from \(host)") refused on the \(listener) listener: \(reason)",
                         event: "\(host.isEmpty ? "a peer" : host): \(reason)", detail: "\(reason); \(listener) listener")
    }

    /// Pure policy: an empty list refuses everyone; a peer entry without host matches any host.
    /// A calling AE title with control characters or a backslash is not one (PS3.5 6.2: AE
    /// titles are the default repertoire without either) and is refused whatever the list says.
    public static func decide(_ r: AssociationRequest, allowedPeers: [Config.Peer]) -> AssociationDecision {
        if PeerText.hasControlCharacters(r.callingAE) || r.callingAE.contains("\\") {
            return .refuseCallingAE("calling AE \"\(PeerText.escaped(r.callingAE))\" from \(r.host) is not a valid AE title (control characters or a backslash)")
        }
        let byAE = allowedPeers.filter { $0.aeTitle == r.callingAE }
        guard !byAE.isEmpty else {
            return .refuseCallingAE("calling AE \"\(r.callingAE)\" from \(r.host) is not in allowed_peers")
        }
        guard byAE.contains(where: { $0.host == nil || $0.host == r.host || Self.resolves($0.host!, to: r.host) }) else {
            let hosts = byAE.compactMap(\.host).joined(separator: ", ")
            return .refuseHost("calling AE \"\(r.callingAE)\" from \(r.host) is allowed only from \(hosts) (allowed_peers)")
        }
        return .accept
    }

    /// Whether a configured host name resolves to the peer's address.
    static func resolves(_ name: String, to ip: String) -> Bool {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &res) == 0, let first = res else { return false }
        defer { freeaddrinfo(first) }
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let a = p {
            var buf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(a.pointee.ai_addr, a.pointee.ai_addrlen, &buf, socklen_t(buf.count), nil, 0, NI_NUMERICHOST) == 0,
               String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) == ip { return true }
            p = a.pointee.ai_next
        }
        return false
    }

    public func store(_ i: ReceivedInstance) -> (status: UInt16, reason: String) {
        do {
            // The content is compared only when the SOP Instance UID is known already.
            let outcome = try store.recordInstance(InstanceRecord(i.header, path: i.path, fileSize: i.fileSize, callingAE: i.callingAE), sameContent: { DicomFile.sameDataset($0, i.path) }, now: clock.now())
            if let why = outcome.refused {
                // Answered with a failure, so the sender does not count it as stored; the
                // SCP removes the new copy, the stored one is untouched.
                return (DIMSEStatus.dataSetMismatch, why)
            }
            if let kept = outcome.keptPath, kept != i.path {
                unlink(i.path)
                logger.info("instance \(i.sopInstanceUID) received again, identical: acknowledged, the copy stored before is kept")
            }
            metrics.add("perfd_instances_received_total")
            metrics.add("perfd_received_bytes_total", Double(i.fileSize))
            if let job = outcome.supersededJob {
                logger.warning("job \(job) superseded: series \(i.seriesUID) received instance \(i.sopInstanceUID) after the job started")
            }
            return (DIMSEStatus.success, "")
        } catch {
            logger.error("cannot commit instance \(i.sopInstanceUID): \(error)")
            return (DIMSEStatus.outOfResources, "database error: \(error)")
        }
    }

    public func rejected(_ peer: AssociationRequest, status: UInt16, reason: String) {
        let msg = String(format: "C-STORE from %@ (%@) answered 0x%04X: %@", peer.callingAE, peer.host, status, reason)
        logger.warning("\(msg)")
        metrics.add(String(format: "perfd_stores_rejected_total{status=\"0x%04X\"}", status))
        try? store.logEvent(kind: "store_rejected", msg)
    }

    public func log(level: Int, _ message: String) {
        // A warning the SCP repeats for every hostile connection is written once per window
        // with a count.
        if level >= 2, !warnings.note(message, level) { return }
        switch level {
        case 0: logger.debug("\(message)")
        case 1: logger.info("\(message)")
        case 2: logger.warning("\(message)")
        default: logger.error("\(message)")
        }
    }
}

/// Runs the storage SCP listeners (plain and/or TLS): binds at start (so the caller learns
/// of a busy port at once), serves each on its own thread, drains on graceful shutdown.
public final class IngestService: Service, Sendable {
    public let plain: StorageSCP?
    public let secure: StorageSCP?
    let store: any PerfdStore
    let config: Config
    let logger: Logger
    let refusals: RefusalRecorder
    /// Listeners accepting associations now.
    private let serving = Mutex(0)

    public init(config: Config, store: any PerfdStore, logger: Logger, metrics: PerfdMetrics = PerfdMetrics(),
                clock: any DaemonClock = LiveClock()) throws {
        self.config = config
        self.store = store
        self.logger = logger
        try FileManager.default.createDirectory(atPath: config.spoolDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let refusals = RefusalRecorder(store: store, logger: logger)
        self.refusals = refusals
        // One reserve of pre-written spool files per daemon: the first listener fills it.
        func listener(port: Int, tls: TLSSettings?, reserve: Bool) throws -> StorageSCP {
            let handler = IngestHandler(store: store, allowedPeers: config.allowedPeers, logger: logger, metrics: metrics,
                                        listener: tls == nil ? "plain" : "TLS", refusals: refusals, clock: clock)
            return try StorageSCP(config: StorageSCPConfig(
                aeTitle: config.aeTitle, port: UInt16(port), maxAssociations: config.maxAssociations,
                maxConnectionsPerHost: config.maxConnectionsPerHost,
                spoolDirectory: config.spoolDir, minFreeBytes: UInt64(config.minFreeDiskGB * 1_073_741_824),
                spoolReserveBytes: reserve ? UInt64(config.spoolReserveMB * 1_048_576) : 0, tls: tls), delegate: handler)
        }
        plain = config.plainListener ? try listener(port: config.port, tls: nil, reserve: true) : nil
        secure = try config.tls.map { try listener(port: $0.port, tls: $0.settings, reserve: !config.plainListener) }
    }

    /// The plain listener's port, else the TLS one's.
    public var port: Int { Int((plain ?? secure)!.port) }
    public var tlsPort: Int? { secure.map { Int($0.port) } }

    /// Whether every configured listener is accepting associations.
    public var isListening: Bool {
        serving.withLock { $0 } == [plain, secure].compactMap { $0 }.count
    }

    public func run() async throws {
        let listeners = [plain, secure].compactMap { $0 }
        let where_ = [plain.map { "port \($0.port)" }, secure.map { "TLS port \($0.port)" }].compactMap { $0 }.joined(separator: " and ")
        logger.info("listening as \(config.aeTitle) on \(where_)")
        try store.daemonStarted(pid: Int(getpid()), aeTitle: config.aeTitle, port: port)
        serving.withLock { $0 = listeners.count }
        // The listeners are bound and the database migrated: tell systemd (Type=notify).
        SystemdNotify.send("READY=1\nSTATUS=listening as \(config.aeTitle) on \(where_)")
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withTaskGroup(of: Void.self) { group in
                    for scp in listeners {
                        group.addTask {
                            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                                let thread = Thread {
                                    scp.run()
                                    self.serving.withLock { $0 -= 1 }
                                    done.resume()
                                }
                                thread.name = "perfd-scp"
                                thread.start()
                            }
                        }
                    }
                }
            } onGracefulShutdown: {
                SystemdNotify.send("STOPPING=1\nSTATUS=draining associations and jobs")
                listeners.forEach { $0.stop() }
            }
        } onCancel: {
            listeners.forEach { $0.stop() }
        }
        refusals.flush()
        try? store.daemonStopped()
        logger.info("listener stopped")
    }
}
