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
        func leaf(_ name: String, _ cn: String, signedBy issuer: String) throws {
            try ssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).csr", "-subj", "/CN=\(cn)"])
            try ssl(["x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", "\(dir)/\(issuer).pem", "-CAkey", "\(dir)/\(issuer).key",
                     "-CAcreateserial", "-out", "\(dir)/\(name).pem", "-days", "30"])
        }
        try ca("ca", "perfd test CA")
        try ca("rogueca", "untrusted CA")
        try leaf("server", "perfd", signedBy: "ca")
        try leaf("client", "scanner", signedBy: "ca")
        try leaf("rogue", "scanner", signedBy: "rogueca")
    }
}
