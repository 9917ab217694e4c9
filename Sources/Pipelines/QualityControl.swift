import Foundation
import Perfusion
import Volume

/// report.json's `qc`: whether the data support the perfusion results, check by check.
/// `ok`: results as computed; `warn`: results sent, the warning on the summary page and in
/// the series descriptions; `withhold`: maps sent, but no core/penumbra volumes or mismatch
/// ratio shown as numbers, and the page says why.
public enum QCOutcome: String, Codable, Sendable, Comparable {
    /// Results sent as they are.
    case ok
    /// Results sent, the warning on the summary page and in the series description.
    case warn
    /// Maps sent; no core/penumbra volumes or mismatch ratio as numbers, the page says why.
    case withhold

    private var rank: Int { self == .ok ? 0 : self == .warn ? 1 : 2 }
    public static func < (a: QCOutcome, b: QCOutcome) -> Bool { a.rank < b.rank }
}

public struct QCReport: Codable, Sendable, Equatable {
    public struct Check: Codable, Sendable, Equatable {
        public var name: String
        public var value: Double
        /// The limit `value` was held against (the withhold limit when that one was crossed).
        public var threshold: Double
        public var outcome: QCOutcome
        public var reason: String
        /// The finding in plain words, for the summary page (nil when ok).
        public var plain: String?
        public init(name: String, value: Double, threshold: Double, outcome: QCOutcome, reason: String, plain: String? = nil) {
            self.name = name; self.value = value.isFinite ? (value * 1000).rounded() / 1000 : 0
            self.threshold = threshold; self.outcome = outcome; self.reason = reason; self.plain = plain
        }
    }
    public var outcome: QCOutcome
    public var checks: [Check]
    /// Set when a learned pipeline fell back to another: which, and why.
    public var fallback: String?

    public init(checks: [Check], fallback: String? = nil) {
        self.checks = checks; self.fallback = fallback
        outcome = checks.map(\.outcome).max() ?? .ok
    }

    public var withheld: Bool { outcome == .withhold }
    public var flagged: [Check] { checks.filter { $0.outcome != .ok } }
    /// The job's QC in one line (jobs table, `perfd jobs`, `perfd status`): "ok",
    /// "warn: motion, noise", "withhold: truncation".
    public var line: String {
        outcome == .ok ? "ok" : "\(outcome.rawValue): " + checks.filter { $0.outcome == outcome }.map(\.name).joined(separator: ", ")
    }
    /// What the summary page says, in plain words: the checks of the worst outcome first.
    public var plainWords: [String] {
        flagged.sorted { $0.outcome > $1.outcome }.compactMap(\.plain)
    }
    enum CodingKeys: String, CodingKey { case outcome, checks, fallback }
}

/// What the QC measures on the registered series, before and independently of a pipeline.
public struct QCMeasurements: Sendable {
    /// Pre-bolus image noise σ (HU): the difference of the first two frames in brain tissue
    /// (robust σ / √2).
    public var noiseHU: Double
    /// In-plane correlation length of that noise (mm, σ of a Gaussian kernel), from the
    /// correlation of neighbouring pixels' differences: ρ = exp(−Δ²/(4σ²)).
    public var noiseCorrelationMM: Double
    public var pixelMM: Double
    public var sliceMM: Double
    public var frames: Int
    public var durationS: Double
    public var maxIntervalS: Double
    /// Brain tissue in the slab (ml), and how much of it stayed inside the slab at every time point.
    public var brainML: Double
    public var validBrainML: Double
    /// Mean ΔHU of the brain tissue at the frame times (baseline: the mean of frames 0 and 1).
    public var tissueCurve: [Double]
    /// Mean ΔHU of the vessels that peak after the tissue (the veins), at the frame times;
    /// empty when there are none.
    public var venousCurve: [Double]
    public var venousVoxels: Int
    public var frameTimes: [Double]

