import Foundation
import PerfdTestSupport
@testable import Registration
import Testing
import Volume

/// Registration against phantoms with known head motion: TRE over brain voxels.
@Suite struct RegistrationTests {
    /// Mean and max distance, over brain voxels of time point 0, between where the estimate
    /// and the truth put each voxel at time point t.
    func tre(_ est: RigidTransform, _ truth: RigidTransform, brain: [SIMD3<Double>]) -> (mean: Double, max: Double) {
        let a = est.matrix, b = truth.matrix
        var sum = 0.0, mx = 0.0
        for p in brain {
            let d = (RigidTransform.apply(a, p) - RigidTransform.apply(b, p))
            let e = (d * d).sum().squareRoot()
            sum += e; mx = max(mx, e)
        }
        return (sum / Double(brain.count), mx)
    }

    func brainVoxels(_ v: Volume3D) -> [SIMD3<Double>] {
        var out: [SIMD3<Double>] = []
        for z in 0..<v.depth { for y in stride(from: 0, to: v.height, by: 2) { for x in stride(from: 0, to: v.width, by: 2) {
            let hu = v[z, y, x]
            if hu > 10 && hu < 70 { out.append(v.geometry.position(z: Double(z), y: Double(y), x: Double(x))) }
        } } }
        return out
    }

    /// The registration issue's target: up to 5° and 5 mm per time point, σ 10–20 HU, bolus
    /// present, 5 mm slices → mean TRE ≤ 0.3 mm and max ≤ 1 mm at every time point.
    @Test(arguments: [(5.0, 5.0, 10.0), (3.0, 4.0, 20.0)])
    func knownMotionIsRecovered(_ deg: Double, _ mm: Double, _ noise: Double) throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.path, size: 192, slices: 16, timepoints: 6, seed: 21, motion: (deg, mm), noise: noise, interval: 3)
        let series = try Assembler.assemble(paths: ph.files)
        let fixed = series.frame(0)
        let brain = brainVoxels(fixed)
        #expect(brain.count > 1000)
        let reg = RigidRegistration()
        for t in 1..<series.timepoints {
            let r = reg.register(fixed: fixed, moving: series.frame(t))
            let e = tre(r.transform, ph.poses[t], brain: brain)
            #expect(e.mean <= 0.3 && e.max <= 1.0, "t=\(t): TRE mean \(e.mean) max \(e.max) mm; truth \(ph.poses[t].anglesDegrees) \(ph.poses[t].translation)")
        }
    }

    @Test func noMotionStaysPut() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.path, size: 192, slices: 16, timepoints: 4, seed: 5, noise: 20, interval: 3)
        let series = try Assembler.assemble(paths: ph.files)
        let brain = brainVoxels(series.frame(0))
        for t in 1..<series.timepoints {
            let r = RigidRegistration().register(fixed: series.frame(0), moving: series.frame(t))
            let e = tre(r.transform, RigidTransform(centre: r.transform.centre), brain: brain)
            #expect(e.max <= 0.1, "t=\(t): \(e.max) mm")
        }
    }

    @Test func matrixAndInverseAgree() {
        let t = RigidTransform(angles: SIMD3(0.05, -0.03, 0.08), translation: SIMD3(2, -1, 3), centre: SIMD3(10, 20, 30))
        let p = SIMD3(5.0, -7.0, 12.0)
        let back = RigidTransform.apply(t.inverseMatrix, t.apply(p))
        #expect(((back - p) * (back - p)).sum().squareRoot() < 1e-9)
        // The centre moves by the translation only.
        #expect(((t.apply(t.centre) - t.centre - t.translation) * (t.apply(t.centre) - t.centre - t.translation)).sum() < 1e-18)
    }
}

/// Resampling through a transform a hair from identity must give back the volume, edges
/// included (found by the science work: the first and last slices came back as air).
@Suite struct ResamplingEdgeTests {
    @Test func nearIdentityKeepsTheEdgeSlices() {
        let g = Geometry(origin: .zero, rowDirection: SIMD3(1, 0, 0), columnDirection: SIMD3(0, 1, 0),
                         sliceDirection: SIMD3(0, 0, 1), spacing: SIMD3(5, 1, 1))
        let v = Volume3D(depth: 4, height: 6, width: 7, voxels: (0..<(4 * 6 * 7)).map { Float($0 % 50) }, geometry: g)
        let t = RigidTransform(angles: SIMD3(1e-9, -1e-9, 1e-9), translation: SIMD3(1e-6, -1e-6, 1e-6))
        let r = v.resampled(through: t)
        let worst = zip(r.voxels, v.voxels).map { abs($0 - $1) }.max() ?? 1
        #expect(worst < 1e-3)
        // A whole voxel out is still outside.
        let shifted = v.resampled(through: RigidTransform(angles: .zero, translation: SIMD3(0, 0, 10)))
        #expect(shifted.voxels.contains(-1000))
    }
}

/// The pieces the thin-slice refinement is built from.
@Suite struct RefinementPartsTests {
    /// The metric points are the voxels with a bone voxel within a 5×5 in-plane window, in
    /// slice, row, column order, thinned by a fixed stride: checked against that definition
    /// written out plainly, with and without thinning.
    @Test(arguments: [60_000, 500])
    func metricPointsFollowTheirDefinition(_ maxPoints: Int) {
        var rng = SeededRandom(seed: 11)
        let g = Geometry(origin: SIMD3(-30, -20, 5), rowDirection: SIMD3(1, 0, 0), columnDirection: SIMD3(0, 1, 0),
                         sliceDirection: SIMD3(0, 0, 1), spacing: SIMD3(2, 0.7, 0.9))
        let (D, H, W) = (5, 23, 31)
        let v = Volume3D(depth: D, height: H, width: W,
                         voxels: (0..<(D * H * W)).map { _ in Float.random(in: 0...1, using: &rng) < 0.03 ? 1200 : Float.random(in: -50...100, using: &rng) },
                         geometry: g)
        var r = RigidRegistration()
        r.options.maxPoints = maxPoints
        var expected: [(SIMD3<Double>, Float)] = []
        for z in 0..<D { for y in 0..<H { for x in 0..<W {
            var near = false
            for yy in max(0, y - 2)...min(H - 1, y + 2) { for xx in max(0, x - 2)...min(W - 1, x + 2) where v[z, yy, xx] > 600 { near = true } }
            if near { expected.append((g.position(z: Double(z), y: Double(y), x: Double(x)), v[z, y, x])) }
        } } }
        #expect(expected.count > 1000 && expected.count < D * H * W)
        if expected.count > maxPoints {
            let stride = Double(expected.count) / Double(maxPoints)
            expected = (0..<maxPoints).map { expected[Int(Double($0) * stride)] }
        }
        let got = r.metricPoints(v, threshold: 600)
        #expect(got.count == expected.count)
        #expect(zip(got, expected).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 })
    }

    @Test func recentringKeepsTheMap() {
        let t = RigidTransform(angles: SIMD3(0.07, -0.04, 0.09), translation: SIMD3(3, -2, 1.5), centre: SIMD3(1, 2, 3))
        let u = t.recentred(at: SIMD3(-40, 25, 60))
        #expect(u.angles == t.angles && u.centre == SIMD3(-40, 25, 60))
        for p in [SIMD3(0.0, 0, 0), SIMD3(100.0, -50, 20), SIMD3(-7.0, 13, -90)] {
            let d = u.apply(p) - t.apply(p)
            #expect((d * d).sum().squareRoot() < 1e-9)
        }
    }
}
