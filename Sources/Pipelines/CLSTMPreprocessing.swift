import Foundation
import Perfusion
import Volume

/// The perfusion model's input, step for step as `perfusion_input` in
/// models/training/data.py computes it for training (the two must change together; the
/// PreprocessingParityTests compare them):
///
/// 1. baseline = mean of frames 0 and 1 (before the bolus: arterial arrival is ≥ 3 s);
///    ΔHU = HU − baseline;
/// 2. soft tissue = baseline in [−50, 150] HU (no air, no bone); elsewhere the input is 0;
/// 3. the arterial curve = mean ΔHU of the n = max(8, soft / 2000) soft-tissue voxels with
///    the highest peak ΔHU; a = its peak; its arrival t_a = the first time it reaches 0.2·a
///    (linear between frames);
/// 4. every voxel's ΔHU and the arterial curve are resampled (linear, held at the ends) to
///    t_a − 4 s + 2 s·k, k = 0…18;
/// 5. model.json `"preprocessing"`:
///    - "aif-aligned-delta-hu" (also when absent): the voxels' curves scaled by 10 / a; one
///      input channel;
///    - "aif-aligned-delta-hu+aif": A = 2 s · Σ_k arterial(k), the arterial curve's area on
///      the grid (at least a · 1 s); channel 0 = the voxel's curve · 100 s / A, channel 1 =
///      the arterial curve · 10 s / A, the same at every voxel. The network then sees the
///      input function it has to deconvolve by, and ∫ channel 0 is proportional to CBV.
/// The network so sees curves relative to the arterial input on a uniform grid aligned to
/// its arrival, whatever the scanner's timing and the bolus's height.
struct PerfusionInput {
    static let frames = 19, step = 2.0, lead = 4.0, gain: Float = 10
    static let areaGainTissue = 100.0, areaGainAIF = 10.0
    static let preprocessings = ["aif-aligned-delta-hu", "aif-aligned-delta-hu+aif"]

    var input: [Float]          // (frames, D, H, W): channel 0
    var arterial: [Float]?      // (frames): channel 1 at every voxel, with "+aif"
    var soft: [Bool]            // (D, H, W)
    var baseline: [Float]       // (D, H, W)
    var peakDelta: [Float]      // (D, H, W), max ΔHU over the series
    var aif: [Double]           // ΔHU at the series' own frame times
    var aifPeak: Double
    var arrival: Double
    var aifVoxels: [Int]        // flat (z, y, x) indices
    /// Vessel-like voxels (≥ 80 HU) looked at for the arterial curve, and those that failed a rule.
    var screened = 0
    var rejected: [ArterialInput.Rejection] = []
    /// Pre-bolus noise σ (HU) of frames 0 and 1 in the soft tissue inside the skull.
    var noiseHU = 10.0

    /// Input channels per voxel and time point.
    var channels: Int { arterial == nil ? 1 : 2 }
    /// The same, for a model.json `preprocessing` before any series is read.
    static func channels(for preprocessing: String) -> Int { preprocessing == "aif-aligned-delta-hu+aif" ? 2 : 1 }

