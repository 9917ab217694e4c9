import Foundation
import Perfusion
import Registration
import Volume

/// Samples the phantom's anatomy on the image grid: `sub` samples through each slice's
/// thickness per pixel (partial volume, as a detector row integrates over its slab), and
/// turns those tissue samples into one slice of HU.
struct SliceSampler: Sendable {
    let n: Int
    let slices: Int
    let pixel: Double
    let fieldOfView: Double
    let thickness: Double
    let sub: Int
    let psfPixels: Double
    let noiseCorrelationPixels: Double
    let lesion: Lesion?
    let arteries: Bool

    init(options o: PhantomOptions, lesion: Lesion?) {
        n = o.size; slices = o.slices; pixel = o.pixel; fieldOfView = o.fieldOfView
        thickness = o.sliceThickness
        sub = o.sliceThickness > 1.5 ? 5 : 1
        psfPixels = o.psfSigma / o.pixel
        noiseCorrelationPixels = o.noiseCorrelationMM / o.pixel
        self.lesion = lesion
        arteries = o.arteriesInSlab
    }

    /// Geometry of the written series (LPS, axial, head-first).
    var geometry: Geometry {
        Geometry(origin: SIMD3(-fieldOfView / 2 + pixel / 2, -fieldOfView / 2 + pixel / 2, zPosition(0)),
                 rowDirection: SIMD3(1, 0, 0), columnDirection: SIMD3(0, 1, 0), sliceDirection: SIMD3(0, 0, 1),
                 spacing: SIMD3(thickness, pixel, pixel))
    }

    func zPosition(_ z: Int, offset: Double = 0) -> Double {
        (Double(z) - Double(slices - 1) / 2 + offset) * thickness
    }

    /// Tissue codes of slice z, `sub` per pixel, with the head moved by a pose (given as
    /// its inverse matrix: a voxel at p sees the head at pose⁻¹(p)).
    func labels(z: Int, pose inverse: [[Double]]?) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n * n * sub)
        for s in 0..<sub {
            let offset = sub == 1 ? 0 : (Double(s) + 0.5) / Double(sub) - 0.5
            let zmm = zPosition(z, offset: offset)
            for i in 0..<(n * n) {
                let x = (Double(i % n) + 0.5) * pixel - fieldOfView / 2
                let y = (Double(i / n) + 0.5) * pixel - fieldOfView / 2
                let q = inverse.map { RigidTransform.apply($0, SIMD3(x, y, zmm)) } ?? SIMD3(x, y, zmm)
                out[i * sub + s] = UInt8(Anatomy.tissue(x: q.x, y: q.y, z: q.z, lesion: lesion, arteries: arteries).rawValue)
            }
        }
        return out
    }

    /// The tissue at the centre of each pixel's slab (the label map).
    func centreLabels(_ lab: [UInt8]) -> [UInt8] {
        (0..<(n * n)).map { lab[$0 * sub + sub / 2] }
    }

    /// Mean over each pixel's samples of a per-tissue value.
    func average(_ lab: [UInt8], _ value: [Double]) -> [Float] {
        var out = [Float](repeating: 0, count: n * n)
        for i in 0..<(n * n) {
            var v = 0.0
            for s in 0..<sub { v += value[Int(lab[i * sub + s])] }
            out[i] = Float(v / Double(sub))
        }
        return out
    }

    /// One slice in HU: the samples' HU averaged, blurred by the point spread, plus
    /// correlated noise of σ `noise` everywhere but in air.
    func image(labels lab: [UInt8], hu: [Double], noise: Double, rng: inout SeededRandom) -> [Float] {
        var img = average(lab, hu)
        ImageFilter.blur(&img, height: n, width: n, sigmaPixels: psfPixels)
        if noise > 0 {
            let e = ImageFilter.correlatedNoise(height: n, width: n, sigma: noise, correlationPixels: noiseCorrelationPixels, rng: &rng)
            for i in 0..<(n * n) {
                var air = true
                for s in 0..<sub where lab[i * sub + s] != 0 { air = false; break }
                if !air { img[i] += e[i] }
            }
        }
        return img
    }
}
