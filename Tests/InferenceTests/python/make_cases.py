#!/usr/bin/env python3
"""Makes the ConvLSTM parity cases perfd's engine is checked against.

For each Keras case: a random model built with Keras 3 (JAX backend), saved as .keras,
converted with models/convert.py, a random input, and Keras's own prediction. For each
numpy case (input kernel != recurrent kernel, which Keras cannot express): random weights
and a prediction from the plain-numpy ConvLSTM below, written independently of the engine.
Usage: make_cases.py OUT_DIR  (writes OUT_DIR/CASE/{model/, in.npy, expected.npy, case.json})
"""
import json
import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import numpy as np  # noqa: E402
import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "models"))
import convert  # noqa: E402

KERAS_CASES = [
    # dims, layers K, filters f, kernel k, last returns sequences, T, spatial
    dict(dims=2, K=1, f=4, k=3, seq=False, T=2, size=(12, 10)),
    dict(dims=2, K=2, f=16, k=3, seq=False, T=19, size=(16, 16)),
    dict(dims=2, K=3, f=4, k=1, seq=False, T=5, size=(9, 11)),
    dict(dims=2, K=1, f=16, k=1, seq=True, T=7, size=(8, 8)),
    dict(dims=2, K=2, f=4, k=3, seq=True, T=3, size=(10, 10)),
    dict(dims=2, K=3, f=16, k=3, seq=False, T=11, size=(7, 9)),
    dict(dims=3, K=1, f=4, k=3, seq=False, T=4, size=(6, 7, 8)),
    dict(dims=3, K=2, f=16, k=3, seq=False, T=19, size=(6, 6, 6)),
    dict(dims=3, K=3, f=4, k=1, seq=True, T=2, size=(5, 6, 7)),
    dict(dims=3, K=2, f=4, k=3, seq=True, T=6, size=(5, 5, 5)),
    dict(dims=3, K=1, f=16, k=1, seq=False, T=9, size=(4, 5, 6)),
    # More than one input channel (cin; default 1): input (T, ..spatial.., cin).
    dict(dims=2, K=2, f=12, k=3, seq=False, T=19, size=(14, 13), cin=2),
    dict(dims=2, K=1, f=4, k=3, seq=True, T=5, size=(9, 10), cin=3),
    dict(dims=3, K=2, f=4, k=3, seq=False, T=4, size=(5, 6, 5), cin=2),
]

NUMPY_CASES = [
    dict(dims=2, K=2, f=4, kx=1, kh=3, T=6, size=(9, 8)),
    dict(dims=2, K=1, f=16, kx=3, kh=1, T=5, size=(7, 7)),
    dict(dims=3, K=2, f=4, kx=1, kh=3, T=4, size=(5, 6, 5)),
]


def keras_case(c, seed):
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    L = keras.layers
    ConvLSTM = L.ConvLSTM2D if c["dims"] == 2 else L.ConvLSTM3D
    Conv = L.Conv2D if c["dims"] == 2 else L.Conv3D
    cin = c.get("cin", 1)
    inp = keras.Input(shape=(c["T"],) + tuple(c["size"]) + (cin,))
    x = inp
    for i in range(c["K"]):
        seq = True if i < c["K"] - 1 else c["seq"]
        x = L.Bidirectional(ConvLSTM(c["f"], c["k"], padding="same", return_sequences=seq), merge_mode="sum")(x)
    head = Conv(2, 1, padding="same")
    x = L.TimeDistributed(head)(x) if c["seq"] else head(x)
    model = keras.Model(inp, x)
    # Random biases too (Keras starts them at 0/1), so every term is exercised.
    model.set_weights([w + 0.1 * rng.standard_normal(w.shape).astype("float32") for w in model.get_weights()])
    if cin == 1:   # perfd takes (T, ..spatial..) for one channel
        xin = rng.standard_normal((c["T"],) + tuple(c["size"])).astype("float32")
        y = np.asarray(model.predict(xin[None, ..., None], verbose=0))[0]
    else:
        xin = rng.standard_normal((c["T"],) + tuple(c["size"]) + (cin,)).astype("float32")
        y = np.asarray(model.predict(xin[None], verbose=0))[0]
    # (…, C) → channels first: (C, …) or (T, C, …)
    y = np.moveaxis(y, -1, 1 if c["seq"] else 0)
    return model, xin, y


def conv_same(x, w):
    """'same' convolution of x [..spatial.., C] with w [k..., C, O], by explicit shifts."""
    d = w.ndim - 2
    k = w.shape[0]
    r = k // 2
    pad = [(r, r)] * d + [(0, 0)]
    xp = np.pad(x, pad)
    out = np.zeros(x.shape[:-1] + (w.shape[-1],), dtype=np.float64)
    for idx in np.ndindex(*([k] * d)):
        sl = tuple(slice(i, i + n) for i, n in zip(idx, x.shape[:-1]))
        out += xp[sl + (slice(None),)] @ w[idx]
    return out


