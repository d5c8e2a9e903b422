"""The ShiftCNN shift-add datapath (SPEC §5.1): configuration, validation and ``run``.

``run(level="functional")`` drives the kernels of :mod:`shiftsim.kernels.shift_add`: the shift
unit fills a buffer with the S+1 shifted magnitudes of every (padded) input, then each output
channel is summed by one of two exact kernels:

- *unchecked*, when ``|bias| + (nonzero indices) * max|x << f|`` fits the accumulator: no
  partial sum can overflow in any order, so WRAP and SAT both equal the plain integer sum and
  no overflow event can occur; the terms are summed in any order, in int16 partial sums and
  int32 accumulators when those bounds allow it; short wide rows (deep layers) are summed
  64 lanes at a time by a kernel free of run-time overlap checks;
- *checked* otherwise: the contract order (bias, then n, kh, kw, each step's adder tree over
  the channels exact), the register fitted (WRAP or SAT) after every update and every change
  counted. Short wide rows, and steps of at most ``FEW_TERMS`` terms, on the same fixed-width
  adders as the unchecked kernel; long rows of more terms (a tile of more than
  ``_SHORT_LANES`` lanes) each step summed whole-row at once, which is faster there.

``run(level="golden")`` runs :func:`shiftsim.reference.golden.shift_add_golden` instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.counts import Counts
from shiftsim.datapath.base import INT64_MAX, Datapath, LayerResult, Prepared, Progress
from shiftsim.datapath.hardware_desc import HardwareDesc, shift_desc
from shiftsim.datapath.weight_cache import immutable, weight_store
from shiftsim.formats import FixedFormat, Overflow, Rounding, as_float_array, check_int
from shiftsim.kernels import shift_add as _k
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import MAX_CODEBOOKS, ShiftCode, quantize_shiftcnn

__all__ = ["ShiftAddDatapath", "ShiftOperands", "ShiftWeights"]

#: Accumulator lanes of one tile of output rows (its wide rows stay in the L1 cache).
_TILE_LANES = 4096
#: SIMD lanes the adders round each wide row up to.
_LANES = 16
#: Tiles of at most this many lanes take the short-row adders (deep layers).
_SHORT_LANES = 256
#: Shift buffers of several batch items share one kernel launch up to this many bytes.
_BATCH_BYTES = 1 << 24


@dataclass(frozen=True, eq=False)
class ShiftOperands:
    """``run``'s arguments after :meth:`ShiftAddDatapath.check`, in NCHW form.

    Attributes
    ----------
    index : ndarray of int8, shape ``(Co, C/groups, Kh, Kw, N)``
        The weight indices.
    x_raw : ndarray of int64, shape ``(B, C, H, W)``
        The raw activations.
    bias_raw : ndarray of int64, shape ``(Co,)``, or None
        The bias, in accumulator units.
    scale : float or ndarray of float64
        The weight scale (per tensor, or one per output channel).
    code : ShiftCode
        The code as given.
    weights : ShiftWeights or None
        What the functional run derives from the indices alone (kept across runs with an
        immutable weight code, :mod:`shiftsim.datapath.weight_cache`); None: built per run.
    """

    index: NDArray[np.int8]
    x_raw: NDArray[np.int64]
    bias_raw: NDArray[np.int64] | None
    scale: float | NDArray[np.float64]
    code: ShiftCode
    weights: ShiftWeights | None = None


@dataclass(frozen=True, kw_only=True)
class ShiftAddDatapath(Datapath):
    """A ShiftCNN datapath: shift unit, selectors, adder tree and accumulator (SPEC §5.1).

    Parameters
    ----------
    n_codebooks : int, default 2
        N, codebooks per weight (1..8).
    bits : int, default 4
        B, bits per index (2..8).
    act : FixedFormat, default ``FixedFormat(8, 0, signed=False)``
        Format of the raw activations (frac bits ``fa``).
    shift_frac_bits : int, default 0
        ``f``: extra LSBs kept by the shift unit (0..62).
    shift_rounding : Rounding, default TRN
        ``TRN`` (``(x << f) >> s``) or ``RND`` (``((x << f) + 2**(s-1)) >> s``).
    acc_bits : int, default 32
        Signed accumulator width (2..62), ``fa + f`` fractional bits.
    overflow : Overflow, default WRAP
        What the accumulator does after each update: wrap or saturate.
    weight_axis : int or None, default None
        :meth:`prepare` quantizes the weights with one scale per tensor (None) or one per
        output channel (0).

    Notes
    -----
    Bit growth along the datapath (``a`` activation bits, ``T`` nonzero terms per output):

    ================  ============================  ====================
    stage             value bits                    fractional bits
    ================  ============================  ====================
    input ``x``       ``a``                         ``fa``
    ``x << f``        ``a + f``                     ``fa + f``
    ``xs[s]``, ±      ``a + f (+1 if unsigned)``    ``fa + f``
    adder tree        ``+ ceil(log2(C/groups))``    ``fa + f``
    accumulator       ``acc_bits`` (wraps/sats)     ``fa + f``
    ================  ============================  ====================

    Examples
    --------
    >>> import numpy as np
    >>> from shiftsim.layers import Conv2d
    >>> from shiftsim.quantize import ShiftCode
    >>> dp = ShiftAddDatapath(n_codebooks=1, bits=3)
    >>> index = np.array([1, -2, 3, 0], dtype=np.int8).reshape(1, 1, 2, 2, 1)
    >>> code = ShiftCode(index=index, scale=np.float64(1.0), n_codebooks=1, bits=3)
    >>> x = np.array([[[[8, 8], [8, 8]]]])
    >>> dp.run(Conv2d(1, 1, 2), code, x).y_raw.tolist()  # 8 - (8 >> 1) + (8 >> 2) + 0
    [[[[6]]]]
    """

    n_codebooks: int = 2
    bits: int = 4
    act: FixedFormat = FixedFormat(8, 0, signed=False)  # noqa: RUF009 (frozen, immutable)
    shift_frac_bits: int = 0
    shift_rounding: Rounding = Rounding.TRN
    acc_bits: int = 32
    overflow: Overflow = Overflow.WRAP
    weight_axis: int | None = None

    def __post_init__(self) -> None:
        check_int("n_codebooks", self.n_codebooks, 1, MAX_CODEBOOKS)
        check_int("bits", self.bits, 2, 8)
        if not isinstance(self.act, FixedFormat):
            raise TypeError(f"act must be a FixedFormat, got {self.act!r}")
        check_int("shift_frac_bits", self.shift_frac_bits, 0, 62)
        if not isinstance(self.shift_rounding, Rounding) or self.shift_rounding not in (
            Rounding.TRN,
            Rounding.RND,
        ):
            raise ValueError(
                f"shift_rounding must be Rounding.TRN or Rounding.RND, got {self.shift_rounding!r}"
            )
        check_int("acc_bits", self.acc_bits, 2, 62)
        if not isinstance(self.overflow, Overflow):
            raise TypeError(f"overflow must be an Overflow, got {self.overflow!r}")
        if self.weight_axis not in (None, 0):
            raise ValueError(f"weight_axis must be None or 0, got {self.weight_axis!r}")

    @property
    def max_shift(self) -> int:
        """S = 2**(bits-1) - 1 + N - 2, the largest shift the shift unit makes."""
        return (1 << (self.bits - 1)) - 1 + self.n_codebooks - 2

    def hardware_desc(self) -> HardwareDesc:
        """Describe the hardware of this datapath to the cost models (SPEC §7)."""
        return shift_desc(self)

    @property
    def out_format(self) -> FixedFormat:
        """The accumulator's format: signed, ``acc_bits`` wide, ``fa + f`` fractional bits."""
        return FixedFormat(self.acc_bits, self.act.frac_bits + self.shift_frac_bits, signed=True)

    def truncation_bound(self, code: ShiftCode) -> NDArray[np.float64]:
        """Worst-case truncation error of each output channel, in output LSBs (SPEC §6).

        A nonzero index selecting shift ``s`` contributes the exact term ``±r / 2**s``
        (``r = x << f``) in :func:`~shiftsim.verify.simulate`'s dequantized reference and
        ``±xs[s]`` in hardware. ``r`` is a multiple of ``2**f``, so for ``s <= f`` the shift
        is exact; for ``s > f`` TRN (floor) errs by less than 1 LSB, at most ``1 - 2**(f-s)``,
        and RND (half up) by at most 1/2. Hence, whenever no accumulator update overflowed::

            |y_raw - ref_dequant / LSB| <= sum over the channel's nonzero indices with s > f
                                           of (1 - 2**(f - s))  (TRN)  or  1/2  (RND)

        The bound is reached: with TRN every term can sit just below its next integer.

        Parameters
        ----------
        code : ShiftCode
            The weight code; ``index`` of shape ``(Co, ...) + (N,)``.

        Returns
        -------
        ndarray of float64, shape ``(Co,)``
        """
        index = np.asarray(code.index, dtype=np.int64)
        n = np.arange(1, index.shape[-1] + 1)
        shift = np.abs(index) + n - 2
        f = self.shift_frac_bits
        inexact = (index != 0) & (shift > f)
        if self.shift_rounding == Rounding.RND:
            per_term = np.where(inexact, 0.5, 0.0)
        else:
            per_term = np.where(inexact, 1.0 - np.ldexp(1.0, np.minimum(f - shift, 0)), 0.0)
        return per_term.reshape(index.shape[0], -1).sum(axis=1)

    # ------------------------------------------------------------------ float -> codes

    def prepare(
        self,
        layer: Conv2d | Linear,
        w: ArrayLike,
        x: ArrayLike,
        bias: ArrayLike | None = None,
    ) -> Prepared:
        """Quantize float weights (ShiftCNN), activations (to ``act``) and bias.

        The weights get one scale ``wmax`` per tensor (or per output channel with
        ``weight_axis=0``); activations are rounded to nearest and saturated to ``act``,
        and the bias becomes accumulator units ``round(bias / (wmax * 2**-(fa+f)))``,
        saturated to ``acc_bits``; ``Prepared.clipped`` counts the values clipped.
        """
        if not isinstance(layer, (Conv2d, Linear)):
            raise TypeError(f"layer must be a Conv2d or Linear, got {type(layer).__name__}")
        w_arr = as_float_array(w, "w")
        if w_arr.shape != layer.weight_shape:
            raise ValueError(f"w must have shape {layer.weight_shape}, got {w_arr.shape}")
        x_arr = as_float_array(x, "x")
        layer.check_input_shape(x_arr.shape, "x")
        code = quantize_shiftcnn(w_arr, self.n_codebooks, self.bits, axis=self.weight_axis)
        x_raw, clipped = self.act.from_float_counted(x_arr)
        w_deq = np.asarray(code.to_float(), dtype=np.float64)
        x_deq = self.act.to_float(x_raw)
        bias_raw = None
        if bias is not None:
            b_arr = as_float_array(bias, "bias").astype(np.float64)
            if b_arr.shape != (layer.weight_shape[0],):
                raise ValueError(
                    f"bias must have shape {(layer.weight_shape[0],)}, got {b_arr.shape}"
                )
            scale = np.asarray(code.scale, dtype=np.float64)
            lsb = np.where(scale > 0, scale, 1.0) * self.out_format.lsb
            acc = FixedFormat(self.acc_bits, 0, signed=True)
            bias_raw, bias_clipped = acc.from_float_counted(b_arr / lsb)
            clipped += bias_clipped
        code = replace(code, index=immutable(code.index))  # immutable: runs keep what they
        # derive from it (shiftsim.datapath.weight_cache)
        return Prepared(
            code=code, x_in=x_raw, w_deq=w_deq, x_deq=x_deq, bias_raw=bias_raw, clipped=clipped
        )

    # ------------------------------------------------------------------ validation

    def check(
        self, layer: Conv2d | Linear, code: Any, x: Any, bias_raw: ArrayLike | None
    ) -> ShiftOperands:
        """Validate ``run``'s arguments; return them as NCHW int64 arrays.

        Raises
        ------
        TypeError
            If ``code`` is not a ShiftCode, or ``x``/``bias_raw``/indices are not integers.
        ValueError
            If shapes, codebook count, index width, index values, raw activations (outside
            ``act``), bias (outside the accumulator) or ``x << shift_frac_bits`` (beyond what
            int64 arithmetic holds) are wrong.
        """
        if not isinstance(code, ShiftCode):
            raise TypeError(f"code must be a ShiftCode, got {type(code).__name__}")
        if code.n_codebooks != self.n_codebooks or code.bits != self.bits:
            raise ValueError(
                f"code has n_codebooks={code.n_codebooks}, bits={code.bits}; the datapath "
                f"expects n_codebooks={self.n_codebooks}, bits={self.bits}"
            )
        store = weight_store(code, (code.index,), ("shift", layer, self))
        if "weights" not in store:  # validated once per immutable code (every run otherwise)
            index = np.asarray(code.index)
            want = (*layer.weight_shape, self.n_codebooks)
            if index.shape != want:
                raise ValueError(f"code.index must have shape {want}, got {index.shape}")
            if index.dtype.kind not in "iu":
                raise TypeError(f"code.index must be an integer array, got dtype {index.dtype}")
            half = (1 << (self.bits - 1)) - 1
            if index.size and (index.min() < -half or index.max() > half):
                bad = index[(index < -half) | (index > half)].flat[0]
                raise ValueError(f"code.index holds {int(bad)}, outside [{-half}, {half}]")
            store["weights"] = ShiftWeights(np.asarray(layer.to_nchw(index), dtype=np.int8))
        weights: ShiftWeights = store["weights"]
        scale = self._check_scale(layer, code)
        x_arr = np.asarray(x)
        layer.check_input_shape(x_arr.shape)
        x_raw = self.act.check_raw(x_arr, "x_raw")
        n_out = layer.weight_shape[0]
        bias = None
        if bias_raw is not None:
            b_arr = np.asarray(bias_raw)
            if b_arr.shape != (n_out,):
                raise ValueError(f"bias_raw must have shape ({n_out},), got {b_arr.shape}")
            bias = FixedFormat(self.acc_bits, 0, signed=True).check_raw(b_arr, "bias_raw")
        x_max = max(-int(x_raw.min()), int(x_raw.max())) if x_raw.size else 0  # max |x|
        cg = layer.as_conv().channels_per_group
        worst = (x_max << self.shift_frac_bits) * cg + (1 << (self.acc_bits - 1))
        if worst > INT64_MAX:
            raise ValueError(
                f"shift_frac_bits={self.shift_frac_bits} makes |x << f| * (C/groups) "
                f"= {worst - (1 << (self.acc_bits - 1))} plus the accumulator overflow int64"
            )
        return ShiftOperands(
            index=weights.index,
            x_raw=np.asarray(layer.to_nchw(x_raw), dtype=np.int64),
            bias_raw=bias,
            scale=scale,
            code=code,
            weights=weights,
        )

    def _check_scale(self, layer: Conv2d | Linear, code: ShiftCode) -> float | NDArray[np.float64]:
        scale = np.asarray(code.scale, dtype=np.float64)
        if code.axis not in (None, 0):
            raise ValueError(f"code.axis must be None or 0 (output channels), got {code.axis!r}")
        n_out = layer.weight_shape[0]
        if scale.ndim == 0:
            result: float | NDArray[np.float64] = float(scale)
        elif scale.shape == (n_out,):
            result = scale
        else:
            raise ValueError(f"code.scale must have shape () or ({n_out},), got {scale.shape}")
        if not np.all(np.isfinite(scale)):
            raise ValueError(f"code.scale must be finite, got {scale!r}")
        return result

    # ------------------------------------------------------------------ models

    def _counts(self, layer: Conv2d | Linear, ops: ShiftOperands, overflows: int) -> Counts:
        conv = layer.as_conv()
        b, c, h, w = ops.x_raw.shape
        ho, wo = conv.output_hw(h, w)
        kh, kw = conv.kernel_size
        s = self.max_shift
        selects = b * conv.out_channels * ho * wo * self.n_codebooks * kh * kw
        selects *= conv.channels_per_group
        return Counts(
            shift_ops=b * c * h * w * s,
            negations=b * c * h * w * (s + 1),
            selects=selects,
            zero_selects=b * ho * wo * self._weights(ops).n_zero,
            adds=selects,
            acc_updates=b * conv.out_channels * ho * wo * self.n_codebooks * kh * kw,
            overflows=overflows,
        )

    @staticmethod
    def _weights(ops: ShiftOperands) -> ShiftWeights:
        return ops.weights if ops.weights is not None else ShiftWeights(ops.index)

    def _golden_s_per_mac(self) -> float:
        return 1.5e-6 * self.n_codebooks  # one selection and add per codebook

    def run_golden(
        self, layer: Conv2d | Linear, operands: ShiftOperands, progress: Progress | None = None
    ) -> LayerResult:
        """The golden model (:func:`shiftsim.reference.golden.shift_add_golden`)."""
        from shiftsim.reference.golden import shift_add_golden

        conv = layer.as_conv()
        y, counts = shift_add_golden(
            conv,
            operands.index,
            operands.x_raw,
            bits=self.bits,
            shift_frac_bits=self.shift_frac_bits,
            shift_rounding=self.shift_rounding,
            acc_bits=self.acc_bits,
            overflow=self.overflow,
            bias_raw=operands.bias_raw,
            progress=progress,
        )
        return self._layer_result(
            layer, np.asarray(y, dtype=np.int64), operands.scale, Counts(**counts)
        )

    def run_functional(self, layer: Conv2d | Linear, operands: ShiftOperands) -> LayerResult:
        """The numba kernels of :mod:`shiftsim.kernels.shift_add`."""
        conv = layer.as_conv()
        x = operands.x_raw
        if isinstance(layer, Linear):  # a 1x1 conv: fold the batch into the width
            x = np.ascontiguousarray(x.reshape(x.shape[0], x.shape[1]).T)[None, :, None, :]
        y, overflows = shift_add_conv(
            conv,
            self._weights(operands),
            x,
            operands.bias_raw,
            max_shift=self.max_shift,
            shift_frac_bits=self.shift_frac_bits,
            rnd=self.shift_rounding == Rounding.RND,
            acc_bits=self.acc_bits,
            sat=self.overflow == Overflow.SAT,
        )
        if isinstance(layer, Linear):
            y = np.ascontiguousarray(y[0, :, 0, :].T)
        return LayerResult(
            y_raw=y,
            out_format=self.out_format,
            scale=operands.scale,
            counts=self._counts(layer, operands, overflows),
        )


