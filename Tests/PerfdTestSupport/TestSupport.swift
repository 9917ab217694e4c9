import DICOM
import Foundation
import Phantom
@_exported import Perfusion

/// A temporary directory removed when the value is released.
public final class TempDir: @unchecked Sendable {
    // @unchecked Sendable: `path` is immutable.
    public let path: String
    public init(_ label: String = "perfd-test") {
        let p = NSTemporaryDirectory() + "\(label)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        path = p
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    public func sub(_ name: String) -> String {
        let p = path + "/" + name
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }
}

/// A loopback address for `port`, handed to a socket call.
func withLoopback<T>(port: Int, _ body: (UnsafeMutablePointer<sockaddr>, inout socklen_t) -> T) -> T {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    return withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, &len) } }
}

/// A TCP port that was free a moment ago (bind to 0, read back, close).
public func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    return withLoopback(port: 0) { addr, len in
        _ = bind(fd, addr, len)
        _ = getsockname(fd, addr, &len)
        return addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:port.
public func portOpen(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    return withLoopback(port: port) { addr, len in connect(fd, addr, len) } == 0
}

/// GET http://127.0.0.1:port/path with curl: (HTTP status, body).
public func httpGet(port: Int, _ path: String) throws -> (status: Int, body: String) {
    let r = try runTool("curl", ["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10", "http://127.0.0.1:\(port)\(path)"])
    guard r.status == 0 else { throw TestFailure("curl \(path) failed: \(r.output)") }
    var lines = r.stdout.components(separatedBy: "\n")
    let code = Int(lines.removeLast()) ?? 0
    return (code, lines.joined(separator: "\n"))
}

/// Sends raw bytes to a port and closes (for garbage-PDU tests).
public func sendRaw(_ bytes: [UInt8], port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    guard withLoopback(port: port, { addr, len in connect(fd, addr, len) }) == 0 else { return }
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var buf = [UInt8](repeating: 0, count: 256)
    var tv = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    _ = recv(fd, &buf, buf.count, 0)
}

public struct ToolResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var output: String { stdout + stderr }
}

