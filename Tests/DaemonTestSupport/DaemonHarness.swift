import Foundation
import JobStore
import Logging
import Config
import Operations
import PerfdCore
import PerfdTestSupport
import ServiceLifecycle
import Store
import Synchronization

/// A clock that runs with the wall clock and that a test can move forward: `now()` is the
/// wall clock plus every `advance(by:)` so far, and a service sleeping on it wakes as soon as
/// an advance takes it past its deadline. Time never goes back, and it keeps running between
/// advances, so what the daemon does on its own (a job, an association) takes its real time.
public final class ManualClock: DaemonClock {
    private struct State {
        var offset = 0.0
        var nextID = 0
        var sleepers: [Int: (deadline: Double, wake: CheckedContinuation<Void, Error>)] = [:]
    }
    private let state = Mutex(State())

    /// Sleepers are woken by `advance` or by a thread of the clock's own that looks every
    /// 10 ms — not by `Task.sleep`, whose timer resumes on the shared cooperative pool, which
    /// synchronous tests polling with `waitFor` can hold.
    public init() {
        let t = Thread { [weak self] in
            while let clock = self {
                clock.wakeDue()
                usleep(10_000)
            }
        }
        t.name = "perfd-manual-clock"
        t.start()
    }

    public func now() -> Double { WallClock.now() + state.withLock { $0.offset } }

    /// Seconds this clock is ahead of the wall clock.
    public var ahead: Double { state.withLock { $0.offset } }

    /// Moves the clock `seconds` forward and wakes every sleeper it takes past its deadline.
    public func advance(by seconds: Double) {
        precondition(seconds >= 0, "a clock does not go back")
        state.withLock { $0.offset += seconds }
        wakeDue()
    }

    private func wakeDue() {
        let now = self.now()
        let due = state.withLock { s -> [CheckedContinuation<Void, Error>] in
            let ids = s.sleepers.filter { $0.value.deadline <= now }.map(\.key)
            return ids.compactMap { s.sleepers.removeValue(forKey: $0)?.wake }
        }
        for c in due { c.resume() }
    }

    public func sleep(for duration: Duration) async throws {
        let c = duration.components
        let deadline = now() + Double(c.seconds) + Double(c.attoseconds) / 1e18
        let id = state.withLock { s -> Int in s.nextID += 1; return s.nextID }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (wake: CheckedContinuation<Void, Error>) in
                let now = self.now()
                let resumeNow = state.withLock { s -> Bool in
                    if Task.isCancelled || deadline <= now { return true }
                    s.sleepers[id] = (deadline, wake)
                    return false
                }
                if resumeNow { wake.resume() }
            }
        } onCancel: {
            let wake = state.withLock { $0.sleepers.removeValue(forKey: id)?.wake }
            wake?.resume(throwing: CancellationError())
        }
        try Task.checkCancellation()
    }
}

/// perfd's services running inside the test process — the same `Daemon` `perfd serve`
/// builds, from a config file the test wrote — on ports the kernel picks (the config says 0;
/// `port` and `metricsPort` are the bound ones) and on a `ManualClock`, so a test moves time
/// forward instead of sleeping through a quiet timer, a stall limit or an export back-off.
/// The peers (storescu, Orthanc, storescp) and the admin CLI (`perfd jobs`, `perfd status`)
/// stay real processes. The log goes to `logPath`, as `perfd serve`'s does in `PerfdServer`.
///
/// Only this harness starts a daemon with `Daemon.Options.ephemeralPorts`; `perfd serve` and
/// `perfd check-config` refuse port 0 in a config file.
public final class InProcessDaemon: @unchecked Sendable {
    // @unchecked Sendable: `group` and `daemon` are set in init and released only by
    // `stop()` (called from the test that owns the value, or deinit).
    public let clock: ManualClock
    public let configPath: String
    public let logPath: String
    private var daemon: Daemon?
    private var group: ServiceGroup?
    /// The threads the services' tasks run on (see `ThreadExecutor`).
    private let executor = ThreadExecutor(threads: 4, name: "perfd-harness")
    private let finished = DispatchSemaphore(value: 0)
    private let stopped = Mutex(false)
    /// The bound DICOM port (plain listener, else TLS), TLS port and metrics port.
    public let port: Int
    public let tlsPort: Int?
    public let metricsPort: Int?

