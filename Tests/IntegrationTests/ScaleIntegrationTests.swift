import DICOM
import Foundation
import PerfdTestSupport
import Phantom
import Testing
import Volume

/// Whole-brain series through `perfd serve` (issue 16): thin slices analysed on the slab
/// grid and the memory budget, with real peers (storescu, Orthanc).
@Suite(.serialized) struct ScaleIntegrationTests {
    /// Runs storescu on each group of files at once (one association each); returns the
    /// failures' output.
    func pushConcurrently(_ groups: [[String]], port: Int, done: DoneFlag) {
        let failures = Failures()
        DispatchQueue.global().async {
            DispatchQueue.concurrentPerform(iterations: groups.count) { g in
                do {
                    let r = try storescu(groups[g], port: port)
                    if r.status != 0 { failures.add("association \(g + 1): \(r.output)") }
                } catch { failures.add("association \(g + 1): \(error)") }
            }
            done.finish(failures.all)
        }
    }

    /// 320 slices of 0.5 mm at 128², 4 time points (1,280 instances) over 4 associations:
    /// one job over every instance, a derived NCCT of 32 slabs of 5 mm in Orthanc at the
    /// slabs' positions, dciodvfy clean; `perfd status` and /metrics answer all along.
    @Test func wholeBrainSeriesOverFourAssociationsBecomesOneJobOnTheSlabGrid() throws {
        let metricsPort = freePort()
        let rig = try PACSRig(extra: "metrics_port: \(metricsPort)")
        defer { rig.stop() }
        var o = PhantomOptions()
        o.size = 128; o.slices = 320; o.sliceThickness = 0.5; o.timepoints = 4; o.seed = 16
        let ph = try Phantom.write(to: rig.dir.sub("ph"), options: o)
        #expect(ph.files.count == 1280)
        // Four associations, each a quarter of the slices of every time point.
        let groups = (0..<4).map { g in ph.files.enumerated().filter { ($0.offset % 320) / 80 == g }.map(\.element) }
        let done = DoneFlag()
        pushConcurrently(groups, port: rig.port, done: done)
        var polls = 0, slowest = 0.0
        while !done.isDone {
            let t0 = Date()
            let status = try rig.server.cli(["status"])
            #expect(status.status == 0, "perfd status during ingest: \(status.output)")
            let metrics = try httpGet(port: metricsPort, "/metrics")
            #expect(metrics.status == 200 && metrics.body.contains("perfd_"), "/metrics during ingest: \(metrics.status)")
            slowest = max(slowest, Date().timeIntervalSince(t0))
            polls += 1
        }
        #expect(done.failures.isEmpty, "\(done.failures)")
        #expect(polls >= 2, "ingest ended before status and metrics were asked twice")
        print("status + /metrics during ingest: \(polls) polls, slowest \(String(format: "%.2f", slowest)) s")
        try waitFor(180, "the job to be done") { try rig.server.jobs().first?.state == "done" }
        let jobs = try rig.server.jobs()
        #expect(jobs.count == 1, "\(jobs)")
        #expect(jobs.first?.instances == 1280)
        // The series' report states the grid.
        let reportPath = rig.dir.path + "/state/work/job-\(jobs[0].id)/report.json"
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as? [String: Any]
        let input = report?["input"] as? [String: Any], grid = input?["grid"] as? [String: Any]
        #expect(grid?["slices_per_slab"] as? Int == 10 && grid?["slabs"] as? Int == 32, "\(input ?? [:])")
        #expect(input?["shape"] as? [Int] == [4, 32, 128, 128])

        let derived = try rig.pacs.series()
        #expect(derived.count == 1, "\(derived)")
        let s = try #require(derived.first)
        #expect(s.instances == 32)
        let out = rig.dir.sub("viewer")
        let get = try runTool("getscu", ["-aet", "VIEWER", "-aec", "PACS", "127.0.0.1", String(rig.pacs.dicomPort),
                                         "-k", "QueryRetrieveLevel=SERIES", "-k", "StudyInstanceUID=\(ph.studyUID)",
                                         "-k", "SeriesInstanceUID=\(s.uid)", "-od", out])
        #expect(get.status == 0, "\(get.output)")
        // Native slice z of the phantom sits at (z − 159.5) × 0.5 mm; slab k is the mean of 10.
        var positions: [Double] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: out) {
            let f = try DicomFile(path: out + "/" + name)
            #expect(f.double("SliceThickness") == 5)
            let ipp = try #require(f.doubles("ImagePositionPatient"))
            positions.append(ipp[2])
            let v = try runTool("dciodvfy", [out + "/" + name])
            #expect(!v.output.contains("Error"), "\(v.output)")
        }
        let expected = (0..<32).map { (Double($0 * 10) + 4.5 - 159.5) * 0.5 }
        #expect(positions.count == 32)
        for (a, b) in zip(positions.sorted(), expected) { #expect(abs(a - b) < 1e-3, "\(a) vs \(b)") }
    }

    /// A series over `memory_limit_gb` fails its job with a reason naming its size and the
    /// setting; the daemon keeps serving (instances acknowledged, status and /health answer,
    /// the next series gets its job too).
    @Test func seriesOverTheMemoryBudgetFailsWithAReasonAndTheDaemonKeepsServing() throws {
        let dir = TempDir()
        let port = freePort(), metricsPort = freePort()
        let config = writeConfig(in: dir, port: port, quietSeconds: 1, extra: "memory_limit_gb: 0.05\nmetrics_port: \(metricsPort)")
        let server = try PerfdServer(configPath: config, port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 64, slices: 20, timepoints: 4, seed: 3, sliceThickness: 0.5)
        let r = try storescu(ph.files, port: port)
        #expect(r.status == 0, "\(r.output)")
        try waitFor(60, "the job to fail") { try server.jobs().first?.state == "failed" }
        let job = try #require(server.jobs().first)
        let error = job.error ?? ""
        #expect(error.contains("more than memory_limit_gb = 0.05 GB"), "\(error)")
        #expect(error.contains("4 time points × 20 slices of 64×64"), "\(error)")
        #expect(server.process.isRunning, "the daemon died: \(server.log)")
        // Still serving: another series is acknowledged and gets its own job.
        let other = try makePhantom(in: dir.sub("ph2"), size: 32, slices: 3, timepoints: 4, seed: 4)
        let r2 = try storescu(other.files, port: port)
        #expect(r2.status == 0, "\(r2.output)")
        try waitFor(60, "the second series' job to settle") { try server.jobs().count == 2 && server.jobs().allSatisfy { $0.state == "failed" || $0.state == "done" } }
        #expect(try httpGet(port: metricsPort, "/health").status == 200)
        #expect(try server.cli(["status"]).status == 0)
        #expect(server.process.isRunning)
    }
}

// @unchecked Sendable: every access goes through `lock`.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}

// @unchecked Sendable: every access goes through `lock`.
final class DoneFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    private var failed: [String] = []
    func finish(_ f: [String]) { lock.lock(); done = true; failed = f; lock.unlock() }
    var isDone: Bool { lock.lock(); defer { lock.unlock() }; return done }
    var failures: [String] { lock.lock(); defer { lock.unlock() }; return failed }
}
