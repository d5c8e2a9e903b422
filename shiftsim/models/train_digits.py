"""Train the built-in digits CNN in pure numpy and write its weights.

Usage::

    python -m shiftsim.models.train_digits [--out FILE] [--epochs N] [--seed S]

Float64 throughout, seeded (He-normal initialisation, minibatch order), full-batch-free Adam
on softmax cross-entropy; a few seconds on a laptop. With the defaults it reproduces the shipped
``shiftsim/data/digits_cnn.npz`` (to float rounding of the BLAS in use). The file also stores
the test split (uint8 pixels 0..16 and labels) and the float test accuracy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from shiftsim.models.digits import LAYERS, N_TEST, load_digits_split, weights_path

__all__ = ["accuracy", "forward", "main", "train"]

Params = dict[str, NDArray[np.float64]]


def _im2col(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """3x3, padding 1, stride 1: ``(B, C, H, W)`` -> ``(B, C*9, H*W)``."""
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((b, c, 3, 3, h, w))
    for i in range(3):
        for j in range(3):
            cols[:, :, i, j] = xp[:, :, i : i + h, j : j + w]
    return cols.reshape(b, c * 9, h * w)


def _col2im(cols: NDArray[np.float64], shape: tuple[int, ...]) -> NDArray[np.float64]:
    b, c, h, w = shape
    cols = cols.reshape(b, c, 3, 3, h, w)
    xp = np.zeros((b, c, h + 2, w + 2))
    for i in range(3):
        for j in range(3):
            xp[:, :, i : i + h, j : j + w] += cols[:, :, i, j]
    return xp[:, :, 1:-1, 1:-1]


def _conv(p: Params, name: str, x: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    b, _, h, w = x.shape
    cols = _im2col(x)
    wm = p[f"{name}.weight"].reshape(len(p[f"{name}.weight"]), -1)
    y = np.matmul(wm, cols) + p[f"{name}.bias"][None, :, None]
    return y.reshape(b, -1, h, w), cols


def _pool(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    b, c, h, w = x.shape
    win = x.reshape(b, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    win = win.reshape(b, c, h // 2, w // 2, 4)
    arg = win.argmax(axis=-1)
    return np.take_along_axis(win, arg[..., None], -1)[..., 0], arg


def _unpool(dy: NDArray[np.float64], arg: NDArray[np.intp]) -> NDArray[np.float64]:
    b, c, h2, w2 = dy.shape
    win = np.zeros((b, c, h2, w2, 4))
    np.put_along_axis(win, arg[..., None], dy[..., None], -1)
    win = win.reshape(b, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return win.reshape(b, c, h2 * 2, w2 * 2)


def forward(p: Params, x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Logits of the float network, ``(B, 10)``."""
    return _forward(p, x)[0]


def _forward(p: Params, x: NDArray[np.float64]) -> tuple[NDArray[np.float64], dict]:
    z1, c1 = _conv(p, "conv1", x)
    a1 = np.maximum(z1, 0)
    m1, g1 = _pool(a1)
    z2, c2 = _conv(p, "conv2", m1)
    a2 = np.maximum(z2, 0)
    m2, g2 = _pool(a2)
    f = m2.reshape(len(x), -1)
    logits = f @ p["fc.weight"].T + p["fc.bias"]
    return logits, dict(c1=c1, z1=z1, g1=g1, m1=m1, c2=c2, z2=z2, g2=g2, m2=m2, f=f)


def _grads(
    p: Params, x: NDArray[np.float64], y: NDArray[np.int64], decay: float
) -> tuple[float, Params]:
    logits, t = _forward(p, x)
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(x)
    loss = float(-np.log(prob[np.arange(n), y]).mean())
    d = prob
    d[np.arange(n), y] -= 1.0
    d /= n
    g: Params = {"fc.weight": d.T @ t["f"], "fc.bias": d.sum(axis=0)}
    dm2 = (d @ p["fc.weight"]).reshape(t["m2"].shape)
    dz2 = _unpool(dm2, t["g2"]) * (t["z2"] > 0)
    dz2f = dz2.reshape(n, dz2.shape[1], -1)
    g["conv2.weight"] = np.einsum("bop,bkp->ok", dz2f, t["c2"]).reshape(p["conv2.weight"].shape)
    g["conv2.bias"] = dz2f.sum(axis=(0, 2))
    w2 = p["conv2.weight"].reshape(len(p["conv2.weight"]), -1)
    dm1 = _col2im(np.matmul(w2.T, dz2f), t["m1"].shape)
    dz1 = _unpool(dm1, t["g1"]) * (t["z1"] > 0)
    dz1f = dz1.reshape(n, dz1.shape[1], -1)
    g["conv1.weight"] = np.einsum("bop,bkp->ok", dz1f, t["c1"]).reshape(p["conv1.weight"].shape)
    g["conv1.bias"] = dz1f.sum(axis=(0, 2))
    for k in g:
        if k.endswith(".weight"):
            g[k] = g[k] + decay * p[k]
    return loss, g


def accuracy(p: Params, x: NDArray[np.float64], y: NDArray[np.int64]) -> float:
    """Top-1 accuracy of the float network."""
    return float(np.mean(forward(p, x).argmax(axis=1) == y))


def train(
    x: NDArray[np.float64],
    y: NDArray[np.int64],
    *,
    epochs: int = 30,
    seed: int = 0,
    batch: int = 32,
    lr: float = 0.005,
    decay: float = 1e-4,
) -> Params:
    """Train the digits CNN with Adam; deterministic for given data and seed."""
    rng = np.random.default_rng(seed)
    p: Params = {}
    for name, layer in LAYERS.items():
        shape = layer.weight_shape
        fan_in = int(np.prod(shape[1:]))
        p[f"{name}.weight"] = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        p[f"{name}.bias"] = np.zeros(shape[0])
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(val) for k, val in p.items()}
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            _, g = _grads(p, x[idx], y[idx], decay)
            step += 1
            for k in p:
                m[k] = 0.9 * m[k] + 0.1 * g[k]
                v[k] = 0.999 * v[k] + 0.001 * g[k] ** 2
                mh = m[k] / (1 - 0.9**step)
                vh = v[k] / (1 - 0.999**step)
                p[k] = p[k] - lr * mh / (np.sqrt(vh) + 1e-8)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m shiftsim.models.train_digits", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=weights_path(), help="output .npz")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    x_tr, y_tr, x_te, y_te = load_digits_split()
    p = train(x_tr, y_tr, epochs=args.epochs, seed=args.seed)
    acc = accuracy(p, x_te, y_te)
    np.savez_compressed(
        args.out,
        **p,  # type: ignore[arg-type]
        x_test=np.rint(x_te * 16).astype(np.uint8).reshape(N_TEST, 8, 8),
        y_test=y_te.astype(np.uint8),
        float_test_accuracy=np.float64(acc),
    )
    print(f"train acc {accuracy(p, x_tr, y_tr):.4f}, test acc {acc:.4f} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
