"""Golden model of the log-domain datapath (SPEC §5.2): literal loops on Python ints.

Written for obviousness, not speed. Exact arithmetic uses Python's unbounded ints and
:class:`fractions.Fraction`; wrap and saturate are spelled out here rather than shared with
the kernels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from shiftsim.formats import Overflow
from shiftsim.layers import Conv2d

__all__ = ["conv_log_golden", "fit_register", "mitchell_to_linear"]


def fit_register(value: int, bits: int, overflow: Overflow) -> int:
    """Fit an exact integer into a signed ``bits``-wide register by wrapping or saturating."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if overflow == Overflow.SAT:
        return min(max(value, lo), hi)
    return (value - lo) % 2**bits + lo


def mitchell_to_linear(s: int, g: int, frac_bits: int) -> int:
    """``floor(2**I * (1 + phi) * 2**frac_bits)`` for ``s / 2**g = I + phi``, ``0 <= phi < 1``."""
    i = math.floor(Fraction(s, 2**g))
    phi = Fraction(s, 2**g) - i
    return math.floor(Fraction(2) ** (i + frac_bits) * (1 + phi))


def _receptive_field(
    layer: Conv2d, x_shape: tuple[int, ...], b: int, co: int, oh: int, ow: int
) -> list[tuple[int, int, int, int, int, int]]:
    """(c, kh, kw, ci, ih, iw) of one output's in-bounds input positions, in C-order (c, kh, kw)."""
    cg = layer.channels_per_group
    group = co // (layer.out_channels // layer.groups)
    positions = []
    for c in range(cg):
        for kh in range(layer.kernel_size[0]):
            for kw in range(layer.kernel_size[1]):
                ih = oh * layer.stride[0] - layer.padding[0] + kh * layer.dilation[0]
                iw = ow * layer.stride[1] - layer.padding[1] + kw * layer.dilation[1]
                if 0 <= ih < x_shape[2] and 0 <= iw < x_shape[3]:  # else: padding, a zero code
                    positions.append((c, kh, kw, group * cg + c, ih, iw))
    return positions


