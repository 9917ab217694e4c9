import Foundation
import Jobs
import PerfdTestSupport
import Perfusion
import Phantom
import Pipelines
import Registration
import Testing
import Volume

/// Stages go nowhere: the corpus runs `Processing` as `perfd run` does, without a terminal.
final class QuietObserver: StageObserver, @unchecked Sendable {
    // @unchecked Sendable: holds nothing.
    func begin(_ stage: String) throws {}
    func progress(_ stage: String, _ fraction: Double) {}
    func finish(_ stage: String, result: [String: Any]) throws {}
}

/// One phantom variant of the QC corpus and the reasons a flag on it may give.
struct CorpusCase: Sendable, CustomTestStringConvertible {
    var name: String
    var seed: UInt64
    var configure: @Sendable (inout PhantomOptions) -> Void
    /// Check names that are a right reason to warn or withhold on this case.
    var reasons: Set<String>
    /// When the job should fail instead (no arterial input at all): words its error holds.
    var failure: String?
    /// A method's own inaccuracy on a flawless case (past 25 %, within 50 %): why.
    var knownMiss: String?
    var testDescription: String { name }

    static let all: [CorpusCase] = [
        .init(name: "standard σ10", seed: 9001, configure: { _ in }, reasons: []),
        .init(name: "motion 2°,3 mm (edge slices)", seed: 5, configure: { $0.motion = (2, 3) },
              reasons: ["motion", "brain_coverage", "arterial_input"]),
        .init(name: "truncated, 12 frames", seed: 20004, configure: { $0.timepoints = 12 }, reasons: ["truncation", "envelope", "acquisition"]),
        .init(name: "no bolus", seed: 9002, configure: { $0.bolus = false }, reasons: [], failure: "arterial"),
        .init(name: "no artery in the slab", seed: 9003, configure: { $0.arteriesInSlab = false }, reasons: ["arterial_input"],
              failure: "arterial input"),
        .init(name: "σ 30 HU", seed: 9004, configure: { $0.noiseSigma = 30 }, reasons: ["noise", "envelope"]),
        .init(name: "noise correlation 1.5 mm", seed: 20005, configure: { $0.noiseCorrelationMM = 1.5 }, reasons: ["envelope", "noise", "noise_texture"]),
        .init(name: "noise-free, lesion", seed: 9005, configure: { $0.noiseSigma = 0 }, reasons: [],
              knownMiss: "noise-free, both methods read this core 28–37 % small (README: the core's curve has not come down by the last frame); nothing in the data is wrong for a check to find"),
        .init(name: "noise-free, no lesion", seed: 9006, configure: { $0.noiseSigma = 0; $0.lesion = false }, reasons: []),
        .init(name: "lesion left (+x)", seed: 9301, configure: { $0.lesionSide = 1 }, reasons: []),
        .init(name: "lesion right (-x)", seed: 9301, configure: { $0.lesionSide = -1 }, reasons: []),
        .init(name: "10 mm slices", seed: 9302, configure: { $0.sliceThickness = 10 }, reasons: ["slice_thickness"]),
        .init(name: "40 × 1 s", seed: 9303, configure: { $0.timepoints = 40; $0.frameInterval = 1 }, reasons: ["envelope", "acquisition"]),
    ]
}

/// The QC corpus (issue 17): every case through both perfusion pipelines. On each, the
/// volumes are within 25 % of the truth, or flagged or withheld for a reason that fits the
/// case; a volume shown as a number is never off by more than 50 %; a case without a flaw
/// raises no flag (cross-checks aside, see below).
/// The 26 runs go through the optimised `perfd` binary that scripts/test builds and names in
/// PERFD_RELEASE_BIN (`perfd phantom` with the case's options, then `perfd run`), two at a
/// time: in-process in the debug build they took 1–1.5 min each on a loaded 2-core machine,
/// about 30 min in all. Without PERFD_RELEASE_BIN (a plain `swift test`, scripts/test --quick)
/// the suite is off: a stale release binary would be measured silently.
/// The table it prints (lines `CORPUS |`) is the README's.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["PERFD_RELEASE_BIN"] != nil,
                "scripts/test builds perfd -c release and sets PERFD_RELEASE_BIN"))
struct QualityGateCorpusTests {
    static let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("models").path

    struct Outcome: Sendable {
        var qc: QCReport?
        var core: Double?, penumbra: Double?
        var truthCore: Double, truthPenumbra: Double
        var error: String?
        var line: String
    }

    static func phantomOptions(_ c: CorpusCase) -> PhantomOptions {
        var o = PhantomOptions()
        o.size = 128; o.slices = 8; o.seed = c.seed
        c.configure(&o)
        return o
    }

