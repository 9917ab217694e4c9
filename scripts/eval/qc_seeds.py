"""Lesion volumes and QC outcomes of the perfusion pipelines on a set of phantom seeds.

The tuning tool of the quality gates (issue 17): it writes phantoms with `perfd phantom`
(the options of scripts/evaluate: 128² × 8, the phantom's defaults and --noise), runs
`perfd run --pipeline P` on each, and prints one line per case and pipeline: core and
penumbra volume vs truth, the QC outcome and its flags, and what the core rule saw inside
the true core (share of it with Tmax > 6 s, with CBF under the cut, called core). With
--json it writes every row for later analysis (e.g. the cross-check tolerance, see
scripts/eval/crosscheck_tolerance.py).

Tune on training seeds only (below 9001; the perfusion model trained on 1–96 and validated
on 97–99, perfusion-svd was tuned on 101–116). Seeds 9001+ are held out: run them once, to
check what was tuned.
"""
import argparse, json, os, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import nibabel as nib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORE, PENUMBRA = [7, 8], [9, 10]


def perfd():
    p = os.environ.get("PERFD_BIN") or os.path.join(ROOT, ".build", "release", "perfd")
    if not os.path.exists(p):
        sys.exit(f"{p} is not built: swift build -c release --product perfd")
    return p


