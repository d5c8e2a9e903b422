"""Float -> hardware codes: ShiftCNN (SPEC §3), log and linear (SPEC §4).

Validating numpy code; no numba here. Every rounding decision is exact: the ShiftCNN and log
quantizers compare ``frexp`` mantissas against constants, never a floating-point ``log2``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.formats import (
    MAX_FIXED_BITS,
    FixedFormat,
    LogFormat,
    Rounding,
    as_float_array,
    check_enum,
    check_int,
    round_scaled,
)

__all__ = [
    "LinearCode",
    "LogCode",
    "ShiftCode",
    "check_scale",
    "count_log_clipped",
    "log_from_fixed",
    "quantize_linear",
    "quantize_log",
    "quantize_shiftcnn",
    "shiftcnn_error_bound",
]

MAX_CODEBOOKS = 8


# --------------------------------------------------------------------------------------------
# ShiftCNN (SPEC §3)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ShiftCode:
    """ShiftCNN weight codes: N signed B-bit indices per weight, and a float scale.

    Attributes
    ----------
    index : ndarray of int8, shape ``w.shape + (n_codebooks,)``
        Signed indices in ``[-half, half]``, ``half = 2**(bits-1) - 1``. A nonzero index ``j``
        of codebook ``n`` (1-based) selects ``sign(j) * (x >> (|j| + n - 2))``; 0 selects 0.
    scale : ndarray of float64
        ``wmax``: shape ``()`` for a per-tensor scale, else one value per slice along ``axis``.
    n_codebooks : int
        N.
    bits : int
        B.
    axis : int or None
        The axis of ``w`` the scale varies along (non-negative), or None.
    """

    index: NDArray[np.int8]
    scale: NDArray[np.float64]
    n_codebooks: int
    bits: int
    axis: int | None = None

    def __post_init__(self) -> None:
        check_scale("ShiftCode.scale", self.scale)

    @property
    def half(self) -> int:
        """Largest index magnitude, ``2**(bits-1) - 1``."""
        return (1 << (self.bits - 1)) - 1

    @property
    def max_shift(self) -> int:
        """S = half + N - 2: the largest shift the shift unit makes."""
        return self.half + self.n_codebooks - 2

    @property
    def n_values(self) -> int:
        """P = M + 2(N-1), M = 2**bits - 1: distinct values of the codebooks, zero included."""
        return (1 << self.bits) - 1 + 2 * (self.n_codebooks - 1)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the quantized weight tensor (``index.shape`` without the last axis)."""
        return tuple(self.index.shape[:-1])

    def shifts(self) -> tuple[NDArray[np.int64], NDArray[np.int8]]:
        """Decode the indices as the hardware does: shift amounts and signs.

        Returns
        -------
        shift : ndarray of int64, shape ``index.shape``
            ``|j| + n - 2`` for a nonzero index ``j`` of codebook ``n``; 0 where the index is 0.
        sign : ndarray of int8, shape ``index.shape``
            ``sign(j)``: -1, 0 or +1 (0 selects the value zero).

        Examples
        --------
        >>> code = quantize_shiftcnn([0.8, -1.0], n_codebooks=2, bits=4)
        >>> code.index.tolist()
        [[1, -2], [-1, 0]]
        >>> shift, sign = code.shifts()
        >>> shift.tolist(), sign.tolist()
        ([[0, 2], [0, 0]], [[1, -1], [-1, 0]])
        """
        j = self.index.astype(np.int64)
        n = np.arange(1, self.n_codebooks + 1, dtype=np.int64)
        sign = np.sign(self.index).astype(np.int8)
        shift = np.where(j != 0, np.abs(j) + n - 2, 0).astype(np.int64)
        return shift, sign

    def normalized(self) -> NDArray[np.float64]:
        """The dequantized weights divided by the scale: ``sum_n sign_n * 2**-shift_n``.

        Float64, the weight shape; exact whenever the sum fits 53 bits (always for float32
        weights).
        """
        index = _c_order(self.index).reshape(-1, self.n_codebooks)
        out = np.empty(index.shape[0], dtype=np.float64)
        n = np.arange(1, self.n_codebooks + 1, dtype=np.int64)
        for block in _blocks(index.shape[0]):  # in blocks: temporaries stay small
            j = index[block].astype(np.int64)
            shift = np.where(j != 0, np.abs(j) + n - 2, 0)
            terms = np.ldexp(np.sign(j).astype(np.float64), -shift)
            # Smallest terms first: the partial sums stay exact as long as the total is.
            out[block] = np.sum(terms[..., ::-1], axis=-1)
        return out.reshape(self.weight_shape)

    def to_float(self) -> NDArray[np.float64]:
        """Dequantize: ``scale * sum_n sign_n * 2**-shift_n``, float64, the weight shape.

        Examples
        --------
        >>> quantize_shiftcnn([0.2, 1.0], n_codebooks=2, bits=4).to_float().tolist()
        [0.1875, 1.0]
        """
        out = self.normalized()
        out *= _scale_broadcast(self.scale, self.axis, len(self.weight_shape))
        return out