def numpy_convlstm(x, kernel, rkernel, bias, f, reverse):
    """x: [T, ..spatial.., C] → all hidden states [T, ..spatial.., f] in original time order."""
    T = x.shape[0]
    h = np.zeros(x.shape[1:-1] + (f,))
    c = np.zeros_like(h)
    sig = lambda v: 1 / (1 + np.exp(-v))
    out = [None] * T
    for step in range(T):
        t = T - 1 - step if reverse else step
        z = conv_same(x[t], kernel) + conv_same(h, rkernel) + bias
        i, fg, g, o = z[..., :f], z[..., f:2 * f], z[..., 2 * f:3 * f], z[..., 3 * f:]
        c = sig(fg) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        out[t] = h
    return np.stack(out), h


def numpy_case(c, seed, out_dir):
    rng = np.random.default_rng(seed)
    d, f = c["dims"], c["f"]
    tensors, layers = {}, []
    cin = 1
    for i in range(c["K"]):
        for direction in ("forward", "backward"):
            tensors[f"layers.{i}.{direction}.kernel"] = (0.3 * rng.standard_normal((c["kx"],) * d + (cin, 4 * f))).astype("float32")
            tensors[f"layers.{i}.{direction}.recurrent_kernel"] = (0.3 * rng.standard_normal((c["kh"],) * d + (f, 4 * f))).astype("float32")
            tensors[f"layers.{i}.{direction}.bias"] = (0.1 * rng.standard_normal(4 * f)).astype("float32")
        layers.append({"type": "bclstm", "filters": f, "kernel_x": c["kx"], "kernel_h": c["kh"], "return_sequences": i < c["K"] - 1})
        cin = f
    i = c["K"]
    tensors[f"layers.{i}.kernel"] = (0.5 * rng.standard_normal((1,) * d + (f, 2))).astype("float32")
    tensors[f"layers.{i}.bias"] = (0.1 * rng.standard_normal(2)).astype("float32")
    layers.append({"type": "conv", "filters": 2, "kernel": 1, "activation": "linear"})
    os.makedirs(os.path.join(out_dir, "model"), exist_ok=True)
    with open(os.path.join(out_dir, "model", "model.json"), "w") as fh:
        json.dump({"name": "numpy-case", "version": "0", "task": "ncct", "spatial_dims": d, "timepoints": c["T"],
                   "layout": "keras-channels-last", "layers": layers}, fh, indent=2)
    convert.write_safetensors(os.path.join(out_dir, "model", "weights.safetensors"), tensors)
    xin = rng.standard_normal((c["T"],) + tuple(c["size"])).astype("float32")
    x = xin[..., None].astype(np.float64)
    for i in range(c["K"]):
        t = {k.split(".")[-1] + "_" + k.split(".")[2]: v.astype(np.float64) for k, v in tensors.items() if k.startswith(f"layers.{i}.")}
        fs, fh_ = numpy_convlstm(x, t["kernel_forward"], t["recurrent_kernel_forward"], t["bias_forward"], f, False)
        bs, bh = numpy_convlstm(x, t["kernel_backward"], t["recurrent_kernel_backward"], t["bias_backward"], f, True)
        last = i == c["K"] - 1
        x = fh_ + bs[0] if last else fs + bs
    y = x @ tensors[f"layers.{c['K']}.kernel"].reshape(f, 2).astype(np.float64) + tensors[f"layers.{c['K']}.bias"]
    return xin, np.moveaxis(y, -1, 0).astype("float32")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    names = []
    for n, c in enumerate(KERAS_CASES):
        name = "keras-%02d-%dd-K%d-f%d-k%d-T%d-%s" % (n, c["dims"], c["K"], c["f"], c["k"], c["T"], "seq" if c["seq"] else "last")
        if c.get("cin", 1) > 1:
            name += "-c%d" % c["cin"]
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        model, xin, y = keras_case(c, 1000 + n)
        model.save(os.path.join(d, "model.keras"))
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "convert.py"), os.path.join(d, "model.keras"),
                        os.path.join(d, "model"), "--name", name], check=True, stdout=subprocess.DEVNULL)
        np.save(os.path.join(d, "in.npy"), xin)
        np.save(os.path.join(d, "expected.npy"), y.astype("float32"))
        names.append(name)
    for n, c in enumerate(NUMPY_CASES):
        name = "numpy-%02d-%dd-K%d-f%d-kx%d-kh%d-T%d" % (n, c["dims"], c["K"], c["f"], c["kx"], c["kh"], c["T"])
        d = os.path.join(out, name)
        xin, y = numpy_case(c, 2000 + n, d)
        np.save(os.path.join(d, "in.npy"), xin)
        np.save(os.path.join(d, "expected.npy"), y)
        names.append(name)
    with open(os.path.join(out, "cases.json"), "w") as fh:
        json.dump(names, fh, indent=1)
    print("\n".join(names))


if __name__ == "__main__":
    main()
