"""Three trained 28x28 CNNs shipped as ONNX files: two on Fashion-MNIST, one on MNIST.

=================  ==============  ===================================================  ========
name               data set        layers                                               MACs/img
=================  ==============  ===================================================  ========
``fmnist_vgg``     Fashion-MNIST   3x3 convs 16-32 (padding 1), each + ReLU + 2x2 max   1.22 M
                                   pool; FC 1568-128-10
``fmnist_resnet``  Fashion-MNIST   stem conv 16 + BN + pool; two residual blocks (16,   1.73 M
                                   32 stride 2 with a 1x1 shortcut), BN after every
                                   conv; FC 1568-10
``mnist_lenet``    MNIST           5x5 convs 16-32 (no padding) + ReLU + 2x2 max pool;  1.12 M
                                   FC 512-128-10
=================  ==============  ===================================================  ========

Float top-1 on the full test sets: 90.48%, 91.72% and 99.17% (:func:`model_info`).

Inputs are ``(1, 28, 28)`` pixels divided by 255 (no mean subtraction: activations stay
non-negative). ``python -m shiftsim.models.train_mnist_family`` trains them with torch (seeded)
and writes the ONNX files (batch norm left as BatchNormalization nodes, which the ONNX reader
folds) and ``mnist_family.json`` with each model's float top-1 on its full test set; loading
them needs ``onnx`` and never torch.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from shiftsim.datasets import ImageSet, load_fashion_mnist, load_mnist
from shiftsim.network import Network

__all__ = ["MODELS", "load_model", "model_info", "model_path", "model_test_set"]

MODELS: dict[str, str] = {
    "fmnist_vgg": "fashion_mnist",
    "fmnist_resnet": "fashion_mnist",
    "mnist_lenet": "mnist",
}
"""Model name -> the data set it was trained on."""


def _data_dir() -> Path:
    return Path(str(resources.files("shiftsim") / "data"))


def _check(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"name must be one of {tuple(MODELS)}, got {name!r}")


def model_path(name: str) -> Path:
    """Path of the shipped ONNX file of model ``name``."""
    _check(name)
    return _data_dir() / f"{name}.onnx"


def model_info(name: str) -> dict[str, Any]:
    """What training recorded: float test top-1, epochs, seed, parameters, MACs per image."""
    _check(name)
    with open(_data_dir() / "mnist_family.json", encoding="utf-8") as f:
        return dict(json.load(f)[name])


def load_model(name: str) -> Network:
    """The trained network ``name`` (needs the ``onnx`` package).

    Examples
    --------
    >>> net = load_model("mnist_lenet")
    >>> net.input_shape, [n.name for n in net.conv_nodes]
    ((1, 28, 28), ['conv1', 'conv2', 'fc1', 'fc2'])
    """
    from shiftsim.io.onnx_io import read_onnx

    net = read_onnx(model_path(name))
    net.name = name
    return net


def model_test_set(name: str, path: str | Path | None = None) -> ImageSet:
    """The full test split of the data set model ``name`` was trained on."""
    _check(name)
    if MODELS[name] == "mnist":
        return load_mnist("test", path)
    return load_fashion_mnist("test", path)
