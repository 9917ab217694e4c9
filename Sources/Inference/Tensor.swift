/// The element count of a shape read from a file, or nil when a size is negative or the
/// product overflows or passes `limit` (2³¹ values, 8 GiB of float32: far beyond any model
/// or series perfd runs). Files are untrusted: the engine is built without bounds checks.
public func checkedElementCount(_ shape: [Int], limit: Int = 1 << 31) -> Int? {
    var n = 1
    for s in shape {
        guard s >= 0 else { return nil }
        let (m, overflow) = n.multipliedReportingOverflow(by: s)
        guard !overflow, m <= limit else { return nil }
        n = m
    }
    return n
}

/// A dense float32 array with a shape, row-major (last index fastest).
public struct Tensor: Sendable, Equatable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "shape \(shape) does not match \(data.count) values")
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: [Int]) { self.init(shape: shape, data: [Float](repeating: 0, count: shape.reduce(1, *))) }

    public var count: Int { data.count }
}