def run(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        return f"{' '.join(args)} failed: {(r.stdout + r.stderr).strip()[-400:]}"
    return None


def load(path):
    return np.asarray(nib.load(path).dataobj, dtype=np.float64)


def tag(seed, sigma, extra):
    return f"s{seed}_n{sigma:g}" + ("_" + "_".join(a.strip("-") for a in extra) if extra else "")


def phantom(bin_, work, seed, sigma, extra):
    ph = os.path.join(work, tag(seed, sigma, extra))
    if not os.path.exists(os.path.join(ph, "truth.json")):
        return run([bin_, "phantom", "--output", ph, "--size", "128", "--slices", "8", "--seed", str(seed),
                    "--noise", f"{sigma:g}"] + extra)
    return None


def case(bin_, work, seed, sigma, pipeline, extra, rerun):
    ph = os.path.join(work, tag(seed, sigma, extra))
    if not os.path.exists(os.path.join(ph, "truth.json")):
        return dict(seed=seed, sigma=sigma, pipeline=pipeline, error="no phantom")
    out = os.path.join(work, f"out_{pipeline}_{tag(seed, sigma, extra)}")
    if rerun or not os.path.exists(os.path.join(out, "report.json")):
        e = run([bin_, "run", ph, "--output", out, "--pipeline", pipeline])
        if e:
            return dict(seed=seed, sigma=sigma, pipeline=pipeline, error=e)
    truth = json.load(open(os.path.join(ph, "truth.json")))
    rep = json.load(open(os.path.join(out, "report.json")))
    s, qc = rep["summary"], rep.get("qc") or {}
    row = dict(seed=seed, sigma=sigma, pipeline=pipeline, extra=extra,
               core=s["core_ml"], penumbra=s["penumbra_ml"],
               core_true=truth["volumes_ml"]["core"], penumbra_true=truth["volumes_ml"]["penumbra"],
               qc=qc.get("outcome", "none"),
               flags=[f"{c['name']} {c['outcome']}" for c in qc.get("checks", []) if c["outcome"] != "ok"],
               checks={c["name"]: c["value"] for c in qc.get("checks", [])},
               reference_cbf=s.get("reference_cbf"), healthy_side=s.get("healthy_side"),
               floor=s.get("cbf_noise_floor", 0), noise_hu=s.get("noise_hu"), smoothing_mm=s.get("smoothing_mm"))
    lab = load(os.path.join(ph, "truth", "labels.nii"))
    core = np.isin(lab, CORE)
    if core.sum() > 0:
        tmax = load(os.path.join(out, "maps", "tmax.nii"))
        cbf = load(os.path.join(out, "maps", "cbf.nii")) - (row["floor"] or 0)
        les = load(os.path.join(out, "maps", "lesion.nii"))
        cut = s["core_relative_cbf"] * s["reference_cbf"]
        row["in_core"] = dict(tmax_late=float((tmax[core] > 6).mean()), cbf_low=float((cbf[core] < cut).mean()),
                              called_core=float((les[core] == 1).mean()), called_lesion=float((les[core] >= 1).mean()),
                              cbf_median=float(np.median(cbf[core])), cut=cut)
    return row


def pct(v, t):
    return f"{100 * (v - t) / t:+5.0f} %" if t > 0 else f"{v:5.1f} ml"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", required=True, help="e.g. 101-124 or 101,102")
    ap.add_argument("--sigmas", default="20")
    ap.add_argument("--pipelines", default="perfusion-svd,perfusion")
    ap.add_argument("--extra", default="", help="more `perfd phantom` options, space separated")
    ap.add_argument("--keep", help="phantoms and outputs here (reused when present)")
    ap.add_argument("--rerun", action="store_true", help="run the pipelines again even where outputs exist")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    seeds = []
    for part in a.seeds.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    held = [s for s in seeds if s >= 9001]
    if held:
        print(f"note: seeds {held} are held out: for checking, never for tuning", file=sys.stderr)
    work = a.keep or tempfile.mkdtemp(prefix="perfd-qc-")
    os.makedirs(work, exist_ok=True)
    bin_ = perfd()
    extra = a.extra.split()
    jobs = [(seed, float(sg), p) for sg in a.sigmas.split(",") for seed in seeds for p in a.pipelines.split(",")]
    # Phantoms first (one writer per phantom), then the runs.
    with ThreadPoolExecutor(a.jobs) as ex:
        for e in ex.map(lambda j: phantom(bin_, work, j[0], j[1], extra), sorted({(s, sg) for s, sg, _ in jobs})):
            if e:
                print(e, file=sys.stderr)
    with ThreadPoolExecutor(a.jobs) as ex:
        rows = list(ex.map(lambda j: case(bin_, work, j[0], j[1], j[2], extra, a.rerun), jobs))
    print("seed  σ   pipeline       core            penumbra        qc        in core: Tmax>6 CBF<cut called")
    for r in rows:
        if "error" in r:
            print(f"{r['seed']} {r['sigma']:g} {r['pipeline']}: {r['error']}")
            continue
        ic = r.get("in_core", {})
        print(f"{r['seed']:5d} {r['sigma']:3g} {r['pipeline']:14s} {r['core']:5.1f}/{r['core_true']:5.1f} {pct(r['core'], r['core_true'])}"
              f"  {r['penumbra']:5.1f}/{r['penumbra_true']:5.1f} {pct(r['penumbra'], r['penumbra_true'])}  {r['qc']:8s}"
              f"  {ic.get('tmax_late', float('nan')):.2f} {ic.get('cbf_low', float('nan')):.2f} {ic.get('called_core', float('nan')):.2f}"
              f"  {', '.join(r['flags'])}")
    for p in a.pipelines.split(","):
        for sg in a.sigmas.split(","):
            rs = [r for r in rows if r["pipeline"] == p and r["sigma"] == float(sg) and "error" not in r]
            for what in ("core", "penumbra"):
                e = [100 * (r[what] - r[what + "_true"]) / r[what + "_true"] for r in rs if r[what + "_true"] > 0]
                if e:
                    shown = [x for x, r in zip(e, [r for r in rs if r[what + "_true"] > 0]) if r["qc"] != "withhold"]
                    print(f"{p:14s} σ {sg:>3s} {what:8s}: mean {np.mean(e):+6.1f} %, mean |e| {np.mean(np.abs(e)):5.1f} %, "
                          f"within 25 %: {sum(abs(x) <= 25 for x in e)}/{len(e)}, shown beyond 50 %: {sum(abs(x) > 50 for x in shown)}")
            print(f"{p:14s} σ {sg:>3s} flagged: {sum(r['qc'] != 'ok' for r in rs)}/{len(rs)}")
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
