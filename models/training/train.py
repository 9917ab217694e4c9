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
import convert  # noqa: E402
import data  # noqa: E402

TASKS = {
    # Input HU scaled (x + 50) / 250 as in the paper; output the same scale back to HU.
    "ncct": dict(name="ncct-clstm", filters=[8, 8], outputs=[("ncct", "HU", 250.0, -50.0)]),
    "perfusion": dict(name="perfusion-clstm", filters=[8, 8],
                      outputs=[("cbf", "ml/100g/min", 50.0, 0.0), ("cbv", "ml/100g", 4.0, 0.0),
                               ("mtt", "s", 10.0, 0.0), ("tmax", "s", 10.0, 0.0)]),
}
PHANTOM = dict(size=128, slices=8)
TRAIN_CASES, VAL_CASES, PATCH = 36, 2, 32


def build(filters, channels, T, size=32):
    L = keras.layers
    inp = keras.Input(shape=(T, size, size, 1))
    x = inp
    for i, f in enumerate(filters):
        last = i == len(filters) - 1
        x = L.Bidirectional(L.ConvLSTM2D(f, 3, padding="same", return_sequences=not last), merge_mode="sum")(x)
    return keras.Model(inp, L.Conv2D(channels, 1, padding="same")(x))


def weighted_mse(y_true, y_pred):
    """y_true carries the per-pixel weight as its last channel."""
    w = y_true[..., -1:]
    err = (y_true[..., :-1] - y_pred) ** 2 * w
    return keras.ops.sum(err) / (keras.ops.sum(w) * keras.ops.cast(keras.ops.shape(y_pred)[-1], "float32") + 1e-6)


def prepare(task, case, spec):
    labels = case["labels"]
    if task == "ncct":
        x = (case["series"] + 50.0) / 250.0
        y = ((case["ncct"] + 50.0) / 250.0)[None]
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
    model = build(spec["filters"], len(spec["outputs"]), 19)
    opt = keras.optimizers.Adam(learning_rate=2e-3, clipnorm=1.0)
    model.compile(optimizer=opt, loss=weighted_mse)
    log(f"{task}: model {spec['filters']} filters, {model.count_params()} parameters; budget {minutes} min")
    start, epoch, history = time.time(), 0, []
    budget = minutes * 60
    while time.time() - start < budget:
        frac = (time.time() - start) / budget
        opt.learning_rate.assign(2e-3 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac))))
        xs, ys = sample(train_cases, 288)
        h = model.fit(xs, ys, batch_size=16, epochs=1, verbose=0, shuffle=True)
        val = float(model.evaluate(vx, vy, batch_size=32, verbose=0))
        epoch += 1
        history.append((epoch, time.time() - start, float(h.history["loss"][-1]), val))
        log(f"{task}: epoch {epoch} t={time.time() - start:.0f}s lr={float(opt.learning_rate):.2e} "
            f"loss={h.history['loss'][-1]:.5f} val={val:.5f}")
    return model, spec, history, [p for p in plan[:TRAIN_CASES]], time.time() - start


def save(task, model, spec, history, plan, seconds):
    clean = keras.models.clone_model(model)
    clean.set_weights(model.get_weights())
    out = os.path.join(HERE, "out")
    clean.save(os.path.join(out, f"{spec['name']}.keras"))
    extra = {
        "input_normalisation": {"offset": 50.0, "scale": 250.0} if task == "ncct" else {"offset": 0.0, "scale": 1.0},
        "preprocessing": "hu" if task == "ncct" else "aif-aligned-delta-hu",
        "outputs": [{"name": n, "unit": u, "scale": s, "offset": o} for n, u, s, o in spec["outputs"]],
        "provenance": {
            "trained_by": "models/training/train.py --task " + task,
            "framework": f"Keras {keras.__version__} ({keras.backend.backend()}, CPU)",
            "data": f"{len(plan)} synthetic phantoms from `perfd phantom` (seeds {plan[0]['seed']}-{plan[-1]['seed']}, "
                    f"{PHANTOM['size']}x{PHANTOM['size']}x{PHANTOM['slices']}, 19 time points, noise 0-20 HU, "
                    "half irregular 1-3 s sampling, 85 % with a lesion); held-out seeds 9001+ never used",
            "patches": f"2D {PATCH}x{PATCH} x 19 time points, batch 16, Adam 2e-3 cosine, tissue-weighted MSE",
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
