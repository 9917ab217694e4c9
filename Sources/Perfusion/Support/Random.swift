/// A small seeded generator (SplitMix64) so phantoms are reproducible from their seed.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    private var spare: Double?
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the low 53 bits of one draw times 2⁻⁵³, which is what
    /// `Double.random(in: 0..<1, using:)` computes (same values, without its generic range
    /// arithmetic on the phantom's hot path: two draws per noise pixel pair).
    @inline(__always) mutating func unit() -> Double {
        Double(next() & 0x1F_FFFF_FFFF_FFFF) * 0x1p-53
    }

    /// Standard normal sample (Box–Muller, caching the second value).
    public mutating func gaussian() -> Double {
        if let s = spare { spare = nil; return s }
        var u1 = 0.0
        repeat { u1 = unit() } while u1 <= 1e-300
        let u2 = unit()
        let r = (-2 * _log(u1)).squareRoot()
        spare = r * _sin(2 * .pi * u2)
        return r * _cos(2 * .pi * u2)
    }
}

import Foundation
@inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) private func _sin(_ x: Double) -> Double { Foundation.sin(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
