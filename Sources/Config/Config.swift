import DICOM
import Foundation
import Pipelines
import Yams

/// perfd.yaml, validated. Key names are a contract (docs/ARCHITECTURE.md §7): they may grow, not change.
public struct Config: Sendable, Equatable {
    public struct Peer: Sendable, Equatable {
        public var aeTitle: String
        public var host: String?
        public init(aeTitle: String, host: String? = nil) { self.aeTitle = aeTitle; self.host = host }
    }
    /// A PACS results go to: AE title, host, port and optional TLS.
    public typealias Destination = DICOMPeer
    /// The DICOM-over-TLS listener (beside the plain one unless `plain_listener: false`).
    public struct TLSListener: Sendable, Equatable {
        public var port: Int
        public var settings: TLSSettings
        public init(port: Int, settings: TLSSettings) { self.port = port; self.settings = settings }
    }
    /// Which pipeline a completed series gets: the first rule whose conditions all hold.
    public struct PipelineRule: Sendable, Equatable {
        public var pipeline: String
        public var modality: String?
        public var seriesDescriptionContains: String?
        public var minTimepoints: Int?
        public var model: String?
        /// A learned perfusion pipeline's fallback on a series outside its model's envelope
        /// (`fallback:`; "none" → nil: the volumes are withheld instead).
        public var fallback: String? = Config.defaultFallback
    }
    public static let defaultFallback: String? = "perfusion-svd"
    public struct ExportRetry: Sendable, Equatable {
        public var initialSeconds: Double = 5
        public var maxSeconds: Double = 600
        public var giveUpHours: Double = 24
        public init() {}
    }

    public var aeTitle = "PERFD"
    public var port = 11112
    public var allowedPeers: [Peer] = []
    public var spoolDir = "/var/lib/perfd/spool"
    public var database = "/var/lib/perfd/perfd.sqlite"
    public var seriesQuietSeconds: Double = 10
    /// A series that declares its instance count and is still short of it after this long
    /// without a new instance fails as incomplete (the quiet timer only warns about it).
    public var seriesStalledSeconds: Double = 600
    public var pipelines: [PipelineRule] = []
    public var defaultPipeline = "baseline-mean03"
    public var destinations: [Destination] = []
    public var exportRetry = ExportRetry()
    public var retentionDays: Double = 7
    /// Audit rows older than this (days) are deleted; 0 keeps them for ever.
    public var auditRetentionDays: Double = 365
    public var minFreeDiskGB: Double = 2
    /// Pre-written spool files kept ready for incoming instances (MB; 0: none). See pdcm_scp.cpp.
    public var spoolReserveMB: Double = 512
    public var workers = 1
    public var threads = 2
    public var maxAssociations = 8
    /// Open connections (pending handshakes and associations) from one address, per listener.
    public var maxConnectionsPerHost = 16
    public var logLevel = "info"
    /// "text" (one line per message; journald priority prefixes when stderr is the journal)
    /// or "json" (one JSON object per line).
    public var logFormat = "text"
    /// Registration QC: a displacement beyond this (mm) flags the job "motion".
    public var motionThresholdMM = 3.0
    /// Thin slices are averaged into analysis slabs of at most this thickness (mm); thicker
    /// series are analysed as they are.
    public var analysisSlabMM = 5.0
    /// What the daemon's jobs may use of memory (GB), shared among `workers`; the installed
    /// unit's MemoryMax= matches it. Default: three quarters of the machine's memory.
    public var memoryLimitGB = MemoryBudget.machineDefaultGB
    public var tls: TLSListener?
    /// Whether the plain-TCP listener on `port` runs (off for TLS-only sites).
    public var plainListener = true
    /// Prometheus text at /metrics and /health on this port; nil: off.
    public var metricsPort: Int?
    public var metricsAddress = "127.0.0.1"

    public init() {}

    public static let knownKeys: Set<String> = [
        "ae_title", "port", "allowed_peers", "spool_dir", "database", "series_quiet_seconds", "series_stalled_seconds", "pipelines",
        "default_pipeline", "destinations", "export_retry", "retention_days", "audit_retention_days", "min_free_disk_gb", "spool_reserve_mb", "workers",
        "threads", "max_associations", "max_connections_per_host", "log_level", "log_format", "motion_threshold_mm", "tls", "plain_listener", "metrics_port",
        "metrics_address", "analysis_slab_mm", "memory_limit_gb",
    ]

    public static var pipelineNames: [String] { PipelineKind.names }

    /// The pipeline for a completed series.
    public func pipeline(modality: String, seriesDescription: String, timepoints: Int?) -> String {
        for r in pipelines {
            if let m = r.modality, m.caseInsensitiveCompare(modality) != .orderedSame { continue }
            if let d = r.seriesDescriptionContains, !seriesDescription.localizedCaseInsensitiveContains(d) { continue }
            if let n = r.minTimepoints, (timepoints ?? 0) < n { continue }
            return r.pipeline
        }
        return defaultPipeline
    }
}