    /// `perfd phantom`'s options for a case: the same PhantomOptions the in-process run uses.
    static func phantomArguments(_ o: PhantomOptions) -> [String] {
        var a = ["--size", "\(o.size)", "--slices", "\(o.slices)", "--timepoints", "\(o.timepoints)", "--interval", "\(o.frameInterval)",
                 "--slice-thickness", "\(o.sliceThickness)", "--fov", "\(o.fieldOfView)", "--noise", "\(o.noiseSigma)",
                 "--noise-correlation", "\(o.noiseCorrelationMM)", "--ncct-noise", "\(o.ncctNoiseSigma)", "--seed", "\(o.seed)"]
        if o.irregular { a.append("--irregular") }
        if !o.lesion { a.append("--no-lesion") }
        if !o.bolus { a.append("--no-bolus") }
        if !o.arteriesInSlab { a.append("--no-artery") }
        if let side = o.lesionSide { a += ["--lesion-side", side > 0 ? "left" : "right"] }
        if let m = o.motion { a += ["--motion", "\(m.degrees),\(m.millimetres)"] }
        return a
    }

    static func truth(_ dir: TempDir) throws -> (core: Double, penumbra: Double) {
        let truth = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.sub("phantom") + "/truth.json"))) as! [String: Any]
        let vols = truth["volumes_ml"] as? [String: Double] ?? [:]
        return (vols["core"] ?? 0, vols["penumbra"] ?? 0)
    }

    static func outcome(_ c: CorpusCase, pipeline: String, summary: [String: SummaryValue], qc: QCReport?, truth: (core: Double, penumbra: Double)) -> Outcome {
        func number(_ k: String) -> Double? { if case .number(let x)? = summary[k] { return x }; return nil }
        let core = number("core_ml"), pen = number("penumbra_ml")
        let reasons = qc?.flagged.map { "\($0.name) \($0.outcome.rawValue)" }.joined(separator: ", ") ?? ""
        let line = "CORPUS | \(c.name) | \(pipeline) | \(qc?.outcome.rawValue ?? "?")\(qc?.fallback != nil ? " (fallback)" : "") | \(reasons.isEmpty ? "—" : reasons) | core \(err(core, truth.core, qc)) | penumbra \(err(pen, truth.penumbra, qc))"
        return Outcome(qc: qc, core: core, penumbra: pen, truthCore: truth.core, truthPenumbra: truth.penumbra, line: line)
    }

    static func err(_ v: Double?, _ t: Double, _ qc: QCReport?) -> String {
        guard let v else { return "—" }
        let e = t > 0 ? String(format: "%+.0f %%", 100 * (v - t) / t) : String(format: "%.1f ml (truth 0)", v)
        return qc?.withheld == true ? "(\(e), withheld)" : e
    }

    /// In-process, as `perfd run` runs it (the debug build: slow; QualityGateOutputTests).
    static func run(_ c: CorpusCase, pipeline: String, dir: TempDir, fallback: String? = "perfusion-svd") throws -> Outcome {
        let ph = try Phantom.write(to: dir.sub("phantom"), options: phantomOptions(c))
        let t = try truth(dir)
        let p = Processing(pipelineName: pipeline, outputDirectory: dir.sub("out"),
                           modelDirectory: pipeline == "perfusion" ? models + "/perfusion-clstm" : nil, fallbackPipeline: fallback)
        do {
            let (report, _) = try p.run(paths: ph.files, observer: QuietObserver())
            return outcome(c, pipeline: pipeline, summary: report.summary, qc: report.qc, truth: t)
        } catch {
            return Outcome(truthCore: t.core, truthPenumbra: t.penumbra, error: "\(error)", line: "CORPUS | \(c.name) | \(pipeline) | failed | \(error) | — | —")
        }
    }

    /// Through the release binary: `perfd phantom`, then `perfd run` (both pipelines).
    static func runReleased(_ c: CorpusCase, pipelines: [String], binary: String) throws -> [Outcome] {
        let dir = TempDir()
        let made = try runTool(binary, ["phantom", "--output", dir.sub("phantom")] + phantomArguments(phantomOptions(c)))
        guard made.status == 0 else { throw TestFailure("perfd phantom for \(c.name): \(made.output)") }
        let t = try truth(dir)
        return try pipelines.map { pipeline in
            let out = dir.sub("out-" + pipeline)
            var args = ["run", dir.sub("phantom"), "--output", out, "--pipeline", pipeline]
            if pipeline == "perfusion" { args += ["--model", models + "/perfusion-clstm"] }
            let r = try runTool(binary, args)
            guard r.status == 0 else {
                let e = r.output.trimmingCharacters(in: .whitespacesAndNewlines)
                return Outcome(truthCore: t.core, truthPenumbra: t.penumbra, error: e,
                               line: "CORPUS | \(c.name) | \(pipeline) | failed | \(e.split(separator: "\n").last ?? "") | — | —")
            }
            let report = try JSONDecoder().decode(Report.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/report.json")))
            return outcome(c, pipeline: pipeline, summary: report.summary, qc: report.qc, truth: t)
        }
    }

    @Test func everyCaseIsRightOrFlagged() throws {
        let binary = try #require(ProcessInfo.processInfo.environment["PERFD_RELEASE_BIN"])
        let pipelines = ["perfusion-svd", "perfusion"]
        let cases = CorpusCase.all
        // Two cases at a time (the machine's two cores; each run is itself multi-threaded).
        let results = Locked([Int: Result<[Outcome], Error>]())
        let next = Locked(0)
        let group = DispatchGroup()
        for _ in 0..<2 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                while true {
                    let k = next.withLock { i -> Int in defer { i += 1 }; return i }
                    guard k < cases.count else { return }
                    let r = Result { try Self.runReleased(cases[k], pipelines: pipelines, binary: binary) }
                    results.withLock { $0[k] = r }
                }
            }
        }
        group.wait()
        var rows: [(CorpusCase, String, Outcome)] = []
        for (k, c) in cases.enumerated() {
            switch results.withLock({ $0[k] })! {
            case .success(let o): for (p, r) in zip(pipelines, o) { rows.append((c, p, r)) }
            case .failure(let e): Issue.record("\(c.name): \(e)")
            }
        }
        print("CORPUS | case | pipeline | outcome | flags | core vs truth | penumbra vs truth")
        for (_, _, r) in rows { print(r.line) }
        for (c, p, r) in rows { Self.judge(c, pipeline: p, r) }
    }

    static func judge(_ c: CorpusCase, pipeline: String, _ r: Outcome) {
        if let failure = c.failure, let e = r.error {
            #expect(e.contains(failure), "\(c.name): \(e)")
            return
        }
        #expect(r.error == nil, "\(c.name) \(pipeline) failed: \(r.error ?? "")")
        guard let qc = r.qc else { Issue.record("\(c.name) \(pipeline): no qc in report.json"); return }
        // A flag on a case must name a flaw the case has. The learned pipeline's cross-check
        // against perfusion-svd is a right reason anywhere: the two disagreeing is the finding.
        let allowed = c.reasons.union(pipeline == "perfusion" ? ["cross_check"] : [])
        for f in qc.flagged { #expect(allowed.contains(f.name), "\(c.name) \(pipeline): \(f.name) \(f.outcome) — \(f.reason)") }
        if c.failure != nil && !qc.withheld { Issue.record("\(c.name) \(pipeline): neither failed nor withheld: \(r.line)") }
        guard !qc.withheld else {
            #expect(!qc.flagged.filter { $0.outcome == .withhold }.isEmpty)
            return
        }
        // Shown as numbers: never off by more than half; off by more than a quarter only when flagged.
        for (v, t, what) in [(r.core, r.truthCore, "core"), (r.penumbra, r.truthPenumbra, "penumbra")] {
            guard let v else { Issue.record("\(c.name) \(pipeline): \(what) volume missing"); continue }
            if t <= 0 {
                #expect(v <= 10, "\(c.name) \(pipeline): \(what) \(v) ml shown without a lesion")
                continue
            }
            let e = abs(v - t) / t
            #expect(e <= 0.5, "\(c.name) \(pipeline): \(what) \(v) ml shown for \(t) (\(Int(100 * e)) %)")
            if e > 0.25 {
                if let why = c.knownMiss {
                    withKnownIssue(Comment(rawValue: why), isIntermittent: true) {
                        #expect(qc.outcome == .warn, "\(c.name) \(pipeline): \(what) off by \(Int(100 * e)) % without a flag")
                    }
                } else {
                    #expect(qc.outcome == .warn, "\(c.name) \(pipeline): \(what) off by \(Int(100 * e)) % without a flag")
                }
            }
        }
    }
}

