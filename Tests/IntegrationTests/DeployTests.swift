import Config
import Foundation
import PerfdTestSupport
import Testing

/// deploy/install.sh and deploy/uninstall.sh in staging mode (`--destdir`), with the binary
/// this build made: the tree they lay out, its modes, the sample config, and what uninstall
/// keeps. The real install (user, chown, systemctl) is the same script minus the staging guards.
@Suite struct DeployTests {
    static let install = Paths.root + "/deploy/install.sh"
    static let uninstall = Paths.root + "/deploy/uninstall.sh"

    func mode(_ path: String) throws -> Int {
        try (FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    func stage(_ root: String) throws -> ToolResult {
        try runTool("/bin/bash", [Self.install, "--destdir", root, "--binary", Paths.perfd])
    }

    @Test func installStagesTheTreeAndUninstallKeepsTheData() throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.install) && FileManager.default.isExecutableFile(atPath: Self.uninstall),
                "deploy/*.sh must be executable (git update-index --chmod=+x)")
        let dir = TempDir("perfd-deploy")
        let root = dir.path + "/root"
        let r = try stage(root)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("staging into"), "staging mode must say what it skips: \(r.output)")

        let bin = root + "/usr/local/bin/perfd", unit = root + "/etc/systemd/system/perfd.service"
        let config = root + "/etc/perfd/perfd.yaml", state = root + "/var/lib/perfd"
        #expect(try mode(bin) == 0o755)
        #expect(try mode(state) == 0o700)
        #expect(try mode(state + "/spool") == 0o700)
        #expect(try mode(root + "/etc/perfd") == 0o750)
        #expect(try mode(root + "/etc/perfd/tls") == 0o750)
        #expect(try mode(config) == 0o640)
        #expect(try mode(unit) == 0o644)
        // The installed files are the repository's, byte for byte.
        #expect(FileManager.default.contentsEqual(atPath: bin, andPath: Paths.perfd))
        #expect(FileManager.default.contentsEqual(atPath: unit, andPath: Paths.root + "/systemd/perfd.service"))
        #expect(FileManager.default.contentsEqual(atPath: config, andPath: Paths.root + "/deploy/perfd.yaml"))

        // The staged binary accepts the staged sample config once its PACS is one that
        // resolves here (pacs.example.org does not: check-config names it).
        let sample = try String(contentsOfFile: config, encoding: .utf8)
        let unedited = try runTool(bin, ["check-config", "--config", config])
        #expect(unedited.status != 0 && unedited.stderr.contains("pacs.example.org"), "\(unedited.output)")
        try sample.replacingOccurrences(of: "pacs.example.org", with: "127.0.0.1").write(toFile: config, atomically: true, encoding: .utf8)
        let check = try runTool(bin, ["check-config", "--config", config])
        #expect(check.status == 0, "the sample config must pass check-config: \(check.output)")
        #expect(check.stdout.contains("OK"), "\(check.output)")

        // Again (an upgrade): an edited config is kept, the binary replaced, still exit 0.
        try "# edited by the admin\n".write(toFile: config, atomically: false, encoding: .utf8)
        let again = try stage(root)
        #expect(again.status == 0, "\(again.output)")
        #expect(try String(contentsOfFile: config, encoding: .utf8) == "# edited by the admin\n", "install must never overwrite a config")
        #expect(exists(root + "/etc/perfd/perfd.yaml.sample"))

        // Uninstall: binary and unit go; config and state (patient data) stay.
        try "spool".write(toFile: state + "/spool/marker", atomically: false, encoding: .utf8)
        let u = try runTool("/bin/bash", [Self.uninstall, "--destdir", root])
        #expect(u.status == 0, "\(u.output)")
        #expect(!exists(bin) && !exists(unit))
        #expect(exists(config) && exists(state + "/spool/marker"))

        // --purge-data without --yes and without a terminal refuses and deletes nothing.
        let refused = try runTool("/bin/bash", ["-c", "bash \"$0\" --destdir \"$1\" --purge-data </dev/null", Self.uninstall, root])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--yes"), "\(refused.output)")
        #expect(exists(state + "/spool/marker"))

        let purged = try runTool("/bin/bash", [Self.uninstall, "--destdir", root, "--purge-data", "--yes"])
        #expect(purged.status == 0, "\(purged.output)")
        #expect(!exists(state) && !exists(root + "/etc/perfd"))
    }

    /// MemoryMax= follows memory_limit_gb: the unit's 80% by default, a drop-in 7% above the
    /// key when the config sets it; uninstall removes the drop-in.
    @Test func unitMemoryMaxMatchesMemoryLimit() throws {
        let dir = TempDir("perfd-deploy")
        let root = dir.path + "/root"
        #expect(try stage(root).status == 0)
        let unit = try String(contentsOfFile: root + "/etc/systemd/system/perfd.service", encoding: .utf8)
        #expect(unit.contains("\nMemoryMax=80%\n"))
        let dropIn = root + "/etc/systemd/system/perfd.service.d/memory.conf"
        #expect(!exists(dropIn))
        let config = root + "/etc/perfd/perfd.yaml"
        let text = try String(contentsOfFile: config, encoding: .utf8) + "\nmemory_limit_gb: 12\n"
        try text.write(toFile: config, atomically: false, encoding: .utf8)
        #expect(try Config.load(path: config).memoryLimitGB == 12)
        let again = try stage(root)
        #expect(again.status == 0, "\(again.output)")
        let conf = try String(contentsOfFile: dropIn, encoding: .utf8)
        #expect(conf.contains("[Service]\nMemoryMax=12840M\n"), "\(conf)")
        #expect(try runTool("/bin/bash", [Self.uninstall, "--destdir", root]).status == 0)
        #expect(!exists(dropIn))
    }

    @Test func installRefusesABinaryThatIsNotThere() throws {
        let dir = TempDir("perfd-deploy")
        let r = try runTool("/bin/bash", [Self.install, "--destdir", dir.path + "/root", "--binary", dir.path + "/no-such-perfd"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("no-such-perfd") && r.stderr.contains("--binary"), "\(r.output)")
        #expect(!exists(dir.path + "/root/usr/local/bin/perfd"))
    }

    /// The sample explains every key perfd knows (commented-out ones count), and its data
    /// paths are ones the unit lets perfd write.
    @Test func sampleDocumentsEveryKeyAndFitsTheUnit() throws {
        let sample = try String(contentsOfFile: Paths.root + "/deploy/perfd.yaml", encoding: .utf8)
        let lines = sample.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        for key in Config.knownKeys.sorted() {
            let documented = lines.contains { $0.hasPrefix(key + ":") || $0.hasPrefix("# " + key + ":") }
            #expect(documented, "deploy/perfd.yaml does not mention \(key); add it with a comment")
        }
        let parsed = try Config.parse(yaml: sample)
        let unit = try String(contentsOfFile: Paths.root + "/systemd/perfd.service", encoding: .utf8)
        let writable = unit.split(separator: "\n").filter { $0.hasPrefix("ReadWritePaths=") }
            .flatMap { $0.dropFirst("ReadWritePaths=".count).split(separator: " ").map(String.init) }
        for path in [parsed.spoolDir, parsed.database] {
            #expect(writable.contains { path.hasPrefix($0 + "/") }, "\(path) is outside the unit's ReadWritePaths \(writable)")
        }
        #expect(unit.contains("ExecStart=/usr/local/bin/perfd serve --config /etc/perfd/perfd.yaml"))
    }
}