/// Runs a command to completion (searching PATH), with TCP_NODELAY=1 for DCMTK tools.
@discardableResult
public func runTool(_ tool: String, _ args: [String], environment: [String: String] = [:]) throws -> ToolResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool.hasPrefix("/") ? tool : "/usr/bin/env")
    p.arguments = tool.hasPrefix("/") ? args : [tool] + args
    var env = ProcessInfo.processInfo.environment
    env["TCP_NODELAY"] = "1"
    for (k, v) in environment { env[k] = v }
    p.environment = env
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return ToolResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// The repository root and the built perfd binary.
public enum Paths {
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    public static var perfd: String {
        if let p = ProcessInfo.processInfo.environment["PERFD_BIN"] { return p }
        for config in ["debug", "release"] {
            let p = root + "/.build/\(config)/perfd"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return root + "/.build/debug/perfd"
    }
}

/// A config file for tests, on loopback with its own spool and database.
public func writeConfig(in dir: TempDir, port: Int, quietSeconds: Double = 2, allowed: [(String, String?)] = [("SCANNER", "127.0.0.1")],
                        minFreeDiskGB: Double = 0, spoolReserveMB: Double = 16, extra: String = "") -> String {
    var peers = ""
    for (ae, host) in allowed {
        peers += "  - ae_title: \(ae)\n" + (host.map { "    host: \($0)\n" } ?? "")
    }
    let yaml = """
    ae_title: PERFD
    port: \(port)
    allowed_peers:
    \(peers)spool_dir: \(dir.path)/state/spool
    database: \(dir.path)/state/perfd.sqlite
    series_quiet_seconds: \(quietSeconds)
    min_free_disk_gb: \(minFreeDiskGB)
    spool_reserve_mb: \(spoolReserveMB)
    log_level: info
    \(extra)
    """
    let path = dir.path + "/perfd.yaml"
    try! yaml.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// One integer from a query on the test's perfd database (`writeConfig`'s layout), read
/// with the sqlite3 tool as an admin would; -1 when the answer is not a number.
public func databaseInt(_ dir: TempDir, _ sql: String) throws -> Int {
    let r = try runTool("sqlite3", [dir.path + "/state/perfd.sqlite", sql])
    return Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
}

/// `perfd serve` as a child process.
public final class PerfdServer: @unchecked Sendable {
    // @unchecked Sendable: the process handle is only touched by the test that owns it.
    public let process = Process()
    public let configPath: String
    public let port: Int
    public let logPath: String
    /// The perfd binary run (the build's, or a staged install's).
    public let executable: String

    /// `unset` names environment variables the daemon must not see (PERFD_MODELS for a
    /// staged install); `directory` is its working directory (default: the test's).
    public init(configPath: String, port: Int, logPath: String, environment: [String: String] = [:],
                executable: String = Paths.perfd, unset: [String] = [], directory: String? = nil, journal: Bool = false) throws {
        self.configPath = configPath
        self.port = port
        self.logPath = logPath
        self.executable = executable
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["serve", "--config", configPath]
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        var env = ProcessInfo.processInfo.environment
        for k in unset { env[k] = nil }
        for (k, v) in environment { env[k] = v }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)!
        if journal {
            // As systemd does for a unit's output: JOURNAL_STREAM names stderr's device and inode.
            var st = stat()
            fstat(log.fileDescriptor, &st)
            env["JOURNAL_STREAM"] = "\(st.st_dev):\(st.st_ino)"
        }
        process.environment = env
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while !portOpen(port) {
            guard process.isRunning else { throw TestFailure("perfd serve exited at start: \(self.log)") }
            guard Date() < deadline else { throw TestFailure("perfd serve did not listen on \(port) within 20 s: \(self.log)") }
            usleep(50_000)
        }
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    public func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }

    /// A row of `perfd jobs --json`.
    public struct JobRow: Decodable, Sendable {
        public var id: Int
        public var series_uid: String
        public var study_uid: String
        public var pipeline: String
        public var state: String
        public var stage: String?
        public var instances: Int
        public var error: String?
        public var qc: String?
    }

    /// `perfd jobs --json`, decoded.
    public func jobs() throws -> [JobRow] {
        let r = try cli(["jobs", "--json"])
        guard r.status == 0 else { throw TestFailure("perfd jobs failed: \(r.output)") }
        return try JSONDecoder().decode([JobRow].self, from: Data(r.stdout.utf8))
    }

    /// Runs a perfd CLI command against this server's config.
    public func cli(_ args: [String]) throws -> ToolResult {
        try runTool(executable, args + ["--config", configPath])
    }
}

/// DCMTK's storescu sending `files` to perfd (called AE PERFD) on loopback `port`, as
/// `aet`; `options` go before the address (TLS flags, -v).
public func storescu(_ files: [String], port: Int, aet: String = "SCANNER", options: [String] = []) throws -> ToolResult {
    try runTool("storescu", options + ["-aet", aet, "-aec", "PERFD", "127.0.0.1", String(port)] + files)
}

/// storescu that must succeed: a failure throws with its output.
public func push(_ files: [String], port: Int) throws {
    let r = try storescu(files, port: port)
    guard r.status == 0 else { throw TestFailure("storescu failed: \(r.output)") }
}

public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Polls `condition` until it holds or `seconds` pass.
public func waitFor(_ seconds: Double, _ what: String, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return }
        usleep(100_000)
    }
    throw TestFailure("timed out after \(seconds) s waiting for \(what)")
}

/// A small phantom written for a test.
public func makePhantom(in dir: String, size: Int = 32, slices: Int = 3, timepoints: Int = 19, seed: UInt64 = 1,
                        transferSyntax: TransferSyntax = .explicitLittleEndian, studyUID: String? = nil,
                        motion: (degrees: Double, millimetres: Double)? = nil, noise: Double = 10, interval: Double = 2,
                        sliceThickness: Double = 5) throws -> PhantomResult {
    var o = PhantomOptions()
    o.sliceThickness = sliceThickness
    o.motion = motion; o.noiseSigma = noise; o.frameInterval = interval
    o.size = size; o.slices = slices; o.timepoints = timepoints; o.seed = seed; o.transferSyntax = transferSyntax
    o.studyUID = studyUID
    return try Phantom.write(to: dir, options: o)
}

