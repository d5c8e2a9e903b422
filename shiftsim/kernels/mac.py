"""Numba kernel of the fixed-point MAC datapath (SPEC §5.3), the multiplier baseline.

The public wrapper is :class:`shiftsim.datapath.mac.FixedMacDatapath`: it validates the raw
operands and proves that no partial sum leaves int64 before calling :func:`conv_mac`.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from shiftsim.kernels._jit import kernel
from shiftsim.kernels.bitops import apply_overflow
from shiftsim.kernels.conv import tap

__all__ = ["conv_mac"]


@kernel(parallel=True)
def conv_mac(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    co_list: np.ndarray,
    out: np.ndarray,
    overflows: np.ndarray,
    geometry: tuple[int, int, int, int, int, int, int],
    acc_bits: int,
    sat: bool,
) -> None:
    """Multiply-accumulate convolution with the accumulator contract of SPEC §5.1 (N = 1).

    For each output: ``acc = bias``; for kh: for kw:
    ``acc = OVERFLOW(acc + sum_c w[co, c, kh, kw] * x[b, c, ih, iw])``; the sum over the
    group's channels is exact (an adder tree), the register wraps or saturates at ``acc_bits``
    after each (kh, kw) step. Padding positions contribute 0.

    Parameters
    ----------
    x : ndarray of int64, shape (B, C, H, W)
        Raw activations.
    w : ndarray of int64, shape (Co, C // groups, Kh, Kw)
        Raw weights.
    bias : ndarray of int64, shape (Co,)
        Initial accumulator values (zeros for no bias).
    co_list : ndarray of int64, shape (n,)
        The output channels to compute (the others are left as they are).
    out : ndarray of int64, shape (B, Co, Ho, Wo)
        Output, written.
    overflows : ndarray of int64, shape (B * n,)
        Register updates that OVERFLOW changed, per (batch, listed channel), written.
    geometry : tuple of 7 int
        ``(stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)``.
    acc_bits : int
        Signed accumulator width.
    sat : bool
        Saturate (True) or wrap (False).
    """
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups = geometry
    n_b, _, h_in, w_in = x.shape
    _, n_co, h_out, w_out = out.shape
    _, n_cg, n_kh, n_kw = w.shape
    co_per_group = n_co // groups
    n_list = co_list.shape[0]
    for row in prange(n_b * n_list):
        b = row // n_list
        co = co_list[row % n_list]
        c0 = (co // co_per_group) * n_cg
        n_over = 0
        for oh in range(h_out):
            for ow in range(w_out):
                acc = bias[co]
                for kh in range(n_kh):
                    ih = tap(oh, kh, stride_h, pad_h, dil_h)
                    for kw in range(n_kw):
                        iw = tap(ow, kw, stride_w, pad_w, dil_w)
                        partial = 0
                        if 0 <= ih < h_in and 0 <= iw < w_in:
                            for c in range(n_cg):
                                partial += w[co, c, kh, kw] * x[b, c0 + c, ih, iw]
                        v = acc + partial
                        acc = apply_overflow(v, acc_bits, True, sat)
                        n_over += acc != v
                out[b, co, oh, ow] = acc
        overflows[row] = n_over
