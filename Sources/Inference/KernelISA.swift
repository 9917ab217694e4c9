internal import CInferenceKernels

/// The instruction set the engine's SIMD kernels (CInferenceKernels) run with: the widest
/// the CPU has, chosen at the first call.
public enum KernelISA {
    /// 2 = AVX-512F, 1 = AVX2+FMA, 0 = baseline x86-64 (SSE2).
    public static var level: Int { Int(cik_level()) }

    public static var name: String { ["SSE2", "AVX2+FMA", "AVX-512"][level] }

    /// Caps the level (tests run every kernel at every level the CPU has); nil restores the
    /// CPU's. Returns the level now in effect.
    @discardableResult public static func cap(_ level: Int?) -> Int { Int(cik_set_max_level(Int32(level ?? -1))) }
}
