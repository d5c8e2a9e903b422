"""Benchmark: simulated cycles per second of the cycle model; the analytic model's time.

Cycle model: ResNet-18's ``Conv2_1a`` (64 -> 64 channels, 3x3, 56x56, padding 1) on
``Hardware.paper()`` and ``Hardware.edge()``, ShiftCNN N=2, B=4, the 8-bit MAC datapath and
the log datapath (log accumulation), after a warm-up (compilation excluded), best of
``--repeat`` runs; it also checks the cycle model against the analytic model (given the
data) on every count but the overflows. Analytic model: every layer of ResNet-18 and
GoogLeNet (``padding="same"``) on every preset, the median of ``--repeat`` passes, in ms per
layer and per network (the mapping search included): cold (every cache emptied), in a sweep
(a new machine each pass: the layers' tables for its ``acc_units`` cached; the weight codes
writable, so their zero indices are counted on every call, and immutable, counted once) and
warm (the same machine again: the mapping cached). Then the machine and its load.

Run::

    python benchmarks/bench_cycle.py
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import numba
import numpy as np

from shiftsim.cost import estimate
from shiftsim.cycle.schedule import _clear_caches
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.datapath.weight_cache import immutable
from shiftsim.hardware import Hardware
from shiftsim.io.topology import read_topology
from shiftsim.layers import Conv2d
from shiftsim.quantize import LogCode, quantize_log, quantize_shiftcnn

_BUFFERS = (
    "input_buffer_bytes",
    "shift_buffer_bytes",
    "weight_buffer_bytes",
    "output_buffer_bytes",
)


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def median_time(fn, repeat: int) -> tuple[float, float, object]:
    """Median wall-clock and CPU (this process) seconds of ``fn`` over ``repeat`` runs."""
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu)), out


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
    """The analytic model's time per layer, three ways, on every preset.

    ``cold``: every cache emptied before each pass over the network (a new network);
    ``sweep``: a new machine for every pass (the preset with its four buffers scaled), the
    layer geometry's tables cached, as in a sweep over hardware points; ``frozen``: the
    same with immutable weight codes (their zero indices counted once, kept with them);
    ``warm``: the same machine again (the mapping search cached).
    Wall-clock and CPU (this process: less sensitive to a loaded machine) medians.
    """
    rng = np.random.default_rng(0)
    for net in ("resnet18", "googlenet"):
        layers = read_topology(net, padding="same")
        codes = [quantize_shiftcnn(rng.normal(size=t.layer.weight_shape), 2, 4) for t in layers]
        frozen = [dataclasses.replace(c, index=immutable(c.index)) for c in codes]
        for hw_name in ("paper", "edge", "tiny"):
            base = getattr(Hardware, hw_name)()
            dp = ShiftAddDatapath()

            def run(hw, layers=layers, codes=codes, dp=dp):
                return [
                    estimate(t.layer, dp, hw, code=c, input_shape=(1, t.layer.in_channels,
                                                                    *t.input_hw))
                    for t, c in zip(layers, codes)
                ]  # fmt: skip

            def cold(base=base, run=run):
                _clear_caches()
                return run(base)

            machines = iter(
                base.replace(**{b: getattr(base, b) * (8 + i) // 8 for b in _BUFFERS})
                for i in range(1, 1000)
            )
            t_cold, c_cold, counts = median_time(cold, repeat)
            run(next(machines))  # the layers' tables for this preset's units, once
            t_sweep, c_sweep, _ = median_time(
                lambda run=run, machines=machines: run(next(machines)), repeat
            )
            run(next(machines), codes=frozen)  # each code's zero indices, once
            t_frozen, _, _ = median_time(
                lambda run=run, machines=machines, frozen=frozen: run(next(machines), codes=frozen),
                repeat,
            )
            t_warm, c_warm, _ = median_time(lambda run=run, base=base: run(base), repeat)
            total = sum(counts)
            n = len(layers)
            print(
                f"analytic model, {net} ({n} layers) on Hardware.{hw_name}: ms/layer "
                f"cold {t_cold / n * 1e3:.3f}, sweep {t_sweep / n * 1e3:.3f} (immutable "
                f"codes {t_frozen / n * 1e3:.3f}), warm {t_warm / n * 1e3:.3f} (target "
                f"<= 0.3; CPU {c_cold / n * 1e3:.3f}, "
                f"{c_sweep / n * 1e3:.3f}, {c_warm / n * 1e3:.3f}); ms/network cold "
                f"{t_cold * 1e3:.1f}, sweep {t_sweep * 1e3:.1f}, warm {t_warm * 1e3:.1f}; "
                f"{total.cycles:,d} cycles, {total.energy_pj * 1e-6:,.1f} uJ"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--analytic-only", action="store_true", help="skip the cycle model")
    args = parser.parse_args()
    if not args.analytic_only:
        bench_cycle(args.repeat)
    bench_analytic(args.repeat)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs; "
        f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}"
        f", numba threads {numba.get_num_threads()}; load average "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg())
    )


if __name__ == "__main__":
    main()