/// Every problem found in a config file, each naming the key and the fix.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var problems: [String]
    public init(path: String, problems: [String]) { self.path = path; self.problems = problems }
    public var description: String {
        "\(path): " + (problems.count == 1 ? problems[0] : "\(problems.count) problems:\n" + problems.map { "  - \($0)" }.joined(separator: "\n"))
    }
}

extension Config {
    public static func load(path: String) throws -> Config {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(path: path, problems: ["cannot read the file (does it exist? pass --config PATH)"])
        }
        return try parse(yaml: text, path: path)
    }

    public static func parse(yaml: String, path: String = "perfd.yaml") throws -> Config {
        let node: Node
        do {
            guard let n = try Yams.compose(yaml: yaml) else { throw ConfigError(path: path, problems: ["the file is empty"]) }
            node = n
        } catch let e as ConfigError {
            throw e
        } catch {
            throw ConfigError(path: path, problems: ["not valid YAML: \(error)"])
        }
        guard let map = node.mapping else { throw ConfigError(path: path, problems: ["the top level must be a mapping of keys"]) }
        var p = Problems()
        var c = Config()
        for (k, v) in map {
            guard let key = k.string else { continue }
            switch key {
            case "ae_title": c.aeTitle = p.aeTitle(v, key) ?? c.aeTitle
            case "port": c.port = p.int(v, key, 0...65535) ?? c.port
            case "allowed_peers":
                guard let seq = v.sequence else { p.add("allowed_peers must be a list of {ae_title, host}"); continue }
                c.allowedPeers = seq.enumerated().compactMap { i, item in
                    let where_ = "allowed_peers[\(i)]"
                    guard let m = item.mapping else { p.add("\(where_) must be a mapping with ae_title and optional host"); return nil }
                    p.unknownKeys(m, where_, ["ae_title", "host"])
                    guard let ae = m["ae_title"].flatMap({ p.aeTitle($0, "\(where_).ae_title") }) else {
                        if m["ae_title"] == nil { p.add("\(where_) needs ae_title") }
                        return nil
                    }
                    return Peer(aeTitle: ae, host: m["host"]?.string)
                }
            case "spool_dir": c.spoolDir = p.string(v, key) ?? c.spoolDir
            case "database": c.database = p.string(v, key) ?? c.database
            case "series_quiet_seconds": c.seriesQuietSeconds = p.double(v, key, 0.1...86400) ?? c.seriesQuietSeconds
            case "series_stalled_seconds": c.seriesStalledSeconds = p.double(v, key, 1...604800) ?? c.seriesStalledSeconds
            case "default_pipeline": c.defaultPipeline = p.pipeline(v, key) ?? c.defaultPipeline
            case "pipelines":
                guard let seq = v.sequence else { p.add("pipelines must be a list of rules ({pipeline, modality, series_description, min_timepoints})"); continue }
                c.pipelines = seq.enumerated().compactMap { i, item in
                    let where_ = "pipelines[\(i)]"
                    guard let m = item.mapping else { p.add("\(where_) must be a mapping"); return nil }
                    p.unknownKeys(m, where_, ["pipeline", "modality", "series_description", "min_timepoints", "model", "fallback"])
                    guard let name = m["pipeline"].flatMap({ p.pipeline($0, "\(where_).pipeline") }) else {
                        if m["pipeline"] == nil { p.add("\(where_) needs pipeline (one of \(pipelineNames.joined(separator: ", ")))") }
                        return nil
                    }
                    var fallback = Config.defaultFallback
                    if let f = m["fallback"]?.string {
                        if f == "none" { fallback = nil }
                        else if f == "perfusion-svd" { fallback = f }
                        else { p.add("\(where_).fallback must be perfusion-svd or none (got \"\(f)\")") }
                    }
                    return PipelineRule(pipeline: name, modality: m["modality"]?.string,
                                        seriesDescriptionContains: m["series_description"]?.string,
                                        minTimepoints: m["min_timepoints"].flatMap { p.int($0, "\(where_).min_timepoints", 1...10000) },
                                        model: m["model"]?.string, fallback: fallback)
                }
            case "destinations":
                guard let seq = v.sequence else { p.add("destinations must be a list of {ae_title, host, port}"); continue }
                c.destinations = seq.enumerated().compactMap { i, item in
                    let where_ = "destinations[\(i)]"
                    guard let m = item.mapping else { p.add("\(where_) must be a mapping with ae_title, host, port"); return nil }
                    p.unknownKeys(m, where_, ["ae_title", "host", "port", "tls"])
                    let ae = m["ae_title"].flatMap { p.aeTitle($0, "\(where_).ae_title") }
                    let host = m["host"].flatMap { p.string($0, "\(where_).host") }
                    let port = m["port"].flatMap { p.int($0, "\(where_).port", 1...65535) }
                    let tls = m["tls"].flatMap { p.tls($0, "\(where_).tls", listener: false) }
                    guard let ae, let host, let port else {
                        for k in ["ae_title", "host", "port"] where m[k] == nil { p.add("\(where_) needs \(k)") }
                        return nil
                    }
                    return Destination(aeTitle: ae, host: host, port: port, tls: tls)
                }
            case "export_retry":
                guard let m = v.mapping else { p.add("export_retry must be a mapping {initial_seconds, max_seconds, give_up_hours}"); continue }
                p.unknownKeys(m, key, ["initial_seconds", "max_seconds", "give_up_hours"])
                if let x = m["initial_seconds"].flatMap({ p.double($0, "export_retry.initial_seconds", 0.01...86400) }) { c.exportRetry.initialSeconds = x }
                if let x = m["max_seconds"].flatMap({ p.double($0, "export_retry.max_seconds", 0.01...86400) }) { c.exportRetry.maxSeconds = x }
                if let x = m["give_up_hours"].flatMap({ p.double($0, "export_retry.give_up_hours", 0.001...10000) }) { c.exportRetry.giveUpHours = x }
            case "retention_days": c.retentionDays = p.double(v, key, 0...36500) ?? c.retentionDays
            case "audit_retention_days": c.auditRetentionDays = p.double(v, key, 0...36500) ?? c.auditRetentionDays
            case "min_free_disk_gb": c.minFreeDiskGB = p.double(v, key, 0...1_000_000) ?? c.minFreeDiskGB
            case "spool_reserve_mb": c.spoolReserveMB = p.double(v, key, 0...1_000_000) ?? c.spoolReserveMB
            case "workers": c.workers = p.int(v, key, 1...64) ?? c.workers
            case "threads": c.threads = p.int(v, key, 1...256) ?? c.threads
            case "max_associations": c.maxAssociations = p.int(v, key, 1...256) ?? c.maxAssociations
            case "max_connections_per_host": c.maxConnectionsPerHost = p.int(v, key, 1...1024) ?? c.maxConnectionsPerHost
            case "tls":
                guard let settings = p.tls(v, key, listener: true) else { continue }
                guard let port = v.mapping?["port"].flatMap({ p.int($0, "tls.port", 0...65535) }) else {
                    if v.mapping?["port"] == nil { p.add("tls needs port (the DICOM TLS listener's port, e.g. 2762)") }
                    continue
                }
                c.tls = TLSListener(port: port, settings: settings)
            case "plain_listener": c.plainListener = p.bool(v, key) ?? c.plainListener
            case "metrics_port": c.metricsPort = p.int(v, key, 0...65535)
            case "metrics_address": c.metricsAddress = p.string(v, key) ?? c.metricsAddress
            case "motion_threshold_mm": c.motionThresholdMM = p.double(v, key, 0.01...100) ?? c.motionThresholdMM
            case "log_format":
                if let s = p.string(v, key) {
                    if ["text", "json"].contains(s) { c.logFormat = s } else { p.add("log_format \"\(s)\" is not text or json") }
                }
            case "analysis_slab_mm": c.analysisSlabMM = p.double(v, key, 0...100) ?? c.analysisSlabMM
            case "memory_limit_gb": c.memoryLimitGB = p.double(v, key, 0.01...100_000) ?? c.memoryLimitGB
            case "log_level":
                let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
                if let s = p.string(v, key) {
                    if levels.contains(s) { c.logLevel = s } else { p.add("log_level \"\(s)\" is not one of \(levels.joined(separator: ", "))") }
                }
            default:
                p.add("unknown key \"\(key)\" (known keys: \(knownKeys.sorted().joined(separator: ", ")))")
            }
        }
        if !c.plainListener && c.tls == nil {
            p.add("plain_listener is false but there is no tls listener: perfd would not listen at all; add tls or drop plain_listener")
        }
        if let t = c.tls, c.plainListener, t.port == c.port, t.port != 0 {
            p.add("tls.port \(t.port) is the same as port; give the TLS listener its own port (2762 is DICOM's TLS port)")
        }
        // Unset, the stall limit follows a long quiet timer (a config written before the key
        // existed, with series_quiet_seconds of 600 or more, must still start); set, it must
        // outlast the quiet timer.
        if map["series_stalled_seconds"] == nil { c.seriesStalledSeconds = max(600, 2 * c.seriesQuietSeconds) }
        if c.seriesStalledSeconds <= c.seriesQuietSeconds {
            p.add("series_stalled_seconds (\(c.seriesStalledSeconds)) must be longer than series_quiet_seconds (\(c.seriesQuietSeconds)): a series short of its declared count is first warned about, then failed")
        }
        if c.allowedPeers.isEmpty && map["allowed_peers"] == nil {
            p.add("allowed_peers is missing: with no list every sender is refused; add the scanner's AE title (and host)")
        }
        guard p.list.isEmpty else { throw ConfigError(path: path, problems: p.list) }
        return c
    }
}

