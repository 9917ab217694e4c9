internal import COpenBLAS
import Foundation

/// OpenBLAS sgemm throughput on this machine, measured on the shape of one ConvLSTM step.
public enum SgemmBenchmark {
    /// Best GFLOP/s of `repeats` runs of C[m×n] = A[m×k]·B[k×n].
    public static func gflops(m: Int, n: Int, k: Int, threads: Int, repeats: Int = 5) -> Double {
        openblas_set_num_threads(Int32(threads))
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        var best = Double.infinity
        for _ in 0..<repeats {
            let t = Date()
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
            best = min(best, Date().timeIntervalSince(t))
        }
        return 2 * Double(m) * Double(n) * Double(k) / best / 1e9
    }
}
