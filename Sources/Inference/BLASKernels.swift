import Foundation

/// Which OpenBLAS kernels this CPU should run.
///
/// Debian's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks its kernels from the CPU model at load
/// time, and on CPUs newer than it knows — this machine's AMD EPYC with AVX-512 among them —
/// it falls back to the Haswell (AVX2) kernels. Its SkylakeX kernels run there and are much
/// faster: `perfd model sgemm` on the ConvLSTM step shape measured 83 GFLOP/s with Haswell
/// and 134–140 GFLOP/s with SkylakeX, side by side on the same 2 cores. The choice can only be
/// made through OPENBLAS_CORETYPE before the library loads, so perfd's entry point re-executes
/// itself once with it set (see `perfd`'s main).
public enum BLASKernels {
    /// The environment variable OpenBLAS reads, and the value perfd wants for this CPU, or nil
    /// when the default choice is right (no AVX-512, or the variable is already set).
    public static func preferredCoreType(environment: [String: String] = ProcessInfo.processInfo.environment,
                                         cpuFlags: Set<String>? = nil) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil else { return nil }
        let flags = cpuFlags ?? Self.cpuFlags()
        // What OpenBLAS's SkylakeX kernels use.
        let needed: Set<String> = ["avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512cd"]
        return needed.isSubset(of: flags) ? "SKYLAKEX" : nil
    }

    /// The CPU feature flags of the first processor in /proc/cpuinfo (empty elsewhere).
    public static func cpuFlags() -> Set<String> {
        // /proc files report a size of 0, so read to the end rather than by size.
        guard let handle = FileHandle(forReadingAtPath: "/proc/cpuinfo") else { return [] }
        defer { try? handle.close() }
        let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":") else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }
}
