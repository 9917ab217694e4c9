import DICOM
import Foundation
import Perfusion
import Pipelines
import Rendering
import Volume

/// Watches the stages of one run: the job worker commits them, `perfd run` prints them.
public protocol StageObserver: Sendable {
    func begin(_ stage: String) throws
    func progress(_ stage: String, _ fraction: Double)
    func finish(_ stage: String, result: [String: Any]) throws
}

/// The work of one job, the same for `perfd serve` and `perfd run`: assemble the 4D
/// series, run the pipeline, write NIfTI maps and the DICOM outputs.
public struct Processing: Sendable {
    public var pipelineName: String
    public var rerun: Int
    public var outputDirectory: String
    public var job: Int?
    public var motionThresholdMM: Double
    /// The model directory of a learned pipeline; nil: its default model.
    public var modelDirectory: String?
    /// What a learned perfusion pipeline falls back to on a series outside its model's
    /// envelope (nil: none; its volumes are then withheld).
    public var fallbackPipeline: String?
    /// Thin slices are averaged into analysis slabs of at most this thickness (mm); a series
    /// with slices this thick or thicker is analysed as it is (`analysis_slab_mm`).
    public var slabMM: Double
    /// What this job may use of memory (`memory_limit_gb`, shared among the workers).
    public var memoryBudget: MemoryBudget

    public static let defaultSlabMM = 5.0

    public init(pipelineName: String, rerun: Int = 0, outputDirectory: String, job: Int? = nil, motionThresholdMM: Double = 3,
                modelDirectory: String? = nil, fallbackPipeline: String? = "perfusion-svd", slabMM: Double = Processing.defaultSlabMM,
                memoryBudget: MemoryBudget = MemoryBudget(limitGB: MemoryBudget.machineDefaultGB)) {
        self.pipelineName = pipelineName; self.rerun = rerun; self.outputDirectory = outputDirectory; self.job = job
        self.motionThresholdMM = motionThresholdMM; self.modelDirectory = modelDirectory; self.fallbackPipeline = fallbackPipeline
        self.slabMM = slabMM; self.memoryBudget = memoryBudget
    }

    /// Processes the files at `paths`: every header is read from its file (`perfd run`,
    /// which has no store).
    public func run(paths: [String], observer: StageObserver) throws -> (report: Report, outputs: [OutputSeries]) {
        try run(observer: observer) { (try Assembler.readHeaders(paths: paths), paths.count) }
    }

