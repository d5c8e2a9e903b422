"""Golden model of the ShiftCNN shift-add datapath: literal loops on Python ints (SPEC §5.1).

Written for obviousness, not speed: every value is a Python ``int``, every loop is the loop of
the specification, in its order. It shares no code with :mod:`shiftsim.kernels` and imports
only :mod:`shiftsim.formats` and :mod:`shiftsim.layers`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.formats import Overflow, Rounding
from shiftsim.layers import Conv2d, Linear

__all__ = ["shift_add_golden"]


def _shift_unit(x: int, f: int, max_shift: int, rounding: Rounding) -> list[int]:
    """The S+1 magnitudes ``xs[s]``, s = 0..S, of one input value (SPEC §5.1, shift unit)."""
    r = x << f
    out = []
    for s in range(max_shift + 1):
        if rounding == Rounding.RND and s >= 1:
            out.append((r + (1 << (s - 1))) >> s)  # Python >> is floor for every s
        else:
            out.append(r >> s)
    return out


def _fit(value: int, acc_bits: int, overflow: Overflow) -> int:
    """The accumulator register: wrap (two's complement) or saturate at ``acc_bits`` bits."""
    lo = -(1 << (acc_bits - 1))
    hi = (1 << (acc_bits - 1)) - 1
    if overflow == Overflow.SAT:
        return min(max(value, lo), hi)
    return ((value - lo) % (1 << acc_bits)) + lo


def shift_add_golden(
    layer: Conv2d | Linear,
    index: ArrayLike,
    x_raw: ArrayLike,
    *,
    bits: int,
    shift_frac_bits: int = 0,
    shift_rounding: Rounding = Rounding.TRN,
    acc_bits: int = 32,
    overflow: Overflow = Overflow.WRAP,
    bias_raw: ArrayLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[NDArray[np.int64], dict[str, int]]:
    """Run one layer on the shift-add datapath, literally, and count its events.

    The caller validates the arguments (this is an oracle, not a public entry point).

    Parameters
    ----------
    layer : Conv2d or Linear
        Layer geometry.
    index : array_like of int, shape ``layer.weight_shape + (N,)``
        ShiftCNN indices; a nonzero index ``j`` of codebook ``n`` (1-based) selects
        ``sign(j) * xs[|j| + n - 2]``, 0 selects 0.
    x_raw : array_like of int, shape ``(B, C, H, W)`` or ``(B, in_features)``
        Raw activations.
    bits : int
        Index width B; the largest shift is ``S = 2**(B-1) - 1 + N - 2``.
    shift_frac_bits : int
        ``f``: extra LSBs the shift unit keeps.
    shift_rounding : Rounding
        ``TRN`` or ``RND``.
    acc_bits : int
        Accumulator width (signed).
    overflow : Overflow
        ``WRAP`` or ``SAT``, applied after every accumulator update.
    bias_raw : array_like of int, shape ``(Co,)``, optional
        Bias in accumulator units.
    progress : callable, optional
        Called as ``progress(done, total)`` before each (batch item, output channel).
        Initial accumulator value of each output channel.

    Returns
    -------
    y_raw : ndarray of int64
        ``(B, Co, Ho, Wo)`` or ``(B, out_features)``.
    counts : dict of str to int
        ``shift_ops``, ``negations``, ``selects``, ``zero_selects``, ``adds``,
        ``acc_updates``, ``overflows``, counted one event at a time.
    """
    rounding = Rounding(shift_rounding)
    overflow = Overflow(overflow)
    conv = layer.as_conv()
    idx = layer.to_nchw(np.asarray(index)).tolist()  # (Co, Cg, Kh, Kw, N) nested lists
    x = layer.to_nchw(np.asarray(x_raw)).tolist()  # (B, C, H, W)
    n_codebooks = len(idx[0][0][0][0])
    max_shift = (1 << (bits - 1)) - 1 + n_codebooks - 2
    f = shift_frac_bits
    n_batch, n_chan = len(x), len(x[0])
    h, w = len(x[0][0]), len(x[0][0][0])
    kh_n, kw_n = conv.kernel_size
    sh, sw = conv.stride
    ph, pw = conv.padding
    dh, dw = conv.dilation
    ho, wo = conv.output_hw(h, w)
    co_n = conv.out_channels
    cg = conv.channels_per_group
    co_per_group = co_n // conv.groups
    bias = [0] * co_n if bias_raw is None else [int(v) for v in np.asarray(bias_raw).tolist()]
    counts = dict.fromkeys(
        ("shift_ops", "negations", "selects", "zero_selects", "adds", "acc_updates", "overflows"),
        0,
    )

    # Shift unit: every input value (padding excluded) yields S+1 magnitudes, made with S
    # shifts (s = 1..S), each of which also gets a negated twin.
    xs = {}
    for b in range(n_batch):
        for c in range(n_chan):
            for i in range(h):
                for j in range(w):
                    xs[b, c, i, j] = _shift_unit(int(x[b][c][i][j]), f, max_shift, rounding)
                    counts["shift_ops"] += max_shift
                    counts["negations"] += max_shift + 1
    padded_zero = [0] * (max_shift + 1)

    def shifted(b: int, c: int, i: int, j: int) -> list[int]:
        return xs.get((b, c, i, j), padded_zero)  # padding inserts raw zeros

    y = np.zeros((n_batch, co_n, ho, wo), dtype=np.int64)
    for b in range(n_batch):
        for co in range(co_n):
            if progress is not None:
                progress(b * co_n + co, n_batch * co_n)
            c0 = (co // co_per_group) * cg
            for oh in range(ho):
                for ow in range(wo):
                    acc = bias[co]
                    for n in range(1, n_codebooks + 1):  # paper Algorithm 2 order
                        for kh in range(kh_n):
                            for kw in range(kw_n):
                                i = oh * sh + kh * dh - ph
                                j = ow * sw + kw * dw - pw
                                tree = 0  # adder tree over the group's channels: exact
                                for cl in range(cg):
                                    sel = int(idx[co][cl][kh][kw][n - 1])
                                    counts["selects"] += 1
                                    if sel == 0:
                                        counts["zero_selects"] += 1
                                        term = 0
                                    else:
                                        mag = shifted(b, c0 + cl, i, j)[abs(sel) + n - 2]
                                        term = mag if sel > 0 else -mag
                                    tree += term
                                counts["adds"] += cg  # cg - 1 in the tree, 1 into the register
                                new = acc + tree
                                acc = _fit(new, acc_bits, overflow)
                                counts["acc_updates"] += 1
                                counts["overflows"] += int(acc != new)
                    y[b, co, oh, ow] = acc
    return np.asarray(layer.from_nchw(y), dtype=np.int64), counts
