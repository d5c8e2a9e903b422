"""Slow, literal re-implementations of SPEC §2-4, written for obviousness.

Nothing here uses shiftsim: exact rationals (``fractions.Fraction``) and Python ints only, so the
oracle shares no code (and no floating-point shortcut) with what it checks. One vectorized
integer model (``shiftcnn_fixed``) exists for the exhaustive float32 sweeps.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

#: (mantissa bits including the leading one, smallest normal exponent) of the IEEE formats
IEEE = {np.dtype(np.float32): (24, -126), np.dtype(np.float64): (53, -1022)}


def floor_log2(q: Fraction) -> int:
    """The integer ``k`` with ``2**k <= q < 2**(k+1)``, for ``q > 0``."""
    k = q.numerator.bit_length() - q.denominator.bit_length()
    while Fraction(2) ** k > q:
        k -= 1
    while Fraction(2) ** (k + 1) <= q:
        k += 1
    return k


def round_half_even(q: Fraction) -> int:
    """Nearest integer to ``q``, ties to even."""
    fl = math.floor(q)
    rest = q - fl
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and fl % 2 == 1):
        return fl + 1
    return fl


def round_to_float(q: Fraction, dtype: np.dtype) -> Fraction:
    """``q`` rounded to the nearest value of an IEEE binary format (ties to even, subnormals)."""
    if q == 0:
        return Fraction(0)
    p, emin = IEEE[np.dtype(dtype)]
    sign = 1 if q > 0 else -1
    a = abs(q)
    k = max(floor_log2(a), emin)  # exponent of the leading bit, clamped in the subnormal range
    ulp = Fraction(2) ** (k - p + 1)
    return sign * round_half_even(a / ulp) * ulp


# ---- ShiftCNN (SPEC §3) ----------------------------------------------------------------------


def shiftcnn(values: list[float], n_codebooks: int, bits: int, dtype: np.dtype) -> list[list[int]]:
    """Per-tensor ShiftCNN indices of ``values`` (floats of ``dtype``), one list per value."""
    half = 2 ** (bits - 1) - 1
    exact = [Fraction(float(v)) for v in values]
    wmax = max(abs(v) for v in exact)
    out = []
    for v in exact:
        idx = [0] * n_codebooks
        if wmax != 0:
            r = round_to_float(v / wmax, dtype)  # "r = W / wmax in W's float dtype"
            for n in range(1, n_codebooks + 1):
                if r == 0:
                    continue
                s = 1 if r > 0 else -1
                k = floor_log2(abs(r))  # 2**k <= |r| < 2**(k+1)
                if abs(r) > Fraction(3, 2) * Fraction(2) ** k:  # nearer 2**(k+1); ties stay down
                    k += 1
                j = 2 - n - k
                if j > half:
                    continue
                idx[n - 1] = s * j
                r -= s * Fraction(2) ** k
        out.append(idx)
    return out


def shiftcnn_value(idx: list[int]) -> Fraction:
    """The normalized value of one weight's indices: sum of sign(j) * 2**-(|j| + n - 2)."""
    total = Fraction(0)
    for n, j in enumerate(idx, start=1):
        if j:
            total += (1 if j > 0 else -1) * Fraction(1, 2 ** (abs(j) + n - 2))
    return total


def shiftcnn_fixed(r_fixed: np.ndarray, frac: int, n_codebooks: int, bits: int) -> np.ndarray:
    """Vectorized integer model for normalized inputs given exactly as ``r_fixed * 2**-frac``.

    ``r_fixed`` is int64 with ``|r_fixed| <= 2**frac`` (``frac <= 60``); residuals stay
    integers as long as every codeword ``2**k`` taken has ``k >= -frac`` (true for the
    small formats it is used with: ``k >= 2 - N - half``). Returns int64 indices,
    shape ``r_fixed.shape + (N,)``.
    """
    half = 2 ** (bits - 1) - 1
    r = r_fixed.astype(np.int64).copy()
    out = np.zeros((*r.shape, n_codebooks), dtype=np.int64)
    for n in range(1, n_codebooks + 1):
        a = np.abs(r)
        # floor(log2 a) by comparing against every power of two (integers, no floats)
        fl = np.full(a.shape, -1, dtype=np.int64)
        for b in range(frac + 2):  # |r| <= 2**frac
            fl += a >= (np.int64(1) << b)
        up = 2 * a > 3 * (np.int64(1) << np.maximum(fl, 0))  # a > 1.5 * 2**fl: nearer 2**(fl+1)
        k_fixed = fl + up  # exponent in units of 2**-frac
        k = k_fixed - frac
        j = 2 - n - k
        take = (a > 0) & (j <= half)
        s = np.sign(r)
        out[..., n - 1] = np.where(take, s * j, 0)
        r = np.where(take, r - s * (np.int64(1) << np.where(take, k_fixed, 0)), r)
    return out


# ---- log and linear (SPEC §4) ----------------------------------------------------------------


def log_exponent(x: Fraction, k: int) -> int:
    """``round(k * log2 x)`` for ``x > 0``: the ``e`` with ``2**(2e-1) <= x**(2k) < 2**(2e+1)``."""
    y = x ** (2 * k)
    e = (floor_log2(y) + 1) // 2
    while not Fraction(2) ** (2 * e - 1) <= y:
        e -= 1
    while not y < Fraction(2) ** (2 * e + 1):
        e += 1
    return e