    public init(_ s: Series4D) {
        let n = s.frameSize, T = s.timepoints
        let sp = s.geometry.spacing
        pixelMM = min(sp.y, sp.z)
        sliceMM = sp.x
        frames = T
        frameTimes = s.frameTimes
        durationS = (s.frameTimes.last ?? 0) - (s.frameTimes.first ?? 0)
        maxIntervalS = zip(s.frameTimes.dropFirst(), s.frameTimes).map { $0 - $1 }.max() ?? 0
        let second = min(1, T - 1)
        var baseline = [Float](repeating: 0, count: n)
        var peak = [Float](repeating: 0, count: n)
        s.voxels.withUnsafeBufferPointer { v in
            for i in 0..<n {
                let b = (v[i] + v[second * n + i]) / 2
                baseline[i] = b
                var m: Float = 0
                for t in 0..<T { m = max(m, v[t * n + i] - b) }
                peak[i] = m
            }
        }
        let inside = ArterialInput.insideSkull(baseline: baseline, depth: s.depth, height: s.height, width: s.width)
        // Vessels: the highest 2 % of peaks inside the skull (a peak threshold would keep only
        // the tissue voxels that noise happened to lower at 30 HU).
        let ranked = (0..<n).filter { inside[$0] }.sorted { peak[$0] > peak[$1] }
        var vessel = [Bool](repeating: false, count: n)
        for i in ranked.prefix(max(40, ranked.count / 50)) { vessel[i] = true }
        let brain = (0..<n).map { inside[$0] && baseline[$0] >= 10 && baseline[$0] <= 80 && !vessel[$0] }
        let valid = s.validity
        let voxelML = sp.x * sp.y * sp.z / 1000
        let ids = (0..<n).filter { brain[$0] && valid?[$0] != false }
        brainML = Double(brain.filter { $0 }.count) * voxelML
        validBrainML = Double(ids.count) * voxelML
        let tissue = (0..<T).map { t in
            ids.isEmpty ? 0 : ids.reduce(0.0) { $0 + Double(s.voxels[t * n + $1] - baseline[$1]) } / Double(ids.count)
        }
        tissueCurve = tissue
        // The veins: vessels (the highest 1 % of peaks, at least 80 HU) that peak after the
        // tissue does, as the blood that drained it. Their mean curve shows whether the
        // acquisition saw the contrast go (the pipelines' VOF is ranked by area, which on a
        // truncated series prefers an artery to a sinus whose peak lies past the last frame).
        let tissuePeak = tissue.indices.max { tissue[$0] < tissue[$1] } ?? 0
        var veins: [Int] = []
        for i in ranked.prefix(max(20, ranked.count / 100)) where peak[i] >= 80 && valid?[i] != false {
            var k = 0
            for t in 0..<T where s.voxels[t * n + i] > s.voxels[k * n + i] { k = t }
            if k > tissuePeak { veins.append(i) }
        }
        venousVoxels = veins.count
        venousCurve = veins.isEmpty ? [] : (0..<T).map { t in
            veins.reduce(0.0) { $0 + Double(s.voxels[t * n + $1] - baseline[$1]) } / Double(veins.count)
        }
        // Noise and its texture from the first two frames (before the bolus in any CTP protocol
        // that leaves a baseline: arrival is ≥ 3 s after the first frame).
        var d = ids.map { Double(s.voxels[second * n + $0] - s.voxels[$0]) }
        if d.count > 10 {
            let sorted = d.sorted(), med = sorted[sorted.count / 2]
            d = d.map { $0 - med }
            let mad = d.map(abs).sorted()[d.count / 2]
            noiseHU = 1.4826 * mad / 2.0.squareRoot()
            var diff = [Double](repeating: .nan, count: n)
            for (k, i) in ids.enumerated() { diff[i] = d[k] }
            var sxy = 0.0, sxx = 0.0
            // Neighbours along rows, both in tissue; gross outliers (edges that moved) left out.
            let limit = 6 * max(noiseHU, 0.5) * 2.0.squareRoot()
            for i in ids where (i + 1) % s.width != 0 {
                let a = diff[i], b = diff[i + 1]
                guard !b.isNaN, abs(a) < limit, abs(b) < limit else { continue }
                sxy += a * b; sxx += (a * a + b * b) / 2
            }
            let rho = sxx > 0 ? sxy / sxx : 0
            noiseCorrelationMM = rho > 0.01 && rho < 0.999 ? pixelMM / (2 * (-log(rho)).squareRoot()) : (rho >= 0.999 ? 99 : 0)
        } else {
            noiseHU = 0; noiseCorrelationMM = 0
        }
    }
}

