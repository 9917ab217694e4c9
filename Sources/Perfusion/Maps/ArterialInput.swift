import Foundation

/// A candidate voxel of the arterial input that failed a plausibility rule, for report.json.
public struct RejectedCandidate: Sendable, Equatable {
    /// Source voxel (z, y, x).
    public var zyx: [Int]
    public var rule: String
    public var reason: String
    public init(zyx: [Int], rule: String, reason: String) { self.zyx = zyx; self.rule = rule; self.reason = reason }
}

/// Automatic selection of the arterial input (AIF) and venous output (VOF) functions, and the
/// plausibility rules both perfusion pipelines apply to their arterial candidates.
///
/// Method (on the coarse grid, unsmoothed ΔHU so that vessels keep their peaks):
/// 1. Candidates: voxels inside the skull whose peak ΔHU is at least 80 HU and that pass the
///    plausibility rules (`Plausibility`), the highest peaks first, as many as the top 1 % of
///    peaks there (only large vessels enhance that much; tissue peaks at 10–40 HU). A voxel
///    that fails a rule is passed over and the reason kept for report.json.
/// 2. AIF: among candidates, those whose bolus arrives early — time to peak within the
///    earliest quarter of candidate TTPs, and before the brain tissue's mean curve peaks (a
///    vein peaks after the tissue it drains) — ranked by peak height over width (FWHM): an
///    artery's first pass is early, high and narrow. Candidates under 60 % of the best
///    peak are dropped as partial-volume voxels. The curve is the mean of the best 6, from
///    more than one slice when the slab has arterial candidates on another slice.
/// 3. VOF: candidates peaking at least two samples after the AIF (one sample let a noisy
///    arterial voxel through on a 512² standard case), ranked by area under the curve (the
///    sinus is large, so its centre is free of partial volume); the mean of the best 6.
/// 4. Partial-volume correction: tracer is conserved, so the areas under the arterial and
///    venous curves are equal in the absence of partial volume. A small artery's voxels
///    are diluted by surrounding tissue, which lowers its area; the AIF is scaled by
///    ∫VOF/∫AIF when that ratio exceeds 1 (never scaled down: the venous curve's tail can
///    fall outside the acquisition window, which only underestimates ∫VOF), capped at 3.
public struct ArterialInput: Sendable {
    public var aif: [Double]
    public var vof: [Double]
    public var aifVoxels: [Int]
    public var vofVoxels: [Int]
    public var scale: Double
    /// Voxels enhancing ≥ 80 HU that were looked at, and why each passed-over one failed.
    public var screened = 0
    public var rejected: [Rejection] = []
    /// Sample at which the brain tissue's mean curve peaks (nil: no tissue to compare with).
    public var tissuePeakSample: Int?

    public struct Rejection: Sendable, Equatable {
        public var voxel: Int
        /// Short name of the rule that failed: slab, bone, negative_swing, several_peaks, late.
        public var rule: String
        public var reason: String
        public init(voxel: Int, rule: String, reason: String) { self.voxel = voxel; self.rule = rule; self.reason = reason }
    }

    /// Number of rejected candidates per rule.
    public var rejectedCounts: [String: Int] { rejected.reduce(into: [:]) { $0[$1.rule, default: 0] += 1 } }

    /// What a voxel's curve must look like to be taken for a large vessel's.
    public struct Plausibility: Sendable {
        /// Per voxel: inside the slab at every time point after registration (nil: all).
        public var valid: [Bool]?
        /// Per voxel: HU before the bolus (nil: not checked).
        public var baseline: [Float]?
        /// Image noise σ (HU) of one sample of the curves screened.
        public var noiseHU: Double
        public init(valid: [Bool]? = nil, baseline: [Float]? = nil, noiseHU: Double = 0) {
            self.valid = valid; self.baseline = baseline; self.noiseHU = noiseHU
        }

        /// Bone (skull 1000+ HU, its partial volume) starts above this; blood and brain below 80.
        public static let boneHU: Float = 150
        /// A second peak of more than this fraction of the first is not one bolus: the first
        /// pass's recirculation is 8–16 % of it, noise adds a few HU; a voxel that motion moved
        /// across bone or out of the slab swings by hundreds.
        public static let secondPeakFraction = 0.5
        /// What noise alone may do to a curve: 5 σ of the difference of two samples (σ√2), at
        /// least 50 HU — how far below baseline a vessel's curve may dip, and how high a second
        /// peak may stand. Tighter limits reject partial-volume vessel voxels at 20 HU.
        public func negativeLimit() -> Double { max(50, 5 * noiseHU * 2.0.squareRoot()) }

