import Foundation

/// Float buffers kept from one `run` to the next. A slice-by-slice pipeline runs the network
/// once per slice on maps of hundreds of megabytes; fresh allocations of that size come from
/// the kernel as new pages, and faulting them in (the kernel zeroes each page) measured about
/// as long as the convolutions themselves. A buffer handed back is reused by a later `take`
/// of between half its capacity and all of it (so a small request does not hold on to a big
/// buffer). Each model owns one pool, so the memory goes with the model.
/// @unchecked Sendable: the list of buffers is only touched under `lock`; a buffer handed
/// out belongs to its taker alone until it is given back.
final class BufferPool: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [[Float]] = []
    /// Buffers kept at most; the smallest go first. Buffers under `small` floats are left to malloc.
    private let limit = 16, small = 1 << 16

    /// `count` zeros, in a kept buffer when one fits (the smallest such). On a miss the kept
    /// buffers smaller than `count` are let go (they fit neither this nor, most likely, what
    /// follows), and the new buffer gets a quarter more room for a slightly larger next run.
    func take(_ count: Int) -> [Float] {
        guard count >= small else { return [Float](repeating: 0, count: count) }
        lock.lock()
        var buffer: [Float] = []
        if let i = free.indices.filter({ free[$0].capacity >= count && free[$0].capacity <= 2 * count })
            .min(by: { free[$0].capacity < free[$1].capacity }) {
            buffer = free.remove(at: i)
        } else {
            free.removeAll { $0.capacity < count }
        }
        lock.unlock()
        if buffer.capacity < count { buffer.reserveCapacity(count + count / 4) } else { buffer.removeAll(keepingCapacity: true) }
        buffer.append(contentsOf: repeatElement(0, count: count))
        return buffer
    }

    /// Keeps `buffer` for a later `take`.
    func give(_ buffer: consuming [Float]) {
        guard buffer.capacity >= small else { return }
        lock.lock()
        defer { lock.unlock() }
        free.append(buffer)
        if free.count > limit {
            free.remove(at: free.indices.min { free[$0].capacity < free[$1].capacity }!)
        }
    }
}