/// Orthanc, the PACS in tests: its own storage, DICOM and HTTP ports on loopback, a VIEWER
/// modality allowed to C-GET.
public final class OrthancServer: @unchecked Sendable {
    // @unchecked Sendable: the process handle is only touched by the test that owns it.
    public let dicomPort: Int
    public let httpPort: Int
    public let dir: String
    var process: Process?

    public init(dir: String, dicomPort: Int = freePort(), httpPort: Int = freePort()) {
        self.dir = dir
        self.dicomPort = dicomPort
        self.httpPort = httpPort
        let config = """
        {
          "Name": "perfd-test-pacs",
          "StorageDirectory": "\(dir)/storage",
          "IndexDirectory": "\(dir)/index",
          "DicomAet": "PACS",
          "DicomPort": \(dicomPort),
          "HttpPort": \(httpPort),
          "HttpServerEnabled": true,
          "RemoteAccessAllowed": false,
          "AuthenticationEnabled": false,
          "DicomCheckCalledAet": false,
          "DicomAlwaysAllowEcho": true,
          "DicomAlwaysAllowStore": true,
          "OverwriteInstances": false,
          "Plugins": [],
          "DicomModalities": {
            "viewer": { "AET": "VIEWER", "Host": "127.0.0.1", "Port": 104, "AllowGet": true, "AllowFind": true,
                        "AllowMove": true, "AllowEcho": true, "AllowStore": true }
          }
        }
        """
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try! config.write(toFile: dir + "/orthanc.json", atomically: true, encoding: .utf8)
    }

    public func start() throws {
        let p = Process()
        // The test runner's threads block SIGTERM and a spawned child inherits the mask;
        // clear it so Orthanc can stop cleanly.
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv('/usr/sbin/Orthanc', ['Orthanc', sys.argv[1]])",
                       dir + "/orthanc.json"]
        _ = FileManager.default.createFile(atPath: dir + "/orthanc.log", contents: nil)
        let log = FileHandle(forWritingAtPath: dir + "/orthanc.log")!
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        try p.run()
        process = p
        try waitFor(90, "Orthanc to listen on \(httpPort) and \(dicomPort)") { portOpen(httpPort) && portOpen(dicomPort) }
    }

    public func stop() {
        guard let p = process, p.isRunning else { return }
        p.terminate()
        let deadline = Date().addingTimeInterval(10)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        process = nil
    }

    deinit { stop() }

    /// GET on the REST API, decoded as JSON.
    public func get(_ path: String) throws -> Any {
        let r = try runTool("curl", ["-sf", "http://127.0.0.1:\(httpPort)\(path)"])
        guard r.status == 0 else { throw TestFailure("GET \(path) failed: \(r.output)") }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
    }

    /// Every series Orthanc holds: (SeriesInstanceUID, StudyInstanceUID, SeriesDescription, instance count).
    public func series() throws -> [(uid: String, study: String, description: String, instances: Int)] {
        guard let list = try get("/series?expand") as? [[String: Any]] else { return [] }
        return try list.map { s in
            let tags = s["MainDicomTags"] as? [String: Any] ?? [:]
            let parent = s["ParentStudy"] as? String ?? ""
            let study = (try get("/studies/\(parent)") as? [String: Any])?["MainDicomTags"] as? [String: Any]
            return ((tags["SeriesInstanceUID"] as? String) ?? "", (study?["StudyInstanceUID"] as? String) ?? "",
                    (tags["SeriesDescription"] as? String) ?? "", (s["Instances"] as? [Any])?.count ?? 0)
        }
    }

    public func instanceCount() throws -> Int {
        ((try get("/statistics") as? [String: Any])?["CountInstances"] as? Int) ?? -1
    }
}

/// DCMTK's storescp as the PACS on `port`, storing into `received`, with `options` before the
/// port; killed when the returned object goes. Through python, to clear the signal mask the
/// test runner's threads hand down.
public final class StoreSCPPeer: @unchecked Sendable {
    // @unchecked Sendable: the process handle is only touched by the test that owns it.
    public let process = Process()
    public init(port: Int, received: String, options: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execvp('storescp', sys.argv[1:])",
                             "storescp"] + options + ["-aet", "PACS", "-od", received, String(port)]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        try waitFor(10, "storescp to listen") { portOpen(port) }
    }
    deinit { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
}
