"""Benchmark: simulated cycles per second of the cycle model; the analytic model's time.

Cycle model: ResNet-18's ``Conv2_1a`` (64 -> 64 channels, 3x3, 56x56, padding 1) on
``Hardware.paper()`` and ``Hardware.edge()``, ShiftCNN N=2, B=4, the 8-bit MAC datapath and
the log datapath (log accumulation), after a warm-up (compilation excluded), best of
``--repeat`` runs; it also checks the cycle model against the analytic model (given the
data) on every count but the overflows. Analytic model: every layer of ResNet-18 and
GoogLeNet (``padding="same"``) on every preset, best of ``--repeat`` passes, in ms per
layer (the mapping search included). Then the machine.

Run::

    python benchmarks/bench_cycle.py
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import numpy as np

from shiftsim.cost import estimate
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.hardware import Hardware
from shiftsim.io.topology import read_topology
from shiftsim.layers import Conv2d
from shiftsim.quantize import LogCode, quantize_log, quantize_shiftcnn


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def x_small(x):
    """The top-left 4x4 corner of an input (raw array or log codes), to compile on."""
    if isinstance(x, LogCode):
        return LogCode(exponent=x.exponent[:, :, :4, :4], sign=x.sign[:, :, :4, :4],
                       format=x.format)  # fmt: skip
    return x[:, :, :4, :4]


def lane_ops(c) -> int:
    """Work done by the lanes: selections, multiplications or exponent additions."""
    return c.selects + c.multiplies + c.exponent_adds


def bench_cycle(repeat: int) -> None:
    rng = np.random.default_rng(0)
    tl = next(t for t in read_topology("resnet18", padding="same") if t.name == "Conv2_1a")
    layer, (h, w) = tl.layer, tl.input_hw
    x = rng.integers(0, 256, size=(1, layer.in_channels, h, w))
    code = quantize_shiftcnn(rng.normal(size=layer.weight_shape), 2, 4)
    w_raw = rng.integers(-128, 128, size=layer.weight_shape)
    log = LogDatapath(accumulate="log")
    w_log = quantize_log(rng.normal(scale=0.1, size=layer.weight_shape), 4, 0)
    x_log = quantize_log(np.maximum(rng.normal(size=x.shape), 0), 3, 7, signed=False)
    print(f"cycle model, {tl.name}: {layer}, input {x.shape}")
    for hw_name, hw in (("paper", Hardware.paper()), ("edge", Hardware.edge())):
        for dp_name, dp, wcode, xin in (
            ("shift N=2 B=4", ShiftAddDatapath(), code, x),
            ("mac 8-bit", FixedMacDatapath(), w_raw, x),
            ("log 4b/3b, log", log, w_log, x_log),
        ):
            small = Conv2d(layer.in_channels, layer.out_channels, 3, padding=1)
            dp.run(small, wcode, x_small(xin), level="cycle", hardware=hw)  # compile
            t, res = best_time(
                lambda dp=dp, wcode=wcode, hw=hw, xin=xin: dp.run(
                    layer, wcode, xin, level="cycle", hardware=hw
                ),
                repeat,
            )
            est = estimate(layer, dp, hw, code=wcode, x=xin)
            same = est == res.counts.replace(overflows=0)
            print(
                f"  Hardware.{hw_name:5s} {dp_name:14s} {res.counts.cycles:>10,d} cycles "
                f"in {t:6.2f} s = {res.counts.cycles / t:>12,.0f} cycles/s, "
                f"{lane_ops(res.counts) / t:>14,.0f} lane ops/s; "
                f"analytic == cycle: {same}"
            )


def bench_analytic(repeat: int) -> None:
    rng = np.random.default_rng(0)
    for net in ("resnet18", "googlenet"):
        layers = read_topology(net, padding="same")
        codes = [quantize_shiftcnn(rng.normal(size=t.layer.weight_shape), 2, 4) for t in layers]
        for hw_name in ("paper", "edge", "tiny"):
            hw = getattr(Hardware, hw_name)()
            dp = ShiftAddDatapath()

            def run(layers=layers, codes=codes, hw=hw, dp=dp):
                return [
                    estimate(t.layer, dp, hw, code=c, input_shape=(1, t.layer.in_channels,
                                                                    *t.input_hw))
                    for t, c in zip(layers, codes)
                ]  # fmt: skip

            run()
            t, counts = best_time(run, repeat)
            total = sum(counts)
            print(
                f"analytic model, {net} ({len(layers)} layers) on Hardware.{hw_name}: "
                f"{t * 1e3:7.1f} ms ({t / len(layers) * 1e3:.2f} ms/layer, target <= 0.3); "
                f"{total.cycles:,d} cycles, {total.energy_pj * 1e-6:,.1f} uJ"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bench_cycle(args.repeat)
    bench_analytic(args.repeat)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs; "
        f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}"
        f", numba threads {numba.get_num_threads()}"
    )


if __name__ == "__main__":
    main()
