"""Train the three shipped 28x28 CNNs with torch and write them as ONNX files.

Usage::

    python -m shiftsim.models.train_mnist_family [--models fmnist_vgg,...] [--out DIR]
        [--epochs N] [--seed S] [--threads T]

Needs torch (``pip install 'shiftsim[train]'``) and onnx, and the data sets (see
:mod:`shiftsim.datasets`). Seeded and deterministic on the CPU (same torch build, same thread
count): Adam, batch 128, learning rate 1e-3 with a cosine decay, no augmentation, on the full
training split (Fashion-MNIST 60,000; MNIST train + validation, 60,000). Each model is written
by hand as an ONNX graph of Conv, BatchNormalization, Relu, MaxPool, Add, Flatten and Gemm, read
back with :func:`shiftsim.io.onnx_io.read_onnx`, and its float top-1 on the full test set is
measured with shiftsim's own float network (no torch) and recorded with torch's in
``mnist_family.json``; the two must agree.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shiftsim.datasets import ImageSet, batches, load_fashion_mnist, load_mnist
from shiftsim.models.mnist_family import MODELS, _data_dir

__all__ = ["EPOCHS", "build", "main", "to_onnx", "train"]

EPOCHS = {"fmnist_vgg": 8, "fmnist_resnet": 5, "mnist_lenet": 8}


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("training needs torch: pip install 'shiftsim[train]'") from None
    return torch


def build(name: str) -> Any:
    """The untrained torch module of model ``name`` (architectures in ``mnist_family``)."""
    torch = _torch()
    nn = torch.nn

    class Vgg(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
            self.fc1 = nn.Linear(1568, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x: Any) -> Any:
            f = torch.nn.functional
            x = f.max_pool2d(f.relu(self.conv1(x)), 2)
            x = f.max_pool2d(f.relu(self.conv2(x)), 2)
            return self.fc2(f.relu(self.fc1(x.flatten(1))))

    class ResNet(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
            self.stem_bn = nn.BatchNorm2d(16)
            self.b1c1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
            self.b1c1_bn = nn.BatchNorm2d(16)
            self.b1c2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
            self.b1c2_bn = nn.BatchNorm2d(16)
            self.b2c1 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
            self.b2c1_bn = nn.BatchNorm2d(32)
            self.b2c2 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
            self.b2c2_bn = nn.BatchNorm2d(32)
            self.b2sc = nn.Conv2d(16, 32, 1, stride=2, bias=False)
            self.b2sc_bn = nn.BatchNorm2d(32)
            self.fc = nn.Linear(1568, 10)

        def forward(self, x: Any) -> Any:
            f = torch.nn.functional
            x = f.max_pool2d(f.relu(self.stem_bn(self.stem(x))), 2)
            y = f.relu(self.b1c1_bn(self.b1c1(x)))
            x = f.relu(self.b1c2_bn(self.b1c2(y)) + x)
            y = f.relu(self.b2c1_bn(self.b2c1(x)))
            x = f.relu(self.b2c2_bn(self.b2c2(y)) + self.b2sc_bn(self.b2sc(x)))
            return self.fc(x.flatten(1))

    class LeNet(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 5)
            self.conv2 = nn.Conv2d(16, 32, 5)
            self.fc1 = nn.Linear(512, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x: Any) -> Any:
            f = torch.nn.functional
            x = f.max_pool2d(f.relu(self.conv1(x)), 2)
            x = f.max_pool2d(f.relu(self.conv2(x)), 2)
            return self.fc2(f.relu(self.fc1(x.flatten(1))))

    classes = {"fmnist_vgg": Vgg, "fmnist_resnet": ResNet, "mnist_lenet": LeNet}
    if name not in classes:
        raise ValueError(f"name must be one of {tuple(classes)}, got {name!r}")
    return classes[name]()


def _train_set(name: str) -> ImageSet:
    if MODELS[name] == "fashion_mnist":
        return load_fashion_mnist("train")
    a, b = load_mnist("train"), load_mnist("validation")
    return ImageSet(
        np.concatenate([a.images, b.images]), np.concatenate([a.labels, b.labels]), a.source
    )


def _test_set(name: str) -> ImageSet:
    return load_fashion_mnist("test") if MODELS[name] == "fashion_mnist" else load_mnist("test")


def _torch_top1(model: Any, data: ImageSet) -> float:
    torch = _torch()
    model.eval()
    right = 0
    with torch.no_grad():
        for x, y in batches(data, 1000):
            pred = model(torch.from_numpy(x.astype(np.float32))).argmax(1).numpy()
            right += int(np.sum(pred == y))
    return right / len(data)


def train(name: str, *, epochs: int, seed: int = 0, log: Any = print) -> tuple[Any, float]:
    """Train model ``name``; return the module (eval mode) and its torch test top-1."""
    torch = _torch()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    model = build(name)
    data = _train_set(name)
    x_all = torch.from_numpy(data.images.astype(np.float32) / 255.0)
    y_all = torch.from_numpy(data.labels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = epochs * math.ceil(len(data) / 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        model.train()
        t0, total = time.perf_counter(), 0.0
        order = torch.from_numpy(rng.permutation(len(data)))
        for start in range(0, len(data), 128):
            idx = order[start : start + 128]
            loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = _torch_top1(model, _test_set(name))
        log(
            f"{name} epoch {epoch + 1}/{epochs}: loss {total / len(data):.4f}, "
            f"test top-1 {acc:.4f}, {time.perf_counter() - t0:.0f} s"
        )
    model.eval()
    return model, _torch_top1(model, _test_set(name))


def to_onnx(model: Any, name: str) -> Any:
    """Write the trained module as an ONNX model (opset 13), layer by layer."""
    from onnx import TensorProto, helper, numpy_helper

    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    inits: list[Any] = []
    nodes: list[Any] = []

    def param(key: str) -> str:
        inits.append(numpy_helper.from_array(sd[key], key))
        return key

    def conv(layer: str, x: str, *, pad: int, stride: int = 1, bn: bool = False) -> str:
        w = sd[f"{layer}.weight"]
        ins = [x, param(f"{layer}.weight")]
        if f"{layer}.bias" in sd:
            ins.append(param(f"{layer}.bias"))
        out = f"{layer}_out"
        nodes.append(
            helper.make_node(
                "Conv",
                ins,
                [out],
                name=layer,
                kernel_shape=list(w.shape[2:]),
                pads=[pad] * 4,
                strides=[stride, stride],
            )
        )
        if not bn:
            return out
        p = f"{layer}_bn"
        keys = [param(f"{p}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
        nodes.append(
            helper.make_node("BatchNormalization", [out, *keys], [f"{p}_out"], name=p, epsilon=1e-5)
        )
        return f"{p}_out"

    def op(kind: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(kind, ins, [out], name=out, **attrs))
        return out

    def pool(x: str, out: str) -> str:
        return op("MaxPool", [x], out, kernel_shape=[2, 2], strides=[2, 2])

    def gemm(layer: str, x: str) -> str:
        ins = [x, param(f"{layer}.weight"), param(f"{layer}.bias")]
        nodes.append(helper.make_node("Gemm", ins, [layer], name=layer, transB=1))
        return layer

    x = "input"
    if name == "fmnist_vgg":
        for i in (1, 2):
            x = pool(op("Relu", [conv(f"conv{i}", x, pad=1)], f"relu{i}"), f"pool{i}")
        x = op("Relu", [gemm("fc1", op("Flatten", [x], "flatten", axis=1))], "relu4")
        x = gemm("fc2", x)
    elif name == "fmnist_resnet":
        x = pool(op("Relu", [conv("stem", x, pad=1, bn=True)], "stem_relu"), "pool")
        y = op("Relu", [conv("b1c1", x, pad=1, bn=True)], "b1c1_relu")
        x = op("Relu", [op("Add", [conv("b1c2", y, pad=1, bn=True), x], "b1_add")], "b1_relu")
        y = op("Relu", [conv("b2c1", x, pad=1, stride=2, bn=True)], "b2c1_relu")
        sc = conv("b2sc", x, pad=0, stride=2, bn=True)
        x = op("Relu", [op("Add", [conv("b2c2", y, pad=1, bn=True), sc], "b2_add")], "b2_relu")
        x = gemm("fc", op("Flatten", [x], "flatten", axis=1))
    else:
        for i in (1, 2):
            x = pool(op("Relu", [conv(f"conv{i}", x, pad=0)], f"relu{i}"), f"pool{i}")
        x = op("Relu", [gemm("fc1", op("Flatten", [x], "flatten", axis=1))], "relu3")
        x = gemm("fc2", x)
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model_proto.ir_version = 8
    return model_proto


def _shiftsim_top1(path: Path, name: str) -> tuple[float, int, int]:
    """Float top-1 of the ONNX file read by shiftsim, its parameters and MACs per image."""
    from shiftsim.io.onnx_io import read_onnx

    net = read_onnx(path)
    right = 0
    data = _test_set(name)
    for x, y in batches(data, 1000):
        outs = net.forward_float(x)
        right += int(np.sum(outs[net.nodes[-1].name].argmax(1) == y))
    params = sum(
        int(n.weight.size) + (0 if n.bias is None else int(n.bias.size))  # type: ignore[union-attr]
        for n in net.conv_nodes
    )
    shapes = net.layer_input_shapes(1)
    macs = sum(n.layer.macs(shapes[n.name]) for n in net.conv_nodes)  # type: ignore[union-attr]
    return right / len(data), params, macs


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: package)")
    p.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch = _torch()
    import onnx

    torch.set_num_threads(args.threads)
    out = _data_dir() if args.out is None else args.out
    out.mkdir(parents=True, exist_ok=True)
    info_path = out / "mnist_family.json"
    for name in args.models.split(","):
        if name not in MODELS:
            p.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        epochs = args.epochs or EPOCHS[name]
        t0 = time.perf_counter()
        model, torch_top1 = train(name, epochs=epochs, seed=args.seed)
        path = out / f"{name}.onnx"
        onnx.save(to_onnx(model, name), str(path))
        top1, params, macs = _shiftsim_top1(path, name)
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        info[name] = {
            "dataset": MODELS[name],
            "float_top1": top1,
            "torch_top1": torch_top1,
            "epochs": epochs,
            "seed": args.seed,
            "params": params,
            "macs_per_image": macs,
            "train_seconds": round(time.perf_counter() - t0),
            "torch": torch.__version__,
        }
        print(f"{name}: float top-1 {top1:.4f} (torch {torch_top1:.4f}), {params} parameters")
        if abs(top1 - torch_top1) > 2e-4:
            print(f"{name}: shiftsim and torch disagree", file=sys.stderr)
            return 1
        info_path.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
