"""Benchmark: what limits the ShiftCNN adders on deep layers, measured against float32 BLAS.

The shift datapath's unchecked adders sum, for every output channel, one row of the shift
buffer per nonzero index: ``N`` row additions per multiply-accumulate of a dense convolution,
over wide rows of ``rows * wq`` lanes of which ``rows * wo`` are outputs. On ResNet-18's 7x7
layers a row is 64 int16 lanes (49 outputs). This measures, on such a layer (``Conv5_1b``:
512 -> 512 channels, 3x3, 7x7, ShiftCNN N=2, B=4, everything on one thread):

- ``datapath``: the bit-exact run (``ShiftAddDatapath.run``, validation included);
- ``adders, real terms``: the short-row adder kernel alone over every channel's terms as the
  datapath lists them (shift buffer offsets of the layer's own indices);
- ``adders, aligned rows in L1``: the same kernel and the same number of terms, reading 128
  aligned rows that stay in the L1 cache (no selection at all): the adder loop's own ceiling;
- ``float32 BLAS``: im2col + one matmul, and its multiply-accumulates per second;

then the row additions per second of each, and the ratio to BLAS that the ceiling alone
implies. When the adders with real terms run as fast as on rows in L1, neither the selection
nor the memory limits them: the int16 additions do, ``N * 64/49`` of them per MAC.

Run::

    python benchmarks/bench_shift_adders.py
"""

from __future__ import annotations

import os

# One thread for everything (BLAS, numba): the adder kernel below runs on one.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402 (the thread counts are read when numpy and numba load)
import platform  # noqa: E402
import sys  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_shift import best_time, im2col_conv  # noqa: E402

from shiftsim.datapath.shift_add import ShiftAddDatapath  # noqa: E402
from shiftsim.formats import FixedFormat  # noqa: E402
from shiftsim.kernels.shift_add import ROW, ROW_BASE, _sum_signed_rows  # noqa: E402
from shiftsim.layers import Conv2d  # noqa: E402