/// The checks. Thresholds, and why each sits where it does (figures: `perfd phantom`
/// series, 128² × 8, held-out seeds 9001+, see the README's QC section):
public enum QualityControl {
    /// Truncation: the venous curve (or, without one, the brain tissue's) still above this
    /// fraction of its peak at the last frame means the acquisition ended before the contrast
    /// washed out: CBV (an area) and the deconvolution's residues are cut short. At 19 frames
    /// × 2 s the venous curve ends at 15–40 % of its peak on the held-out phantoms; at 12
    /// frames (22 s) at 75–95 %, where the C-LSTM's penumbra came out 2–3× too large.
    public static let truncationWarn = 0.5, truncationWithhold = 0.6
    /// Slice thickness: both methods were tuned and evaluated on 5 mm slices. Thicker slices
    /// mix grey and white matter, CSF and lesion through the slice; at 10 mm perfusion-svd's
    /// core read +94 % on a phantom (seed 9302), so beyond 7.5 mm the volumes are withheld.
    public static let sliceWarnMM = 5.5, sliceWithholdMM = 7.5
    /// Acquisition: both were tuned on 19 frames over 36 s (1–3 s apart); outside 15–25
    /// frames or 26–50 s they have not been checked (40 × 1 s: perfusion-svd's penumbra −34 %).
    public static let tunedFrames = 15...25, tunedDurationS = 26.0...50.0
    /// Noise: pre-bolus σ. Both methods were tuned and evaluated at 0–20 HU (the learned
    /// model trained there); the measured σ of a 20 HU phantom reads 19–21 HU. Beyond 25 HU
    /// the lesion volumes are not known to hold: withheld.
    public static let noiseWarn = 22.0, noiseWithhold = 25.0
    /// Noise texture: its correlation length. Both methods were tuned on phantoms whose noise
    /// is correlated over 0.8 mm (read as 0.6–0.7 mm at 1.9 mm pixels); coarser noise averages
    /// down less under perfusion-svd's smoothing and is outside the learned model's training:
    /// at 1.5 mm perfusion-svd's penumbra came out 38 % large, the C-LSTM's 2× (issue 17).
    public static let noiseTextureWarnMM = 1.1
    /// Both methods take their baseline from the frames before the bolus (the C-LSTM the mean
    /// of frames 0 and 1, perfusion-svd every sample before arrival): at least two.
    public static let minPreBolusFrames = 2.0
    /// Largest interval between frames: 4 s is a dropped frame at the usual 2 s; beyond 8 s
    /// (the width of an arterial first pass) a peak can fall between two frames.
    public static let gapWarnS = 4.0, gapWithholdS = 8.0
    /// Brain coverage: less than 100 ml of brain (a slab thinner than 2 cm) warns, under 30 ml
    /// the hemispheres' reference is not measurable; more than 10 % of the brain lost to
    /// motion (outside the slab at some time point) warns, 25 % withholds.
    public static let brainWarnML = 100.0, brainWithholdML = 30.0, lostWarn = 0.10, lostWithhold = 0.25
    /// Cross-check of a learned pipeline against perfusion-svd: the volumes agree when they
    /// differ by at most 3 ml (the smallest region the lesion rules count) or 45 % of the
    /// larger; beyond, one of them is badly wrong and which one is not known: withheld.
    /// Derived on training seeds only (scripts/eval/qc_seeds.py --seeds 101-110 --sigmas 0,10
    /// and 101-116 at 20 HU, then scripts/eval/crosscheck_tolerance.py; 36 cases): for each
    /// tolerance from 20 to 80 %, the cases where the learned volumes would be withheld though
    /// both were within 25 % of the truth (false), and shown though one was off by more than
    /// 50 % (missed). The rule: fewest missed with false ≤ 5 % of the cases, then the largest
    /// tolerance. 30 %: 2 false, 4 missed; 35–40 %: 1, 4; 45 %: 0, 4; 50–60 %: 0, 5; 70 %:
    /// 0, 6. It sits between two bounds: two answers within 25 % of the truth differ by at most
    /// 40 % of the larger, one right and one off by 2× by 50 %. (The 55 % before it had been
    /// chosen after looking at held-out seed 9003.) The 4 missed are σ 20 HU cores where both
    /// methods read too large together (+56…+88 %), which no cross-check between them can see.
    /// (An 8 ml floor let a core of 0 ml pass against 6.5 on the motion case, truth 9.3.)
    public static let crossCheckML = 3.0, crossCheckFraction = 0.45

    static func pct(_ x: Double) -> String { String(format: "%.0f %%", 100 * x) }

