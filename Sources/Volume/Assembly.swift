import DICOM
import Foundation
import Synchronization

/// Why a set of instances does not make a 4D series; the message names what is wrong.
public struct AssemblyError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
    public init(_ m: String) { message = m }
}

/// The attributes 4D assembly needs from one instance.
public struct SliceHeader: Sendable {
    public var path: String
    public var rows: Int, columns: Int
    public var position: SIMD3<Double>
    public var rowDirection: SIMD3<Double>, columnDirection: SIMD3<Double>
    public var pixelSpacing: (row: Double, column: Double)
    public var temporalPosition: Int?
    public var acquisitionNumber: Int?
    public var time: Double?   // seconds since midnight, from AcquisitionTime or ContentTime
    public var slope: Double, intercept: Double
    public var frames: Int

    public init(path: String, rows: Int, columns: Int, position: SIMD3<Double>,
                rowDirection: SIMD3<Double> = SIMD3(1, 0, 0), columnDirection: SIMD3<Double> = SIMD3(0, 1, 0),
                pixelSpacing: (row: Double, column: Double) = (1, 1), temporalPosition: Int? = nil,
                acquisitionNumber: Int? = nil, time: Double? = nil, slope: Double = 1, intercept: Double = 0) {
        self.path = path; self.rows = rows; self.columns = columns; self.position = position
        self.rowDirection = rowDirection; self.columnDirection = columnDirection; self.pixelSpacing = pixelSpacing
        self.temporalPosition = temporalPosition; self.acquisitionNumber = acquisitionNumber; self.time = time
        self.slope = slope; self.intercept = intercept; self.frames = 1
    }

    /// Reads the header of one file (DCMTK parses it, up to the pixel data).
    public init(file f: DicomFile) throws {
        try self.init(path: f.path, header: InstanceHeader(file: f))
    }

    /// From an instance's header fields, as the SCP or a file read gives them.
    public init(path: String, header h: InstanceHeader) throws {
        try self.init(path: path, image: h.image, position: h.imagePosition, temporalPosition: h.temporalPosition,
                      acquisitionNumber: h.acquisitionNumber, acquisitionTime: h.acquisitionTime, contentTime: h.contentTime)
    }

    /// From the attributes assembly needs, checked: the one place they are validated,
    /// whether they come from a file or from the instance's row in the store.
    public init(path: String, image m: ImageAttributes, position p: [Double]?, temporalPosition: Int?, acquisitionNumber: Int?,
                acquisitionTime: String?, contentTime: String?) throws {
        self.path = path
        guard let r = m.rows, let c = m.columns else { throw AssemblyError("\(path): Rows/Columns missing") }
        guard (1...DicomFile.maxImageSide).contains(r), (1...DicomFile.maxImageSide).contains(c) else {
            throw AssemblyError("\(path): declares a \(c)×\(r) image; perfd reads images of at most \(DicomFile.maxImageSide)×\(DicomFile.maxImageSide)")
        }
        rows = r; columns = c
        frames = m.frames ?? 1
        guard frames == 1 else {
            throw AssemblyError("\(path) is a multi-frame (Enhanced CT) object; 4D assembly reads single-frame CT Image Storage only — set the scanner to send classic CT images")
        }
        guard let p, p.count == 3 else {
            throw AssemblyError("\(path): ImagePositionPatient missing or not three numbers")
        }
        guard let o = m.orientation.flatMap(DicomFile.decimals), o.count == 6 else {
            throw AssemblyError("\(path): ImageOrientationPatient missing or not six numbers (\(m.orientation ?? "absent"))")
        }
        guard let s = m.pixelSpacing.flatMap(DicomFile.decimals), s.count == 2, s.allSatisfy({ $0 >= 0.001 && $0 <= 1000 }) else {
            throw AssemblyError("\(path): PixelSpacing missing or not two sizes of 0.001–1000 mm (\(m.pixelSpacing ?? "absent"))")
        }
        position = SIMD3(p[0], p[1], p[2])
        rowDirection = SIMD3(o[0], o[1], o[2])
        columnDirection = SIMD3(o[3], o[4], o[5])
        // Direction cosines: two unit vectors at right angles (loosely: scanners round them).
        let rl = (rowDirection * rowDirection).sum().squareRoot(), cl = (columnDirection * columnDirection).sum().squareRoot()
        guard abs(rl - 1) < 0.01, abs(cl - 1) < 0.01, abs((rowDirection * columnDirection).sum()) < 0.01 else {
            throw AssemblyError("\(path): ImageOrientationPatient (\(m.orientation ?? "")) is not two perpendicular unit vectors")
        }
        pixelSpacing = (s[0], s[1])
        self.temporalPosition = temporalPosition
        self.acquisitionNumber = acquisitionNumber
        time = (acquisitionTime ?? contentTime).flatMap(parseDicomTime)
        for (tag, text) in [("RescaleSlope", m.rescaleSlope), ("RescaleIntercept", m.rescaleIntercept)]
        where text != nil && text.flatMap(DicomFile.decimals)?.first == nil {
            throw AssemblyError("\(path): \(tag) is not a number (\(text ?? ""))")
        }
        slope = m.rescaleSlope.flatMap(DicomFile.decimals)?.first ?? 1
        intercept = m.rescaleIntercept.flatMap(DicomFile.decimals)?.first ?? 0
        // CT stores HU as value·slope + intercept with slope 1 (or a fraction) and intercept
        // about −1024: anything far outside is a broken header, not a scanner.
        guard slope != 0, abs(slope) <= 1000, abs(intercept) <= 100_000 else {
            throw AssemblyError("\(path): RescaleSlope \(slope) / RescaleIntercept \(intercept) do not map stored values to HU (slope 0 < |s| ≤ 1000, |intercept| ≤ 100000 expected)")
        }
    }
}