def log_quant(x: float, bits: int, fsr: Fraction, k: int) -> tuple[int, int | None]:
    """SPEC §4 LogQuant of one value: ``(sign, exponent)``, ``(0, None)`` for zero."""
    q = Fraction(float(x))
    if q == 0:
        return 0, None
    kfsr = int(k * fsr)
    e = log_exponent(abs(q), k)
    if e <= kfsr - 2**bits:
        return 0, None
    e = min(e, kfsr - 1)
    return (1 if q > 0 else -1), e


def log_value(sign: int, e: int | None, k: int) -> float:
    """A log code's value, as the nearest float64 (via exact powers of two and sqrt(2))."""
    if sign == 0:
        return 0.0
    if e % k == 0:
        return sign * math.ldexp(1.0, e // k)
    return sign * math.ldexp(math.sqrt(2.0), (e - 1) // 2)


def log_from_fixed(
    raw: int, frac_bits: int, bits: int, fsr: Fraction, k: int, mantissa_bits: int
) -> tuple[int, int | None]:
    """SPEC §4 hardware rule: F = m bits after the leading one; round up iff 1 + F/2**m is at
    or beyond the next rounding point (sqrt(2) for base 2; 2**0.25, 2**0.75 for base sqrt(2))."""
    if raw == 0:
        return 0, None
    a = abs(raw)
    p = a.bit_length() - 1
    mant = Fraction(a, 2**p)  # in [1, 2)
    f = Fraction(math.floor((mant - 1) * 2**mantissa_bits), 2**mantissa_bits)  # truncated
    y = (1 + f) ** (2 * k)  # round(k log2(1+f)) = number of points 2**((2i-1)/2) <= y, i >= 1
    steps = sum(1 for i in range(1, k + 1) if y >= Fraction(2) ** (2 * i - 1))
    e = k * (p - frac_bits) + steps
    kfsr = int(k * fsr)
    if e <= kfsr - 2**bits:
        return 0, None
    return (1 if raw > 0 else -1), min(e, kfsr - 1)


def linear_quant(x: float, bits: int, fsr: int, signed: bool) -> int:
    """SPEC §4 LinearQuant of one value, as a raw integer (half to even)."""
    step = Fraction(2) ** (fsr - bits)
    raw = round_half_even(Fraction(float(x)) / step)
    lo = -(2**bits) if signed else 0
    return min(max(raw, lo), 2**bits)


# ---- fixed point (SPEC §2) -------------------------------------------------------------------


def fixed_from_float(
    x: float, bits: int, frac_bits: int, signed: bool, rounding: str, overflow: str
) -> tuple[int, bool]:
    """FixedFormat.from_float of one value, with Python ints: ``(raw, overflowed)``.

    ``rounding`` in {"TRN", "TRN_ZERO", "RND", "RND_CONV"}, ``overflow`` in {"WRAP", "SAT"}.
    """
    v = Fraction(float(x)) * Fraction(2) ** frac_bits
    if rounding == "TRN":
        r = math.floor(v)
    elif rounding == "TRN_ZERO":
        r = math.trunc(v)
    elif rounding == "RND":
        r = math.floor(v + Fraction(1, 2))
    else:
        r = round_half_even(v)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    over = not lo <= r <= hi
    if overflow == "SAT":
        return min(max(r, lo), hi), over
    return wrap_int(r, bits, signed), over


def wrap_int(r: int, bits: int, signed: bool) -> int:
    """Two's-complement wrap of a Python int into ``bits`` bits."""
    r %= 2**bits
    if signed and r >= 2 ** (bits - 1):
        r -= 2**bits
    return r


def ieee_mantissa(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Split positive finite floats into integers ``M * 2**q`` with ``2**(p-1) <= M < 2**p``.

    Read from the bit pattern (subnormals normalized by shifting): returns ``(M, q, p)``, int64.
    """
    dt = np.dtype(x.dtype)
    p, emin = IEEE[dt]
    ebits = 8 if dt == np.float32 else 11
    u = x.view(np.uint32 if dt == np.float32 else np.uint64).astype(np.uint64)
    field = ((u >> np.uint64(p - 1)) & np.uint64(2**ebits - 1)).astype(np.int64)
    mant = (u & np.uint64(2 ** (p - 1) - 1)).astype(np.int64)
    normal = field != 0
    m = np.where(normal, mant | (1 << (p - 1)), mant)
    q = np.where(normal, field - (2 ** (ebits - 1) - 1), emin) - (p - 1)
    for _ in range(p):  # subnormals: shift up to the normal range
        low = m < (1 << (p - 1))
        m = np.where(low, m << 1, m)
        q = np.where(low, q - 1, q)
    return m, q, p


def log_exponent_ieee(x: np.ndarray, k: int) -> np.ndarray:
    """Vectorized ``round(k * log2 x)`` for positive floats, from integer mantissas only.

    ``x = M * 2**q``: ``k * log2 x = k*(q + p - 1) + k*log2(M / 2**(p-1))``; the second part
    rounds up past ``i`` for each ``i`` in 1..k with ``M**(2k) >= 2**(2k(p-1) + 2i - 1)``,
    i.e. ``M >= T_i``, the smallest such integer (found with Python ints).
    """
    m, q, p = ieee_mantissa(x)
    e = k * (q + p - 1)
    for i in range(1, k + 1):
        bound = 2 ** (2 * k * (p - 1) + 2 * i - 1)
        t = 2 ** (p - 1)
        step = 2 ** (p - 2)
        while step:  # binary search: smallest t with t**(2k) >= bound
            if (t + step - 1) ** (2 * k) < bound:
                t += step
            else:
                step //= 2
        while t ** (2 * k) < bound:
            t += 1
        e = e + (m >= t)
    return e
