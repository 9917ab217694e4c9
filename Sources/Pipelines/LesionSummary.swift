import Perfusion

/// The report.json summary entries every perfusion pipeline gives: lesion volumes, mismatch,
/// the rules in words, and the reference the core was measured against.
enum LesionSummary {
    static func round(_ x: Double, _ digits: Double = 1000) -> Double { (x * digits).rounded() / digits }

    static func entries(_ v: LesionVolumes, options: PerfusionOptions) -> [String: SummaryValue] {
        let pct = Int(options.coreRelativeCBF * 100), late = options.penumbraTmax
        return [
            "core_ml": .number(round(v.coreML)), "penumbra_ml": .number(round(v.penumbraML)),
            "hypoperfused_ml": .number(round(v.hypoperfusedML)),
            "mismatch_ratio": .number(v.mismatchRatio.isFinite ? round(v.mismatchRatio) : -1),
            "core_rule": .text("rCBF < \(pct) % of the healthy hemisphere's mean CBF, within the Tmax > \(late) s region and the holes it encloses in a slice"),
            "penumbra_rule": .text("Tmax > \(late) s outside the core; mismatch ratio = (Tmax>\(late) s or core) volume / core volume (-1: no core)"),
            "reference_cbf": .number(round(v.referenceCBF)), "healthy_side": .text(v.healthySide),
            // The evidence for the healthy side: delayed tissue (Tmax > the threshold) per half.
            "delayed_low_x_ml": .number(round(v.delayedLowML, 10)), "delayed_high_x_ml": .number(round(v.delayedHighML, 10)),
            "min_region_ml": .number(options.minLesionML),
            // The rules' numbers, for readers that write the rules themselves (the summary page).
            "core_relative_cbf": .number(options.coreRelativeCBF), "penumbra_tmax_s": .number(late),
        ]
    }
}
