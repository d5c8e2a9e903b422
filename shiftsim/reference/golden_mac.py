"""Golden model of the fixed-point MAC datapath (SPEC §5.3): literal loops on Python ints."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from shiftsim.formats import Overflow
from shiftsim.layers import Conv2d

__all__ = ["conv_mac_golden"]


def conv_mac_golden(
    layer: Conv2d,
    w_raw: NDArray[np.int64],
    x_raw: NDArray[np.int64],
    bias_raw: NDArray[np.int64] | None,
    *,
    acc_bits: int,
    overflow: Overflow,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[NDArray[np.int64], dict[str, int]]:
    """Run a Conv2d with real multipliers, one output at a time.

    ``acc = bias`` (or 0); for kh: for kw: ``acc = OVERFLOW(acc + sum_c w * x)`` over an
    explicitly zero-padded input; every (c, kh, kw) position is one multiplication.

    Parameters
    ----------
    layer : Conv2d
        Geometry (a Linear layer is passed as its 1x1 convolution).
    w_raw : ndarray of int, shape (Co, C // groups, Kh, Kw)
        Raw weights.
    x_raw : ndarray of int, shape (B, C, H, W)
        Raw activations.
    bias_raw : ndarray of int, shape (Co,), or None
        Initial accumulator values.
    acc_bits : int
        Signed accumulator width.
    overflow : Overflow
        WRAP or SAT, applied after every (kh, kw) step.
    progress : callable, optional
        Called as ``progress(done, total)`` before each (batch item, output channel).

    Returns
    -------
    y_raw : ndarray of int64, shape (B, Co, Ho, Wo)
    events : dict of str to int
        multiplies, adds (adder tree plus accumulator: one per multiplication),
        acc_updates and overflows.
    """
    n_b, n_c, h, w = x_raw.shape
    ph, pw = layer.padding
    padded = [
        [[[0] * (w + 2 * pw) for _ in range(h + 2 * ph)] for _ in range(n_c)] for _ in range(n_b)
    ]
    for b in range(n_b):
        for c in range(n_c):
            for i in range(h):
                for j in range(w):
                    padded[b][c][i + ph][j + pw] = int(x_raw[b, c, i, j])
    h_out, w_out = layer.output_hw(h, w)
    cg = layer.channels_per_group
    co_per_group = layer.out_channels // layer.groups
    lo, hi = -(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1
    y = np.zeros((n_b, layer.out_channels, h_out, w_out), dtype=np.int64)
    ev = {"multiplies": 0, "adds": 0, "acc_updates": 0, "overflows": 0}
    for b in range(n_b):
        for co in range(layer.out_channels):
            if progress is not None:
                progress(b * layer.out_channels + co, n_b * layer.out_channels)
            group = co // co_per_group
            for oh in range(h_out):
                for ow in range(w_out):
                    acc = 0 if bias_raw is None else int(bias_raw[co])
                    for kh in range(layer.kernel_size[0]):
                        for kw in range(layer.kernel_size[1]):
                            i = oh * layer.stride[0] + kh * layer.dilation[0]
                            j = ow * layer.stride[1] + kw * layer.dilation[1]
                            tree = sum(
                                int(w_raw[co, c, kh, kw]) * padded[b][group * cg + c][i][j]
                                for c in range(cg)
                            )
                            ev["multiplies"] += cg
                            ev["adds"] += cg  # cg - 1 in the tree, 1 into the register
                            exact = acc + tree
                            if overflow == Overflow.SAT:
                                acc = min(max(exact, lo), hi)
                            else:
                                acc = (exact - lo) % 2**acc_bits + lo
                            ev["overflows"] += acc != exact
                            ev["acc_updates"] += 1
                    y[b, co, oh, ow] = acc
    return y, ev
