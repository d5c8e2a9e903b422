"""Benchmark: every datapath against float32 im2col + BLAS, in one run, per layer and in total.

Bit-exact functional runs (``Datapath.run``, validation included, operands quantized once
beforehand) of every ResNet-18 convolution (224x224, batch 1, padding k//2) on

- ``shift``: ShiftCNN N=2, B=4, 8-bit activations, 32-bit accumulator, WRAP;
- ``shift-sat10``: the same with a 10-bit saturating accumulator (saturation really happens);
- ``mac``: 8-bit fixed-point weights and activations, 32-bit accumulator;
- ``log-lin``: log weights (4 bits) and activations (3 bits), linear accumulation, F = 16;
- ``log-lin-sqrt2``: the same in base sqrt(2) (split mode: two exact products);
- ``log-log``: log-domain accumulation, g = 10 fractional bits, floor merge;

each timed best of ``--repeat`` after a warm-up, against float32 im2col + one BLAS matmul per
group (and PyTorch's float32 ``conv2d`` when torch is installed), with the ratios. The BLAS
and numba thread pools are given time to go idle before each timing. Then throughput:
images per second of every datapath on the layers of the digits CNN, a Fashion-MNIST-sized
CNN and ResNet-18 (its first ``--layers``), a batch of images through each layer (datapath
time only: pooling and requantisation between layers are not included), against float32
BLAS; and the whole digits CNN through ``Network.run`` on its 360 test images (everything
included).

Run::

    python benchmarks/bench_datapaths.py                     # everything (minutes)
    python benchmarks/bench_datapaths.py --layers 1 --repeat 1 --batch 2 --no-resnet-throughput
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_shift import im2col_conv

from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.formats import FixedFormat, LogFormat, Overflow
from shiftsim.io.topology import read_topology
from shiftsim.layers import Conv2d, Linear
from shiftsim.models.digits import digits_network, digits_test_split
from shiftsim.network import RangeWarning

try:
    import torch
except ImportError:  # optional: the PyTorch column is left out
    torch = None

try:
    from threadpoolctl import threadpool_info
except ImportError:  # optional: BLAS details from numpy only
    threadpool_info = None

DATAPATHS: dict[str, Any] = {
    "shift": ShiftAddDatapath(n_codebooks=2, bits=4, act=FixedFormat(8, 0, signed=False)),
    "shift-sat10": ShiftAddDatapath(
        n_codebooks=2, bits=4, act=FixedFormat(8, 0, signed=False), acc_bits=10,
        overflow=Overflow.SAT,
    ),
    "mac": FixedMacDatapath(weight=FixedFormat(8, 7), act=FixedFormat(8, 0, signed=False)),
    "log-lin": LogDatapath(accumulate="linear"),
    "log-lin-sqrt2": LogDatapath(
        act=LogFormat(3, 7, base="sqrt2", signed=False),
        weight=LogFormat(4, 0, base="sqrt2", signed=True),
        accumulate="linear",
    ),
    "log-log": LogDatapath(accumulate="log", log_frac_bits=10),
}  # fmt: skip


def idle() -> None:
    """Let the other library's worker threads stop spinning (OpenBLAS and numba)."""
    time.sleep(0.25)


def best_time(fn: Callable[[], object], repeat: int) -> float:
    idle()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def machine_info() -> None:
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}")
    print(f"numba threads: {numba.get_num_threads()}, threading layer: {numba.threading_layer()}")
    if threadpool_info is not None:
        for pool in threadpool_info():
            print(
                f"thread pool: {pool.get('internal_api')} {pool.get('version')}"
                f" threads={pool.get('num_threads')} arch={pool.get('architecture')}"
            )
    if torch is not None:
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")


def random_operands(rng: np.random.Generator, layer: Conv2d | Linear, x_shape: tuple[int, ...]):
    """He-initialised float weights and post-ReLU activations (half zeros) on a 0..255 scale."""
    conv = layer.as_conv()
    fan_in = conv.channels_per_group * conv.kernel_size[0] * conv.kernel_size[1]
    w = rng.normal(0, np.sqrt(2 / fan_in), size=layer.weight_shape)
    x = np.maximum(rng.normal(0, 1, size=x_shape), 0) * 48
    return w, x


def float_conv(layer: Conv2d | Linear, w32: np.ndarray, x32: np.ndarray) -> np.ndarray:
    if isinstance(layer, Linear):
        return x32 @ w32.T
    return im2col_conv(layer, w32, x32)


def torch_conv(layer: Conv2d | Linear, w32: np.ndarray, x32: np.ndarray) -> Callable[[], object]:
    wt, xt = torch.from_numpy(w32), torch.from_numpy(x32)
    if isinstance(layer, Linear):
        return lambda: torch.nn.functional.linear(xt, wt)
    return lambda: torch.nn.functional.conv2d(
        xt, wt, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
        groups=layer.groups,
    )  # fmt: skip


def time_layer(layer, x_shape, rng, names, repeat):
    """{column: seconds} for one layer: float32 BLAS, torch, every datapath."""
    w, x = random_operands(rng, layer, x_shape)
    w32, x32 = w.astype(np.float32), x.astype(np.float32)
    times = {"blas": best_time(lambda: float_conv(layer, w32, x32), repeat)}
    if torch is not None:
        with torch.no_grad():
            fn = torch_conv(layer, w32, x32)
            fn()
            times["torch"] = best_time(fn, repeat)
    overflows = {}
    for name in names:
        dp = DATAPATHS[name]
        prep = dp.prepare(layer, w, x)
        res = dp.run(layer, prep.code, prep.x_in)  # warm-up (compiles on first use)
        overflows[name] = res.counts.overflows
        times[name] = best_time(lambda: dp.run(layer, prep.code, prep.x_in), repeat)  # noqa: B023
    return times, overflows


