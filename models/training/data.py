"""Training data for perfd's C-LSTM models: phantoms from `perfd phantom`, 2D patches.

Every phantom is written with explicit options (so a change of the phantom's defaults does
not silently change the training set) as series.npy (T, D, H, W) HU plus truth/*.npy.
Seeds come from a training range that never reaches the held-out evaluation seeds (9001+).

The perfusion model's input is prepared by `perfusion_input`, which the Swift pipeline
(`Sources/Pipelines/CLSTMPreprocessing.swift`) reimplements step by step; the two
must change together.
"""
import json
import os
import subprocess

import numpy as np

HELD_OUT_FIRST_SEED = 9001
# Labels of truth/labels.npy (truth.json "labels").
AIR, SKULL, CSF, GREY, WHITE, ARTERY, VEIN = range(7)
LESION = [7, 8, 9, 10]   # core 7–8, penumbra 9–10
CORE = [7, 8]
PARENCHYMA = [GREY, WHITE] + LESION

# Perfusion input (see perfusion_input): a uniform grid of PERF_T frames PERF_DT s apart,
# starting PERF_LEAD s before the arterial arrival.
PERF_T, PERF_DT, PERF_LEAD = 19, 2.0, 4.0
PERF_GAIN = 10.0
# "aif-aligned-delta-hu+aif": both channels are divided by the arterial curve's area on the
# grid (A, HU·s); the tissue channel is multiplied by AREA_GAIN_TISSUE s, the arterial channel
# by AREA_GAIN_AIF s (peaks of both then come out near 1 for typical boluses).
AREA_GAIN_TISSUE, AREA_GAIN_AIF = 100.0, 10.0
PREPROCESSING = ("aif-aligned-delta-hu", "aif-aligned-delta-hu+aif")


def phantom(perfd, out, seed, size, slices, sigma, irregular, lesion, timepoints=19):
    assert seed < HELD_OUT_FIRST_SEED, "seeds 9001+ are held out for evaluation"
    if not os.path.exists(os.path.join(out, "truth.json")):
        args = [perfd, "phantom", "--output", out, "--size", str(size), "--slices", str(slices),
                "--timepoints", str(timepoints), "--interval", "2", "--slice-thickness", "5", "--fov", "240",
                "--noise", f"{sigma:g}", "--noise-correlation", "0.8", "--ncct-noise", "3",
                "--seed", str(seed), "--format", "npy"]
        if irregular:
            args.append("--irregular")
        if not lesion:
            args.append("--no-lesion")
        subprocess.run(args, check=True, capture_output=True)
    truth = json.load(open(os.path.join(out, "truth.json")))
    case = {"series": np.load(os.path.join(out, "series.npy")).astype(np.float32),
            "times": np.asarray(truth["frame_times_s"], dtype=np.float64)}
    for name in ("ncct", "cbf", "cbv", "mtt", "tmax", "labels"):
        case[name] = np.load(os.path.join(out, "truth", name + ".npy")).astype(np.float32)
    return case


def case_plan(count, first_seed=1):
    """Per-seed phantom settings: noise 0–20 HU, half irregular timing, most with a lesion."""
    rng = np.random.default_rng(1234)
    plan = []
    for i in range(count):
        seed = first_seed + i
        plan.append(dict(seed=seed, sigma=float(rng.choice([0, 2.5, 5, 10, 15, 20])),
                         irregular=bool(i % 2), lesion=bool(rng.random() < 0.85)))
    return plan


