import Foundation
internal import CDCMTK

/// DICOM over TLS for a listener or a destination (DCMTK's TLS layer, BCP 195
/// non-downgrading profile). Paths are PEM files.
public struct TLSSettings: Sendable, Hashable {
    /// This side's certificate and key: required on a listener, optional for a client.
    public var certificate: String?
    public var privateKey: String?
    /// CA certificates a peer's certificate must chain to.
    public var trustedCertificates: [String]
    /// Whether the peer must present a certificate signed by a trusted CA (otherwise one is
    /// checked only when presented).
    public var requirePeerCertificate: Bool
    /// Client side (exports): the PACS certificate must name the host perfd connects to, so
    /// a certificate from the same CA held by another machine (DNS or ARP spoofing) is refused.
    public var verifyHostname: Bool

    public init(certificate: String? = nil, privateKey: String? = nil, trustedCertificates: [String] = [],
                requirePeerCertificate: Bool = true, verifyHostname: Bool = true) {
        self.certificate = certificate
        self.privateKey = privateKey
        self.trustedCertificates = trustedCertificates
        self.requirePeerCertificate = requirePeerCertificate
        self.verifyHostname = verifyHostname
    }
}

/// Lends the C form of optional TLS settings to `body`; the strings live until it returns.
func withTLSConfig<R>(_ tls: TLSSettings?, _ body: (UnsafePointer<pdcm_tls_config>?) -> R) -> R {
    guard let tls else { return body(nil) }
    let owned: [UnsafeMutablePointer<CChar>?] = ([tls.certificate, tls.privateKey] + tls.trustedCertificates).map { $0.flatMap { strdup($0) } }
    defer { owned.forEach { free($0) } }
    let trusted: [UnsafePointer<CChar>?] = owned.dropFirst(2).map { $0.map { UnsafePointer($0) } }
    return trusted.withUnsafeBufferPointer { list in
        var c = pdcm_tls_config()
        c.certificate = owned[0].map { UnsafePointer($0) }
        c.private_key = owned[1].map { UnsafePointer($0) }
        c.trusted = list.baseAddress
        c.trusted_count = list.count
        c.require_peer_certificate = tls.requirePeerCertificate ? 1 : 0
        c.verify_hostname = tls.verifyHostname ? 1 : 0
        return withUnsafePointer(to: &c) { body($0) }
    }
}

extension TLSSettings {
    /// nil when DCMTK's TLS layer can be built from these settings (files readable, really
    /// PEM, key belonging to the certificate), else why not. The listener and the exporter
    /// build the same layer; the config validation calls this so both refuse the same files.
    public func problem(listener: Bool) -> String? {
        var err = [CChar](repeating: 0, count: 512)
        let rc = withTLSConfig(self) { cfg in pdcm_tls_check(listener ? 1 : 0, cfg, &err, err.count) }
        return rc == 0 ? nil : String(cString: err)
    }
}
