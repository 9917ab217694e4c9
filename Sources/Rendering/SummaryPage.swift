import Foundation
import Pipelines
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

    public static let width = 1216, height = 1000
    /// The not-for-diagnosis band, 50 px high, ends 34 px above the bottom: viewers write at
    /// the bottom edge's middle too (Orthanc's web viewer puts its own warning there).
    static let footerTop = Double(height - 84)
    static let panel = 280.0
    /// Where the core/penumbra panel's slice is drawn: the page's plane is anchored there.
    static let lesionPanelOrigin = (x: 16.0, y: 452.0 + 26)
    /// The text block under the panels and the footer keep to the middle of the width, clear
    /// of the corners viewers write in (`Pictures.cornerShare`).
    static let textLeft = Double(width) * Pictures.cornerShare.width + 8
    static let textWidth = Double(width) * (1 - 2 * Pictures.cornerShare.width) - 16

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
            guard let v = maps[name], let meta = MapDisplay.byName[name] else { continue }
            mapPanel(c, v, z: z, x: 16 + Double(k) * (Self.panel + 20), y: 100, title: meta.title, unit: meta.unit, range: meta.range)
        }
        lesionPanel(c, z: z, x: Self.lesionPanelOrigin.x, y: Self.lesionPanelOrigin.y - 26)
        vesselPanel(c, x: 316, y: 452)
        curvePanel(c, x: 616, y: 452, w: 584, h: Self.panel + 26)
        if qc?.withheld == true { withheldText(c, y: 806) } else { volumesText(c, y: 806) }
        c.rect(x: 0, y: Self.footerTop, w: Double(Self.width), h: 50, fill: (0.25, 0.2, 0.0))
        let note = c.wrap("NOT FOR DIAGNOSIS — perfd \(pipeline): research software, checked on synthetic phantoms only; read the source images.",
                          maxWidth: Self.textWidth, size: 15, bold: true)
        for (k, line) in note.prefix(2).enumerated() {
            c.centredText(line, x: Double(Self.width) / 2, y: Self.footerTop + 20 + 19 * Double(k), size: 15,
                          color: (1, 0.85, 0.3), bold: true)
        }
        return c
    }

    /// The plane of the page: the slice shown, placed on the core/penumbra panel (the other
    /// panels show the same slice beside it, so they lie in the same plane but not at their
    /// own positions in it).
    public var plane: PicturePlane {
        let scale = Self.panel / Double(max(anatomy.width, anatomy.height))
        return PicturePlane.of(anatomy.geometry, z: slice, x: Self.lesionPanelOrigin.x, y: Self.lesionPanelOrigin.y, scale: scale)
    }

    /// Title in the middle of the top row; the slice and the motion badge centred in the
    /// second: the corners are left to the viewer.
    func header(_ c: Canvas, z: Int) {
        c.rect(x: 0, y: 0, w: Double(Self.width), h: 84, fill: (0.12, 0.12, 0.16))
        let fellBack = qc?.fallback != nil ? " (fallback)" : ""
        c.centredText("CT perfusion summary — perfd \(pipeline)\(fellBack)", x: Double(Self.width) / 2, y: 31, size: 22, bold: true)
        let where_ = Orientation.sliceLabel(anatomy.geometry, z: z, depth: anatomy.depth)
        let moved = motionQC == "motion"
        let flag = moved ? String(format: "Motion QC: MOTION (max %.1f mm) — check the maps", maxDisplacementMM)
                         : String(format: "Motion QC: ok (max %.1f mm)", maxDisplacementMM)
        let sw = c.textWidth(where_, size: 15), w = c.textWidth(flag, size: 15, bold: true) + 20
        let x0 = (Double(Self.width) - (sw + 24 + w)) / 2
        c.text(where_, x: x0, y: 69, size: 15, color: (0.85, 0.85, 0.85))
        c.rect(x: x0 + sw + 24, y: 49, w: w, h: 28, fill: moved ? (0.7, 0.05, 0.05) : (0.05, 0.4, 0.12))
        c.text(flag, x: x0 + sw + 34, y: 69, size: 15, bold: true)
    }

    /// The slice scaled to the panel; `colour` maps a voxel value to RGB bytes (nil: black).
    func drawSlice(_ c: Canvas, _ v: Volume3D, z: Int, x: Double, y: Double, colour: (Float, Int) -> (UInt8, UInt8, UInt8)?) {
        let plane = v.height * v.width
        var rgb = [UInt8](repeating: 0, count: plane * 3)
        for i in 0..<plane {
            guard let p = colour(v.voxels[z * plane + i], i) else { continue }
            rgb[3 * i] = p.0; rgb[3 * i + 1] = p.1; rgb[3 * i + 2] = p.2
        }
        let scale = Self.panel / Double(max(v.width, v.height))
        c.image(rgb: rgb, width: v.width, height: v.height, x: x, y: y, scale: scale)
        Pictures.orientationLetters(c, v.geometry, x: x, y: y, w: Double(v.width) * scale, h: Double(v.height) * scale, inside: true, size: 13)
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
