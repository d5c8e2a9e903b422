"""Activations between layers: raw integers in a fixed-point format times one float scale.

A tensor's value is ``raw * 2**-frac_bits * scale``. Its format is the activation format of
the datapath that reads it (:func:`act_format`); a tensor that can be negative (it is not
followed by a ReLU, or it is a network input with negative values) is signed, with one more bit
(:func:`signed_format`). Scales come from a float calibration pass: the largest value of each
tensor on the calibration inputs (the largest magnitude for a signed tensor) maps to the
format's largest raw value.

*Scaling* (:data:`SCALINGS`), chosen per run:

``"calibrated"`` (default)
    As above: every tensor's peak on the calibration inputs maps to the top of its format, and
    a log-domain datapath's weights are moved by a power of two so that their peak sits in the
    top octave (:func:`weight_gain`). A log activation is carried in the format of
    :func:`log_calibrated_format`, whose top lies just under the largest code's rounding
    boundary: the peak takes the top code (base 2), nothing below the peak clips, and every
    code down to the smallest is reachable. The ``fsr`` then does not decide what clips (the
    scale does): only the codes' spacing and count matter.
``"fixed"``
    The papers' meaning (Miyashita et al., 2016): every activation after the network input has
    scale 1, so its values are in the network's own units and its *format* fixes the full-scale
    range: a ``LogFormat`` clips at ``2**fsr`` and flushes values below its smallest code to
    zero; a linear ``FixedFormat(bits, frac_bits)`` clips at ``2**(bits - frac_bits)`` (the
    linear baseline of a given fsr is ``FixedFormat(bits, bits - fsr)``). Weights are placed as
    with calibrated scaling (:func:`weight_gain`). Between layers a log activation is held in
    the fixed-point format of :func:`log_carrier_format`, fine enough to reach below its
    smallest code. The network input keeps its calibrated scale (its units are a matter of
    preprocessing): its peak goes where calibrated scaling puts it (for a log-domain reader,
    on the top code), held in the fixed-scaling format.
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

__all__ = [
    "SCALINGS",
    "Act",
    "act_format",
    "check_scaling",
    "log_calibrated_format",
    "log_carrier_format",
    "scale_of",
    "signed_format",
    "weight_gain",
    "with_signed_input",
]

SCALINGS = ("calibrated", "fixed")
"""How activation scales are chosen: see the module notes."""

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


def check_scaling(scaling: object) -> str:
    """``scaling`` if it is one of :data:`SCALINGS`, else ``ValueError`` naming it."""
    if not isinstance(scaling, str) or scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    return scaling


def log_carrier_format(act: LogFormat) -> FixedFormat:
    """The fixed-point format that carries ``act``'s values between layers with fixed scaling.

    Integer bits up to ``2**fsr``; fractional bits down to four steps below the smallest code
    ``2**(e_min / k)`` (so values between the smallest code and the flush threshold below it
    are resolved); signed with one more bit when ``act`` is.

    Raises
    ------
    ValueError
        When that format needs more than 61 bits (too many codes below ``2**fsr``).

    Examples
    --------
    >>> log_carrier_format(LogFormat(3, 7, signed=False))  # codes 2**0 .. 2**6
    FixedFormat(bits=11, frac_bits=4, signed=False)
    """
    frac = _carrier_frac_bits(act)
    bits = max(1, math.ceil(act.fsr)) + frac
    if bits > 61:
        raise ValueError(
            f"scaling='fixed' cannot carry {act!r}: its codes span {bits} bits of fixed point "
            "(at most 61); use fewer bits, a larger fsr, or scaling='calibrated'"
        )
    fmt = FixedFormat(bits, frac, signed=False)
    return signed_format(fmt) if act.signed else fmt


def log_calibrated_format(act: LogFormat) -> FixedFormat:
    """The fixed-point format that carries ``act``'s values with calibrated scaling.

    Its largest value is just under ``2**I``, ``I = floor((e_max + 1/2) / k)``: the largest
    power of two at or below the boundary ``2**((e_max + 1/2) / k)`` from which LogQuant clips
    to the top code. Calibration maps a tensor's peak there, so the peak rounds to the top code
    (base 2; base sqrt(2): to the code below it, the top code's half-octave lying above
    ``2**I``) and nothing under the peak clips. Fractional bits as :func:`log_carrier_format`
    (four steps below the smallest code), fewer when the format would pass 61 bits (the codes
    below its LSB are then out of reach: such values flush to zero). Signed with one more bit
    when ``act`` is.

    Examples
    --------
    >>> log_calibrated_format(LogFormat(3, 7, signed=False))  # codes 2**0 .. 2**6: top 2**6
    FixedFormat(bits=10, frac_bits=4, signed=False)
    """
    top = math.floor((act.e_max + 0.5) / act.k)
    frac = min(_carrier_frac_bits(act), 61 - top)
    fmt = FixedFormat(max(1, top + frac), frac, signed=False)
    return signed_format(fmt) if act.signed else fmt


def _carrier_frac_bits(act: LogFormat) -> int:
    """Fractional bits reaching four steps below ``act``'s smallest code ``2**(e_min / k)``."""
    return max(0, 4 - math.floor(act.e_min / act.k))