    /// Processes a series whose assembly headers `headers` gives (called at the start of the
    /// assemble stage; it returns them and how many files it opened to get them): the job
    /// worker passes the ones recorded at ingest (`StoredHeaders`), so only pixel data is
    /// read from the files.
    public func run(observer: StageObserver, headers readHeaders: () throws -> (headers: [SliceHeader], parsed: Int)) throws
        -> (report: Report, outputs: [OutputSeries]) {
        let total = Date()
        var timings: [String: Double] = [:]

        // A learned pipeline's model is found and loaded first: a missing model fails the job
        // before minutes of assembly and registration.
        let pipeline = try Pipelines.make(pipelineName, model: modelDirectory)
        let modelInfo = (pipeline as? CLSTMPipeline)?.modelInfo
        let version = modelInfo?.version ?? Self.modelVersion(pipelineName)

        // Assemble: every header (read side by side), the time point × slice layout, the
        // analysis slabs and the memory check, then time point 0 on the slab grid. Nothing
        // else is decoded until the register stage streams the time points through.
        try observer.begin("assemble")
        var t0 = Date()
        let (headers, headerFilesRead) = try readHeaders()
        let layout = try Assembler.plan(headers)
        let stream = try SeriesStream(layout: layout, slabMM: slabMM, budget: memoryBudget)
        let reference = try stream.reference()
        timings["assemble"] = Date().timeIntervalSince(t0)
        let native = layout.geometry
        let grid = Report.Grid(nativeShape: [stream.timepoints, stream.slabs.nativeDepth, stream.height, stream.width],
                               nativeSpacingMM: [native.sliceSpacing, native.rowSpacing, native.columnSpacing],
                               slabMM: native.sliceSpacing * Double(stream.slabs.factor), slicesPerSlab: stream.slabs.factor,
                               firstSlice: stream.slabs.first, slabs: stream.slabs.count,
                               originMM: [reference.slabs.geometry.origin.x, reference.slabs.geometry.origin.y, reference.slabs.geometry.origin.z],
                               workers: stream.workers, memoryEstimateGB: (stream.estimateBytes / 1e7).rounded() / 100,
                               memoryLimitGB: memoryBudget.limitGB)
        let g = reference.slabs.geometry
        let input = Report.Input(seriesUID: "", timepoints: stream.timepoints,
                                 shape: [stream.timepoints, stream.slabs.count, stream.height, stream.width],
                                 spacingMM: [g.sliceSpacing, g.rowSpacing, g.columnSpacing],
                                 frameTimesS: layout.frameTimes, temporalSource: layout.temporalSource, grid: grid)
        try observer.finish("assemble", result: ["shape": input.shape, "spacing_mm": input.spacingMM, "native_shape": grid.nativeShape,
                                                 "slices_per_slab": grid.slicesPerSlab, "workers": grid.workers,
                                                 "frame_times_s": input.frameTimesS, "temporal_source": input.temporalSource,
                                                 "header_files_read": headerFilesRead, "seconds": timings["assemble"]!])

        // Every pipeline sees the series aligned to its first time point, on the slab grid.
        try observer.begin("register")
        t0 = Date()
        let motion = try stream.register(reference: reference.slabs, lossy: reference.lossy, thresholdMM: motionThresholdMM) {
            observer.progress("register", $0)
        }
        let series = motion.series
        var source = try SourceInfo.read(path: series.files[0][0])
        source.lossyCompressionMethods = LossyCompression.merge(source.lossyCompressionMethods, series.lossyCompressionMethods)
        var reportInput = input
        reportInput.seriesUID = source.seriesUID
        timings["register"] = Date().timeIntervalSince(t0)
        try observer.finish("register", result: ["qc": motion.qc, "max_displacement_mm": motion.maxDisplacementMM,
                                                 "seconds": timings["register"]!])

        try observer.begin("pipeline")
        t0 = Date()
        let name = pipelineName
        // Perfusion pipelines are checked (QualityControl); a learned one outside its model's
        // envelope gives way to the fallback before it runs.
        let learned = (pipeline as? CLSTMPipeline).flatMap { $0.kind == .perfusion ? $0 : nil }
        let measurements = pipeline is PerfusionSVDPipeline || learned != nil ? QCMeasurements(series) : nil
        var active: any Pipeline = pipeline
        var envelopeCheck: QCReport.Check?
        var fallbackNote: String?
        if let learned, let m = measurements {
            let spec = learned.model.spec
            let tag = "\(spec.name) \(spec.version)"
            if let e = spec.envelope {
                let view = ModelEnvelopeView(frames: e.frames, frameIntervalS: e.frameIntervalS, durationS: e.durationS, pixelMM: e.pixelMM,
                                             noiseHU: e.noiseHU, noiseCorrelationMM: e.noiseCorrelationMM)
                let outside = QualityControl.envelopeViolations(view, m)
                if outside.isEmpty {
                    envelopeCheck = .init(name: "envelope", value: 0, threshold: 0, outcome: .ok, reason: "within \(tag)'s training envelope")
                } else if let fb = fallbackPipeline {
                    active = try Pipelines.make(fb)
                    fallbackNote = "the series is outside what \(tag) was trained on: " + outside.joined(separator: ", ")
                    envelopeCheck = .init(name: "envelope", value: Double(outside.count), threshold: 0, outcome: .warn,
                                          reason: "outside \(tag)'s training envelope (\(outside.joined(separator: ", "))); fell back to \(fb)",
                                          plain: "results from \(fb): the series is outside what the learned model was trained on (\(outside.joined(separator: ", ")))")
                } else {
                    envelopeCheck = .init(name: "envelope", value: Double(outside.count), threshold: 0, outcome: .withhold,
                                          reason: "outside \(tag)'s training envelope (\(outside.joined(separator: ", "))); no fallback configured",
                                          plain: "the series is outside what the learned model was trained on (\(outside.joined(separator: ", ")))")
                }
            } else {
                envelopeCheck = .init(name: "envelope", value: 0, threshold: 0, outcome: .warn,
                                      reason: "\(tag) declares no training envelope in model.json: not checked",
                                      plain: "the learned model does not say what it was trained on")
            }
        }
        let output = try active.runWithSummary(series) { observer.progress(name, $0) }
        let results = output.volumes
        var qc: QCReport?
        if let m = measurements {
            var checks = QualityControl.seriesChecks(m, motion: motion, motionThresholdMM: motionThresholdMM)
            checks += QualityControl.curveChecks(m, summary: output.summary)
            if let e = envelopeCheck { checks.append(e) }
            if active is CLSTMPipeline {
                // The learned pipeline's volumes against the classical method's on the same series.
                var svd: [String: SummaryValue]?, failure: String?
                do { svd = try PerfusionSVDPipeline().runWithSummary(series) { _ in }.summary } catch { failure = "\(error)" }
                checks.append(QualityControl.crossCheck(output.summary, svd: svd, error: failure))
            }
            qc = QCReport(checks: checks, fallback: fallbackNote.map { _ in "fell back from \(name) to \(active.name)" })
        }
        let shown = active.name
        timings["infer"] = Date().timeIntervalSince(t0)
        try FileManager.default.createDirectory(atPath: outputDirectory + "/maps", withIntermediateDirectories: true)
        var maps: [String: String] = [:]
        for r in results {
            let path = "\(outputDirectory)/maps/\(r.name).nii"
            try NIfTI.write(r.volume, to: path, description: "perfd \(pipelineName) \(r.name) [\(r.unit)]")
            maps[r.name] = path
        }
        if let lesion = output.lesion {
            let path = "\(outputDirectory)/maps/lesion.nii"
            try NIfTI.write(lesion, to: path, description: "perfd \(pipelineName) lesion: 1 core, 2 penumbra")
            maps["lesion"] = path
        }
        var stageResult: [String: Any] = ["outputs": results.map { ["name": $0.name, "unit": $0.unit] }, "maps": maps, "seconds": timings["infer"]!]
        if let qc {
            stageResult["qc"] = qc.line
            if let f = qc.fallback { stageResult["fallback"] = f + " (" + (fallbackNote ?? "") + ")" }
        }
        try observer.finish("pipeline", result: stageResult)

        try observer.begin("render")
        t0 = Date()
        var flags: [String] = motion.qc == "motion" ? ["MOTION"] : []
        if let qc {
            if qc.withheld { flags.append("WITHHELD") }
            else if qc.checks.contains(where: { $0.outcome == .warn && $0.name != "motion" && $0.name != "envelope" }) { flags.append("QC WARN") }
            if qc.fallback != nil { flags.append("FALLBACK") }
        }
        let qcNote = qc.map { q in
            "; QC \(q.line)" + (q.fallback.map { "; \($0): \(fallbackNote ?? "")" } ?? "")
        } ?? ""
        let qcFooter: String = {
            guard let q = qc else { return "" }
            if q.withheld { return "VOLUMES WITHHELD (QC) — " }
            if q.fallback != nil { return "FALLBACK: \(shown) — " }
            return flags.contains("QC WARN") ? "QC WARNING — " : ""
        }()
        let writer = SecondaryCaptureWriter(source: source, key: [source.seriesUID, pipelineName, version, String(rerun)],
                                            directory: outputDirectory + "/dicom")
        // Each output slice references the source image of the first time point at that slice.
        let sourceSlices: [(sopClass: String, sopInstance: String)] = try series.files[0].map {
            let f = try DicomFile(path: $0)
            return (f.string("SOPClassUID") ?? "", f.string("SOPInstanceUID") ?? "")
        }
        var outputs: [OutputSeries] = []
        for (k, r) in results.enumerated() {
            let number = Self.seriesNumber(k + 1, rerun: rerun)
            if r.name == "ncct" {
                outputs.append(try writer.writeGrey(r.volume, output: r.name, seriesNumber: number,
                                                    description: Self.describe("Derived NCCT", pipelineName, flags: flags, rerun: rerun),
                                                    derivation: Self.derivation(pipelineName, model: modelInfo) + Self.motionNote(motion),
                                                    window: (40, 80), sourceSlices: sourceSlices))
            } else {
                let meta = MapDisplay.byName[r.name] ?? (r.name.uppercased(), r.unit, (0, 1))
                let images = (0..<r.volume.depth).map {
                    Pictures.colourSlice(r.volume, z: $0, title: "\(meta.title) — perfd \(shown)", unit: meta.unit,
                                         range: meta.range, footer: (motion.qc == "motion" ? "HEAD MOTION \(String(format: "%.1f", motion.maxDisplacementMM)) mm — " : "")
                                            + qcFooter + "perfd \(shown): not for diagnosis (model not clinically validated)")
                }
                outputs.append(try writer.writeRGB(images, output: r.name, seriesNumber: number,
                                                   description: Self.describe(meta.title, shown, flags: flags, rerun: rerun),
                                                   derivation: Self.derivation(shown, model: active is CLSTMPipeline ? modelInfo : nil) + Self.motionNote(motion) + qcNote))
            }
            observer.progress("render", Double(k + 1) / Double(results.count))
        }
        if var page = Self.summaryPage(series, output: output, motion: motion, pipeline: shown) {
            page.qc = qc
            let canvas = page.render()
            try canvas.writePNG(to: outputDirectory + "/summary.png")
            outputs.append(try writer.writeRGB([Picture(rgb: canvas.rgbBytes(), width: canvas.width, height: canvas.height, plane: page.plane)],
                                               output: "summary", seriesNumber: Self.seriesNumber(results.count + 1, rerun: rerun),
                                               description: Self.describe("Perfusion summary", shown, flags: flags, rerun: rerun),
                                               derivation: Self.derivation(shown) + Self.motionNote(motion) + qcNote))
        }
        timings["render"] = Date().timeIntervalSince(t0)
        timings["total"] = Date().timeIntervalSince(total)
        let report = Report(job: job, pipeline: pipelineName, model: modelInfo, input: reportInput, registration: motion.report,
                            outputs: outputs.map { .init(seriesUID: $0.seriesUID, description: $0.description, instances: $0.instances) },
                            maps: maps, summary: output.summary, timingsS: timings, arterialInput: output.arterialInput, qc: qc)
        try report.json().write(toFile: outputDirectory + "/report.json", atomically: true, encoding: .utf8)
        return (report, outputs)
    }

