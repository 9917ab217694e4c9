/// A 3D scalar volume in patient space: voxels z-major (slice, row, column).
public struct Volume3D: Sendable {
    public var depth: Int, height: Int, width: Int
    public var voxels: [Float]
    public var geometry: Geometry

    public init(depth: Int, height: Int, width: Int, voxels: [Float], geometry: Geometry) {
        precondition(voxels.count == depth * height * width, "voxel count does not match shape")
        self.depth = depth; self.height = height; self.width = width
        self.voxels = voxels; self.geometry = geometry
    }

    public var count: Int { depth * height * width }
    public subscript(z: Int, y: Int, x: Int) -> Float {
        get { voxels[(z * height + y) * width + x] }
        set { voxels[(z * height + y) * width + x] = newValue }
    }
}

/// Where voxels sit in the DICOM patient frame (LPS, millimetres).
public struct Geometry: Sendable, Equatable {
    /// Position of voxel (0,0,0): ImagePositionPatient of the first slice.
    public var origin: SIMD3<Double>
    /// Direction cosines of a row (increasing column index) and of a column (increasing row index).
    public var rowDirection: SIMD3<Double>
    public var columnDirection: SIMD3<Double>
    /// Unit vector from slice k to slice k+1.
    public var sliceDirection: SIMD3<Double>
    /// Spacing in mm: (between slices, between rows, between columns); read it by name below.
    public var spacing: SIMD3<Double>
    /// Millimetres from one slice to the next, along `sliceDirection` (`spacing.x`).
    @inlinable public var sliceSpacing: Double { get { spacing.x } set { spacing.x = newValue } }
    /// Millimetres from one row to the next, along `columnDirection` (`spacing.y`; DICOM's
    /// PixelSpacing first value).
    @inlinable public var rowSpacing: Double { get { spacing.y } set { spacing.y = newValue } }
    /// Millimetres from one column to the next, along `rowDirection` (`spacing.z`; DICOM's
    /// PixelSpacing second value).
    @inlinable public var columnSpacing: Double { get { spacing.z } set { spacing.z = newValue } }

    public init(origin: SIMD3<Double>, rowDirection: SIMD3<Double>, columnDirection: SIMD3<Double>,
                sliceDirection: SIMD3<Double>, spacing: SIMD3<Double>) {
        self.origin = origin; self.rowDirection = rowDirection; self.columnDirection = columnDirection
        self.sliceDirection = sliceDirection; self.spacing = spacing
    }

    /// Patient-space position (mm) of voxel index (z, y, x).
    public func position(z: Double, y: Double, x: Double) -> SIMD3<Double> {
        origin + rowDirection * (x * columnSpacing) + columnDirection * (y * rowSpacing) + sliceDirection * (z * sliceSpacing)
    }
}

/// A CTP series: T time points of the same D×H×W slab, in HU.
public struct Series4D: Sendable {
    public var timepoints: Int, depth: Int, height: Int, width: Int
    /// Voxels t-major: [t][z][y][x].
    public var voxels: [Float]
    public var geometry: Geometry
    /// Seconds from the first time point.
    public var frameTimes: [Double]
    /// How time points were told apart (for the report and the log).
    public var temporalSource: String
    /// Source files per time point and slice, [t][z].
    public var files: [[String]]
    /// nil when every source instance was stored losslessly; else the lossy compression
    /// methods they went through (empty when unknown): the outputs must say so.
    public var lossyCompressionMethods: [String]? = nil
    /// Per voxel of a frame: whether its source stayed inside the scanned slab at every time
    /// point (set by registration; nil: all voxels valid). A voxel that motion took out of the
    /// slab has no curve of its own there, only fill or an edge slice's values.
    public var validity: [Bool]?

    public init(timepoints: Int, depth: Int, height: Int, width: Int, voxels: [Float], geometry: Geometry,
                frameTimes: [Double], temporalSource: String, files: [[String]]) {
        precondition(voxels.count == timepoints * depth * height * width, "voxel count does not match shape")
        self.timepoints = timepoints; self.depth = depth; self.height = height; self.width = width
        self.voxels = voxels; self.geometry = geometry; self.frameTimes = frameTimes
        self.temporalSource = temporalSource; self.files = files
    }

