import CSQLite
import Foundation
import Store
import Synchronization

/// The JobStore module's one error type: the SQLite result code, its message, and the
/// statement that failed.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String
    public var sql: String

    public var description: String {
        sql.isEmpty ? "database: \(message)" : "database: \(message) (in: \(sql.prefix(120)))"
    }
}

/// A value bound to or read from a statement.
public enum SQLValue: Sendable, Equatable {
    case int(Int64), double(Double), text(String), null

    public var int: Int? { if case .int(let v) = self { return Int(v) }; if case .double(let d) = self { return Int(d) }; return nil }
    public var double: Double? { if case .double(let v) = self { return v }; if case .int(let i) = self { return Double(i) }; return nil }
    public var text: String? { if case .text(let v) = self { return v }; return nil }
}

public protocol SQLConvertible { var sqlValue: SQLValue { get } }
extension Int: SQLConvertible { public var sqlValue: SQLValue { .int(Int64(self)) } }
extension Int64: SQLConvertible { public var sqlValue: SQLValue { .int(self) } }
extension Double: SQLConvertible { public var sqlValue: SQLValue { .double(self) } }
extension String: SQLConvertible { public var sqlValue: SQLValue { .text(self) } }
extension Optional: SQLConvertible where Wrapped: SQLConvertible {
    public var sqlValue: SQLValue { self?.sqlValue ?? .null }
}

/// One result row, by column name.
public struct Row: Sendable {
    public var values: [String: SQLValue]
    public subscript(_ name: String) -> SQLValue { values[name] ?? .null }
}

private let SQLITE_TRANSIENT = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// A thin wrapper over one libsqlite3 connection. Not thread-safe by itself: `Database`
/// serialises access.
final class Connection {
    let handle: OpaquePointer

    init(path: String, readOnly: Bool = false, busyTimeoutMS: Int32 = 10_000) throws {
        var db: OpaquePointer?
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(db)
            throw StoreError(code: rc, message: "cannot open \(path): \(msg)", sql: "")
        }
        handle = db
        sqlite3_busy_timeout(db, busyTimeoutMS)
    }

    /// Prepared statements by SQL text, reused (reset and rebound) instead of parsed again:
    /// the per-instance commit runs the same handful of statements hundreds of times a second.
    private var statements: [String: OpaquePointer] = [:]

    deinit {
        for s in statements.values { sqlite3_finalize(s) }
        sqlite3_close_v2(handle)
    }

    private func prepared(_ sql: String) throws -> OpaquePointer {
        if let s = statements[sql] { return s }
        if statements.count >= 256 {   // SQL built from values (IN lists) must not grow it forever
            for s in statements.values { sqlite3_finalize(s) }
            statements.removeAll()
        }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, sql) }
        statements[sql] = stmt
        return stmt
    }

    func execute(_ sql: String, _ args: [SQLValue] = []) throws {
        _ = try run(sql, args, collect: false)
    }

    func query(_ sql: String, _ args: [SQLValue] = []) throws -> [Row] {
        try run(sql, args, collect: true)
    }

    var changes: Int { Int(sqlite3_changes(handle)) }
    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    private func error(_ rc: Int32, _ sql: String) -> StoreError {
        StoreError(code: rc, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }

    private func run(_ sql: String, _ args: [SQLValue], collect: Bool) throws -> [Row] {
        // Multi-statement scripts (migrations) go through exec when they take no arguments.
        if args.isEmpty && !collect {
            var errmsg: UnsafeMutablePointer<CChar>?
            let rc = sqlite3_exec(handle, sql, nil, nil, &errmsg)
            if rc != SQLITE_OK {
                let m = errmsg.map { String(cString: $0) } ?? "error \(rc)"
                sqlite3_free(errmsg)
                throw StoreError(code: rc, message: m, sql: sql)
            }
            return []
        }
        let stmt = try prepared(sql)
        defer { sqlite3_reset(stmt); sqlite3_clear_bindings(stmt) }
        var rc: Int32
        for (i, a) in args.enumerated() {
            let idx = Int32(i + 1)
            switch a {
            case .int(let v): rc = sqlite3_bind_int64(stmt, idx, v)
            case .double(let v): rc = sqlite3_bind_double(stmt, idx, v)
            case .text(let v): rc = sqlite3_bind_text(stmt, idx, v, -1, SQLITE_TRANSIENT)
            case .null: rc = sqlite3_bind_null(stmt, idx)
            }
            guard rc == SQLITE_OK else { throw error(rc, sql) }
        }
        var rows: [Row] = []
        while true {
            rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc, sql) }
            guard collect else { continue }
            var values: [String: SQLValue] = [:]
            for c in 0..<sqlite3_column_count(stmt) {
                let name = String(cString: sqlite3_column_name(stmt, c))
                switch sqlite3_column_type(stmt, c) {
                case SQLITE_INTEGER: values[name] = .int(sqlite3_column_int64(stmt, c))
                case SQLITE_FLOAT: values[name] = .double(sqlite3_column_double(stmt, c))
                case SQLITE_NULL: values[name] = .null
                default: values[name] = .text(String(cString: sqlite3_column_text(stmt, c)))
                }
            }
            rows.append(Row(values: values))
        }
        return rows
    }
}

