import Foundation

/// Certificates made by the test with the openssl tool: a CA, a server and a client signed
/// by it, and a "rogue" client signed by a CA nobody trusts.
public struct TestPKI: Sendable {
    public let dir: String
    public var caCert: String { dir + "/ca.pem" }
    public var serverCert: String { dir + "/server.pem" }
    public var serverKey: String { dir + "/server.key" }
    public var clientCert: String { dir + "/client.pem" }
    public var clientKey: String { dir + "/client.key" }
    public var rogueCert: String { dir + "/rogue.pem" }
    public var rogueKey: String { dir + "/rogue.key" }
    /// Signed by the trusted CA, but for another host (pacs.example.org), not 127.0.0.1.
    public var elsewhereCert: String { dir + "/elsewhere.pem" }
    public var elsewhereKey: String { dir + "/elsewhere.key" }

    public init(in dir: String) throws {
        self.dir = dir
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func ssl(_ args: [String]) throws {
            let r = try runTool("openssl", args)
            guard r.status == 0 else { throw TestFailure("openssl \(args.joined(separator: " ")): \(r.output)") }
        }
        func ca(_ name: String, _ cn: String) throws {
            try ssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).pem",
                     "-days", "30", "-subj", "/CN=\(cn)"])
        }
        func leaf(_ name: String, _ cn: String, signedBy issuer: String, altNames: String? = nil) throws {
            try ssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).csr", "-subj", "/CN=\(cn)"])
            var ext: [String] = []
            if let altNames {
                try "subjectAltName=\(altNames)\n".write(toFile: "\(dir)/\(name).ext", atomically: true, encoding: .utf8)
                ext = ["-extfile", "\(dir)/\(name).ext"]
            }
            try ssl(["x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", "\(dir)/\(issuer).pem", "-CAkey", "\(dir)/\(issuer).key",
                     "-CAcreateserial", "-out", "\(dir)/\(name).pem", "-days", "30"] + ext)
        }
        try ca("ca", "perfd test CA")
        try ca("rogueca", "untrusted CA")
        // The PACS and perfd's listener in tests run on loopback: the certificate names it.
        try leaf("server", "perfd", signedBy: "ca", altNames: "IP:127.0.0.1,DNS:localhost")
        try leaf("elsewhere", "pacs.example.org", signedBy: "ca", altNames: "DNS:pacs.example.org")
        try leaf("client", "scanner", signedBy: "ca")
        try leaf("rogue", "scanner", signedBy: "rogueca")
    }

    /// The `tls:` block of a perfd config: a TLS listener on `port` with this PKI's server
    /// certificate, requiring a client certificate from its CA.
    public func listenerYAML(port: Int) -> String {
        """
        tls:
          port: \(port)
          certificate: \(serverCert)
          private_key: \(serverKey)
          trusted_certificates: [\(caCert)]
          require_peer_certificate: true
        """
    }
}
