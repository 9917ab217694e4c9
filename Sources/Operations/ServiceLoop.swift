import Foundation
import Store
import ServiceLifecycle
import Synchronization

/// The one loop every polling service runs (series tracker, job worker, exporter, retention,
/// heartbeat): do a step; if it found work, go again at once; otherwise sleep `interval`, or
/// less when `signal` rings (the store committed work for this service). It ends on task
/// cancellation or graceful shutdown, between steps — a step itself is never interrupted.
/// The interval passes on `clock` (the test harness's can be moved forward).
public enum PollingLoop {
    public static func run(every interval: Duration, wakeOn signal: WorkSignal? = nil, clock: any DaemonClock = LiveClock(),
                           _ step: @Sendable () async -> Bool) async {
        // Rung once by the graceful-shutdown handler, which runs synchronously: the wait ends
        // without a task of its own (ServiceLifecycle's cancelWhenGracefulShutdown starts an
        // unstructured one, which needs a free thread of the shared pool to end the wait).
        let shutdown = WorkSignal()
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                // Read before the step: a ring during the step means more work may be waiting.
                let seen = signal?.generation ?? 0
                if await step() { continue }
                try? await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await clock.sleep(for: interval) }
                    if let signal { group.addTask { await signal.wait(since: seen) } }
                    group.addTask { await shutdown.wait(since: 0) }
                    // The first to end (the interval, the ring, or a shutdown) ends the wait.
                    _ = try await group.next()
                    group.cancelAll()
                }
            }
        } onGracefulShutdown: {
            shutdown.ring()
        }
    }
}

/// Long-lived threads for blocking work (file reads, SQLite, DCMTK associations, number
/// crunching) so the cooperative pool is never held. Each service owns one, sized for the
/// work it runs at once; its threads start once and wait for work, instead of a new thread
/// per call.
public final class BlockingExecutor: Sendable {
    private struct Queue {
        var jobs: [@Sendable () -> Void] = []
        var stopped = false
    }
    private let queue = Mutex(Queue())
    private let ready = DispatchSemaphore(value: 0)
    public let threads: Int

    /// `stackSize` 8 MiB: DCMTK's parser and the inference kernels recurse and keep buffers
    /// on the stack (Foundation's default for secondary threads is 512 KiB).
    public init(threads: Int, name: String, stackSize: Int = 8 << 20) {
        self.threads = max(1, threads)
        for i in 0..<self.threads {
            let t = Thread { [self] in self.serve() }
            t.stackSize = stackSize
            t.name = "\(name)-\(i)"
            t.start()
        }
    }

    private func serve() {
        while true {
            ready.wait()
            let next: (@Sendable () -> Void)? = queue.withLock { q in
                q.jobs.isEmpty ? nil : q.jobs.removeFirst()
            }
            guard let next else { return }  // a stop token
            next()
        }
    }

    /// Runs `body` on one of the threads and resumes the caller with its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            let accepted = queue.withLock { q -> Bool in
                guard !q.stopped else { return false }
                q.jobs.append { c.resume(returning: body()) }
                return true
            }
            if accepted {
                ready.signal()
            } else {
                // After stop(): the work still runs, on a thread of its own.
                let t = Thread { c.resume(returning: body()) }
                t.stackSize = 8 << 20
                t.start()
            }
        }
    }

    /// Lets the threads end once the queued work is done (when the owning service stops).
    public func stop() {
        let wasStopped = queue.withLock { q -> Bool in defer { q.stopped = true }; return q.stopped }
        guard !wasStopped else { return }
        // One token per thread: a wake-up that finds the queue empty ends that thread.
        for _ in 0..<threads { ready.signal() }
    }
}