/// A value behind a lock, for the corpus's two worker threads.
final class Locked<T>: @unchecked Sendable {
    // @unchecked Sendable: every access goes through `lock`.
    private var value: T
    private let lock = NSLock()
    init(_ v: T) { value = v }
    func withLock<R>(_ body: (inout T) throws -> R) rethrows -> R { lock.lock(); defer { lock.unlock() }; return try body(&value) }
}

/// The withheld page, the descriptions, the fallback and report.json's qc on one case: a
/// 12-frame acquisition that ends before the contrast washes out.
@Suite struct QualityGateOutputTests {
    @Test func truncatedSeriesIsWithheldWithItsReasonEverywhere() throws {
        let dir = TempDir()
        let c = CorpusCase.all.first { $0.name.hasPrefix("truncated") }!
        let r = try QualityGateCorpusTests.run(c, pipeline: "perfusion-svd", dir: dir)
        let qc = try #require(r.qc)
        #expect(qc.outcome == .withhold)
        let t = try #require(qc.checks.first { $0.name == "truncation" })
        #expect(t.outcome == .withhold && t.value > t.threshold)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.sub("out") + "/report.json"))) as! [String: Any]
        let q = try #require(report["qc"] as? [String: Any])
        #expect(q["outcome"] as? String == "withhold")
        let checks = try #require(q["checks"] as? [[String: Any]])
        for k in ["name", "value", "threshold", "outcome", "reason"] { #expect(checks.allSatisfy { $0[k] != nil }, "a check lacks \(k)") }
        let a = try #require(report["arterial_input"] as? [String: Any])
        #expect((a["aif_voxels_zyx"] as? [[Int]])?.isEmpty == false)
        // Every output says so in its description, within 64 characters, still "NOT FOR DIAGNOSIS".
        let outputs = try #require(report["outputs"] as? [[String: Any]])
        for o in outputs {
            let d = o["description"] as? String ?? ""
            #expect(d.contains("WITHHELD") && d.hasSuffix("NOT FOR DIAGNOSIS") && d.count <= 64, "\(d)")
        }
        // The page is RGB, says "Volumes withheld", and passes dciodvfy like every output.
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.sub("out") + "/dicom")
        #expect(!files.isEmpty)
        for f in files where f.hasSuffix(".dcm") {
            let v = try runTool("dciodvfy", [dir.sub("out") + "/dicom/" + f])
            #expect(!v.output.contains("Error"), "\(f): \(v.output)")
        }
    }

