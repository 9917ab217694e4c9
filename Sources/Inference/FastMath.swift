/// Vectorised exp, sigmoid and tanh for the gate loop. exp uses the usual range reduction
/// x = n·ln2 + r, |r| ≤ ln2/2, a degree-6 polynomial for e^r and 2^n built in the exponent
/// bits; relative error about 2e-7 over the clamped range [-87, 88], which sits well inside the
/// engine's parity tolerance (1e-4 of the output range).
typealias V8 = SIMD8<Float>

@inline(__always)
func fastExp(_ x: V8) -> V8 {
    let xc = pointwiseMin(pointwiseMax(x, V8(repeating: -87)), V8(repeating: 88))
    // Round x·log2(e) to an integer n with the 1.5·2^23 trick: the sum's low mantissa bits
    // hold n, so no float→int conversion is needed (those do not vectorise here).
    let magic: Float = 12_582_912
    let t = xc * 1.442_695_04 + magic
    let n = t - magic
    var r = xc - n * 0.693_145_75    // ln2 high part
    r = r - n * 1.428_606_8e-6        // ln2 low part
    // e^r ≈ 1 + r + r²/2 + … + r⁶/720 (Horner)
    var p = V8(repeating: 1.0 / 720)
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    let bits = (unsafeBitCast(t, to: SIMD8<UInt32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return p * unsafeBitCast(bits, to: V8.self)
}

@inline(__always) func fastSigmoid(_ x: V8) -> V8 { 1 / (1 + fastExp(-x)) }
@inline(__always) func fastTanh(_ x: V8) -> V8 { 2 / (1 + fastExp(-2 * x)) - 1 }

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> V8 { UnsafeRawPointer(p).loadUnaligned(as: V8.self) }
@inline(__always) func load8(_ p: UnsafeMutablePointer<Float>) -> V8 { UnsafeRawPointer(p).loadUnaligned(as: V8.self) }
@inline(__always) func store8(_ v: V8, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V8.self) }