def conv_log_golden(
    layer: Conv2d,
    w_exp: NDArray[np.int64],
    w_sign: NDArray[np.int64],
    w_k: int,
    x_exp: NDArray[np.int64],
    x_sign: NDArray[np.int64],
    x_k: int,
    bias: NDArray[np.int64] | None,
    *,
    accumulate: str,
    acc_bits: int,
    acc_frac_bits: int,
    overflow: Overflow,
    log_frac_bits: int,
    log_add: str,
    sqrt2_mode: str,
    sqrt2_frac_bits: int,
    sqrt2_shifts: Sequence[int],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[NDArray[np.int64], dict[str, int]]:
    """Run a Conv2d on log codes, one output and one term at a time (SPEC §5.2).

    Parameters
    ----------
    layer : Conv2d
        Geometry (a Linear layer is passed as its 1x1 convolution).
    w_exp, w_sign : ndarray of int, shape (Co, C // groups, Kh, Kw)
        Weight exponents in units of ``1/w_k`` of log2, and signs (-1, 0, +1).
    w_k, x_k : int
        1 for base 2, 2 for base sqrt(2); products are in units of ``1/max(w_k, x_k)``.
    x_exp, x_sign : ndarray of int, shape (B, C, H, W)
        Activation exponents and signs.
    bias : ndarray of int, shape (Co,), or None
        Bias in accumulator units.
    accumulate, acc_bits, acc_frac_bits, overflow, log_frac_bits, log_add, sqrt2_mode, \
sqrt2_frac_bits, sqrt2_shifts
        As in :class:`shiftsim.datapath.log_domain.LogDatapath`.
    progress : callable, optional
        Called as ``progress(done, total)`` before each (batch item, output channel).

    Returns
    -------
    y_raw : ndarray of int64, shape (B, Co, Ho, Wo)
    events : dict of str to int
        Counts by :class:`shiftsim.counts.Counts` field name.
    """
    k = max(w_k, x_k)
    f = acc_frac_bits
    g = log_frac_bits
    n_b = x_exp.shape[0]
    h_out, w_out = layer.output_hw(x_exp.shape[2], x_exp.shape[3])
    y = np.zeros((n_b, layer.out_channels, h_out, w_out), dtype=np.int64)
    ev = dict.fromkeys(
        ("exponent_adds", "compares", "shift_ops", "adds", "acc_updates", "log_to_linear",
         "overflows", "multiplies"),
        0,
    )  # fmt: skip
    split = k == 2 and sqrt2_mode == "split"

    def fit(value: int) -> int:
        fitted = fit_register(value, acc_bits, overflow)
        ev["overflows"] += fitted != value
        return fitted

    for b in range(n_b):
        for co in range(layer.out_channels):
            if progress is not None:
                progress(b * layer.out_channels + co, n_b * layer.out_channels)
            b_co = 0 if bias is None else int(bias[co])
            for oh in range(h_out):
                for ow in range(w_out):
                    # the nonzero products in order c, kh, kw: (exponent p, sign)
                    terms = []
                    for c, kh, kw, ci, ih, iw in _receptive_field(
                        layer, x_exp.shape, b, co, oh, ow
                    ):
                        sx, sw = int(x_sign[b, ci, ih, iw]), int(w_sign[co, c, kh, kw])
                        if sx == 0 or sw == 0:
                            continue  # a zero operand: no product, nothing counted
                        ex = int(x_exp[b, ci, ih, iw]) * (k // x_k)
                        ew = int(w_exp[co, c, kh, kw]) * (k // w_k)
                        terms.append((ex + ew, sx * sw))
                        ev["exponent_adds"] += 1
                    if accumulate == "linear":
                        y[b, co, oh, ow] = _accumulate_linear(
                            terms, b_co, k, f, fit, ev, split=split,
                            sqrt2_frac_bits=sqrt2_frac_bits, sqrt2_shifts=sqrt2_shifts,
                        )  # fmt: skip
                    else:
                        y[b, co, oh, ow] = _accumulate_log(terms, b_co, k, f, g, log_add, fit, ev)
                        ev["adds"] += 1 if bias is None else 2
    return y, ev


def _accumulate_linear(
    terms: list[tuple[int, int]],
    bias: int,
    k: int,
    f: int,
    fit: Callable[[int], int],
    ev: dict[str, int],
    *,
    split: bool,
    sqrt2_frac_bits: int,
    sqrt2_shifts: Sequence[int],
) -> int:
    """One output of linear accumulation: ``acc = fit(acc +- floor(2**(p/k + F)))`` per term."""
    acc, acc_odd = bias, 0
    for p, sign in terms:
        ev["shift_ops"] += 1
        octave = Fraction(p, k)
        odd = octave.denominator == 2
        t = math.floor(Fraction(2) ** (math.floor(octave) + f))
        if odd and split:
            acc_odd = fit(acc_odd + sign * t)
            ev["adds"] += 1
            ev["acc_updates"] += 1
            continue
        if odd:  # shift_add: the constant 2**-s0 + 2**-s1 + ..., each partial floored
            t = sum(t // 2**s for s in sqrt2_shifts)
            ev["shift_ops"] += sum(1 for s in sqrt2_shifts if s > 0)
            ev["adds"] += len(sqrt2_shifts) - 1
        acc = fit(acc + sign * t)
        ev["adds"] += 1
        ev["acc_updates"] += 1
    if split:
        c = math.isqrt(2 * 4**sqrt2_frac_bits)  # floor(sqrt(2) * 2**h)
        acc = fit(acc + math.floor(Fraction(acc_odd * c, 2**sqrt2_frac_bits)))
        ev["multiplies"] += 1
        ev["adds"] += 1
        ev["acc_updates"] += 1
    return acc


def _log_add(s: int, big_p: int, g: int, log_add: str) -> int:
    """Merge a term ``big_p`` into a non-empty log register ``s`` (both ``g`` frac bits)."""
    one = 2**g
    if log_add == "floor":
        d = abs(math.floor(Fraction(s, one)) - math.floor(Fraction(big_p, one)))
        return max(s, big_p) + math.floor(Fraction(one, 2**d))
    i, phi = divmod(abs(s - big_p), one)
    return max(s, big_p) + math.floor(Fraction(2 * one - phi, 2 ** (i + 1)))


def _accumulate_log(
    terms: list[tuple[int, int]],
    bias: int,
    k: int,
    f: int,
    g: int,
    log_add: str,
    fit: Callable[[int], int],
    ev: dict[str, int],
) -> int:
    """One output of log-domain accumulation: two registers, converted, then subtracted."""
    regs: dict[int, int | None] = {1: None, -1: None}  # None: empty
    for p, sign in terms:
        big_p = p * 2**g // k  # p / k in log2 units with g fractional bits (exact)
        s = regs[sign]
        if s is None:
            regs[sign] = big_p
        else:
            regs[sign] = _log_add(s, big_p, g, log_add)
            ev["compares"] += 1
            ev["shift_ops"] += 1
            ev["adds"] += 1 if log_add == "floor" else 2
        ev["acc_updates"] += 1
    lin = {1: 0, -1: 0}
    for sign, s in regs.items():
        if s is not None:
            lin[sign] = fit(mitchell_to_linear(s, g, f))
            ev["log_to_linear"] += 1
            ev["shift_ops"] += 1
    return fit(bias + lin[1] - lin[-1])