    /// The checks that need no pipeline result: motion, noise, sampling, coverage.
    public static func seriesChecks(_ m: QCMeasurements, motion: MotionCorrection.Outcome, motionThresholdMM: Double) -> [QCReport.Check] {
        var out: [QCReport.Check] = []
        let moved = motion.qc == "motion"
        out.append(.init(name: "motion", value: motion.maxDisplacementMM, threshold: motionThresholdMM, outcome: moved ? .warn : .ok,
                         reason: moved ? String(format: "head moved up to %.1f mm (threshold %.1f mm)%@", motion.maxDisplacementMM, motionThresholdMM,
                                                motion.note.map { "; \($0)" } ?? "")
                                       : String(format: "largest displacement %.1f mm", motion.maxDisplacementMM),
                         plain: moved ? String(format: "the head moved %.1f mm during the scan", motion.maxDisplacementMM) : nil))
        let noise = m.noiseHU
        let nOutcome: QCOutcome = noise > noiseWithhold ? .withhold : noise > noiseWarn ? .warn : .ok
        out.append(.init(name: "noise", value: noise, threshold: nOutcome == .withhold ? noiseWithhold : noiseWarn, outcome: nOutcome,
                         reason: String(format: "pre-bolus noise σ %.1f HU (warn above %.0f, withhold above %.0f: the methods hold at 0–20 HU)", noise, noiseWarn, noiseWithhold),
                         plain: nOutcome == .ok ? nil : String(format: "the images are noisier (%.0f HU) than the method is known to handle (20 HU)", noise)))
        let texture = m.noiseCorrelationMM
        let xOutcome: QCOutcome = texture > noiseTextureWarnMM ? .warn : .ok
        out.append(.init(name: "noise_texture", value: texture, threshold: noiseTextureWarnMM, outcome: xOutcome,
                         reason: String(format: "pre-bolus noise correlated over %.2f mm (warn above %.1f mm: both methods were tuned on 0.8 mm, which reads 0.6–0.7)", texture, noiseTextureWarnMM),
                         plain: xOutcome == .ok ? nil : String(format: "the image noise is coarser-grained (%.1f mm) than the method was tuned on", texture)))
        let thick = m.sliceMM
        let sOutcome: QCOutcome = thick > sliceWithholdMM ? .withhold : thick > sliceWarnMM ? .warn : .ok
        out.append(.init(name: "slice_thickness", value: thick, threshold: sOutcome == .withhold ? sliceWithholdMM : sliceWarnMM, outcome: sOutcome,
                         reason: String(format: "slices %.1f mm apart (warn above %.1f mm, withhold above %.1f mm: tuned on 5 mm)", thick, sliceWarnMM, sliceWithholdMM),
                         plain: sOutcome == .ok ? nil : String(format: "the slices are %.0f mm thick; the method was checked on 5 mm", thick)))
        let tuned = tunedFrames.contains(m.frames) && tunedDurationS.contains(m.durationS)
        out.append(.init(name: "acquisition", value: Double(m.frames), threshold: Double(tunedFrames.lowerBound), outcome: tuned ? .ok : .warn,
                         reason: String(format: "%d frames over %.0f s (tuned on 19 over 36 s; checked within %d–%d frames and %.0f–%.0f s)",
                                        m.frames, m.durationS, tunedFrames.lowerBound, tunedFrames.upperBound, tunedDurationS.lowerBound, tunedDurationS.upperBound),
                         plain: tuned ? nil : String(format: "%d frames over %.0f s, an acquisition the method was not checked on (19 over 36 s)", m.frames, m.durationS)))
        let gap = m.maxIntervalS
        let gOutcome: QCOutcome = gap > gapWithholdS ? .withhold : gap > gapWarnS ? .warn : .ok
        out.append(.init(name: "sampling", value: gap, threshold: gOutcome == .withhold ? gapWithholdS : gapWarnS, outcome: gOutcome,
                         reason: String(format: "largest interval between frames %.1f s (warn above %.0f s, withhold above %.0f s)", gap, gapWarnS, gapWithholdS),
                         plain: gOutcome == .ok ? nil : String(format: "a gap of %.0f s between frames", gap)))
        let lost = m.brainML > 0 ? 1 - m.validBrainML / m.brainML : 0
        var cOutcome: QCOutcome = .ok
        if m.validBrainML < brainWithholdML || lost > lostWithhold { cOutcome = .withhold }
        else if m.validBrainML < brainWarnML || lost > lostWarn { cOutcome = .warn }
        out.append(.init(name: "brain_coverage", value: m.validBrainML, threshold: cOutcome == .withhold ? brainWithholdML : brainWarnML,
                         outcome: cOutcome,
                         reason: String(format: "%.0f ml of brain inside the slab at every time point, of %.0f ml (%@ lost to motion; warn below %.0f ml or above %@ lost, withhold below %.0f ml or above %@)",
                                        m.validBrainML, m.brainML, pct(lost), brainWarnML, pct(lostWarn), brainWithholdML, pct(lostWithhold)),
                         plain: cOutcome == .ok ? nil : (lost > lostWarn
                            ? "the head moved \(pct(lost)) of the brain out of the scanned slab at some time point"
                            : String(format: "the scan covers only %.0f ml of brain", m.validBrainML))))
        return out
    }

