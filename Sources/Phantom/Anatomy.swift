import Foundation

/// Tissue classes of the phantom; the raw value is the code in `truth/labels.nii`.
public enum Tissue: Int, CaseIterable, Sendable {
    case air, skull, csf, grey, white, artery, vein
    case coreGrey, coreWhite, penumbraGrey, penumbraWhite

    public var name: String {
        switch self {
        case .air: "air"
        case .skull: "skull"
        case .csf: "csf"
        case .grey: "grey"
        case .white: "white"
        case .artery: "artery"
        case .vein: "vein"
        case .coreGrey: "core_grey"
        case .coreWhite: "core_white"
        case .penumbraGrey: "penumbra_grey"
        case .penumbraWhite: "penumbra_white"
        }
    }

    public var isPerfusedBrain: Bool { [.grey, .white, .coreGrey, .coreWhite, .penumbraGrey, .penumbraWhite].contains(self) }
    public var isCore: Bool { self == .coreGrey || self == .coreWhite }
    public var isPenumbra: Bool { self == .penumbraGrey || self == .penumbraWhite }
}

/// An ischaemic lesion in one hemisphere (an MCA-like territory): an ellipsoid of penumbra
/// around a smaller ellipsoid of core, both restricted to grey and white matter.
public struct Lesion: Sendable {
    /// +1: the lesion lies at positive x (patient left in LPS); −1: negative x.
    public var side: Double
    /// The same lesion mirrored to the other hemisphere (for `PhantomOptions.lesionSide`).
    public func mirrored() -> Lesion {
        var l = self
        l.side = -side; l.centre.x = -centre.x; l.coreCentre.x = -coreCentre.x
        return l
    }
    public var centre: SIMD3<Double>
    public var penumbraRadii: SIMD3<Double>
    public var coreCentre: SIMD3<Double>
    public var coreRadii: SIMD3<Double>

    public init<G: RandomNumberGenerator>(random g: inout G) {
        side = Bool.random(using: &g) ? 1 : -1
        centre = SIMD3(side * .random(in: 30...40, using: &g), .random(in: -25...10, using: &g), .random(in: -6...6, using: &g))
        penumbraRadii = SIMD3(.random(in: 20...28, using: &g), .random(in: 26...38, using: &g), .random(in: 14...22, using: &g))
        let f = Double.random(in: 0.55...0.75, using: &g)
        coreRadii = penumbraRadii * f
        // The core sits toward the lateral cortex, inside the penumbra.
        coreCentre = centre + SIMD3(side * penumbraRadii.x * 0.2, 0, 0)
    }

    static func inside(_ p: SIMD3<Double>, _ c: SIMD3<Double>, _ r: SIMD3<Double>) -> Bool {
        let d = (p - c) / r
        return (d * d).sum() <= 1
    }

    /// Re-labels grey or white matter at p as core or penumbra when p lies in the lesion.
    func relabel(_ t: Tissue, at p: SIMD3<Double>) -> Tissue {
        guard t == .grey || t == .white, p.x * side > 2 else { return t }
        if Self.inside(p, coreCentre, coreRadii) { return t == .grey ? .coreGrey : .coreWhite }
        if Self.inside(p, centre, penumbraRadii) { return t == .grey ? .penumbraGrey : .penumbraWhite }
        return t
    }
}

enum Anatomy {
    /// Tissue at a point (mm from the head centre: x, y in-plane, z along the slices).
    /// `arteries: false`: a slab above the arteries large enough to carry an arterial input
    /// (their voxels are white matter), as in a scan that missed the circle of Willis.
    static func tissue(x: Double, y: Double, z: Double, lesion: Lesion?, arteries: Bool = true) -> Tissue {
        // Head: ellipsoid 78 × 96 mm in-plane, shrinking away from the central slice.
        func sq(_ v: Double) -> Double { v * v }
        // A skull is not a smooth ellipsoid: its outline wanders with angle and height
        // (ridges, the frontal and occipital bulges), which is what lets a registration tell
        // a tilt from a shift. A few millimetres of smooth 3D modulation stand in for that.
        let phi = atan2(y, x)
        let wobble = 1 + 0.035 * sin(3 * phi + z / 14) + 0.025 * cos(5 * phi - z / 9) + 0.02 * sin(2 * phi + z / 23)
        let shrink = max(0.4, 1 - sq(z / 110)) * wobble
        let a = 78 * shrink, b = 96 * shrink
        let r = sq(x / a) + sq(y / b)
        if r > 1 { return .air }
        let inner = sq(x / (a - 7)) + sq(y / (b - 7))
        if inner > 1 { return .skull }
        // Superior sagittal sinus: posterior midline, just inside the skull.
        if sq(x / 4) + sq((y - (b - 12)) / 4) <= 1 { return .vein }
        // Middle cerebral arteries: two small vessels left and right.
        for sx in [-1.0, 1.0] where arteries && sq((x - sx * 30) / 2.5) + sq((y + 8) / 2.5) <= 1 { return .artery }
        // Lateral ventricles.
        for sx in [-1.0, 1.0] where sq((x - sx * 10) / 6) + sq((y + 5) / 18) <= 1 { return .csf }
        // Cortex: a 5 mm band of grey matter under the skull.
        let cortex = sq(x / (a - 12)) + sq(y / (b - 12))
        let t: Tissue = cortex > 1 ? .grey : .white
        return lesion?.relabel(t, at: SIMD3(x, y, z)) ?? t
    }
}
