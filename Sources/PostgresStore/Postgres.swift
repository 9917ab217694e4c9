import CLibPQ
import Dispatch
import Foundation
import Synchronization

/// What went wrong talking to PostgreSQL: the server's own message and SQLSTATE when it
/// answered, libpq's message when it could not be reached, and the statement.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    /// The five-character SQLSTATE ("23505" unique violation, "40001" serialisation failure,
    /// "57014" statement timeout, …); nil when no server answered, or perfd found the problem.
    public var sqlState: String?
    public var message: String
    public var detail: String?
    public var hint: String?
    public var statement: String
    /// No server answered: the connection could not be made, or broke (the outcome of a
    /// commit in flight is then unknown).
    public var noAnswer: Bool

    public init(sqlState: String?, message: String, detail: String? = nil, hint: String? = nil, statement: String = "", noAnswer: Bool = false) {
        self.sqlState = sqlState; self.message = message; self.detail = detail; self.hint = hint; self.statement = statement
        self.noAnswer = noAnswer
    }

    public var description: String {
        var s = "postgresql: \(message)"
        if let sqlState { s += " (SQLSTATE \(sqlState))" }
        if let detail, !detail.isEmpty { s += "; \(detail)" }
        if let hint, !hint.isEmpty { s += "; hint: \(hint)" }
        if !statement.isEmpty { s += " (in: \(statement.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ").prefix(160)))" }
        return s
    }

    /// A serialisation failure or deadlock: the transaction may be run again as it was.
    public var isRetryable: Bool { sqlState == "40001" || sqlState == "40P01" }
    /// No answer, or the server said the connection is unusable (class 08, admin shutdown).
    public var isConnectionFailure: Bool {
        guard let s = sqlState else { return noAnswer }
        return noAnswer || s.hasPrefix("08") || s == "57P01" || s == "57P02" || s == "57P03"
    }
}

/// A value bound to a statement's `$n` or read from a result column.
public enum PGValue: Sendable, Equatable {
    case null, int(Int64), double(Double), text(String), bool(Bool), bytes([UInt8])

    public var int: Int? {
        switch self {
        case .int(let v): Int(v)
        case .double(let d): d.isFinite ? Int(d) : nil
        case .bool(let b): b ? 1 : 0
        default: nil
        }
    }
    public var double: Double? {
        switch self {
        case .double(let v): v
        case .int(let i): Double(i)
        default: nil
        }
    }
    public var text: String? { if case .text(let v) = self { return v }; return nil }
    public var bool: Bool? { if case .bool(let v) = self { return v }; return nil }
    public var bytes: [UInt8]? { if case .bytes(let v) = self { return v }; return nil }
    public var isNull: Bool { self == .null }
}

/// Something that binds to a `$n` parameter.
public protocol PGBindable { var pgValue: PGValue { get } }
extension Int: PGBindable { public var pgValue: PGValue { .int(Int64(self)) } }
extension Int64: PGBindable { public var pgValue: PGValue { .int(self) } }
extension Int32: PGBindable { public var pgValue: PGValue { .int(Int64(self)) } }
extension Double: PGBindable { public var pgValue: PGValue { .double(self) } }
extension String: PGBindable { public var pgValue: PGValue { .text(self) } }
extension Bool: PGBindable { public var pgValue: PGValue { .bool(self) } }
extension Array: PGBindable where Element == UInt8 { public var pgValue: PGValue { .bytes(self) } }
extension Data: PGBindable { public var pgValue: PGValue { .bytes([UInt8](self)) } }
extension PGValue: PGBindable { public var pgValue: PGValue { self } }
extension Optional: PGBindable where Wrapped: PGBindable { public var pgValue: PGValue { self?.pgValue ?? .null } }

/// A list of ids bound as one `bigint[]` parameter (write `$n::bigint[]`).
public struct PGIntArray: PGBindable {
    public var values: [Int]
    public init(_ values: some Sequence<Int>) { self.values = Array(values) }
    public var pgValue: PGValue { .text("{" + values.map(String.init).joined(separator: ",") + "}") }
}

/// One result row, by column name.
public struct PGRow: Sendable {
    let names: [String]
    let values: [PGValue]
    public subscript(_ name: String) -> PGValue {
        guard let i = names.firstIndex(of: name) else { return .null }
        return values[i]
    }
}

/// One libpq connection. Used by one thread at a time: `PostgresDatabase` hands it out from
/// its pool for one transaction and takes it back (hence `@unchecked Sendable`).
final class PGConnection: @unchecked Sendable {
    let handle: OpaquePointer