class ShiftWeights:
    """What the functional run derives from the weight indices alone.

    Built once per immutable weight code and kept with it (:mod:`shiftsim.datapath.weight_cache`);
    the step-major layout of the checked adders is built on first use.

    Parameters
    ----------
    index : ndarray of int8, shape (Co, C/groups, Kh, Kw, N)
        The validated indices, NCHW.
    """

    def __init__(self, index: NDArray[np.int8]) -> None:
        self.index = index
        n_co = index.shape[0]
        #: each channel's indices flattened in (c, kh, kw, n) order (a writable copy: the
        #: kernels then see the same array type for every code, compiled once)
        self.flat = index.reshape(n_co, -1).copy()
        #: nonzero indices (terms) per output channel
        self.nnz = np.count_nonzero(self.flat, axis=1).astype(np.int64)
        #: zero indices of the whole layer
        self.n_zero = int(index.size - self.nnz.sum())
        self._steps: NDArray[np.int8] | None = None

    def step_major(self) -> NDArray[np.int8]:
        """Each channel's indices flattened step-major, ``(n, kh, kw, c)`` (a writable copy)."""
        if self._steps is None:
            n_co = self.index.shape[0]
            self._steps = np.array(self.index.transpose(0, 4, 2, 3, 1).reshape(n_co, -1))
        return self._steps