/// DICOM TM ("HHMMSS.FFFFFF", or with colons) to seconds since midnight.
public func parseDicomTime(_ s: String) -> Double? {
    let t = s.replacingOccurrences(of: ":", with: "").trimmingCharacters(in: .whitespaces)
    guard t.count >= 2 else { return nil }
    let parts = t.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
    guard let first = parts.first, !first.isEmpty else { return nil }   // "..", ".5"
    let hms = Array(first)
    guard hms.allSatisfy(\.isNumber) else { return nil }
    func num(_ a: Int, _ b: Int) -> Double { b <= hms.count ? Double(String(hms[a..<b])) ?? 0 : 0 }
    var secs = num(0, 2) * 3600 + num(2, 4) * 60 + num(4, 6)
    if parts.count == 2, let frac = Double("0." + parts[1]) { secs += frac }
    return secs
}

public enum Assembler {
    /// Longest acquisition accepted (s): CTP runs 40–90 s, delayed protocols a few minutes.
    public static let maxSpanSeconds = 600.0
    /// The most voxels a 4D series may have: its floats may take a quarter of the machine's
    /// memory (the pipelines hold a few more volumes of its size: the registered series,
    /// the maps) and never more than 8 GiB. A 512×512 CTP of 320 slices × 19 time points
    /// (1.6 G voxels, 6.4 GB) needs 26 GB of memory; the usual 16-64 slices, far less.
    public static let maxSeriesVoxels: Int = {
        let quarter = Int(ProcessInfo.processInfo.physicalMemory / 4 / 4)
        return min(quarter > 0 ? quarter : 1 << 28, 1 << 31)
    }()

    /// Builds the 4D series from the files of one series. Throws `AssemblyError` naming
    /// what is wrong when the files do not make one, or when it would take more than
    /// `maxVoxels` voxels (checked before any pixel is decoded).
    public static func assemble(paths: [String], maxVoxels: Int = maxSeriesVoxels) throws -> Series4D {
        guard !paths.isEmpty else { throw AssemblyError("the series has no instances") }
        var headers: [SliceHeader] = []
        var files: [String: DicomFile] = [:]
        for p in paths {
            let f = try DicomFile(path: p)
            headers.append(try SliceHeader(file: f))
            files[p] = f
        }
        let layout = try plan(headers)
        let (T, D) = (layout.grid.count, layout.grid[0].count)
        let H = headers[0].rows, W = headers[0].columns
        let (need, overflow) = (T * D).multipliedReportingOverflow(by: H * W)
        guard !overflow, need <= maxVoxels else {
            throw AssemblyError("the series is \(T) time points × \(D) slices × \(W)×\(H) = \(T * D * H * W) voxels, more than the \(maxVoxels) this machine's memory allows (a quarter of it as floats); send fewer slices or time points")
        }
        var voxels = [Float](repeating: 0, count: T * D * H * W)
        for t in 0..<T {
            for z in 0..<D {
                let h = layout.grid[t][z]
                let stored = try files[h.path]!.storedPixels()
                guard stored.count >= H * W else { throw AssemblyError("\(h.path): pixel data holds \(stored.count) values, expected \(H * W)") }
                let base = ((t * D) + z) * H * W
                let slope = Float(h.slope), icpt = Float(h.intercept)
                voxels.withUnsafeMutableBufferPointer { v in
                    for i in 0..<(H * W) { v[base + i] = stored[i] * slope + icpt }
                }
            }
        }
        var series = Series4D(timepoints: T, depth: D, height: H, width: W, voxels: voxels, geometry: layout.geometry,
                              frameTimes: layout.frameTimes, temporalSource: layout.temporalSource,
                              files: layout.grid.map { $0.map(\.path) })
        series.lossyCompressionMethods = files.values.reduce(nil) { LossyCompression.merge($0, LossyCompression.methods(of: $1)) }
        return series
    }

