import Foundation
import PerfdTestSupport
import Testing

/// The systemd unit passes systemd's own checks, and perfd speaks sd_notify.
@Suite struct SystemdTests {
    /// The unit as shipped, with ExecStart pointed at the binary this build made (the install
    /// script puts it at /usr/local/bin/perfd).
    func unitForThisBuild(_ dir: TempDir) throws -> String {
        var unit = try String(contentsOfFile: Paths.root + "/systemd/perfd.service", encoding: .utf8)
        unit = unit.replacingOccurrences(of: "/usr/local/bin/perfd", with: Paths.perfd)
        let path = dir.path + "/perfd.service"
        try unit.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func unitVerifiesAndExposureIsAtMostThree() throws {
        let dir = TempDir()
        let unit = try unitForThisBuild(dir)
        let verify = try runTool("systemd-analyze", ["verify", unit])
        #expect(verify.status == 0, "\(verify.output)")
        let security = try runTool("systemd-analyze", ["security", "--offline=true", unit])
        let line = security.output.split(separator: "\n").first { $0.contains("Overall exposure level") }.map(String.init) ?? ""
        let score = line.split(separator: ":").last.flatMap { Double($0.split(separator: " ").first(where: { Double($0) != nil }) ?? "") }
        #expect(score != nil && score! <= 3.0, "\(line)")
        // The unit asks for what the issue lists.
        let text = try String(contentsOfFile: Paths.root + "/systemd/perfd.service", encoding: .utf8)
        for key in ["Type=notify", "WatchdogSec=", "Restart=on-failure", "User=perfd", "StateDirectory=perfd", "ProtectSystem=strict",
                    "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=", "SystemCallFilter=",
                    "ReadWritePaths=/var/lib/perfd"] {
            #expect(text.contains(key), "missing \(key)")
        }
    }

    @Test func serveSendsReadyAndWatchdogToNotifySocket() throws {
        let dir = TempDir()
        let sockPath = dir.path + "/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in sockPath.utf8.enumerated() { raw[i] = b } }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port), port: port, logPath: dir.path + "/serve.log",
                                     environment: ["NOTIFY_SOCKET": sockPath])
        defer { server.stop() }
        var messages: [String] = []
        var buf = [UInt8](repeating: 0, count: 512)
        while messages.count < 2 {
            let n = recv(fd, &buf, buf.count, 0)
            guard n > 0 else { break }
            messages.append(String(decoding: buf[0..<n], as: UTF8.self))
        }
        #expect(messages.contains { $0.hasPrefix("READY=1") && $0.contains("port \(port)") }, "\(messages)")
        #expect(messages.contains { $0 == "WATCHDOG=1" }, "\(messages)")
    }
}
