#!/usr/bin/env python3
"""Cross-checks perfd's `perfusion` / `ncct` pipeline against this folder's Python reference.

    python3 models/training/check_pipeline.py MODEL_DIR TASK [--perfd BIN]

Writes a phantom (DICOM and npy) with a held-out seed, runs `perfd run --pipeline TASK
--model MODEL_DIR`, and compares maps/*.nii with the same model evaluated in Python on
data.py's input preparation (weights read from weights.safetensors). Differences come from
the input preparation, the engine, and registration's resampling of a motion-free series.
"""
import argparse, json, os, struct, subprocess, sys, tempfile
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import numpy as np
import nibabel as nib
import jax.numpy as jnp
import clstm_jax, data


def load_params(model_dir):
    spec = json.load(open(os.path.join(model_dir, "model.json")))
    raw = open(os.path.join(model_dir, "weights.safetensors"), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    def t(name):
        h = header[name]; a, b = h["data_offsets"]
        return jnp.asarray(np.frombuffer(raw[8 + n + a:8 + n + b], "<f4").reshape(h["shape"]))
    params = []
    for i, l in enumerate(spec["layers"]):
        if l["type"] == "bclstm":
            params.append({d: {k: t(f"layers.{i}.{d}.{k}") for k in ("kernel", "recurrent_kernel", "bias")} for d in ("forward", "backward")})
        else:
            params.append({"kernel": t(f"layers.{i}.kernel"), "bias": t(f"layers.{i}.bias")})
    return spec, params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model"); ap.add_argument("task", choices=["ncct", "perfusion"])
    ap.add_argument("--perfd", default=os.path.join(HERE, "..", "..", ".build", "release", "perfd"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="perfd-check-")
    ph = os.path.join(work, "ph")
    subprocess.run([a.perfd, "phantom", "--output", ph, "--size", "96", "--slices", "3", "--seed", "9050", "--noise", "10",
                    "--format", "both"], check=True, capture_output=True)
    subprocess.run([a.perfd, "run", ph, "--output", work + "/out", "--pipeline", a.task, "--model", a.model], check=True, capture_output=True)
    spec, params = load_params(a.model)
    series = np.load(os.path.join(ph, "series.npy")).astype(np.float32)
    times = np.asarray(json.load(open(os.path.join(ph, "truth.json")))["frame_times_s"])
    if a.task == "ncct":
        n = spec["input_normalisation"]
        x, soft = ((series + n["offset"]) / n["scale"])[..., None], None
    else:
        tissue, art, _, _ = data.perfusion_input(series, times, spec.get("preprocessing", "aif-aligned-delta-hu"))
        x = data.stack_channels(tissue, art)
        x = x if art is not None else x[..., None]
        soft = (series[:2].mean(0) >= -50) & (series[:2].mean(0) <= 150)
    y = np.stack([np.asarray(clstm_jax.forward(params, jnp.asarray(x[:, z][None])))[0] for z in range(x.shape[1])])
    for c, o in enumerate(spec["outputs"]):
        ref = (np.exp(y[..., c]) if o.get("transform") == "exp" else y[..., c]) * o["scale"] + o["offset"]
        if spec.get("residual_mean_frames"):
            ref = ref + series[:spec["residual_mean_frames"]].mean(axis=0)
        if soft is not None:
            ref = np.where(soft, np.maximum(ref, 0), 0)
        got = np.asarray(nib.load(f"{work}/out/maps/{o['name']}.nii").dataobj).transpose(2, 1, 0)
        d = np.abs(got - ref)
        print(f"{o['name']}: median |perfd − python| {np.median(d):.4g}, 99th percentile {np.percentile(d, 99):.4g}, "
              f"max {d.max():.4g} [{o['unit']}]; reference range {ref.min():.3g}…{ref.max():.3g}")


if __name__ == "__main__":
    main()
