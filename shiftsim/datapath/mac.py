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

import itertools
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
from shiftsim.datapath.hardware_desc import HardwareDesc, mac_desc
from shiftsim.datapath.weight_cache import immutable, weight_store
from shiftsim.formats import FixedFormat, LogFormat, Overflow, check_int
from shiftsim.kernels.conv import FLOAT32_EXACT, FLOAT64_EXACT, columns, gemm
from shiftsim.kernels.mac import conv_mac
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import LinearCode, check_scale, count_log_clipped, quantize_log
from shiftsim.reference.golden_mac import conv_mac_golden

__all__ = ["FixedMacDatapath", "MacCode", "MacOperands", "MacPlan", "MacWeights", "mac_plan"]


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
    weights : MacWeights or None
        What the functional run derives from the weights alone (kept across runs with an
        immutable weight code, :mod:`shiftsim.datapath.weight_cache`); None: built per run.
    """

    w_raw: NDArray[np.int64]
    x_raw: NDArray[np.int64]
    bias_raw: NDArray[np.int64] | None
    scale: float
    weights: MacWeights | None = None


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
    act_log : LogFormat, optional
        Log-quantised activations (Miyashita et al., 2016, with linear weights): :meth:`prepare`
        rounds every activation to a base-2 log code of this format (SPEC §4's LogQuant:
        flushed below the smallest code, clipped to the largest) and holds the code's value
        ``2**e`` in ``act``, so each product is the weight shifted by ``e``. ``act`` must
        hold the largest code; codes below its LSB (``2**-frac_bits``) flush to zero (a
        shifter of ``act``'s width). The sign follows ``act`` (``act_log.signed`` is not used).
        The arithmetic and its counts are unchanged (SPEC §5.3), and the cost models price
        the activation operand as ``act``'s word and the product as a multiply.

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
    act_log: LogFormat | None = None

    def __post_init__(self) -> None:
        for name in ("weight", "act"):
            if not isinstance(getattr(self, name), FixedFormat):
                raise TypeError(f"{name} must be a FixedFormat, got {getattr(self, name)!r}")
        check_int("acc_bits", self.acc_bits, 2, 62)
        if not isinstance(self.overflow, Overflow):
            raise TypeError(f"overflow must be an Overflow, got {self.overflow!r}")
        if self.act_log is not None:
            _check_log_act(self.act_log, self.act)

    def hardware_desc(self) -> HardwareDesc:
        """Describe the hardware of this datapath to the cost models (SPEC §7)."""
        return mac_desc(self)

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

        Both round to nearest (half up) and saturate (with ``act_log``, ``x`` is rounded to a
        log code first and clipped to its largest); ``Prepared.clipped`` counts the
        saturated values. The weight scale ``max |w|`` (1 for all-zero weights) becomes the
        result's scale; the bias becomes ``round(bias / scale)`` in the output format.
        """
        w_arr, x_arr, b_arr = float_operands(layer, w, x, bias)
        w_arr = w_arr.astype(np.float64, copy=False)
        wmax = float(max(w_arr.max(), -w_arr.min())) if w_arr.size else 0.0  # max |w|, no copy
        scale = wmax if wmax > 0 else 1.0
        w_raw, n_w = self.weight.from_float_counted(w_arr / scale)
        w_deq = self.weight.to_float(w_raw)
        w_deq *= scale
        if self.act_log is None:
            x_raw, n_x = self.act.from_float_counted(x_arr)
        else:  # LogQuant, then the code's value 2**e: exact in act, or below its LSB: 0
            log = self.act_log
            codes = quantize_log(x_arr, log.bits, log.fsr, 2, self.act.signed)
            v = codes.to_float()
            x_raw = self.act.from_float(np.where(np.abs(v) < self.act.lsb, 0.0, v))
            n_x = count_log_clipped(x_arr, log)
        bias_raw = None
        n_b = 0
        if b_arr is not None:
            bias_raw, n_b = self.out_format.from_float_counted(b_arr.astype(np.float64) / scale)
        return Prepared(
            code=MacCode(raw=immutable(w_raw), scale=scale),  # immutable: runs keep what
            # they derive from it (shiftsim.datapath.weight_cache)
            x_in=x_raw,
            w_deq=w_deq,
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
        raw = code.raw if isinstance(code, MacCode) else None
        store = weight_store(code, (raw,), ("mac", layer, self))
        if "weights" not in store:  # validated once per immutable code (every run otherwise)
            w_raw, _ = _unpack(code, "code", self.weight)
            if w_raw.shape != layer.weight_shape:
                raise ValueError(f"code must have shape {layer.weight_shape}, got {w_raw.shape}")
            store["weights"] = MacWeights(to_nchw_int64(layer, w_raw))
        weights: MacWeights = store["weights"]
        _, scale = _unpack(code, "code", self.weight, check_raw=False)
        if isinstance(x, MacCode):
            raise TypeError("x_raw must be a raw integer array or a LinearCode, got MacCode")
        x_raw, _ = _unpack(x, "x_raw", self.act)
        layer.check_input_shape(x_raw.shape, "x_raw")
        bias = check_bias_raw(layer, bias_raw, FixedFormat(self.acc_bits, 0))
        w_max = weights.w_max
        x_max = int(np.abs(x_raw).max()) if x_raw.size else 0
        cg = layer.as_conv().channels_per_group
        worst = w_max * x_max * cg + (1 << (self.acc_bits - 1))
        if worst > INT64_MAX:
            raise ValueError(
                f"|w*x| * (C/groups) = {w_max * x_max * cg} plus the accumulator overflows"
                " int64: use narrower weight/act formats"
            )
        return MacOperands(
            w_raw=weights.w,
            x_raw=to_nchw_int64(layer, x_raw),
            bias_raw=bias,
            scale=scale,
            weights=weights,
        )

    def _counts(self, layer: Conv2d | Linear, op: MacOperands, overflows: int) -> Counts:
        conv = layer.as_conv()
        n_b, _, h, w = op.x_raw.shape
        ho, wo = conv.output_hw(h, w)
        steps = n_b * conv.out_channels * ho * wo * conv.kernel_size[0] * conv.kernel_size[1]
        terms = steps * conv.channels_per_group
        return Counts(multiplies=terms, adds=terms, acc_updates=steps, overflows=overflows)

    def run_functional(self, layer: Conv2d | Linear, operands: MacOperands) -> LayerResult:
        """Exact BLAS products where a bound proves no overflow; the checked kernel elsewhere.

        See :func:`mac_plan` for the choice; channels the bound does not cover run the numba
        kernel :func:`shiftsim.kernels.mac.conv_mac` (contract order, every event counted).
        """
        conv = layer.as_conv()
        op = operands
        n_b = op.x_raw.shape[0]
        out_hw = conv.output_hw(*op.x_raw.shape[2:])
        n_co = conv.out_channels
        bias = op.bias_raw if op.bias_raw is not None else np.zeros(n_co, np.int64)
        weights = op.weights if op.weights is not None else MacWeights(op.w_raw)
        x_max = int(np.abs(op.x_raw).max()) if op.x_raw.size else 0
        plan = weights.plan(x_max, bias, self.acc_bits)
        out = np.zeros((n_b, n_co, *out_hw), dtype=np.int64)
        geometry = conv_geometry(conv)
        if len(plan.gemm):
            w_mat = weights.matrix(plan.dtype)
            for i, limb in enumerate(plan.limbs(op.x_raw)):
                cols = columns(limb, geometry, conv.kernel_size, out_hw, plan.dtype)
                for k0, k1 in itertools.pairwise(plan.chunks):
                    part = gemm(w_mat[:, k0:k1], cols[:, k0:k1], plan.gemm, n_b, out_hw)
                    out += part.astype(np.int64) << (i * plan.limb_bits)
            out[:, plan.gemm] += bias[plan.gemm, None, None]
        overflows = np.zeros(n_b * len(plan.checked), dtype=np.int64)
        if len(plan.checked):
            sat = self.overflow == Overflow.SAT
            conv_mac(op.x_raw, op.w_raw, bias, plan.checked, out, overflows, geometry,
                     self.acc_bits, sat)  # fmt: skip
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


def _unpack(
    value: Any, name: str, fmt: FixedFormat, check_raw: bool = True
) -> tuple[NDArray[np.int64], float]:
    """Raw int64 values (checked against ``fmt``) and scale of a MacCode/LinearCode/array.

    With ``check_raw=False`` only the type and the scale are checked (raw values returned
    as given).
    """
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
    if not check_raw:
        return np.asarray(raw), scale
    return fmt.check_raw(raw, name), scale


#: Most operand limbs the exact-GEMM path splits the activations into.
MAX_LIMBS = 3
#: Most pieces of the reduction axis an exact float32 product may be split into.
MAX_CHUNKS = 4


@dataclass(frozen=True)
class MacPlan:
    """Which output channels take the exact BLAS path and how (:func:`mac_plan`).

    Attributes
    ----------
    gemm : ndarray of int64
        Channels computed as exact products (no partial sum can overflow the register).
    checked : ndarray of int64
        Channels left to the checked kernel.
    dtype : type
        ``np.float32`` (products of the reduction pieces below ``2**24``) or ``np.float64``.
    chunks : tuple of int
        Boundaries ``0 = k_0 < k_1 < ... = Cg*Kh*Kw`` of the reduction axis: one product per
        piece, summed in int64.
    n_limbs, limb_bits : int
        The activations are split into ``n_limbs`` limbs of ``limb_bits`` bits (the top one
        signed); one product per limb. ``n_limbs == 1``: ``x`` itself.
    """

    gemm: NDArray[np.int64]
    checked: NDArray[np.int64]
    dtype: type[np.floating[Any]]
    chunks: tuple[int, ...]
    n_limbs: int
    limb_bits: int

    def limbs(self, x: NDArray[np.int64]) -> list[NDArray[np.int64]]:
        """``x`` as ``sum(limb_i << (i * limb_bits))``: low limbs unsigned, the top one signed."""
        if self.n_limbs == 1:
            return [x]
        mask = (1 << self.limb_bits) - 1
        low = [(x >> (i * self.limb_bits)) & mask for i in range(self.n_limbs - 1)]
        return [*low, x >> ((self.n_limbs - 1) * self.limb_bits)]


def _float32_chunks(w_abs: NDArray[np.int64], x_max: int) -> tuple[int, ...] | None:
    """Pieces of the reduction axis with ``x_max * sum|w| <= 2**24`` in every channel.

    ``w_abs`` holds the channels' ``|w|`` (int64 sums exact). Equal pieces, as few as the
    largest channel sum allows, one more at a time up to ``MAX_CHUNKS``; None if none fits.
    """
    n_k = w_abs.shape[1]
    if x_max == 0 or n_k == 0 or w_abs.shape[0] == 0:
        return (0, n_k)
    cap = FLOAT32_EXACT // x_max
    need = -(-int(w_abs.sum(axis=1).max()) // cap) if cap else MAX_CHUNKS + 1
    for n in range(max(1, need), min(MAX_CHUNKS, n_k) + 1):
        bounds = [i * n_k // n for i in range(n + 1)]
        if int(np.add.reduceat(w_abs, bounds[:-1], axis=1).max()) <= cap:
            return tuple(bounds)
    return None


def mac_plan(
    w: NDArray[np.int64], x: NDArray[np.int64], bias: NDArray[np.int64], acc_bits: int
) -> MacPlan:
    """Choose, per output channel, the exact BLAS path or the checked kernel.

    Channel ``co`` has the bound ``B = |bias[co]| + max|x| * sum|w[co]|``: no partial sum of
    its outputs, in any order, exceeds ``B`` in magnitude. When ``B <= 2**(acc_bits-1) - 1``
    the register never overflows, WRAP and SAT both equal the plain integer sum, and the
    channel is a row of an integer matrix product, exact in floating point when no partial sum
    leaves the format's exact integers: float32 when the reduction axis splits into at most
    ``MAX_CHUNKS`` pieces with ``max|x| * sum|w| <= 2**24`` each (one product per piece),
    else float64 when ``max|x| * sum|w[co]| <= 2**53``. Beyond that the activations are split
    into limbs of ``L = 53 - bitlength(max sum|w|)`` bits (each float64 product then stays
    below ``2**53``); if more than ``MAX_LIMBS`` limbs would be needed, the channels take the
    checked kernel.
    """
    x_max = int(np.abs(x).max()) if x.size else 0
    return MacWeights(w).plan(x_max, bias, acc_bits)


class MacWeights:
    """What :func:`mac_plan` and the exact products derive from the weights alone.

    Built once per immutable weight code and kept with it (:mod:`shiftsim.datapath.weight_cache`);
    the float32 pieces (per ``max|x|``) and the weight matrices (per dtype) are built lazily.

    Parameters
    ----------
    w : ndarray of int64, shape (Co, Cg, Kh, Kw)
        The raw weights, NCHW.
    """

    def __init__(self, w: NDArray[np.int64]) -> None:
        self.w = w
        self.n_co = w.shape[0]
        self.w_abs = np.abs(w.reshape(self.n_co, -1))
        self.n_k = self.w_abs.shape[1]
        self.w_max = int(self.w_abs.max()) if self.w_abs.size else 0
        self.int64_sums = self.w_max * max(self.n_k, 1) <= INT64_MAX
        if self.int64_sums:
            self.w_sum = [int(v) for v in self.w_abs.sum(axis=1).tolist()]
        else:  # Python ints: the sum would overflow int64
            self.w_sum = [sum(int(v) for v in row) for row in self.w_abs.tolist()]
        self._chunks: dict[tuple[int, bytes], tuple[int, ...] | None] = {}
        self._matrices: dict[Any, NDArray[Any]] = {}

    def matrix(self, dtype: type[np.floating[Any]]) -> NDArray[Any]:
        """The weights as a ``(Co, Cg*Kh*Kw)`` matrix of ``dtype``."""
        if dtype not in self._matrices:
            self._matrices[dtype] = self.w.reshape(self.n_co, -1).astype(dtype)
        return self._matrices[dtype]

    def float32_chunks(self, flags: NDArray[np.bool_], x_max: int) -> tuple[int, ...] | None:
        """:func:`_float32_chunks` of the flagged channels (memoized)."""
        key = (x_max, np.packbits(flags).tobytes())
        if key not in self._chunks:
            self._chunks[key] = _float32_chunks(self.w_abs[flags], x_max)
        return self._chunks[key]

    def plan(self, x_max: int, bias: NDArray[np.int64], acc_bits: int) -> MacPlan:
        """:func:`mac_plan` for activations of largest magnitude ``x_max``."""
        n_co, n_k, w_sum = self.n_co, self.n_k, self.w_sum
        limit = 1 << (acc_bits - 1)
        safe = [abs(int(b)) + x_max * s < limit for b, s in zip(bias.tolist(), w_sum)]
        flags = np.array(safe, dtype=bool).reshape(n_co)
        s_max = max((s for s, ok in zip(w_sum, safe) if ok), default=0)
        dtype: type[np.floating[Any]] = np.float64
        chunks: tuple[int, ...] = (0, n_k)
        n_limbs, limb_bits = 1, 53
        if x_max * s_max <= FLOAT32_EXACT * MAX_CHUNKS and self.int64_sums:
            chunks32 = self.float32_chunks(flags, x_max)
            if chunks32 is not None:
                dtype, chunks = np.float32, chunks32
        if dtype is np.float64 and x_max * s_max > FLOAT64_EXACT:
            limb_bits = 53 - s_max.bit_length()
            # |top limb| = |x >> (n-1)L| <= ceil(x_max / 2**((n-1)L)) must be < 2**L
            while limb_bits > 0 and n_limbs <= MAX_LIMBS:
                if -(-x_max >> ((n_limbs - 1) * limb_bits)) < (1 << limb_bits):
                    break
                n_limbs += 1
            if limb_bits <= 0 or n_limbs > MAX_LIMBS:
                flags[:] = False
                n_limbs, limb_bits = 1, 53
        return MacPlan(
            gemm=np.flatnonzero(flags).astype(np.int64),
            checked=np.flatnonzero(~flags).astype(np.int64),
            dtype=dtype,
            chunks=chunks,
            n_limbs=n_limbs,
            limb_bits=limb_bits,
        )


def _check_log_act(log: object, act: FixedFormat) -> None:
    """``act_log`` must be a base-2 LogFormat whose largest code ``act`` holds."""
    if not isinstance(log, LogFormat):
        raise TypeError(f"act_log must be a LogFormat or None, got {log!r}")
    if log.k != 1:
        raise ValueError(f"act_log must be base 2 (its codes exact in fixed point), got {log!r}")
    top = log.e_max + act.frac_bits  # the largest code 2**e_max in act's LSBs
    if top < 0 or act.max_raw < (1 << top):
        raise ValueError(f"act={act!r} cannot hold act_log's largest code 2**{log.e_max} ({log!r})")