    public struct Layout: Sendable {
        public var grid: [[SliceHeader]]   // [t][z]
        public var geometry: Geometry
        public var frameTimes: [Double]
        public var temporalSource: String
    }

    /// Orders headers into time points × slices without reading pixels (pure; tested alone).
    public static func plan(_ headers: [SliceHeader]) throws -> Layout {
        let first = headers[0]
        for h in headers {
            if h.rows != first.rows || h.columns != first.columns {
                throw AssemblyError("image sizes differ: \(first.path) is \(first.columns)×\(first.rows), \(h.path) is \(h.columns)×\(h.rows)")
            }
            if (h.rowDirection - first.rowDirection).length > 1e-3 || (h.columnDirection - first.columnDirection).length > 1e-3 {
                throw AssemblyError("orientations differ: \(h.path) has ImageOrientationPatient unlike \(first.path)")
            }
            if abs(h.pixelSpacing.row - first.pixelSpacing.row) > 1e-4 || abs(h.pixelSpacing.column - first.pixelSpacing.column) > 1e-4 {
                throw AssemblyError("pixel spacings differ: \(h.path) vs \(first.path)")
            }
        }
        let normal = first.rowDirection.cross(first.columnDirection)
        // Distinct slice positions along the normal (0.01 mm tolerance).
        let distances = headers.map { $0.position.dot(normal) }
        var levels: [Double] = []
        for d in distances.sorted() where levels.last.map({ abs($0 - d) > 0.01 }) ?? true { levels.append(d) }
        func sliceIndex(_ d: Double) throws -> Int {
            guard let i = levels.firstIndex(where: { abs($0 - d) <= 0.01 }) else {
                throw AssemblyError("slice position \(d) mm along the normal matches none of the series' \(levels.count) positions")
            }
            return i
        }

        // Time points: TemporalPositionIdentifier, else AcquisitionNumber, else the order
        // of acquisition/content time at each slice position.
        var groups: [Int: [SliceHeader]] = [:]
        var source: String
        if headers.allSatisfy({ $0.temporalPosition != nil }) && Set(headers.map { $0.temporalPosition! }).count > 1 {
            source = "TemporalPositionIdentifier"
            for h in headers { groups[h.temporalPosition!, default: []].append(h) }
        } else if headers.allSatisfy({ $0.acquisitionNumber != nil }) && Set(headers.map { $0.acquisitionNumber! }).count > 1 {
            source = "AcquisitionNumber"
            for h in headers { groups[h.acquisitionNumber!, default: []].append(h) }
        } else if headers.allSatisfy({ $0.time != nil }) {
            source = "acquisition time order per slice"
            var perSlice: [Int: [SliceHeader]] = [:]
            for h in headers { perSlice[try sliceIndex(h.position.dot(normal)), default: []].append(h) }
            for (_, list) in perSlice {
                for (k, h) in list.sorted(by: { $0.time! < $1.time! }).enumerated() { groups[k, default: []].append(h) }
            }
        } else {
            throw AssemblyError("cannot tell time points apart: instances carry neither TemporalPositionIdentifier, nor distinct AcquisitionNumbers, nor AcquisitionTime/ContentTime")
        }
        let keys = groups.keys.sorted()
        guard keys.count >= 2 else {
            throw AssemblyError("only one time point (\(headers.count) images at \(levels.count) slice positions): a perfusion series needs at least 2")
        }
        var grid: [[SliceHeader]] = []
        for (t, key) in keys.enumerated() {
            var slots = [SliceHeader?](repeating: nil, count: levels.count)
            for h in groups[key]! {
                let z = try sliceIndex(h.position.dot(normal))
                if let other = slots[z] {
                    throw AssemblyError("time point \(t + 1) has two images at slice position \(String(format: "%.2f", levels[z])) mm: \(other.path) and \(h.path)")
                }
                slots[z] = h
            }
            if let missing = slots.firstIndex(where: { $0 == nil }) {
                let have = slots.compactMap { $0 }.count
                throw AssemblyError("time point \(t + 1) of \(keys.count) lacks the slice at \(String(format: "%.2f", levels[missing])) mm along the slice normal (has \(have) of \(levels.count) slices)")
            }
            grid.append(slots.map { $0! })
        }
        // Slice spacing from the sorted positions; must be uniform.
        var spacingZ = 1.0
        if levels.count > 1 {
            let gaps = zip(levels.dropFirst(), levels).map { $0 - $1 }
            spacingZ = gaps.sorted()[gaps.count / 2]
            if let bad = gaps.first(where: { abs($0 - spacingZ) > max(0.05 * spacingZ, 0.01) }) {
                throw AssemblyError("slice spacing is not uniform: gaps of \(String(format: "%.3f", spacingZ)) and \(String(format: "%.3f", bad)) mm")
            }
        }
        let t0 = grid[0][0]
        let geometry = Geometry(origin: t0.position, rowDirection: t0.rowDirection, columnDirection: t0.columnDirection,
                                sliceDirection: normal, spacing: SIMD3(spacingZ, t0.pixelSpacing.row, t0.pixelSpacing.column))
        // Frame time: the earliest time stamp of each time point, relative to the first.
        var frameTimes: [Double]
        let starts = grid.map { $0.compactMap(\.time).min() }
        if starts.allSatisfy({ $0 != nil }) {
            var s = starts.map { $0! }
            // Midnight roll-over.
            for i in 1..<s.count where s[i] < s[i - 1] - 43200 { s[i] += 86400 }
            frameTimes = s.map { $0 - s[0] }
            // Time points must follow each other in time, within what a perfusion scan lasts:
            // out-of-order or repeated stamps (a header edited, a wrong clock) would otherwise
            // stretch or fold the curves and give confident nonsense.
            for i in 1..<frameTimes.count where frameTimes[i] <= frameTimes[i - 1] {
                throw AssemblyError(String(format: "time point %d starts at %.2f s, not after time point %d (%.2f s): AcquisitionTime/ContentTime do not follow the time-point order (%@)",
                                           i + 1, frameTimes[i], i, frameTimes[i - 1], source))
            }
            if let span = frameTimes.last, span > Self.maxSpanSeconds {
                throw AssemblyError(String(format: "the time points span %.0f s; a perfusion acquisition lasts at most %.0f s — check the AcquisitionTime/ContentTime of the last time points", span, Self.maxSpanSeconds))
            }
        } else if starts.contains(where: { $0 != nil }) {
            let missing = starts.firstIndex { $0 == nil }! + 1
            throw AssemblyError("time point \(missing) has no AcquisitionTime or ContentTime while others do: its timing is unknown")
        } else {
            frameTimes = (0..<grid.count).map(Double.init)
            source += " (no time stamps: 1 s per time point assumed)"
        }
        return Layout(grid: grid, geometry: geometry, frameTimes: frameTimes, temporalSource: source)
    }
}