    @Test func learnedPipelineOutsideItsEnvelopeFallsBackAndSaysSo() throws {
        let dir = TempDir()
        let c = CorpusCase.all.first { $0.name.hasPrefix("40") }!
        let r = try QualityGateCorpusTests.run(c, pipeline: "perfusion", dir: dir)
        let qc = try #require(r.qc)
        #expect(qc.fallback != nil)
        let env = try #require(qc.checks.first { $0.name == "envelope" })
        #expect(env.reason.contains("frames 40"), "\(env.reason)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.sub("out") + "/report.json"))) as! [String: Any]
        for o in report["outputs"] as? [[String: Any]] ?? [] {
            #expect((o["description"] as? String ?? "").contains("FALLBACK"), "\(o)")
        }
        // Without a fallback the volumes are withheld instead.
        let none = TempDir()
        let w = try QualityGateCorpusTests.run(c, pipeline: "perfusion", dir: none, fallback: nil)
        #expect(w.qc?.withheld == true && w.qc?.fallback == nil)
    }

    /// A cross-check that withholds says so in words: the page it goes on shows no volume.
    @Test func crossCheckWithholdsWithoutNumbersInItsWords() {
        let learned: [String: SummaryValue] = ["core_ml": .number(29.4), "penumbra_ml": .number(42.5)]
        let svd: [String: SummaryValue] = ["core_ml": .number(13.5), "penumbra_ml": .number(51.1)]
        let c = QualityControl.crossCheck(learned, svd: svd, error: nil)
        #expect(c.outcome == .withhold && c.value > 1)
        #expect(c.reason.contains("29.4") && c.reason.contains("13.5"), "\(c.reason)")
        let plain = c.plain ?? ""
        #expect(!plain.isEmpty && !plain.contains("29") && !plain.contains("13") && !plain.contains("ml"), "\(plain)")
        // Within the tolerance (45 % of the larger, or 3 ml): agreement.
        let near = QualityControl.crossCheck(["core_ml": .number(20), "penumbra_ml": .number(40)],
                                             svd: ["core_ml": .number(12), "penumbra_ml": .number(42)], error: nil)
        #expect(near.outcome == .ok && near.plain == nil)
    }

    @Test func validityFollowsTheTransforms() {
        let g = Geometry(origin: .zero, rowDirection: SIMD3(1, 0, 0), columnDirection: SIMD3(0, 1, 0), sliceDirection: SIMD3(0, 0, 1),
                         spacing: SIMD3(5, 1, 1))
        let s = Series4D(timepoints: 2, depth: 4, height: 8, width: 8, voxels: [Float](repeating: 0, count: 2 * 4 * 64), geometry: g,
                         frameTimes: [0, 2], temporalSource: "test", files: [])
        // At t = 1 every point sits 3 mm further along the slices: the last slice's centre
        // (and 0.5 of a slice beyond it) is then past the slab; the others stay inside.
        let valid = MotionCorrection.validity(s, transforms: [RigidTransform(), RigidTransform(translation: SIMD3(0, 0, 3))])
        #expect((0..<(3 * 64)).allSatisfy { valid[$0] })
        #expect((192..<256).allSatisfy { !valid[$0] })
    }
}
