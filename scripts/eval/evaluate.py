"""Evaluate perfd's pipelines against phantom ground truth on held-out seeds.

For every seed and noise level it writes a phantom (`perfd phantom`), runs each pipeline
(`perfd run`) and compares maps/*.nii with truth/*.nii (nibabel). Printed per noise level:
  perfusion: median absolute % error of CBF, CBV, MTT per tissue (and over all perfused
             tissue at once), median absolute Tmax error (s), core and penumbra volume error
             (ml, estimate − truth, mean and mean absolute over seeds; % per seed);
  NCCT:      MSE (HU²) and SSIM inside the brain and over the whole head vs truth/ncct.nii.
Methods are columns; "ncct" and "perfusion" run the shipped C-LSTM models (ncct-clstm,
perfusion-clstm). For the learned NCCT the margin over the best baseline is printed per metric.
Seeds 9001+ are held out: training must not use them.
"""
import argparse, json, os, subprocess, sys, tempfile, shutil
import numpy as np
import nibabel as nib
from scipy.ndimage import uniform_filter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PERFUSION_METHODS = ["perfusion-svd", "perfusion"]
NCCT_METHODS = ["baseline-t0", "baseline-mean03", "baseline-mean-all", "ncct"]
BASELINES = [m for m in NCCT_METHODS if m.startswith("baseline")]
# Label codes of truth/labels.nii (see truth.json "labels").
# "perfused": every perfused brain voxel at once (grey, white, core, penumbra).
TISSUES = {"grey": [3], "white": [4], "core": [7, 8], "penumbra": [9, 10], "perfused": [3, 4, 7, 8, 9, 10]}
BRAIN = [2, 3, 4, 5, 6, 7, 8, 9, 10]


def perfd():
    for c in ("release", "debug"):
        p = os.path.join(ROOT, ".build", c, "perfd")
        if os.path.exists(p):
            return os.environ.get("PERFD_BIN", p)
    sys.exit("perfd is not built: run `swift build` first")