    /// Connects to `url` (`postgresql://user@host:port/db?…`). perfd's defaults come first so
    /// the URL overrides them: a 5 s connect timeout (libpq waits for ever otherwise) and the
    /// application name `perfd`, which `pg_stat_activity` shows.
    init(url: String) throws {
        let keys = ["connect_timeout", "application_name", "dbname"]
        let values = ["5", "perfd", url]
        let conn: OpaquePointer? = withArrayOfCStrings(keys) { k in
            withArrayOfCStrings(values) { v in PQconnectdbParams(k, v, 1) }
        }
        guard let conn else { throw PostgresError(sqlState: nil, message: "cannot allocate a libpq connection", noAnswer: true) }
        guard PQstatus(conn) == CONNECTION_OK else {
            let msg = String(cString: PQerrorMessage(conn)).trimmingCharacters(in: .whitespacesAndNewlines)
            PQfinish(conn)
            throw PostgresError(sqlState: nil, message: "cannot connect to \(PostgresDatabase.redacted(url)): \(msg)", noAnswer: true)
        }
        handle = conn
        // Acknowledged means committed to disk (and to a synchronous standby where the server
        // has one): never a server default of `off`. Times perfd computes are its own; the
        // database's clock is read with now() and converted to seconds since 1970.
        // Notices ("already exists, skipping") would go to stderr: warnings and up only.
        try script("SET synchronous_commit = on; SET TIME ZONE 'UTC'; SET client_min_messages = warning")
    }

    deinit { PQfinish(handle) }

    var isUsable: Bool { PQstatus(handle) == CONNECTION_OK && PQtransactionStatus(handle) == PQTRANS_IDLE }

    /// The socket, for tests that cut the connection the way a killed process would.
    var socket: Int32 { PQsocket(handle) }

    /// A script of several statements without parameters (migrations, BEGIN/COMMIT).
    func script(_ sql: String) throws {
        let r = PQexec(handle, sql)
        defer { PQclear(r) }
        try check(r, sql)
    }