def _scale_broadcast(
    scale: NDArray[np.float64], axis: int | None, ndim: int
) -> NDArray[np.float64]:
    """Reshape a per-slice scale so that it broadcasts against an ``ndim`` tensor."""
    if axis is None:
        return scale
    shape = [1] * ndim
    shape[axis] = -1
    return scale.reshape(shape)


def _check_axis(axis: object, ndim: int) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int or None, got {axis!r}")
    if not -ndim <= int(axis) < ndim:
        raise ValueError(f"axis must be in [{-ndim}, {ndim - 1}] for a {ndim}-d w, got {axis!r}")
    return int(axis) % ndim


#: Elements per block of the elementwise quantizers: their temporaries stay a few MB, so the
#: peak memory of a quantization is its output plus a constant, not ten times the weights.
BLOCK_ELEMENTS = 1 << 16


def check_scale(name: str, scale: object) -> None:
    """Raise unless ``scale`` is real, finite and non-negative (a weight scale).

    A negative scale would flip the sign of every output silently, so it is refused.
    """
    value: Any = scale
    if isinstance(value, (bool, np.bool_)) or np.iscomplexobj(value):
        raise TypeError(f"{name} must be a real number or array, got {scale!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or array, got {scale!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {scale!r}")
    if np.any(arr < 0):
        raise ValueError(
            f"{name} must be >= 0 (a negative scale would flip the output's sign), got {scale!r}"
        )


def _c_order(a: NDArray[Any]) -> NDArray[Any]:
    """``a`` itself when C-contiguous, else a C-ordered copy (0-d arrays stay 0-d)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def _blocks(n: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of at most :data:`BLOCK_ELEMENTS`."""
    for start in range(0, n, BLOCK_ELEMENTS):
        yield slice(start, min(start + BLOCK_ELEMENTS, n))