        /// The rule `curve` (ΔHU per sample) of `voxel` fails, or nil when it is plausible.
        public func failure(_ curve: [Double], voxel v: Int, dt: Double) -> (rule: String, reason: String)? {
            if let valid, !valid[v] {
                return ("slab", "left the scanned slab at some time point (registration moved it out)")
            }
            if let baseline, baseline[v] > Self.boneHU {
                return ("bone", String(format: "bone-like baseline %.0f HU (> %.0f)", baseline[v], Self.boneHU))
            }
            let low = curve.min() ?? 0
            if low < -negativeLimit() {
                return ("negative_swing", String(format: "falls %.0f HU below its baseline (noise allows %.0f)", -low, negativeLimit()))
            }
            let s = ArterialInput.shape(curve)
            let second = ArterialInput.secondPeak(curve, at: s.ttp)
            if second > max(Self.secondPeakFraction * s.peak, negativeLimit()) {
                return ("several_peaks", String(format: "a second peak of %.0f HU beside its first of %.0f (one bolus gives one)", second, s.peak))
            }
            return nil
        }
    }

    /// Peak, time of the peak (sample) and full width at half maximum (samples) of a curve.
    static func shape(_ c: [Double]) -> (peak: Double, ttp: Int, fwhm: Double) {
        var k = 0
        for j in 1..<c.count where c[j] > c[k] { k = j }
        let half = c[k] / 2
        var lo = k, hi = k
        while lo > 0 && c[lo - 1] >= half { lo -= 1 }
        while hi < c.count - 1 && c[hi + 1] >= half { hi += 1 }
        return (c[k], k, Double(hi - lo + 1))
    }

    /// The largest rise after a fall, on either side of the peak at `k`: how high a second
    /// peak stands above the trough that separates it from the first.
    static func secondPeak(_ c: [Double], at k: Int) -> Double {
        var second = 0.0
        var m = c[k]
        for j in (k + 1)..<max(k + 1, c.count) { m = min(m, c[j]); second = max(second, c[j] - m) }
        m = c[k]
        for j in stride(from: k - 1, through: 0, by: -1) { m = min(m, c[j]); second = max(second, c[j] - m) }
        return second
    }

    /// Sample at which the mean ΔHU of `tissue` voxels peaks (nil: no tissue).
    public static func tissuePeak(delta: [Float], samples n: Int, frame: Int, tissue: [Bool]) -> Int? {
        let ids = (0..<frame).filter { tissue[$0] }
        guard !ids.isEmpty else { return nil }
        var mean = [Double](repeating: 0, count: n)
        for j in 0..<n { var s = 0.0; for i in ids { s += Double(delta[j * frame + i]) }; mean[j] = s / Double(ids.count) }
        return shape(mean).ttp
    }

    /// Voxels enclosed by bone (baseline > 150 HU) in their slice, bone excluded: inside the head.
    public static func insideSkull(baseline: [Float], depth: Int, height: Int, width: Int) -> [Bool] {
        Masks.enclosed(by: baseline.map { $0 > Plausibility.boneHU }, depth: depth, height: height, width: width)
    }

