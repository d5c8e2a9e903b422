"""The log-domain datapath (SPEC §5.2; Miyashita, Lee & Murmann, 2016).

Weights and activations are log codes; a product is an exponent addition
``p = e_x + e_w`` (units ``1/k`` of log2; ``k = 2`` when either operand is base sqrt(2), a base-2
exponent then counting double); the sign is ``s_x * s_w``. Terms are taken in the order
c, kh, kw (C-order over the receptive field). A term with a zero operand (padding included) is
skipped: no product, no event.

``accumulate="linear"``
    One register ``acc`` in ``FixedFormat(acc_bits, acc_frac_bits)``, initialised with the bias
    (0 without one); each term does ``acc = OVF(acc +- t)`` with ``t = floor(2**(p + F))``
    (base 2: a 1 shifted left by ``p + F``; 0 when ``p + F < 0``). For base sqrt(2) an even
    ``p`` gives ``floor(2**(p/2 + F))``; an odd ``p`` gives ``t = floor(2**((p-1)/2 + F))`` and
    then, per ``sqrt2_mode``: ``"split"``, ``t`` goes into a second register ``acc_odd`` (same
    format, same overflow) and at the end ``acc = OVF(acc + floor(acc_odd * c))`` with
    ``c = floor(sqrt(2) * 2**sqrt2_frac_bits) / 2**sqrt2_frac_bits``; ``"shift_add"``,
    ``t = sum(floor(t / 2**s) for s in sqrt2_shifts)`` (default ``(0, 2, 3, 5)``, 1.40625).
``accumulate="log"``
    Two log2 registers with ``g = log_frac_bits`` fractional bits, one for positive and one for
    negative terms, empty at the start; log2(1 + x) ~ x merges a term into a register
    (``log_add="floor"``, the paper's equation, or ``"mitchell"``, SPEC §5.2). Each non-empty
    register is converted to linear by Mitchell's rule ``2**(I + phi) ~ 2**I * (1 + phi)``,
    floored, in ``FixedFormat(acc_bits, acc_frac_bits)`` (overflow applied); an empty register
    is 0. The output is ``OVF(bias + lin(S_pos) - lin(S_neg))``: the bias enters after the
    conversion. ``sqrt2_mode`` plays no part. The log registers hold at most
    ``max(p)/k + log2(terms) + 1`` and never overflow.

Counts (``T_nz``: terms with both operands nonzero; ``n_odd``: those with odd ``p`` when
``k == 2``; ``O``: outputs; ``L``: log-domain merges, i.e. terms that find their register
non-empty; ``R``: non-empty log registers at the end, summed over outputs):

=================  ======================================================  =====================
event              linear accumulation                                     log accumulation
=================  ======================================================  =====================
exponent_adds      ``T_nz``                                                ``T_nz``
shift_ops          ``T_nz`` (+ ``n_odd * #{s > 0 in sqrt2_shifts}``        ``L + R``
                   with shift_add)
adds               ``T_nz`` (+ ``n_odd * (len(sqrt2_shifts) - 1)`` with    ``L`` floor, ``2L``
                   shift_add; + ``O`` with split)                          mitchell; + ``O``
                                                                           (+ ``O`` with bias)
compares           0                                                       ``L``
acc_updates        ``T_nz`` (+ ``O`` with split)                           ``T_nz``
log_to_linear      0                                                       ``R``
multiplies         ``O`` with split (the constant ``c``), else 0           0
overflows          register updates OVF changed (``acc``, ``acc_odd``,     conversions and the
                   the final split add)                                    final add OVF changed
=================  ======================================================  =====================

The bias, when given, is the linear register's initial value (no add) and one add after the
conversions in log mode.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.counts import Counts
from shiftsim.datapath.base import (
    Datapath,
    LayerResult,
    Prepared,
    Progress,
    check_bias_raw,
    conv_geometry,
    float_operands,
    to_nchw_int64,
)
from shiftsim.datapath.hardware_desc import HardwareDesc, log_desc
from shiftsim.datapath.log_gemm import (
    LinearWeights,
    XRange,
    linear_gemm,
    log_linear_plan,
    plan_channels,
    x_range,
)
from shiftsim.datapath.weight_cache import immutable, weight_store
from shiftsim.formats import FixedFormat, LogFormat, Overflow, check_int
from shiftsim.kernels import log_domain as kern
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import LogCode, count_log_clipped, quantize_log
from shiftsim.reference.golden_log import conv_log_golden

__all__ = ["LogDatapath", "LogOperands", "log_linear_plan"]

_ACCUMULATE = {"linear": kern.ACC_LINEAR, "log": kern.ACC_LOG}
_LOG_ADD = {"floor": kern.LOG_ADD_FLOOR, "mitchell": kern.LOG_ADD_MITCHELL}
_SQRT2_MODE = {"split": kern.SQRT2_SPLIT, "shift_add": kern.SQRT2_SHIFT_ADD}
_EVENT_FIELDS = {
    kern.EV_EXPONENT_ADDS: "exponent_adds",
    kern.EV_COMPARES: "compares",
    kern.EV_SHIFT_OPS: "shift_ops",
    kern.EV_ADDS: "adds",
    kern.EV_ACC_UPDATES: "acc_updates",
    kern.EV_LOG_TO_LINEAR: "log_to_linear",
    kern.EV_OVERFLOWS: "overflows",
    kern.EV_MULTIPLIES: "multiplies",
}
#: Largest ``floor(p / k) + F``: a term ``2**61`` plus a 62-bit register still fits int64.
MAX_TERM_SHIFT = 61


def _choice(name: str, value: object, options: dict[str, int]) -> None:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")


@dataclass(frozen=True, eq=False)
class LogOperands:
    """Validated operands of :meth:`LogDatapath.run`, NCHW, exponents in their own units.

    Attributes
    ----------
    w_exp, w_sign : ndarray of int64, shape (Co, C // groups, Kh, Kw)
        Weight exponents (``e_min`` where the sign is 0) and signs.
    x_exp, x_sign : ndarray of int64, shape (B, C, H, W)
        Activation exponents (``e_min`` where the sign is 0) and signs.
    bias_raw : ndarray of int64, shape (Co,), or None
        Bias in accumulator units.
    weight_store : dict
        What the functional run derives from the weights alone; kept across runs with an
        immutable weight code (:func:`~shiftsim.datapath.weight_cache.weight_store`).
    """

    w_exp: NDArray[np.int64]
    w_sign: NDArray[np.int64]
    x_exp: NDArray[np.int64]
    x_sign: NDArray[np.int64]
    bias_raw: NDArray[np.int64] | None
    weight_store: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class LogDatapath(Datapath):
    """Log-domain datapath: exponent-add products, linear or log-domain accumulation.

    See the module docstring for the exact arithmetic and the event counts.

    Parameters
    ----------
    act : LogFormat, default LogFormat(3, 7, base=2, signed=False)
        Activation codes (the paper's 3-bit log activations; ``signed=True`` is allowed).
    weight : LogFormat, default LogFormat(4, 0, base=2, signed=True)
        Weight codes. ``act`` and ``weight`` may differ in base.
    accumulate : {"linear", "log"}, default "linear"
        Accumulate terms as fixed-point values, or in the log domain (log2(1 + x) ~ x).
    acc_bits : int, default 32
        Signed width of the linear register and of the output, 2..62.
    acc_frac_bits : int, default 16
        ``F``: fractional bits of the output ``FixedFormat(acc_bits, F)``. With the default
        formats the smallest product ``2**-15`` is still one LSB. ``max(p)/k + F`` must not
        exceed 61 with linear accumulation.
    overflow : Overflow, default Overflow.WRAP
        What the registers do on overflow (every event is counted).
    log_frac_bits : int, default 4
        ``g``: fractional bits of the log registers, 0..30 (at least 1 with base sqrt(2)).
    log_add : {"floor", "mitchell"}, default "floor"
        The paper's ``max + (1 >> |floor(S) - p|)`` or Mitchell's finer correction.
    sqrt2_mode : {"split", "shift_add"}, default "split"
        How odd base-sqrt(2) products reach the linear register.
    sqrt2_frac_bits : int, default 16
        Fractional bits of ``c ~ sqrt(2)`` in split mode; ``acc_bits + sqrt2_frac_bits <= 63``.
    sqrt2_shifts : tuple of int, default (0, 2, 3, 5)
        Right shifts summing to the sqrt(2) constant in shift_add mode (strictly increasing,
        0..62).

    Examples
    --------
    >>> from shiftsim.layers import Linear
    >>> from shiftsim.quantize import quantize_log
    >>> dp = LogDatapath(acc_frac_bits=4)
    >>> w = quantize_log([[0.5, -0.25]], bits=4, fsr=0)
    >>> x = quantize_log([[2.0, 1.0]], bits=3, fsr=7, signed=False)
    >>> dp.run(Linear(2, 1), w, x).y.tolist()
    [[0.75]]
    """

    act: LogFormat = LogFormat(3, 7, base=2, signed=False)  # noqa: RUF009 (frozen)
    weight: LogFormat = LogFormat(4, 0, base=2, signed=True)  # noqa: RUF009 (frozen)
    accumulate: str = "linear"
    acc_bits: int = 32
    acc_frac_bits: int = 16
    overflow: Overflow = Overflow.WRAP
    log_frac_bits: int = 4
    log_add: str = "floor"
    sqrt2_mode: str = "split"
    sqrt2_frac_bits: int = 16
    sqrt2_shifts: tuple[int, ...] = (0, 2, 3, 5)

    def __post_init__(self) -> None:
        for name in ("act", "weight"):
            if not isinstance(getattr(self, name), LogFormat):
                raise TypeError(f"{name} must be a LogFormat, got {getattr(self, name)!r}")
        _choice("accumulate", self.accumulate, _ACCUMULATE)
        _choice("log_add", self.log_add, _LOG_ADD)
        _choice("sqrt2_mode", self.sqrt2_mode, _SQRT2_MODE)
        check_int("acc_bits", self.acc_bits, 2, 62)
        check_int("acc_frac_bits", self.acc_frac_bits, -1024, 1024)
        check_int("log_frac_bits", self.log_frac_bits, 0, 30)
        check_int("sqrt2_frac_bits", self.sqrt2_frac_bits, 0, 61)
        if not isinstance(self.overflow, Overflow):
            raise TypeError(f"overflow must be an Overflow, got {self.overflow!r}")
        shifts = self.sqrt2_shifts
        if not isinstance(shifts, tuple) or not 1 <= len(shifts) <= 16:
            raise ValueError(f"sqrt2_shifts must be a tuple of 1 to 16 ints, got {shifts!r}")
        for s in shifts:
            check_int("sqrt2_shifts", s, 0, 62)
        if any(a >= b for a, b in itertools.pairwise(shifts)):
            raise ValueError(f"sqrt2_shifts must be strictly increasing, got {shifts!r}")
        if self.k == 2 and self.accumulate == "log" and self.log_frac_bits < 1:
            raise ValueError(
                f"log_frac_bits must be >= 1 with a base-sqrt2 operand, got {self.log_frac_bits}"
            )
        if self.k == 2 and self.accumulate == "linear" and self.sqrt2_mode == "split":
            if self.acc_bits + self.sqrt2_frac_bits > 63:
                raise ValueError(
                    f"sqrt2_frac_bits must be <= {63 - self.acc_bits} with acc_bits="
                    f"{self.acc_bits} (acc_odd * c must fit int64), got {self.sqrt2_frac_bits}"
                )
        top = self.max_product_exponent // self.k + self.acc_frac_bits
        if self.accumulate == "linear" and top > MAX_TERM_SHIFT:
            raise ValueError(
                f"acc_frac_bits must be <= {MAX_TERM_SHIFT - top + self.acc_frac_bits} with these"
                f" formats: the largest term would be 2**{top} accumulator LSBs, got"
                f" {self.acc_frac_bits}"
            )

    @property
    def k(self) -> int:
        """Product exponent units per octave: 2 if either operand is base sqrt(2), else 1."""
        return max(self.act.k, self.weight.k)

    @property
    def max_product_exponent(self) -> int:
        """Largest product exponent ``p``, in units of ``1/k``."""
        return self.act.e_max * (self.k // self.act.k) + self.weight.e_max * (
            self.k // self.weight.k
        )

    def hardware_desc(self) -> HardwareDesc:
        """Describe the hardware of this datapath to the cost models (SPEC §7)."""
        return log_desc(self)

    @property
    def out_format(self) -> FixedFormat:
        """``FixedFormat(acc_bits, acc_frac_bits)``: the format of ``y_raw``."""
        return FixedFormat(self.acc_bits, self.acc_frac_bits)

    @property
    def sqrt2_const(self) -> int:
        """``floor(sqrt(2) * 2**sqrt2_frac_bits)``: the split mode's constant, raw."""
        return math.isqrt(2 << (2 * self.sqrt2_frac_bits))

    # -- float -> codes ---------------------------------------------------------------------

    def prepare(
        self,
        layer: Conv2d | Linear,
        w: ArrayLike,
        x: ArrayLike,
        bias: ArrayLike | None = None,
    ) -> Prepared:
        """Quantize float weights and activations with :func:`~shiftsim.quantize.quantize_log`.

        No scale is applied: the formats' ``fsr`` places the codes (``LayerResult.scale`` is
        1). The weight code's arrays are immutable, so that runs can keep what they derive
        from them (:mod:`shiftsim.datapath.weight_cache`). The bias is rounded to the output
        format. ``Prepared.clipped`` counts the values clipped to the largest code (at or above
        the rounding boundary above it).
        """
        w_arr, x_arr, b_arr = float_operands(layer, w, x, bias)
        w_code = quantize_log(w_arr, self.weight.bits, self.weight.fsr, self.weight.base,
                              self.weight.signed)  # fmt: skip
        x_code = quantize_log(x_arr, self.act.bits, self.act.fsr, self.act.base, self.act.signed)
        clipped = count_log_clipped(w_arr, self.weight) + count_log_clipped(x_arr, self.act)
        bias_raw = None
        if b_arr is not None:
            bias_raw, n_over = self.out_format.from_float_counted(b_arr)
            clipped += n_over
        # immutable: a run keeps what it derives from these weights with the code
        w_code = LogCode(immutable(w_code.exponent), immutable(w_code.sign), w_code.format)
        return Prepared(
            code=w_code,
            x_in=x_code,
            w_deq=w_code.to_float(),
            x_deq=x_code.to_float(),
            bias_raw=bias_raw,
            clipped=clipped,
        )

    # -- validation ---------------------------------------------------------------------------

    def check(
        self, layer: Conv2d | Linear, code: Any, x: Any, bias_raw: ArrayLike | None
    ) -> LogOperands:
        """Validate ``run``'s arguments (codes in this datapath's formats) and normalize them.

        Raises
        ------
        TypeError
            If a code is not a LogCode or an array has a non-integer dtype.
        ValueError
            If a code's format differs from the datapath's, a shape is wrong, a sign is not
            -1/0/+1 (0/+1 for unsigned), an exponent lies outside its format, or the bias is
            outside the output format.
        """
        arrays = (getattr(code, "exponent", None), getattr(code, "sign", None))
        store = weight_store(code, arrays, ("log", layer, self))
        if "w" not in store:  # validated once per immutable code (every run otherwise)
            w_exp, w_sign = _check_code("w_code", code, self.weight, layer.weight_shape)
            store["w"] = (to_nchw_int64(layer, w_exp), to_nchw_int64(layer, w_sign))
        x_exp, x_sign = _check_code("x_code", x, self.act, None)
        layer.check_input_shape(x_exp.shape, "x_code")
        bias = check_bias_raw(layer, bias_raw, self.out_format)
        return LogOperands(
            w_exp=store["w"][0],
            w_sign=store["w"][1],
            x_exp=to_nchw_int64(layer, x_exp),
            x_sign=to_nchw_int64(layer, x_sign),
            bias_raw=bias,
            weight_store=store,
        )

    # -- the two models -------------------------------------------------------------------

    def run_functional(self, layer: Conv2d | Linear, operands: LogOperands) -> LayerResult:
        """Exact BLAS products where :func:`log_linear_plan` allows; the numba kernel elsewhere.

        Linear accumulation with base 2 or base sqrt(2) in split mode takes the exact-GEMM
        path (:func:`~shiftsim.datapath.log_gemm.linear_gemm`) for the channels whose bound
        proves that no register overflows; every other channel (and every other mode) runs
        :func:`shiftsim.kernels.log_domain.conv_log`.
        """
        conv = layer.as_conv()
        op = operands
        n_b = op.x_exp.shape[0]
        out = np.zeros(conv.output_shape(op.x_exp.shape), dtype=np.int64)
        has_bias = op.bias_raw is not None
        bias = np.zeros(conv.out_channels, np.int64) if op.bias_raw is None else op.bias_raw
        x_exp = op.x_exp * (self.k // self.act.k)
        w_exp = op.weight_store.get("w_exp")
        if w_exp is None:
            w_exp = op.weight_store["w_exp"] = op.w_exp * (self.k // self.weight.k)
        totals = np.zeros(kern.N_EVENTS, dtype=np.int64)
        rest = np.arange(conv.out_channels, dtype=np.int64)
        if self.accumulate == "linear" and (self.k == 1 or self.sqrt2_mode == "split"):
            weights = op.weight_store.get("linear")
            if weights is None:
                weights = LinearWeights(w_exp, op.w_sign, self.k, self.acc_frac_bits, conv.groups)
                op.weight_store["linear"] = weights
            xr = x_range(x_exp, op.x_sign, self.k)
            safe, total = plan_channels(weights, xr, bias, self.acc_bits)
            if safe.any():
                totals += self._linear_gemm(conv, weights, x_exp, op.x_sign, xr, bias, safe,
                                            total, out)  # fmt: skip
            rest = np.flatnonzero(~safe).astype(np.int64)
        if self.accumulate == "log":
            p_shift = self.log_frac_bits - (self.k - 1)
            groups, (n_co, cg, kh, kw) = conv.groups, w_exp.shape
            lanes = (groups, n_co // groups, cg, kh, kw)  # the group's channels last
            w_pow = np.ascontiguousarray((w_exp << p_shift).reshape(lanes).transpose(0, 2, 3, 4, 1))
            w_sgn = np.ascontiguousarray(op.w_sign.reshape(lanes).transpose(0, 2, 3, 4, 1))
            events = np.zeros((n_b * out.shape[2], kern.N_EVENTS), dtype=np.int64)
            kern.conv_log_accumulate(
                x_exp << p_shift, op.x_sign, w_pow, w_sgn, bias, has_bias, out, events,
                conv_geometry(conv), self.acc_bits, self.acc_frac_bits,
                self.overflow == Overflow.SAT, self.log_frac_bits, _LOG_ADD[self.log_add],
            )  # fmt: skip
            totals += events.sum(axis=0)
        elif len(rest):
            events = np.zeros((n_b * len(rest), kern.N_EVENTS), dtype=np.int64)
            kern.conv_log(
                x_exp,
                op.x_sign,
                w_exp,
                op.w_sign,
                bias,
                has_bias,
                rest,
                out,
                events,
                conv_geometry(conv),
                self.k,
                self.acc_bits,
                self.acc_frac_bits,
                self.overflow == Overflow.SAT,
                _SQRT2_MODE[self.sqrt2_mode],
                self.sqrt2_frac_bits,
                self.sqrt2_const,
                np.asarray(self.sqrt2_shifts, dtype=np.int64),
            )
            totals += events.sum(axis=0)
        counts = Counts(**{name: int(totals[i]) for i, name in _EVENT_FIELDS.items()})
        return self._layer_result(layer, out, 1.0, counts)

    def _linear_gemm(
        self,
        conv: Conv2d,
        weights: LinearWeights,
        x_exp: NDArray[np.int64],
        x_sign: NDArray[np.int64],
        xr: XRange,
        bias: NDArray[np.int64],
        safe: NDArray[np.bool_],
        total: list[int],
        out: NDArray[np.int64],
    ) -> NDArray[np.int64]:
        """Linear accumulation of the ``safe`` channels as exact products; return the events.

        :func:`~shiftsim.datapath.log_gemm.linear_gemm` computes the registers (the plan has
        proved that none overflows); the split mode's final ``acc + floor(acc_odd * c)`` is
        fitted and counted here.
        """
        channels = np.flatnonzero(safe).astype(np.int64)
        out_hw = conv.output_hw(*x_exp.shape[2:])
        acc, acc_odd, t_nz = linear_gemm(weights, x_exp, x_sign, xr, total, channels,
                                         conv_geometry(conv), conv.kernel_size, out_hw)  # fmt: skip
        acc += bias[channels, None, None]
        totals = np.zeros(kern.N_EVENTS, dtype=np.int64)
        n_out = acc.size
        if acc_odd is not None:  # split: acc = OVF(acc + floor(acc_odd * c)), counted
            v = acc + ((acc_odd * self.sqrt2_const) >> self.sqrt2_frac_bits)
            acc = _fit(v, self.acc_bits, self.overflow)
            totals[kern.EV_OVERFLOWS] = int(np.count_nonzero(acc != v))
            totals[kern.EV_MULTIPLIES] = n_out
        out[:, channels] = acc
        extra = n_out if acc_odd is not None else 0
        for ev in (kern.EV_EXPONENT_ADDS, kern.EV_SHIFT_OPS):
            totals[ev] = t_nz
        totals[kern.EV_ADDS] = t_nz + extra
        totals[kern.EV_ACC_UPDATES] = t_nz + extra
        return totals

    def _golden_s_per_mac(self) -> float:
        return 15e-6  # exact Fractions for every term

    def run_golden(
        self, layer: Conv2d | Linear, operands: LogOperands, progress: Progress | None = None
    ) -> LayerResult:
        """Run the golden model :func:`shiftsim.reference.golden_log.conv_log_golden`."""
        op = operands
        y, events = conv_log_golden(
            layer.as_conv(),
            op.w_exp,
            op.w_sign,
            self.weight.k,
            op.x_exp,
            op.x_sign,
            self.act.k,
            op.bias_raw,
            accumulate=self.accumulate,
            acc_bits=self.acc_bits,
            acc_frac_bits=self.acc_frac_bits,
            overflow=self.overflow,
            log_frac_bits=self.log_frac_bits,
            log_add=self.log_add,
            sqrt2_mode=self.sqrt2_mode,
            sqrt2_frac_bits=self.sqrt2_frac_bits,
            sqrt2_shifts=self.sqrt2_shifts,
            progress=progress,
        )
        return self._layer_result(layer, y, 1.0, Counts(**events))


def _fit(v: NDArray[np.int64], bits: int, overflow: Overflow) -> NDArray[np.int64]:
    """Wrap or saturate int64 values into a signed ``bits``-wide register."""
    half = 1 << (bits - 1)
    if overflow == Overflow.SAT:
        return np.clip(v, -half, half - 1)
    return ((v + half) & ((1 << bits) - 1)) - half


def _check_code(
    name: str, code: Any, fmt: LogFormat, shape: tuple[int, ...] | None
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Validate a LogCode against ``fmt`` (and ``shape``); return (exponent, sign) as int64."""
    if not isinstance(code, LogCode):
        raise TypeError(f"{name} must be a LogCode, got {type(code).__name__}")
    if code.format != fmt:
        raise ValueError(f"{name}.format must be the datapath's {fmt}, got {code.format}")
    exp_in = np.asarray(code.exponent)
    sign_in = np.asarray(code.sign)
    for part, arr in (("exponent", exp_in), ("sign", sign_in)):
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name}.{part} must be an integer array, got dtype {arr.dtype}")
    if exp_in.shape != sign_in.shape:
        raise ValueError(
            f"{name}.exponent and {name}.sign must have one shape, got {exp_in.shape},"
            f" {sign_in.shape}"
        )
    if shape is not None and exp_in.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {exp_in.shape}")
    sign: NDArray[np.int64] = sign_in.astype(np.int64)
    allowed = (-1, 0, 1) if fmt.signed else (0, 1)
    bad = (sign < allowed[0]) | (sign > 1)
    if bad.any():
        raise ValueError(f"{name}.sign holds {int(sign[bad].flat[0])}, not one of {allowed}")
    exp: NDArray[np.int64] = exp_in.astype(np.int64)
    out_of_range = (sign != 0) & ((exp < fmt.e_min) | (exp > fmt.e_max))
    if out_of_range.any():
        raise ValueError(
            f"{name}.exponent holds {int(exp[out_of_range].flat[0])}, outside"
            f" [{fmt.e_min}, {fmt.e_max}] of {fmt}"
        )
    return np.where(sign != 0, exp, fmt.e_min).astype(np.int64), sign
