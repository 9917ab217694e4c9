import ArgumentParser
import Config
import DICOM
import Foundation
import JobStore
import Logging
import Operations
import Inference

@main
enum PerfdMain {
    static func main() async {
        // OpenBLAS chooses its kernels when it loads; on an AVX-512 CPU it does not know it
        // would take its slower AVX2 ones (see BLASKernels), so set the choice and start
        // again — same process, same arguments, before anything else has happened.
        if let core = BLASKernels.preferredCoreType() {
            setenv("OPENBLAS_CORETYPE", core, 1)
            let args = CommandLine.arguments
            var cargs = args.map { strdup($0) } + [nil]
            execv("/proc/self/exe", &cargs)
            // exec failed (no /proc?): carry on with the default kernels.
        }
        await Perfd.main()
    }
}

struct Perfd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perfd",
        abstract: "CT perfusion daemon: receives CTP series over DICOM, computes derived NCCT or perfusion maps, sends them back to the PACS.",
        discussion: "Start with `perfd check-config --config perfd.yaml`, then `perfd serve`. `perfd status` shows what the daemon is doing.",
        version: "perfd \(PerfdVersion.string)",
        subcommands: [Serve.self, Status.self, Jobs.self, Show.self, Retry.self, Cancel.self, Purge.self, Audit.self, CheckConfig.self, RunCommand.self, ModelCommand.self, PhantomCommand.self])
}

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Path of perfd.yaml.")
    var config: String = "/etc/perfd/perfd.yaml"

    func load() throws -> Config {
        do { return try Config.load(path: config) } catch { throw CLIError("\(error)") }
    }

    /// The config and its database, which must exist: an admin command never creates one
    /// (it would be owned by whoever ran it, and hide a wrong `database` path).
    func store() throws -> (Config, JobStore) {
        let c = try load()
        guard FileManager.default.fileExists(atPath: c.database) else {
            throw CLIError("no database at \(c.database): perfd serve has not run with \(config) yet, or `database` points elsewhere")
        }
        try Self.becomeDatabaseOwner(c.database)
        umask(0o077)  // a database or -wal file this command creates is perfd's alone
        do { return (c, try JobStore(path: c.database)) } catch {
            throw CLIError("cannot open the database \(c.database): \(error) (check `database` in \(config) and its permissions)")
        }
    }
}

extension ConfigOption {
    /// Run as root (`sudo perfd status`), an admin command would create the database, or its
    /// -wal/-shm files, owned by root, and the service (user perfd) could no longer open it.
    /// So root first takes the identity of whoever owns the database (or its directory).
    static func becomeDatabaseOwner(_ database: String) throws {
        guard getuid() == 0 || geteuid() == 0 else { return }
        var st = stat()
        let dir = (database as NSString).deletingLastPathComponent
        guard stat(database, &st) == 0 || stat(dir.isEmpty ? "." : dir, &st) == 0, st.st_uid != 0 else { return }
        guard setgroups(0, nil) == 0, setgid(st.st_gid) == 0, setuid(st.st_uid) == 0 else {
            throw CLIError("running as root, cannot switch to the owner (uid \(st.st_uid)) of \(database): \(String(cString: strerror(errno))); run the command as that user (sudo -u perfd perfd ...)")
        }
    }
}

/// A one-line error for stderr; ArgumentParser prints it and exits non-zero.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(data: try e.encode(value), encoding: .utf8)!)
}

func makeLogger(level: String, format: String = "text") -> Logger {
    let f = PerfdLogHandler.Format(rawValue: format) ?? .text
    LoggingSystem.bootstrap { EscapingLogHandler(PerfdLogHandler(label: $0, format: f)) }
    var logger = Logger(label: "perfd")
    logger.logLevel = Logger.Level(rawValue: level) ?? .info
    return logger
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self + " " : self + String(repeating: " ", count: n - count) }
}
