"""Float -> hardware codes: ShiftCNN (SPEC §3), log and linear (SPEC §4).

Validating numpy code; no numba here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.formats import LogFormat

__all__ = [
    "LinearCode",
    "LogCode",
    "ShiftCode",
    "quantize_linear",
    "quantize_log",
    "quantize_shiftcnn",
]


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
        The axis of ``w`` the scale varies along, or None.
    """

    index: NDArray[np.int8]
    scale: NDArray[np.float64]
    n_codebooks: int
    bits: int
    axis: int | None = None

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


@dataclass(frozen=True, eq=False)
class LogCode:
    """Log codes: each value is zero or ``sign * 2**(exponent / k)`` (SPEC §4).

    Attributes
    ----------
    exponent : ndarray of int64
        Exponent in units of ``1/k`` of log2; any value where ``sign == 0``.
    sign : ndarray of int8
        -1, 0 or +1; 0 means the value zero.
    format : LogFormat
        The format the codes belong to.
    """

    exponent: NDArray[np.int64]
    sign: NDArray[np.int8]
    format: LogFormat


@dataclass(frozen=True, eq=False)
class LinearCode:
    """Linear (uniform) codes: value = ``raw * step`` (SPEC §4)."""

    raw: NDArray[np.int64]
    step: float
    bits: int
    fsr: float
    signed: bool


def quantize_shiftcnn(
    w: ArrayLike, n_codebooks: int, bits: int, axis: int | None = None
) -> ShiftCode:
    """Quantize weights to ShiftCNN codes (SPEC §3)."""
    raise NotImplementedError


def quantize_log(
    x: ArrayLike, bits: int, fsr: float, base: int | str = 2, signed: bool = True
) -> LogCode:
    """Quantize values to log codes (SPEC §4)."""
    raise NotImplementedError


def quantize_linear(x: ArrayLike, bits: int, fsr: float, signed: bool = False) -> LinearCode:
    """Quantize values to linear codes (SPEC §4)."""
    raise NotImplementedError
