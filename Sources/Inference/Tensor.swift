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