def perfusion_input(series, times, preprocessing="aif-aligned-delta-hu"):
    """HU series (T, D, H, W) at `times` → the perfusion model's input.

    1. baseline = mean of frames 0 and 1 (before any bolus: arrival is ≥ 3 s); ΔHU = HU − baseline;
    2. soft tissue = baseline in [-50, 150] HU (no air, no bone); elsewhere the input is 0;
    3. the arterial curve = mean ΔHU of the n = max(8, soft/2000) soft-tissue voxels with
       the highest peak ΔHU; a = its peak; its arrival t_a = the first time it reaches 0.2·a
       (linear between frames);
    4. every voxel's ΔHU and the arterial curve are resampled (linear, held at the ends) to
       t_a − 4 s + 2 s·k, k = 0…18;
    5. "aif-aligned-delta-hu": the voxels' curves scaled by 10 / a; one channel.
       "aif-aligned-delta-hu+aif": A = 2 s · Σ_k arterial(k) (its area on the grid, at
       least a · 1 s); channel 0 = the voxel's curve · 100 s / A, channel 1 = the arterial
       curve · 10 s / A, the same at every voxel (air included).
    Returns (tissue (PERF_T, D, H, W), arterial channel (PERF_T,) or None, a, t_a); the
    model's input is the tissue channel alone or, with the arterial channel, both stacked
    last (`stack_channels`).
    """
    assert preprocessing in PREPROCESSING, preprocessing
    T = series.shape[0]
    base = series[:2].mean(axis=0)
    delta = series - base[None]
    soft = (base >= -50) & (base <= 150)
    flat = delta.reshape(T, -1)[:, soft.reshape(-1)]
    n = max(8, flat.shape[1] // 2000)
    peaks = flat.max(axis=0)
    top = np.argsort(-peaks, kind="stable")[:n]
    aif = flat[:, top].astype(np.float64).mean(axis=1)
    a = float(aif.max())
    level = 0.2 * a
    k = int(np.argmax(aif >= level))
    if k == 0:
        ta = float(times[0])
    else:
        f = (level - aif[k - 1]) / (aif[k] - aif[k - 1])
        ta = float(times[k - 1] + f * (times[k] - times[k - 1]))
    grid = ta - PERF_LEAD + PERF_DT * np.arange(PERF_T)
    # Linear interpolation weights, held at the ends.
    j = np.clip(np.searchsorted(times, grid, side="right") - 1, 0, T - 2)
    w = np.clip((grid - times[j]) / (times[j + 1] - times[j]), 0.0, 1.0)
    out = (1 - w)[:, None, None, None] * delta[j] + w[:, None, None, None] * delta[j + 1]
    arterial = None
    if preprocessing == "aif-aligned-delta-hu":
        out *= PERF_GAIN / a
    else:
        aif_grid = (1 - w) * aif[j] + w * aif[j + 1]
        area = max(PERF_DT * float(aif_grid.sum()), a * 1.0)
        out *= AREA_GAIN_TISSUE / area
        arterial = (aif_grid * AREA_GAIN_AIF / area).astype(np.float32)
    out[:, ~soft] = 0
    return out.astype(np.float32), arterial, a, ta


def stack_channels(tissue, arterial):
    """(T, …) tissue and (T,) arterial channel → (T, …, 2); tissue alone → (T, …)."""
    if arterial is None:
        return tissue
    art = np.broadcast_to(arterial.reshape((-1,) + (1,) * (tissue.ndim - 1)), tissue.shape)
    return np.stack([tissue, art], axis=-1).astype(np.float32)


def dilate_in_plane(mask, radius):
    """(D, H, W) boolean mask grown by `radius` pixels in each slice (city-block distance ≤ radius)."""
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[:, 1:, :] |= out[:, :-1, :]
        grown[:, :-1, :] |= out[:, 1:, :]
        grown[:, :, 1:] |= out[:, :, :-1]
        grown[:, :, :-1] |= out[:, :, 1:]
        out = grown
    return out


def patches(inputs, targets, weights, count, size, rng, arterial=None, centres=None, centred=0.0):
    """Random 2D patches: inputs (T, D, H, W) → (count, T, size, size, C) with C = 1, or 2 when
    an arterial channel (T,) is given (broadcast over the patch); targets (C, D, H, W)
    → (count, size, size, C); weights (D, H, W) → (count, size, size, 1).
    With `centres` (an (N, 3) array of z, y, x voxels, e.g. the lesion's), a fraction `centred`
    of the patches contain one of them, drawn at random (rare tissue seen more often)."""
    T, D, H, W = inputs.shape
    xs, ys, ws = [], [], []
    while len(xs) < count:
        if centres is not None and len(centres) and rng.random() < centred:
            z, cy, cx = centres[rng.integers(len(centres))]
            y = int(np.clip(cy - rng.integers(size), 0, H - size))
            x = int(np.clip(cx - rng.integers(size), 0, W - size))
        else:
            z, y, x = rng.integers(D), rng.integers(H - size + 1), rng.integers(W - size + 1)
        wp = weights[z, y:y + size, x:x + size]
        if wp.max() <= 0.1:   # mostly air: a few are enough
            if rng.random() > 0.1:
                continue
        xs.append(inputs[:, z, y:y + size, x:x + size])
        ys.append(np.moveaxis(targets[:, z, y:y + size, x:x + size], 0, -1))
        ws.append(wp)
    x = np.stack(xs)[..., None]
    if arterial is not None:
        x = np.concatenate([x, np.broadcast_to(arterial.reshape(1, T, 1, 1, 1), x.shape)], axis=-1)
    return (x.astype(np.float32), np.stack(ys).astype(np.float32),
            np.stack(ws)[..., None].astype(np.float32))
