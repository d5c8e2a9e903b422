"""Activations between layers: raw integers in a fixed-point format times one float scale.

A tensor's value is ``raw * 2**-frac_bits * scale``. Its format is the activation format of
the datapath that reads it (:func:`act_format`); a tensor that can be negative (it is not
followed by a ReLU, or it is a network input with negative values) is signed, with one more bit
(:func:`signed_format`). Scales come from a float calibration pass: the largest value of each
tensor on the calibration inputs (the largest magnitude for a signed tensor) maps to the
format's largest raw value.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.datapath.base import Datapath
from shiftsim.formats import FixedFormat, LogFormat

__all__ = ["Act", "act_format", "scale_of", "signed_format", "weight_gain", "with_signed_input"]

_DEFAULT_ACT = FixedFormat(8, 0, signed=False)


@dataclass(frozen=True, eq=False)
class Act:
    """An activation tensor: ``fmt.to_float(raw) * scale``."""

    raw: NDArray[np.int64]
    fmt: FixedFormat
    scale: float

    @property
    def value(self) -> NDArray[np.float64]:
        """The dequantised values, float64."""
        return self.fmt.to_float(self.raw) * self.scale


def act_format(datapath: Datapath) -> FixedFormat:
    """The fixed-point format of the activations a network passes to ``datapath``.

    The datapath's ``act`` when it is a FixedFormat; for a log-domain ``act`` (a LogFormat of
    full-scale range ``fsr``), ``floor(fsr)``-bit integers, whose magnitudes stay below
    ``2**fsr`` (signed, with one more bit, when the LogFormat is); otherwise unsigned 8-bit
    integers.
    """
    act = getattr(datapath, "act", None)
    if isinstance(act, FixedFormat):
        return act
    if isinstance(act, LogFormat):
        fmt = FixedFormat(min(max(1, math.floor(act.fsr)), 61), 0, signed=False)
        return signed_format(fmt) if act.signed else fmt
    return _DEFAULT_ACT


def signed_format(fmt: FixedFormat) -> FixedFormat:
    """The signed counterpart of an activation format: one more bit (the sign), if unsigned."""
    if fmt.signed:
        return fmt
    return FixedFormat(min(fmt.bits + 1, 62), fmt.frac_bits, signed=True)


def with_signed_input(datapath: Datapath) -> Datapath:
    """``datapath`` reading signed activations: its ``act`` given a sign (one more bit).

    A fixed-point ``act`` becomes :func:`signed_format` of it; a log-domain ``act`` carries a
    sign bit. Datapaths with signed activations already are returned as they are.
    """
    act: Any = getattr(datapath, "act", None)
    if isinstance(act, FixedFormat) and not act.signed:
        return dataclasses.replace(datapath, act=signed_format(act))  # type: ignore[type-var]
    if isinstance(act, LogFormat) and not act.signed:
        return dataclasses.replace(  # type: ignore[type-var]
            datapath, act=dataclasses.replace(act, signed=True)
        )
    return datapath


def weight_gain(datapath: Datapath, w: NDArray[np.float64]) -> float:
    """Power of two the weights are multiplied by before ``datapath.prepare``.

    1 for datapaths that scale weights themselves (shift-add, MAC). A log-domain datapath
    quantizes weights against a fixed full-scale range (``weight.fsr``) with no scale of its
    own, so the largest weight magnitude is moved into ``[2**(fsr-1), 2**fsr)``; the network
    divides the layer's output by the same power of two (exact in floating point, and folded
    into the requantisation multiplier).
    """
    fmt = getattr(datapath, "weight", None)
    peak = float(np.max(np.abs(w), initial=0.0))
    if not isinstance(fmt, LogFormat) or peak == 0:
        return 1.0
    return math.ldexp(1.0, math.floor(fmt.fsr - math.log2(peak)))


def scale_of(values: ArrayLike, fmt: FixedFormat) -> float:
    """Scale that maps the largest value (magnitude, if ``fmt`` is signed) to the largest raw.

    For an unsigned format only the positive values count (the negative ones are clamped).
    """
    v = np.asarray(values, dtype=np.float64)
    if not fmt.signed:
        v = np.maximum(v, 0.0)
    peak = float(np.max(np.abs(v), initial=0.0))
    return (peak if peak > 0 else 1.0) / (fmt.max_raw * fmt.lsb)


def scale_of_input(x: ArrayLike, act: FixedFormat) -> float:
    """Scale that maps the largest input magnitude to ``act``'s largest raw value."""
    peak = float(np.max(np.abs(np.asarray(x, dtype=np.float64))))
    return (peak if peak > 0 else 1.0) / (act.max_raw * act.lsb)