def act_format(datapath: Datapath, scaling: str = "calibrated") -> FixedFormat:
    """The fixed-point format of the activations a network passes to ``datapath``.

    The datapath's ``act`` when it is a FixedFormat; for a log-domain ``act`` (a LogFormat, or
    a MAC datapath's ``act_log``: activations rounded to log codes on entry),
    :func:`log_calibrated_format` with calibrated scaling and :func:`log_carrier_format` with
    fixed scaling; otherwise unsigned 8-bit integers.
    """
    act = getattr(datapath, "act", None)
    log = getattr(datapath, "act_log", None)  # a MAC whose activations are log codes
    if isinstance(log, LogFormat):
        act = log
    if isinstance(act, FixedFormat):
        return act
    if isinstance(act, LogFormat):
        if check_scaling(scaling) == "fixed":
            return log_carrier_format(act)
        return log_calibrated_format(act)
    return _DEFAULT_ACT


def signed_format(fmt: FixedFormat) -> FixedFormat:
    """The signed counterpart of an activation format: one more bit (the sign), if unsigned."""
    if fmt.signed:
        return fmt
    return FixedFormat(min(fmt.bits + 1, 62), fmt.frac_bits, signed=True)


def with_signed_input(datapath: Datapath) -> Datapath:
    """``datapath`` reading signed activations: its ``act`` given a sign (one more bit).

    A fixed-point ``act`` becomes :func:`signed_format` of it (and an ``act_log`` of log codes
    on entry carries a sign bit); a log-domain ``act`` carries a sign bit. Datapaths with
    signed activations already are returned as they are.
    """
    act: Any = getattr(datapath, "act", None)
    if isinstance(act, FixedFormat) and not act.signed:
        log: Any = getattr(datapath, "act_log", None)
        if isinstance(log, LogFormat):
            return dataclasses.replace(  # type: ignore[type-var]
                datapath, act=signed_format(act), act_log=dataclasses.replace(log, signed=True)
            )
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
    own, so the largest weight magnitude ``P`` is moved next to the top code ``2**T``,
    ``T = e_max / k``: the gain is ``2**(floor(T + 1/(2k) - 1/2) - round(log2 P))``, the
    largest power of two that leaves ``P`` rounding to at most the top code (base 2: ``P`` lands
    in ``[2**(fsr-1.5), 2**(fsr-0.5))`` and rounds to the top code), so the peak is never
    clipped; the network
    divides the layer's output by the same power of two (exact in floating point, and folded
    into the requantisation multiplier). The same with either scaling: weights are placed by
    their peak, layer by layer.
    """
    fmt = getattr(datapath, "weight", None)
    peak = float(np.max(np.abs(w), initial=0.0))
    if not isinstance(fmt, LogFormat) or peak == 0:
        return 1.0
    top = fmt.e_max / fmt.k
    return math.ldexp(1.0, math.floor(top + 0.5 / fmt.k - 0.5) - round(math.log2(peak)))


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
