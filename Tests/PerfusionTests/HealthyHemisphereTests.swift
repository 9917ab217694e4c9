import Foundation
import PerfdTestSupport
import Perfusion
import Phantom
import Registration
import Testing
import Volume

/// The healthy hemisphere is chosen by evidence (where the delayed tissue is), never by a
/// tie: on a noise-free series both halves' median Tmax are the healthy tissue's, and the
/// former `<=` then always took the image-left half — the lesion's side when the lesion lies
/// at negative x — and read the core against the lesion's own flow.
@Suite struct HealthyHemisphereTests {
    static func series(_ dir: TempDir, side: Double?, noise: Double = 0, seed: UInt64 = 9002) throws -> (Series4D, [String: Double]) {
        var o = PhantomOptions()
        o.size = 96; o.slices = 4; o.seed = seed; o.noiseSigma = noise
        o.lesion = side != nil; o.lesionSide = side
        let ph = try Phantom.write(to: dir.path, options: o)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.path + "/truth.json"))) as! [String: Any]
        return (try Assembler.assemble(paths: ph.files), json["volumes_ml"] as! [String: Double])
    }

    @Test(arguments: [1.0, -1.0])
    func lesionSideIsNotTheReference(side: Double) throws {
        let dir = TempDir()
        let (s, truth) = try Self.series(dir, side: side)
        let r = try PerfusionMaps.compute(s)
        // +x (patient left) is the image's right half, high x: the healthy side is then low x.
        let expected = side > 0 ? "low x" : "high x"
        #expect(r.volumes.healthySide.hasPrefix(expected), "lesion at \(side > 0 ? "+x" : "-x"): healthy side \(r.volumes.healthySide), delayed \(r.volumes.delayedLowML) / \(r.volumes.delayedHighML) ml")
        // Read against the healthy side's flow, the core is found (against the lesion's own, it was not).
        let core = r.volumes.coreML, t = truth["core"]!
        #expect(abs(core - t) <= 0.5 * t, "core \(core) ml for \(t)")
    }

    @Test func noLesionTakesBothHemispheres() throws {
        let dir = TempDir()
        let (s, _) = try Self.series(dir, side: nil)
        let r = try PerfusionMaps.compute(s)
        #expect(r.volumes.healthySide.hasPrefix("both"), "\(r.volumes.healthySide)")
        #expect(r.volumes.coreML + r.volumes.penumbraML < 10, "core \(r.volumes.coreML), penumbra \(r.volumes.penumbraML) ml without a lesion")
    }

    /// The phantom's lesion side option mirrors the seed's lesion (same size), and says so.
    @Test func phantomPutsTheLesionWhereAsked() throws {
        let a = TempDir(), b = TempDir()
        _ = try Self.series(a, side: 1, noise: 10, seed: 9003)
        _ = try Self.series(b, side: -1, noise: 10, seed: 9003)
        func truth(_ d: TempDir) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: d.path + "/truth.json"))) as! [String: Any]
        }
        let la = try truth(a)["lesion"] as! [String: Any], lb = try truth(b)["lesion"] as! [String: Any]
        #expect((la["side"] as? String)?.hasPrefix("left") == true)
        #expect((lb["side"] as? String)?.hasPrefix("right") == true)
        let va = try truth(a)["volumes_ml"] as! [String: Double], vb = try truth(b)["volumes_ml"] as! [String: Double]
        #expect(abs(va["core"]! - vb["core"]!) <= 0.1 * va["core"]!, "\(va) vs \(vb)")
    }
}

/// Per-voxel validity from registration's transforms: a voxel whose position leaves the
/// slab at some time point is invalid, the rest valid.
@Suite struct ArterialPlausibilityTests {
    @Test func curvesThatAreNotOneBolusAreRejectedWithAReason() {
        let rules = ArterialInput.Plausibility(valid: [true, false], baseline: [40, 40], noiseHU: 10)
        let bolus = [0, 0, 50, 300, 200, 80, 30, 20, 25, 15].map(Double.init)
        #expect(rules.failure(bolus, voxel: 0, dt: 1) == nil)
        #expect(rules.failure(bolus, voxel: 1, dt: 1)?.rule == "slab")
        // A voxel swinging between tissue and bone or air as the head moves.
        let swinging = [0, 900, -40, 950, 0, 980, 10, 900, 0, 1000].map(Double.init)
        #expect(rules.failure(swinging, voxel: 0, dt: 1)?.rule == "several_peaks")
        let dipping = [0, 0, 300, 100, -400, 0].map(Double.init)
        #expect(rules.failure(dipping, voxel: 0, dt: 1)?.rule == "negative_swing")
        let bone = ArterialInput.Plausibility(baseline: [1100], noiseHU: 10)
        #expect(bone.failure(bolus, voxel: 0, dt: 1)?.rule == "bone")
    }

    @Test func selectionSkipsImplausibleVoxelsAndSaysWhy() throws {
        // 4 voxels in 2 slices of 2: voxel 0 a bright but swinging edge voxel, 1 and 2 arteries,
        // 3 tissue; 30 samples.
        let n = 30, frame = 40
        var delta = [Float](repeating: 0, count: n * frame)
        func artery(_ t: Int) -> Float { t < 5 ? 0 : Float(400 * exp(-pow(Double(t - 9) / 2.5, 2))) }
        func tissue(_ t: Int) -> Float { t < 6 ? 0 : Float(30 * exp(-pow(Double(t - 13) / 4, 2))) }
        for t in 0..<n {
            for v in 0..<frame { delta[t * frame + v] = tissue(t) }
            delta[t * frame + 0] = t % 2 == 0 ? 1000 : -900
            delta[t * frame + 1] = artery(t)
            delta[t * frame + 21] = artery(t) * 0.95
        }
        let a = try ArterialInput.select(delta: delta, samples: n, frame: frame, inside: [Bool](repeating: true, count: frame), slices: 2)
        #expect(Set(a.aifVoxels) == [1, 21])
        #expect(a.rejected.map(\.voxel) == [0])
        #expect(a.rejected.first?.rule == "negative_swing" || a.rejected.first?.rule == "several_peaks")
    }
}