/// The database file: one writing connection, serialised by a mutex so DCMTK's worker
/// threads, the tracker and the job worker can share it, and one reading connection of its
/// own, so `perfd status`-style reads and `/metrics` never queue behind ingest commits (WAL:
/// readers see the last commit and do not block the writer, nor it them).
public final class Database: Sendable {
    private let connection: Mutex<Connection>
    private let reader: Mutex<Connection>
    public let path: String

    public init(path: String) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let connection = try Connection(path: path)
        // Spool files are fsync'd before acknowledgement and are the durable record; a
        // commit survives a crash of perfd at synchronous=NORMAL, and the startup
        // reconciliation re-indexes any spool file whose row a power cut took.
        // secure_delete: a purged patient's name and ID are overwritten with zeros where
        // they were instead of lingering in free space (on every connection: `perfd purge`
        // deletes in its own process). Ingest mostly inserts, so it costs little there.
        try connection.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;")
        self.connection = Mutex(connection)
        // Opened after the writer created the file; it prepares nothing before the
        // migrations below have run.
        reader = Mutex(try Connection(path: path))
        try Migrations.apply(to: self)
    }

    /// Why the last write failed for a reason the database itself gave (corrupt pages, I/O
    /// error, disk full, locked beyond the busy timeout), until a write succeeds again.
    private let lastFailure = Mutex<(at: Double, message: String)?>(nil)

    public var lastWriteFailure: (at: Double, message: String)? { lastFailure.withLock { $0 } }

    private func noteWrite(_ error: Error?) {
        if let e = error as? StoreError {
            guard Self.fatalCodes.contains(e.code & 0xff) else { return }
            lastFailure.withLock { $0 = (WallClock.now(), e.message) }
        } else if error == nil {
            lastFailure.withLock { if $0 != nil { $0 = nil } }
        }
    }

    static let fatalCodes: Set<Int32> = [SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT,
                                         SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL, SQLITE_NOTADB]

    /// Moves the WAL into the database file and truncates it to zero bytes, so old page
    /// images (a purged patient's name among them) do not stay in it. Returns false when
    /// readers (another process) kept part of it through three tries.
    @discardableResult
    public func checkpointTruncate() throws -> Bool {
        for attempt in 0..<3 {
            if attempt > 0 { usleep(200_000) }
            let done: Bool = try connection.withLock { c in
                try c.query("PRAGMA wal_checkpoint(TRUNCATE)").first?["busy"].int == 0
            }
            if done { return true }
        }
        return false
    }

    /// /health's probe, on a connection of its own (never queued behind the daemon's
    /// writers on `lock`), with a short busy timeout and a deadline on every statement: a
    /// committed write to the `health` row, then, rolled back, the inserts one received
    /// instance makes (series, instances and their indexes) and a read of the job queue.
    /// nil when all of it worked within `timeout` seconds and the last write did not fail,
    /// else why not.
    public func probe(timeout: Double) -> String? {
        let answer = probeConnection.withLockIfAvailable { probeConnection -> String? in
            do {
                if probeConnection == nil { probeConnection = try Connection(path: path, busyTimeoutMS: Int32(timeout * 1000)) }
            } catch {
                return "\(error)"
            }
            return probe(probeConnection!, timeout: timeout)
        }
        return answer ?? "the previous health probe is still waiting for the database"
    }

    private func probe(_ c: Connection, timeout: Double) -> String? {
        let started = WallClock.now()
        do {
            let box = Unmanaged.passRetained(DeadlineBox(started + timeout)).toOpaque()
            sqlite3_progress_handler(c.handle, 1000, { ctx in
                Unmanaged<DeadlineBox>.fromOpaque(ctx!).takeUnretainedValue().deadline < WallClock.now() ? 1 : 0
            }, box)
            defer {
                sqlite3_progress_handler(c.handle, 0, nil, nil)
                Unmanaged<DeadlineBox>.fromOpaque(box).release()
            }
            try c.execute("BEGIN IMMEDIATE")
            do {
                let now = SQLValue.double(WallClock.now())
                try c.execute("INSERT INTO health (id, at, pid) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET at = excluded.at, pid = excluded.pid",
                              [now, .int(Int64(getpid()))])
                try c.execute("SAVEPOINT probe")
                let uid = SQLValue.text("perfd-health-probe")
                try c.execute("INSERT INTO series (series_uid, study_uid, first_received, last_received, state) VALUES (?, '', ?, ?, 'receiving')",
                              [uid, now, now])
                try c.execute("INSERT INTO instances (sop_instance_uid, series_uid, sop_class_uid, path, file_size, received_at) VALUES (?, ?, '', '', 0, ?)",
                              [uid, uid, now])
                _ = try c.query("SELECT id, state FROM jobs WHERE state IN ('running', 'queued') ORDER BY id LIMIT 1")
                try c.execute("ROLLBACK TO probe")
                try c.execute("RELEASE probe")
                try c.execute("COMMIT")
            } catch {
                try? c.execute("ROLLBACK")
                throw error
            }
        } catch let e as StoreError {
            switch e.code & 0xff {
            case SQLITE_BUSY, SQLITE_LOCKED:
                return String(format: "locked: no write possible within %.1f s (another process holds the database)", WallClock.now() - started)
            case SQLITE_INTERRUPT:
                return String(format: "not answering within %.1f s", timeout)
            default:
                return e.message
            }
        } catch {
            return "\(error)"
        }
        if let f = lastWriteFailure {
            return "the last write failed \(Int(max(0, WallClock.now() - f.at))) s ago: \(f.message)"
        }
        return nil
    }

    /// /health's own connection; a probe still waiting holds it, and the next one says so.
    private let probeConnection = Mutex<Connection?>(nil)

    /// Runs `body` inside one transaction (BEGIN IMMEDIATE: writers queue, never deadlock).
    @discardableResult
    public func write<T>(_ body: (Transaction) throws -> T) throws -> T {
        try connection.withLock { connection in
            do {
                try connection.execute("BEGIN IMMEDIATE")
            } catch {
                noteWrite(error)
                throw error
            }
            do {
                let r = try body(Transaction(connection: connection))
                try connection.execute("COMMIT")
                noteWrite(nil)
                return r
            } catch {
                try? connection.execute("ROLLBACK")
                noteWrite(error)
                throw error
            }
        }
    }

    /// Runs `body` with a consistent read view, on the reading connection: it sees every
    /// commit made before it began and waits for no writer.
    public func read<T>(_ body: (Transaction) throws -> T) throws -> T {
        try reader.withLock { reader in
            try reader.execute("BEGIN")
            let r: T
            do {
                r = try body(Transaction(connection: reader))
            } catch {
                try? reader.execute("COMMIT")
                throw error
            }
            try? reader.execute("COMMIT")
            return r
        }
    }
}

private final class DeadlineBox {
    let deadline: Double
    init(_ d: Double) { deadline = d }
}

/// Statements inside a transaction.
public struct Transaction {
    let connection: Connection

    public func execute(_ sql: String, _ args: SQLConvertible?...) throws {
        try connection.execute(sql, args.map { $0?.sqlValue ?? .null })
    }

    public func executeScript(_ sql: String) throws { try connection.execute(sql) }

    /// A query whose arguments are built at run time.
    public func query(_ sql: String, _ args: [SQLConvertible?]) throws -> [Row] {
        try connection.query(sql, args.map { $0?.sqlValue ?? .null })
    }

    public func query(_ sql: String, _ args: SQLConvertible?...) throws -> [Row] {
        try connection.query(sql, args.map { $0?.sqlValue ?? .null })
    }

    public var changes: Int { connection.changes }
    public var lastInsertRowID: Int { Int(connection.lastInsertRowID) }
}
