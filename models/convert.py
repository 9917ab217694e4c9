#!/usr/bin/env python3
"""Convert a saved Keras 3 model into a perfd model directory.

    python3 models/convert.py SAVED.keras OUT_DIR [--name N --version V --task ncct|perfusion]

The model must be a stack of Bidirectional(ConvLSTM2D|ConvLSTM3D, merge_mode="sum") layers
with padding="same", followed by one Conv2D|Conv3D head (optionally wrapped in
TimeDistributed when the last recurrent layer returns sequences). Weights keep Keras's
channels-last layout — kernel [k..., C_in, 4f] with gates i, f, c, o along the last axis,
recurrent_kernel [k..., f, 4f], bias [4f]; head kernel [k..., f, C], bias [C] — and are
written to weights.safetensors under the names model.json documents (layers.I.forward.kernel,
...). Anything the engine would compute differently is refused with the reason.
"""
import argparse
import json
import os
import struct
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import numpy as np  # noqa: E402
import keras  # noqa: E402


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(np.shape(array)), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def refuse(message):
    sys.exit(f"convert.py: {message}")


def check_cell(layer, where):
    cfg = layer.get_config()
    if cfg.get("padding") != "same":
        refuse(f"{where}: padding is {cfg.get('padding')!r}; perfd computes padding='same'")
    if any(s != 1 for s in cfg.get("strides", (1,))) or any(d != 1 for d in cfg.get("dilation_rate", (1,))):
        refuse(f"{where}: strides and dilation must be 1")
    if cfg.get("activation") != "tanh" or cfg.get("recurrent_activation") != "sigmoid":
        refuse(f"{where}: activation must be tanh and recurrent_activation sigmoid "
               f"(got {cfg.get('activation')}, {cfg.get('recurrent_activation')})")
    if not cfg.get("use_bias", True):
        refuse(f"{where}: use_bias=False is not supported")
    k = cfg["kernel_size"]
    if len(set(k)) != 1 or k[0] % 2 == 0:
        refuse(f"{where}: kernel_size {k} must be cubic/square and odd")
    return k[0]


def convert(model, out_dir, name, version, task, extra=None):
    layers, tensors, dims, timepoints = [], {}, None, None
    shape = model.inputs[0].shape  # (batch, T, ..., C)
    if shape[1] is not None:
        timepoints = int(shape[1])
    body = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    for n, layer in enumerate(body):
        where = f"layer {n} ({layer.name})"
        last = n == len(body) - 1
        if isinstance(layer, keras.layers.Bidirectional):
            inner = layer.forward_layer
            kind = type(inner).__name__
            if kind not in ("ConvLSTM2D", "ConvLSTM3D"):
                refuse(f"{where}: Bidirectional({kind}) is not a ConvLSTM2D/3D")
            if layer.merge_mode != "sum":
                refuse(f"{where}: merge_mode is {layer.merge_mode!r}; perfd sums the directions (merge_mode='sum')")
            d = 2 if kind == "ConvLSTM2D" else 3
            if dims not in (None, d):
                refuse(f"{where}: mixes 2D and 3D layers")
            dims = d
            k = check_cell(inner, where)
            i = len(layers)
            for direction, sub in (("forward", layer.forward_layer), ("backward", layer.backward_layer)):
                cell = sub.cell
                tensors[f"layers.{i}.{direction}.kernel"] = np.asarray(cell.kernel)
                tensors[f"layers.{i}.{direction}.recurrent_kernel"] = np.asarray(cell.recurrent_kernel)
                tensors[f"layers.{i}.{direction}.bias"] = np.asarray(cell.bias)
            layers.append({"type": "bclstm", "filters": int(inner.filters), "kernel_x": k, "kernel_h": k,
                           "return_sequences": bool(inner.return_sequences)})
        elif last:
            conv = layer.layer if isinstance(layer, keras.layers.TimeDistributed) else layer
            if type(conv).__name__ not in ("Conv2D", "Conv3D"):
                refuse(f"{where}: the head must be Conv2D/Conv3D, got {type(conv).__name__}")
            cfg = conv.get_config()
            act = cfg.get("activation", "linear")
            if act not in ("linear", "relu"):
                refuse(f"{where}: head activation {act!r} (linear or relu)")
            k = cfg["kernel_size"]
            if cfg.get("padding") != "same" and any(x != 1 for x in k):
                refuse(f"{where}: a head kernel larger than 1 needs padding='same'")
            i = len(layers)
            tensors[f"layers.{i}.kernel"] = np.asarray(conv.kernel)
            tensors[f"layers.{i}.bias"] = np.asarray(conv.bias)
            layers.append({"type": "conv", "filters": int(conv.filters), "kernel": int(k[0]), "activation": act})
        else:
            refuse(f"{where}: {type(layer).__name__} is not supported (Bidirectional ConvLSTM layers, then one conv head)")
    if not layers or layers[-1]["type"] != "conv":
        refuse("the model must end with a Conv2D/Conv3D head")
    os.makedirs(out_dir, exist_ok=True)
    spec = {
        "name": name, "version": version, "task": task, "spatial_dims": dims, "timepoints": timepoints,
        "layout": "keras-channels-last", "layers": layers,
        # C_in of the first layer; perfd then takes (T, ..spatial.., C) (1: (T, ..spatial..)).
        **({"input_channels": int(shape[-1])} if int(shape[-1]) != 1 else {}),
        "provenance": {"converted_from": "Keras " + keras.__version__ + " (" + keras.backend.backend() + ")"},
    }
    spec.update(extra or {})
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(spec, f, indent=2)
    write_safetensors(os.path.join(out_dir, "weights.safetensors"), tensors)
    return spec


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("saved")
    p.add_argument("out_dir")
    p.add_argument("--name", default=None)
    p.add_argument("--version", default="0.0.0")
    p.add_argument("--task", default="ncct", choices=["ncct", "perfusion"])
    a = p.parse_args()
    model = keras.saving.load_model(a.saved)
    convert(model, a.out_dir, a.name or os.path.splitext(os.path.basename(a.saved))[0], a.version, a.task)
    print(f"wrote {a.out_dir}/model.json and weights.safetensors")


if __name__ == "__main__":
    main()
