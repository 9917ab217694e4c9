import DICOM
import Foundation
import Pipelines

/// The checks a parsed config must pass before perfd serves with it. `perfd check-config`
/// and `perfd serve` both call `ConfigValidation.run` — one list, so check-config cannot say
/// OK to a config serve then refuses.
///
/// Parsing (`Config.parse`) checks each key on its own; this checks what needs the machine:
/// ports that can be bound and do not collide, TLS files DCMTK accepts, the metrics address,
/// every configured pipeline's model loaded, destination hosts that resolve, and the spool and
/// database inside the systemd unit's writable paths when the unit that runs this config is
/// found.
public struct ConfigValidation: Sendable {
    /// Problems that stop serve (and make check-config exit non-zero), each naming the key and the fix.
    public var problems: [String] = []
    /// Model directory loaded per learned pipeline ("perfusion" → ".../perfusion-clstm").
    public var models: [String: String] = [:]
    /// The unit file whose ReadWritePaths were checked, when one applies to this config.
    public var unitFile: String?

    public var ok: Bool { problems.isEmpty }

    /// Runs every check on `config` (read from `configPath`).
    /// `environment`/`executable` are the model search's (tests stage their own).
    /// `ephemeralPorts` lets a port be 0 (the kernel picks a free one): only the in-process
    /// test harness passes it, through `Daemon.Options`; no config key or CLI flag sets it,
    /// so a config file with port 0 is still refused.
    public static func run(_ config: Config, configPath: String,
                           environment: [String: String] = ProcessInfo.processInfo.environment,
                           executable: String = ModelLocator.currentExecutable(),
                           ephemeralPorts: Bool = false) -> ConfigValidation {
        var v = ConfigValidation()
        v.checkPorts(config, ephemeralPorts: ephemeralPorts)
        v.checkTLS(config)
        v.checkMetricsAddress(config)
        v.checkModels(config, environment: environment, executable: executable)
        v.checkDestinations(config)
        v.checkUnitPaths(config, configPath: configPath)
        return v
    }

