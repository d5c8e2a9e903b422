"""Verification against float (SPEC §6): simulate a layer from float operands and compare.

:func:`simulate` works with every :class:`~shiftsim.datapath.base.Datapath`: it asks the
datapath to quantize (``prepare``), runs it, and compares its output with the float64
reference on the original operands and on the dequantized ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.datapath.base import Datapath, LayerResult, Prepared
from shiftsim.layers import Conv2d, Linear
from shiftsim.reference.float_ref import conv_float

__all__ = ["EXACT_RTOL", "ErrorStats", "Simulation", "output_lsb", "simulate"]

#: Relative tolerance for "bit-exact": the float64 reference itself rounds (the weight scale is
#: any float), by far less than this; a real arithmetic error is a sizeable fraction of an LSB.
EXACT_RTOL = 1e-9


def output_lsb(result: LayerResult, ndim: int) -> NDArray[np.float64]:
    """The float value of one output LSB, ``2**-frac_bits * scale``, broadcastable to ``y``."""
    scale = np.asarray(result.scale, dtype=np.float64)
    if scale.ndim == 1:
        scale = scale.reshape((1, -1) + (1,) * (ndim - 2))
    return result.out_format.lsb * scale


@dataclass(frozen=True)
class ErrorStats:
    """How a datapath's output compares with the float64 references.

    With ``y_raw`` the datapath's raw output, ``y`` its float value, ``L`` the float value of
    one output LSB (``2**-frac_bits`` times the weight scale of the output's channel),
    ``ref_float`` the reference on the unquantized operands and ``ref_dequant`` the reference
    on the dequantized ones (what exact arithmetic would give on the codes):

    Attributes
    ----------
    max_abs_error_lsb : float
        ``max |y_raw - ref_dequant / L|``: the datapath's own arithmetic error (shift-unit
        truncation, accumulator overflow), in output LSBs. Outputs whose LSB is 0 (an
        all-zero weight channel) are left out.
    bit_exact_fraction : float
        Fraction of outputs with ``y_raw == ref_dequant / L``: the raw output is the exact
        result of the codes expressed in output LSBs. "Equal" allows for the rounding of the
        float64 reference only: ``|y_raw - ref_dequant / L| <= EXACT_RTOL * max(1, |y_raw|)``.
    rmse : float
        ``sqrt(mean((y - ref_float)**2))``: total error against the unquantized layer
        (quantization plus arithmetic), in output units.
    sqnr_db : float
        ``10 * log10(sum(ref_float**2) / sum((y - ref_float)**2))``; ``inf`` when the error
        is zero, ``-inf`` when the reference is zero but the output is not.
    n_outputs : int
        Number of outputs compared.

    Examples
    --------
    >>> from shiftsim.counts import Counts
    >>> from shiftsim.formats import FixedFormat
    >>> res = LayerResult(np.array([[3, 5]]), FixedFormat(16, 1), 1.0, Counts())
    >>> s = ErrorStats.from_result(res, np.array([[1.5, 2.0]]), np.array([[1.5, 2.25]]))
    >>> s.max_abs_error_lsb, s.bit_exact_fraction, round(s.rmse, 4)  # rmse = sqrt(0.5**2 / 2)
    (0.5, 0.5, 0.3536)
    """

    max_abs_error_lsb: float
    bit_exact_fraction: float
    rmse: float
    sqnr_db: float
    n_outputs: int

    @classmethod
    def from_result(
        cls,
        result: LayerResult,
        ref_float: NDArray[np.float64],
        ref_dequant: NDArray[np.float64],
    ) -> ErrorStats:
        """Compute the statistics of ``result`` against the two references."""
        y_raw = result.y_raw
        lsb = np.broadcast_to(output_lsb(result, y_raw.ndim), y_raw.shape)
        valid = lsb > 0
        ref_lsb = np.divide(ref_dequant, lsb, out=np.zeros(y_raw.shape), where=valid)
        diff = np.abs(y_raw.astype(np.float64) - ref_lsb)[valid]
        tol = EXACT_RTOL * np.maximum(1.0, np.abs(y_raw[valid].astype(np.float64)))
        exact = diff <= tol
        err = result.y - ref_float
        signal = float(np.sum(ref_float**2))
        noise = float(np.sum(err**2))
        if noise == 0:
            sqnr = math.inf
        elif signal == 0:
            sqnr = -math.inf
        else:
            sqnr = 10 * math.log10(signal / noise)
        n = int(y_raw.size)
        return cls(
            max_abs_error_lsb=float(diff.max()) if diff.size else 0.0,
            bit_exact_fraction=float(np.count_nonzero(exact) + np.count_nonzero(~valid)) / n
            if n
            else 1.0,
            rmse=math.sqrt(noise / n) if n else 0.0,
            sqnr_db=sqnr,
            n_outputs=n,
        )


@dataclass(frozen=True, eq=False)
class Simulation:
    """The result of :func:`simulate`.

    Attributes
    ----------
    result : LayerResult
        The datapath's output and counts.
    prepared : Prepared
        The codes the float operands became, and their dequantized values.
    ref_float : ndarray of float64
        Float64 reference on the unquantized operands.
    ref_dequant : ndarray of float64
        Float64 reference on the dequantized operands (bias included, as the datapath holds it).
    stats : ErrorStats
        The comparison.
    """

    result: LayerResult
    prepared: Prepared
    ref_float: NDArray[np.float64]
    ref_dequant: NDArray[np.float64]
    stats: ErrorStats

    @property
    def counts(self) -> Any:
        """The counts of the run (``result.counts``)."""
        return self.result.counts


def simulate(
    layer: Conv2d | Linear,
    w: ArrayLike,
    x: ArrayLike,
    datapath: Datapath,
    bias: ArrayLike | None = None,
    level: str = "functional",
) -> Simulation:
    """Quantize float operands for ``datapath``, run one layer, and compare with float64.

    Parameters
    ----------
    layer : Conv2d or Linear
        The layer.
    w : array_like of float, shape ``layer.weight_shape``
        Float weights.
    x : array_like of float, shape ``(B, C, H, W)`` or ``(B, in_features)``
        Float activations.
    datapath : Datapath
        Any datapath (shift-add, log-domain, fixed-point MAC).
    bias : array_like of float, shape ``(Co,)``, optional
        Float bias; the datapath turns it into accumulator units.
    level : {"functional", "golden", "cycle"}
        Which model runs the layer.

    Returns
    -------
    Simulation

    Examples
    --------
    >>> from shiftsim.datapath.shift_add import ShiftAddDatapath
    >>> sim = simulate(Linear(2, 1), [[0.5, -0.25]], [[3.0, 8.0]], ShiftAddDatapath())
    >>> sim.result.y.tolist(), sim.ref_float.tolist(), sim.stats.bit_exact_fraction
    ([[-0.5]], [[-0.5]], 1.0)
    """
    if not isinstance(datapath, Datapath):
        raise TypeError(f"datapath must be a Datapath, got {type(datapath).__name__}")
    if not isinstance(layer, (Conv2d, Linear)):
        raise TypeError(f"layer must be a Conv2d or Linear, got {type(layer).__name__}")
    prepared = datapath.prepare(layer, w, x, bias)
    result = datapath.run(layer, prepared.code, prepared.x_in, prepared.bias_raw, level=level)
    ref_float = conv_float(layer, w, x, bias)
    bias_deq = None
    if prepared.bias_raw is not None:
        lsb = output_lsb(result, 2).reshape(-1)
        bias_deq = np.asarray(prepared.bias_raw, dtype=np.float64) * lsb
        bias_deq = np.broadcast_to(bias_deq, (layer.weight_shape[0],))
    ref_dequant = conv_float(layer, prepared.w_deq, prepared.x_deq, bias_deq)
    stats = ErrorStats.from_result(result, ref_float, ref_dequant)
    return Simulation(
        result=result,
        prepared=prepared,
        ref_float=ref_float,
        ref_dequant=ref_dequant,
        stats=stats,
    )