    /// The summary page of a perfusion pipeline (one that reports lesion volumes), else nil.
    static func summaryPage(_ s: Series4D, output: PipelineOutput, motion: MotionCorrection.Outcome, pipeline: String) -> SummaryPage? {
        guard output.summary["core_ml"] != nil else { return nil }
        let plane = s.height * s.width, frame = s.frameSize
        var peak = [Float](repeating: 0, count: plane)
        s.voxels.withUnsafeBufferPointer { v in
            for t in 1..<s.timepoints { for z in 0..<s.depth { for i in 0..<plane {
                let d = v[t * frame + z * plane + i] - v[z * plane + i]
                if d > peak[i] { peak[i] = d }
            } } }
        }
        let maps = Dictionary(uniqueKeysWithValues: output.volumes.map { ($0.name, $0.volume) })
        return SummaryPage(maps: maps, lesion: output.lesion, anatomy: s.frame(0), enhancement: peak, summary: output.summary,
                           motionQC: motion.qc, maxDisplacementMM: motion.maxDisplacementMM, pipeline: pipeline)
    }

    /// Series number of the k-th output (1-based) of a job's re-run N: 9001… for the first
    /// run, 9101… for re-run 1, 9000 + 100·N + k in general, so two runs of one series never
    /// share numbers in the PACS (failure notices: `failureNoticeSeriesNumber`).
    public static func seriesNumber(_ k: Int, rerun: Int) -> Int { 9000 + 100 * max(0, rerun) + k }