    private func check(_ r: OpaquePointer?, _ sql: String) throws {
        guard let r else {
            throw PostgresError(sqlState: nil, message: String(cString: PQerrorMessage(handle)).trimmingCharacters(in: .whitespacesAndNewlines),
                                statement: sql, noAnswer: true)
        }
        let status = PQresultStatus(r)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            func field(_ c: Character) -> String? {
                PQresultErrorField(r, Int32(c.asciiValue!)).map { String(cString: $0) }
            }
            let primary = field("M") ?? String(cString: PQerrorMessage(handle)).trimmingCharacters(in: .whitespacesAndNewlines)
            // A client-side error (the server closed the connection) has no SQLSTATE.
            throw PostgresError(sqlState: field("C"), message: primary.isEmpty ? "error status \(status)" : primary,
                                detail: field("D"), hint: field("H"), statement: sql, noAnswer: PQstatus(handle) != CONNECTION_OK)
        }
    }

    /// One statement with `$1…$n` parameters (PQexecParams: values travel apart from the SQL
    /// text, never spliced into it). Text format both ways except bytea parameters, which go
    /// binary. Returns the rows and the number of rows the command affected.
    func execute(_ sql: String, _ params: [PGValue]) throws -> (rows: [PGRow], affected: Int) {
        var types: [Oid] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        var buffers: [UnsafeMutablePointer<CChar>?] = []
        defer { for b in buffers { free(b) } }
        for p in params {
            switch p {
            case .null:
                types.append(0); lengths.append(0); formats.append(0); buffers.append(nil)
            case .int(let v):
                types.append(20); lengths.append(0); formats.append(0); buffers.append(strdup(String(v)))
            case .double(let v):
                // Swift prints the shortest text that reads back as the same double.
                let t = v.isNaN ? "NaN" : v.isInfinite ? (v > 0 ? "Infinity" : "-Infinity") : "\(v)"
                types.append(701); lengths.append(0); formats.append(0); buffers.append(strdup(t))
            case .bool(let v):
                types.append(16); lengths.append(0); formats.append(0); buffers.append(strdup(v ? "true" : "false"))
            case .text(let v):
                // Type left to the server (inferred from where the parameter is used).
                types.append(0); lengths.append(0); formats.append(0); buffers.append(strdup(v))
            case .bytes(let v):
                let b = malloc(max(v.count, 1))!.assumingMemoryBound(to: CChar.self)
                v.withUnsafeBytes { raw in if let base = raw.baseAddress { memcpy(b, base, v.count) } }
                types.append(17); lengths.append(Int32(v.count)); formats.append(1); buffers.append(b)
            }
        }
        let r: OpaquePointer? = params.isEmpty ? PQexecParams(handle, sql, 0, nil, nil, nil, nil, 0) : buffers.withUnsafeBufferPointer { bp in
            bp.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffers.count) { values in
                PQexecParams(handle, sql, Int32(params.count), types, values, lengths, formats, 0)
            }
        }
        defer { PQclear(r) }
        try check(r, sql)
        guard let r else { return ([], 0) }
        let affected = Int(String(cString: PQcmdTuples(r))) ?? 0
        let nrows = Int(PQntuples(r)), ncols = Int(PQnfields(r))
        guard nrows > 0 else { return ([], affected) }
        let names = (0..<ncols).map { String(cString: PQfname(r, Int32($0))) }
        let oids = (0..<ncols).map { PQftype(r, Int32($0)) }
        var rows: [PGRow] = []
        rows.reserveCapacity(nrows)
        for i in 0..<nrows {
            var vals: [PGValue] = []
            vals.reserveCapacity(ncols)
            for c in 0..<ncols {
                if PQgetisnull(r, Int32(i), Int32(c)) != 0 { vals.append(.null); continue }
                let p = PQgetvalue(r, Int32(i), Int32(c))!
                switch oids[c] {
                case 20, 21, 23, 26:   // int8, int2, int4, oid
                    vals.append(.int(Int64(String(cString: p)) ?? 0))
                case 700, 701, 1700:   // float4, float8, numeric
                    vals.append(.double(Double(String(cString: p)) ?? .nan))
                case 16:
                    vals.append(.bool(p.pointee == CChar(UInt8(ascii: "t"))))
                case 17:               // bytea, hex text form "\x…"
                    vals.append(.bytes(Self.unhex(p, Int(PQgetlength(r, Int32(i), Int32(c))))))
                default:
                    vals.append(.text(String(cString: p)))
                }
            }
            rows.append(PGRow(names: names, values: vals))
        }
        return (rows, affected)
    }

    /// Decodes bytea's hex output ("\x0a1b…").
    static func unhex(_ p: UnsafePointer<CChar>, _ n: Int) -> [UInt8] {
        guard n >= 2 else { return [] }
        func nibble(_ c: CChar) -> UInt8 {
            let u = UInt8(bitPattern: c)
            switch u {
            case 48...57: return u - 48
            case 97...102: return u - 87
            case 65...70: return u - 55
            default: return 0
            }
        }
        let count = (n - 2) / 2
        return [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
            var j = 2
            for k in 0..<count { buf[k] = nibble(p[j]) << 4 | nibble(p[j + 1]); j += 2 }
            initialized = count
        }
    }
}

private func withArrayOfCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let ptrs: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) } + [nil]
    defer { for p in ptrs { free(p) } }
    return ptrs.withUnsafeBufferPointer { bp in
        bp.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: ptrs.count) { body($0) }
    }
}

/// Statements inside one transaction. SQL is written with `?` placeholders, as in the SQLite
/// store, and numbered `$1…$n` here before it goes to the server; values always travel as
/// parameters.
public struct PGTransaction {
    let connection: PGConnection
    /// Called before each statement with its SQL and the connection's socket (tests use it
    /// to cut the connection mid-transaction, as a killed process would); nil in production.
    var beforeStatement: (@Sendable (String, Int32) -> Void)? = nil

    static func numbered(_ sql: String) -> String {
        var out = ""
        out.reserveCapacity(sql.utf8.count + 16)
        var n = 0
        var inQuote = false
        for ch in sql {
            if ch == "'" { inQuote.toggle() }
            if ch == "?" && !inQuote { n += 1; out += "$\(n)" } else { out.append(ch) }
        }
        return out
    }

    @discardableResult
    public func execute(_ sql: String, _ args: PGBindable?...) throws -> Int {
        beforeStatement?(sql, connection.socket)
        return try connection.execute(Self.numbered(sql), args.map { $0?.pgValue ?? .null }).affected
    }

    public func query(_ sql: String, _ args: PGBindable?...) throws -> [PGRow] {
        beforeStatement?(sql, connection.socket)
        return try connection.execute(Self.numbered(sql), args.map { $0?.pgValue ?? .null }).rows
    }

