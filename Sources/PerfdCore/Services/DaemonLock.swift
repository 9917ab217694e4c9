import Foundation
import Operations

/// One `perfd serve` per database and per spool. A second daemon on the same files would
/// resume the first's running jobs (sending their results twice), and its start-up
/// reconciliation would delete the first's files still being received. So serve takes an
/// exclusive lock on `DATABASE.lock` and on `SPOOL_DIR/.perfd.lock` before it opens the
/// database or looks at the spool, and holds both for its lifetime. The kernel drops them
/// when the process ends, however it ends: no stale lock after a kill -9. Admin commands
/// (status, jobs, purge...) do not take it; they share the database through SQLite's own
/// locking.
public final class DaemonLock: Sendable {
    public struct Held: Error, CustomStringConvertible, Sendable {
        public var path: String
        public var holder: Int32?
        public var description: String {
            "another perfd serve\(holder.map { " (pid \($0))" } ?? "") holds \(path): one daemon per database and spool; stop it first, or give this one its own `database` and `spool_dir`"
        }
    }

    public let paths: [String]
    private let fds: [Int32]

    /// Takes every lock or none; throws `Held` naming the lock file and its holder's pid.
    public init(database: String, spoolDir: String) throws {
        var fds: [Int32] = []
        var paths: [String] = []
        do {
            for (dir, name) in [((database as NSString).deletingLastPathComponent, (database as NSString).lastPathComponent + ".lock"),
                                (spoolDir, ".perfd.lock")] {
                let dir = dir.isEmpty ? "." : dir
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
                let path = dir + "/" + name
                fds.append(try Self.lock(path))
                paths.append(path)
            }
        } catch {
            for fd in fds { close(fd) }
            throw error
        }
        self.fds = fds
        self.paths = paths
    }

    deinit { for fd in fds { close(fd) } }

    private static func lock(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ServiceError(message: "cannot open the lock file \(path): \(String(cString: strerror(errno))); make its directory writable by perfd")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            let holder = Self.holder(fd)
            close(fd)
            if e == EWOULDBLOCK { throw Held(path: path, holder: holder) }
            throw ServiceError(message: "cannot lock \(path): \(String(cString: strerror(e)))")
        }
        // The holder's pid, for the message a second daemon prints.
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
        return fd
    }

    private static func holder(_ fd: Int32) -> Int32? {
        var buf = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buf, buf.count, 0)
        guard n > 0 else { return nil }
        return Int32(String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
