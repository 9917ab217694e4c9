import DICOM
import Foundation
import Perfusion
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

    public init(pipelineName: String, rerun: Int = 0, outputDirectory: String, job: Int? = nil, motionThresholdMM: Double = 3,
                modelDirectory: String? = nil) {
        self.pipelineName = pipelineName; self.rerun = rerun; self.outputDirectory = outputDirectory; self.job = job
        self.motionThresholdMM = motionThresholdMM; self.modelDirectory = modelDirectory
    }

    public static let outputNames: [String: (title: String, unit: String, range: (Double, Double))] = [
        "cbf": ("CBF", "ml/100g/min", (0, 80)), "cbv": ("CBV", "ml/100g", (0, 6)), "mtt": ("MTT", "s", (0, 14)),
        "tmax": ("Tmax", "s", (0, 12)), "ttp": ("TTP", "s", (0, 40)),
    ]

    public func run(paths: [String], observer: StageObserver) throws -> (report: Report, outputs: [OutputSeries]) {
        let total = Date()
        var timings: [String: Double] = [:]

        // A learned pipeline's model is found and loaded first: a missing model fails the job
        // before minutes of assembly and registration.
        let pipeline = try Pipelines.make(pipelineName, model: modelDirectory)
        let modelInfo = (pipeline as? CLSTMPipeline)?.modelInfo
        let version = modelInfo?.version ?? Self.modelVersion(pipelineName)

        try observer.begin("assemble")
        var t0 = Date()
        let assembled = try Assembler.assemble(paths: paths)
        timings["assemble"] = Date().timeIntervalSince(t0)
        let sourceFirst = assembled.files[0][0]
        var source = try SourceInfo.read(path: sourceFirst)
        source.lossyCompressionMethods = LossyCompression.merge(source.lossyCompressionMethods, assembled.lossyCompressionMethods)
        let input = Report.Input(seriesUID: source.seriesUID, timepoints: assembled.timepoints,
                                 shape: [assembled.timepoints, assembled.depth, assembled.height, assembled.width],
                                 spacingMM: [assembled.geometry.spacing.x, assembled.geometry.spacing.y, assembled.geometry.spacing.z],
                                 frameTimesS: assembled.frameTimes, temporalSource: assembled.temporalSource)
        try observer.finish("assemble", result: ["shape": input.shape, "spacing_mm": input.spacingMM,
                                                 "frame_times_s": input.frameTimesS, "temporal_source": input.temporalSource,
                                                 "seconds": timings["assemble"]!])

        // Every pipeline sees the series aligned to its first time point.
        try observer.begin("register")
        t0 = Date()
        let motion = MotionCorrection(thresholdMM: motionThresholdMM).run(assembled) { observer.progress("register", $0) }
        let series = motion.series
        timings["register"] = Date().timeIntervalSince(t0)
        try observer.finish("register", result: ["qc": motion.qc, "max_displacement_mm": motion.maxDisplacementMM,
                                                 "seconds": timings["register"]!])

        try observer.begin("pipeline")
        t0 = Date()
        let name = pipelineName
        let output = try pipeline.runWithSummary(series) { observer.progress(name, $0) }
        let results = output.volumes
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
        try observer.finish("pipeline", result: ["outputs": results.map { ["name": $0.name, "unit": $0.unit] },
                                                 "maps": maps, "seconds": timings["infer"]!])

        try observer.begin("render")
        t0 = Date()
        let flag = motion.qc == "motion" ? " MOTION" : ""
        let writer = SecondaryCaptureWriter(source: source, key: [source.seriesUID, pipelineName, version, String(rerun)],
                                            directory: outputDirectory + "/dicom")
        // Each output slice references the source image of the first time point at that slice.
        let sourceSlices: [(sopClass: String, sopInstance: String)] = try series.files[0].map {
            let f = try DicomFile(path: $0)
            return (f.string("SOPClassUID") ?? "", f.string("SOPInstanceUID") ?? "")
        }
        var outputs: [OutputSeries] = []
        for (k, r) in results.enumerated() {
            let number = 9000 + k + 1
            if r.name == "ncct" {
                outputs.append(try writer.writeGrey(r.volume, output: r.name, seriesNumber: number,
                                                    description: "Derived NCCT perfd \(pipelineName)\(flag) NOT FOR DIAGNOSIS",
                                                    derivation: Self.derivation(pipelineName, model: modelInfo) + Self.motionNote(motion),
                                                    window: (40, 80), sourceSlices: sourceSlices))
            } else {
                let meta = Self.outputNames[r.name] ?? (r.name.uppercased(), r.unit, (0, 1))
                let images = (0..<r.volume.depth).map {
                    Pictures.colourSlice(r.volume, z: $0, title: "\(meta.title) — perfd \(pipelineName)", unit: meta.unit,
                                         range: meta.range, footer: (motion.qc == "motion" ? "HEAD MOTION \(String(format: "%.1f", motion.maxDisplacementMM)) mm — " : "")
                                            + "perfd \(pipelineName): not for diagnosis (model not clinically validated)")
                }
                outputs.append(try writer.writeRGB(images, output: r.name, seriesNumber: number,
                                                   description: "\(meta.title) perfd \(pipelineName)\(flag) NOT FOR DIAGNOSIS",
                                                   derivation: Self.derivation(pipelineName, model: modelInfo) + Self.motionNote(motion)))
            }
            observer.progress("render", Double(k + 1) / Double(results.count))
        }
        if let page = Self.summaryPage(series, output: output, motion: motion, pipeline: pipelineName) {
            let canvas = page.render()
            try canvas.writePNG(to: outputDirectory + "/summary.png")
            outputs.append(try writer.writeRGB([(canvas.rgbBytes(), canvas.width, canvas.height)], output: "summary",
                                               seriesNumber: 9000 + results.count + 1,
                                               description: "Perfusion summary perfd \(pipelineName)\(flag) NOT FOR DIAGNOSIS",
                                               derivation: Self.derivation(pipelineName) + Self.motionNote(motion)))
        }
        timings["render"] = Date().timeIntervalSince(t0)
        timings["total"] = Date().timeIntervalSince(total)
        let report = Report(job: job, pipeline: pipelineName, model: modelInfo, input: input, registration: motion.report,
                            outputs: outputs.map { .init(seriesUID: $0.seriesUID, description: $0.description, instances: $0.instances) },
                            maps: maps, summary: output.summary, timingsS: timings)
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

    static func motionNote(_ m: MotionCorrection.Outcome) -> String {
        "; time points registered rigidly to the first (max displacement \(String(format: "%.1f", m.maxDisplacementMM)) mm, QC \(m.qc))"
    }

    static func modelVersion(_ pipeline: String) -> String { pipeline.hasPrefix("baseline") ? "none" : "0" }

    static func derivation(_ pipeline: String, model: Report.Model? = nil) -> String {
        switch pipeline {
        case "ncct", "perfusion":
            let m = model.map { "\($0.name) \($0.version)" } ?? "model"
            return "perfd \(pipeline): bidirectional ConvLSTM \(m) trained on synthetic phantoms only"
        case "baseline-t0": return "perfd baseline-t0: the first CTP time point as a derived non-contrast CT"
        case "baseline-mean03": return "perfd baseline-mean03: mean of CTP time points 1-4 as a derived non-contrast CT"
        case "baseline-mean-all": return "perfd baseline-mean-all: mean of all CTP time points as a derived non-contrast CT"
        case "perfusion-svd": return "perfd perfusion-svd: block-circulant SVD deconvolution (oscillation-index truncation) with automatic AIF/VOF"
        default: return "perfd \(pipeline)"
        }
    }
}
