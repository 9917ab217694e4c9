#!/usr/bin/env python3
"""Builds the two benchmark networks of the engine issue with Keras 3 (JAX backend),
converts them for perfd, writes the same random input, and times Keras on it.

  (a) 2D, K=2, f=32, 3×3, T=19, 256×256
  (b) 3D, K=2, f=64, 3×3×3, T=19, one 32³ patch (the paper's network)

Usage: inference_models.py OUT_DIR [a|b ...]   → OUT_DIR/{a,b}/{model/, in.npy, keras.npy, keras.json}
"""
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
import numpy as np  # noqa: E402
import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CASES = {
    "a": dict(dims=2, f=32, size=(256, 256)),
    "b": dict(dims=3, f=64, size=(32, 32, 32)),
}


def build(c, seed):
    keras.utils.set_random_seed(seed)
    L = keras.layers
    ConvLSTM = L.ConvLSTM2D if c["dims"] == 2 else L.ConvLSTM3D
    Conv = L.Conv2D if c["dims"] == 2 else L.Conv3D
    inp = keras.Input(shape=(19,) + c["size"] + (1,))
    x = L.Bidirectional(ConvLSTM(c["f"], 3, padding="same", return_sequences=True), merge_mode="sum")(inp)
    x = L.Bidirectional(ConvLSTM(c["f"], 3, padding="same", return_sequences=False), merge_mode="sum")(x)
    x = Conv(1, 1)(x)
    return keras.Model(inp, x)


def main():
    out = sys.argv[1]
    for name in sys.argv[2:] or ["a", "b"]:
        c = CASES[name]
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        model = build(c, 7)
        model.save(os.path.join(d, "model.keras"))
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "convert.py"), os.path.join(d, "model.keras"),
                        os.path.join(d, "model"), "--name", "bench-" + name], check=True, stdout=subprocess.DEVNULL)
        x = np.random.default_rng(3).standard_normal((19,) + c["size"]).astype("float32")
        np.save(os.path.join(d, "in.npy"), x)
        batch = x[None, ..., None]
        # The first call compiles; time the second for (a), and the first call for (b)
        # (its compile is a small part of two minutes) unless KERAS_TIME_TWICE=1.
        t = time.perf_counter()
        y = model.predict(batch, verbose=0)
        first = time.perf_counter() - t
        seconds = first
        if name == "a" or os.environ.get("KERAS_TIME_TWICE") == "1":
            t = time.perf_counter()
            y = model.predict(batch, verbose=0)
            seconds = time.perf_counter() - t
        np.save(os.path.join(d, "keras.npy"), np.moveaxis(np.asarray(y)[0], -1, 0).astype("float32"))
        with open(os.path.join(d, "keras.json"), "w") as fh:
            json.dump({"seconds": seconds, "first_call_seconds": first, "keras": keras.__version__}, fh)
        print(f"{name}: keras {seconds:.2f} s (first call {first:.2f} s)")


if __name__ == "__main__":
    main()
