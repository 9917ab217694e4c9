import Foundation
internal import CDCMTK

/// Who is asking to associate.
public struct AssociationRequest: Sendable {
    public var callingAE: String
    public var calledAE: String
    public var host: String
    public init(callingAE: String, calledAE: String, host: String) {
        self.callingAE = callingAE; self.calledAE = calledAE; self.host = host
    }
}

public enum AssociationDecision: Sendable {
    case accept
    case refuseCallingAE(String)
    case refuseHost(String)
}

/// One instance received, written to the spool and fsync'd — not yet acknowledged.
public struct ReceivedInstance: Sendable {
    public var path: String
    /// The dataset's header fields (the same extraction files read from disk get).
    public var header: InstanceHeader
    public var callingAE: String
    public var peerHost: String
    public var fileSize: Int

    public init(path: String, header: InstanceHeader, callingAE: String, peerHost: String, fileSize: Int) {
        self.path = path; self.header = header; self.callingAE = callingAE; self.peerHost = peerHost; self.fileSize = fileSize
    }

    public var sopInstanceUID: String { header.sopInstanceUID }
    public var seriesUID: String { header.seriesUID }
}

/// What the SCP asks of its owner. Every method is called on a DCMTK worker thread (one
/// per association), never on Swift's cooperative pool, and may block (SQLite commits).
public protocol StorageSCPDelegate: AnyObject, Sendable {
    func decide(_ request: AssociationRequest) -> AssociationDecision
    /// Commits the instance and returns the DIMSE status to answer with; a non-success
    /// status makes the SCP delete the file. `reason` explains a failure.
    func store(_ instance: ReceivedInstance) -> (status: UInt16, reason: String)
    func rejected(_ peer: AssociationRequest, status: UInt16, reason: String)
    func log(level: Int, _ message: String)
    /// A connection refused before an association was negotiated (failed TLS handshake,
    /// not DICOM); `host` is "" when unknown.
    func connectionRefused(host: String, reason: String)
    /// The same with the kind of refusal, for counters: "handshake_timeout", "not_dicom",
    /// "tls", "host_limit" (max_connections_per_host) or "association_limit" (max_associations).
    func connectionRefused(host: String, kind: String, reason: String)
}

extension StorageSCPDelegate {
    public func connectionRefused(host: String, reason: String) {
        log(level: 2, "connection\(host.isEmpty ? "" : " from \(host)") refused: \(reason)")
    }
    public func connectionRefused(host: String, kind: String, reason: String) {
        connectionRefused(host: host, reason: reason)
    }
}

public struct StorageSCPConfig: Sendable {
    public var aeTitle: String
    public var port: UInt16
    public var maxAssociations: Int
    /// Open connections (pending handshakes and associations) from one peer address.
    public var maxConnectionsPerHost: Int
    public var spoolDirectory: String
    public var minFreeBytes: UInt64
    /// Bytes of pre-written spool files kept ready (filled while no instance arrives); 0: none.
    public var spoolReserveBytes: UInt64
    /// Names of those files in the spool's .incoming directory start with this.
    public static let reserveFilePrefix = PDCM_BLANK_PREFIX
    public var acseTimeoutSeconds: Int
    public var dimseTimeoutSeconds: Int
    /// Every association on this listener is DICOM over TLS; nil: plain TCP.
    public var tls: TLSSettings?

    public init(aeTitle: String, port: UInt16, maxAssociations: Int = 8, maxConnectionsPerHost: Int = 16, spoolDirectory: String,
                minFreeBytes: UInt64 = 0, spoolReserveBytes: UInt64 = 0, acseTimeoutSeconds: Int = 10,
                dimseTimeoutSeconds: Int = 60, tls: TLSSettings? = nil) {
        self.tls = tls
        self.maxConnectionsPerHost = maxConnectionsPerHost
        self.spoolReserveBytes = spoolReserveBytes
        self.aeTitle = aeTitle
        self.port = port
        self.maxAssociations = maxAssociations
        self.spoolDirectory = spoolDirectory
        self.minFreeBytes = minFreeBytes
        self.acseTimeoutSeconds = acseTimeoutSeconds
        self.dimseTimeoutSeconds = dimseTimeoutSeconds
    }
}