    public var frameSize: Int { depth * height * width }

    public func frame(_ t: Int) -> Volume3D {
        let n = frameSize
        return Volume3D(depth: depth, height: height, width: width, voxels: Array(voxels[(t * n)..<((t + 1) * n)]), geometry: geometry)
    }
}

extension SIMD3 where Scalar == Double {
    func dot(_ o: SIMD3<Double>) -> Double { (self * o).sum() }
    func cross(_ o: SIMD3<Double>) -> SIMD3<Double> {
        SIMD3(y * o.z - z * o.y, z * o.x - x * o.z, x * o.y - y * o.x)
    }
    var length: Double { dot(self).squareRoot() }
}

extension Series4D {
    /// The series averaged in-plane over f×f blocks; a last row or column of blocks that the
    /// image only partly covers averages the pixels it has. Each whole block's centre is its
    /// voxel's position (the grid keeps a uniform spacing of f pixels).
    public func blockAveraged(_ f: Int) -> Series4D {
        precondition(f >= 1, "block size must be at least 1")
        let h = (height + f - 1) / f, w = (width + f - 1) / f, plane = height * width, small = h * w
        var out = [Float](repeating: 0, count: timepoints * depth * small)
        voxels.withUnsafeBufferPointer { v in
            for k in 0..<(timepoints * depth) {
                let src = k * plane, dst = k * small
                for y in 0..<height {
                    let row = src + y * width, to = dst + (y / f) * w
                    for x in 0..<width { out[to + x / f] += v[row + x] }
                }
                // Divide by the number of pixels that fell in each block (edges hold fewer).
                for by in 0..<h {
                    let ny = min(height, (by + 1) * f) - by * f
                    for bx in 0..<w { out[dst + by * w + bx] /= Float(ny * (min(width, (bx + 1) * f) - bx * f)) }
                }
            }
        }
        var g = geometry
        let shift = Double(f - 1) / 2
        g.origin += shift * (geometry.columnSpacing * geometry.rowDirection + geometry.rowSpacing * geometry.columnDirection)
        g.spacing = SIMD3(geometry.sliceSpacing, geometry.rowSpacing * Double(f), geometry.columnSpacing * Double(f))
        var small4D = Series4D(timepoints: timepoints, depth: depth, height: h, width: w, voxels: out, geometry: g,
                               frameTimes: frameTimes, temporalSource: temporalSource, files: files)
        // A block is valid when every voxel in it is.
        if let valid = validity {
            var v = [Bool](repeating: true, count: depth * small)
            for z in 0..<depth { for y in 0..<height { for x in 0..<width where !valid[z * plane + y * width + x] {
                v[z * small + (y / f) * w + x / f] = false
            } } }
            small4D.validity = v
        }
        return small4D
    }

    /// The source voxel at the centre of block (z, by, bx) of `blockAveraged(f)` (an edge
    /// block's centre is kept inside the image).
    public func blockCentre(z: Int, y by: Int, x bx: Int, factor f: Int) -> SIMD3<Int> {
        SIMD3(z, min(height - 1, by * f + f / 2), min(width - 1, bx * f + f / 2))
    }
}

extension Volume3D {
    /// A map made on `Series4D.blockAveraged(f)` of `series`, back on the series' grid: every
    /// voxel takes its block's value.
    public func blockExpanded(_ f: Int, to series: Series4D) -> Volume3D {
        let H = series.height, W = series.width
        var out = [Float](repeating: 0, count: series.frameSize)
        for z in 0..<depth { for y in 0..<H {
            let src = (z * height + y / f) * width, dst = (z * H + y) * W
            for x in 0..<W { out[dst + x] = voxels[src + x / f] }
        } }
        return Volume3D(depth: depth, height: H, width: W, voxels: out, geometry: series.geometry)
    }
}
