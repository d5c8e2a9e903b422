"""Affine (scale and zero point) quantisation as ONNX defines it, and onnxruntime's requantisation.

Notes
-----
``QuantizeLinear``: ``q = saturate(round(x / scale) + zero_point)`` with round half to even;
``DequantizeLinear``: ``x = (q - zero_point) * scale``, computed in float32 as onnxruntime
does. QONNX's ``Quant`` with ``rounding_mode="ROUND"`` is the same (half to even); ``narrow``
drops the most negative code of a signed range (the lowest of an unsigned one);
``BipolarQuant`` gives ``+scale`` for ``x >= 0`` and ``-scale`` below.

Requantisation (onnxruntime's MLAS, for QLinearConv, QLinearMatMul and QGemm): with
``m = float32(x_scale * w_scale / y_scale)`` (per output channel when ``w_scale`` is),
``q = clamp(rint(float32(acc) * m), qmin - zp, qmax - zp) + zp``, products and the int-to-float
conversion rounded to float32 and ``rint`` rounding half to even.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.formats import FixedFormat

__all__ = ["QuantParams", "QuantizedWeight", "bits_for_range", "requantize"]


@dataclass(frozen=True, kw_only=True, eq=False)
class QuantParams:
    """Affine quantisation of one tensor: value ``= (q - zero_point) * scale``.

    Parameters
    ----------
    scale : ndarray of float64
        Positive; a scalar, or one per slice along ``axis``.
    zero_point : ndarray of int64
        Same shape as ``scale`` (or a scalar).
    bits : int
        Width of the integers ``q`` (1 for bipolar ``+-1`` codes).
    signed : bool
        Two's complement range ``[-2**(bits-1), 2**(bits-1) - 1]``, else ``[0, 2**bits - 1]``.
    narrow : bool, default False
        The lowest code of the range is not used.
    axis : int or None, default None
        Axis of a per-channel ``scale``.
    bipolar : bool, default False
        Codes are ``-1`` and ``+1`` only (QONNX ``BipolarQuant``).
    qmin, qmax : int, optional
        A narrower integer range (QCDQ's ``Clip``); default the range of ``bits``.
    """

    scale: NDArray[np.float64]
    zero_point: NDArray[np.int64]
    bits: int
    signed: bool
    narrow: bool = False
    axis: int | None = None
    bipolar: bool = False
    qmin: int | None = None
    qmax: int | None = None

    def __post_init__(self) -> None:
        s = np.asarray(self.scale, dtype=np.float64)
        if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"scale must be positive and finite, got {s.ravel()[:4]!r}")
        object.__setattr__(self, "scale", s)
        object.__setattr__(self, "zero_point", np.asarray(self.zero_point).astype(np.int64))
        if (
            isinstance(self.bits, bool)
            or not isinstance(self.bits, int)
            or not 1 <= self.bits <= 32
        ):
            raise ValueError(f"bits must be an int in [1, 32], got {self.bits!r}")
        if self.bipolar:
            lo, hi = -1, 1
        elif self.signed:
            lo, hi = -(1 << (self.bits - 1)) + int(self.narrow), (1 << (self.bits - 1)) - 1
        else:
            lo, hi = int(self.narrow), (1 << self.bits) - 1
        object.__setattr__(self, "qmin", lo if self.qmin is None else max(lo, int(self.qmin)))
        object.__setattr__(self, "qmax", hi if self.qmax is None else min(hi, int(self.qmax)))

    @property
    def lo(self) -> int:
        """Smallest integer code."""
        assert self.qmin is not None
        return self.qmin

    @property
    def hi(self) -> int:
        """Largest integer code."""
        assert self.qmax is not None
        return self.qmax

    @property
    def clamps_at_zero(self) -> bool:
        """The smallest code is the real value 0 (the range starts at zero, as after a ReLU)."""
        return bool(np.all(self.zero_point == self.lo))

    def _shaped(self, a: NDArray[Any], ndim: int) -> NDArray[Any]:
        if a.ndim == 0 or self.axis is None:
            return a
        shape = [1] * ndim
        shape[self.axis % ndim] = -1
        return a.reshape(shape)

    def quantize(self, x: ArrayLike) -> NDArray[np.int64]:
        """``clip(round_half_even(x / scale) + zero_point, qmin, qmax)`` in float32, as ONNX."""
        xf = np.asarray(x, dtype=np.float32)
        if self.bipolar:
            return np.where(xf >= 0, 1, -1).astype(np.int64)
        s = self._shaped(self.scale.astype(np.float32), xf.ndim)
        zp = self._shaped(self.zero_point, xf.ndim)
        q = np.rint(xf / s).astype(np.int64) + zp
        return np.clip(q, self.lo, self.hi)

    def dequantize(self, q: ArrayLike) -> NDArray[np.float32]:
        """``(q - zero_point) * scale`` in float32 (onnxruntime's DequantizeLinear)."""
        qa = np.asarray(q, dtype=np.int64)
        s = self._shaped(self.scale.astype(np.float32), qa.ndim)
        zp = self._shaped(self.zero_point, qa.ndim)
        return ((qa - zp).astype(np.float32) * s).astype(np.float32)

    @property
    def raw_format(self) -> FixedFormat:
        """The signed integer format of ``q - zero_point`` (one more bit when needed)."""
        zp = self.zero_point
        lo = self.lo - int(zp.max())
        hi = self.hi - int(zp.min())
        bits, _ = bits_for_range(lo, hi, True)
        return FixedFormat(max(bits, 2), 0, signed=True)


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """Integer weights of one initializer: ``raw`` are the codes ``q`` as stored."""

    raw: NDArray[np.int64]
    params: QuantParams


def requantize(
    acc: ArrayLike, multiplier: ArrayLike, y: QuantParams, *, channel_axis: int = 1
) -> NDArray[np.int64]:
    """Requantise int32 accumulators as onnxruntime does (see the module notes).

    Parameters
    ----------
    acc : array_like of int
        Accumulators, channels on ``channel_axis``.
    multiplier : array_like of float32
        One factor, or one per channel.
    y : QuantParams
        Output quantisation (per-tensor).
    channel_axis : int, default 1
        The axis of a per-channel ``multiplier``.

    Returns
    -------
    ndarray of int64
        Codes in ``[y.lo, y.hi]``.

    Examples
    --------
    >>> p = QuantParams(scale=np.array(1.0), zero_point=np.array(3), bits=8, signed=False)
    >>> requantize(np.array([[5, -20, 1000]]), np.float32(0.5), p, channel_axis=0).tolist()
    [[5, 0, 255]]
    """
    a = np.asarray(acc, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.float32)
    if m.ndim == 1 and m.size > 1:
        shape = [1] * a.ndim
        shape[channel_axis] = -1
        m = m.reshape(shape)
    zp = int(y.zero_point.reshape(-1)[0])
    v = a.astype(np.float32) * m
    v = np.clip(v, np.float32(y.lo - zp), np.float32(y.hi - zp))
    return np.rint(v).astype(np.int64) + zp


def bits_for_range(lo: int, hi: int, signed: bool) -> tuple[int, bool]:
    """Fewest bits whose range holds ``[lo, hi]``, and whether its lowest code is unused."""
    if not signed:
        bits = max(1, int(hi).bit_length())
        return bits, lo > 0
    bits = max(int(hi).bit_length(), int(-lo - 1).bit_length() if lo < 0 else 0) + 1
    return bits, lo > -(1 << (bits - 1))