/// Collects problems instead of stopping at the first, so check-config explains them all.
private struct Problems {
    var list: [String] = []
    mutating func add(_ s: String) { list.append(s) }

    mutating func string(_ n: Node, _ key: String) -> String? {
        guard let s = n.scalar?.string, !s.isEmpty else { add("\(key) must be a non-empty string"); return nil }
        return s
    }
    mutating func int(_ n: Node, _ key: String, _ range: ClosedRange<Int>) -> Int? {
        guard let s = n.scalar?.string, let v = Int(s) else { add("\(key) must be a whole number"); return nil }
        guard range.contains(v) else { add("\(key) is \(v); it must be between \(range.lowerBound) and \(range.upperBound)"); return nil }
        return v
    }
    mutating func double(_ n: Node, _ key: String, _ range: ClosedRange<Double>) -> Double? {
        guard let s = n.scalar?.string, let v = Double(s) else { add("\(key) must be a number"); return nil }
        guard range.contains(v) else { add("\(key) is \(v); it must be between \(range.lowerBound) and \(range.upperBound)"); return nil }
        return v
    }
    mutating func bool(_ n: Node, _ key: String) -> Bool? {
        guard let s = n.scalar?.string.lowercased() else { add("\(key) must be true or false"); return nil }
        switch s {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: add("\(key) is \"\(s)\"; it must be true or false"); return nil
        }
    }
    /// TLS settings of a listener (`port` is read by the caller) or a destination.
    mutating func tls(_ n: Node, _ key: String, listener: Bool) -> TLSSettings? {
        guard let m = n.mapping else {
            add("\(key) must be a mapping {\(listener ? "port, " : "")certificate, private_key, trusted_certificates, require_peer_certificate}")
            return nil
        }
        unknownKeys(m, key, (listener ? ["port"] : ["verify_hostname"]) + ["certificate", "private_key", "trusted_certificates", "require_peer_certificate"])
        var t = TLSSettings()
        t.certificate = m["certificate"].flatMap { string($0, "\(key).certificate") }
        t.privateKey = m["private_key"].flatMap { string($0, "\(key).private_key") }
        if let list = m["trusted_certificates"] {
            if let seq = list.sequence {
                t.trustedCertificates = seq.enumerated().compactMap { i, item in string(item, "\(key).trusted_certificates[\(i)]") }
            } else if let one = string(list, "\(key).trusted_certificates") {
                t.trustedCertificates = [one]
            }
        }
        t.requirePeerCertificate = m["require_peer_certificate"].flatMap { bool($0, "\(key).require_peer_certificate") } ?? true
        if !listener { t.verifyHostname = m["verify_hostname"].flatMap { bool($0, "\(key).verify_hostname") } ?? true }
        if listener && (t.certificate == nil || t.privateKey == nil) {
            add("\(key) needs certificate and private_key (PEM files) for the listener")
        }
        if (t.certificate == nil) != (t.privateKey == nil) { add("\(key): give both certificate and private_key, or neither") }
        if t.requirePeerCertificate && t.trustedCertificates.isEmpty {
            add("\(key).require_peer_certificate is true but trusted_certificates is empty: list the CA certificate(s) peers are signed by")
        }
        for f in [t.certificate, t.privateKey].compactMap({ $0 }) + t.trustedCertificates where !FileManager.default.isReadableFile(atPath: f) {
            add("\(key): cannot read \(f) (does it exist, and may perfd's user read it?)")
        }
        return t
    }
    mutating func aeTitle(_ n: Node, _ key: String) -> String? {
        guard let s = string(n, key) else { return nil }
        guard s.count <= 16, s.allSatisfy({ $0.isASCII && $0 != "\\" && !$0.isNewline }) else {
            add("\(key) \"\(s)\" is not a valid AE title (1–16 ASCII characters, no backslash)"); return nil
        }
        return s
    }
    mutating func pipeline(_ n: Node, _ key: String) -> String? {
        guard let s = string(n, key) else { return nil }
        guard Config.pipelineNames.contains(s) else {
            add("\(key) \"\(s)\" is not a pipeline (one of \(Config.pipelineNames.joined(separator: ", ")))"); return nil
        }
        return s
    }
    mutating func unknownKeys(_ m: Node.Mapping, _ where_: String, _ known: [String]) {
        for k in m.keys { if let s = k.string, !known.contains(s) { add("\(where_): unknown key \"\(s)\" (known: \(known.joined(separator: ", ")))") } }
    }
}