def term_lists(index: np.ndarray, n_chan: int, hq1: int, wq: int) -> tuple[list, list]:
    """Each output channel's term offsets (relative to the shift buffer) and sign masks.

    The datapath's layout for stride 1 (one phase plane): ``((s * C + c) * hq1 + r) * wq + q``;
    index ``j`` of codebook ``n`` (1-based) reads plane ``|j| + n - 2``, tap ``(kh, kw)`` adds
    ``kh * wq + kw``; index 0 reads a row of zeros after the buffer (as the kernel does).
    """
    co_n, cg, kh_n, kw_n, n_cb = index.shape
    chan = hq1 * wq
    plane = n_chan * chan
    zeros = (int(np.abs(index).max()) + n_cb - 1) * plane  # the plane after the last
    c, kh, kw, n = np.meshgrid(
        np.arange(cg), np.arange(kh_n), np.arange(kw_n), np.arange(n_cb), indexing="ij"
    )
    base = (c * chan + kh * wq + kw + (n - 1) * plane).reshape(-1)
    offsets, masks = [], []
    for co in range(co_n):
        j = index[co].reshape(-1).astype(np.int64)
        off = np.where(j != 0, np.abs(j) * plane + base, zeros)
        offsets.append(off.astype(np.uint32))
        masks.append(np.where(j < 0, -1, 0).astype(np.int16))
    return offsets, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--channels", type=int, default=512, help="C = Co (512: Conv5_1b)")
    args = parser.parse_args()
    c_n = args.channels
    layer = Conv2d(c_n, c_n, 3, padding=1)
    h = w = 7
    rng = np.random.default_rng(0)
    wf = rng.normal(0, np.sqrt(2 / (c_n * 9)), size=layer.weight_shape)
    x = np.maximum(rng.normal(0, 1, size=(1, c_n, h, w)), 0) * 48
    dp = ShiftAddDatapath(n_codebooks=2, bits=4, act=FixedFormat(8, 0, signed=False))
    prep = dp.prepare(layer, wf, x)
    res = dp.run(layer, prep.code, prep.x_in)
    t_dp = best_time(lambda: dp.run(layer, prep.code, prep.x_in), args.repeat)

    w32, x32 = wf.astype(np.float32), x.astype(np.float32)
    t_blas = best_time(lambda: im2col_conv(layer, w32, x32), args.repeat)
    macs = c_n * c_n * 9 * h * w

    # the shift buffer of this layer (hq1 = 7 + 2 + 1 rows, wq = 9; one plane per shift,
    # random values), then a plane of zeros for index 0
    hq1, wq = h + 3, w + 2
    index = np.asarray(prep.code.index)  # (Co, C, Kh, Kw, N)
    plane = c_n * hq1 * wq
    n_planes = int(np.abs(index).max()) + index.shape[-1] - 1
    size = ROW_BASE + (n_planes + 1) * plane + ROW
    raw = np.zeros(size + 32, np.int16)  # the rows start on a cache line (64 bytes)
    skip = (-(raw.ctypes.data + 2 * ROW_BASE) % 64) // 2
    buf = raw[skip : skip + size]
    buf[ROW_BASE : ROW_BASE + n_planes * plane] = rng.integers(0, 256, size=n_planes * plane)
    offsets, masks = term_lists(index, c_n, hq1, wq)
    # the same number of terms on 128 aligned rows (16 KiB, always in L1), no selection
    n_terms = sum(o.size for o in offsets)
    l1_rows = ((np.arange(n_terms) % 128) * ROW).astype(np.uint32)
    acc = np.zeros(ROW, np.int32)

    # one kernel call over every channel's terms in turn (the same groups of terms as the
    # datapath's calls per channel, without a Python call per channel)
    all_masks = np.concatenate(masks)

    def adders(offs):
        _sum_signed_rows(buf, 0, offs, all_masks, offs.size, 64, acc)

    offsets = np.concatenate(offsets)

    adders(offsets)
    t_real = best_time(lambda: adders(offsets), args.repeat)
    t_one = best_time(lambda: adders(l1_rows), args.repeat)

    lane_adds = n_terms * ROW
    print(f"machine: {platform.machine()} cpus={os.cpu_count()}, numpy {np.__version__}, "
          f"numba {numba.__version__}, numba threads {numba.get_num_threads()}")  # fmt: skip
    print(f"layer: {c_n} -> {c_n} channels, 3x3, {h}x{w}, ShiftCNN N=2 B=4: "
          f"{macs / 1e6:.1f} M MACs, {n_terms / 1e6:.2f} M terms of {ROW} lanes "
          f"({ROW / (h * w):.2f} lanes per output)")  # fmt: skip
    rows = [
        ("float32 BLAS (im2col + matmul)", t_blas, f"{macs / t_blas / 1e9:6.1f} G MAC/s"),
        ("datapath (ShiftAddDatapath.run)", t_dp, f"{lane_adds / t_dp / 1e9:6.1f} G lane-adds/s"),
        ("adders, real terms", t_real, f"{lane_adds / t_real / 1e9:6.1f} G lane-adds/s"),
        ("adders, aligned rows in L1", t_one, f"{lane_adds / t_one / 1e9:6.1f} G lane-adds/s"),
    ]
    for name, t, rate in rows:
        print(f"{name:34s} {t * 1e3:7.2f} ms  {t / t_blas:5.2f}x BLAS  {rate}")
    print(f"row additions per MAC: {lane_adds / macs:.2f}; real terms / rows in L1: "
          f"{t_real / t_one:.2f}; the adder ceiling alone is {t_one / t_blas:.2f}x float32 BLAS"
          f" (datapath {t_dp / t_blas:.2f}x)")  # fmt: skip
    assert res.counts.overflows == 0  # the unchecked path: no overflow is possible


if __name__ == "__main__":
    main()
