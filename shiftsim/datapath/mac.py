"""The fixed-point MAC datapath (SPEC §5.3): the multiplier baseline next to shifts and logs.

Weights and activations are raw fixed-point integers; a term is a real product ``w * x``.
The accumulator follows the shift datapath's contract (SPEC §5.1) with N = 1::

    acc = bias (or 0)
    for kh: for kw:
        acc = OVERFLOW(acc + sum_c w[co, c, kh, kw] * x[b, c, ih, iw])

The sum over the group's ``C/groups`` channels is an exact adder tree; the register of
``acc_bits`` bits (frac bits ``fw + fa``) wraps or saturates after each (kh, kw) step. With WRAP
the order does not matter; with SAT the order above is the contract.

Counts (``T = B*Co*Ho*Wo*Cg*Kh*Kw``, padding positions included, as a dense MAC array works):
``multiplies = T``; ``adds = T`` (``Cg - 1`` tree adds plus one register add per step);
``acc_updates = B*Co*Ho*Wo*Kh*Kw``; ``overflows`` the updates OVERFLOW changed. The bias is
the register's initial value and costs no add.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.counts import Counts
from shiftsim.datapath.base import (
    INT64_MAX,
    Datapath,
    LayerResult,
    Prepared,
    Progress,
    check_bias_raw,
    conv_geometry,
    float_operands,
    to_nchw_int64,
)
from shiftsim.formats import FixedFormat, Overflow, check_int
from shiftsim.kernels.mac import conv_mac
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import LinearCode, check_scale
from shiftsim.reference.golden_mac import conv_mac_golden

__all__ = ["FixedMacDatapath", "MacCode", "MacOperands"]


@dataclass(frozen=True, eq=False)
class MacCode:
    """Raw fixed-point weights with a float scale: value = ``raw * 2**-frac_bits * scale``.

    Attributes
    ----------
    raw : ndarray of int64
        Raw weights in the datapath's ``weight`` format.
    scale : float
        Per-tensor scale (``max |w|`` from :meth:`FixedMacDatapath.prepare`).
    """

    raw: NDArray[np.int64]
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_scale("MacCode.scale", self.scale)
        if np.ndim(self.scale) != 0:
            raise ValueError(f"MacCode.scale must be one number, got {self.scale!r}")


@dataclass(frozen=True, eq=False)
class MacOperands:
    """Validated operands of :meth:`FixedMacDatapath.run`, NCHW int64.

    Attributes
    ----------
    w_raw : ndarray of int64, shape (Co, C // groups, Kh, Kw)
    x_raw : ndarray of int64, shape (B, C, H, W)
    bias_raw : ndarray of int64, shape (Co,), or None
    scale : float
        Weight scale, carried to ``LayerResult.scale``.
    """

    w_raw: NDArray[np.int64]
    x_raw: NDArray[np.int64]
    bias_raw: NDArray[np.int64] | None
    scale: float


@dataclass(frozen=True, kw_only=True)
class FixedMacDatapath(Datapath):
    """Fixed-point multiply-accumulate datapath (SPEC §5.3).

    Parameters
    ----------
    weight : FixedFormat, default FixedFormat(8, 7)
        Format of the raw weights (frac bits ``fw``); :meth:`prepare` maps ``max |w|`` to 1.
    act : FixedFormat, default FixedFormat(8, 0, signed=False)
        Format of the raw activations (frac bits ``fa``).
    acc_bits : int, default 32
        Signed accumulator width, 2..62; ``y_raw`` is in ``FixedFormat(acc_bits, fw + fa)``.
    overflow : Overflow, default Overflow.WRAP
        What the accumulator does after each update.

    Notes
    -----
    Bit growth: a product has ``bits_w + bits_a`` bits and ``fw + fa`` fractional bits; the
    adder tree adds ``ceil(log2(C/groups))`` bits; the register keeps ``acc_bits``.

    Examples
    --------
    >>> import numpy as np
    >>> from shiftsim.layers import Linear
    >>> dp = FixedMacDatapath(weight=FixedFormat(4, 2), act=FixedFormat(4, 0, signed=False))
    >>> r = dp.run(Linear(2, 1), np.array([[3, -2]]), np.array([[5, 7]]))
    >>> r.y_raw.tolist(), r.y.tolist(), r.counts.multiplies
    ([[1]], [[0.25]], 2)
    """

    weight: FixedFormat = FixedFormat(8, 7)  # noqa: RUF009 (frozen, immutable)
    act: FixedFormat = FixedFormat(8, 0, signed=False)  # noqa: RUF009 (frozen, immutable)
    acc_bits: int = 32
    overflow: Overflow = Overflow.WRAP

    def __post_init__(self) -> None:
        for name in ("weight", "act"):
            if not isinstance(getattr(self, name), FixedFormat):
                raise TypeError(f"{name} must be a FixedFormat, got {getattr(self, name)!r}")
        check_int("acc_bits", self.acc_bits, 2, 62)
        if not isinstance(self.overflow, Overflow):
            raise TypeError(f"overflow must be an Overflow, got {self.overflow!r}")

    @property
    def out_format(self) -> FixedFormat:
        """``FixedFormat(acc_bits, fw + fa)``: the accumulator's format."""
        return FixedFormat(self.acc_bits, self.weight.frac_bits + self.act.frac_bits)

    def prepare(
        self,
        layer: Conv2d | Linear,
        w: ArrayLike,
        x: ArrayLike,
        bias: ArrayLike | None = None,
    ) -> Prepared:
        """Quantize float operands: ``w / max|w|`` to ``weight``, ``x`` to ``act``.

        Both round to nearest (half up) and saturate; ``Prepared.clipped`` counts the
        saturated values. The weight scale ``max |w|`` (1 for all-zero weights) becomes the
        result's scale; the bias becomes ``round(bias / scale)`` in the output format.
        """
        w_arr, x_arr, b_arr = float_operands(layer, w, x, bias)
        w_arr = w_arr.astype(np.float64)
        wmax = float(np.max(np.abs(w_arr))) if w_arr.size else 0.0
        scale = wmax if wmax > 0 else 1.0
        w_raw, n_w = self.weight.from_float_counted(w_arr / scale)
        x_raw, n_x = self.act.from_float_counted(x_arr)
        bias_raw = None
        n_b = 0
        if b_arr is not None:
            bias_raw, n_b = self.out_format.from_float_counted(b_arr.astype(np.float64) / scale)
        return Prepared(
            code=MacCode(raw=w_raw, scale=scale),
            x_in=x_raw,
            w_deq=self.weight.to_float(w_raw) * scale,
            x_deq=self.act.to_float(x_raw),
            bias_raw=bias_raw,
            clipped=n_w + n_x + n_b,
        )

    def check(
        self, layer: Conv2d | Linear, code: Any, x: Any, bias_raw: ArrayLike | None
    ) -> MacOperands:
        """Validate ``run``'s arguments and return them as NCHW int64.

        ``code`` is a :class:`MacCode`, a :class:`~shiftsim.quantize.LinearCode` or a raw
        integer array (scale 1); ``x`` a raw integer array or a LinearCode. A LinearCode's
        ``frac_bits`` must match the datapath's format.

        Raises
        ------
        TypeError
            If an operand has the wrong type or a non-integer dtype.
        ValueError
            On a wrong shape, raw values outside their formats, a fractional-bit mismatch,
            or operands so large that ``|w*x| * C/groups`` plus the register overflows int64.
        """
        w_raw, scale = _unpack(code, "code", self.weight)
        if w_raw.shape != layer.weight_shape:
            raise ValueError(f"code must have shape {layer.weight_shape}, got {w_raw.shape}")
        if isinstance(x, MacCode):
            raise TypeError("x_raw must be a raw integer array or a LinearCode, got MacCode")
        x_raw, _ = _unpack(x, "x_raw", self.act)
        layer.check_input_shape(x_raw.shape, "x_raw")
        bias = check_bias_raw(layer, bias_raw, FixedFormat(self.acc_bits, 0))
        w_max = int(np.abs(w_raw).max()) if w_raw.size else 0
        x_max = int(np.abs(x_raw).max()) if x_raw.size else 0
        cg = layer.as_conv().channels_per_group
        worst = w_max * x_max * cg + (1 << (self.acc_bits - 1))
        if worst > INT64_MAX:
            raise ValueError(
                f"|w*x| * (C/groups) = {w_max * x_max * cg} plus the accumulator overflows"
                " int64: use narrower weight/act formats"
            )
        return MacOperands(
            w_raw=to_nchw_int64(layer, w_raw),
            x_raw=to_nchw_int64(layer, x_raw),
            bias_raw=bias,
            scale=scale,
        )

    def _counts(self, layer: Conv2d | Linear, op: MacOperands, overflows: int) -> Counts:
        conv = layer.as_conv()
        n_b, _, h, w = op.x_raw.shape
        ho, wo = conv.output_hw(h, w)
        steps = n_b * conv.out_channels * ho * wo * conv.kernel_size[0] * conv.kernel_size[1]
        terms = steps * conv.channels_per_group
        return Counts(multiplies=terms, adds=terms, acc_updates=steps, overflows=overflows)

    def run_functional(self, layer: Conv2d | Linear, operands: MacOperands) -> LayerResult:
        """Run the numba kernel :func:`shiftsim.kernels.mac.conv_mac`."""
        conv = layer.as_conv()
        op = operands
        out = np.zeros(conv.output_shape(op.x_raw.shape), dtype=np.int64)
        overflows = np.zeros(out.shape[0] * out.shape[1], dtype=np.int64)
        bias = op.bias_raw if op.bias_raw is not None else np.zeros(out.shape[1], np.int64)
        sat = self.overflow == Overflow.SAT
        conv_mac(op.x_raw, op.w_raw, bias, out, overflows, conv_geometry(conv), self.acc_bits, sat)
        counts = self._counts(layer, op, int(overflows.sum()))
        return self._layer_result(layer, out, op.scale, counts)

    def run_golden(
        self, layer: Conv2d | Linear, operands: MacOperands, progress: Progress | None = None
    ) -> LayerResult:
        """Run the golden model :func:`shiftsim.reference.golden_mac.conv_mac_golden`."""
        op = operands
        y, events = conv_mac_golden(
            layer.as_conv(), op.w_raw, op.x_raw, op.bias_raw,
            acc_bits=self.acc_bits, overflow=self.overflow, progress=progress,
        )  # fmt: skip
        return self._layer_result(layer, y, op.scale, Counts(**events))


def _unpack(value: Any, name: str, fmt: FixedFormat) -> tuple[NDArray[np.int64], float]:
    """Raw int64 values (checked against ``fmt``) and scale of a MacCode/LinearCode/array."""
    scale = 1.0
    raw: ArrayLike
    if isinstance(value, MacCode):
        raw, scale = value.raw, float(value.scale)
        if not np.isfinite(scale):
            raise ValueError(f"{name}.scale must be finite, got {scale!r}")
    elif isinstance(value, LinearCode):
        if value.format.frac_bits != fmt.frac_bits:
            raise ValueError(
                f"{name} has frac_bits {value.format.frac_bits} (step {value.step}); the"
                f" datapath's format {fmt} has frac_bits {fmt.frac_bits}"
            )
        raw = value.raw
    elif isinstance(value, (np.ndarray, list, tuple)):
        raw = value
    else:
        raise TypeError(
            f"{name} must be a raw integer array, a LinearCode or a MacCode, got"
            f" {type(value).__name__}"
        )
    return fmt.check_raw(raw, name), scale