/// DCMTK's storage SCP (C-ECHO; C-STORE of CT and Enhanced CT) behind a Swift face.
/// `init` binds the port; `run()` blocks its thread until `stop()`, then drains.
// @unchecked Sendable: the handle is used by run() on one thread and stop() from
// another; pdcm_scp_stop only sets an atomic flag, and pdcm_scp_port reads a value fixed
// at creation.
public final class StorageSCP: @unchecked Sendable {
    private let handle: OpaquePointer
    private let box: Unmanaged<DelegateBox>
    public let port: UInt16

    public init(config: StorageSCPConfig, delegate: StorageSCPDelegate) throws {
        DCMTK.initialize()
        let box = Unmanaged.passRetained(DelegateBox(delegate))
        var callbacks = pdcm_scp_callbacks()
        callbacks.ctx = box.toOpaque()
        callbacks.accept = { ctx, info, reason, len in
            let d = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue().delegate
            switch d.decide(AssociationRequest(info!.pointee)) {
            case .accept: return Int32(PDCM_ACCEPT)
            case .refuseCallingAE(let why): copy(why, into: reason, len); return Int32(PDCM_REFUSE_CALLING_AE)
            case .refuseHost(let why): copy(why, into: reason, len); return Int32(PDCM_REFUSE_HOST)
            }
        }
        callbacks.store = { ctx, info, reason, len in
            let d = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue().delegate
            let (status, why) = d.store(ReceivedInstance(info!.pointee))
            if status != 0 { copy(why, into: reason, len) }
            return status
        }
        callbacks.reject = { ctx, peer, status, reason in
            let d = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue().delegate
            d.rejected(AssociationRequest(peer!.pointee), status: status, reason: string(reason))
        }
        callbacks.log = { ctx, level, message in
            let d = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue().delegate
            d.log(level: Int(level), string(message))
        }
        callbacks.refused_kind = { ctx, host, kind, reason in
            let d = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue().delegate
            d.connectionRefused(host: string(host), kind: string(kind), reason: string(reason))
        }
        let (h, err): (OpaquePointer?, String) = config.aeTitle.withCString { ae in
            config.spoolDirectory.withCString { spool in withTLSConfig(config.tls) { tls in
                var c = pdcm_scp_config()
                c.ae_title = ae
                c.port = config.port
                c.max_associations = Int32(config.maxAssociations)
                c.max_connections_per_host = Int32(config.maxConnectionsPerHost)
                c.spool_dir = spool
                c.min_free_bytes = config.minFreeBytes
                c.spool_reserve_bytes = config.spoolReserveBytes
                c.acse_timeout_s = Int32(config.acseTimeoutSeconds)
                c.dimse_timeout_s = Int32(config.dimseTimeoutSeconds)
                c.tls = tls
                return withErrorBuffer { pdcm_scp_create(&c, &callbacks, $0, $1) }
            } }
        }
        guard let h else {
            box.release()
            throw DICOMError(.listenFailed, err)
        }
        self.handle = h
        self.box = box
        self.port = pdcm_scp_port(h)
    }

    deinit {
        pdcm_scp_destroy(handle)
        box.release()
    }

    /// Serves associations until `stop()`; then waits for running ones. Blocks.
    public func run() { _ = pdcm_scp_run(handle) }

    /// Makes `run()` return within about a second (after draining). Any thread.
    public func stop() { pdcm_scp_stop(handle) }

    public var activeAssociations: Int { Int(pdcm_scp_active_associations(handle)) }
}

// Holds the delegate strongly for the C callbacks' context pointer.
private final class DelegateBox: Sendable {
    let delegate: StorageSCPDelegate
    init(_ d: StorageSCPDelegate) { delegate = d }
}

private func copy(_ s: String, into buf: UnsafeMutablePointer<CChar>?, _ len: Int) {
    guard let buf, len > 0 else { return }
    let bytes = Array(s.utf8.prefix(len - 1))
    for (i, b) in bytes.enumerated() { buf[i] = CChar(bitPattern: b) }
    buf[bytes.count] = 0
}

extension AssociationRequest {
    init(_ i: pdcm_assoc_info) {
        self.init(callingAE: string(i.calling_ae), calledAE: string(i.called_ae), host: string(i.peer_host))
    }
}

extension ReceivedInstance {
    init(_ i: pdcm_store_info) {
        self.init(path: string(i.path), header: InstanceHeader(i.header), callingAE: string(i.calling_ae),
                  peerHost: string(i.peer_host), fileSize: Int(i.file_size))
    }
}
