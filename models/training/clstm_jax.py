"""The bidirectional ConvLSTM stack in plain JAX, for fast training on CPU.

Keras 3's ConvLSTM2D convolves the input at every step inside its scan; here the input
convolution of all time points is one batched convolution up front (as perfd's engine
does), and a training step is one jitted function with Adam — several times faster on
this machine's two cores. The parameters keep Keras's layout (kernel [3, 3, C_in, 4f],
recurrent_kernel [3, 3, f, 4f], bias [4f], gates i, f, c, o; head kernel [1, 1, f, C]), and
`to_keras` copies them into the Keras model of train.build, checked against Keras's own
prediction before models/convert.py writes the model directory.
"""
from functools import partial

import numpy as np
import jax
import jax.numpy as jnp
from jax import lax


def conv(x, w):
    """'same' cross-correlation, channels last: x (N, H, W, C), w (k, k, C, O), as im2col and
    one matrix product (XLA's CPU convolution is ~10× slower for these few channels)."""
    k = w.shape[0]
    N, H, W, C = x.shape
    if k == 1:
        return jnp.einsum("nhwc,co->nhwo", x, w[0, 0])
    r = k // 2
    xp = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
    cols = jnp.concatenate([xp[:, dy:dy + H, dx:dx + W, :] for dy in range(k) for dx in range(k)], axis=-1)
    return (cols.reshape(-1, k * k * C) @ w.reshape(k * k * C, -1)).reshape(N, H, W, -1)


def init(filters, channels, seed, c_in=1):
    rng = np.random.default_rng(seed)
    params = []
    for f in filters:
        layer = {}
        for d in ("forward", "backward"):
            lim = np.sqrt(6 / (9 * c_in + 4 * f))
            bias = np.zeros(4 * f, np.float32)
            bias[f:2 * f] = 1.0   # Keras's unit_forget_bias
            layer[d] = {"kernel": rng.uniform(-lim, lim, (3, 3, c_in, 4 * f)).astype(np.float32),
                        "recurrent_kernel": (rng.standard_normal((3, 3, f, 4 * f)) / np.sqrt(9 * f)).astype(np.float32),
                        "bias": bias}
        params.append(layer)
        c_in = f
    lim = np.sqrt(6 / (c_in + channels))
    params.append({"kernel": rng.uniform(-lim, lim, (1, 1, c_in, channels)).astype(np.float32),
                   "bias": np.zeros(channels, np.float32)})
    return jax.tree_util.tree_map(jnp.asarray, params)


def direction(xs, p, reverse):
    """xs (T, B, H, W, C) → hidden states (T, B, H, W, f) in time order, and the final state."""
    T, B, H, W, C = xs.shape
    f = p["recurrent_kernel"].shape[-1] // 4
    z = conv(xs.reshape(T * B, H, W, C), p["kernel"]).reshape(T, B, H, W, 4 * f) + p["bias"]
    if reverse:
        z = z[::-1]

    def step(carry, zt):
        h, c = carry
        g = zt + conv(h, p["recurrent_kernel"])
        i, fg, cc, o = jnp.split(g, 4, axis=-1)
        c = jax.nn.sigmoid(fg) * c + jax.nn.sigmoid(i) * jnp.tanh(cc)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zero = jnp.zeros((B, H, W, f), xs.dtype)
    (h, _), hs = lax.scan(step, (zero, zero), z)
    return (hs[::-1] if reverse else hs), h


def forward(params, x):
    """x (B, T, H, W, C_in) → (B, H, W, C): the last layer returns its final states (summed)."""
    xs = jnp.moveaxis(x, 1, 0)
    for n, layer in enumerate(params[:-1]):
        hf, lf = direction(xs, layer["forward"], False)
        hb, lb = direction(xs, layer["backward"], True)
        xs = hf + hb if n < len(params) - 2 else lf + lb
    head = params[-1]
    return jnp.einsum("bhwc,co->bhwo", xs, head["kernel"][0, 0]) + head["bias"]


def loss_fn(params, x, y, w, cw=None, kind="mse"):
    """Weighted mean error over voxels (weights w (B, H, W, 1)) and outputs (weights cw (C,),
    default 1): "mse" squares the error; "l1" takes a smoothed |error|, sqrt(e² + 1e-4),
    which follows the median rather than the mean and does not let the largest errors
    dominate (with log-scaled targets, |error| is close to the relative error)."""
    e = forward(params, x) - y
    err = e * e if kind == "mse" else jnp.sqrt(e * e + 1e-4) - 1e-2
    cw = jnp.ones(y.shape[-1]) if cw is None else cw
    return jnp.sum(err * w * cw) / (jnp.sum(w) * jnp.sum(cw) + 1e-6)


def adam_step(params, state, grads, lr, b1=0.9, b2=0.999, eps=1e-7, clip=1.0):
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
    grads = jax.tree_util.tree_map(lambda g: g * jnp.minimum(1.0, clip / (norm + 1e-12)), grads)
    t = state["t"] + 1
    m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state["m"], grads)
    v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, state["v"], grads)
    scale = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    params = jax.tree_util.tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps), params, m, v)
    return params, {"t": t, "m": m, "v": v}


def adam_state(params):
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return {"t": jnp.asarray(0.0), "m": zeros, "v": jax.tree_util.tree_map(jnp.zeros_like, params)}


@partial(jax.jit, static_argnames="kind")
def train_step(params, state, x, y, w, lr, cw=None, kind="mse"):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y, w, cw, kind)
    params, state = adam_step(params, state, grads, lr)
    return params, state, loss


eval_loss = jax.jit(loss_fn, static_argnames="kind")


def to_keras(params, model):
    """Copies the parameters into the Keras model built by train.build (same filters)."""
    import keras
    bidis = [l for l in model.layers if isinstance(l, keras.layers.Bidirectional)]
    for layer, p in zip(bidis, params[:-1]):
        for d, sub in (("forward", layer.forward_layer), ("backward", layer.backward_layer)):
            sub.cell.kernel.assign(np.asarray(p[d]["kernel"]))
            sub.cell.recurrent_kernel.assign(np.asarray(p[d]["recurrent_kernel"]))
            sub.cell.bias.assign(np.asarray(p[d]["bias"]))
    head = model.layers[-1]
    head.kernel.assign(np.asarray(params[-1]["kernel"]))
    head.bias.assign(np.asarray(params[-1]["bias"]))
    return model
