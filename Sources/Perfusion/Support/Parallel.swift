import Foundation

/// Results of independent work items computed side by side on the cores.
// @unchecked Sendable: every slot is written once, under `lock`, and read only after
// `concurrentPerform` has returned.
final class Slots<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T?]
    init(count: Int) { items = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ value: T) {
        lock.lock(); defer { lock.unlock() }
        items[i] = value
    }
    var values: [T] { items.map { $0! } }
}

/// `(0..<count).map(body)` with the items run concurrently (the order of the result is kept).
package func parallelMap<T>(_ count: Int, _ body: @Sendable (Int) -> T) -> [T] {
    let slots = Slots<T>(count: count)
    DispatchQueue.concurrentPerform(iterations: count) { slots.set($0, body($0)) }
    return slots.values
}

/// The module's error: what went wrong, naming the thing and the fix.
public struct PerfusionError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
