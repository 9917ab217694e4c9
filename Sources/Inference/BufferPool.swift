import Foundation

/// Float buffers kept from one `run` to the next. A slice-by-slice pipeline runs the network
/// once per slice on maps of hundreds of megabytes; fresh allocations of that size come from
/// the kernel as new pages, and faulting them in (the kernel zeroes each page) measured about
/// as long as the convolutions themselves. Buffers handed back are reused by the next `take`
/// of at most their capacity. Each model owns one pool, so the memory goes with the model.
final class BufferPool: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [[Float]] = []
    /// Buffers kept at most; the smallest go first.
    private let limit = 16

    /// `count` zeros, in a kept buffer when one is large enough (the smallest such).
    func take(_ count: Int) -> [Float] {
        lock.lock()
        let i = free.indices.filter { free[$0].capacity >= count }.min { free[$0].capacity < free[$1].capacity }
        var buffer = i.map { free.remove(at: $0) }
        lock.unlock()
        guard buffer != nil else { return [Float](repeating: 0, count: count) }
        buffer!.removeAll(keepingCapacity: true)
        buffer!.append(contentsOf: repeatElement(0, count: count))
        return buffer!
    }

    /// Keeps `buffer` for a later `take`.
    func give(_ buffer: consuming [Float]) {
        lock.lock()
        defer { lock.unlock() }
        free.append(buffer)
        if free.count > limit {
            free.remove(at: free.indices.min { free[$0].capacity < free[$1].capacity }!)
        }
    }
}