    /// Checks on the arterial, venous and tissue curves of a pipeline's result.
    public static func curveChecks(_ m: QCMeasurements, summary: [String: SummaryValue]) -> [QCReport.Check] {
        func numbers(_ k: String) -> [Double] { if case .numbers(let x)? = summary[k] { return x }; return [] }
        func table(_ k: String) -> [[Double]] { if case .table(let x)? = summary[k] { return x }; return [] }
        let times = numbers("curve_times_s"), aif = numbers("aif_delta_hu"), vof = numbers("vof_delta_hu")
        var out: [QCReport.Check] = []
        guard !aif.isEmpty, times.count == aif.count, let aifPeak = aif.max(), aifPeak > 0 else { return out }
        let kA = aif.firstIndex(of: aifPeak)!
        let aifTTP = times[kA]
        let tissue = m.tissueCurve
        let tissueTTP = tissue.indices.max { tissue[$0] < tissue[$1] }.map { m.frameTimes[$0] } ?? .infinity
        // Arrival before the tissue's: the arterial curve must peak before the brain does.
        let lead = tissueTTP - aifTTP
        let slices = Set(table("aif_voxels_zyx").compactMap { $0.first.map { Int($0) } }).count
        let aOutcome: QCOutcome = lead > 0 ? .ok : .withhold
        out.append(.init(name: "arterial_input", value: lead, threshold: 0, outcome: aOutcome,
                         reason: String(format: "arterial curve peaks %.1f HU at %.1f s, the brain tissue at %.1f s (must be later); taken on %d slice%@",
                                        aifPeak, aifTTP, tissueTTP, slices, slices == 1 ? "" : "s"),
                         plain: aOutcome == .ok ? nil : String(format: "no plausible arterial input: the chosen vessel peaks at %.0f s, not before the brain tissue (%.0f s)", aifTTP, tissueTTP)))
        // Frames before the bolus: the arterial curve's arrival at 10 % of its peak.
        let arrival = aif.firstIndex { $0 >= 0.1 * aifPeak }.map { times[$0] } ?? 0
        let pre = Double(m.frameTimes.filter { $0 < arrival - 1e-6 }.count)
        let pOutcome: QCOutcome = pre < minPreBolusFrames ? .withhold : .ok
        out.append(.init(name: "pre_bolus_frames", value: pre, threshold: minPreBolusFrames, outcome: pOutcome,
                         reason: String(format: "%.0f frame%@ before the arterial arrival at %.1f s (at least %.0f needed for a baseline)",
                                        pre, pre == 1 ? "" : "s", arrival, minPreBolusFrames),
                         plain: pOutcome == .ok ? nil : String(format: "the contrast arrived before a baseline was scanned (%.0f frame%@ before it, %.0f needed)", pre, pre == 1 ? "" : "s", minPreBolusFrames)))
        // Truncation: the venous curve (else the tissue's) at the last frame.
        let last = m.frameTimes.last ?? 0
        var fraction = 0.0, what = ""
        _ = vof
        if let vPeak = m.venousCurve.max(), vPeak > 0 {
            fraction = (m.venousCurve.last ?? 0) / vPeak; what = "venous"
        } else if let tPeak = tissue.max(), tPeak > 0 {
            fraction = (tissue.last ?? 0) / tPeak; what = "tissue"
        }
        let tFrac = (tissue.max() ?? 0) > 0 ? (tissue.last ?? 0) / tissue.max()! : 0
        let tOutcome: QCOutcome = fraction > truncationWithhold ? .withhold : fraction > truncationWarn ? .warn : .ok
        out.append(.init(name: "truncation", value: fraction, threshold: tOutcome == .withhold ? truncationWithhold : truncationWarn, outcome: tOutcome,
                         reason: String(format: "%@ curve at %@ of its peak at the last frame (%.0f s), brain tissue at %@ (warn above %@, withhold above %@)",
                                        what, pct(fraction), last, pct(tFrac), pct(truncationWarn), pct(truncationWithhold)),
                         plain: tOutcome == .ok ? nil : String(format: "the acquisition ended before the contrast washed out — %@ curve at %@ of its peak at %.0f s",
                                                                 what, pct(fraction), last)))
        return out
    }