def quantize_shiftcnn(
    w: ArrayLike, n_codebooks: int, bits: int, axis: int | None = None
) -> ShiftCode:
    """Quantize weights to ShiftCNN codes: N greedy codebooks of signed powers of two (SPEC §3).

    Parameters
    ----------
    w : array_like of float
        Finite, non-empty weights, float32 or float64 (integers become float64, float16
        float32). The normalization ``w / wmax`` and the residuals are computed in this dtype.
    n_codebooks : int
        N, 1..8.
    bits : int
        B, 2..8: each index is a signed B-bit integer in ``[-half, half]``,
        ``half = 2**(B-1) - 1``.
    axis : int, optional
        Scale per slice along this axis (e.g. 0 for per-output-channel); per tensor when None.

    Returns
    -------
    ShiftCode
        ``index`` int8 of shape ``w.shape + (N,)``, ``scale`` float64 ``wmax``.

    Raises
    ------
    TypeError
        If ``w`` is not numeric, or ``n_codebooks``, ``bits`` or ``axis`` are not ints.
    ValueError
        If ``w`` is empty or not finite, or ``n_codebooks``, ``bits`` or ``axis`` are out of
        range.

    Notes
    -----
    Gudovskiy & Rigazio (2017), Eq. (2)-(3) and the reference script, made exact: per element
    and codebook ``n``, ``|r| = m * 2**e`` (``frexp``), ``k = e - 1`` or ``e`` when
    ``m > 0.75`` (nearest power of two; an exact tie ``1.5 * 2**k`` rounds down), index
    ``j = 2 - n - k`` (zero, residual kept, when ``j > half``), residual ``r - sign * 2**k``
    (exact by Sterbenz' lemma).

    Error bound, normalized (``|w / wmax - normalized()|``)::

        max(2**(-2N), 3 * 2**(-N - half))

    By induction on n: the residual after codebook n is at most ``max(4**-n,
    0.75 * 2**(2 - n - half))`` (rounding to the nearest power of two leaves at most a third,
    and at most a quarter of the next-larger codeword; anything below ``0.75`` of C_n's smallest
    codeword is kept). N=2, B=4: 0.0625. The bound is reached (``0.75`` for N=1 and B >= 3
    leaves 0.25). Add the rounding of ``w / wmax`` (half an ulp of ``w``'s dtype).

    Examples
    --------
    >>> code = quantize_shiftcnn([0.8, 0.2, 0.01, 0.75, -0.3, 1.0], n_codebooks=2, bits=4)
    >>> code.index.tolist()
    [[1, -2], [3, -4], [0, 7], [2, 2], [-3, -4], [1, 0]]
    >>> code.to_float().tolist()
    [0.75, 0.1875, 0.0078125, 0.75, -0.3125, 1.0]
    >>> code.n_values
    17
    """
    n_codebooks = check_int("n_codebooks", n_codebooks, 1, MAX_CODEBOOKS)
    bits = check_int("bits", bits, 2, 8)
    arr = as_float_array(w, "w")
    if arr.size == 0:
        raise ValueError(f"w must not be empty, got shape {arr.shape}")
    ax = _check_axis(axis, arr.ndim)
    half = (1 << (bits - 1)) - 1
    arr = _c_order(arr)
    dtype = arr.dtype.type
    # max |w| without a full-size |w|: max(max w, -min w); + 0 turns -0.0 into 0.0
    if ax is None:
        wmax = np.maximum(arr.max(), -arr.min()) + dtype(0)
    else:
        others = tuple(i for i in range(arr.ndim) if i != ax)
        if others:
            hi, lo = arr.max(axis=others, keepdims=True), arr.min(axis=others, keepdims=True)
            wmax = np.maximum(hi, -lo) + dtype(0)
        else:
            wmax = np.abs(arr)
    wmax_flat = np.asarray(wmax).reshape(-1)
    inner = math.prod(arr.shape[ax + 1 :]) if ax is not None else 1
    n_ax = arr.shape[ax] if ax is not None else 1
    flat = arr.reshape(-1)
    index = np.zeros((*arr.shape, n_codebooks), dtype=np.int8)
    index_flat = index.reshape(-1, n_codebooks)
    one = dtype(1)
    for block in _blocks(flat.size):  # elementwise, in blocks: temporaries stay small
        if ax is None:
            wm: Any = wmax_flat[0]
        else:
            wm = wmax_flat[(np.arange(block.start, block.stop) // inner) % n_ax]
        safe = np.where(wm == 0, dtype(1), wm)
        r = (flat[block] / safe).astype(arr.dtype, copy=False)  # IEEE division in w's dtype
        r = np.where(wm == 0, dtype(0), r)
        for n in range(1, n_codebooks + 1):
            m, e = np.frexp(np.abs(r))
            k = e.astype(np.int64) - 1 + (m > 0.75)
            j = 2 - n - k
            take = (r != 0) & (j <= half)
            s = np.sign(r)
            index_flat[block, n - 1] = np.where(take, s * j, 0).astype(np.int8)
            step = np.ldexp(one, np.where(take, k, 0).astype(np.int32)).astype(arr.dtype)
            r = np.where(take, r - s * step, r).astype(arr.dtype, copy=False)
    scale = np.asarray(wmax, dtype=np.float64)
    scale = scale.reshape(()) if ax is None else scale.reshape(-1)
    return ShiftCode(index=index, scale=scale, n_codebooks=n_codebooks, bits=bits, axis=ax)


def shiftcnn_error_bound(n_codebooks: int, bits: int) -> float:
    """Largest normalized error ``|w / wmax - normalized|`` of :func:`quantize_shiftcnn`.

    ``max(2**(-2N), 3 * 2**(-N - half))``, ``half = 2**(B-1) - 1``; the rounding of
    ``w / wmax`` comes on top (see :func:`quantize_shiftcnn`).

    Examples
    --------
    >>> shiftcnn_error_bound(2, 4)
    0.0625
    """
    n_codebooks = check_int("n_codebooks", n_codebooks, 1, MAX_CODEBOOKS)
    bits = check_int("bits", bits, 2, 8)
    half = (1 << (bits - 1)) - 1
    return max(math.ldexp(1.0, -2 * n_codebooks), 3 * math.ldexp(1.0, -n_codebooks - half))


# --------------------------------------------------------------------------------------------
# Log codes (SPEC §4)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LogCode:
    """Log codes: each value is zero or ``sign * 2**(exponent / k)`` (SPEC §4).

    Attributes
    ----------
    exponent : ndarray of int64
        Exponent in units of ``1/k`` of log2, in ``[format.e_min, format.e_max]``; the quantizers
        put ``e_min`` where ``sign == 0`` (any value is allowed there).
    sign : ndarray of int8
        -1, 0 or +1; 0 means the value zero.
    format : LogFormat
        The format the codes belong to.
    """

    exponent: NDArray[np.int64]
    sign: NDArray[np.int8]
    format: LogFormat

    def to_float(self) -> NDArray[np.float64]:
        """The values, float64: ``sign * 2**(exponent / k)`` (``sqrt(2)`` correctly rounded).

        Examples
        --------
        >>> quantize_log([0.3, -5.0, 0.0], bits=3, fsr=2).to_float().tolist()
        [0.25, -2.0, 0.0]
        """
        exponent = _c_order(np.asarray(self.exponent)).reshape(-1)
        sign = np.broadcast_to(self.sign, np.shape(self.exponent)).reshape(-1)
        out = np.empty(exponent.size, dtype=np.float64)
        for block in _blocks(exponent.size):  # elementwise, in blocks: temporaries stay small
            e = exponent[block].astype(np.int64)
            if self.format.k == 1:
                mag = np.ldexp(1.0, e)
            else:
                odd = e & 1
                mag = np.ldexp(np.where(odd == 1, np.sqrt(2.0), 1.0), (e - odd) // 2)
            s = sign[block]
            out[block] = np.where(s == 0, 0.0, s * mag)
        return out.reshape(np.shape(self.exponent))


def _float_threshold(dtype: type[np.floating], p: int, q: int) -> np.floating:
    """Smallest float ``c`` of ``dtype`` with ``c >= 2**(-p/q)`` (decided with Fractions)."""
    target = Fraction(1, 2**p)
    c = dtype(2.0 ** (-p / q))
    while Fraction(float(c)) ** q < target:
        c = np.nextafter(c, dtype(2))
    while Fraction(float(np.nextafter(c, dtype(0)))) ** q >= target:
        c = np.nextafter(c, dtype(0))
    return c


#: Per dtype, the mantissa thresholds of the exact log rounding: (p, q) -> 2**(-p/q) rounded up.
_THRESHOLDS = {
    dt: {pq: _float_threshold(dt, *pq) for pq in ((1, 2), (1, 4), (3, 4))}
    for dt in (np.float32, np.float64)
}


def _nearest_log_exponent(mag: NDArray[np.floating], k: int) -> NDArray[np.int64]:
    """``round(k * log2(mag))`` for positive ``mag``, exact (ties are impossible)."""
    m, e = np.frexp(mag)  # mag = m * 2**e, m in [0.5, 1): k*log2(m) in [-k, 0)
    t = _THRESHOLDS[mag.dtype.type]
    e = e.astype(np.int64)
    if k == 1:  # log2(m) >= -1/2  <=>  m >= 2**-0.5
        return e - 1 + (m >= t[(1, 2)])
    # 2*log2(m) rounds to 0 iff m >= 2**-0.25, to -1 iff m >= 2**-0.75, else -2
    return 2 * e - 2 + (m >= t[(3, 4)]) + (m >= t[(1, 4)])


def _clip_log(
    e: NDArray[np.int64], sign: NDArray[np.int8], fmt: LogFormat
) -> tuple[NDArray[np.int64], NDArray[np.int8]]:
    """Flush underflow (``e <= k*fsr - 2**bits``) to zero and clip overflow to ``e_max``."""
    sign = np.where(e < fmt.e_min, 0, sign).astype(np.int8)
    e = np.clip(e, fmt.e_min, fmt.e_max)
    return np.where(sign == 0, fmt.e_min, e).astype(np.int64), sign


def count_log_clipped(values: ArrayLike, fmt: LogFormat) -> int:
    """How many values LogQuant clips: at or above the rounding boundary above ``fmt``'s top code.

    The boundary is ``2**((e_max + 1/2) / k)``; magnitudes count (a signed format clips both
    ways).

    Examples
    --------
    >>> count_log_clipped([1.0, 1.4, 1.5, -3.0], LogFormat(2, 1))  # top code 2**0, from 2**0.5
    2
    """
    boundary = 2.0 ** ((fmt.e_max + 0.5) / fmt.k)
    return int(np.count_nonzero(np.abs(np.asarray(values, dtype=np.float64)) >= boundary))


def quantize_log(
    x: ArrayLike, bits: int, fsr: float, base: int | str = 2, signed: bool = True
) -> LogCode:
    """Quantize values to log codes: ``round(k * log2|x|)``, flushed and clipped (SPEC §4).

    Parameters
    ----------
    x : array_like of float
        Finite values, float32 or float64 (decided exactly in that dtype).
    bits : int
        Exponent code width, 1..8: ``2**bits - 1`` nonzero magnitudes plus zero.
    fsr : int or float
        Full-scale range in log2 units; ``k * fsr`` must be an integer.
    base : 2 or "sqrt2", default 2
        ``k = 1`` or ``k = 2`` exponent steps per octave.
    signed : bool, default True
        When False, ``x`` must be non-negative (activations after ReLU).

    Returns
    -------
    LogCode
        Same shape as ``x``.

    Raises
    ------
    TypeError, ValueError
        Bad dtype, NaN/Inf, negative values when ``signed`` is False, or a bad format field.

    Notes
    -----
    Miyashita, Lee & Murmann (2016), Eq. (3): ``LogQuant(x) = 0`` when ``x == 0``, else
    ``clip(round(k log2|x|), k*fsr - 2**bits + 1, k*fsr - 1)`` with underflow (the rounded
    exponent at or below ``k*fsr - 2**bits``) flushed to zero. With ``|x| = m * 2**E``
    (``frexp``) the rounding is ``E - 1 + (m >= 2**-0.5)`` for base 2 and
    ``2E - 2 + (m >= 2**-0.75) + (m >= 2**-0.25)`` for base sqrt(2); the thresholds are the
    smallest floats of ``x``'s dtype at or above the irrational constants, so the comparison is
    exact and ties cannot occur.

    Examples
    --------
    >>> code = quantize_log([0.7, 0.71, 3.0, 1e-3, 0.0], bits=3, fsr=1)
    >>> code.exponent.tolist(), code.sign.tolist()
    ([-1, 0, 0, -6, -6], [1, 1, 1, 0, 0])
    """
    fmt = LogFormat(bits, fsr, base, signed)
    arr = as_float_array(x, "x")
    if not signed and np.any(arr < 0):
        bad = arr[arr < 0].flat[0]
        raise ValueError(f"x must be non-negative when signed is False, got {bad!r}")
    flat = _c_order(arr).reshape(-1)
    exponent = np.empty(arr.shape, dtype=np.int64)
    signs = np.empty(arr.shape, dtype=np.int8)
    e_flat, s_flat = exponent.reshape(-1), signs.reshape(-1)
    for block in _blocks(flat.size):  # elementwise, in blocks: temporaries stay small
        part = flat[block]
        mag = np.abs(part)
        e = _nearest_log_exponent(np.where(mag != 0, mag, mag.dtype.type(1)), fmt.k)
        sign = np.sign(part).astype(np.int8)  # 0 for zeros
        e_flat[block], s_flat[block] = _clip_log(e, sign, fmt)
    return LogCode(exponent=exponent, sign=signs, format=fmt)


def _ceil_root(n: int, q: int) -> int:
    """Smallest integer ``t >= 0`` with ``t**q >= n`` (``n >= 0``, ``q`` in {2, 4})."""
    t = math.isqrt(n) if q == 2 else math.isqrt(math.isqrt(n))
    while t**q < n:
        t += 1
    while t > 0 and (t - 1) ** q >= n:
        t -= 1
    return t


def log_mantissa_thresholds(mantissa_bits: int, base: int | str = 2) -> tuple[int, ...]:
    """Integer thresholds of the fixed-point -> log rounding rule of :func:`log_from_fixed`.

    Base 2: ``(T,)`` with ``T = ceil((sqrt(2) - 1) * 2**m)``. Base sqrt(2):
    ``(T1, T3)`` with ``T1 = ceil((2**0.25 - 1) * 2**m)``, ``T3 = ceil((2**0.75 - 1) * 2**m)``.

    Examples
    --------
    >>> log_mantissa_thresholds(3), log_mantissa_thresholds(3, "sqrt2")
    ((4,), (2, 6))
    """
    m = check_int("mantissa_bits", mantissa_bits, 0, MAX_FIXED_BITS)
    LogFormat(1, 0, base)  # validates base
    one = 1 << m
    if base == 2:  # (1 + F/2**m) >= sqrt(2)  <=>  (2**m + F)**2 >= 2 * 4**m
        return (_ceil_root(2 * one * one, 2) - one,)
    # (2**m + F)**4 >= 2**(4m + 1) and >= 2**(4m + 3)
    return (_ceil_root(2 * one**4, 4) - one, _ceil_root(8 * one**4, 4) - one)


def log_from_fixed(
    raw: ArrayLike,
    fmt: FixedFormat,
    bits: int,
    fsr: float,
    base: int | str = 2,
    mantissa_bits: int | None = None,
    signed: bool | None = None,
) -> LogCode:
    """Convert fixed-point raw values to log codes the way hardware does (SPEC §4).

    Parameters
    ----------
    raw : array_like of int
        Raw values of ``fmt``.
    fmt : FixedFormat
        Their format (``frac_bits`` places the binary point).
    bits, fsr, base
        The log format, as in :func:`quantize_log`.
    mantissa_bits : int, optional
        m, 0..62: how many bits after the leading one the converter looks at (truncating the
        rest). None keeps them all: the result then equals :func:`quantize_log` of the values.
    signed : bool, optional
        Sign of the log format; ``fmt.signed`` when None. When False, negative raw values are
        rejected.

    Returns
    -------
    LogCode

    Raises
    ------
    TypeError, ValueError
        Bad raw values (non-integer, outside ``fmt``, negative when unsigned) or parameters.

    Notes
    -----
    A leading-one detector gives ``p = floor(log2|raw|)``; ``F`` is the m bits after the leading
    one, so ``|raw| ~ 2**p * (1 + F / 2**m)``. Base 2: ``e = p - frac_bits + (F >= T)`` with
    ``T = ceil((sqrt(2) - 1) * 2**m)`` (round up iff ``F >= sqrt(2) - 1`` in units of
    ``2**-m``). Base sqrt(2), the analogue: ``2 * log2(1 + F/2**m)`` rounds to 0, 1 or 2 at
    the thresholds ``2**0.25 - 1`` and ``2**0.75 - 1``, so
    ``e = 2 * (p - frac_bits) + (F >= T1) + (F >= T3)``. Then underflow flushes to zero and
    overflow clips, as in :func:`quantize_log`. See :func:`log_mantissa_thresholds`.

    Examples
    --------
    >>> fmt = FixedFormat(8, 4, signed=False)
    >>> code = log_from_fixed([16, 23, 24, 0], fmt, bits=4, fsr=4, mantissa_bits=2)
    >>> code.exponent.tolist(), code.sign.tolist()
    ([0, 0, 1, -11], [1, 1, 1, 0])
    """
    if not isinstance(fmt, FixedFormat):
        raise TypeError(f"fmt must be a FixedFormat, got {fmt!r}")
    if signed is None:
        signed = fmt.signed
    out_fmt = LogFormat(bits, fsr, base, signed)
    r = fmt.check_raw(raw, "raw")
    if not signed and np.any(r < 0):
        raise ValueError(
            f"raw must be non-negative when signed is False, got {int(r[r < 0].flat[0])}"
        )
    mag = np.abs(r)  # |raw| < 2**62: no int64 overflow
    nonzero = mag != 0
    # leading one, p = floor(log2|raw|): float64 may round |raw| up to the next power of two
    _, e2 = np.frexp(np.where(nonzero, mag, 1).astype(np.float64))
    p = e2.astype(np.int64) - 1
    p = np.where(np.left_shift(np.int64(1), p) > mag, p - 1, p)
    below = mag - np.left_shift(np.int64(1), p)  # the p bits after the leading one
    if mantissa_bits is None:
        m = MAX_FIXED_BITS
    else:
        m = check_int("mantissa_bits", mantissa_bits, 0, MAX_FIXED_BITS)
    # F = floor(below * 2**m / 2**p): shift right or left, never past 2**62
    f = np.where(
        p >= m,
        np.right_shift(below, np.maximum(p - m, 0)),
        np.left_shift(below, np.maximum(m - p, 0)),
    )
    up = np.zeros(mag.shape, dtype=np.int64)
    for t in log_mantissa_thresholds(m, base):
        up += f >= t
    e = out_fmt.k * (p - fmt.frac_bits) + up
    sign = np.sign(r).astype(np.int8)
    e, sign = _clip_log(np.where(nonzero, e, out_fmt.e_min), sign, out_fmt)
    return LogCode(exponent=e, sign=sign, format=out_fmt)


# --------------------------------------------------------------------------------------------
# Linear codes (SPEC §4)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LinearCode:
    """Linear (uniform) codes: value = ``raw * step`` (SPEC §4).

    Attributes
    ----------
    raw : ndarray of int64
        In ``[0, 2**bits]`` unsigned, ``[-2**bits, 2**bits]`` signed.
    step : float
        ``2**(fsr - bits)``.
    bits : int
        Magnitude bits: ``2**bits`` steps up to the full scale.
    fsr : float
        Full scale ``2**fsr`` (log2 units, an integer).
    signed : bool
        Whether negative values are kept (symmetric clip).
    """

    raw: NDArray[np.int64]
    step: float
    bits: int
    fsr: float
    signed: bool

    @property
    def format(self) -> FixedFormat:
        """A FixedFormat holding every ``raw``: ``bits + 1`` unsigned / ``bits + 2`` signed bits.

        The clip to ``2**fsr`` inclusive makes ``raw == 2**bits`` reachable, one more bit than
        ``bits``; ``frac_bits = bits - fsr``.
        """
        width = self.bits + (2 if self.signed else 1)
        return FixedFormat(width, self.bits - round(self.fsr), signed=self.signed)

    def to_float(self) -> NDArray[np.float64]:
        """The values, ``raw * step``, float64 (exact).

        Examples
        --------
        >>> quantize_linear([0.3, 2.0], bits=2, fsr=0).to_float().tolist()
        [0.25, 1.0]
        """
        return self.format.to_float(self.raw)


def quantize_linear(
    x: ArrayLike,
    bits: int,
    fsr: float,
    signed: bool = False,
    *,
    rounding: Rounding = Rounding.RND_CONV,
) -> LinearCode:
    """Quantize values to a uniform grid: ``clip(round(x / step), ...) * step`` (SPEC §4).

    Parameters
    ----------
    x : array_like of float
        Finite values, float32 or float64.
    bits : int
        1..60; ``step = 2**(fsr - bits)``.
    fsr : int
        Full scale ``2**fsr``; an integer in [-1000, 1000] (floats with integer values accepted).
    signed : bool, default False
        Unsigned clips to ``[0, 2**fsr]`` (negative values become 0); signed to
        ``[-2**fsr, 2**fsr]``.
    rounding : Rounding, default RND_CONV
        How ``x / step`` is rounded (half to even, as numpy's ``round``).

    Returns
    -------
    LinearCode
        ``raw`` in ``[0, 2**bits]`` (unsigned) or ``[-2**bits, 2**bits]`` (signed): the clip to
        ``2**fsr`` inclusive needs ``bits + 1`` bits unsigned, ``bits + 2`` signed, which is what
        ``.format`` holds.

    Raises
    ------
    TypeError, ValueError
        Bad dtype, NaN/Inf, or ``bits``/``fsr``/``rounding`` out of range.

    Notes
    -----
    Miyashita, Lee & Murmann (2016), Eq. (2): ``LinearQuant(x, bitwidth, FSR)``.

    Examples
    --------
    >>> code = quantize_linear([0.3, 0.625, 1.7, -0.2], bits=3, fsr=0)
    >>> code.raw.tolist(), code.step
    ([2, 5, 8, 0], 0.125)
    """
    bits = check_int("bits", bits, 1, MAX_FIXED_BITS - 2)
    if isinstance(fsr, bool) or not isinstance(fsr, (int, float, np.integer, np.floating)):
        raise TypeError(f"fsr must be an int, got {fsr!r}")
    if not math.isfinite(fsr) or fsr != round(fsr) or abs(fsr) > 1000:
        raise ValueError(f"fsr must be an integer in [-1000, 1000], got {fsr!r}")
    if not isinstance(signed, (bool, np.bool_)):
        raise TypeError(f"signed must be a bool, got {signed!r}")
    rounding = check_enum(Rounding, rounding, "rounding")
    fsr_int = round(fsr)
    arr = as_float_array(x, "x")
    top = 1 << bits
    lo = -top if signed else 0
    flat = _c_order(arr).reshape(-1)
    raw = np.empty(arr.shape, dtype=np.int64)
    raw_flat = raw.reshape(-1)
    for block in _blocks(flat.size):  # elementwise, in blocks: temporaries stay small
        v = round_scaled(flat[block].astype(np.float64), bits - fsr_int, rounding)  # exact
        raw_flat[block] = np.clip(v, lo, top).astype(np.int64)  # lo, top: powers of two
    return LinearCode(
        raw=raw, step=math.ldexp(1.0, fsr_int - bits), bits=bits, fsr=fsr_int, signed=bool(signed)
    )