    /// `delta` is ΔHU [sample][voxel] over `frame` voxels in `slices` slices; `inside` marks
    /// voxels inside the skull; `dt` the sampling step (s) for the reasons' times.
    public static func select(delta: [Float], samples n: Int, frame: Int, inside: [Bool], slices: Int = 1, dt: Double = 1,
                              plausibility: Plausibility = Plausibility()) throws -> ArterialInput {
        func curve(_ v: Int) -> [Double] { (0..<n).map { Double(delta[$0 * frame + v]) } }
        var peaks: [(v: Int, peak: Float)] = []
        for v in 0..<frame where inside[v] {
            var p: Float = -.infinity
            for j in 0..<n { p = max(p, delta[j * frame + v]) }
            peaks.append((v, p))
        }
        peaks.sort { $0.peak > $1.peak }
        let top = max(20, peaks.count / 100)
        var rejected: [Rejection] = []
        var candidates: [(v: Int, shape: (peak: Double, ttp: Int, fwhm: Double))] = []
        var screened = 0
        for p in peaks where p.peak >= 80 {
            if candidates.count >= top { break }
            screened += 1
            let c = curve(p.v)
            if let f = plausibility.failure(c, voxel: p.v, dt: dt) {
                rejected.append(Rejection(voxel: p.v, rule: f.rule, reason: f.reason))
            } else {
                candidates.append((p.v, shape(c)))
            }
        }
        guard screened >= 2 else {
            throw PerfusionError("no arterial input found: no voxel inside the head enhances by 80 HU or more; is this a contrast-enhanced perfusion series with the bolus inside the acquisition?")
        }
        func counts() -> String {
            Dictionary(grouping: rejected, by: \.rule).sorted { $0.key < $1.key }
                .map { "\($0.value.count) \($0.key): \($0.value[0].reason)" }.joined(separator: "; ")
        }
        guard candidates.count >= 2 else {
            throw PerfusionError("no plausible arterial input: of the \(screened) voxels inside the head that enhance by 80 HU or more, \(rejected.count) fail the plausibility rules (\(counts())); check the series for motion and the bolus")
        }
        // The brain tissue's mean curve: inside, all but the highest 2 % of peaks (the vessels;
        // a peak threshold would keep only the voxels noise happened to lower at 30 HU).
        var tissue = [Bool](repeating: false, count: frame)
        for p in peaks.dropFirst(2 * top) { tissue[p.v] = true }
        let tissuePeak = tissuePeak(delta: delta, samples: n, frame: frame, tissue: tissue)
        let ttps = candidates.map(\.shape.ttp).sorted()
        let early = ttps[ttps.count / 4]
        var arterial = candidates.filter { $0.shape.ttp <= early }
        if let tp = tissuePeak {
            // A vessel that peaks no earlier than the tissue drains it (a vein).
            for c in arterial where c.shape.ttp >= tp {
                rejected.append(Rejection(voxel: c.v, rule: "late", reason: String(
                    format: "peaks at %.1f s, not before the brain tissue (%.1f s): a vein, not an artery", Double(c.shape.ttp) * dt, Double(tp) * dt)))
            }
            arterial = arterial.filter { $0.shape.ttp < tp }
            guard !arterial.isEmpty else {
                throw PerfusionError(String(format: "no plausible arterial input: the earliest vessels inside the head peak at %.1f s, not before the brain tissue (%.1f s) — veins only; the slab holds no artery, or the bolus came before the acquisition", Double(early) * dt, Double(tp) * dt))
            }
        }
        let best = arterial.map(\.shape.peak).max() ?? 0
        arterial = arterial.filter { $0.shape.peak >= 0.6 * best }
            .sorted { $0.shape.peak / $0.shape.fwhm > $1.shape.peak / $1.shape.fwhm }
        var aifVoxels = Array(arterial.prefix(6).map(\.v))
        aifVoxels = spread(aifVoxels, ranked: arterial.map(\.v), plane: frame / max(1, slices))
        let aifTTP = arterial.first?.shape.ttp ?? early
        let venous = candidates.filter { $0.shape.ttp >= aifTTP + 2 }
            .map { c in (v: c.v, area: curve(c.v).reduce(0, +)) }
            .sorted { $0.area > $1.area }
        let vofVoxels = Array(venous.prefix(6).map(\.v))
        func mean(_ vs: [Int]) -> [Double] {
            var m = [Double](repeating: 0, count: n)
            for v in vs { for j in 0..<n { m[j] += Double(delta[j * frame + v]) / Double(vs.count) } }
            return m
        }
        var aif = mean(aifVoxels)
        let vof = vofVoxels.isEmpty ? [] : mean(vofVoxels)
        var scale = 1.0
        if !vof.isEmpty {
            let ratio = vof.reduce(0, +) / max(1e-6, aif.reduce(0, +))
            scale = min(3, max(1, ratio))
            aif = aif.map { $0 * scale }
        }
        return ArterialInput(aif: aif, vof: vof, aifVoxels: aifVoxels, vofVoxels: vofVoxels, scale: scale,
                             screened: screened, rejected: rejected, tissuePeakSample: tissuePeak)
    }

    /// `chosen` (a prefix of `ranked`) kept on more than one slice: when all of it lies on one
    /// slice and `ranked` has a voxel on another, that voxel takes the last place. One slice's
    /// vessels can carry a local artefact (motion at an edge slice, a beam-hardening streak).
    public static func spread(_ chosen: [Int], ranked: [Int], plane: Int) -> [Int] {
        guard chosen.count >= 2, plane > 0 else { return chosen }
        let z = chosen[0] / plane
        guard chosen.allSatisfy({ $0 / plane == z }), let other = ranked.first(where: { $0 / plane != z }) else { return chosen }
        return Array(chosen.dropLast()) + [other]
    }
}
