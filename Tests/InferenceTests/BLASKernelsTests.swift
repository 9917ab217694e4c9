import Inference
import Testing

@Suite struct BLASKernelsTests {
    let avx512: Set<String> = ["sse4_2", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512cd"]

    @Test func avx512CPUsGetTheSkylakeXKernels() {
        #expect(BLASKernels.preferredCoreType(environment: [:], cpuFlags: avx512) == "SKYLAKEX")
    }

    @Test func avx2OnlyCPUsKeepOpenBLASsOwnChoice() {
        #expect(BLASKernels.preferredCoreType(environment: [:], cpuFlags: ["avx2", "fma", "avx512f"]) == nil)
    }

    @Test func anExplicitSettingIsRespected() {
        #expect(BLASKernels.preferredCoreType(environment: ["OPENBLAS_CORETYPE": "Haswell"], cpuFlags: avx512) == nil)
    }

    @Test func cpuFlagsAreRead() {
        // Every x86-64 Linux CPU lists at least sse2 in /proc/cpuinfo.
        #expect(BLASKernels.cpuFlags().contains("sse2"))
    }
}
