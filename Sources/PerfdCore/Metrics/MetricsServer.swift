import Foundation
import JobStore
import Logging
import ServiceLifecycle

/// What /health checks, each a closure so tests and the daemon wire their own.
public struct HealthChecks: Sendable {
    public var listener: @Sendable () -> Bool
    /// nil when the database takes a write within a short limit, else why not.
    public var database: @Sendable () -> String?
    /// nil when the spool is usable, else why not.
    public var spool: @Sendable () -> String?

    public init(listener: @escaping @Sendable () -> Bool, database: @escaping @Sendable () -> String?,
                spool: @escaping @Sendable () -> String?) {
        self.listener = listener; self.database = database; self.spool = spool
    }

    /// (healthy, one line per check).
    func evaluate() -> (Bool, String) {
        let spoolProblem = spool()
        let databaseProblem = database()
        let checks = [("listener", listener(), "not accepting associations"), ("database", databaseProblem == nil, databaseProblem ?? ""),
                      ("spool", spoolProblem == nil, spoolProblem ?? "")]
        let text = checks.map { "\($0.0): \($0.1 ? "ok" : $0.2)" }.joined(separator: "\n") + "\n"
        return (checks.allSatisfy(\.1), text)
    }

    /// The spool is usable when it is a writable directory with more than the guard's free space.
    public static func spool(_ dir: String, minFreeBytes: Double) -> String? {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else { return "\(dir) is missing" }
        guard access(dir, W_OK) == 0 else { return "\(dir) is not writable by perfd" }
        guard let free = DiskSpace.freeBytes(dir) else { return "cannot read free space of \(dir)" }
        if free < minFreeBytes {
            return "\(Int(free / 1_048_576)) MiB free, below min_free_disk_gb: stores are being refused"
        }
        return nil
    }
}

/// A small HTTP/1.1 server for Prometheus (`GET /metrics`) and load balancers or systemd
/// checks (`GET /health`: 200 when listener, database and spool are usable, else 503).
/// One request per connection, each served on its own thread; loopback by default.
public final class MetricsServer: Service, @unchecked Sendable {
    // @unchecked Sendable: `fd` and `port` are fixed in init; `stopping` and `inFlight` are guarded by `lock`.
    private let fd: Int32
    public let port: Int
    let metrics: @Sendable () -> String
    let health: HealthChecks
    let logger: Logger
    private let lock = NSLock()
    private var stopping = false

    public init(address: String, port: Int, metrics: @escaping @Sendable () -> String, health: HealthChecks, logger: Logger) throws {
        self.metrics = metrics; self.health = health; self.logger = logger
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw ServiceError(message: "metrics: cannot create a socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, address, &addr.sin_addr) == 1 else {
            close(s)
            throw ServiceError(message: "metrics_address \"\(address)\" is not an IPv4 address (use 127.0.0.1 or 0.0.0.0)")
        }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(s, 16) == 0 else {
            let e = String(cString: strerror(errno))
            close(s)
            throw ServiceError(message: "metrics: cannot listen on \(address):\(port): \(e) (change metrics_port)")
        }
        var got = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &got) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        self.fd = s
        self.port = Int(UInt16(bigEndian: got.sin_port))
    }

    deinit { close(fd) }

    public func run() async throws {
        logger.info("metrics on port \(port): /metrics, /health")
        await withGracefulShutdownHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let t = Thread { self.serve(); done.resume() }
                t.name = "perfd-metrics"
                t.start()
            }
        } onGracefulShutdown: {
            self.stop()
        }
    }

    public func stop() { lock.withLock { stopping = true } }
    var isStopping: Bool { lock.withLock { stopping } }

    /// Accept loop: polls once a second for the stop flag.
    func serve() {
        while !isStopping {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 1000) > 0 else { continue }
            let c = accept(fd, nil, nil)
            guard c >= 0 else { continue }
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            // Each request on its own thread: a /metrics waiting for a busy database must
            // not hold up /health, which answers within its own limit.
            let admitted: Bool = lock.withLock {
                guard inFlight < Self.maxInFlight else { return false }
                inFlight += 1
                return true
            }
            guard admitted else {
                Self.answer(c, "503 Service Unavailable", "too many requests in progress\n")
                close(c)
                continue
            }
            let t = Thread {
                let request = Self.readHead(c)
                let (status, body) = self.respond(to: request)
                Self.answer(c, status, body)
                close(c)
                self.lock.withLock { self.inFlight -= 1 }
            }
            t.name = "perfd-http"
            t.start()
        }
    }

    static let maxInFlight = 8
    // Guarded by `lock`.
    private var inFlight = 0

    static func answer(_ c: Int32, _ status: String, _ body: String) {
        let head = "HTTP/1.1 \(status)\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        writeAll(c, head + body)
    }

    func respond(to request: String) -> (String, String) {
        let parts = request.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0] == "GET" || parts[0] == "HEAD" else { return ("405 Method Not Allowed", "only GET\n") }
        let path = parts[1].split(separator: "?").first.map(String.init) ?? ""
        switch path {
        case "/metrics": return ("200 OK", metrics())
        case "/health", "/healthz":
            let (ok, text) = health.evaluate()
            return (ok ? "200 OK" : "503 Service Unavailable", text)
        default: return ("404 Not Found", "perfd serves /metrics and /health\n")
        }
    }

    static func readHead(_ c: Int32) -> String {
        var data = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 1024)
        while data.count < 8192 {
            let n = read(c, &buf, buf.count)
            if n <= 0 { break }
            data += buf[0..<n]
            if data.count >= 4, data.suffix(4) == [13, 10, 13, 10] { break }
        }
        return String(decoding: data, as: UTF8.self).split(separator: "\r\n").first.map(String.init) ?? ""
    }

    static func writeAll(_ c: Int32, _ s: String) {
        let bytes = Array(s.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(c, $0.baseAddress! + off, $0.count - off) }
            if n <= 0 { return }
            off += n
        }
    }
}
