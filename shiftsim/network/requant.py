"""Requantisation: integer multiplier-and-shift rescaling of raw values between formats.

A raw value ``y_raw`` of one scale becomes a raw value of another by a real factor ``m``,
given as an integer multiplier and a right shift, ``m ~ M * 2**-sh`` with ``M`` of
``mult_bits`` bits (one per output channel when the factor is per channel); or, with
``power_of_two=True``, ``M = 1`` and ``sh = round(-log2 m)`` (a pure shift: no multiplier in the
hardware). The product is rounded half up, ``floor((y_raw * M + 2**(sh-1)) / 2**sh)``, then
clamped to the target format (to 0 from below when a ReLU is fused); the values the clamp
changes are counted as ``clipped``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.formats import FixedFormat

__all__ = ["Requant", "clamp", "fixed_multiplier", "rescale"]


@dataclass(frozen=True, kw_only=True)
class Requant:
    """How accumulators become the next layer's activations (see the module notes).

    Parameters
    ----------
    mult_bits : int, default 16
        Width of the unsigned integer multiplier ``M`` (1..31); numpy integers are accepted.
    power_of_two : bool, default False
        Scale by a shift only (``M = 1``).
    """

    mult_bits: int = 16
    power_of_two: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.mult_bits, (bool, np.bool_)) or not isinstance(
            self.mult_bits, (int, np.integer)
        ):
            raise TypeError(f"mult_bits must be an int, got {self.mult_bits!r}")
        object.__setattr__(self, "mult_bits", int(self.mult_bits))
        if not 1 <= self.mult_bits <= 31:
            raise ValueError(f"mult_bits must be in [1, 31], got {self.mult_bits!r}")
        if not isinstance(self.power_of_two, (bool, np.bool_)):
            raise TypeError(f"power_of_two must be a bool, got {self.power_of_two!r}")
        object.__setattr__(self, "power_of_two", bool(self.power_of_two))


def fixed_multiplier(
    m: ArrayLike, requant: Requant = Requant()
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Integer multiplier and shift approximating positive real factors: ``m ~ M * 2**-sh``.

    Parameters
    ----------
    m : array_like of float
        Positive, finite factors.
    requant : Requant
        ``mult_bits`` and ``power_of_two``.

    Returns
    -------
    M, sh : ndarray of int64
        ``M`` in ``[2**(mult_bits-1), 2**mult_bits)`` (or 1 with ``power_of_two``); ``sh`` may be
        negative (a left shift).

    Examples
    --------
    >>> M, sh = fixed_multiplier(0.1, Requant(mult_bits=8))
    >>> int(M), int(sh)
    (205, 11)
    >>> [int(v) for v in fixed_multiplier(0.1, Requant(power_of_two=True))]
    [1, 3]
    """
    m = np.asarray(m, dtype=np.float64)
    if m.size and (not np.all(np.isfinite(m)) or np.any(m <= 0)):
        raise ValueError(f"m must be positive and finite, got {m.ravel()[:4]!r}")
    if requant.power_of_two:
        sh = -np.rint(np.log2(m)).astype(np.int64)
        return np.ones_like(sh), sh
    mant, exp = np.frexp(m)  # m = mant * 2**exp, mant in [0.5, 1)
    big = np.rint(np.ldexp(mant, requant.mult_bits)).astype(np.int64)
    sh = (requant.mult_bits - exp).astype(np.int64)
    carry = big >= (1 << requant.mult_bits)  # mant rounded up to 1.0
    big = np.where(carry, big >> 1, big)
    sh = np.where(carry, sh - 1, sh)
    return big, sh


def rescale(
    raw: NDArray[np.int64],
    mult: NDArray[np.int64],
    sh: NDArray[np.int64],
    axis_shape: tuple[int, ...],
) -> NDArray[np.int64]:
    """``floor((raw * M + 2**(sh-1)) / 2**sh)`` elementwise, ``M`` and ``sh`` per channel.

    ``axis_shape`` reshapes ``M`` and ``sh`` to broadcast against ``raw`` (``(1,)`` for one
    factor, ``(1, -1, 1, 1)`` for one per channel of an NCHW tensor).
    """
    mult = np.asarray(mult, dtype=np.int64).reshape(axis_shape)
    sh = np.asarray(sh, dtype=np.int64).reshape(axis_shape)
    peak = int(np.abs(raw).max(initial=0))
    if (
        peak.bit_length() + int(mult.max(initial=1)).bit_length() + max(0, -int(sh.min(initial=0)))
        > 62
    ):
        raise ValueError(
            f"requantisation overflows int64: |y_raw| up to {peak} times a "
            f"{int(mult.max())}-multiplier; use fewer mult_bits or a narrower accumulator"
        )
    v = raw * mult
    left = np.maximum(-sh, 0)
    v = v << left
    s = np.clip(sh, 0, 64)
    s1 = np.maximum(s - 1, 0)
    shifted = ((v >> np.minimum(s1, 63)) + 1) >> 1  # round half up, as bitops.round_shr
    shifted = np.where(s > 63, 0, shifted)
    return np.where(s == 0, v, shifted).astype(np.int64)


def clamp(v: NDArray[np.int64], fmt: FixedFormat, relu: bool) -> tuple[NDArray[np.int64], int]:
    """Clamp raw values to ``fmt`` (to 0 from below with a fused ReLU); count the clipped.

    Values a fused ReLU zeroes are not clipped; those beyond the format's range are.
    """
    lo = 0 if relu else fmt.min_raw
    out = np.clip(v, lo, fmt.max_raw)
    clipped = int(np.count_nonzero(v > fmt.max_raw))
    if not relu:
        clipped += int(np.count_nonzero(v < fmt.min_raw))
    return out.astype(np.int64), clipped
