import Foundation
import Volume

extension SummaryPage {
    /// Core (red) and penumbra (green) blended over the first time point in a brain window.
    func lesionPanel(_ c: Canvas, z: Int, x: Double, y: Double) {
        let withheld = qc?.withheld == true
        c.text(withheld ? "Core · penumbra: withheld" : "Core (red) · penumbra (green)", x: x, y: y + 18, size: 16, bold: true)
        let plane = anatomy.height * anatomy.width
        drawSlice(c, anatomy, z: z, x: x, y: y + 26) { hu, i in
            let g = max(0, min(1, (Double(hu) - 0) / 80))
            var p = (g, g, g)
            let code = withheld ? 0 : lesion.map { Int($0.voxels[z * plane + i]) } ?? 0
            if code == 1 { p = (0.45 * g + 0.55, 0.45 * g, 0.45 * g) }
            if code == 2 { p = (0.45 * g, 0.45 * g + 0.55, 0.45 * g) }
            return (UInt8(p.0 * 255), UInt8(p.1 * 255), UInt8(p.2 * 255))
        }
    }

    /// Peak enhancement over all slices, with the chosen AIF (red circles) and VOF (blue
    /// circles) voxels; their slice numbers are listed under the title.
    func vesselPanel(_ c: Canvas, x: Double, y: Double) {
        c.text("AIF (red) · VOF (blue) voxels", x: x, y: y + 18, size: 16, bold: true)
        let h = anatomy.height, w = anatomy.width
        let top = max(50, Double(enhancement.max() ?? 0))
        let img = Volume3D(depth: 1, height: h, width: w, voxels: enhancement, geometry: anatomy.geometry)
        drawSlice(c, img, z: 0, x: x, y: y + 26) { v, _ in
            let g = UInt8(max(0, min(1, Double(v) / top)) * 255)
            return (g, g, g)
        }
        let s = Self.panel / Double(max(w, h))
        func mark(_ voxels: [[Double]], _ colour: Canvas.RGB) {
            for v in voxels where v.count == 3 {
                c.circle(x: x + (v[2] + 0.5) * s, y: y + 26 + (v[1] + 0.5) * s, r: 6, color: colour)
            }
        }
        let aif = table("aif_voxels_zyx"), vof = table("vof_voxels_zyx")
        mark(aif, (1, 0.2, 0.2))
        mark(vof, (0.3, 0.6, 1))
        func slices(_ t: [[Double]]) -> String {
            Set(t.compactMap { $0.first.map { Int($0) + 1 } }).sorted().map(String.init).joined(separator: ",")
        }
        c.text("peak ΔHU, all slices · AIF slice \(slices(aif)) · VOF slice \(slices(vof))", x: x, y: y + 26 + Self.panel + 18,
               size: 11, color: (0.8, 0.8, 0.8))
    }

    /// AIF (after its partial-volume scale) and VOF, ΔHU against time, with labelled axes.
    func curvePanel(_ c: Canvas, x: Double, y: Double, w: Double, h: Double) {
        c.text("Arterial input and venous output (ΔHU)", x: x, y: y + 18, size: 16, bold: true)
        let t = numbers("curve_times_s"), aif = numbers("aif_delta_hu"), vof = numbers("vof_delta_hu")
        let px = x + 52, py = y + 30, pw = w - 70, ph = h - 62
        c.rect(x: px, y: py, w: pw, h: ph, fill: (0.08, 0.08, 0.1))
        guard let tEnd = t.last, tEnd > 0, !aif.isEmpty else {
            c.text("no curves in this pipeline's summary", x: px + 10, y: py + 30, size: 14)
            return
        }
        let yTop = Self.niceCeiling(max(aif.max() ?? 0, vof.max() ?? 0) * 1.05)
        let xTop = (tEnd / 10).rounded(.up) * 10
        func X(_ s: Double) -> Double { px + pw * s / xTop }
        func Y(_ v: Double) -> Double { py + ph * (1 - max(-0.05 * yTop, v) / yTop) }
        for k in 0...4 {
            let v = yTop * Double(k) / 4
            c.rect(x: px, y: Y(v), w: pw, h: 1, fill: (0.25, 0.25, 0.3))
            let label = Pictures.formatTick(v)
            c.text(label, x: px - 8 - c.textWidth(label, size: 12), y: Y(v) + 4, size: 12)
        }
        let step = xTop > 40 ? 10.0 : 5.0
        for s in stride(from: 0, through: xTop, by: step) {
            c.rect(x: X(s), y: py + ph, w: 1, h: 5, fill: (1, 1, 1))
            let label = Pictures.formatTick(s)
            c.text(label, x: X(s) - c.textWidth(label, size: 12) / 2, y: py + ph + 18, size: 12)
        }
        c.strokeRect(x: px, y: py, w: pw, h: ph, color: (0.7, 0.7, 0.7))
        c.text("time (s)", x: px + pw - 50, y: py + ph + 34, size: 12, color: (0.8, 0.8, 0.8))
        c.polyline(zip(t, aif).map { (X($0), Y($1)) }, color: (1, 0.25, 0.25), width: 2)
        if vof.count == t.count { c.polyline(zip(t, vof).map { (X($0), Y($1)) }, color: (0.3, 0.6, 1), width: 2) }
        let scale = number("aif_partial_volume_scale") ?? 1
        c.text(String(format: "AIF (×%.2f partial-volume scale)", scale), x: px + pw - 250, y: py + 20, size: 13, color: (1, 0.4, 0.4))
        c.text("VOF", x: px + pw - 250, y: py + 38, size: 13, color: (0.4, 0.7, 1))
    }

