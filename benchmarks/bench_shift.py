"""Benchmark: bit-exact ShiftCNN convolutions of ResNet-18 against float32 im2col + BLAS.

Every convolution of ResNet-18 (224x224, batch 1, padding k//2), N=2 codebooks of B=4 bits,
8-bit unsigned activations. Per layer: the time of a float32 im2col + matmul convolution and
of the bit-exact shift-add datapath (``ShiftAddDatapath.run``, validation included), both
best of a few runs in the same process after a warm-up, and their ratio; then totals, the
peak memory of the bit-exact runs (tracemalloc) against the (P-1)*C*H*W shift buffer of the
largest layer, and the machine.

Run::

    python benchmarks/bench_shift.py                      # WRAP, 32-bit accumulator
    python benchmarks/bench_shift.py --overflow SAT
    python benchmarks/bench_shift.py --overflow SAT --acc-bits 16   # saturation happens
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc

import numba
import numpy as np

from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.formats import FixedFormat, Overflow
from shiftsim.io.topology import read_topology
from shiftsim.layers import Conv2d
from shiftsim.quantize import quantize_shiftcnn
from shiftsim.reference.float_ref import conv_float

try:
    import torch
except ImportError:  # optional: the PyTorch column is left out
    torch = None


def im2col_conv(layer: Conv2d, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """float32 convolution: zero padding, im2col (one copy), one BLAS matmul per group."""
    b, _, h, wd = x.shape
    ho, wo = layer.output_hw(h, wd)
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    (ph, pw), (dh, dw) = layer.padding, layer.dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(
        xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), (2, 3)
    )
    win = win[:, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw, ::dh, ::dw]
    g, cg = layer.groups, layer.channels_per_group
    cols = win.reshape(b, g, cg, ho, wo, kh, kw).transpose(0, 1, 2, 5, 6, 3, 4)
    cols = np.ascontiguousarray(cols).reshape(b, g, cg * kh * kw, ho * wo)
    wg = w.reshape(g, layer.out_channels // g, cg * kh * kw)
    return np.matmul(wg[None], cols).reshape(b, layer.out_channels, ho, wo)


def best_time(fn, repeat: int) -> float:
    # Let the other library's worker threads go idle first: OpenBLAS threads keep spinning
    # for a while after a call and would steal a core from numba's (and vice versa).
    time.sleep(0.25)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overflow", choices=["WRAP", "SAT"], default="WRAP")
    parser.add_argument("--acc-bits", type=int, default=32)
    parser.add_argument("--layers", type=int, default=None, help="only the first N layers")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    dp = ShiftAddDatapath(
        n_codebooks=2,
        bits=4,
        act=FixedFormat(8, 0, signed=False),
        acc_bits=args.acc_bits,
        overflow=Overflow[args.overflow],
    )
    topo = read_topology("resnet18", padding="same")
    topo = [t for t in topo if t.name != "FC"][: args.layers]
    n_values = 2 * (dp.max_shift + 1)  # P - 1

    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}")
    print(f"numba threads: {numba.get_num_threads()}, threading layer: {numba.threading_layer()}")
    print(f"datapath: {dp}")
    if torch is not None:
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    head = f"{'layer':10s} {'C':>4s} {'Co':>4s} {'HxW':>7s} {'k':>3s} {'s':>2s}"
    print(
        f"{head} {'blas ms':>9s} {'exact ms':>9s} {'ratio':>6s} {'overflows':>10s}"
        f" {'torch ms':>9s} {'vs torch':>8s}"
    )

    tot_blas = tot_exact = tot_torch = 0.0
    peak = 0
    buffer_bound = 0
    out_bytes = 0
    for t in topo:
        layer = t.layer
        h, w = t.input_hw
        fan_in = layer.channels_per_group * layer.kernel_size[0] * layer.kernel_size[1]
        wts = rng.normal(0, np.sqrt(2 / fan_in), size=layer.weight_shape)
        # post-ReLU activations: half zeros, the rest half-normal, 8-bit codes
        x_f = np.maximum(rng.normal(0, 1, size=(1, layer.in_channels, h, w)), 0)
        x_raw = np.clip(np.round(x_f * 48), 0, 255).astype(np.int64)
        code = quantize_shiftcnn(wts, 2, 4)
        w32 = np.asarray(code.to_float(), dtype=np.float32)
        x32 = x_raw.astype(np.float32)

        res = dp.run(layer, code, x_raw)  # warm-up (compiles on the first layer)
        ref = conv_float(layer, w32, x32)  # the baseline computes the same convolution
        np.testing.assert_allclose(im2col_conv(layer, w32, x32), ref, rtol=1e-4, atol=1e-2)
        t_blas = best_time(lambda: im2col_conv(layer, w32, x32), args.repeat)  # noqa: B023
        t_exact = best_time(lambda: dp.run(layer, code, x_raw), args.repeat)  # noqa: B023
        t_torch = np.nan
        if torch is not None:
            wt, xt = torch.from_numpy(w32), torch.from_numpy(x32)

            def torch_conv(xt=xt, wt=wt, stride=layer.stride, pad=layer.padding) -> object:
                return torch.nn.functional.conv2d(xt, wt, stride=stride, padding=pad)

            with torch.no_grad():
                torch_conv()
                t_torch = best_time(torch_conv, args.repeat)
        tot_torch += t_torch
        tracemalloc.start()
        dp.run(layer, code, x_raw)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()

        buffer_bound = max(buffer_bound, n_values * layer.in_channels * h * w * 2)  # int16
        out_bytes += res.y_raw.nbytes
        tot_blas += t_blas
        tot_exact += t_exact
        k, s = layer.kernel_size[0], layer.stride[0]
        row = f"{t.name:10s} {layer.in_channels:4d} {layer.out_channels:4d} {h:3d}x{w:<3d} {k:3d}"
        print(
            f"{row} {s:2d} {t_blas * 1e3:9.2f} {t_exact * 1e3:9.2f} {t_exact / t_blas:6.2f}"
            f" {res.counts.overflows:10d} {t_torch * 1e3:9.2f} {t_exact / t_torch:8.2f}"
        )
    print(
        f"{'total':10s} {'':27s} {tot_blas * 1e3:9.2f} {tot_exact * 1e3:9.2f}"
        f" {tot_exact / tot_blas:6.2f} {'':10s} {tot_torch * 1e3:9.2f} {tot_exact / tot_torch:8.2f}"
    )
    limit = 2 * buffer_bound + out_bytes
    print(
        f"peak traced memory of one bit-exact layer run: {peak / 2**20:.1f} MiB; "
        f"bound 2 x (P-1)*C*H*W int16 ({buffer_bound / 2**20:.1f} MiB) + outputs "
        f"({out_bytes / 2**20:.1f} MiB) = {limit / 2**20:.1f} MiB -> "
        f"{'OK' if peak <= limit else 'EXCEEDED'}"
    )


if __name__ == "__main__":
    main()