def resnet_table(args: argparse.Namespace, names: list[str]) -> None:
    rng = np.random.default_rng(args.seed)
    topo = [t for t in read_topology("resnet18", padding="same") if t.name != "FC"]
    topo = topo[: args.layers]
    cols = ["blas"] + (["torch"] if torch is not None else []) + names
    print("\nResNet-18 convolutions, batch 1: milliseconds (ratio to float32 im2col + BLAS)")
    print(f"{'layer':9s} {'C':>4s} {'Co':>4s} {'HxW':>7s} {'k':>2s} " + " ".join(
        f"{c:>19s}" for c in cols))  # fmt: skip
    total = dict.fromkeys(cols, 0.0)
    for t in topo:
        h, w = t.input_hw
        times, _ = time_layer(t.layer, (1, t.layer.in_channels, h, w), rng, names, args.repeat)
        for c in cols:
            total[c] += times[c]
        cells = " ".join(f"{times[c] * 1e3:10.1f} ({times[c] / times['blas']:5.2f}x)" for c in cols)
        layer = t.layer
        print(
            f"{t.name:9s} {layer.in_channels:4d} {layer.out_channels:4d} {h:3d}x{w:<3d}"
            f" {layer.kernel_size[0]:2d} {cells}"
        )
    cells = " ".join(f"{total[c] * 1e3:10.1f} ({total[c] / total['blas']:5.2f}x)" for c in cols)
    print(f"{'total':9s} {'':21s} {cells}")
    print("total ratios to float32 im2col + BLAS: " + ", ".join(
        f"{c} {total[c] / total['blas']:.2f}x" for c in cols[1:]))  # fmt: skip
    if torch is not None:
        print("total ratios to torch conv2d: " + ", ".join(
            f"{c} {total[c] / total['torch']:.2f}x" for c in names))  # fmt: skip


def networks(
    include_resnet: bool, n_layers: int | None
) -> dict[str, list[tuple[Conv2d | Linear, tuple[int, ...]]]]:
    """Each network's layers with their per-image input shapes."""
    nets: dict[str, list[tuple[Conv2d | Linear, tuple[int, ...]]]] = {
        "digits CNN (8x8)": [
            (Conv2d(1, 8, 3, padding=1), (1, 8, 8)),
            (Conv2d(8, 16, 3, padding=1), (8, 4, 4)),
            (Linear(64, 10), (64,)),
        ],
        "Fashion-MNIST CNN (28x28)": [
            (Conv2d(1, 32, 3, padding=1), (1, 28, 28)),
            (Conv2d(32, 64, 3, padding=1), (32, 14, 14)),
            (Linear(64 * 7 * 7, 128), (64 * 7 * 7,)),
            (Linear(128, 10), (128,)),
        ],
    }
    if include_resnet:
        topo = read_topology("resnet18", padding="same")
        label = "ResNet-18 (224x224)" if n_layers is None else f"ResNet-18, first {n_layers}"
        nets[label] = [
            (Linear(t.layer.in_channels, t.layer.out_channels), (t.layer.in_channels,))
            if t.name == "FC"
            else (t.layer, (t.layer.in_channels, *t.input_hw))
            for t in topo
        ][:n_layers]
    return nets


def throughput_table(args: argparse.Namespace, names: list[str]) -> None:
    rng = np.random.default_rng(args.seed + 1)
    cols = ["blas", *names]
    print("\nThroughput: images/s, a batch through each layer (datapath time only)")
    print(f"{'network':28s} {'batch':>5s} " + " ".join(f"{c:>13s}" for c in cols))
    for net, layers in networks(args.resnet_throughput, args.layers).items():
        batch = args.batch if "ResNet" in net else args.small_batch
        total = dict.fromkeys(cols, 0.0)
        for layer, shape in layers:
            times, _ = time_layer(layer, (batch, *shape), rng, names, args.repeat)
            for c in cols:
                total[c] += times[c]
        print(f"{net:28s} {batch:5d} " + " ".join(f"{batch / total[c]:13.1f}" for c in cols))
    # the whole digits CNN through Network.run (quantization, requantization and pooling too)
    net = digits_network()
    x, _ = digits_test_split()
    rates = []
    with warnings.catch_warnings():  # the 10-bit SAT datapath saturates: warned, not news here
        warnings.simplefilter("ignore", RangeWarning)
        for name in names:
            net.run(x, DATAPATHS[name])  # warm-up
            rates.append(len(x) / best_time(lambda: net.run(x, DATAPATHS[name]), args.repeat))  # noqa: B023
    print(f"{'digits CNN, Network.run':28s} {len(x):5d} {'':>13s} " + " ".join(
        f"{r:13.1f}" for r in rates))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=None, help="only the first N layers")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datapaths", default=",".join(DATAPATHS), help="comma-separated")
    parser.add_argument("--batch", type=int, default=4, help="ResNet-18 throughput batch")
    parser.add_argument("--small-batch", type=int, default=256, help="digits/Fashion batch")
    parser.add_argument("--no-resnet-throughput", dest="resnet_throughput",
                        action="store_false")  # fmt: skip
    parser.add_argument("--no-throughput", dest="throughput", action="store_false")
    args = parser.parse_args()
    names = [n for n in args.datapaths.split(",") if n]
    unknown = [n for n in names if n not in DATAPATHS]
    if unknown:
        parser.error(f"unknown datapath(s) {unknown}; choose from {list(DATAPATHS)}")
    machine_info()
    for name in names:
        print(f"{name}: {DATAPATHS[name]}")
    resnet_table(args, names)
    if args.throughput:
        throughput_table(args, names)


if __name__ == "__main__":
    main()