    /// Volumes in ml, the mismatch ratio and the rules behind them.
    func volumesText(_ c: Canvas, y: Double) {
        func ml(_ key: String) -> String { number(key).map { String(format: "%.1f ml", $0) } ?? "—" }
        let ratio = number("mismatch_ratio").map { $0 < 0 ? "— (no core)" : String(format: "%.1f", $0) } ?? "—"
        var x = Self.textLeft
        let items: [(String, String, Canvas.RGB)] = [("Core", ml("core_ml"), (1, 0.35, 0.35)),
                                                     ("Penumbra", ml("penumbra_ml"), (0.35, 1, 0.35)), ("Mismatch ratio", ratio, (1, 1, 1))]
        for (label, value, colour) in items {
            x += c.text(label + ": ", x: x, y: y, size: 24, color: colour)
            x += c.text(value, x: x, y: y, size: 24, color: colour, bold: true) + 40
        }
        var y = y
        if let qc, qc.outcome == .warn || qc.fallback != nil {
            // What to be wary of, above the rules: the results stand, with this warning.
            let words = qc.plainWords
            // paragraph returns the next baseline; the rules below start 28 px under `y`.
            y = c.paragraph("QC warning: " + words.joined(separator: "; ") + ".", x: Self.textLeft, y: y + 28, maxWidth: Self.textWidth,
                            size: 15, color: (1, 0.75, 0.2)) - 26
        }
        let hypo = ml("hypoperfused_ml"), ref = number("reference_cbf").map { String(format: "%.1f", $0) } ?? "—"
        let minML = number("min_region_ml").map { String(format: "%g", $0) } ?? "—"
        let pct = number("core_relative_cbf").map { String(format: "%g", 100 * $0) } ?? "—"
        let late = number("penumbra_tmax_s").map { String(format: "%g", $0) } ?? "—"
        c.paragraph("Core: rCBF < \(pct) % of the healthy hemisphere's mean CBF (\(ref) ml/100g/min) within the Tmax > \(late) s region (holes included). "
                    + "Penumbra: Tmax > \(late) s outside the core. Mismatch ratio = hypoperfused volume (\(hypo)) / core volume. "
                    + "Regions under \(minML) ml are not counted.", x: Self.textLeft, y: y + 28, maxWidth: Self.textWidth, size: 14,
                    color: (0.85, 0.85, 0.85))
    }

    /// In place of the volumes when QC withholds them: why, in plain words, and no numbers.
    func withheldText(_ c: Canvas, y: Double) {
        let words = qc?.plainWords ?? []
        let first = words.first ?? "the data do not support them"
        // Within the 110 px above the footer band: a two-line reason, one line of others, one of help.
        var next = c.paragraph("Volumes withheld: \(first).", x: Self.textLeft, y: y, maxWidth: Self.textWidth, size: 22,
                               color: (1, 0.7, 0.15))
        let more = Array(words.dropFirst())
        if !more.isEmpty {
            next = c.paragraph("Also: " + more.joined(separator: "; ") + ".", x: Self.textLeft, y: next, maxWidth: Self.textWidth,
                               size: 14, color: (1, 0.75, 0.2))
        }
        c.paragraph("Core, penumbra and mismatch ratio are not shown; review the maps with the source images (report.json lists every check).",
                    x: Self.textLeft, y: min(next, Self.footerTop - 26), maxWidth: Self.textWidth, size: 13, color: (0.85, 0.85, 0.85))
    }

    /// 1, 2 or 5 times a power of ten, at least `v`.
    static func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let p = pow(10, (log10(v)).rounded(.down))
        for m in [1.0, 2, 2.5, 5, 10] where m * p >= v { return m * p }
        return 10 * p
    }
}