    /// Starts the daemon on `configPath` (written with port 0; see `writeConfig`) and returns
    /// once every listener accepts associations.
    public init(configPath: String, logPath: String, clock: ManualClock = ManualClock()) throws {
        self.clock = clock
        self.configPath = configPath
        self.logPath = logPath
        // perfd serve's threads write to sockets a peer may have closed; DCMTK ignores
        // SIGPIPE when it starts, but a test process must not depend on the order.
        signal(SIGPIPE, SIG_IGN)
        let config = try Config.load(path: configPath)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let sink = LogFile(path: logPath)
        var logger = Logger(label: "perfd") { label in
            EscapingLogHandler(PerfdLogHandler(label: label, format: .text, journal: false, sink: { sink.write($0) }))
        }
        logger.logLevel = Logger.Level(rawValue: config.logLevel) ?? .info
        let daemon = try Daemon(config: config, configPath: configPath, logger: logger,
                                options: Daemon.Options(clock: clock, ephemeralPorts: true))
        self.daemon = daemon
        port = daemon.ingest.port
        tlsPort = daemon.ingest.tlsPort
        metricsPort = daemon.metricsServer?.port
        // No signal handlers in a test process: stop() drains the group instead.
        let group = daemon.serviceGroup(logger: logger, signals: false)
        self.group = group
        let finished = self.finished
        // The task holds the group only while it runs, so stop() releases the last reference.
        let handOver = Mutex<ServiceGroup?>(group)
        Task.detached(executorPreference: executor) {
            do { try await Self.run(handOver.withLock { g in defer { g = nil }; return g }) } catch {
                sink.write("service group ended: \(error)\n")
            }
            finished.signal()
        }
        let ingest = daemon.ingest
        try waitFor(20, "the in-process daemon to listen") { ingest.isListening }
    }

    private static func run(_ group: ServiceGroup?) async throws { try await group?.run() }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Drains as SIGTERM does (listeners finish their associations, workers stop between
    /// stages), then releases the database, the spool and the daemon lock.
    public func stop() {
        guard !stopped.withLock({ s in defer { s = true }; return s }) else { return }
        guard let group else { return }
        Task.detached(executorPreference: executor) { await group.triggerGracefulShutdown() }
        if finished.wait(timeout: .now() + 60) == .timedOut {
            FileHandle.standardError.write(Data("InProcessDaemon: the services did not stop within 60 s\n".utf8))
        } else {
            executor.stop()
        }
        // The services (and with them the listening sockets, the database and the lock) go
        // with the group and the daemon.
        self.group = nil
        daemon = nil
    }

    deinit { stop() }

    /// `perfd jobs --json` against this daemon's database, decoded (the admin's view).
    public func jobs() throws -> [PerfdServer.JobRow] {
        let r = try cli(["jobs", "--json"])
        guard r.status == 0 else { throw TestFailure("perfd jobs failed: \(r.output)") }
        return try JSONDecoder().decode([PerfdServer.JobRow].self, from: Data(r.stdout.utf8))
    }

    /// Runs a perfd CLI command (the built binary) against this daemon's config.
    public func cli(_ args: [String]) throws -> ToolResult {
        try runTool(Paths.perfd, args + ["--config", configPath])
    }

    /// Moves the clock forward `seconds` in `steps` equal advances, each followed by a real
    /// `pause` so the services woken by it run before the next (a back-off counts attempts
    /// one by one, as it would in real time).
    public func advance(by seconds: Double, steps: Int = 1, pause: Double = 0.3) {
        for _ in 0..<max(1, steps) {
            clock.advance(by: seconds / Double(max(1, steps)))
            usleep(useconds_t(pause * 1_000_000))
        }
    }
}

/// Log lines appended to a file, one writer at a time.
final class LogFile: Sendable {
    private let handle: Mutex<FileHandle?>
    init(path: String) {
        let h = FileHandle(forWritingAtPath: path)
        h?.seekToEndOfFile()
        handle = Mutex(h)
    }
    func write(_ line: String) {
        handle.withLock { $0?.write(Data(line.utf8)) }
    }
    deinit { handle.withLock { try? $0?.close() } }
}

/// A task executor on threads of its own. The daemon's services run their tasks here, as
/// they would on the cooperative pool of their own process: in a test process that pool is
/// shared with every test running at the same time, and a synchronous test polling with
/// `waitFor` holds one of its few threads, which left the services waiting for a thread.
final class ThreadExecutor: TaskExecutor, Sendable {
    private struct Queue {
        var jobs: [UnownedJob] = []
        var stopped = false
    }
    private let queue = Mutex(Queue())
    private let ready = DispatchSemaphore(value: 0)
    private let threads: Int

    init(threads: Int, name: String) {
        self.threads = threads
        for i in 0..<threads {
            let t = Thread { [self] in self.serve() }
            t.name = "\(name)-\(i)"
            t.stackSize = 8 << 20
            t.start()
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.withLock { $0.jobs.append(job) }
        ready.signal()
    }

    private func serve() {
        while true {
            ready.wait()
            let next: UnownedJob? = queue.withLock { q in q.jobs.isEmpty ? nil : q.jobs.removeFirst() }
            guard let next else { return }  // a stop token
            next.runSynchronously(on: asUnownedTaskExecutor())
        }
    }

    /// Ends the threads once the queue is empty (after the services stopped).
    func stop() {
        let was = queue.withLock { q -> Bool in defer { q.stopped = true }; return q.stopped }
        guard !was else { return }
        for _ in 0..<threads { ready.signal() }
    }
}