/// How a series' slices are grouped into analysis slabs: `factor` adjacent native slices
/// are averaged into one slab, as thin-slice perfusion analysis does against noise. A series
/// whose slices are already as thick as `analysis_slab_mm` (or thicker) keeps factor 1 and
/// is analysed as it is. When the slices do not divide evenly, the slabs are centred and the
/// few slices left over at either end are not analysed (`first` is the first one used).
public struct SlabPlan: Sendable, Equatable {
    public var factor: Int
    public var first: Int
    public var count: Int
    public var nativeDepth: Int

    /// The largest whole number of slices whose total thickness stays within `slabMM`
    /// (at least 1, at most the series' slices).
    public init(nativeDepth: Int, sliceSpacingMM: Double, slabMM: Double) {
        var f = 1
        if slabMM > 0, sliceSpacingMM > 0 { f = max(1, Int((slabMM / sliceSpacingMM) * (1 + 1e-6))) }
        f = min(f, max(1, nativeDepth))
        factor = f
        count = max(1, nativeDepth / f)
        first = (nativeDepth - count * f) / 2
        self.nativeDepth = nativeDepth
    }

    /// The slab grid: slab k's position is the centre of its native slices.
    public func geometry(native g: Geometry) -> Geometry {
        var s = g
        s.origin = g.position(z: Double(first) + Double(factor - 1) / 2, y: 0, x: 0)
        s.sliceSpacing = g.sliceSpacing * Double(factor)
        return s
    }

