internal import CCairo
import Foundation
import Pipelines

/// A Cairo image surface to draw legends, text, curves and notices on; read back as RGB.
public final class Canvas {
    private let surface: OpaquePointer
    private let cr: OpaquePointer
    public let width: Int, height: Int

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
        surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, Int32(width), Int32(height))
        cr = cairo_create(surface)
        cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL)
    }

    deinit {
        cairo_destroy(cr)
        cairo_surface_destroy(surface)
    }

    public typealias RGB = (r: Double, g: Double, b: Double)

    public func fill(_ c: RGB) {
        cairo_set_source_rgb(cr, c.r, c.g, c.b)
        cairo_paint(cr)
    }

    public func rect(x: Double, y: Double, w: Double, h: Double, fill c: RGB) {
        cairo_set_source_rgb(cr, c.r, c.g, c.b)
        cairo_rectangle(cr, x, y, w, h)
        cairo_fill(cr)
    }

    public func strokeRect(x: Double, y: Double, w: Double, h: Double, color c: RGB, width lw: Double = 1) {
        cairo_set_source_rgb(cr, c.r, c.g, c.b)
        cairo_set_line_width(cr, lw)
        cairo_rectangle(cr, x, y, w, h)
        cairo_stroke(cr)
    }

    public func polyline(_ points: [(Double, Double)], color c: RGB, width lw: Double = 1.5) {
        guard let first = points.first else { return }
        cairo_set_source_rgb(cr, c.r, c.g, c.b)
        cairo_set_line_width(cr, lw)
        cairo_move_to(cr, first.0, first.1)
        for p in points.dropFirst() { cairo_line_to(cr, p.0, p.1) }
        cairo_stroke(cr)
    }

    /// A circle outline of radius `r` centred on (x, y).
    public func circle(x: Double, y: Double, r: Double, color c: RGB, width lw: Double = 2) {
        cairo_set_source_rgb(cr, c.r, c.g, c.b)
        cairo_set_line_width(cr, lw)
        cairo_new_sub_path(cr)
        cairo_arc(cr, x, y, r, 0, 2 * Double.pi)
        cairo_stroke(cr)
    }

    /// Writes the picture as a PNG file (a review copy; the DICOM is the product).
    public func writePNG(to path: String) throws {
        cairo_surface_flush(surface)
        guard cairo_surface_write_to_png(surface, path) == CAIRO_STATUS_SUCCESS else {
            throw PipelineError(message: "could not write the PNG copy \(path); check that its folder exists and is writable")
        }
    }

    /// Text with its baseline-left at (x, y); returns the advance width.
    @discardableResult
    public func text(_ s: String, x: Double, y: Double, size: Double, color c: RGB = (1, 1, 1), bold: Bool = false) -> Double {
        cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL)
        cairo_set_font_size(cr, size)
        cairo_set_source_rgb(cr, c.r, c.g, c.b)
        cairo_move_to(cr, x, y)
        cairo_show_text(cr, s)
        var ext = cairo_text_extents_t()
        cairo_text_extents(cr, s, &ext)
        return ext.x_advance
    }

    public func textWidth(_ s: String, size: Double, bold: Bool = false) -> Double {
        cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL)
        cairo_set_font_size(cr, size)
        var ext = cairo_text_extents_t()
        cairo_text_extents(cr, s, &ext)
        return ext.x_advance
    }

    /// Text centred on x, baseline at y; returns the advance width.
    @discardableResult
    public func centredText(_ s: String, x: Double, y: Double, size: Double, color c: RGB = (1, 1, 1), bold: Bool = false) -> Double {
        text(s, x: x - textWidth(s, size: size, bold: bold) / 2, y: y, size: size, color: c, bold: bold)
    }

    /// The lines `s` word-wraps into at `maxWidth`.
    public func wrap(_ s: String, maxWidth: Double, size: Double, bold: Bool = false) -> [String] {
        var lines: [String] = [], line = ""
        for word in s.split(separator: " ") {
            let candidate = line.isEmpty ? String(word) : line + " " + word
            if textWidth(candidate, size: size, bold: bold) > maxWidth && !line.isEmpty {
                lines.append(line)
                line = String(word)
            } else {
                line = candidate
            }
        }
        if !line.isEmpty { lines.append(line) }
        return lines
    }

    /// Word-wraps `s` into lines no wider than `maxWidth`, draws them, returns the next y.
    @discardableResult
    public func paragraph(_ s: String, x: Double, y: Double, maxWidth: Double, size: Double, color c: RGB = (1, 1, 1)) -> Double {
        var line = "", yy = y
        for word in s.split(separator: " ") {
            let candidate = line.isEmpty ? String(word) : line + " " + word
            if textWidth(candidate, size: size) > maxWidth && !line.isEmpty {
                text(line, x: x, y: yy, size: size, color: c)
                yy += size * 1.35
                line = String(word)
            } else {
                line = candidate
            }
        }
        if !line.isEmpty { text(line, x: x, y: yy, size: size, color: c); yy += size * 1.35 }
        return yy
    }

    /// Draws an RGB image (row-major, 3 bytes per pixel) at (x, y), scaled by `scale`.
    public func image(rgb: [UInt8], width w: Int, height h: Int, x: Double, y: Double, scale: Double = 1) {
        let stride = Int(cairo_format_stride_for_width(CAIRO_FORMAT_RGB24, Int32(w)))
        var buf = [UInt8](repeating: 0, count: stride * h)
        for r in 0..<h {
            for c in 0..<w {
                let s = (r * w + c) * 3, d = r * stride + c * 4
                // CAIRO_FORMAT_RGB24 is native-endian 32-bit xRGB: B, G, R, x in memory on little endian.
                buf[d] = rgb[s + 2]; buf[d + 1] = rgb[s + 1]; buf[d + 2] = rgb[s]
            }
        }
        buf.withUnsafeMutableBufferPointer { p in
            let img = cairo_image_surface_create_for_data(p.baseAddress, CAIRO_FORMAT_RGB24, Int32(w), Int32(h), Int32(stride))
            cairo_save(cr)
            cairo_translate(cr, x, y)
            cairo_scale(cr, scale, scale)
            cairo_set_source_surface(cr, img, 0, 0)
            cairo_pattern_set_filter(cairo_get_source(cr), scale >= 1 ? CAIRO_FILTER_NEAREST : CAIRO_FILTER_GOOD)
            cairo_paint(cr)
            cairo_restore(cr)
            cairo_surface_destroy(img)
        }
    }

    /// The picture as packed RGB bytes, row-major.
    public func rgbBytes() -> [UInt8] {
        cairo_surface_flush(surface)
        let stride = Int(cairo_image_surface_get_stride(surface))
        let data = cairo_image_surface_get_data(surface)!
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for r in 0..<height {
            for c in 0..<width {
                let s = r * stride + c * 4, d = (r * width + c) * 3
                out[d] = data[s + 2]; out[d + 1] = data[s + 1]; out[d + 2] = data[s]
            }
        }
        return out
    }
}
