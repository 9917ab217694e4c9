#!/usr/bin/env python3
"""Train perfd's default C-LSTM models on synthetic phantoms and write their model directories.

    python3 models/training/train.py --task ncct|perfusion|all [--minutes M] [--perfd BIN]
        [--filters 12,12] [--cases N] [--target DIR]

Keras 3 on JAX (CPU), fixed seeds. For each task: phantoms from `perfd phantom --format npy`
(training seeds 1…N; 9001+ are held out for scripts/evaluate), random 2D patches of
19 time points, a stack of Bidirectional(ConvLSTM2D, merge_mode="sum") layers and a 1×1
Conv2D head trained with a tissue-weighted loss (ncct: MSE; perfusion: a smoothed L1 on
log-scaled CBF, CBV, MTT and on Tmax / 10 s, lesions weighted up), then models/convert.py writes
models/ncct-clstm/ or models/perfusion-clstm/ (model.json + weights.safetensors).
The run stops at the wall-clock budget (--minutes) and logs to models/training/out/TASK.log.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
import numpy as np  # noqa: E402
import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "models"))
import clstm_jax  # noqa: E402
import convert  # noqa: E402
import data  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

TASKS = {
    # Input HU scaled (x + 50) / 250 as in the paper; output the same scale back to HU.
    # The NCCT output is a correction (scaled by 25 HU) to the mean of the first RESIDUAL_FRAMES
    # frames: the network learns what to remove (noise, early contrast), not the whole HU range.
    # Outputs: (name, unit, scale, offset, transform); see prepare for the targets.
    "ncct": dict(name="ncct-clstm", filters=[6, 6], outputs=[("ncct", "HU", 25.0, 0.0, None)], loss="mse",
                 preprocessing="hu", channels=1),
    # Perfusion: the tissue curve and the arterial curve as two input channels (data.py,
    # "aif-aligned-delta-hu+aif"). CBF, CBV and MTT are learnt as log((x − offset) / scale)
    # with an "exp" output (x = scale·exp(y) + offset; the small negative offset keeps zero
    # flow finite), so an error in y is close to a relative error whatever the flow: the
    # core's small flows count as much as grey matter's large ones. Tmax (an absolute error
    # in seconds matters) stays linear. Loss weights per output: cbf, cbv, mtt, tmax.
    "perfusion": dict(name="perfusion-clstm", filters=[12, 12],
                      outputs=[("cbf", "ml/100g/min", 50.0, -0.5, "exp"), ("cbv", "ml/100g", 4.0, -0.1, "exp"),
                               ("mtt", "s", 5.0, -0.5, "exp"), ("tmax", "s", 10.0, 0.0, None)],
                      loss="l1", output_weights=[1.0, 1.0, 0.5, 1.5], lesion_weight=3.0, grey_weight=1.0,
                      preprocessing="aif-aligned-delta-hu+aif", channels=2),
}
PHANTOM = dict(size=128, slices=8)
RESIDUAL_FRAMES = 4
TRAIN_CASES, VAL_CASES, PATCH, BATCH, LR, EPOCH_PATCHES = 36, 3, 32, 32, 3e-3, 256


def build(filters, channels, T, size=32, c_in=1):
    L = keras.layers
    inp = keras.Input(shape=(T, size, size, c_in))
    x = inp
    for i, f in enumerate(filters):
        last = i == len(filters) - 1
        x = L.Bidirectional(L.ConvLSTM2D(f, 3, padding="same", return_sequences=not last), merge_mode="sum")(x)
    return keras.Model(inp, L.Conv2D(channels, 1, padding="same")(x))


def target(values, scale, offset, transform):
    """Truth → what the network learns (the inverse of the model.json output mapping)."""
    if transform == "exp":
        return np.log(np.maximum(values - offset, 1e-3 * scale) / scale)
    return (values - offset) / scale


def prepare(task, case, spec):
    """→ input (T, D, H, W), targets (C, D, H, W), weights (D, H, W), arterial channel (T,) or None."""
    labels = case["labels"]
    if task == "ncct":
        x, art = (case["series"] + 50.0) / 250.0, None
        base = case["series"][:RESIDUAL_FRAMES].mean(axis=0)
        y = ((case["ncct"] - base) / 25.0)[None]
        w = np.where(labels >= data.SKULL, 1.0, 0.05) + 3.0 * np.isin(labels, data.PARENCHYMA + [data.CSF])
    else:
        x, art, _, _ = data.perfusion_input(case["series"], case["times"], spec["preprocessing"])
        y = np.stack([target(np.maximum(case[n], 0), scale, off, tr) for n, _, scale, off, tr in spec["outputs"]])
        w = np.where(np.isin(labels, data.PARENCHYMA), 1.0, 0.0) + 0.1 * np.isin(labels, [data.CSF, data.ARTERY, data.VEIN])
        # Lesion labels (core and penumbra, 7–10): few voxels, and the ones the clinical rules read.
        w = w * np.where(np.isin(labels, data.LESION), spec.get("lesion_weight", 1.0), 1.0)
        # Grey matter: a thin ribbon, easily averaged away with the white matter around it.
        w = w * np.where(labels == data.GREY, spec.get("grey_weight", 1.0), 1.0)
        # The core (7–8): its flows are a few ml/100g/min, near the noise; the volume rule reads them.
        w = w * np.where(np.isin(labels, data.CORE), spec.get("core_weight", 1.0), 1.0)
        # Healthy parenchyma around a lesion weighs as much as the lesion: with the lesion alone
        # weighted up, a voxel the network cannot place costs less on the healthy side, so the
        # lesion's Tmax spreads outwards and the penumbra grows.
        ring = spec.get("lesion_ring_px", 0)
        if ring:
            near = data.dilate_in_plane(np.isin(labels, data.LESION), ring) & np.isin(labels, [data.GREY, data.WHITE])
            w = w * np.where(near, spec.get("lesion_weight", 1.0), 1.0)
    return x.astype(np.float32), y.astype(np.float32), w.astype(np.float32), art



def denormalise(y, spec):
    """Network outputs (…, C) → physical maps (…, C), as perfd applies model.json."""
    out = []
    for c, (_, _, scale, off, tr) in enumerate(spec["outputs"]):
        v = y[..., c]
        out.append(scale * np.exp(v) + off if tr == "exp" else v * scale + off)
    return np.stack(out, axis=-1)


def validate(params, spec, cases, log):
    """Whole-slice predictions on the validation phantoms (training seed range, never the
    held-out 9001+): median |error| per tissue as scripts/evaluate reports it."""
    tissues = {"grey": [data.GREY], "white": [data.WHITE], "core": [7, 8], "penumbra": [9, 10]}
    errs = {}
    for (x, _, _, art), raw in cases:
        xin = data.stack_channels(x, art)
        if xin.ndim == 4:
            xin = xin[..., None]
        pred = np.concatenate([np.asarray(clstm_jax.forward(params, xin[:, z][None])) for z in range(x.shape[1])])
        pred = np.maximum(denormalise(pred, spec), 0)
        soft = np.any(x != 0, axis=0)
        pred[~soft] = 0
        for c, (name, *_rest) in enumerate(spec["outputs"]):
            for t, codes in tissues.items():
                sel = np.isin(raw["labels"], codes)
                if not sel.any():
                    continue
                e, tru = pred[..., c][sel], raw[name][sel]
                errs.setdefault((name, t), []).append(np.abs(e - tru) if name == "tmax" else 100 * np.abs(e - tru) / np.maximum(tru, 1e-6))
    parts = []
    for (name, t), v in errs.items():
        parts.append(f"{name}/{t} {np.median(np.concatenate(v)):.2f}")
    log("validation (median |error|, % or s): " + ", ".join(parts))
    return {k: float(np.median(np.concatenate(v))) for k, v in errs.items()}


def train(task, perfd, minutes, log, filters=None, train_cases_n=TRAIN_CASES, init=None, lr_max=LR, grey_weight=None,
          core_weight=None, lesion_patches=None, lesion_ring=None):
    spec = dict(TASKS[task])
    if filters:
        spec["filters"] = filters
    if grey_weight is not None:
        spec["grey_weight"] = grey_weight
    if core_weight is not None:
        spec["core_weight"] = core_weight
    if lesion_patches is not None:
        spec["lesion_patches"] = lesion_patches
    if lesion_ring is not None:
        spec["lesion_ring_px"] = lesion_ring
    spec["lr"] = lr_max
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(11)
    work = os.path.join(HERE, "out", "phantoms")
    plan = data.case_plan(train_cases_n + VAL_CASES)
    cases, raws, lesion_voxels = [], [], []
    t0 = time.time()
    for p in plan:
        c = data.phantom(perfd, os.path.join(work, f"seed{p['seed']}"), p["seed"], PHANTOM["size"], PHANTOM["slices"],
                         p["sigma"], p["irregular"], p["lesion"])
        cases.append(prepare(task, c, spec))
        lesion_voxels.append(np.argwhere(np.isin(c["labels"], data.LESION)) if task == "perfusion" else None)
        raws.append({k: c[k] for k in ("labels", "cbf", "cbv", "mtt", "tmax")} if task == "perfusion" else None)
    log(f"{task}: {len(cases)} phantoms ({PHANTOM['size']}x{PHANTOM['size']}x{PHANTOM['slices']}, 19 tp) ready in {time.time() - t0:.0f} s")
    train_cases, val_cases = cases[:train_cases_n], cases[train_cases_n:]

    def sample(pool, n, centres=None):
        per = max(1, -(-n // len(pool)))
        parts = [data.patches(x, y, w, per, PATCH, rng, art, centres[i] if centres else None, spec.get("lesion_patches", 0.0))
                 for i, (x, y, w, art) in enumerate(pool)]
        xs, ys, ws = (np.concatenate(a) for a in zip(*parts))
        order = rng.permutation(len(xs))   # batches mix the phantoms
        return xs[order], np.concatenate([ys, ws], axis=-1)[order]

    vx, vy = sample(val_cases, 64)
    vx, vy, vw = vx, vy[..., :-1], vy[..., -1:]
    params = clstm_jax.init(spec["filters"], len(spec["outputs"]), seed=7, c_in=spec["channels"])
    if init:   # continue from a model directory's weights (same architecture)
        import check_pipeline
        _, loaded = check_pipeline.load_params(init)
        assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(params), "--init: another architecture"
        params = loaded
        log(f"{task}: starting from the weights in {init}")
    state = clstm_jax.adam_state(params)
    count = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    cw = jnp.asarray(spec.get("output_weights", [1.0] * len(spec["outputs"])), jnp.float32)
    kind = spec["loss"]
    log(f"{task}: model {spec['filters']} filters, {spec['channels']} input channel(s), {count} parameters, "
        f"{train_cases_n} training phantoms, loss {kind}; budget {minutes} min")
    start, epoch, history = time.time(), 0, []
    budget = minutes * 60
    # The budget and the learning-rate schedule run on training time: a gap far longer than
    # a step (the process was stopped, e.g. by SIGSTOP on a shared machine) counts as one
    # ordinary step.
    clock = {"active": 0.0, "last": time.time(), "step": 5.0}

    def tick():
        now = time.time()
        dt = now - clock["last"]
        clock["last"] = now
        if dt > 60:
            log(f"{task}: {dt:.0f} s without progress (paused?) counted as {clock['step']:.1f} s")
            dt = clock["step"]
        else:
            clock["step"] = dt
        clock["active"] += dt
        return clock["active"]

    while clock["active"] < budget:
        xs, ys = sample(train_cases, EPOCH_PATCHES, lesion_voxels[:train_cases_n] if task == "perfusion" else None)
        losses = []
        for b in range(0, len(xs), BATCH):
            frac = tick() / budget
            lr = lr_max * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))
            params, state, loss = clstm_jax.train_step(params, state, xs[b:b + BATCH], ys[b:b + BATCH, ..., :-1],
                                                       ys[b:b + BATCH, ..., -1:], lr, cw, kind=kind)
            losses.append(float(loss))
        val = float(np.mean([clstm_jax.eval_loss(params, vx[b:b + 32], vy[b:b + 32], vw[b:b + 32], cw, kind=kind)
                             for b in range(0, len(vx), 32)]))
        epoch += 1
        history.append((epoch, clock["active"], float(np.mean(losses)), val))
        tick()
        log(f"{task}: epoch {epoch} ({epoch * len(xs)} patches) t={clock['active']:.0f}s (wall {time.time() - start:.0f}s) lr={lr:.2e} "
            f"loss={np.mean(losses):.5f} val={val:.5f}")
    seconds = clock["active"]
    log(f"{task}: {seconds:.0f} s of training, {time.time() - start:.0f} s wall")
    metrics = validate(params, spec, list(zip(val_cases, raws[train_cases_n:])), log) if task == "perfusion" else None
    model = clstm_jax.to_keras(params, build(spec["filters"], len(spec["outputs"]), 19, PATCH, spec["channels"]))
    # The Keras model must compute what was trained: compare on validation patches.
    ours = np.asarray(clstm_jax.forward(params, vx[:8]))
    theirs = np.asarray(model.predict(vx[:8], verbose=0))
    diff = float(np.abs(ours - theirs).max())
    log(f"{task}: Keras vs training forward, max |difference| {diff:.2e}")
    if diff > 1e-3:
        sys.exit(f"train.py: the Keras model differs from the trained network by {diff}; not converting")
    return model, spec, history, [p for p in plan[:train_cases_n]], seconds, metrics


def save(task, model, spec, history, plan, seconds, metrics=None, target=None, init=None, argv=None):
    clean = keras.models.clone_model(model)
    clean.set_weights(model.get_weights())
    out = os.path.join(HERE, "out")
    clean.save(os.path.join(out, f"{spec['name']}.keras"))
    loss = ("tissue-weighted MSE" if spec["loss"] == "mse" else
            "smoothed L1 on log-scaled CBF/CBV/MTT and Tmax/10 s (output weights "
            + ", ".join(f"{w:g}" for w in spec["output_weights"]) + f"), tissue-weighted, lesions x{spec['lesion_weight']:g}, "
            f"grey matter x{spec.get('grey_weight', 1.0):g}, core x{spec.get('core_weight', 1.0):g}"
            + (f", {100 * spec['lesion_patches']:g} % of patches around a lesion voxel" if spec.get("lesion_patches") else "")
            + (f", healthy tissue within {spec['lesion_ring_px']} px of a lesion weighted as the lesion" if spec.get("lesion_ring_px") else ""))
    extra = {
        "input_normalisation": {"offset": 50.0, "scale": 250.0} if task == "ncct" else {"offset": 0.0, "scale": 1.0},
        "preprocessing": spec["preprocessing"],
        # The phantoms' pixel (240 mm field of view): perfd averages finer perfusion series to it.
        **({"pixel_mm": 240.0 / PHANTOM["size"]} if task == "perfusion" else {}),
        **({"residual_mean_frames": RESIDUAL_FRAMES} if task == "ncct" else {}),
        "outputs": [{"name": n, "unit": u, "scale": s, "offset": o, **({"transform": tr} if tr else {})}
                    for n, u, s, o, tr in spec["outputs"]],
        "provenance": {
            "trained_by": "models/training/train.py " + " ".join(argv or ["--task", task]),
            "framework": f"Keras {keras.__version__} ({keras.backend.backend()}, CPU)",
            "data": f"{len(plan)} synthetic phantoms from `perfd phantom` (seeds {plan[0]['seed']}-{plan[-1]['seed']}, "
                    f"{PHANTOM['size']}x{PHANTOM['size']}x{PHANTOM['slices']}, 19 time points, noise 0-20 HU, "
                    "half irregular 1-3 s sampling, 85 % with a lesion); held-out seeds 9001+ never used",
            "patches": f"2D {PATCH}x{PATCH} x 19 time points, batch {BATCH}, Adam {spec.get('lr', LR):g} cosine to 5 %, {loss} "
                       "(training loop in plain JAX, models/training/clstm_jax.py; weights copied into Keras and checked)",
            "epochs": len(history), "training_seconds": round(seconds),
            "final_loss": history[-1][2] if history else None, "final_val_loss": history[-1][3] if history else None,
            **({"validation_median_abs_error": {f"{n}/{t}": round(v, 3) for (n, t), v in metrics.items()}} if metrics else {}),
        },
    }
    if init:   # a continuation: keep the earlier runs' records, count all their time
        first = json.load(open(os.path.join(init, "model.json")))["provenance"]   # its own chain stays inside
        extra["provenance"]["continued_from"] = first
        extra["provenance"]["training_seconds_total"] = round(seconds) + first.get("training_seconds_total", first["training_seconds"])
    target = target or os.path.join(ROOT, "models", spec["name"])
    convert.convert(clean, target, spec["name"], "1.0.0" if task == "ncct" else "2.1.0", task, extra)
    return target


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["ncct", "perfusion", "all"], default="all")
    ap.add_argument("--minutes", type=float, default=30, help="wall-clock training budget per model")
    ap.add_argument("--perfd", default=os.path.join(ROOT, ".build", "release", "perfd"))
    ap.add_argument("--filters", help="filters per layer, e.g. 12,12 (default: the task's)")
    ap.add_argument("--cases", type=int, default=TRAIN_CASES, help=f"training phantoms (seeds 1…N; the next {VAL_CASES} validate)")
    ap.add_argument("--target", help="write the model directory here instead of models/NAME (trials)")
    ap.add_argument("--init", help="start from this model directory's weights (fine-tuning)")
    ap.add_argument("--lr", type=float, default=LR, help="peak learning rate")
    ap.add_argument("--grey-weight", type=float, help="loss weight of grey matter (default: the task's)")
    ap.add_argument("--core-weight", type=float, help="extra loss weight of the core, on top of the lesion weight (perfusion)")
    ap.add_argument("--lesion-patches", type=float, help="fraction of training patches drawn around a lesion voxel (perfusion)")
    ap.add_argument("--lesion-ring", type=int, help="healthy tissue within this many pixels of a lesion gets the lesion's weight (perfusion)")
    a = ap.parse_args()
    if not os.path.exists(a.perfd):
        sys.exit(f"train.py: {a.perfd} not found; build it with `swift build -c release` or pass --perfd")
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    filters = [int(f) for f in a.filters.split(",")] if a.filters else None
    for task in (["ncct", "perfusion"] if a.task == "all" else [a.task]):
        logf = open(os.path.join(HERE, "out", f"{task}.log"), "a")

        def log(msg):
            line = time.strftime("%H:%M:%S ") + msg
            print(line, flush=True)
            logf.write(line + "\n")
            logf.flush()

        model, spec, history, plan, seconds, metrics = train(task, a.perfd, a.minutes, log, filters, a.cases, a.init, a.lr, a.grey_weight,
                                                             a.core_weight, a.lesion_patches, a.lesion_ring)
        log(f"{task}: wrote {save(task, model, spec, history, plan, seconds, metrics, a.target, a.init, sys.argv[1:])}")


if __name__ == "__main__":
    main()
