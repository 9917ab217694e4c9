import Foundation
import Perfusion
import Registration
import Volume

/// The phantom's ground truth, in the geometry of time point 0:
/// `truth/{ncct,cbf,cbv,mtt,tmax,labels}.nii` (and `.npy` with `writeNPY`) and `truth.json`.
///
/// A voxel averages `sub` samples through its slab, so its curve is the mean of the
/// samples' curves. CBV is linear in the curve, so its truth is the samples' mean CBV; CBF
/// is likewise the mean flow, MTT = 60·CBV/CBF of the voxel. Tmax and the label are those
/// of the tissue at the slab's centre. Voxels outside perfused brain have 0 in every map.
enum PhantomTruth {
    struct Volumes { var coreML: Double; var penumbraML: Double }

    static func write(directory: String, options o: PhantomOptions, model: PhantomModel, layout: SliceSampler,
                      labels still: [[UInt8]], times: [Double], poses: [RigidTransform],
                      uids: (study: String, series: String)) throws -> Volumes {
        let tissues = Tissue.allCases
        let cbf = tissues.map { model.kinetics[$0]?.cbf ?? 0 }
        let cbv = tissues.map { model.kinetics[$0]?.cbv ?? 0 }
        let tmax = tissues.map { model.kinetics[$0]?.tmax ?? 0 }
        let base = tissues.map { model.baseHU[$0]! }
        let names = ["ncct", "cbf", "cbv", "mtt", "tmax", "labels"]
        var maps: [String: [Float]] = Dictionary(uniqueKeysWithValues: names.map { name in
            var a = [Float](); a.reserveCapacity(o.slices * o.size * o.size); return (name, a)
        })
        // Slices are drawn on the cores side by side, a few at a time (so only those few
        // slices' maps are held twice), and appended in order: the same voxels as one by one.
        let chunk = 16
        for first in stride(from: 0, to: still.count, by: chunk) {
            let part = parallelMap(min(chunk, still.count - first)) { i -> [String: [Float]] in
                let z = first + i, lab = still[z]
                let centre = layout.centreLabels(lab)
                let f = layout.average(lab, cbf), v = layout.average(lab, cbv)
                var rng = SeededRandom(seed: o.seed &* 0x51ED &+ UInt64(z) &+ 0xC7)
                return ["cbf": f, "cbv": v, "mtt": zip(f, v).map { $0 > 0 ? 60 * $1 / $0 : 0 },
                        "tmax": centre.map { Float(tmax[Int($0)]) }, "labels": centre.map { Float($0) },
                        "ncct": layout.image(labels: lab, hu: base, noise: o.ncctNoiseSigma, rng: &rng)]
            }
            for slice in part { for name in names { maps[name]! += slice[name]! } }
        }
        let g = layout.geometry
        for (name, voxels) in maps {
            let v = Volume3D(depth: o.slices, height: o.size, width: o.size, voxels: voxels, geometry: g)
            try NIfTI.write(v, to: "\(directory)/truth/\(name).nii", description: "perfd phantom truth \(name)")
            if o.writeNPY { try NPY.write(voxels, shape: [o.slices, o.size, o.size], to: "\(directory)/truth/\(name).npy") }
        }
        let voxelML = o.sliceThickness * o.pixel * o.pixel / 1000
        let labels = maps["labels"]!
        let core = Double(labels.filter { Tissue(rawValue: Int($0))!.isCore }.count) * voxelML
        let penumbra = Double(labels.filter { Tissue(rawValue: Int($0))!.isPenumbra }.count) * voxelML

        let motionTruth: [[String: Any]] = poses.enumerated().map { t, pose in
            ["t": t, "rotation_deg": pose.anglesDegrees, "translation_mm": [pose.translation.x, pose.translation.y, pose.translation.z],
             "matrix": pose.inverseMatrix, "pose_matrix": pose.matrix]
        }
        let a = model.aif
        var truth: [String: Any] = [
            "motion": motionTruth,
            "study_uid": uids.study, "series_uid": uids.series, "frame_times_s": times, "irregular_sampling": o.irregular,
            "shape": [o.timepoints, o.slices, o.size, o.size], "spacing_mm": [o.sliceThickness, o.pixel, o.pixel],
            "noise_sigma_hu": o.noiseSigma, "noise_correlation_mm": o.noiseCorrelationMM, "ncct_noise_sigma_hu": o.ncctNoiseSigma,
            "psf_sigma_mm": o.psfSigma, "seed": o.seed,
            "aif": ["arrival_s": a.arrival, "time_to_peak_s": a.timeToPeak, "alpha": a.alpha, "peak_hu": a.peakHU,
                    "recirculation_fraction": a.recirculationFraction, "recirculation_delay_s": a.recirculationDelay],
            "vof": ["delay_s": model.venousDelay, "dispersion_s": model.venousDispersion],
            "tissues": Tissue.allCases.compactMap { t -> [String: Any]? in
                guard let k = model.kinetics[t] else { return nil }
                return ["tissue": t.name, "label": t.rawValue, "cbf": k.cbf, "cbv": k.cbv, "mtt_s": k.mtt, "delay_s": k.delay,
                        "dispersion_s": k.dispersion, "residue": k.residue.rawValue, "tmax_s": k.tmax,
                        "flow_before_dispersion": k.flow, "mtt_before_dispersion_s": k.transit,
                        "effective_residue_peak": k.residuePeak, "baseline_hu": model.baseHU[t]!]
            },
            "labels": Dictionary(uniqueKeysWithValues: Tissue.allCases.map { ($0.name, $0.rawValue) }),
            "baseline_hu": Dictionary(uniqueKeysWithValues: Tissue.allCases.map { ($0.name, model.baseHU[$0]!) }),
            "volumes_ml": ["core": core, "penumbra": penumbra, "hypoperfused": core + penumbra, "voxel": voxelML],
            "truth_files": ["ncct", "cbf", "cbv", "mtt", "tmax", "labels"].map { "truth/\($0).nii" },
            "tmax_definition": "delay + time of the peak of the effective residue R_eff = h_tau * R (h: exponential dispersion kernel; the peak is at 0 s without dispersion)",
            "cbf_definition": "flow_before_dispersion * max(R_eff): the peak of the flow-scaled residue that deconvolution with the measured AIF recovers; MTT = mtt_before_dispersion_s / max(R_eff), CBV = CBF * MTT / 60 (unchanged by dispersion)",
        ]
        if let l = model.lesion {
            truth["lesion"] = ["side": l.side > 0 ? "left (+x)" : "right (-x)", "centre_mm": [l.centre.x, l.centre.y, l.centre.z],
                               "penumbra_radii_mm": [l.penumbraRadii.x, l.penumbraRadii.y, l.penumbraRadii.z],
                               "core_centre_mm": [l.coreCentre.x, l.coreCentre.y, l.coreCentre.z],
                               "core_radii_mm": [l.coreRadii.x, l.coreRadii.y, l.coreRadii.z]]
        }
        let data = try JSONSerialization.data(withJSONObject: truth, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: directory + "/truth.json"))
        return Volumes(coreML: core, penumbraML: penumbra)
    }
}
