"""The built-in digits CNN: a small network for scikit-learn's 8x8 handwritten digits.

Architecture (input ``(1, 8, 8)``, pixel values 0..16 divided by 16)::

    conv1  Conv2d(1, 8, 3, padding=1)  -> relu1 -> pool1 MaxPool 2x2  -> (8, 4, 4)
    conv2  Conv2d(8, 16, 3, padding=1) -> relu2 -> pool2 MaxPool 2x2  -> (16, 2, 2)
    flatten -> fc Linear(64, 10)                                      -> 10 logits

The weights ship in ``shiftsim/data/digits_cnn.npz``, written by
``python -m shiftsim.models.train_digits`` (pure numpy, float64, seeded, deterministic), together
with the fixed test split (360 images, uint8) so a fresh install needs no scikit-learn to run it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from shiftsim.layers import Conv2d, Linear
from shiftsim.network import Network, Node
from shiftsim.network.ops import Conv, Flatten, MaxPool, Relu

__all__ = [
    "N_TEST",
    "SPLIT_SEED",
    "digits_network",
    "digits_nodes",
    "digits_test_split",
    "load_digits_split",
    "weights_path",
]

SPLIT_SEED = 0
"""Seed of the permutation that splits the 1797 images: the first ``N_TEST`` are the test set."""
N_TEST = 360

LAYERS: dict[str, Conv2d | Linear] = {
    "conv1": Conv2d(1, 8, 3, padding=1),
    "conv2": Conv2d(8, 16, 3, padding=1),
    "fc": Linear(64, 10),
}


def weights_path() -> Path:
    """Path of the shipped weights file."""
    return Path(str(resources.files("shiftsim") / "data" / "digits_cnn.npz"))


def digits_nodes(params: dict[str, NDArray[np.float64]]) -> list[Node]:
    """The network's nodes with the given ``NAME.weight`` / ``NAME.bias`` arrays."""

    def conv(name: str) -> Node:
        return Conv(
            name=name,
            layer=LAYERS[name],
            weight=params[f"{name}.weight"],
            bias=params[f"{name}.bias"],
        )

    return [
        conv("conv1"),
        Relu(name="relu1"),
        MaxPool(name="pool1", kernel_size=(2, 2)),
        conv("conv2"),
        Relu(name="relu2"),
        MaxPool(name="pool2", kernel_size=(2, 2)),
        Flatten(name="flatten"),
        conv("fc"),
    ]


def _load(path: str | Path | None, required: tuple[str, ...]) -> dict[str, NDArray[np.generic]]:
    from shiftsim.io.weights import read_npz

    return read_npz(weights_path() if path is None else Path(path), required=required)


def digits_network(weights: str | Path | None = None) -> Network:
    """The digits CNN with the shipped weights (or those of another .npz from the script).

    Examples
    --------
    >>> net = digits_network()
    >>> [n.name for n in net.conv_nodes], net.input_shape
    (['conv1', 'conv2', 'fc'], (1, 8, 8))
    """
    data = _load(weights, tuple(f"{n}.{p}" for n in LAYERS for p in ("weight", "bias")))
    params = {k: np.asarray(v, dtype=np.float64) for k, v in data.items() if "." in k}
    return Network(digits_nodes(params), input_shape=(1, 8, 8), name="digits")


def digits_test_split(
    weights: str | Path | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The fixed test split shipped with the weights: ``x (360, 1, 8, 8)`` in [0, 1], labels.

    Examples
    --------
    >>> x, y = digits_test_split()
    >>> x.shape, y.shape, float(x.max())
    ((360, 1, 8, 8), (360,), 1.0)
    """
    data = _load(weights, ("x_test", "y_test"))
    x = data["x_test"].astype(np.float64).reshape(-1, 1, 8, 8) / 16.0
    return x, data["y_test"].astype(np.int64)


def load_digits_split() -> tuple[
    NDArray[np.float64], NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]
]:
    """Train and test splits of scikit-learn's digits (needs scikit-learn).

    Returns
    -------
    x_train, y_train, x_test, y_test
        Images ``(n, 1, 8, 8)`` scaled to [0, 1] and integer labels; the test split is the
        first ``N_TEST`` of a ``default_rng(SPLIT_SEED)`` permutation.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "training the digits CNN needs scikit-learn: pip install 'shiftsim[examples]'"
        ) from None
    digits = load_digits()
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(digits.target))
    x = digits.images.astype(np.float64).reshape(-1, 1, 8, 8) / 16.0
    y = digits.target.astype(np.int64)
    test, train = perm[:N_TEST], perm[N_TEST:]
    return x[train], y[train], x[test], y[test]