    /// The lowest port an unprivileged process may bind (the unit runs as user perfd with no
    /// capabilities: CapabilityBoundingSet= is empty).
    static func unprivilegedPortStart() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding: .utf8),
              let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return 1024 }
        return n
    }

    mutating func checkPorts(_ c: Config, ephemeralPorts: Bool = false) {
        var ports: [(String, Int)] = []
        if c.plainListener { ports.append(("port", c.port)) }
        if let t = c.tls { ports.append(("tls.port", t.port)) }
        if let m = c.metricsPort { ports.append(("metrics_port", m)) }
        let low = Self.unprivilegedPortStart()
        for (key, port) in ports {
            if port == 0 {
                if ephemeralPorts { continue }
                problems.append("\(key) is 0: perfd would listen on a random port no scanner or scraper knows; give a fixed port (e.g. 11112, 2762, 9464)")
            } else if port < low {
                problems.append("\(key) \(port) is below \(low): the systemd unit runs perfd as user perfd without CAP_NET_BIND_SERVICE and cannot bind it; use a port of \(low) or above (11112 is DICOM's registered alternative to 104)")
            }
        }
        for i in ports.indices {
            for j in ports.indices where j > i && ports[i].1 == ports[j].1 && ports[i].1 != 0 {
                problems.append("\(ports[j].0) \(ports[j].1) is the same as \(ports[i].0): each listener needs its own port")
            }
        }
    }

    mutating func checkTLS(_ c: Config) {
        if let t = c.tls, let p = t.settings.problem(listener: true) { problems.append("tls: \(p)") }
        for (i, d) in c.destinations.enumerated() {
            if let t = d.tls, let p = t.problem(listener: false) { problems.append("destinations[\(i)].tls: \(p)") }
        }
    }

    mutating func checkMetricsAddress(_ c: Config) {
        guard c.metricsPort != nil else { return }
        var a = in_addr()
        if inet_pton(AF_INET, c.metricsAddress, &a) != 1 {
            problems.append("metrics_address \"\(c.metricsAddress)\" is not an IPv4 address (use 127.0.0.1 for this machine only, or 0.0.0.0 for every interface)")
        }
    }

    /// Every learned pipeline the config can pick (the default and every rule) with the model
    /// it would run, loaded as a job would load it.
    mutating func checkModels(_ c: Config, environment: [String: String], executable: String) {
        var wanted: [(pipeline: String, model: String?, key: String)] = []
        if ModelLocator.defaultModels[c.defaultPipeline] != nil { wanted.append((c.defaultPipeline, nil, "default_pipeline")) }
        for (i, r) in c.pipelines.enumerated() where ModelLocator.defaultModels[r.pipeline] != nil {
            wanted.append((r.pipeline, r.model, "pipelines[\(i)]"))
        }
        var loaded: [String: String?] = [:]  // directory → problem
        for w in wanted {
            do {
                let dir = try ModelLocator.locate(pipeline: w.pipeline, explicit: w.model, environment: environment, executable: executable)
                if let seen = loaded[dir] {
                    if let p = seen { problems.append("\(w.key): \(p)") }
                    continue
                }
                do {
                    _ = try ModelLocator.load(pipeline: w.pipeline, directory: dir, threads: 1)
                    loaded[dir] = .some(nil)
                    if models[w.pipeline] == nil { models[w.pipeline] = dir }
                } catch {
                    loaded[dir] = .some("\(error)")
                    problems.append("\(w.key): \(error)")
                }
            } catch {
                problems.append("\(w.key) (pipeline \(w.pipeline)): \(error)")
            }
        }
    }

    mutating func checkDestinations(_ c: Config) {
        for (i, d) in c.destinations.enumerated() {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var res: UnsafeMutablePointer<addrinfo>?
            let rc = getaddrinfo(d.host, String(d.port), &hints, &res)
            if let res { freeaddrinfo(res) }
            if rc != 0 {
                problems.append("destinations[\(i)].host \"\(d.host)\" does not resolve (\(String(cString: gai_strerror(rc)))): fix the name, add it to DNS or /etc/hosts, or give the PACS's IP address")
            }
        }
    }

    /// The unit that runs this config, when one is installed beside it: a unit file whose
    /// ExecStart names `--config` with this file's path, looked for under the same root (a
    /// staged tree: DIR/etc/perfd/perfd.yaml ↔ DIR/etc/systemd/system/perfd.service).
    static func unitFile(forConfig configPath: String) -> (unit: String, root: String)? {
        let config = URL(fileURLWithPath: configPath).standardizedFileURL.resolvingSymlinksInPath().path
        for relative in ["/etc/systemd/system/perfd.service", "/lib/systemd/system/perfd.service", "/usr/lib/systemd/system/perfd.service"] {
            // Roots: "" (this machine) and any prefix of the config path (a staged tree).
            var roots = [""]
            var dir = (config as NSString).deletingLastPathComponent
            while dir != "/" && !dir.isEmpty {
                dir = (dir as NSString).deletingLastPathComponent
                if dir != "/" { roots.append(dir) }
            }
            for root in roots {
                let unit = root + relative
                guard let text = try? String(contentsOfFile: unit, encoding: .utf8),
                      let execConfig = Self.execStartConfig(text), root + execConfig == config else { continue }
                return (unit, root)
            }
        }
        return nil
    }

    /// The `--config PATH` of a unit's ExecStart (the default /etc/perfd/perfd.yaml when absent).
    static func execStartConfig(_ unit: String) -> String? {
        for line in unit.split(separator: "\n") where line.hasPrefix("ExecStart=") {
            let words = line.dropFirst("ExecStart=".count).split(separator: " ").map(String.init)
            guard words.contains("serve") else { return nil }
            if let i = words.firstIndex(of: "--config"), i + 1 < words.count { return words[i + 1] }
            if let w = words.first(where: { $0.hasPrefix("--config=") }) { return String(w.dropFirst("--config=".count)) }
            return "/etc/perfd/perfd.yaml"
        }
        return nil
    }

    /// The paths a unit may write: ReadWritePaths= plus /var/lib/NAME of StateDirectory=.
    static func writablePaths(_ unit: String) -> [String] {
        var paths: [String] = []
        for line in unit.split(separator: "\n") {
            let l = line.trimmingCharacters(in: .whitespaces)
            if l.hasPrefix("ReadWritePaths=") {
                paths += l.dropFirst("ReadWritePaths=".count).split(separator: " ").map { String($0.drop { $0 == "-" || $0 == "+" }) }
            } else if l.hasPrefix("StateDirectory=") {
                paths += l.dropFirst("StateDirectory=".count).split(separator: " ").map { "/var/lib/" + $0 }
            }
        }
        return paths.filter { !$0.isEmpty }
    }

    mutating func checkUnitPaths(_ c: Config, configPath: String) {
        guard let (unit, _) = Self.unitFile(forConfig: configPath),
              let text = try? String(contentsOfFile: unit, encoding: .utf8) else { return }
        unitFile = unit
        let writable = Self.writablePaths(text)
        guard !writable.isEmpty, text.contains("ProtectSystem=strict") || text.contains("ReadWritePaths=") else { return }
        func inside(_ path: String) -> Bool {
            let p = URL(fileURLWithPath: path).standardizedFileURL.path
            return writable.contains { w in p == w || p.hasPrefix(w.hasSuffix("/") ? w : w + "/") }
        }
        let databaseDir = (c.database as NSString).deletingLastPathComponent
        for (key, path) in [("spool_dir", c.spoolDir), ("database", databaseDir)] where !inside(path) {
            problems.append("\(key) \(path) is outside the unit's writable paths (\(writable.joined(separator: ", ")) in \(unit)): "
                            + "the unit's file system is read-only elsewhere; move it under \(writable[0]) or add it to ReadWritePaths= with a drop-in (systemctl edit perfd)")
        }
    }
}
