import Foundation
import Volume

/// Colour tables for maps: 256 RGB entries.
public enum ColourMap {
    /// The rainbow radiologists expect on perfusion maps: black → blue → cyan → green →
    /// yellow → red, piecewise linear.
    public static let perfusion: [(UInt8, UInt8, UInt8)] = {
        let stops: [(Double, Double, Double, Double)] = [
            (0.00, 0, 0, 0), (0.10, 0, 0, 0.6), (0.30, 0, 0.5, 1), (0.50, 0, 1, 0.3),
            (0.70, 1, 1, 0), (0.88, 1, 0.3, 0), (1.00, 1, 0, 0),
        ]
        return (0..<256).map { i in
            let t = Double(i) / 255
            let k = stops.lastIndex { $0.0 <= t } ?? 0
            let a = stops[k], b = stops[min(k + 1, stops.count - 1)]
            let f = b.0 > a.0 ? (t - a.0) / (b.0 - a.0) : 0
            func mix(_ x: Double, _ y: Double) -> UInt8 { UInt8((255 * (x + (y - x) * f)).rounded()) }
            return (mix(a.1, b.1), mix(a.2, b.2), mix(a.3, b.3))
        }
    }()
}

/// Burned-in pictures for the radiologist: colour maps with legends, and failure notices.
public enum Pictures {
    /// The share of a picture's width and height, at each corner, that carries no text of
    /// ours: viewers put their own overlays (patient, study, window, zoom) in the corners.
    public static let cornerShare = (width: 0.18, height: 0.10)

    /// One slice of a quantitative map, coloured over [lo, hi], with a legend bar, the unit
    /// and range, a title, orientation letters at the image's edges, the slice's location and
    /// the not-for-diagnosis note; text is centred, clear of the corners. Voxels that are NaN
    /// (outside the brain) are black. The picture's plane is the slice's: the map's pixels lie
    /// on the source's voxels.
    public static func colourSlice(_ v: Volume3D, z: Int, title: String, unit: String, range: (lo: Double, hi: Double),
                                   footer: String) -> Picture {
        // Small slices are enlarged by a whole factor to about 512 px; large ones shrunk to at
        // most 2048 px (Cairo draws at most 32767 px a side). The image area is at least 200 px
        // tall, so the legend bar has room whatever the slice's shape.
        let longest = Double(max(v.height, v.width))
        let scale = longest <= 512 ? max(1, (512.0 / longest).rounded(.down)) : min(1, 2048 / longest)
        let imgW = max(1, Int((Double(v.width) * scale).rounded(.up))), imgH = max(1, Int((Double(v.height) * scale).rounded(.up)))
        let areaH = max(200, imgH)
        let band = 28, legendW = 150, header = 44
        let width = max(2 * band + imgW + legendW, 640)
        // The text under the image: the slice, then the footer, centred within the middle of
        // the width (wrapped there), so the corners stay clear.
        let measure = Canvas(width: 1, height: 1)
        let textW = Double(width) * (1 - 2 * cornerShare.width) - 8
        let lines = [Orientation.sliceLabel(v.geometry, z: z, depth: v.depth)] + measure.wrap(footer, maxWidth: textW, size: 13)
        let lineH = 18
        // A blank strip under the text: viewers write at the bottom edge's middle too.
        let bottomH = lines.count * lineH + 14 + 30
        let height = header + band + areaH + band + bottomH
        let canvas = Canvas(width: width, height: height)
        canvas.fill((0, 0, 0))
        var rgb = [UInt8](repeating: 0, count: v.width * v.height * 3)
        let plane = v.width * v.height
        for i in 0..<plane {
            let x = Double(v.voxels[z * plane + i])
            guard x.isFinite else { continue }
            let t = max(0, min(1, (x - range.lo) / (range.hi - range.lo)))
            let c = ColourMap.perfusion[Int((t * 255).rounded())]
            rgb[3 * i] = c.0; rgb[3 * i + 1] = c.1; rgb[3 * i + 2] = c.2
        }
        let ox = Double(band), oy = Double(header + band)
        canvas.image(rgb: rgb, width: v.width, height: v.height, x: ox, y: oy, scale: scale)
        // Title and unit, centred in the header (shrunk to stay out of the corners).
        let heading = "\(title) (\(unit))"
        var size = 20.0
        while size > 9 && canvas.textWidth(heading, size: size, bold: true) > textW { size -= 1 }
        canvas.centredText(heading, x: Double(width) / 2, y: 30, size: size, bold: true)
        orientationLetters(canvas, v.geometry, x: ox, y: oy, w: Double(imgW), h: Double(imgH), inside: false)
        // Legend bar: hi at the top, lo at the bottom, with five labelled ticks, in the middle
        // of the image area's height; the unit above it.
        let barX = ox + Double(imgW) + Double(band) + 12, barY = oy + Double(areaH) * 0.22, barH = Double(areaH) * 0.56, barW = 26.0
        for k in 0..<Int(barH) {
            let c = ColourMap.perfusion[Int(((1 - Double(k) / barH) * 255).rounded())]
            canvas.rect(x: barX, y: barY + Double(k), w: barW, h: 1, fill: (Double(c.0) / 255, Double(c.1) / 255, Double(c.2) / 255))
        }
        canvas.strokeRect(x: barX, y: barY, w: barW, h: barH, color: (1, 1, 1))
        for k in 0...4 {
            let f = Double(k) / 4
            let y = barY + barH * (1 - f)
            canvas.rect(x: barX + barW, y: y - 0.5, w: 6, h: 1, fill: (1, 1, 1))
            canvas.text(formatTick(range.lo + f * (range.hi - range.lo)), x: barX + barW + 9, y: y + 5, size: 14)
        }
        var unitSize = 14.0
        while unitSize > 8 && canvas.textWidth(unit, size: unitSize, bold: true) > Double(legendW) - 16 { unitSize -= 1 }
        canvas.text(unit, x: barX - 4, y: barY - 12, size: unitSize, bold: true)
        var y = Double(header + band + areaH + band) + 16
        for (k, line) in lines.enumerated() {
            canvas.centredText(line, x: Double(width) / 2, y: y, size: 13, color: k == 0 ? (0.85, 0.85, 0.85) : (1, 0.85, 0.3))
            y += Double(lineH)
        }
        return Picture(rgb: canvas.rgbBytes(), width: canvas.width, height: canvas.height,
                       plane: PicturePlane.of(v.geometry, z: z, x: ox, y: oy, scale: scale))
    }

