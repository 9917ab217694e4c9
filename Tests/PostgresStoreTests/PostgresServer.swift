import Foundation
import PerfdTestSupport
@testable import PostgresStore
import Synchronization
import Testing

/// Why the tests' PostgreSQL server could not start.
struct ServerUnavailable: Error, CustomStringConvertible, Sendable {
    var description: String
}

/// A real PostgreSQL server of the tests' own: `initdb` into a temporary directory, `pg_ctl
/// start` on a free loopback port with `fsync=on` (commits reach the disk, as in
/// production), one fresh database per test, stopped with `pg_ctl stop` when the test process
/// exits. PostgreSQL refuses to run as root, so as root the server runs as `nobody` (through
/// `runuser`), its data directory owned by that user; as anyone else it runs as that user.
final class PostgresTestServer: Sendable {
    let bin: String
    let dir: String
    let port: Int
    let runAs: String?

    /// The folder holding initdb, pg_ctl and postgres: Debian's versioned folders (15 first),
    /// then PATH. nil when PostgreSQL is not installed.
    static let binaries: String? = {
        var candidates = ["/usr/lib/postgresql/15/bin"]
        if let versions = try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql") {
            candidates += versions.sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }.map { "/usr/lib/postgresql/\($0)/bin" }
        }
        for p in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") { candidates.append(String(p)) }
        return candidates.first { d in ["initdb", "pg_ctl", "postgres"].allSatisfy { FileManager.default.isExecutableFile(atPath: d + "/" + $0) } }
    }()

    static var available: Bool { binaries != nil }
    static let skipReason: Comment = "PostgreSQL is not installed (no initdb, pg_ctl and postgres in /usr/lib/postgresql/*/bin or PATH); scripts/install-deps installs postgresql-15 and libpq-dev"

    /// The one server of this test process, started on first use.
    static let shared: Result<PostgresTestServer, ServerUnavailable> = {
        do {
            let s = try PostgresTestServer()
            running.withLock { $0 = s }
            atexit { PostgresTestServer.running.withLock { $0?.stop(); $0 = nil } }
            return .success(s)
        } catch {
            return .failure(ServerUnavailable(description: "\(error)"))
        }
    }()
    static let running = Mutex<PostgresTestServer?>(nil)

    init() throws {
        guard let bin = Self.binaries else { throw ServerUnavailable(description: "PostgreSQL is not installed") }
        self.bin = bin
        runAs = getuid() == 0 ? "nobody" : nil
        // As root, under /tmp: TMPDIR may lie under a folder the server's user cannot enter.
        dir = (runAs == nil ? NSTemporaryDirectory() : "/tmp/") + "perfd-pg-\(UUID().uuidString.prefix(8))"
        port = freePort()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if let user = runAs {
            // The parent must be enterable by the server's user; the data directory its own.
            chmod(dir, 0o755)
            try run("/usr/bin/chown", [user, dir], asServerUser: false)
        }
        try run(bin + "/initdb", ["-D", dir + "/data", "-U", "perfd", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"])
        // pg_ctl's server outlives the call and would inherit every descriptor not closed on
        // exec: Foundation's socket that tells `Process` its child ended (so the wait never
        // ends) and other tests' pipes (so their reads never end). bash closes all but 0–2
        // before it becomes pg_ctl; pg_ctl sends the server's output to the log file.
        let closeAndRun = #"for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done; exec "$@""#
        let start = [bin + "/pg_ctl", "-D", dir + "/data", "-l", dir + "/server.log", "-w", "-t", "60", "start", "-o",
                     "-p \(port) -c listen_addresses=127.0.0.1 -k \(dir) -c fsync=on -c synchronous_commit=on -c max_connections=100"]
        try run("/bin/bash", ["-c", closeAndRun, "bash"] + (runAs.map { ["/usr/sbin/runuser", "-u", $0, "--"] } ?? []) + start,
                asServerUser: false)
    }

    func stop() {
        _ = try? run(bin + "/pg_ctl", ["-D", dir + "/data", "-m", "fast", "-w", "stop"])
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// The server's log (for a failing test's message).
    var log: String { (try? String(contentsOfFile: dir + "/server.log", encoding: .utf8)) ?? "" }

    @discardableResult
    func run(_ tool: String, _ args: [String], asServerUser: Bool = true) throws -> ToolResult {
        let r: ToolResult
        if asServerUser, let user = runAs {
            r = try runTool("/usr/sbin/runuser", ["-u", user, "--", tool] + args)
        } else {
            r = try runTool(tool, args)
        }
        guard r.status == 0 else { throw TestFailure("\(tool) \(args.joined(separator: " ")) failed (\(r.status)): \(r.output)\n\(log.suffix(2000))") }
        return r
    }

    func url(_ database: String) -> String { "postgresql://perfd@127.0.0.1:\(port)/\(database)" }

    /// A new, empty database for one test.
    func freshDatabase() throws -> String {
        let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        let admin = try PostgresDatabase(url: url("postgres"), size: 1)
        try admin.withConnection { c in try c.script("CREATE DATABASE \(name)") }
        return url(String(name))
    }
}

/// A fresh database on the shared server, or the reason there is none.
func freshDatabaseURL() throws -> String {
    switch PostgresTestServer.shared {
    case .success(let s): return try s.freshDatabase()
    case .failure(let e): throw e
    }
}