def run(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{r.stdout}{r.stderr}")


def load(path):
    return np.asarray(nib.load(path).dataobj, dtype=np.float64)


def ssim(a, b, mask, lo=-20.0, hi=100.0):
    """Mean SSIM over `mask` (7×7 in-plane windows, images clipped to a brain window)."""
    a = np.clip(a, lo, hi); b = np.clip(b, lo, hi)
    L = hi - lo; c1 = (0.01 * L) ** 2; c2 = (0.03 * L) ** 2
    f = lambda x: uniform_filter(x, size=(7, 7, 1))
    ma, mb = f(a), f(b)
    va, vb, cov = f(a * a) - ma * ma, f(b * b) - mb * mb, f(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s[mask].mean())


def evaluate_case(bin_, work, seed, sigma, size, slices):
    ph = os.path.join(work, f"s{seed}_n{sigma:g}")
    run([bin_, "phantom", "--output", ph, "--size", str(size), "--slices", str(slices), "--seed", str(seed),
         "--noise", str(sigma)])
    truth = json.load(open(os.path.join(ph, "truth.json")))
    lab = load(os.path.join(ph, "truth", "labels.nii"))
    out = {"perfusion": {}, "ncct": {}}
    for m in PERFUSION_METHODS:
        o = os.path.join(work, f"out_{m}_{seed}_{sigma:g}")
        run([bin_, "run", ph, "--output", o, "--pipeline", m])
        report = json.load(open(os.path.join(o, "report.json")))
        summary = report["summary"]
        res = {}
        qc = report.get("qc") or {}
        res["qc"] = qc.get("outcome", "none")
        res["qc_flags"] = [f"{c['name']} {c['outcome']}" for c in qc.get("checks", []) if c["outcome"] != "ok"]
        if qc.get("fallback"):
            res["qc_flags"].append("fallback")
        for name in ("cbf", "cbv", "mtt", "tmax"):
            est, tru = load(os.path.join(o, "maps", f"{name}.nii")), load(os.path.join(ph, "truth", f"{name}.nii"))
            for tissue, codes in TISSUES.items():
                sel = np.isin(lab, codes) & np.isfinite(est)
                if sel.sum() == 0:
                    continue
                if name == "tmax":
                    res[(name, tissue)] = np.abs(est[sel] - tru[sel])
                else:
                    res[(name, tissue)] = 100 * np.abs(est[sel] - tru[sel]) / np.maximum(tru[sel], 1e-6)
                res[(name + "_bias", tissue)] = 100 * (est[sel] - tru[sel]) / np.maximum(tru[sel], 1e-6)
        v = truth["volumes_ml"]
        res["core_err_ml"] = summary["core_ml"] - v["core"]
        res["penumbra_err_ml"] = summary["penumbra_ml"] - v["penumbra"]
        res["core_true_ml"], res["penumbra_true_ml"] = v["core"], v["penumbra"]
        out["perfusion"][m] = res
    ncct = load(os.path.join(ph, "truth", "ncct.nii"))
    brain, head = np.isin(lab, BRAIN), lab >= 1
    for m in NCCT_METHODS:
        o = os.path.join(work, f"out_{m}_{seed}_{sigma:g}")
        run([bin_, "run", ph, "--output", o, "--pipeline", m])
        est = load(os.path.join(o, "maps", "ncct.nii"))
        out["ncct"][m] = {"mse_brain": float(((est - ncct)[brain] ** 2).mean()),
                          "mse_head": float(((est - ncct)[head] ** 2).mean()),
                          "ssim_brain": ssim(est, ncct, brain), "ssim_head": ssim(est, ncct, head)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="9001,9002,9003", help="held-out phantom seeds (never used in training)")
    ap.add_argument("--sigmas", default="0,10,20", help="noise levels σ in HU")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--keep", help="keep phantoms and outputs in this folder")
    ap.add_argument("--only", choices=["ncct", "perfusion"], help="evaluate only the NCCT or only the perfusion methods")
    a = ap.parse_args()
    global PERFUSION_METHODS, NCCT_METHODS
    if a.only == "ncct":
        PERFUSION_METHODS = []
    elif a.only == "perfusion":
        NCCT_METHODS = []
    seeds = [int(s) for s in a.seeds.split(",")]
    sigmas = [float(s) for s in a.sigmas.split(",")]
    work = a.keep or tempfile.mkdtemp(prefix="perfd-eval-")
    os.makedirs(work, exist_ok=True)
    bin_ = perfd()
    print(f"perfd evaluation: seeds {seeds}, {a.size}x{a.size}x{a.slices}, 19 time points; {bin_}")
    alarms = {m: [0, 0] for m in PERFUSION_METHODS}
    for sigma in sigmas:
        cases = [evaluate_case(bin_, work, s, sigma, a.size, a.slices) for s in seeds]
        print(f"\n=== sigma = {sigma:g} HU ===")
        if PERFUSION_METHODS:
            print_perfusion(cases)
            if sigma <= 20:
                for m in PERFUSION_METHODS:
                    alarms[m][0] += sum(c["perfusion"][m]["qc"] != "ok" or "fallback" in c["perfusion"][m]["qc_flags"] for c in cases)
                    alarms[m][1] += len(cases)
        if NCCT_METHODS:
            print_ncct(cases)
    if any(n for _, n in alarms.values()):
        # Every case here is a clean standard acquisition: any warning, withholding or fallback is a false alarm.
        print("\nQC false alarms at sigma <= 20 HU (warned, withheld or fell back): "
              + ", ".join(f"{m} {k} of {n} ({100 * k / max(n, 1):.1f} %)" for m, (k, n) in alarms.items()))
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


def print_perfusion(cases):
    print(f"{'perfusion (median |error|)':34s}" + "".join(f"{m:>16s}" for m in PERFUSION_METHODS))
    for name, unit in (("cbf", "%"), ("cbv", "%"), ("mtt", "%"), ("tmax", "s")):
        for tissue in TISSUES:
            row = []
            for m in PERFUSION_METHODS:
                vals = [c["perfusion"][m].get((name, tissue)) for c in cases]
                vals = [x for x in vals if x is not None]
                row.append(f"{np.median(np.concatenate(vals)):16.2f}" if vals else f"{'-':>16s}")
            print(f"  {name.upper():5s} {tissue:9s} [{unit}]{'':14s}" + "".join(row))
    for name in ("cbf", "cbv"):
        row = []
        for m in PERFUSION_METHODS:
            vals = [c["perfusion"][m].get((name + "_bias", t)) for c in cases for t in ("grey", "white")]
            vals = [x for x in vals if x is not None]
            row.append(f"{np.median(np.concatenate(vals)):16.2f}")
        print(f"  {name.upper():5s} bias healthy [%] (signed){'':4s}" + "".join(row))
    for key, label in (("core_err_ml", "core volume error"), ("penumbra_err_ml", "penumbra volume error")):
        row = []
        for m in PERFUSION_METHODS:
            e = [c["perfusion"][m][key] for c in cases]
            row.append(f"{np.mean(np.abs(e)):7.2f} ({np.mean(e):+.1f})")
        print(f"  {label + ' [ml] |mean| (signed)':32s}" + "".join(f"{r:>16s}" for r in row))
    for key, true_key, label in (("core_err_ml", "core_true_ml", "core"), ("penumbra_err_ml", "penumbra_true_ml", "penumbra")):
        row = [np.mean([abs(c["perfusion"][m][key]) / max(c["perfusion"][m][true_key], 1e-6) * 100 for c in cases])
               for m in PERFUSION_METHODS]
        print(f"  {label + ' volume |error| [% of truth]':32s}" + "".join(f"{r:16.1f}" for r in row))
        for m in PERFUSION_METHODS:
            per = [100 * c["perfusion"][m][key] / max(c["perfusion"][m][true_key], 1e-6) for c in cases]
            print(f"    {label} volume error per seed [%], {m}: " + ", ".join(f"{e:+.1f}" for e in per))
    for m in PERFUSION_METHODS:
        print(f"    QC, {m}: " + ", ".join(c["perfusion"][m]["qc"] + (f" ({'; '.join(c['perfusion'][m]['qc_flags'])})" if c["perfusion"][m]["qc_flags"] else "")
                                        for c in cases))
    truth_vols = [(c["perfusion"][PERFUSION_METHODS[0]]["core_true_ml"], c["perfusion"][PERFUSION_METHODS[0]]["penumbra_true_ml"]) for c in cases]
    print("  truth volumes (core, penumbra) ml: " + ", ".join(f"({c:.1f}, {p:.1f})" for c, p in truth_vols))


def print_ncct(cases):
    print(f"{'NCCT vs truth (mean over seeds)':34s}" + "".join(f"{m:>18s}" for m in NCCT_METHODS))
    for key in ("mse_brain", "mse_head", "ssim_brain", "ssim_head"):
        print(f"  {key:32s}" + "".join(f"{np.mean([c['ncct'][m][key] for c in cases]):18.4f}" for m in NCCT_METHODS))
    if "ncct" in NCCT_METHODS and BASELINES:
        for key in ("mse_brain", "mse_head", "ssim_brain", "ssim_head"):
            mean = {m: np.mean([c["ncct"][m][key] for c in cases]) for m in NCCT_METHODS}
            if key.startswith("mse"):
                best = min(BASELINES, key=lambda m: mean[m])
                verdict = "beats" if mean["ncct"] < mean[best] else "does NOT beat"
                print(f"  ncct {verdict} best baseline on {key}: {mean['ncct']:.2f} vs {best} {mean[best]:.2f} HU² "
                      f"({100 * (mean['ncct'] - mean[best]) / mean[best]:+.1f} %)")
            else:
                best = max(BASELINES, key=lambda m: mean[m])
                verdict = "beats" if mean["ncct"] > mean[best] else "does NOT beat"
                print(f"  ncct {verdict} best baseline on {key}: {mean['ncct']:.4f} vs {best} {mean[best]:.4f} "
                      f"({mean['ncct'] - mean[best]:+.4f})")


if __name__ == "__main__":
    main()
