import Foundation
import PerfdTestSupport
import Testing

/// Whoever can reach the DICOM ports must not be able to keep a scanner out: sockets that
/// connect and say nothing, trickle a request, send a refused request and then hold the
/// connection, or open TLS and stall, against `perfd serve` as a process.
@Suite(.serialized) struct HostileNetworkTests {
    /// A connected TCP socket to 127.0.0.1:port from `source` (another loopback address
    /// stands for another host), closed by the caller.
    func connectTo(_ port: Int, from source: String? = nil) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let rc = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { close(fd); throw TestFailure("cannot bind to \(source): errno \(errno)") }
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { close(fd); throw TestFailure("cannot connect to port \(port): errno \(errno)") }
        return fd
    }

    func sendAll(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// A well-formed A-ASSOCIATE-RQ proposing Verification.
    func associateRQ(calling: String, called: String = "PERFD") -> [UInt8] {
        func ae(_ s: String) -> [UInt8] { Array((s + String(repeating: " ", count: 16)).utf8.prefix(16)) }
        func item(_ type: UInt8, _ body: [UInt8]) -> [UInt8] { [type, 0, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body }
        let context = item(0x20, [1, 0, 0, 0] + item(0x30, Array("1.2.840.10008.1.1".utf8)) + item(0x40, Array("1.2.840.10008.1.2".utf8)))
        let user = item(0x50, item(0x51, [0, 0, 0x40, 0]))
        let body: [UInt8] = [0, 1, 0, 0] + ae(called) + ae(calling) + [UInt8](repeating: 0, count: 32)
            + item(0x10, Array("1.2.840.10008.3.1.1.1".utf8)) + context + user
        let n = UInt32(body.count)
        return [1, 0, UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + body
    }

    /// Whether the server closes `fd` (EOF or reset) within `seconds`; what it sent first.
    func closedByServer(_ fd: Int32, within seconds: Double) -> (closed: Bool, first: UInt8?) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var first: UInt8?
        var buf = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0 { if first == nil { first = buf[0] }; continue }
            if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { return (true, first) }
        }
        return (false, first)
    }

    func metric(_ text: String, _ name: String) -> Double {
        text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last!) } ?? 0
    }

    /// Runs a DCMTK tool and returns its result and the wall-clock seconds it took.
    func timed(_ tool: String, _ args: [String]) throws -> (ToolResult, Double) {
        let start = Date()
        let r = try runTool(tool, args)
        return (r, Date().timeIntervalSince(start))
    }

    /// Sixteen hostile sockets of four kinds, held open while a scanner echoes and stores
    /// on the plain port and echoes on the TLS port: each must finish within the stated
    /// bound (5 s; in practice it does not wait for the hostile sockets at all). Before the
    /// handshakes moved off the accept thread, the one accept loop read each request in turn
    /// (the trickling ones for as long as they trickled) and the refused-and-held requests
    /// kept every association slot: the echo waited its full 20 s and failed.
    @Test func scannerIsServedWithinFiveSecondsUnderSixteenHostileSockets() throws {
        let dir = TempDir()
        let pki = try TestPKI(in: dir.sub("pki"))
        let port = freePort(), tlsPort = freePort(), metricsPort = freePort()
        // Four association slots: as many as there are refused-and-held sockets.
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: """
            max_associations: 4
            metrics_port: \(metricsPort)
            """ + "\n" + pki.listenerYAML(port: tlsPort))
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 2)

        var hostile: [Int32] = []
        defer { hostile.forEach { close($0) } }
        // Silent after connecting.
        for _ in 0..<4 { hostile.append(try connectTo(port)) }
        // Slow: an A-ASSOCIATE-RQ one byte every 0.5 s, for longer than the test runs.
        let slow = try (0..<4).map { _ in try connectTo(port) }
        hostile += slow
        let stopSlow = Flag()
        let rq = associateRQ(calling: "SLOWPOKE")
        let trickler = Thread { [slow] in
            for byte in rq {
                for fd in slow { _ = [byte].withUnsafeBytes { send(fd, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) } }
                if stopSlow.wait(0.5) { return }
            }
        }
        trickler.start()
        defer { stopSlow.set() }
        // Refused and held: a whole request from an AE not in allowed_peers, never read.
        let held = try (0..<4).map { _ in try connectTo(port) }
        hostile += held
        for fd in held { sendAll(fd, associateRQ(calling: "INTRUDER")) }
        // TLS: two silent, two with the start of a ClientHello and nothing more.
        for i in 0..<4 {
            let fd = try connectTo(tlsPort)
            hostile.append(fd)
            if i >= 2 { sendAll(fd, [0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xFC, 0x03, 0x03]) }
        }
        #expect(hostile.count == 16)

        let scanner = ["-to", "20", "-ta", "20", "-td", "20", "-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1"]
        let tls = ["+tls", pki.clientKey, pki.clientCert, "+cf", pki.caCert]
        let (echo, echoSeconds) = try timed("echoscu", scanner + [String(port)])
        let (store, storeSeconds) = try timed("storescu", scanner + [String(port)] + ph.files)
        let (tlsEcho, tlsEchoSeconds) = try timed("echoscu", tls + scanner + [String(tlsPort)])
        print(String(format: "under 16 hostile sockets: C-ECHO %.3f s, C-STORE of %d instances %.3f s, C-ECHO over TLS %.3f s",
                     echoSeconds, ph.files.count, storeSeconds, tlsEchoSeconds))
        #expect(echo.status == 0, "\(echo.output)")
        #expect(store.status == 0, "\(store.output)")
        #expect(tlsEcho.status == 0, "\(tlsEcho.output)")
        #expect(echoSeconds < 5, "C-ECHO took \(echoSeconds) s")
        #expect(storeSeconds < 5, "C-STORE took \(storeSeconds) s")
        #expect(tlsEchoSeconds < 5, "C-ECHO over TLS took \(tlsEchoSeconds) s")
        #expect(try databaseInt(dir, "SELECT COUNT(*) FROM instances") == ph.files.count)

        // The refused requests were answered (A-ASSOCIATE-RJ) and their sockets closed by
        // the server although the peer never reads or closes.
        for fd in held {
            let r = closedByServer(fd, within: 2)
            #expect(r.closed && r.first == 0x03, "refused association: closed \(r.closed), first PDU \(String(describing: r.first))")
        }
        // The silent and trickling ones are cut off at the handshake deadline.
        for (i, fd) in hostile.enumerated() where !held.contains(fd) {
            #expect(closedByServer(fd, within: 6).closed, "stalled handshake \(i) (0-3 silent, 4-7 slow, 12-15 TLS) was not cut off")
        }
        // Every refusal is counted, by reason.
        var text = ""
        do {
            try waitFor(5, "the refusals in /metrics") {
                text = try httpGet(port: metricsPort, "/metrics").body
                return metric(text, "perfd_associations_refused_total") >= 16
            }
        } catch {
            Issue.record("\(error): \(text)\n\(server.log)")
        }
        #expect(metric(text, "perfd_associations_refused_by_reason_total{reason=\"calling_ae\"}") == 4, "\(text)")
        #expect(metric(text, "perfd_associations_refused_by_reason_total{reason=\"handshake_timeout\"}") == 12, "\(text)")
        #expect(server.process.isRunning)
    }

    /// More connections from one host than max_connections_per_host: the extra one is
    /// closed at once (not after the handshake deadline) and counted; the host's scanner
    /// gets in again as soon as its stalled connections are cut off.
    @Test func connectionsPerHostAreLimited() throws {
        let dir = TempDir()
        let port = freePort(), metricsPort = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: """
            max_connections_per_host: 2
            metrics_port: \(metricsPort)
            """)
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let a = try connectTo(port), b = try connectTo(port)
        defer { close(a); close(b) }
        // Connections are accepted in the order they arrived: the third is over the limit.
        let c = try connectTo(port)
        defer { close(c) }
        // Closed for the limit, not by the handshake deadline: the host_limit count below says
        // which (no wall-clock bound here; on a loaded machine the accept itself can lag).
        let start = Date()
        #expect(closedByServer(c, within: 8).closed, "the connection over the per-host limit was kept")
        print("connection over the per-host limit closed after \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        var text = ""
        try waitFor(5, "the refusal in /metrics") {
            text = try httpGet(port: metricsPort, "/metrics").body
            return metric(text, "perfd_associations_refused_by_reason_total{reason=\"host_limit\"}") >= 1
        }
        // Once the stalled two are cut off (the handshake deadline), the scanner is served.
        #expect(closedByServer(a, within: 6).closed && closedByServer(b, within: 2).closed)
        let echo = try runTool("echoscu", ["-to", "10", "-ta", "10", "-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(port)])
        #expect(echo.status == 0, "\(echo.output)")
    }

    /// The stated worst case: hostile peers on two addresses hold all 32 handshake threads
    /// of the listener (16 each, max_connections_per_host; the first address's 24 further
    /// connections are closed at once). A scanner on a third address then waits at most one
    /// handshake deadline (3 s) for a thread.
    @Test func scannerWaitsAtMostOneDeadlineWhenEveryHandshakeThreadIsHeld() throws {
        let dir = TempDir()
        let port = freePort(), metricsPort = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: "metrics_port: \(metricsPort)")
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        var hostile: [Int32] = []
        defer { hostile.forEach { close($0) } }
        for _ in 0..<40 { hostile.append(try connectTo(port, from: "127.0.0.2")) }
        for _ in 0..<16 { hostile.append(try connectTo(port, from: "127.0.0.3")) }
        let start = Date()
        let echo = try runTool("echoscu", ["-to", "20", "-ta", "20", "-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(port)])
        let seconds = Date().timeIntervalSince(start)
        print(String(format: "with all 32 handshake threads held by 2 hostile addresses: C-ECHO %.3f s", seconds))
        #expect(echo.status == 0, "\(echo.output)")
        #expect(seconds < 5, "C-ECHO took \(seconds) s")
        var text = ""
        try waitFor(5, "the per-host refusals in /metrics") {
            text = try httpGet(port: metricsPort, "/metrics").body
            return metric(text, "perfd_associations_refused_by_reason_total{reason=\"host_limit\"}") >= 24
        }
        #expect(metric(text, "perfd_associations_refused_by_reason_total{reason=\"host_limit\"}") == 24, "\(text)")
    }

    /// An allowed peer that associates and then idles holds its slot (it is trusted); the
    /// next association over max_associations is refused as a local limit and counted, and
    /// the slot is free again as soon as the idle peer goes away.
    @Test func associationLimitRefusalsAreCounted() throws {
        let dir = TempDir()
        let port = freePort(), metricsPort = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 30, extra: """
            max_associations: 1
            metrics_port: \(metricsPort)
            """)
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let idle = try connectTo(port)
        var open = true
        defer { if open { close(idle) } }
        sendAll(idle, associateRQ(calling: "SCANNER"))
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(idle, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var pdu = [UInt8](repeating: 0, count: 1024)
        #expect(recv(idle, &pdu, pdu.count, 0) > 0 && pdu[0] == 0x02, "no A-ASSOCIATE-AC for the allowed peer")
        let echo = ["-to", "10", "-ta", "10", "-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(port)]
        let refused = try runTool("echoscu", echo)
        #expect(refused.status != 0)
        var text = ""
        try waitFor(5, "the limit refusal in /metrics") {
            text = try httpGet(port: metricsPort, "/metrics").body
            return metric(text, "perfd_associations_refused_by_reason_total{reason=\"association_limit\"}") == 1
        }
        #expect(metric(text, "perfd_associations_refused_total") == 1, "\(text)")
        close(idle)
        open = false
        try waitFor(5, "the slot to come back") { try runTool("echoscu", echo).status == 0 }
    }
}

/// A one-shot signal a background thread can wait on with a timeout.
final class Flag: @unchecked Sendable {
    // @unchecked Sendable: `isSet` is guarded by `cond`.
    private let cond = NSCondition()
    private var isSet = false
    func set() { cond.lock(); isSet = true; cond.broadcast(); cond.unlock() }
    /// Waits up to `seconds`; true when set.
    func wait(_ seconds: Double) -> Bool {
        cond.lock(); defer { cond.unlock() }
        let until = Date().addingTimeInterval(seconds)
        while !isSet && cond.wait(until: until) {}
        return isSet
    }
}
