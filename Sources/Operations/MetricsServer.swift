import Foundation
import Logging
import ServiceLifecycle
import Synchronization

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
/// `HEAD` answers the same status and headers without a body.
///
/// One thread per connection (at most `maxConnections`), one request per connection, and a
/// deadline for the whole request, not per read: a client has `requestSeconds` from accept
/// to send its complete request head, and its answer must be written within `requestSeconds`
/// more; a client trickling a byte at a time is cut off at the deadline, not kept alive by
/// each byte. When every slot is taken, the oldest connection still sending its request is
/// closed to make room (an idle or trickling client cannot hold /health off). Why threads and
/// not SwiftNIO: docs/ARCHITECTURE.md §6.
public final class MetricsServer: Service, Sendable {
    private let fd: Int32
    public let port: Int
    let metrics: @Sendable () -> String
    let health: HealthChecks
    let logger: Logger
    let requestSeconds: Double
    let maxConnections: Int
    /// A connection's thread and what it is doing; the thread alone closes `fd`.
    struct Connection { var fd: Int32; var accepted: Double; var reading: Bool }
    private struct State {
        var stopping = false
        var connections: [Int: Connection] = [:]
        var nextID = 0
        var evicted = 0
    }
    private let state = Mutex(State())
    /// Connections closed to make room for newer ones, since start (tests and logs read it).
    public var evicted: Int { state.withLock { $0.evicted } }

    public init(address: String, port: Int, metrics: @escaping @Sendable () -> String, health: HealthChecks, logger: Logger,
                requestSeconds: Double = 2, maxConnections: Int = 32) throws {
        self.metrics = metrics; self.health = health; self.logger = logger
        self.requestSeconds = requestSeconds; self.maxConnections = maxConnections
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
        guard bound == 0, listen(s, 64) == 0 else {
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

    public func stop() { state.withLock { $0.stopping = true } }
    var isStopping: Bool { state.withLock { $0.stopping } }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Accept loop: polls once a second for the stop flag; every connection gets a thread.
    func serve() {
        while !isStopping {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 1000) > 0 else { continue }
            let c = accept(fd, nil, nil)
            guard c >= 0 else { continue }
            _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
            let accepted = Self.now()
            let id: Int? = state.withLock { s in
                if s.connections.count >= maxConnections {
                    // Make room: the oldest connection still sending its request goes.
                    guard let oldest = s.connections.filter({ $0.value.reading }).min(by: { $0.value.accepted < $1.value.accepted }) else { return nil }
                    shutdown(oldest.value.fd, Int32(SHUT_RDWR))
                    s.connections[oldest.key]?.reading = false
                    s.evicted += 1
                }
                s.nextID += 1
                s.connections[s.nextID] = Connection(fd: c, accepted: accepted, reading: true)
                return s.nextID
            }
            guard let id else {
                // Every slot is writing an answer: say so at once and close.
                Self.writeAll(c, Self.response("503 Service Unavailable", "too many requests in progress\n", head: false), deadline: accepted + 0.2)
                close(c)
                continue
            }
            let t = Thread { self.handle(c, id: id, accepted: accepted) }
            t.name = "perfd-http"
            t.start()
        }
    }

    func handle(_ c: Int32, id: Int, accepted: Double) {
        defer {
            state.withLock { _ = $0.connections.removeValue(forKey: id) }
            close(c)
        }
        guard let request = Self.readHead(c, deadline: accepted + requestSeconds) else {
            let reply = Self.response("408 Request Timeout", "the request was not complete within \(Int(requestSeconds)) s\n", head: false)
            Self.writeAll(c, reply, deadline: Self.now() + 0.2)
            return
        }
        state.withLock { $0.connections[id]?.reading = false }
        let (status, body, isHead) = respond(to: request)
        Self.writeAll(c, Self.response(status, body, head: isHead), deadline: Self.now() + requestSeconds)
    }

    /// Connections open now (tests).
    public var openConnections: Int { state.withLock { $0.connections.count } }

    static func response(_ status: String, _ body: String, head: Bool) -> String {
        var h = "HTTP/1.1 \(status)\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
        if status.hasPrefix("405") { h += "Allow: GET, HEAD\r\n" }
        return h + "\r\n" + (head ? "" : body)
    }

    /// (status, body, whether the method was HEAD: headers only).
    func respond(to request: String) -> (String, String, Bool) {
        let parts = request.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0] == "GET" || parts[0] == "HEAD" else { return ("405 Method Not Allowed", "only GET and HEAD\n", false) }
        let isHead = parts[0] == "HEAD"
        let path = parts[1].split(separator: "?").first.map(String.init) ?? ""
        switch path {
        case "/metrics": return ("200 OK", metrics(), isHead)
        case "/health", "/healthz":
            let (ok, text) = health.evaluate()
            return (ok ? "200 OK" : "503 Service Unavailable", text, isHead)
        default: return ("404 Not Found", "perfd serves /metrics and /health\n", isHead)
        }
    }

    /// The request line, once the whole head (up to the blank line) is in before `deadline`;
    /// nil when the client closed, sent more than 8 KiB, or ran out of time.
    static func readHead(_ c: Int32, deadline: Double) -> String? {
        var data = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 1024)
        while data.count < 8192 {
            let left = deadline - now()
            guard left > 0 else { return nil }
            var p = pollfd(fd: c, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(max(1, left * 1000)))
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { return nil }
            let n = read(c, &buf, buf.count)
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            guard n > 0 else { return nil }
            data += buf[0..<n]
            if let end = findBlankLine(data) {
                return String(decoding: data[..<end], as: UTF8.self).split(separator: "\r\n").first.map(String.init) ?? ""
            }
        }
        return nil
    }

    static func findBlankLine(_ d: [UInt8]) -> Int? {
        guard d.count >= 4 else { return nil }
        for i in 0...(d.count - 4) where d[i] == 13 && d[i + 1] == 10 && d[i + 2] == 13 && d[i + 3] == 10 { return i }
        return nil
    }

    /// Writes `s` on the non-blocking socket until done or `deadline`.
    static func writeAll(_ c: Int32, _ s: String, deadline: Double) {
        let bytes = Array(s.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(c, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n > 0 { off += n; continue }
            guard n < 0, errno == EAGAIN || errno == EINTR else { return }
            let left = deadline - now()
            guard left > 0 else { return }
            var p = pollfd(fd: c, events: Int16(POLLOUT), revents: 0)
            guard poll(&p, 1, Int32(max(1, left * 1000))) > 0 else { return }
        }
    }
}
