import Foundation
internal import CDCMTK

/// Where to send: a DICOM peer.
public struct DICOMPeer: Sendable, Equatable, Hashable {
    public var aeTitle: String
    public var host: String
    public var port: Int
    /// DICOM over TLS to this peer; nil: plain TCP.
    public var tls: TLSSettings?
    public init(aeTitle: String, host: String, port: Int, tls: TLSSettings? = nil) {
        self.aeTitle = aeTitle; self.host = host; self.port = port; self.tls = tls
    }
    public var description: String { "\(aeTitle)@\(host):\(port)\(tls == nil ? "" : " (TLS)")" }
}

/// DCMTK's storage SCU: sends files over one association.
public enum StorageSCU {
    /// Sends the files and returns each file's DIMSE status (0xFFFF: not sent). Throws when
    /// no association could be made or it broke. `shouldSend(i)` is asked right before file i
    /// goes (false: skipped, 0xFFFF); `answered(i, status)` is told each answer as it arrives,
    /// before the next file goes. Both run on the calling thread.
    public static func send(_ paths: [String], to peer: DICOMPeer, callingAE: String, timeoutSeconds: Int = 30,
                            shouldSend: ((Int) -> Bool)? = nil, answered: ((Int, UInt16) -> Void)? = nil) throws -> [UInt16] {
        DCMTK.initialize()
        var statuses = [UInt16](repeating: 0xFFFF, count: paths.count)
        let cStrings = paths.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        let box = Hooks(shouldSend: shouldSend, answered: answered)
        var hooks = pdcm_scu_hooks(ctx: Unmanaged.passUnretained(box).toOpaque(), send: { ctx, i in
            Unmanaged<Hooks>.fromOpaque(ctx!).takeUnretainedValue().shouldSend?(Int(i)) ?? true ? 1 : 0
        }, answered: { ctx, i, status in
            Unmanaged<Hooks>.fromOpaque(ctx!).takeUnretainedValue().answered?(Int(i), status)
        })
        let (rc, err): (Int32, String) = withExtendedLifetime(box) {
            peer.host.withCString { host in
                callingAE.withCString { calling in
                    peer.aeTitle.withCString { called in
                        withTLSConfig(peer.tls) { tls in
                            var cfg = pdcm_scu_config(host: host, port: UInt16(peer.port), calling_ae: calling, called_ae: called,
                                                      timeout_s: Int32(timeoutSeconds), tls: tls)
                            return cStrings.map { UnsafePointer($0) }.withUnsafeBufferPointer { ptrs in
                                statuses.withUnsafeMutableBufferPointer { st in
                                    withErrorBuffer { pdcm_store_files_each(&cfg, ptrs.baseAddress, paths.count, st.baseAddress, &hooks, $0, $1) }
                                }
                            }
                        }
                    }
                }
            }
        }
        guard rc == 0 else { throw PartialFailure(error: DICOMError(.writeFailed, err), statuses: statuses) }
        return statuses
    }

    /// The per-file hooks, reached from DCMTK's loop through an opaque pointer.
    private final class Hooks {
        let shouldSend: ((Int) -> Bool)?
        let answered: ((Int, UInt16) -> Void)?
        init(shouldSend: ((Int) -> Bool)?, answered: ((Int, UInt16) -> Void)?) { self.shouldSend = shouldSend; self.answered = answered }
    }

    /// The association failed part-way: `statuses` holds the PACS's answer for each file it
    /// answered before that (0xFFFF for the others), so what it accepted is not sent again.
    public struct PartialFailure: Error, CustomStringConvertible {
        public var error: DICOMError
        public var statuses: [UInt16]
        public var description: String { "\(error)" }
    }
}
