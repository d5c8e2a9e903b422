"""Number formats: fixed point and log codes, with rounding and overflow modes.

These are plain value objects: they validate their fields and convert between float and raw
integers. Datapaths and quantizers build on them (SPEC §2 and §4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["FixedFormat", "LogFormat", "Overflow", "Rounding", "as_float_array"]

MAX_FIXED_BITS = 62


class Rounding(IntEnum):
    """Rounding modes, named as in apytypes.

    ========  =======================================================
    TRN       floor (what an arithmetic right shift does)
    TRN_ZERO  toward zero
    RND       half up: floor(x + 1/2)
    RND_CONV  half to even (convergent rounding)
    ========  =======================================================
    """

    TRN = 0
    TRN_ZERO = 1
    RND = 2
    RND_CONV = 3


class Overflow(IntEnum):
    """Overflow modes: ``WRAP`` (two's complement) or ``SAT`` (clamp to the range)."""

    WRAP = 0
    SAT = 1


#: Elements per block of the elementwise conversions: their temporaries stay a few MB.
BLOCK_ELEMENTS = 1 << 16


def as_float_array(x: ArrayLike, name: str) -> NDArray[np.floating]:
    """Return ``x`` as a float32 or float64 array, rejecting NaN, Inf and non-float input.

    Parameters
    ----------
    x : array_like
        Float values (float16 is widened to float32; Python floats become float64).
    name : str
        Parameter name used in error messages.

    Raises
    ------
    TypeError
        If ``x`` is not of a real floating or integer dtype (bool, complex, object, ...).
    ValueError
        If ``x`` holds NaN or Inf.
    """
    arr = np.asarray(x)
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    elif arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].flat[0]
        raise ValueError(f"{name} must be finite, got {float(bad)!r}")
    return arr


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    """Validate an int parameter in ``[lo, hi]`` (bools rejected) and return it as ``int``.

    ``hi=None`` means no upper bound.

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If it lies outside ``[lo, hi]``; the message names ``name`` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if hi is None:
        if int(value) < lo:
            raise ValueError(f"{name} must be >= {lo}, got {value!r}")
    elif not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FixedFormat:
    """A two's-complement (or unsigned) fixed-point format.

    Raw integer ``r`` represents ``r * 2**-frac_bits``.

    Parameters
    ----------
    bits : int
        Total width, 1..62.
    frac_bits : int, default 0
        Fractional bits; may be negative or exceed ``bits``.
    signed : bool, default True
        Two's complement when True, unsigned otherwise.

    Notes
    -----
    Bit growth of the operations the datapaths perform on this format:

    ===========================  ==========================  ===============
    operation                    result bits                 result frac bits
    ===========================  ==========================  ===============
    ``x >> s`` (TRN)             ``bits``                    ``frac_bits``
    ``(x << f) >> s``            ``bits + f``                ``frac_bits + f``
    ``a + b``                    ``max(bits) + 1``           equal frac bits
    sum of ``n`` terms           ``bits + ceil(log2 n)``     ``frac_bits``
    ``a * b``                    ``bits_a + bits_b``         ``fa + fb``
    ===========================  ==========================  ===============

    Examples
    --------
    >>> fmt = FixedFormat(8, 4)
    >>> fmt.min_raw, fmt.max_raw
    (-128, 127)
    >>> fmt.from_float([1.03, -9.0]).tolist()
    [16, -128]
    >>> float(fmt.to_float(24))
    1.5
    """

    bits: int
    frac_bits: int = 0
    signed: bool = True

    def __post_init__(self) -> None:
        check_int("bits", self.bits, 1, MAX_FIXED_BITS)
        check_int("frac_bits", self.frac_bits, -1024, 1024)
        if not isinstance(self.signed, (bool, np.bool_)):
            raise TypeError(f"signed must be a bool, got {self.signed!r}")

    @property
    def min_raw(self) -> int:
        """Smallest raw value: ``-2**(bits-1)`` if signed, else 0."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_raw(self) -> int:
        """Largest raw value: ``2**(bits-1) - 1`` if signed, else ``2**bits - 1``."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def lsb(self) -> float:
        """Value of one LSB, ``2**-frac_bits``."""
        return math.ldexp(1.0, -self.frac_bits)

    def from_float(
        self,
        x: ArrayLike,
        rounding: Rounding = Rounding.RND,
        overflow: Overflow = Overflow.SAT,
    ) -> NDArray[np.int64]:
        """Quantize float values to raw integers.

        Parameters
        ----------
        x : array_like of float
            Finite values.
        rounding : Rounding, default RND
            How values between two codes are rounded.
        overflow : Overflow, default SAT
            What happens to values outside the range.

        Returns
        -------
        ndarray of int64
            Raw values, same shape as ``x``.

        Raises
        ------
        TypeError
            If ``x`` is not a float or integer array, or a mode is not an enum member.
        ValueError
            If ``x`` holds NaN or Inf, or a mode value is unknown.

        Notes
        -----
        Exact for every finite float32 / float64 input and every format: the scaling by
        ``2**frac_bits`` and the rounding are exact (no ``x + 0.5`` double rounding), and
        wrap / saturate work on exact integers, also for widths above float64's 53 bits.
        """
        raw, _ = self.from_float_counted(x, rounding, overflow)
        return raw

    def from_float_counted(
        self,
        x: ArrayLike,
        rounding: Rounding = Rounding.RND,
        overflow: Overflow = Overflow.SAT,
    ) -> tuple[NDArray[np.int64], int]:
        """Like :meth:`from_float`, also returning how many values overflow changed."""
        rounding = check_enum(Rounding, rounding, "rounding")
        overflow = check_enum(Overflow, overflow, "overflow")
        arr = as_float_array(x, "x")
        flat = (arr if arr.flags.c_contiguous else arr.copy(order="C")).reshape(-1)
        out = np.empty(flat.size, dtype=np.int64)
        n_over = 0
        for start in range(0, flat.size, BLOCK_ELEMENTS):  # in blocks: temporaries stay small
            block = slice(start, start + BLOCK_ELEMENTS)
            out[block], n = self._from_float_block(flat[block], rounding, overflow)
            n_over += n
        return out.reshape(arr.shape), n_over

    def _from_float_block(
        self, x: NDArray[np.floating], rounding: Rounding, overflow: Overflow
    ) -> tuple[NDArray[np.int64], int]:
        v = round_scaled(x, self.frac_bits, rounding)
        lo, hi = self.min_raw, self.max_raw
        # |v| <= 2**62 is exact in int64 and beyond every format's range (bits <= 62)
        limit = math.ldexp(1.0, MAX_FIXED_BITS)
        clipped = np.clip(v, -limit, limit).astype(np.int64)
        out_of_range = (clipped < lo) | (clipped > hi)
        n_over = int(np.count_nonzero(out_of_range))
        if overflow == Overflow.SAT:
            return np.clip(clipped, lo, hi), n_over
        # WRAP: fmod is exact; a value too large for float64 (inf) is a multiple of 2**bits
        with np.errstate(invalid="ignore"):
            low = np.fmod(v, math.ldexp(1.0, self.bits))
        low = np.where(np.isfinite(low), low, 0.0).astype(np.int64)
        raw = low & np.int64((1 << self.bits) - 1)
        if self.signed:
            raw = np.where(raw > hi, raw - (np.int64(1) << self.bits), raw)
        return raw.astype(np.int64), n_over

    def to_float(self, raw: ArrayLike) -> NDArray[np.float64]:
        """Return the values raw integers represent, as float64 (exact up to 53 bits)."""
        out = np.array(raw, dtype=np.float64)  # a copy of our own: scaled in place
        return np.ldexp(out, -self.frac_bits, out=out)

    def contains(self, raw: ArrayLike) -> bool:
        """Whether every raw value lies in ``[min_raw, max_raw]``."""
        arr = np.asarray(raw)
        return bool(arr.size == 0 or (arr.min() >= self.min_raw and arr.max() <= self.max_raw))

    def check_raw(self, raw: ArrayLike, name: str) -> NDArray[np.int64]:
        """Validate raw integers against this format and return them as int64.

        Raises
        ------
        TypeError
            If ``raw`` is not an integer array.
        ValueError
            If a value lies outside ``[min_raw, max_raw]``.
        """
        arr = np.asarray(raw)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} holds {arr.max()}, outside {self}")
        arr = arr.astype(np.int64)
        if not self.contains(arr):
            bad = arr[(arr < self.min_raw) | (arr > self.max_raw)].flat[0]
            raise ValueError(
                f"{name} holds raw value {int(bad)}, outside [{self.min_raw}, {self.max_raw}]"
                f" of {self}"
            )
        return arr


def check_enum(cls: type[IntEnum], value: Any, name: str) -> Any:
    """Convert ``value`` to the enum ``cls``, raising ValueError that names ``name``."""
    if isinstance(value, (bool, str)):
        raise TypeError(f"{name} must be a member of {cls.__name__}, got {value!r}")
    try:
        return cls(value)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must be a member of {cls.__name__}, got {value!r}") from None


def round_scaled(
    x: NDArray[np.floating], frac_bits: int, rounding: Rounding
) -> NDArray[np.float64]:
    """Round ``x * 2**frac_bits`` to integers, exactly, as float64 (huge values may be inf).

    ``ldexp`` is exact except where it underflows; there only a negative value under TRN
    (floor) can round to a nonzero integer, -1, which is restored explicitly. Nothing here adds
    ``0.5`` in floating point (no double rounding).

    Parameters
    ----------
    x : ndarray of float32 or float64
        Finite values.
    frac_bits : int
        Scaling exponent.
    rounding : Rounding
        Rounding mode.

    Returns
    -------
    ndarray of float64
        Integer values (or +-inf where ``x * 2**frac_bits`` exceeds float64), ``x``'s shape.
    """
    xd = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):
        v = np.ldexp(xd, frac_bits)
    if rounding == Rounding.TRN:
        return np.where((v == 0) & (xd < 0), -1.0, np.floor(v))
    if rounding == Rounding.TRN_ZERO:
        return np.trunc(v)
    if rounding == Rounding.RND_CONV:
        return np.rint(v)
    fl = np.floor(v)
    with np.errstate(invalid="ignore"):  # inf - inf where v is infinite
        return np.where(np.isinf(v), v, fl + ((v - fl) >= 0.5))


@dataclass(frozen=True)
class LogFormat:
    """A log code: zero, or ``sign * 2**(e/k)`` with integer exponent ``e`` (SPEC §4).

    Parameters
    ----------
    bits : int
        Exponent code width, 1..8: ``2**bits - 1`` nonzero magnitudes plus zero.
    fsr : int or float
        Full-scale range in log2 units: the largest magnitude is below ``2**fsr``.
        ``k * fsr`` must be an integer.
    base : 2 or "sqrt2", default 2
        ``k = 1`` for base 2, ``k = 2`` for base sqrt(2).
    signed : bool, default True
        Whether a sign bit is carried in addition to ``bits``.

    Examples
    --------
    >>> fmt = LogFormat(3, 0)
    >>> fmt.k, fmt.e_min, fmt.e_max
    (1, -7, -1)
    """

    bits: int
    fsr: float
    base: int | str = 2
    signed: bool = True

    def __post_init__(self) -> None:
        check_int("bits", self.bits, 1, 8)
        if self.base not in (2, "sqrt2"):
            raise ValueError(f"base must be 2 or 'sqrt2', got {self.base!r}")
        if isinstance(self.fsr, bool) or not isinstance(self.fsr, (int, float, np.number)):
            raise TypeError(f"fsr must be a number, got {self.fsr!r}")
        kf = self.k * float(self.fsr)
        if not math.isfinite(kf) or kf != round(kf) or abs(kf) > 4096:
            raise ValueError(
                f"fsr must be finite with k*fsr an integer in [-4096, 4096], got {self.fsr!r}"
            )
        if not isinstance(self.signed, (bool, np.bool_)):
            raise TypeError(f"signed must be a bool, got {self.signed!r}")

    @property
    def k(self) -> int:
        """Exponent units per octave: 1 for base 2, 2 for base sqrt(2)."""
        return 1 if self.base == 2 else 2

    @property
    def e_max(self) -> int:
        """Largest exponent, ``k*fsr - 1`` (in units of 1/k of log2)."""
        return round(self.k * float(self.fsr)) - 1

    @property
    def e_min(self) -> int:
        """Smallest nonzero exponent, ``k*fsr - 2**bits + 1``."""
        return self.e_max - (1 << self.bits) + 2

    @property
    def n_codes(self) -> int:
        """Number of distinct codes, zero included (both signs when signed)."""
        n = (1 << self.bits) - 1
        return 2 * n + 1 if self.signed else n + 1
