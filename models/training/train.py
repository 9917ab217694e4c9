#!/usr/bin/env python3
"""Train perfd's default C-LSTM models on synthetic phantoms and write their model directories.

    python3 models/training/train.py --task ncct|perfusion|all [--minutes M] [--perfd BIN]

Keras 3 on JAX (CPU), fixed seeds. For each task: phantoms from `perfd phantom --format npy`
(training seeds 1…N; 9001+ are held out for scripts/evaluate), random 2D patches of
19 time points, a stack of Bidirectional(ConvLSTM2D, merge_mode="sum") layers and a 1×1
Conv2D head trained with a tissue-weighted MSE, then models/convert.py writes
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

TASKS = {
    # Input HU scaled (x + 50) / 250 as in the paper; output the same scale back to HU.
    # The NCCT output is a correction (scaled by 25 HU) to the mean of the first RESIDUAL_FRAMES
    # frames: the network learns what to remove (noise, early contrast), not the whole HU range.
    "ncct": dict(name="ncct-clstm", filters=[6, 6], outputs=[("ncct", "HU", 25.0, 0.0)]),
    "perfusion": dict(name="perfusion-clstm", filters=[6, 6],
                      outputs=[("cbf", "ml/100g/min", 50.0, 0.0), ("cbv", "ml/100g", 4.0, 0.0),
                               ("mtt", "s", 10.0, 0.0), ("tmax", "s", 10.0, 0.0)]),
}
PHANTOM = dict(size=128, slices=8)
RESIDUAL_FRAMES = 4
TRAIN_CASES, VAL_CASES, PATCH, BATCH, LR = 36, 2, 32, 32, 3e-3


def build(filters, channels, T, size=32):
    L = keras.layers
    inp = keras.Input(shape=(T, size, size, 1))
    x = inp
    for i, f in enumerate(filters):
        last = i == len(filters) - 1
        x = L.Bidirectional(L.ConvLSTM2D(f, 3, padding="same", return_sequences=not last), merge_mode="sum")(x)
    return keras.Model(inp, L.Conv2D(channels, 1, padding="same")(x))


def prepare(task, case, spec):
    labels = case["labels"]
    if task == "ncct":
        x = (case["series"] + 50.0) / 250.0
        base = case["series"][:RESIDUAL_FRAMES].mean(axis=0)
        y = ((case["ncct"] - base) / 25.0)[None]
        w = np.where(labels >= data.SKULL, 1.0, 0.05) + 3.0 * np.isin(labels, data.PARENCHYMA + [data.CSF])
    else:
        x, _, _ = data.perfusion_input(case["series"], case["times"])
        y = np.stack([(case[n] - off) / scale for n, _, scale, off in spec["outputs"]])
        w = np.where(np.isin(labels, data.PARENCHYMA), 1.0, 0.0) + 0.1 * np.isin(labels, [data.CSF, data.ARTERY, data.VEIN])
    return x.astype(np.float32), y.astype(np.float32), w.astype(np.float32)



def train(task, perfd, minutes, log):
    spec = TASKS[task]
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(11)
    work = os.path.join(HERE, "out", "phantoms")
    plan = data.case_plan(TRAIN_CASES + VAL_CASES)
    cases = []
    t0 = time.time()
    for p in plan:
        c = data.phantom(perfd, os.path.join(work, f"seed{p['seed']}"), p["seed"], PHANTOM["size"], PHANTOM["slices"],
                         p["sigma"], p["irregular"], p["lesion"])
        cases.append(prepare(task, c, spec))
    log(f"{task}: {len(cases)} phantoms ({PHANTOM['size']}x{PHANTOM['size']}x{PHANTOM['slices']}, 19 tp) ready in {time.time() - t0:.0f} s")
    train_cases, val_cases = cases[:TRAIN_CASES], cases[TRAIN_CASES:]

    def sample(pool, n):
        per = max(1, n // len(pool))
        parts = [data.patches(x, y, w, per, PATCH, rng) for x, y, w in pool]
        xs, ys, ws = (np.concatenate(a) for a in zip(*parts))
        return xs, np.concatenate([ys, ws], axis=-1)

    vx, vy = sample(val_cases, 128)
    vx, vy, vw = vx, vy[..., :-1], vy[..., -1:]
    params = clstm_jax.init(spec["filters"], len(spec["outputs"]), seed=7)
    state = clstm_jax.adam_state(params)
    count = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    log(f"{task}: model {spec['filters']} filters, {count} parameters; budget {minutes} min")
    start, epoch, history = time.time(), 0, []
    budget = minutes * 60
    while time.time() - start < budget:
        xs, ys = sample(train_cases, 256)
        losses = []
        for b in range(0, len(xs), BATCH):
            frac = (time.time() - start) / budget
            lr = LR * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))
            params, state, loss = clstm_jax.train_step(params, state, xs[b:b + BATCH], ys[b:b + BATCH, ..., :-1],
                                                       ys[b:b + BATCH, ..., -1:], lr)
            losses.append(float(loss))
        val = float(np.mean([clstm_jax.eval_loss(params, vx[b:b + 32], vy[b:b + 32], vw[b:b + 32]) for b in range(0, len(vx), 32)]))
        epoch += 1
        history.append((epoch, time.time() - start, float(np.mean(losses)), val))
        log(f"{task}: epoch {epoch} ({epoch * len(xs)} patches) t={time.time() - start:.0f}s lr={lr:.2e} "
            f"loss={np.mean(losses):.5f} val={val:.5f}")
    model = clstm_jax.to_keras(params, build(spec["filters"], len(spec["outputs"]), 19, PATCH))
    # The Keras model must compute what was trained: compare on validation patches.
    ours = np.asarray(clstm_jax.forward(params, vx[:8]))
    theirs = np.asarray(model.predict(vx[:8], verbose=0))
    diff = float(np.abs(ours - theirs).max())
    log(f"{task}: Keras vs training forward, max |difference| {diff:.2e}")
    if diff > 1e-3:
        sys.exit(f"train.py: the Keras model differs from the trained network by {diff}; not converting")
    return model, spec, history, [p for p in plan[:TRAIN_CASES]], time.time() - start


def save(task, model, spec, history, plan, seconds):
    clean = keras.models.clone_model(model)
    clean.set_weights(model.get_weights())
    out = os.path.join(HERE, "out")
    clean.save(os.path.join(out, f"{spec['name']}.keras"))
    extra = {
        "input_normalisation": {"offset": 50.0, "scale": 250.0} if task == "ncct" else {"offset": 0.0, "scale": 1.0},
        "preprocessing": "hu" if task == "ncct" else "aif-aligned-delta-hu",
        **({"residual_mean_frames": RESIDUAL_FRAMES} if task == "ncct" else {}),
        "outputs": [{"name": n, "unit": u, "scale": s, "offset": o} for n, u, s, o in spec["outputs"]],
        "provenance": {
            "trained_by": "models/training/train.py --task " + task,
            "framework": f"Keras {keras.__version__} ({keras.backend.backend()}, CPU)",
            "data": f"{len(plan)} synthetic phantoms from `perfd phantom` (seeds {plan[0]['seed']}-{plan[-1]['seed']}, "
                    f"{PHANTOM['size']}x{PHANTOM['size']}x{PHANTOM['slices']}, 19 time points, noise 0-20 HU, "
                    "half irregular 1-3 s sampling, 85 % with a lesion); held-out seeds 9001+ never used",
            "patches": f"2D {PATCH}x{PATCH} x 19 time points, batch {BATCH}, Adam {LR:g} cosine to 5 %, tissue-weighted MSE "
                       "(training loop in plain JAX, models/training/clstm_jax.py; weights copied into Keras and checked)",
            "epochs": len(history), "training_seconds": round(seconds),
            "final_loss": history[-1][2] if history else None, "final_val_loss": history[-1][3] if history else None,
        },
    }
    target = os.path.join(ROOT, "models", spec["name"])
    convert.convert(clean, target, spec["name"], "1.0.0", task, extra)
    return target


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["ncct", "perfusion", "all"], default="all")
    ap.add_argument("--minutes", type=float, default=30, help="wall-clock training budget per model")
    ap.add_argument("--perfd", default=os.path.join(ROOT, ".build", "release", "perfd"))
    a = ap.parse_args()
    if not os.path.exists(a.perfd):
        sys.exit(f"train.py: {a.perfd} not found; build it with `swift build -c release` or pass --perfd")
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    for task in (["ncct", "perfusion"] if a.task == "all" else [a.task]):
        logf = open(os.path.join(HERE, "out", f"{task}.log"), "a")

        def log(msg):
            line = time.strftime("%H:%M:%S ") + msg
            print(line, flush=True)
            logf.write(line + "\n")
            logf.flush()

        model, spec, history, plan, seconds = train(task, a.perfd, a.minutes, log)
        log(f"{task}: wrote {save(task, model, spec, history, plan, seconds)}")


if __name__ == "__main__":
    main()
