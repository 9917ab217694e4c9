import Foundation
@testable import JobStore
@testable import Operations
import PerfdTestSupport
import Store
import Synchronization
import Testing

@Suite struct ServiceLoopTests {
    /// A service waiting out a long interval runs its next step as soon as the store rings
    /// its signal, and stops when its task is cancelled.
    @Test func aRingWakesTheLoopBeforeItsInterval() async throws {
        let signal = WorkSignal()
        let steps = Mutex(0)
        let loop = Task {
            await PollingLoop.run(every: .seconds(3600), wakeOn: signal) {
                steps.withLock { $0 += 1 }
                return false
            }
        }
        try await waitUntil("the first step") { steps.withLock { $0 } == 1 }
        signal.ring()
        try await waitUntil("the step the ring asked for") { steps.withLock { $0 } == 2 }
        loop.cancel()
        await loop.value
        #expect(steps.withLock { $0 } == 2)
    }

    /// A step that found work is followed by another at once, without a wait.
    @Test func aStepThatFoundWorkRunsAgain() async throws {
        let left = Mutex(5)
        let loop = Task {
            await PollingLoop.run(every: .seconds(3600)) {
                left.withLock { n in n = max(0, n - 1); return n > 0 }
            }
        }
        try await waitUntil("five steps") { left.withLock { $0 } == 0 }
        loop.cancel()
        await loop.value
    }

    /// Work runs on the executor's own long-lived threads, not one new thread per call.
    @Test func theExecutorReusesItsThreads() async {
        let executor = BlockingExecutor(threads: 2, name: "perfd-test")
        var threads: Set<UInt> = []
        for _ in 0..<20 {
            threads.insert(await executor.run { UInt(pthread_self()) })
        }
        executor.stop()
        #expect((1...2).contains(threads.count), "20 calls ran on \(threads.count) threads")
    }

    /// The store rings `jobsQueued` when a series completes and `outboxFilled` when rows
    /// are queued for export.
    @Test func theStoreRingsWhenItCommitsWork() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        let jobs = store.jobsQueued.generation, outbox = store.outboxFilled.generation
        try store.recordInstance(InstanceRecord(sopInstanceUID: "1.2.3.1", sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
                                                seriesUID: "1.2.3", studyUID: "1.2", path: "/x", fileSize: 1))
        #expect(store.jobsQueued.generation == jobs)
        let job = try #require(try store.completeSeries("1.2.3", reason: "t", pipeline: "baseline-t0"))
        #expect(store.jobsQueued.generation == jobs + 1)
        _ = try store.claimNextJob()
        try store.beginStage(job: job.id, stage: "render")
        try store.finishRender(job: job.id, result: "{}", report: "{}", outbox: [
            OutboxEntry(destinationID: try store.destinationID(aeTitle: "PACS", host: "127.0.0.1", port: 4242), seriesUID: "2.25.1",
                        sopInstanceUID: "2.25.1.1", path: "/out/1.dcm", kind: .result)])
        #expect(store.outboxFilled.generation == outbox + 1)
    }

    /// A read (what /metrics and the status report run) does not wait for a writer: it
    /// completes while another thread holds a write transaction open.
    @Test func aReadDoesNotWaitBehindAWrite() throws {
        let dir = TempDir()
        let store = try JobStore(path: dir.path + "/db.sqlite")
        let inside = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), writerDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? store.db.write { tx in
                try tx.execute("INSERT INTO health (id, at, pid) VALUES (1, 0, 0)")
                inside.signal()
                release.wait()
            }
            writerDone.signal()
        }
        inside.wait()
        let readDone = DispatchSemaphore(value: 0)
        let counts = Mutex<[JobState: Int]?>(nil)
        Thread.detachNewThread {
            counts.withLock { $0 = try? store.jobCounts() }
            readDone.signal()
        }
        // Generous: the read takes microseconds; before the reading connection it waited
        // for the writer, which holds on until `release`.
        let answered = readDone.wait(timeout: .now() + 10) == .success
        release.signal()
        writerDone.wait()
        if !answered { readDone.wait() }
        #expect(answered, "the read waited for the write transaction")
        #expect(counts.withLock { $0 } != nil)
    }
}

/// Polls `condition` every 10 ms for up to 10 s.
func waitUntil(_ what: String, _ condition: () -> Bool) async throws {
    for _ in 0..<1000 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("timed out waiting for \(what)")
    throw CancellationError()
}
