"""Numba kernels of the log-domain datapath (SPEC §5.2, Miyashita, Lee & Murmann 2016).

The public wrapper is :class:`shiftsim.datapath.log_domain.LogDatapath`; it validates every
argument and unpacks the configuration into plain ints before calling :func:`conv_log`.
Event counts are written into an ``events`` array whose columns are the ``EV_*`` indices.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from shiftsim.kernels._jit import kernel
from shiftsim.kernels.bitops import apply_overflow, ashr, shl, wrap
from shiftsim.kernels.conv import tap

__all__ = [
    "ACC_LINEAR",
    "ACC_LOG",
    "EV_ACC_UPDATES",
    "EV_ADDS",
    "EV_COMPARES",
    "EV_EXPONENT_ADDS",
    "EV_LOG_TO_LINEAR",
    "EV_MULTIPLIES",
    "EV_OVERFLOWS",
    "EV_SHIFT_OPS",
    "LOG_ADD_FLOOR",
    "LOG_ADD_MITCHELL",
    "N_EVENTS",
    "SQRT2_SHIFT_ADD",
    "SQRT2_SPLIT",
    "conv_log",
    "conv_log_accumulate",
    "log_to_linear",
]

ACC_LINEAR = 0
ACC_LOG = 1
LOG_ADD_FLOOR = 0
LOG_ADD_MITCHELL = 1
SQRT2_SPLIT = 0
SQRT2_SHIFT_ADD = 1

EV_EXPONENT_ADDS = 0
EV_COMPARES = 1
EV_SHIFT_OPS = 2
EV_ADDS = 3
EV_ACC_UPDATES = 4
EV_LOG_TO_LINEAR = 5
EV_OVERFLOWS = 6
EV_MULTIPLIES = 7
N_EVENTS = 8


@kernel(inline=True)
def log_to_linear(s: int, g: int, frac_bits: int, acc_bits: int, sat: bool) -> tuple[int, int]:
    """Convert a log2 value to linear with Mitchell's rule, floored, then fit the accumulator.

    ``s`` holds log2 of the value with ``g`` fractional bits: ``s = I * 2**g + phi``. The
    result is ``floor(2**I * (1 + phi / 2**g) * 2**frac_bits)`` (SPEC §5.2, "output"), then
    wrapped or saturated into a signed ``acc_bits`` register. ``I`` may be negative, and the
    exact value may exceed int64: it is reduced without ever forming it.

    Returns
    -------
    (int, int)
        The register value and 1 if overflow changed it, else 0.
    """
    i = s >> g
    m = (s - shl(i, g)) + shl(1, g)  # 1.phi as a (g+1)-bit integer
    e = i + frac_bits - g
    if e < 0:
        v = ashr(m, -e)
    elif e + g + 1 <= 62:
        v = shl(m, e)
    else:  # v >= 2**62: beyond every register; reduce modulo 2**acc_bits without forming v
        if sat:
            return (1 << (acc_bits - 1)) - 1, 1
        if e >= acc_bits:
            return 0, 1
        low = m & ((1 << (acc_bits - e)) - 1)
        return wrap(shl(low, e), acc_bits, True), 1
    r = apply_overflow(v, acc_bits, True, sat)
    return r, 1 if r != v else 0


@kernel(parallel=True)
def conv_log(
    x_exp: np.ndarray,
    x_sign: np.ndarray,
    w_exp: np.ndarray,
    w_sign: np.ndarray,
    bias: np.ndarray,
    has_bias: bool,
    co_list: np.ndarray,
    out: np.ndarray,
    events: np.ndarray,
    geometry: tuple[int, int, int, int, int, int, int],
    k: int,
    acc_bits: int,
    frac_bits: int,
    sat: bool,
    sqrt2_mode: int,
    sqrt2_frac_bits: int,
    sqrt2_const: int,
    sqrt2_shifts: np.ndarray,
) -> None:
    """Log-domain convolution: exponent-add products, linear accumulation.

    Implements SPEC §5.2 with ``accumulate="linear"`` (log-domain accumulation is
    :func:`conv_log_accumulate`). For each output, terms are taken in the order c, kh, kw; a
    term with a zero operand (padding included) is skipped. Product exponent
    ``p = e_x + e_w`` (units ``1/k`` of log2), sign ``s_x * s_w``.

    ``acc = bias``; each term adds ``+-floor(2**(p/k + F))`` (``1 << (p+F)`` for base 2, 0 when
    the shift is negative) and the register wraps or saturates after every term. With
    ``k == 2`` an odd ``p`` gives ``t = floor(2**((p-1)/2+F))`` and then either
    ``sum(t >> s for s in sqrt2_shifts)`` (``SQRT2_SHIFT_ADD``) or goes into a second register
    ``acc_odd``; at the end ``acc = OVF(acc + floor(acc_odd * c))`` with
    ``c = sqrt2_const / 2**sqrt2_frac_bits`` (``SQRT2_SPLIT``).

    Parameters
    ----------
    x_exp, x_sign : ndarray of int64, shape (B, C, H, W)
        Activation exponents (already in units of ``1/k``; the format's ``e_min`` where the
        sign is 0, so that every ``p`` lies in the range the datapath checked) and signs.
    w_exp, w_sign : ndarray of int64, shape (Co, C // groups, Kh, Kw)
        Weight exponents and signs, as above.
    bias : ndarray of int64, shape (Co,)
        Bias in accumulator units (zeros when ``has_bias`` is False).
    has_bias : bool
        Whether a bias is added (counted as an add in log mode).
    co_list : ndarray of int64, shape (n,)
        The output channels to compute (the others are left as they are).
    out : ndarray of int64, shape (B, Co, Ho, Wo)
        Output, written.
    events : ndarray of int64, shape (B * n, N_EVENTS)
        Event counts per (batch, listed output channel), written.
    geometry : tuple of 7 int
        ``(stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)``.
    k : int
        1 (base 2) or 2 (base sqrt(2)).
    acc_bits, frac_bits : int
        Accumulator width and fractional bits ``F``; ``max(p)//k + F <= 61``.
    sat : bool
        Saturate (True) or wrap (False).
    sqrt2_mode : int
        ``SQRT2_*``.
    sqrt2_frac_bits, sqrt2_const : int
        ``c = sqrt2_const * 2**-sqrt2_frac_bits``; ``acc_bits + sqrt2_frac_bits <= 63``.
    sqrt2_shifts : ndarray of int64, shape (n,)
        Right shifts of the shift-add constant, strictly increasing.
    """
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups = geometry
    n_b, _, h_in, w_in = x_exp.shape
    _, n_co, h_out, w_out = out.shape
    _, n_cg, n_kh, n_kw = w_exp.shape
    co_per_group = n_co // groups
    n_shifts = sqrt2_shifts.shape[0]
    n_nonzero_shifts = 0
    for j in range(n_shifts):
        if sqrt2_shifts[j] > 0:
            n_nonzero_shifts += 1
    split = k == 2 and sqrt2_mode == SQRT2_SPLIT
    base2_linear = k == 1
    n_list = co_list.shape[0]
    for row in prange(n_b * n_list):
        b = row // n_list
        co = co_list[row % n_list]
        c0 = (co // co_per_group) * n_cg
        n_exp = 0
        n_shift = 0
        n_add = 0
        n_acc = 0
        n_ovf = 0
        n_mul = 0
        n_base2 = 0  # nonzero terms of the branch-free base-2 linear path
        for oh in range(h_out):
            for ow in range(w_out):
                acc = bias[co]
                acc_odd = 0
                for c in range(n_cg):
                    for kh in range(n_kh):
                        ih = tap(oh, kh, stride_h, pad_h, dil_h)
                        if ih < 0 or ih >= h_in:
                            continue
                        for kw in range(n_kw):
                            iw = tap(ow, kw, stride_w, pad_w, dil_w)
                            if iw < 0 or iw >= w_in:
                                continue
                            sgn = x_sign[b, c0 + c, ih, iw] * w_sign[co, c, kh, kw]
                            p = x_exp[b, c0 + c, ih, iw] + w_exp[co, c, kh, kw]
                            if base2_linear:
                                # branch-free on zero operands (post-ReLU inputs are half
                                # zeros): a zero term adds 0 and cannot overflow
                                sh = p + frac_bits
                                t = shl(1, sh) if sh >= 0 else 0
                                v = acc + sgn * t
                                acc = apply_overflow(v, acc_bits, True, sat)
                                n_ovf += acc != v
                                n_base2 += sgn != 0
                                continue
                            if sgn == 0:
                                continue
                            neg = sgn < 0
                            n_exp += 1
                            odd = False
                            octave = p
                            if k == 2:
                                octave = p >> 1
                                odd = (p & 1) == 1
                            sh = octave + frac_bits
                            t = shl(1, sh) if sh >= 0 else 0
                            n_shift += 1
                            if odd and split:
                                v = acc_odd - t if neg else acc_odd + t
                                acc_odd = apply_overflow(v, acc_bits, True, sat)
                                n_ovf += acc_odd != v
                                n_add += 1
                                n_acc += 1
                                continue
                            if odd:
                                scaled = 0
                                for j in range(n_shifts):
                                    scaled += ashr(t, sqrt2_shifts[j])
                                t = scaled
                                n_shift += n_nonzero_shifts
                                n_add += n_shifts - 1
                            v = acc - t if neg else acc + t
                            acc = apply_overflow(v, acc_bits, True, sat)
                            n_ovf += acc != v
                            n_add += 1
                            n_acc += 1
                if split:
                    prod = ashr(acc_odd * sqrt2_const, sqrt2_frac_bits)
                    v = acc + prod
                    acc = apply_overflow(v, acc_bits, True, sat)
                    n_ovf += acc != v
                    n_mul += 1
                    n_add += 1
                    n_acc += 1
                out[b, co, oh, ow] = acc
        n_exp += n_base2
        n_shift += n_base2
        n_add += n_base2
        n_acc += n_base2
        events[row, EV_EXPONENT_ADDS] = n_exp
        events[row, EV_COMPARES] = 0
        events[row, EV_SHIFT_OPS] = n_shift
        events[row, EV_ADDS] = n_add
        events[row, EV_ACC_UPDATES] = n_acc
        events[row, EV_LOG_TO_LINEAR] = 0
        events[row, EV_OVERFLOWS] = n_ovf
        events[row, EV_MULTIPLIES] = n_mul


@kernel(parallel=True)
def conv_log_accumulate(
    x_pow: np.ndarray,
    x_sign: np.ndarray,
    w_pow: np.ndarray,
    w_sign: np.ndarray,
    bias: np.ndarray,
    has_bias: bool,
    out: np.ndarray,
    events: np.ndarray,
    geometry: tuple[int, int, int, int, int, int, int],
    acc_bits: int,
    frac_bits: int,
    sat: bool,
    log_frac_bits: int,
    log_add: int,
) -> None:
    """Log-domain accumulation (SPEC §5.2, ``accumulate="log"``), vectorised across channels.

    One log2 register per sign, ``g = log_frac_bits`` fractional bits, ``P = p * 2**g``
    (``p * 2**(g-1)`` when ``k == 2``). The first term sets ``S = P``; the next ones
    (log2(1 + x) ~ x)::

        floor:     d = |(S >> g) - (P >> g)|;     S = max(S, P) + (2**g >> d)
        mitchell:  D = |S - P|, i = D >> g, phi = D mod 2**g
                   S = max(S, P) + ((2**(g+1) - phi) >> (i + 1))

    The output is ``OVF(bias + lin(S_pos) - lin(S_neg))``, ``lin`` per :func:`log_to_linear`
    and 0 for an empty register.

    Each output is a serial chain (the merge is order-dependent), so the chains of all the
    output channels of a group at one pixel run side by side: for every term (c, kh, kw) in
    order, the input is one scalar and each channel's lane merges its own weight's term,
    branch-free (the floor and the mitchell updates are selects, shifts clamped to 63), which
    the compiler turns into SIMD lanes. A zero input (or padding) is skipped for every lane at
    once; a zero weight leaves its lane unchanged.

    Parameters
    ----------
    x_pow : ndarray of int64, shape (B, C, H, W)
        Activation exponents (units ``1/k``) shifted left by ``g - (k - 1)``.
    x_sign : ndarray of int64, shape (B, C, H, W)
        Activation signs.
    w_pow, w_sign : ndarray of int64, shape (groups, C/groups, Kh, Kw, Co/groups)
        Weight exponents shifted as ``x_pow`` (a term's ``P`` is ``x_pow + w_pow``, no
        per-term shift) and signs, the group's output channels last (the lanes).
    bias, has_bias, out, geometry, acc_bits, frac_bits, sat
        As in :func:`conv_log`.
    log_frac_bits, log_add : int
        ``g`` and ``LOG_ADD_*``.
    events : ndarray of int64, shape (B * Ho, N_EVENTS)
        Event counts per (batch item, output row), written.
    """
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups = geometry
    n_b, _, h_in, w_in = x_pow.shape
    _, n_co, h_out, w_out = out.shape
    _, n_cg, n_kh, n_kw, cog = w_pow.shape
    g = log_frac_bits
    one = np.int64(1) << g
    two = np.int64(2) << g
    floor_add = log_add == LOG_ADD_FLOOR
    for task in prange(n_b * h_out):
        b = task // h_out
        oh = task % h_out
        reg_pos = np.zeros(cog, np.int64)
        reg_neg = np.zeros(cog, np.int64)
        full_pos = np.zeros(cog, np.int64)
        full_neg = np.zeros(cog, np.int64)
        n_terms = 0
        n_merges = 0
        n_full = 0
        n_ovf = 0
        for ow in range(w_out):
            for grp in range(groups):
                reg_pos[:] = 0
                reg_neg[:] = 0
                full_pos[:] = 0
                full_neg[:] = 0
                for c in range(n_cg):
                    ci = grp * n_cg + c
                    for kh in range(n_kh):
                        ih = tap(oh, kh, stride_h, pad_h, dil_h)
                        if ih < 0 or ih >= h_in:
                            continue
                        for kw in range(n_kw):
                            iw = tap(ow, kw, stride_w, pad_w, dil_w)
                            if iw < 0 or iw >= w_in:
                                continue
                            xs = x_sign[b, ci, ih, iw]
                            if xs == 0:
                                continue
                            xp = x_pow[b, ci, ih, iw]
                            wp = w_pow[grp, c, kh, kw]
                            wsg = w_sign[grp, c, kh, kw]
                            for j in range(cog):  # one lane per output channel: selects only
                                sg = xs * wsg[j]
                                p = xp + wp[j]
                                is_pos = np.int64(sg > 0)
                                is_neg = np.int64(sg < 0)
                                a_pos, a_neg = reg_pos[j], reg_neg[j]
                                f_pos, f_neg = full_pos[j], full_neg[j]
                                s = a_neg if is_neg else a_pos
                                full = f_neg if is_neg else f_pos
                                top = s if s > p else p
                                if floor_add:
                                    d = abs((s >> g) - (p >> g))
                                    inc = one >> (d if d < 63 else 63)
                                else:
                                    dd = abs(s - p)
                                    i = dd >> g
                                    sh = i + 1
                                    inc = (two - (dd - (i << g))) >> (sh if sh < 63 else 63)
                                new = top + inc if full else p
                                reg_pos[j] = new if is_pos else a_pos
                                reg_neg[j] = new if is_neg else a_neg
                                n_merges += full & (is_pos | is_neg)
                                n_terms += is_pos | is_neg
                                full_pos[j] = f_pos | is_pos
                                full_neg[j] = f_neg | is_neg
                for j in range(cog):
                    co = grp * cog + j
                    lin_pos = 0
                    lin_neg = 0
                    if full_pos[j]:
                        lin_pos, o = log_to_linear(reg_pos[j], g, frac_bits, acc_bits, sat)
                        n_ovf += o
                        n_full += 1
                    if full_neg[j]:
                        lin_neg, o = log_to_linear(reg_neg[j], g, frac_bits, acc_bits, sat)
                        n_ovf += o
                        n_full += 1
                    v = bias[co] + lin_pos - lin_neg
                    y = apply_overflow(v, acc_bits, True, sat)
                    n_ovf += y != v
                    out[b, co, oh, ow] = y
        n_out = w_out * n_co
        events[task, EV_EXPONENT_ADDS] = n_terms
        events[task, EV_COMPARES] = n_merges
        events[task, EV_SHIFT_OPS] = n_merges + n_full
        events[task, EV_ADDS] = n_merges * (1 if floor_add else 2) + n_out * (2 if has_bias else 1)
        events[task, EV_ACC_UPDATES] = n_terms
        events[task, EV_LOG_TO_LINEAR] = n_full
        events[task, EV_OVERFLOWS] = n_ovf
        events[task, EV_MULTIPLIES] = 0