    init(_ s: Series4D, preprocessing: String? = nil) throws {
        let mode = preprocessing ?? Self.preprocessings[0]
        guard Self.preprocessings.contains(mode) else {
            throw PipelineError(message: "pipeline perfusion: the model asks for preprocessing \"\(mode)\"; this perfd knows \(Self.preprocessings.joined(separator: ", "))")
        }
        let T = s.timepoints, n = s.frameSize
        guard T >= 3 else { throw PipelineError(message: "pipeline perfusion needs at least 3 time points; the series has \(T)") }
        let times = s.frameTimes
        var baseline = [Float](repeating: 0, count: n)
        var soft = [Bool](repeating: false, count: n)
        var peak = [Float](repeating: -.infinity, count: n)
        let valid = s.validity
        s.voxels.withUnsafeBufferPointer { v in
            for i in 0..<n {
                let b = (v[i] + v[n + i]) / 2
                baseline[i] = b
                // A voxel that registration took out of the slab at some time point has no curve.
                soft[i] = b >= -50 && b <= 150 && valid?[i] != false
                var m = -Float.infinity
                for t in 0..<T { m = max(m, v[t * n + i] - b) }
                peak[i] = m
            }
        }
        let candidates = (0..<n).filter { soft[$0] }
        guard !candidates.isEmpty else { throw PipelineError(message: "pipeline perfusion: no soft tissue (baseline −50…150 HU) in the series") }
        let count = min(candidates.count, max(8, candidates.count / 2000))
        // The highest peaks, as in training, but a vessel-like one (≥ 80 HU) must pass the
        // plausibility rules perfusion-svd's candidates pass (ArterialInput.Plausibility:
        // inside the skull and the slab, no bone-like baseline, one bolus, no dip far below
        // baseline); on a series without motion or artefacts every one does and the input is
        // as trained. Arrival before the tissue is asked of the pool's mean (below): rejecting
        // the odd venous voxel the trained recipe lets in changed a held-out case's input.
        let ranked = candidates.sorted { peak[$0] > peak[$1] || (peak[$0] == peak[$1] && $0 < $1) }
        // Inside the skull; a series without one (a synthetic input, a cropped slab) is all inside.
        let skull = ArterialInput.insideSkull(baseline: baseline, depth: s.depth, height: s.height, width: s.width)
        let inside = skull.contains(true) ? skull : soft
        func deltaCurve(_ i: Int) -> [Double] { (0..<T).map { Double(s.voxels[$0 * n + i] - baseline[i]) } }
        let noise: Double = {
            var d = (0..<n).filter { soft[$0] && inside[$0] }.map { Double(s.voxels[n + $0] - s.voxels[$0]) }
            guard d.count > 10 else { return 10 }
            d = d.map(abs).sorted()
            return 1.4826 * d[d.count / 2] / 2.0.squareRoot()
        }()
        let rules = ArterialInput.Plausibility(valid: nil, baseline: baseline, noiseHU: noise)
        // The brain tissue's mean curve peaks after the arteries' and before the veins'.
        let tissuePeak: Int? = {
            // All but the highest 2 % of peaks inside the skull (the vessels).
            let within = ranked.filter { inside[$0] }
            let ids = Array(within.dropFirst(max(40, within.count / 50)))
            guard !ids.isEmpty else { return nil }
            let mean = (0..<T).map { t in ids.reduce(0.0) { $0 + Double(s.voxels[t * n + $1] - baseline[$1]) } }
            return mean.indices.max { mean[$0] < mean[$1] }
        }()
        var top: [Int] = [], rejected: [ArterialInput.Rejection] = [], screened = 0
        for i in ranked {
            if top.count >= count { break }
            guard peak[i] >= 80 else { top.append(i); continue }
            screened += 1
            let c = deltaCurve(i)
            if !inside[i] {
                rejected.append(.init(voxel: i, rule: "outside", reason: "outside the skull"))
            } else if let f = rules.failure(c, voxel: i, dt: 1) {
                rejected.append(.init(voxel: i, rule: f.rule, reason: f.reason))
            } else {
                top.append(i)
            }
        }
        if screened > 0 && rejected.count == screened {
            let counts = Dictionary(grouping: rejected, by: \.rule).sorted { $0.key < $1.key }
                .map { "\($0.value.count) \($0.key): \($0.value[0].reason)" }.joined(separator: "; ")
            throw PipelineError(message: "pipeline perfusion: no plausible arterial input: all \(screened) voxels that enhance by 80 HU or more fail the plausibility rules (\(counts)); check the series for motion and the bolus")
        }
        let failed = Set(rejected.map(\.voxel))
        top = ArterialInput.spread(top, ranked: Array(ranked.prefix(4 * count + failed.count)).filter { !failed.contains($0) },
                                   plane: s.height * s.width)
        self.screened = screened; self.rejected = rejected; self.noiseHU = noise
        var aif = [Double](repeating: 0, count: T)
        s.voxels.withUnsafeBufferPointer { v in
            for t in 0..<T {
                var sum = 0.0
                for i in top { sum += Double(v[t * n + i] - baseline[i]) }
                aif[t] = sum / Double(top.count)
            }
        }
        let a = aif.max() ?? 0
        // Arrival before the tissue's, for the pool as a whole: the training recipe's pool may
        // hold a few venous voxels (the network learnt with them), but an input that peaks
        // with or after the brain tissue is venous throughout — the slab holds no artery.
        if let tp = tissuePeak, let k = aif.indices.max(by: { aif[$0] < aif[$1] }), k >= tp, a >= 80 {
            throw PipelineError(message: String(format: "pipeline perfusion: no plausible arterial input: the most enhancing voxels peak at %.1f s, not before the brain tissue (%.1f s) — veins only; the slab holds no artery, or the bolus came before the acquisition", times[k], times[tp]))
        }
        // 80 HU, as perfusion-svd asks of its arterial candidates: arteries peak at 150–600 HU
        // in a CTP, and noise alone lifts the brightest voxels' peaks by 20–30 HU (a series
        // without a bolus read 28 HU here and came out with a 178 ml "penumbra").
        guard a >= 80 else {
            throw PipelineError(message: "pipeline perfusion: no arterial enhancement found (peak \(String(format: "%.1f", a)) HU above baseline, 80 expected); is this a contrast CT perfusion series with the bolus inside the acquisition?")
        }
        let level = 0.2 * a
        let k = aif.firstIndex { $0 >= level } ?? 0
        let ta = k == 0 ? times[0] : times[k - 1] + (level - aif[k - 1]) / (aif[k] - aif[k - 1]) * (times[k] - times[k - 1])

        // Grid frame f lies between frames j and j + 1 with weight w (held at the ends).
        let weights: [(j: Int, w: Double)] = (0..<Self.frames).map { f in
            let g = ta - Self.lead + Self.step * Double(f)
            // j = last frame at or before g, kept within 0…T−2; weight held to [0, 1].
            var j = 0
            while j + 1 < T && times[j + 1] <= g { j += 1 }
            j = min(max(j, 0), T - 2)
            return (j, min(max((g - times[j]) / (times[j + 1] - times[j]), 0), 1))
        }
        let scale: Float
        var arterial: [Float]? = nil
        if mode == "aif-aligned-delta-hu" {
            scale = Self.gain / Float(a)
        } else {
            let grid = weights.map { (1 - $0.w) * aif[$0.j] + $0.w * aif[$0.j + 1] }
            let area = max(Self.step * grid.reduce(0, +), a * 1.0)
            scale = Float(Self.areaGainTissue / area)
            arterial = grid.map { Float($0 * Self.areaGainAIF / area) }
        }
        var input = [Float](repeating: 0, count: Self.frames * n)
        s.voxels.withUnsafeBufferPointer { v in
            for (f, jw) in weights.enumerated() {
                let w = Float(jw.w)
                let o = f * n, a0 = jw.j * n, a1 = (jw.j + 1) * n
                for i in 0..<n where soft[i] {
                    input[o + i] = ((1 - w) * (v[a0 + i] - baseline[i]) + w * (v[a1 + i] - baseline[i])) * scale
                }
            }
        }
        self.arterial = arterial
        self.input = input; self.soft = soft; self.baseline = baseline; self.peakDelta = peak
        self.aif = aif; self.aifPeak = a; self.arrival = ta; self.aifVoxels = top
    }

    /// Brain parenchyma for core/penumbra volumes: soft tissue whose baseline, smoothed 3×3
    /// in-plane, lies in 10…80 HU (not CSF, not bone) and that enhances less than 100 HU
    /// (not a vessel).
    func parenchyma(depth: Int, height h: Int, width w: Int) -> [Bool] {
        var out = [Bool](repeating: false, count: soft.count)
        for z in 0..<depth { for y in 0..<h { for x in 0..<w {
            let i = (z * h + y) * w + x
            guard soft[i], peakDelta[i] < 100 else { continue }
            var sum: Float = 0, c: Float = 0
            for dy in -1...1 { for dx in -1...1 {
                let yy = y + dy, xx = x + dx
                guard yy >= 0, yy < h, xx >= 0, xx < w else { continue }
                let j = (z * h + yy) * w + xx
                if soft[j] { sum += baseline[j]; c += 1 }
            } }
            let m = sum / max(c, 1)
            out[i] = m >= 10 && m <= 80
        } } }
        return out
    }
}
