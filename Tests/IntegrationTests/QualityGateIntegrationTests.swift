import Foundation
import PerfdTestSupport
import Perfusion
import Phantom
import Testing

/// A perfusion job whose series is too noisy for its volumes: the daemon withholds them and
/// says so in `perfd jobs --json`, `perfd status`, `perfd show`, /metrics and the outputs.
@Suite(.serialized) struct QualityGateIntegrationTests {
    @Test func withheldVolumesShowInJobsStatusShowAndMetrics() throws {
        let metricsPort = freePort()
        let rig = try PACSRig(extra: "default_pipeline: perfusion-svd\nmetrics_port: \(metricsPort)")
        defer { rig.stop() }
        var o = PhantomOptions()
        o.size = 96; o.slices = 6; o.seed = 9004; o.noiseSigma = 30
        let ph = try Phantom.write(to: rig.dir.sub("ph"), options: o)
        let r = try runTool("storescu", ["-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(rig.port)] + ph.files)
        #expect(r.status == 0, "\(r.output)")
        let server = rig.server
        try waitFor(120, "the job to be done") { try server.jobs().first.map { ["done", "exporting", "failed"].contains($0.state) } ?? false }
        let job = try #require(try server.jobs().first)
        #expect(job.state != "failed", "\(job.error ?? "")")
        #expect(job.qc?.hasPrefix("withhold") == true && job.qc?.contains("noise") == true, "\(job.qc ?? "nil")")
        let status = try server.cli(["status"]).stdout
        #expect(status.contains("QC withhold: noise"), "\(status)")
        let show = try server.cli(["show", "1"]).stdout
        #expect(show.contains("QC: withhold: noise") && show.contains("pre-bolus noise σ"), "\(show)")
        let metrics = try httpGet(port: metricsPort, "/metrics").body
        #expect(metrics.contains("perfd_job_qc_total{outcome=\"withhold\"} 1"), "\(metrics)")
        #expect(metrics.contains("perfd_qc_flags_total{check=\"noise\",outcome=\"withhold\"} 1"), "\(metrics)")
        try waitFor(60, "the outputs at the PACS") { try rig.pacs.series().count >= 6 }
        let descriptions = try rig.pacs.series().map(\.description)
        #expect(descriptions.allSatisfy { $0.contains("WITHHELD") }, "\(descriptions)")
    }
}