    /// The native slice at the middle of slab k (the source image its outputs reference).
    public func middleSlice(_ k: Int) -> Int { first + k * factor + factor / 2 }
}

extension Volume3D {
    /// Native slices averaged into the slabs of `plan` (no resampling).
    public func slabAveraged(_ plan: SlabPlan) -> Volume3D {
        guard plan.factor > 1 || plan.count != depth else { return self }
        let plane = height * width
        var out = [Float](repeating: 0, count: plan.count * plane)
        let inv = 1 / Float(plan.factor)
        voxels.withUnsafeBufferPointer { v in
            out.withUnsafeMutableBufferPointer { o in
                for k in 0..<plan.count {
                    for j in 0..<plan.factor {
                        let src = (plan.first + k * plan.factor + j) * plane
                        for i in 0..<plane { o[k * plane + i] += v[src + i] }
                    }
                    for i in 0..<plane { o[k * plane + i] *= inv }
                }
            }
        }
        return Volume3D(depth: plan.count, height: height, width: width, voxels: out, geometry: plan.geometry(native: geometry))
    }
}

extension Assembler {
    /// The headers of every file, read side by side on the cores (DCMTK reads up to the
    /// pixel data and leaves it on disk). Throws the first file's error in path order.
    public static func readHeaders(paths: [String]) throws -> [SliceHeader] {
        guard !paths.isEmpty else { throw AssemblyError("the series has no instances") }
        let box = HeaderBox(count: paths.count)
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            do { box.set(i, .success(try SliceHeader(file: DicomFile(path: paths[i])))) } catch { box.set(i, .failure(error)) }
        }
        return try box.values()
    }

    /// Decodes the given slices (one time point, in slice order) to HU into `out`
    /// (`slices.count` × rows × columns floats), `threads` files at a time. Returns the
    /// lossy compression methods the files went through (nil: all lossless).
    public static func decode(_ slices: [SliceHeader], into out: UnsafeMutableBufferPointer<Float>, threads: Int) throws -> [String]? {
        let n = slices[0].rows * slices[0].columns
        precondition(out.count >= slices.count * n, "output buffer too small")
        let box = DecodeBox(count: slices.count)
        let target = SendableBuffer(out)
        let lanes = max(1, min(threads, slices.count))
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            for z in stride(from: lane, to: slices.count, by: lanes) {
                let h = slices[z]
                do {
                    let f = try DicomFile(path: h.path)
                    let stored = try f.storedPixels()
                    guard stored.count >= n else { throw AssemblyError("\(h.path): pixel data holds \(stored.count) values, expected \(n)") }
                    let slope = Float(h.slope), icpt = Float(h.intercept)
                    let base = z * n
                    stored.withUnsafeBufferPointer { s in for i in 0..<n { target.buffer[base + i] = s[i] * slope + icpt } }
                    box.set(z, .success(LossyCompression.methods(of: f)))
                } catch { box.set(z, .failure(error)) }
            }
        }
        var methods: [String]? = nil
        for r in try box.values() { methods = LossyCompression.merge(methods, r) }
        return methods
    }
}

/// A buffer written by concurrent workers at disjoint indices.
// @unchecked Sendable: each worker writes only its own slices' ranges; the owner reads after
// `concurrentPerform` has returned.
public struct SendableBuffer: @unchecked Sendable {
    public let buffer: UnsafeMutableBufferPointer<Float>
    public init(_ b: UnsafeMutableBufferPointer<Float>) { buffer = b }
}

/// One slot per worker's item, written once each and read after the workers return.
final class ResultSlots<T: Sendable>: Sendable {
    private let items: Mutex<[Result<T, Error>?]>
    init(count: Int) { items = Mutex(Array(repeating: nil, count: count)) }
    func set(_ i: Int, _ r: Result<T, Error>) { items.withLock { $0[i] = r } }
    func values() throws -> [T] { try items.withLock { try $0.map { try $0!.get() } } }
}
typealias HeaderBox = ResultSlots<SliceHeader>
typealias DecodeBox = ResultSlots<[String]?>