def partial_group(dtype: type[np.signedinteger[Any]], x_max: int) -> int:
    """Terms per partial sum kept in ``dtype``: the largest ``g`` that cannot overflow it.

    A term lies in ``[-(x_max + 1), x_max]`` (``x_max = max|xs|``; the short-row adders add
    ``v ^ -1 = -v - 1`` for a negative term), so ``g`` terms are exact in a ``k``-bit register
    when ``g * (x_max + 1) <= 2**(k-1)`` (then also ``g * x_max <= 2**(k-1) - 1``):
    ``g = 2**(k-1) // (x_max + 1)``, at least 1 whenever ``x_max < 2**(k-1)``, and at most
    ``2**(k-1) - 1`` (fewer terms per partial sum are always exact, and the count itself must fit
    the kernels' int64 arguments: all-zero inputs would otherwise ask for ``2**63`` terms).

    Raises
    ------
    ValueError
        If ``x_max`` is negative or a single term does not fit ``dtype`` (``g`` would be 0 and
        the adders could make no progress).
    """
    half = int(np.iinfo(dtype).max) + 1
    if not 0 <= x_max < half:
        raise ValueError(f"x_max must be in [0, {half}) for {np.dtype(dtype).name}, got {x_max}")
    return min(half // (x_max + 1), half - 1)


@functools.lru_cache(maxsize=256)
def _term_offsets(
    shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    hq1: int,
    wq: int,
    chan_stride: int,
    plane_stride: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Shift-buffer offset of each weight position for index magnitude 0 (read-only arrays).

    Index ``j`` of codebook ``n`` (1-based) reads plane ``|j| + n - 2``: ``|j| * plane_stride``
    is added to these. Positions flattened ``(c, kh, kw, n)`` (the unchecked adders), and
    step-major ``(n, kh, kw, c)`` (the step adders). ``shape`` is ``(C/groups, Kh, Kw, N)``.
    """
    cg, kh_n, kw_n, n_cb = shape
    (sh, sw), (dh, dw) = stride, dilation
    ti, tj = np.arange(kh_n)[:, None] * dh, np.arange(kw_n)[None, :] * dw
    tap_offset = ((ti % sh * sw + tj % sw) * hq1 + ti // sh) * wq + tj // sw  # (Kh, Kw)
    n1 = np.arange(n_cb)
    offset = (
        np.arange(cg)[:, None, None, None] * chan_stride
        + tap_offset[None, :, :, None]
        + (n1 - 1)[None, None, None, :] * plane_stride  # shift |j| + n - 2, n = n1 + 1
    )
    flat = offset.reshape(-1)
    steps = np.ascontiguousarray(offset.transpose(3, 1, 2, 0).reshape(-1))
    flat.flags.writeable = False
    steps.flags.writeable = False
    return flat, steps


def shift_add_conv(
    conv: Conv2d,
    weights: ShiftWeights,
    x: NDArray[np.int64],
    bias: NDArray[np.int64] | None,
    *,
    max_shift: int,
    shift_frac_bits: int,
    rnd: bool,
    acc_bits: int,
    sat: bool,
) -> tuple[NDArray[np.int64], int]:
    """Drive the kernels for one validated convolution; return ``y_raw`` and the overflows.

    Output channels whose worst case ``|bias| + (nonzero terms) * max|xs|`` fits the
    accumulator cannot overflow in any order: they take the unchecked kernel (int32
    accumulation when the worst case fits it). The others take the checked kernel.
    """
    if conv.kernel_size == (1, 1) and conv.padding == (0, 0) and conv.stride != (1, 1):
        # a strided 1x1 convolution reads only every sh-th row and sw-th column: the same
        # convolution at stride 1 on those inputs (a quarter of the shift buffer at stride 2)
        x = np.ascontiguousarray(x[:, :, :: conv.stride[0], :: conv.stride[1]])
        conv = Conv2d(conv.in_channels, conv.out_channels, 1, groups=conv.groups)
    n_batch, n_chan, h, w = x.shape
    co_n, cg, kh_n, kw_n, n_cb = weights.index.shape
    sh, sw = conv.stride
    pad_h, pad_w = conv.padding
    dh, dw = conv.dilation
    ho, wo = conv.output_hw(h, w)
    hq1 = -(-(h + 2 * pad_h) // sh) + 1  # one spare row for the wide reads of the last row
    wq = -(-(w + 2 * pad_w) // sw)
    x_max = (max(-int(x.min()), int(x.max())) if x.size else 0) << shift_frac_bits  # max |x|
    bias_arr = np.zeros(co_n, np.int64) if bias is None else bias

    # Which channels the worst-case bound proves overflow-free: first with every index counted
    # (no pass over the indices), then, if that fails, with the nonzero ones only.
    bias_max = int(np.abs(bias_arr).max()) if co_n else 0
    coarse = bias_max + weights.flat.shape[1] * x_max
    if coarse < (1 << (acc_bits - 1)):
        safe = np.ones(co_n, dtype=bool)
        fast_max = coarse
    else:
        worst = [abs(b) + t * x_max for b, t in zip(bias_arr.tolist(), weights.nnz.tolist())]
        safe = np.array([v < (1 << (acc_bits - 1)) for v in worst], dtype=bool)
        fast_max = max((v for v, ok in zip(worst, safe) if ok), default=0)
    # Narrow arithmetic (int16 shift buffer, int32 sums) when the bounds allow it, else int64
    # throughout: two specializations of each kernel.
    narrow = x_max < (1 << 15) and cg * x_max < (1 << 31) and fast_max < (1 << 31)
    buf_dtype = np.int16 if narrow else np.int64
    sum_proto = np.zeros(1, np.int32 if narrow else np.int64)  # accumulator and adder tree
    n_planes = max_shift + 1
    chan_stride = sh * sw * hq1 * wq
    plane_stride = n_chan * chan_stride
    ti, tj = np.arange(kh_n)[:, None] * dh, np.arange(kw_n)[None, :] * dw
    phase_used = np.zeros((sh, sw), dtype=np.bool_)
    phase_used[ti % sh, tj % sw] = True
    # batch items per kernel launch: their buffers side by side, within _BATCH_BYTES
    item_stride = n_planes * plane_stride
    per_launch = int(
        max(1, min(n_batch, _BATCH_BYTES // max(1, item_stride * buf_dtype().itemsize)))
    )
    # the adders' scratch rows first (kernels' ROW_BASE), then the planes, then zeros: spare
    # lanes for the wide reads past the last row, and the short path's rows for index 0
    tail = 2 * _k.ROW + max(_SHORT_LANES, _k.ROW)
    size = _k.ROW_BASE + per_launch * item_stride + tail
    if phase_used.all():
        wbuf = np.empty(size, dtype=buf_dtype)
        wbuf[-tail:] = 0
    else:
        wbuf = np.zeros(size, dtype=buf_dtype)
    buf = wbuf[_k.ROW_BASE :]
    term_offset, step_offset = _term_offsets(
        (cg, kh_n, kw_n, n_cb), (sh, sw), (dh, dw), hq1, wq, chan_stride, plane_stride
    )
    flat_index = weights.flat

    group = partial_group(buf_dtype, x_max)
    tile_rows = int(min(ho, max(1, _TILE_LANES // wq)))
    n_tiles = -(-ho // tile_rows)
    fast = np.flatnonzero(safe).astype(np.int64)
    checked = np.flatnonzero(~safe).astype(np.int64)
    geometry = (co_n // conv.groups, cg, chan_stride, plane_stride, tile_rows, ho, wo, wq)
    y = np.empty((n_batch, co_n, ho, wo), dtype=np.int64)
    counts = np.zeros(per_launch * len(checked) * n_tiles, np.int64)
    # the fixed-width adders: a scratch row per thread, 32-bit row offsets
    slots = _k.scratch_slots_suffice() and wbuf.size < (1 << 32)
    short = slots and tile_rows * wq <= _SHORT_LANES
    # checked channels: the fixed-width step adders on short rows and on steps of a few terms
    # (summed and fitted in one pass); each step summed whole-row on long rows of many terms
    steps = slots and (short or cg <= _k.FEW_TERMS)
    n_steps = n_cb * kh_n * kw_n
    if len(checked) and steps:  # step-major (n, kh, kw, c): a step's terms side by side
        step_index = weights.step_major()
        lane_valid = (np.arange(tile_rows * wq) % wq < wo).astype(np.int64)

    for b in range(0, n_batch, per_launch):
        n_items = min(per_launch, n_batch - b)
        _k.shift_unit(
            x, b, n_items, item_stride, shift_frac_bits, max_shift, rnd, pad_h, pad_w, sh, sw,
            hq1, wq, phase_used, sum_proto, buf,
        )  # fmt: skip
        if len(fast):
            _k.adder_array_fast(
                wbuf, flat_index, term_offset, fast, bias_arr, *geometry, group, sum_proto, y, b,
                n_items, item_stride, short, per_launch * item_stride,
            )  # fmt: skip
        if len(checked) and steps:  # the fixed-width adders, step by step
            _k.adder_array_steps(
                wbuf, step_index, step_offset, n_steps, checked, bias_arr, *geometry, group,
                sum_proto, acc_bits, sat, y, b, n_items, item_stride, per_launch * item_stride,
                lane_valid, counts,
            )  # fmt: skip
        elif len(checked):  # each step summed whole-row
            n1 = np.arange(n_cb)
            term_step = np.broadcast_to(  # the step (n * Kh + kh) * Kw + kw of each position
                (n1[None, None, :] * kh_n + np.arange(kh_n)[:, None, None]) * kw_n
                + np.arange(kw_n)[None, :, None],
                (cg, kh_n, kw_n, n_cb),
            ).reshape(-1)
            _k.adder_array_checked(
                buf, flat_index, term_offset, term_step, n_steps, checked, bias_arr,
                *geometry, group, sum_proto, acc_bits, sat, y, b, n_items, item_stride, counts,
            )  # fmt: skip
    return y, int(counts.sum())
