import Foundation
import Volume

/// The one page a stroke team reads (docs/ARCHITECTURE.md §7 "Output DICOM", issue 6 item 5): one slice
/// of CBF, CBV, MTT and Tmax with colour bars and units; the core (red) and penumbra
/// (green) on the first time point; where the AIF and VOF were taken, on the peak
/// enhancement image; the two curves (ΔHU against s); the volumes, mismatch ratio and
/// the motion QC flag in words; and that it is not for diagnosis.
public struct SummaryPage {
    public var maps: [String: Volume3D]
    /// 1 core, 2 penumbra, 0 elsewhere (same grid as the maps).
    public var lesion: Volume3D?
    /// The first time point (HU): the anatomy under the lesion overlay.
    public var anatomy: Volume3D
    /// height × width: the largest enhancement over slices and time, HU(t) − HU(0).
    public var enhancement: [Float]
    public var summary: [String: SummaryValue]
    public var motionQC: String
    public var maxDisplacementMM: Double
    public var pipeline: String
    /// The quality checks: `withhold` leaves the volumes, the mismatch ratio and the lesion
    /// overlay off the page and says why; `warn` says what to be wary of.
    public var qc: QCReport?

    public static let width = 1216, height = 920
    static let panel = 280.0

    public init(maps: [String: Volume3D], lesion: Volume3D?, anatomy: Volume3D, enhancement: [Float],
                summary: [String: SummaryValue], motionQC: String, maxDisplacementMM: Double, pipeline: String) {
        self.maps = maps; self.lesion = lesion; self.anatomy = anatomy; self.enhancement = enhancement
        self.summary = summary; self.motionQC = motionQC; self.maxDisplacementMM = maxDisplacementMM; self.pipeline = pipeline
    }

    /// The slice with the most core and penumbra, else the middle slice.
    public var slice: Int {
        guard let l = lesion else { return anatomy.depth / 2 }
        let plane = l.height * l.width
        let counts = (0..<l.depth).map { z in (0..<plane).reduce(0) { $0 + (l.voxels[z * plane + $1] > 0 ? 1 : 0) } }
        guard let best = counts.indices.max(by: { counts[$0] < counts[$1] }), counts[best] > 0 else { return anatomy.depth / 2 }
        return best
    }

    func number(_ key: String) -> Double? { if case .number(let x) = summary[key] { return x }; return nil }
    func numbers(_ key: String) -> [Double] { if case .numbers(let x) = summary[key] { return x }; return [] }
    func table(_ key: String) -> [[Double]] { if case .table(let x) = summary[key] { return x }; return [] }

    public func render() -> Canvas {
        let c = Canvas(width: Self.width, height: Self.height)
        c.fill((0, 0, 0))
        let z = slice
        header(c, z: z)
        let names = ["cbf", "cbv", "mtt", "tmax"]
        for (k, name) in names.enumerated() {
            guard let v = maps[name], let meta = Processing.outputNames[name] else { continue }
            mapPanel(c, v, z: z, x: 16 + Double(k) * (Self.panel + 20), y: 60, title: meta.title, unit: meta.unit, range: meta.range)
        }
        lesionPanel(c, z: z, x: 16, y: 420)
        vesselPanel(c, x: 316, y: 420)
        curvePanel(c, x: 616, y: 420, w: 584, h: Self.panel + 26)
        if qc?.withheld == true { withheldText(c, y: 770) } else { volumesText(c, y: 770) }
        c.rect(x: 0, y: Double(Self.height - 44), w: Double(Self.width), h: 44, fill: (0.25, 0.2, 0.0))
        c.text("NOT FOR DIAGNOSIS — perfd \(pipeline): research software, checked on synthetic phantoms only; read the source images.",
               x: 16, y: Double(Self.height) - 16, size: 16, color: (1, 0.85, 0.3), bold: true)
        return c
    }

    func header(_ c: Canvas, z: Int) {
        c.rect(x: 0, y: 0, w: Double(Self.width), h: 46, fill: (0.12, 0.12, 0.16))
        let fellBack = qc?.fallback != nil ? " (fallback)" : ""
        let tw = c.text("CT perfusion summary — perfd \(pipeline)\(fellBack)", x: 16, y: 31, size: 22, bold: true)
        c.text("slice \(z + 1) of \(anatomy.depth)", x: 36 + tw, y: 30, size: 15, color: (0.8, 0.8, 0.8))
        let moved = motionQC == "motion"
        let flag = moved ? String(format: "Motion QC: MOTION (max %.1f mm) — check the maps", maxDisplacementMM)
                         : String(format: "Motion QC: ok (max %.1f mm)", maxDisplacementMM)
        let w = c.textWidth(flag, size: 15, bold: true) + 20
        c.rect(x: Double(Self.width) - w - 12, y: 9, w: w, h: 28, fill: moved ? (0.7, 0.05, 0.05) : (0.05, 0.4, 0.12))
        c.text(flag, x: Double(Self.width) - w - 2, y: 29, size: 15, bold: true)
    }

    /// The slice scaled to the panel; `colour` maps a voxel value to RGB bytes (nil: black).
    func drawSlice(_ c: Canvas, _ v: Volume3D, z: Int, x: Double, y: Double, colour: (Float, Int) -> (UInt8, UInt8, UInt8)?) {
        let plane = v.height * v.width
        var rgb = [UInt8](repeating: 0, count: plane * 3)
        for i in 0..<plane {
            guard let p = colour(v.voxels[z * plane + i], i) else { continue }
            rgb[3 * i] = p.0; rgb[3 * i + 1] = p.1; rgb[3 * i + 2] = p.2
        }
        c.image(rgb: rgb, width: v.width, height: v.height, x: x, y: y, scale: Self.panel / Double(max(v.width, v.height)))
    }

    func mapPanel(_ c: Canvas, _ v: Volume3D, z: Int, x: Double, y: Double, title: String, unit: String, range: (Double, Double)) {
        let tw = c.text(title, x: x, y: y + 18, size: 18, bold: true)
        c.text(unit, x: x + tw + 8, y: y + 18, size: 14, color: (0.8, 0.8, 0.8))
        drawSlice(c, v, z: z, x: x, y: y + 26) { value, _ in
            guard value.isFinite else { return nil }
            let t = max(0, min(1, (Double(value) - range.0) / (range.1 - range.0)))
            return ColourMap.perfusion[Int((t * 255).rounded())]
        }
        let barY = y + 34 + Self.panel
        for k in 0..<Int(Self.panel) {
            let e = ColourMap.perfusion[Int((Double(k) / Self.panel * 255).rounded())]
            c.rect(x: x + Double(k), y: barY, w: 1, h: 12, fill: (Double(e.0) / 255, Double(e.1) / 255, Double(e.2) / 255))
        }
        c.strokeRect(x: x, y: barY, w: Self.panel, h: 12, color: (1, 1, 1))
        for k in 0...4 {
            let f = Double(k) / 4, label = Pictures.formatTick(range.0 + f * (range.1 - range.0))
            let lx = x + f * Self.panel - c.textWidth(label, size: 12) * f
            c.text(label, x: lx, y: barY + 28, size: 12)
        }
    }
}