    /// A learned pipeline's envelope against the series: every violation in words.
    public static func envelopeViolations(_ e: ModelEnvelopeView, _ m: QCMeasurements) -> [String] {
        var v: [String] = []
        func check(_ name: String, _ x: Double, _ r: [Double]?, _ unit: String, _ format: String = "%.1f") {
            guard let r, r.count == 2 else { return }
            if x < r[0] - 1e-9 || x > r[1] + 1e-9 {
                v.append("\(name) \(String(format: format, x))\(unit) (trained on \(String(format: format, r[0]))–\(String(format: format, r[1]))\(unit))")
            }
        }
        check("frames", Double(m.frames), e.frames, "", "%.0f")
        check("largest frame interval", m.maxIntervalS, e.frameIntervalS, " s")
        check("duration", m.durationS, e.durationS, " s", "%.0f")
        check("pixel", m.pixelMM, e.pixelMM, " mm", "%.2f")
        check("noise", m.noiseHU, e.noiseHU, " HU")
        check("noise correlation", m.noiseCorrelationMM, e.noiseCorrelationMM, " mm", "%.2f")
        return v
    }

    /// Cross-check of a learned pipeline's volumes against perfusion-svd's.
    public static func crossCheck(_ summary: [String: SummaryValue], svd: [String: SummaryValue]?, error: String?) -> QCReport.Check {
        func number(_ s: [String: SummaryValue], _ k: String) -> Double? { if case .number(let x)? = s[k] { return x }; return nil }
        guard let svd, let c = number(summary, "core_ml"), let p = number(summary, "penumbra_ml"),
              let sc = number(svd, "core_ml"), let sp = number(svd, "penumbra_ml") else {
            return .init(name: "cross_check", value: 0, threshold: crossCheckFraction, outcome: .warn,
                         reason: "perfusion-svd could not cross-check the volumes: \(error ?? "no volumes")",
                         plain: "the volumes could not be cross-checked against the classical method")
        }
        func excess(_ a: Double, _ b: Double) -> Double {
            // How far the disagreement exceeds the tolerance (≤ 1: within).
            abs(a - b) / max(crossCheckML, crossCheckFraction * max(a, b))
        }
        let worst = max(excess(c, sc), excess(p, sp))
        let outcome: QCOutcome = worst > 1 ? .withhold : .ok
        return .init(name: "cross_check", value: worst, threshold: 1, outcome: outcome,
                     reason: String(format: "core %.1f ml vs perfusion-svd %.1f, penumbra %.1f vs %.1f (tolerance: %.0f ml or %@ of the larger; value = difference / tolerance)",
                                    c, sc, p, sp, crossCheckML, pct(crossCheckFraction)),
                     // In words only: a withheld page shows no volume as a number (report.json has them).
                     plain: outcome == .ok ? nil : "the learned and the classical method disagree on the lesion volumes by more than \(pct(crossCheckFraction)) of the larger")
    }
}

/// The envelope a learned model declares in model.json (`envelope`): what it was trained on.
public struct ModelEnvelopeView: Sendable {
    public var frames, frameIntervalS, durationS, pixelMM, noiseHU, noiseCorrelationMM: [Double]?
    package init(frames: [Double]? = nil, frameIntervalS: [Double]? = nil, durationS: [Double]? = nil, pixelMM: [Double]? = nil, noiseHU: [Double]? = nil, noiseCorrelationMM: [Double]? = nil) {
        self.frames = frames; self.frameIntervalS = frameIntervalS; self.durationS = durationS; self.pixelMM = pixelMM; self.noiseHU = noiseHU; self.noiseCorrelationMM = noiseCorrelationMM
    }
}
