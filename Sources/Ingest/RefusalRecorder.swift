import Foundation
import Store
import Logging
import Synchronization

/// Counts repeats of the same thing within a window: the first is reported at once, the
/// rest are counted and reported as one summary when the window closes. A peer refused
/// thousands of times a second then costs a few rows and lines, not one each.
final class RepeatWindow<Key: Hashable & Sendable, Sample: Sendable>: Sendable {
    let interval: Double
    /// Distinct keys tracked per window; beyond, repeats of new keys share `overflow`.
    let maxKeys: Int
    let overflow: Key
    private struct Window {
        var entries: [Key: (sample: Sample, repeats: Int)] = [:]
        var scheduled = false
    }
    private let window = Mutex(Window())
    private let report: @Sendable ([(key: Key, sample: Sample, repeats: Int)]) -> Void

    init(interval: Double, maxKeys: Int = 256, overflow: Key,
         report: @escaping @Sendable ([(key: Key, sample: Sample, repeats: Int)]) -> Void) {
        self.interval = interval; self.maxKeys = maxKeys; self.overflow = overflow; self.report = report
    }

    /// True when this is the first of its key in the window (the caller reports it in
    /// full); false when it was counted for the window's summary.
    func note(_ key: Key, _ sample: Sample) -> Bool {
        let (first, schedule): (Bool, Bool) = window.withLock { w in
            var key = key
            if w.entries[key] == nil && w.entries.count >= maxKeys { key = overflow }
            let schedule = !w.scheduled
            w.scheduled = true
            if w.entries[key] != nil {
                w.entries[key]!.repeats += 1
                return (false, schedule)
            }
            // The overflow bucket is never reported on its own: it counts from its first.
            w.entries[key] = (sample, key == overflow ? 1 : 0)
            return (key != overflow, schedule)
        }
        if schedule {
            DispatchQueue.global().asyncAfter(deadline: .now() + interval) { [weak self] in self?.flush() }
        }
        return first
    }

    /// Reports what was counted and opens a new window (also at shutdown).
    func flush() {
        let due: [(key: Key, sample: Sample, repeats: Int)] = window.withLock { w in
            defer { w.entries.removeAll(); w.scheduled = false }
            return w.entries.compactMap { $0.value.repeats > 0 ? ($0.key, $0.value.sample, $0.value.repeats) : nil }
        }
        if !due.isEmpty { report(due) }
    }
}

/// Refused associations and connections in the log, the events table and the audit trail:
/// the first of each (host, calling AE, reason) in `interval` seconds as it happens, the
/// rest as one row with a count ("and 3,399 more refusals from 127.0.0.1 in the last 10 s").
/// `/metrics` still counts every one.
public final class RefusalRecorder: Sendable {
    struct Key: Hashable, Sendable { var host: String, actor: String, reason: String }
    public let interval: Double
    let store: any PerfdStore
    let logger: Logger
    private let window: RepeatWindow<Key, String>

    public init(store: any PerfdStore, logger: Logger, interval: Double = 10) {
        self.store = store; self.logger = logger; self.interval = interval
        let overflow = Key(host: "*", actor: "*", reason: "*")
        window = RepeatWindow(interval: interval, overflow: overflow) { due in
            for d in due {
                let more = "\(Self.grouped(d.repeats)) more refusal\(d.repeats == 1 ? "" : "s")"
                let from = d.key == overflow ? "from other peers" : "from \(d.key.host.isEmpty ? "an unknown host" : d.key.host)"
                    + (d.key.actor.isEmpty ? "" : " (calling AE \"\(d.key.actor)\")")
                let seconds = Self.grouped(Int(interval.rounded()))
                logger.warning("... and \(more) \(from) in the last \(seconds) s: \(d.sample)")
                try? store.logEvent(kind: "association_refused", "\(more) \(from) in the last \(seconds) s: \(d.sample)")
                try? store.audit(AuditEntry(kind: .association, outcome: "refused", actor: d.key == overflow ? "" : d.key.actor,
                                            host: d.key == overflow ? "" : d.key.host,
                                            detail: "\(d.sample) (repeated \(d.repeats) times in \(seconds) s)", count: d.repeats))
            }
        }
    }

    /// One refusal. `reason` names why (with `host` and `actor`, the grouping key); the
    /// log line, the event and the audit row's detail say it in full.
    public func refused(host: String, actor: String, reason: String, logLine: String, event: String, detail: String) {
        guard window.note(Key(host: host, actor: actor, reason: reason), detail) else { return }
        logger.warning("\(logLine)")
        try? store.logEvent(kind: "association_refused", event)
        try? store.audit(AuditEntry(kind: .association, outcome: "refused", actor: actor, host: host, detail: detail))
    }

    /// Writes the counts of the current window now (at shutdown).
    public func flush() { window.flush() }

    static func grouped(_ n: Int) -> String {
        let s = String(n)
        var out = ""
        for (i, c) in s.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return String(out.reversed())
    }
}
