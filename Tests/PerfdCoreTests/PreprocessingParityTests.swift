import Foundation
import Inference
import PerfdTestSupport
import Perfusion
@testable import Pipelines
import Testing
import Volume

/// The perfusion model's input preparation in Swift (`PerfusionInput`) against the Python
/// that training used (`perfusion_input` in models/training/data.py), for every
/// preprocessing name model.json may give, on a small synthetic series with irregular frame
/// times, air, bone, an artery and delayed, dispersed tissue curves.
@Suite struct PreprocessingParityTests {
    /// T × 2 × 9 × 11 voxels at irregular times; deterministic.
    static func series() -> Series4D {
        let times: [Double] = [0, 1.5, 3.2, 5, 6, 8.5, 10, 13, 15, 18, 22, 26, 31]
        let T = times.count, D = 2, H = 9, W = 11, n = D * H * W
        var v = [Float](repeating: 0, count: T * n)
        func gamma(_ t: Double, delay: Double, width: Double) -> Double {
            let s = max(0, t - delay) / width
            return s > 0 ? pow(s, 3) * exp(3 * (1 - s)) : 0
        }
        var state: UInt64 = 12345
        func noise() -> Float {   // uniform −1…1 from a 64-bit LCG
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Double(state >> 11) / Double(1 << 53) * 2 - 1)
        }
        for z in 0..<D { for y in 0..<H { for x in 0..<W {
            let i = (z * H + y) * W + x
            let base: Float, curve: (Double) -> Double
            switch (y, x) {
            case (0, _): base = -1000; curve = { _ in 0 }                                  // air
            case (_, 0): base = 400; curve = { _ in 0 }                                     // bone
            case (4, 5), (4, 6), (5, 5): base = 40; curve = { 420 * gamma($0, delay: 4.1, width: 5) }   // artery
            default:
                base = 20 + Float(x + y); let d = 4.5 + 0.3 * Double(x), w = 6 + 0.5 * Double(y)
                curve = { (25 + Double(z) * 5) * gamma($0, delay: d, width: w) }
            }
            for t in 0..<T { v[t * n + i] = base + Float(curve(times[t])) + 2 * noise() }
        } } }
        let g = Geometry(origin: .zero, rowDirection: SIMD3(1, 0, 0), columnDirection: SIMD3(0, 1, 0),
                         sliceDirection: SIMD3(0, 0, 1), spacing: SIMD3(5, 2, 2))
        return Series4D(timepoints: T, depth: D, height: H, width: W, voxels: v, geometry: g, frameTimes: times,
                        temporalSource: "test", files: [])
    }

    @Test(arguments: PerfusionInput.preprocessings) func swiftMatchesPython(_ mode: String) throws {
        let s = Self.series()
        let dir = TempDir()
        try NPY.write(Tensor(shape: [s.timepoints, s.depth, s.height, s.width], data: s.voxels), to: dir.path + "/series.npy")
        try JSONSerialization.data(withJSONObject: s.frameTimes).write(to: URL(fileURLWithPath: dir.path + "/times.json"))
        let script = """
        import json, sys, numpy as np
        sys.path.insert(0, '\(Paths.root)/models/training')
        import data
        d = '\(dir.path)'
        x, art, a, ta = data.perfusion_input(np.load(d + '/series.npy'), np.asarray(json.load(open(d + '/times.json'))), '\(mode)')
        np.save(d + '/tissue.npy', x)
        np.save(d + '/arterial.npy', np.zeros(0, np.float32) if art is None else art)
        json.dump({'a': a, 'ta': ta}, open(d + '/scalars.json', 'w'))
        """
        let r = try runTool(Paths.root + "/.venv/bin/python", ["-c", script])
        try #require(r.status == 0, "data.perfusion_input failed: \(r.output)")
        let p = try PerfusionInput(s, preprocessing: mode)
        let tissue = try NPY.read(dir.path + "/tissue.npy"), arterial = try NPY.read(dir.path + "/arterial.npy")
        let scalars = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.path + "/scalars.json"))) as! [String: Double]

        #expect(abs(p.aifPeak - scalars["a"]!) <= 1e-4 * scalars["a"]!, "arterial peak \(p.aifPeak) vs \(scalars["a"]!)")
        #expect(abs(p.arrival - scalars["ta"]!) <= 1e-6, "arrival \(p.arrival) vs \(scalars["ta"]!)")
        #expect(tissue.shape == [PerfusionInput.frames, s.depth, s.height, s.width])
        let scale = tissue.data.map { abs($0) }.max()!
        let err = zip(p.input, tissue.data).map { abs($0 - $1) }.max()!
        #expect(scale > 0.5 && err <= 1e-5 * scale, "tissue channel: max |swift − python| \(err), max |python| \(scale)")
        if mode == "aif-aligned-delta-hu" {
            #expect(p.arterial == nil && p.channels == 1 && arterial.data.isEmpty)
        } else {
            let a = try #require(p.arterial)
            #expect(p.channels == 2 && a.count == PerfusionInput.frames && arterial.data.count == a.count)
            let e = zip(a, arterial.data).map { abs($0 - $1) }.max()!
            #expect(e <= 1e-5 * arterial.data.map { abs($0) }.max()!, "arterial channel: max |swift − python| \(e)")
            // Area normalisation: 2 s · Σ arterial channel = 10 s (unless the floor a · 1 s applied).
            #expect(abs(2 * a.reduce(0, +) - 10) < 1e-3, "arterial channel area \(2 * a.reduce(0, +))")
        }
    }

    @Test func unknownPreprocessingIsRefused() throws {
        let e = #expect(throws: PipelineError.self) { try PerfusionInput(Self.series(), preprocessing: "raw-hu") }
        #expect(e?.message.contains("raw-hu") == true)
    }
}
