/// How each quantitative map is shown: its title, its unit and the value range its colour
/// scale spans. The colour series and the summary page read the same table.
public enum MapDisplay {
    public static let byName: [String: (title: String, unit: String, range: (Double, Double))] = [
        "cbf": ("CBF", "ml/100g/min", (0, 80)), "cbv": ("CBV", "ml/100g", (0, 6)), "mtt": ("MTT", "s", (0, 14)),
        "tmax": ("Tmax", "s", (0, 12)), "ttp": ("TTP", "s", (0, 40)),
    ]
}