    /// 9999 for a first run's failure notice, 9999 − N for re-run N's (below 9999, clear of
    /// 9N01… as long as a series has fewer than 100 outputs).
    public static func failureNoticeSeriesNumber(rerun: Int) -> Int { 9999 - max(0, rerun) }

    /// A series description within SeriesDescription's 64 characters that keeps the QC flags,
    /// "re-run N" and "NOT FOR DIAGNOSIS": the title, then "perfd", give way first.
    public static func describe(_ title: String, _ pipeline: String, flags: [String], rerun: Int = 0) -> String {
        let tail = flags.map { " " + $0 }.joined() + (rerun > 0 ? " re-run \(rerun)" : "") + " NOT FOR DIAGNOSIS"
        let short = title == "Perfusion summary" ? "Summary" : title
        for candidate in ["\(title) perfd \(pipeline)\(tail)", "\(short) perfd \(pipeline)\(tail)", "\(short) \(pipeline)\(tail)"]
        where candidate.count <= 64 { return candidate }
        return "\(short)\(tail)"
    }

    static func motionNote(_ m: MotionCorrection.Outcome) -> String {
        "; time points registered rigidly to the first (max displacement \(String(format: "%.1f", m.maxDisplacementMM)) mm, QC \(m.qc))"
    }

    static func modelVersion(_ pipeline: String) -> String { pipeline.hasPrefix("baseline") ? "none" : "0" }

    static func derivation(_ pipeline: String, model: Report.Model? = nil) -> String {
        PipelineKind(rawValue: pipeline)?.derivation(model: model) ?? "perfd \(pipeline)"
    }
}