    /// Orientation letters at the middle of each edge of an image drawn at (x, y), w × h:
    /// outside it (in a margin) or just inside it on a dark backing.
    static func orientationLetters(_ c: Canvas, _ g: Geometry, x: Double, y: Double, w: Double, h: Double, inside: Bool, size: Double = 16) {
        let e = Orientation.edges(row: g.rowDirection, column: g.columnDirection)
        let colour: Canvas.RGB = (1, 1, 0.6)
        func put(_ s: String, cx: Double, baseline: Double) {
            let tw = c.textWidth(s, size: size, bold: true)
            if inside { c.rect(x: cx - tw / 2 - 2, y: baseline - size, w: tw + 4, h: size + 4, fill: (0, 0, 0)) }
            c.text(s, x: cx - tw / 2, y: baseline, size: size, color: colour, bold: true)
        }
        let lw = c.textWidth(e.left, size: size, bold: true), rw = c.textWidth(e.right, size: size, bold: true)
        if inside {
            put(e.left, cx: x + lw / 2 + 3, baseline: y + h / 2 + size / 2)
            put(e.right, cx: x + w - rw / 2 - 3, baseline: y + h / 2 + size / 2)
            put(e.top, cx: x + w / 2, baseline: y + size + 2)
            put(e.bottom, cx: x + w / 2, baseline: y + h - 4)
        } else {
            put(e.left, cx: x - 14, baseline: y + h / 2 + size / 2)
            put(e.right, cx: x + w + 14, baseline: y + h / 2 + size / 2)
            put(e.top, cx: x + w / 2, baseline: y - 8)
            put(e.bottom, cx: x + w / 2, baseline: y + h + size + 4)
        }
    }

    static func plainStage(_ stage: String) -> String {
        switch stage {
        case "assemble": return "assembling the time points into a 4D series (stage: assemble)"
        case "register": return "correcting head motion (stage: register)"
        case "pipeline": return "computing the results (stage: pipeline)"
        case "render": return "writing the result images (stage: render)"
        case "export": return "sending the results (stage: export)"
        default: return "processing (stage: \(stage))"
        }
    }

    static func formatTick(_ v: Double) -> String {
        abs(v) >= 100 || v == v.rounded() ? String(Int(v.rounded())) : String(format: "%.1f", v)
    }

    /// The one-image series that tells the radiologist, in plain words, that processing
    /// failed, for which series, at which stage and why.
    public static func failureNotice(seriesDescription: String, seriesUID: String, stage: String, reason: String, job: Int,
                                     when: Date = Date()) -> Picture {
        let canvas = Canvas(width: 768, height: 512)
        canvas.fill((0.08, 0.08, 0.08))
        canvas.rect(x: 0, y: 0, w: 768, h: 70, fill: (0.62, 0.05, 0.05))
        canvas.text("perfd: processing FAILED", x: 24, y: 46, size: 30, bold: true)
        var y = 115.0
        y = canvas.paragraph("Series: \(seriesDescription.isEmpty ? "(no description)" : seriesDescription)", x: 24, y: y, maxWidth: 720, size: 19)
        y = canvas.paragraph("UID: \(seriesUID)", x: 24, y: y, maxWidth: 720, size: 13, color: (0.7, 0.7, 0.7))
        y += 14
        y = canvas.paragraph("Failed while \(plainStage(stage))", x: 24, y: y, maxWidth: 720, size: 19)
        y += 6
        y = canvas.paragraph("Why: \(reason)", x: 24, y: y, maxWidth: 720, size: 19, color: (1, 0.85, 0.3))
        y += 18
        y = canvas.paragraph("No derived images or perfusion maps were made for this series. Read the source images directly; the perfd administrator can see details with `perfd show \(job)`.", x: 24, y: y, maxWidth: 720, size: 16, color: (0.85, 0.85, 0.85))
        let f = ISO8601DateFormatter()
        canvas.text("job \(job) · \(f.string(from: when))", x: 24, y: 490, size: 13, color: (0.6, 0.6, 0.6))
        return Picture(rgb: canvas.rgbBytes(), width: canvas.width, height: canvas.height)
    }
}