    public func query(_ sql: String, _ args: [PGBindable?]) throws -> [PGRow] {
        beforeStatement?(sql, connection.socket)
        return try connection.execute(Self.numbered(sql), args.map { $0?.pgValue ?? .null }).rows
    }

    /// Several statements without parameters (schema scripts).
    public func script(_ sql: String) throws { try connection.script(sql) }
}

/// A PostgreSQL database reached by URL, through a small pool of connections.
///
/// Why a pool and not a connection per thread: ingest runs on DCMTK's association threads,
/// which come and go (one per association), so connections kept per thread would be opened
/// per association and leak with the threads; and several perfd nodes share the server's
/// `max_connections` (100 by default). A pool of `size` connections, handed out for one
/// transaction at a time, bounds what a node holds and lets transactions run side by side
/// (PostgreSQL locks rows, unlike SQLite's one writer). A connection that failed or is left
/// inside a transaction is closed, never handed out again; the next checkout reconnects.
public final class PostgresDatabase: Sendable {
    public let url: String
    public let size: Int
    /// How long a caller waits for a free connection before the call fails.
    public let checkoutTimeout: Double
    private let idle = Mutex<[PGConnection]>([])
    private let slots: DispatchSemaphore
    /// See `PGTransaction.beforeStatement` (fault injection for tests).
    let beforeStatement = Mutex<(@Sendable (String, Int32) -> Void)?>(nil)

    public init(url: String, size: Int = 8, checkoutTimeout: Double = 10) throws {
        precondition(size >= 1)
        self.url = url; self.size = size; self.checkoutTimeout = checkoutTimeout
        slots = DispatchSemaphore(value: size)
        // Fail now, with the server's answer, rather than at the first ingest.
        let first = try PGConnection(url: url)
        idle.withLock { $0.append(first) }
    }

    /// The URL without its password, for logs and errors.
    public static func redacted(_ url: String) -> String {
        guard var c = URLComponents(string: url), c.password != nil else { return url }
        c.password = "***"
        return c.string ?? url
    }

    /// Runs `body` on a connection of the pool; `discard` is called when the connection must
    /// not go back (it failed or sits inside a transaction).
    func withConnection<T>(_ body: (PGConnection) throws -> T) throws -> T {
        guard slots.wait(timeout: .now() + checkoutTimeout) == .success else {
            throw PostgresError(sqlState: nil, message: "all \(size) connections to \(Self.redacted(url)) stayed busy for \(Int(checkoutTimeout)) s")
        }
        defer { slots.signal() }
        let c = try idle.withLock { $0.popLast() } ?? PGConnection(url: url)
        do {
            let r = try body(c)
            if c.isUsable { idle.withLock { $0.append(c) } }
            return r
        } catch {
            if c.isUsable { idle.withLock { $0.append(c) } }
            throw error
        }
    }

    /// Drops idle connections (after a server restart the next checkout reconnects anyway).
    public func closeIdle() { idle.withLock { $0.removeAll() } }

    /// Runs `body` in one READ COMMITTED transaction and commits it. A serialisation failure
    /// or deadlock runs it again (up to three times): the bodies only touch the database.
    /// Any other error rolls back and is thrown; if the commit itself got no answer the
    /// outcome is unknown and the error says so (a DICOM sender gets 0xA700 and resends,
    /// which ingest treats as an identical re-send).
    @discardableResult
    public func write<T>(_ body: (PGTransaction) throws -> T) throws -> T {
        var tries = 0
        while true {
            tries += 1
            do {
                return try withConnection { c in
                    try c.script("BEGIN")
                    let r: T
                    do {
                        r = try body(PGTransaction(connection: c, beforeStatement: beforeStatement.withLock { $0 }))
                    } catch {
                        try? c.script("ROLLBACK")
                        throw error
                    }
                    do {
                        try c.script("COMMIT")
                    } catch var e as PostgresError where e.isConnectionFailure {
                        e.message = "the commit got no answer, so it may or may not have happened: " + e.message
                        throw e
                    }
                    return r
                }
            } catch let e as PostgresError where e.isRetryable && tries < 3 {
                continue
            }
        }
    }

    /// Runs `body` in a read-only transaction with one snapshot (REPEATABLE READ): every
    /// query in it sees the same committed state.
    public func read<T>(_ body: (PGTransaction) throws -> T) throws -> T {
        try withConnection { c in
            try c.script("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            do {
                let r = try body(PGTransaction(connection: c))
                try c.script("COMMIT")
                return r
            } catch {
                try? c.script("ROLLBACK")
                throw error
            }
        }
    }
}
