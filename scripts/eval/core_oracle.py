"""How well can anything read the infarct core's own CBF from a phantom series?

An upper bound on what a local estimator can do, for perfusion-clstm's core figures. On each
seed the script makes the phantom twice (at --sigma and noise-free) and reads the core's CBF
(core white matter; the core's CBF is one value per case) three ways:

  prior    no data at all: a predictor that knows the healthy flow H exactly and that the
           phantom draws the core's CBF uniformly from 5–15 % of H (PhantomModel) — the best
           constant fraction of H, by the median |error| over that range.
  oracle   the exact core mask and the noise-free arterial curve are given; each core voxel's
           curve is the mean of the core curves in a k×k in-plane window around it (k = 1: the
           voxel alone; "all": every core voxel of the case), deconvolved by block-circulant
           truncated SVD at the threshold that does best over all seeds in hindsight.
  noise-free the same, on the noise-free series, voxel by voxel (threshold also in hindsight).

Median |error| (%) over the core voxels, per seed. And the core's CBV read from the noise-free
series by the area formula (area ratio over the acquisition), against the truth's CBF·∫R.
perfusion-clstm sees neither the mask nor the clean AIF; what it reads beyond the prior must
come from data at least this noisy.
Usage: core_oracle.py [--seeds 9001,9002,9003,9004,9005,9006] [--sigma 10] [--timepoints 19] [--work DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
from scipy.ndimage import uniform_filter

KH, RHO = 0.73, 1.04           # as Sources/Perfusion/Support/Bolus.swift
CORE_WHITE, ARTERY = 8, 5      # truth.json "labels"
THRESHOLDS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def phantom(bin_, out, seed, sigma, size, slices, timepoints):
    if not os.path.exists(os.path.join(out, "truth.json")):
        subprocess.run([bin_, "phantom", "--output", out, "--size", str(size), "--slices", str(slices),
                        "--timepoints", str(timepoints), "--interval", "2", "--slice-thickness", "5", "--fov", "240",
                        "--noise", f"{sigma:g}", "--noise-correlation", "0.8", "--ncct-noise", "3",
                        "--seed", str(seed), "--format", "npy"], check=True, capture_output=True)
    truth = json.load(open(os.path.join(out, "truth.json")))
    return (np.load(os.path.join(out, "series.npy")).astype(np.float64), np.asarray(truth["frame_times_s"]),
            np.load(os.path.join(out, "truth", "labels.npy")), np.load(os.path.join(out, "truth", "cbf.npy")),
            np.load(os.path.join(out, "truth", "cbv.npy")))


def inverse(aif, dt, p):
    """Truncated pseudo-inverse of the 2N block-circulant AIF matrix (singular values < p·max dropped)."""
    n = len(aif)
    length = 2 * n
    a = np.concatenate([aif, np.zeros(length - n)])
    m = np.array([[a[(i - j) % length] for j in range(length)] for i in range(length)]) * dt
    u, s, vt = np.linalg.svd(m)
    return (vt.T * np.where(s >= p * s[0], 1 / s, 0)) @ u.T


def cbf(curves, inv):
    padded = np.concatenate([curves, np.zeros((inv.shape[1] - curves.shape[0], curves.shape[1]))])
    return KH / RHO * 6000 * (inv @ padded).max(axis=0)


def pooled(delta, core, k):
    if k == "all":
        return np.repeat(delta[:, core].mean(axis=1, keepdims=True), core.sum(), axis=1)
    num = uniform_filter(delta * core[None], size=(1, 1, k, k))
    den = uniform_filter(core.astype(np.float64), size=(1, k, k))
    return num[:, core] / den[core][None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="9001,9002,9003,9004,9005,9006")
    ap.add_argument("--sigma", type=float, default=10)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--timepoints", type=int, default=19, help="frames, 2 s apart")
    ap.add_argument("--work")
    a = ap.parse_args()
    bin_ = os.environ.get("PERFD_BIN", ".build/release/perfd")
    work = a.work or tempfile.mkdtemp(prefix="perfd-oracle-")
    frac = np.linspace(0.05, 0.15, 20001)
    prior = min(np.median(np.abs(c / frac - 1)) for c in np.linspace(0.05, 0.15, 1001))
    windows = [1, 7, 15, "all"]
    errors = {}        # (k, p) → per-seed median |error| %
    clean = {}         # p → per-seed median |error| %, noise-free voxel by voxel
    cbv_clean = []     # per seed: CBV by the area formula on the noise-free series
    seeds = [int(s) for s in a.seeds.split(",")]
    for seed in seeds:
        noisy, times, labels, truth, truth_cbv = phantom(bin_, os.path.join(work, f"s{seed}_n{a.sigma:g}_t{a.timepoints}"), seed, a.sigma, a.size, a.slices, a.timepoints)
        free, _, _, _, _ = phantom(bin_, os.path.join(work, f"s{seed}_n0_t{a.timepoints}"), seed, 0, a.size, a.slices, a.timepoints)
        dt = float(np.median(np.diff(times)))
        if np.ptp(np.diff(times)) > 1e-6:
            raise SystemExit("core_oracle: regular frame times only")
        core = labels == CORE_WHITE
        delta, delta0 = noisy - noisy[:2].mean(axis=0), free - free[:2].mean(axis=0)
        aif = delta0[:, labels == ARTERY].mean(axis=1)
        for p in THRESHOLDS:
            inv = inverse(aif, dt, p)
            for k in windows:
                est = cbf(pooled(delta, core, k), inv)
                errors.setdefault((k, p), []).append(100 * np.median(np.abs(est / truth[core] - 1)))
            clean.setdefault(p, []).append(100 * np.median(np.abs(cbf(delta0[:, core], inv) / truth[core] - 1)))
        cbv = KH / RHO * 100 * delta0[:, core].sum(axis=0) / aif.sum()
        cbv_clean.append(100 * np.median(cbv / truth_cbv[core] - 1))
    print(f"Core CBF, median |error| % over core voxels, σ = {a.sigma:g} HU, seeds {a.seeds} ({a.size}² × {a.slices}, {a.timepoints} frames)")
    print(f"  prior only (H known, core 5-15 % of H)      {100 * prior:5.1f}  (every seed)")
    for k in windows:
        p = min(THRESHOLDS, key=lambda t: np.mean(errors[(k, t)]))
        label = "whole core" if k == "all" else f"{k}x{k} window"
        print(f"  oracle, {label:12s} (SVD P = {p:<4g})         " + "  ".join(f"{e:6.0f}" for e in errors[(k, p)]))
    p = min(THRESHOLDS, key=lambda t: np.mean(clean[t]))
    print(f"  noise-free, voxel by voxel (SVD P = {p:<4g})   " + "  ".join(f"{e:6.0f}" for e in clean[p]))
    print("Core CBV, noise-free, (k_H/ρ)·100·ΣC_t/ΣC_a over the acquisition, median signed error %:")
    print("  (the truth integrates the residue to the end; the core's curve has not come down by the last frame)")
    print("                                               " + "  ".join(f"{e:+6.0f}" for e in cbv_clean))
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
