"""Quantized ONNX models in: a float graph plus the integers and scales of every tensor.

Three ways of writing a quantized network in ONNX are read (needs the ``onnx`` package):

* **QDQ** (onnxruntime's quantiser, Brevitas' QCDQ export): float operators between
  ``QuantizeLinear`` / ``DequantizeLinear`` pairs (QCDQ puts a ``Clip`` on the integers
  between them, narrowing the range); weights and biases are integer initializers read
  through ``DequantizeLinear``.
* **QOperator** (onnxruntime's quantiser): integer operators ``QLinearConv``,
  ``QLinearMatMul``, ``QGemm``, ``QLinearAdd``, ``QLinearMul``, ``QLinearGlobalAveragePool``,
  ``QLinearAveragePool``, ``QLinearConcat``, ``QLinearSigmoid``, ``QLinearLeakyRelu``,
  ``QLinearSoftmax``, with ``QuantizeLinear`` at the input and ``DequantizeLinear`` at the
  output; MaxPool, Flatten, Reshape, ... run on the integers directly.
* **QONNX** (Brevitas' ``export_qonnx``): ``Quant`` (``scale``, ``zeropt``, ``bitwidth``;
  attributes ``signed``, ``narrow``, ``rounding_mode``) and ``BipolarQuant`` on float tensors.

:func:`dequantize_onnx` turns such a model into a plain float ONNX model — weights
dequantized, ``QLinear*`` operators replaced by their float operators, quantize/dequantize
pairs removed — that the float importer reads, together with a :class:`QuantizedModel`
holding every tensor's :class:`QuantParams` and every weight's integers. Where onnxruntime's
quantiser dropped a ReLU or ReLU6 after a convolution, matrix product, add or batch
normalization (the output's range, starting at the real value 0, clamps instead), the float
graph gets it back: a range ``[0, 6]`` becomes ``Clip(0, 6)``, any other range from 0 a
``Relu`` (a ReLU6 whose calibrated range ends below 6 therefore reads as a ReLU; the two agree
on every value the quantized model represents). Otherwise the float
graph is the source model with the dequantized weights (checked on the test fixtures: equal
outputs in onnxruntime).

:class:`QuantizedLayer` runs one quantized convolution or matrix product on the
:class:`~shiftsim.datapath.mac.FixedMacDatapath` with the file's own integers: raw activations
``x_q - x_zero_point`` (one more bit, signed), raw weights ``w_q - w_zero_point``, the int32
bias as the accumulator's initial value, a 32-bit accumulator; then onnxruntime's
requantisation (:func:`requantize`). The result is bit-exact with onnxruntime's
``QLinearConv`` / ``QLinearMatMul`` / ``QGemm`` (and with the fused convolution onnxruntime
makes of a QDQ ``DequantizeLinear -> Conv -> QuantizeLinear`` group).

Notes
-----
Affine quantisation (ONNX ``QuantizeLinear``): ``q = saturate(round(x / scale) + zero_point)``
with round half to even; ``DequantizeLinear``: ``x = (q - zero_point) * scale``, computed in
float32 as onnxruntime does. QONNX's ``Quant`` with ``rounding_mode="ROUND"`` is the same
(half to even); ``narrow`` drops the most negative code of a signed range (the lowest of an
unsigned one); ``BipolarQuant`` gives ``+scale`` for ``x >= 0`` and ``-scale`` below.

Requantisation (onnxruntime's MLAS, for QLinearConv, QLinearMatMul and QGemm): with
``m = float32(x_scale * w_scale / y_scale)`` (per output channel when ``w_scale`` is),
``q = clamp(rint(float32(acc) * m), qmin - zp, qmax - zp) + zp``, products and the int-to-float
conversion rounded to float32 and ``rint`` rounding half to even.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.datapath.mac import FixedMacDatapath, MacCode
from shiftsim.formats import FixedFormat, Overflow
from shiftsim.layers import Conv2d, Linear

__all__ = [
    "QUANT_OPS",
    "QuantParams",
    "QuantizedLayer",
    "QuantizedModel",
    "QuantizedWeight",
    "dequantize_onnx",
    "is_quantized",
    "requantize",
]

_MS = "com.microsoft"
_QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas")

QUANT_OPS = (
    ("", "QuantizeLinear"),
    ("", "DequantizeLinear"),
    ("", "QLinearConv"),
    ("", "QLinearMatMul"),
    (_MS, "QGemm"),
    (_MS, "QLinearAdd"),
    (_MS, "QLinearMul"),
    (_MS, "QLinearGlobalAveragePool"),
    (_MS, "QLinearAveragePool"),
    (_MS, "QLinearConcat"),
    (_MS, "QLinearSigmoid"),
    (_MS, "QLinearLeakyRelu"),
    (_MS, "QLinearSoftmax"),
    *((d, "Quant") for d in _QONNX_DOMAINS),
    *((d, "BipolarQuant") for d in _QONNX_DOMAINS),
)
"""``(domain, op_type)`` of the quantized operators :func:`dequantize_onnx` reads."""

_INT_RANGES = {
    np.dtype(np.uint8): (8, False),
    np.dtype(np.int8): (8, True),
    np.dtype(np.uint16): (16, False),
    np.dtype(np.int16): (16, True),
    np.dtype(np.int32): (32, True),
}


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
        bits, _ = _range_bits(lo, hi, True)
        return FixedFormat(max(bits, 2), 0, signed=True)


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """Integer weights of one initializer: ``raw`` are the codes ``q`` as stored."""

    raw: NDArray[np.int64]
    params: QuantParams


@dataclass(frozen=True, eq=False)
class QuantizedLayer:
    """One quantized convolution or matrix product with the file's integers.

    Attributes
    ----------
    node : str
        Name of its node in the float model.
    layer : Conv2d or Linear
        Geometry (a MatMul or Gemm is a Linear; its weight is stored ``(out, in)``).
    x, y : QuantParams
        Input and output quantisation (``y`` None when the output stays float).
    weight : QuantizedWeight
        Weight codes in ``layer.weight_shape``.
    bias_raw : ndarray of int64 or None
        Bias in accumulator units (``x.scale * weight.scale``).
    """

    node: str
    layer: Conv2d | Linear
    x: QuantParams
    weight: QuantizedWeight
    bias_raw: NDArray[np.int64] | None
    y: QuantParams | None

    def datapath(self, acc_bits: int = 32) -> FixedMacDatapath:
        """The MAC datapath that holds this layer's integers exactly (WRAP, like int32)."""
        return FixedMacDatapath(
            weight=self.weight.params.raw_format,
            act=self.x.raw_format,
            acc_bits=acc_bits,
            overflow=Overflow.WRAP,
        )

    def multiplier(self) -> NDArray[np.float32]:
        """The float32 requantisation factor ``x_scale * w_scale / y_scale`` (onnxruntime's)."""
        if self.y is None:
            raise ValueError(f"layer {self.node!r} has a float output: no requantisation")
        xs = np.float32(self.x.scale.reshape(()))
        ws = self.weight.params.scale.astype(np.float32).ravel()
        ys = np.float32(self.y.scale.reshape(()))
        return (xs * ws / ys).astype(np.float32)

    def run_mac(
        self, x_q: ArrayLike, *, level: str = "functional"
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Run on the MAC datapath; return the accumulators and the requantised codes.

        Parameters
        ----------
        x_q : array_like of int
            Input codes (the stored integers, zero point included), NCHW or (B, features).
        level : {"functional", "golden", "cycle"}
            Datapath level.

        Returns
        -------
        acc, q : ndarray of int64
            ``acc`` the accumulators (``sum (w_q - w_zp)(x_q - x_zp) + bias``), ``q`` the
            output codes (:func:`requantize`), or ``acc`` again for a float output.
        """
        x = np.asarray(x_q)
        if x.dtype.kind not in "iu":
            raise TypeError(f"x_q must hold integers, got dtype {x.dtype}")
        x = x.astype(np.int64)
        if x.size and (x.min() < self.x.lo or x.max() > self.x.hi):
            raise ValueError(
                f"x_q must lie in [{self.x.lo}, {self.x.hi}], got {x.min()}..{x.max()}"
            )
        w = self.weight.raw - _broadcast_zp(self.weight.params, self.weight.raw.ndim)
        x_raw = x - int(self.x.zero_point.reshape(-1)[0])
        res = self.datapath().run(
            self.layer, MacCode(raw=w, scale=1.0), x_raw, self.bias_raw, level=level
        )
        if self.y is None:
            return res.y_raw, res.y_raw
        return res.y_raw, requantize(res.y_raw, self.multiplier(), self.y)


def _broadcast_zp(p: QuantParams, ndim: int) -> NDArray[np.int64]:
    zp = p.zero_point
    if zp.ndim == 0 or zp.size == 1:
        return zp.reshape(())
    shape = [1] * ndim
    shape[0] = -1  # weight zero points are per output channel
    return zp.reshape(shape)


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


@dataclass(eq=False)
class QuantizedModel:
    """The outcome of :func:`dequantize_onnx`.

    Attributes
    ----------
    float_model : onnx.ModelProto
        The float graph (plain ONNX operators).
    kind : str
        ``"qdq"``, ``"qoperator"``, ``"qonnx"`` or ``"float"`` (nothing quantized).
    activations : dict of str to QuantParams
        Quantisation of float-graph tensors (activations).
    weights : dict of str to QuantizedWeight
        Integer codes of float-graph initializers.
    layers : dict of str to QuantizedLayer
        Per Conv / Gemm / MatMul node of the float graph whose input, weight (and output) are
        quantized.
    """

    float_model: Any
    kind: str
    activations: dict[str, QuantParams] = field(default_factory=dict)
    weights: dict[str, QuantizedWeight] = field(default_factory=dict)
    layers: dict[str, QuantizedLayer] = field(default_factory=dict)


def is_quantized(model: Any) -> bool:
    """Whether ``model`` (an onnx.ModelProto) holds any of :data:`QUANT_OPS`."""
    ops = set(QUANT_OPS)
    return any(
        (n.domain if n.domain != "ai.onnx" else "", n.op_type) in ops for n in model.graph.node
    )


class _Rewriter:
    """Walks the quantized graph in order and emits the float graph."""

    def __init__(self, model: Any, label: str) -> None:
        from onnx import numpy_helper

        self.label = label
        g = model.graph
        self.consts: dict[str, NDArray[Any]] = {
            t.name: numpy_helper.to_array(t) for t in g.initializer
        }
        self.alias: dict[str, str] = {}
        self.qview: dict[str, QuantParams] = {}  # integer tensor -> its quantisation
        self.nodes: list[Any] = []
        self.new_consts: dict[str, NDArray[Any]] = {}
        self.out = QuantizedModel(float_model=None, kind="float")
        self.producer: dict[str, Any] = {}
        self.kinds: set[str] = set()

    # ------------------------------------------------------------ helpers
    def fail(self, node: Any, problem: str) -> ValueError:
        return ValueError(
            f"{self.label}: node {node.name or node.op_type!r} ({node.op_type}): {problem}"
        )

    def name(self, t: str) -> str:
        while t in self.alias:
            t = self.alias[t]
        return t

    def const(self, node: Any, t: str, what: str) -> NDArray[Any]:
        t = self.name(t)
        if t in self.consts:
            return self.consts[t]
        if t in self.new_consts:
            return self.new_consts[t]
        raise self.fail(node, f"{what} ({t!r}) must be a constant")

    def is_const(self, t: str) -> bool:
        t = self.name(t)
        return t in self.consts or t in self.new_consts

    def params(self, node: Any, s: str, zp: str | None, *, axis: int | None = None) -> QuantParams:
        scale = self.const(node, s, "scale").astype(np.float64)
        if zp is None or zp == "":
            zero = np.zeros((), np.int64)
            bits, signed = 8, False  # ONNX's default zero point is uint8
        else:
            z = self.const(node, zp, "zero point")
            if z.dtype not in _INT_RANGES:
                raise self.fail(node, f"zero point of dtype {z.dtype} is not supported")
            bits, signed = _INT_RANGES[z.dtype]
            zero = z.astype(np.int64)
        return QuantParams(
            scale=scale,
            zero_point=zero,
            bits=bits,
            signed=signed,
            axis=axis if scale.ndim == 1 and scale.size > 1 else None,
        )

    def emit(self, op: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any) -> Any:
        from onnx import helper

        node = helper.make_node(op, inputs, outputs, name=name, **attrs)
        self.nodes.append(node)
        for o in outputs:
            self.producer[o] = node
        return node

    def add_const(self, name: str, value: NDArray[Any]) -> str:
        self.new_consts[name] = value
        return name

    def weight(
        self, node: Any, q: str, s: str, zp: str | None, axis: int, tag: str
    ) -> tuple[str, QuantizedWeight]:
        """A constant integer weight read through scale and zero point: its float initializer."""
        raw = self.const(node, q, "weight").astype(np.int64)
        p = self.params(node, s, zp, axis=axis)
        if p.axis is not None:
            p = QuantParams(
                scale=p.scale, zero_point=p.zero_point, bits=p.bits, signed=p.signed,
                axis=p.axis % raw.ndim,
            )  # fmt: skip
        name = self.add_const(tag, p.dequantize(raw))
        qw = QuantizedWeight(raw=raw, params=p)
        self.out.weights[name] = qw
        return name, qw

    def bias(self, node: Any, t: str, xp: QuantParams, wp: QuantParams, tag: str) -> str:
        """An int32 bias in units ``x_scale * w_scale``: its float initializer."""
        b = self.const(node, t, "bias").astype(np.int64)
        s = np.float32(xp.scale.reshape(-1)[0]) * wp.scale.astype(np.float32).reshape(-1)
        p = QuantParams(
            scale=s.astype(np.float64),
            zero_point=np.zeros((), np.int64),
            bits=32,
            signed=True,
            axis=0 if s.size > 1 else None,
        )
        name = self.add_const(tag, (b.astype(np.float32) * s).astype(np.float32))
        self.out.weights[name] = QuantizedWeight(raw=b, params=p)
        return name

    def quantized_output(self, node: Any, float_out: str, out: str, p: QuantParams) -> None:
        """``out`` carries ``float_out`` quantized by ``p``; restore an activation it absorbed.

        onnxruntime's quantiser drops the ReLU (or ReLU6 ``Clip``) after a convolution, matrix
        product, add or batch normalization and lets the output's range do the clamping; such
        a range starts at the real value 0. After those producers, a range ``[0, 6]`` becomes
        ``Clip(0, 6)`` and any other range from 0 a ``Relu``.
        """
        self.out.activations[float_out] = p
        prod = self.producer.get(float_out)
        if p.clamps_at_zero and prod is not None and prod.op_type in _ABSORBS_ACTIVATION:
            act = f"{float_out}_relu"
            top = float(p.scale.reshape(-1)[0]) * (p.hi - int(p.zero_point.reshape(-1)[0]))
            name = f"{node.name or node.op_type}_relu"
            if p.scale.size == 1 and abs(top - 6.0) <= 6.0 * 1e-6:
                lo = self.add_const(f"{act}_min", np.array(0.0, np.float32))
                hi = self.add_const(f"{act}_max", np.array(6.0, np.float32))
                self.emit("Clip", [float_out, lo, hi], [act], name)
            else:
                self.emit("Relu", [float_out], [act], name)
            self.out.activations[act] = p
            self.alias[out] = act
        elif out != float_out:
            self.alias[out] = float_out
        self.qview[out] = p

    # ------------------------------------------------------------ operators
    def quantize_linear(self, node: Any) -> None:
        x, out = node.input[0], node.output[0]
        axis = _attr(node, "axis", 1)
        p = self.params(
            node, node.input[1], node.input[2] if len(node.input) > 2 else None, axis=axis
        )
        if self.is_const(x):
            self.new_consts[out] = p.quantize(self.const(node, x, "input"))
            self.qview[out] = p
            return
        self.quantized_output(node, self.name(x), out, p)

    def clip_int(self, node: Any) -> bool:
        """A ``Clip`` on quantized integers (QCDQ) narrows the range; False for a float Clip."""
        src = node.input[0]
        if src not in self.qview:
            return False
        p = self.qview[src]
        lo = (
            int(self.const(node, node.input[1], "min"))
            if len(node.input) > 1 and node.input[1]
            else p.lo
        )
        hi = (
            int(self.const(node, node.input[2], "max"))
            if len(node.input) > 2 and node.input[2]
            else p.hi
        )
        bits, narrow = _range_bits(lo, hi, p.signed)
        narrowed = QuantParams(
            scale=p.scale, zero_point=p.zero_point, bits=min(bits, p.bits), signed=p.signed,
            narrow=narrow, axis=p.axis, qmin=lo, qmax=hi,
        )  # fmt: skip
        out = node.output[0]
        self.qview[out] = narrowed
        if self.is_const(src):
            self.new_consts[out] = np.clip(self.const(node, src, "input"), lo, hi)
        else:
            self.alias[out] = self.name(src)
            self.out.activations[self.name(src)] = narrowed
        return True

    def dequantize_linear(self, node: Any) -> None:
        q, out = node.input[0], node.output[0]
        axis = _attr(node, "axis", 1)
        if self.is_const(q):
            raw = self.const(node, q, "input")
            p = self.params(
                node, node.input[1], node.input[2] if len(node.input) > 2 else None, axis=axis
            )
            if q in self.qview:  # a Clip narrowed it
                v = self.qview[q]
                p = QuantParams(
                    scale=p.scale, zero_point=p.zero_point, bits=v.bits, signed=p.signed,
                    narrow=v.narrow, axis=p.axis, qmin=v.qmin, qmax=v.qmax,
                )  # fmt: skip
            if p.axis is not None:
                p = QuantParams(
                    scale=p.scale, zero_point=p.zero_point, bits=p.bits, signed=p.signed,
                    narrow=p.narrow, axis=p.axis % max(raw.ndim, 1), qmin=p.qmin, qmax=p.qmax,
                )  # fmt: skip
            self.new_consts[out] = p.dequantize(raw)
            self.out.weights[out] = QuantizedWeight(raw=raw.astype(np.int64), params=p)
            return
        self.alias[out] = self.name(q)

    def qonnx_quant(self, node: Any) -> None:
        x, out = node.input[0], node.output[0]
        if node.op_type == "BipolarQuant":
            scale = self.const(node, node.input[1], "scale").astype(np.float64)
            p = QuantParams(
                scale=scale, zero_point=np.zeros((), np.int64), bits=1, signed=True, bipolar=True
            )
        else:
            scale = self.const(node, node.input[1], "scale").astype(np.float64)
            zp = self.const(node, node.input[2], "zeropt").astype(np.float64)
            bits = self.const(node, node.input[3], "bitwidth").astype(np.float64)
            if np.any(zp != np.rint(zp)) or bits.size != 1 or float(bits) != int(float(bits)):
                raise self.fail(node, "only integer zero points and bit widths are supported")
            mode = _attr(node, "rounding_mode", b"ROUND")
            mode = mode.decode() if isinstance(mode, bytes) else str(mode)
            if mode != "ROUND":
                raise self.fail(node, f"rounding_mode {mode!r} is not supported (only ROUND)")
            axis = None
            if scale.size > 1:
                axis = int(np.argmax(scale.shape))
                scale, zp = scale.reshape(-1), np.broadcast_to(zp, scale.shape).reshape(-1)
            else:
                scale, zp = scale.reshape(()), zp.reshape(())
            p = QuantParams(
                scale=scale, zero_point=zp.astype(np.int64), bits=int(float(bits)),
                signed=bool(_attr(node, "signed", 1)), narrow=bool(_attr(node, "narrow", 0)),
                axis=axis,
            )  # fmt: skip
        if self.is_const(x):
            raw = p.quantize(self.const(node, x, "input"))
            self.new_consts[out] = p.dequantize(raw)
            self.out.weights[out] = QuantizedWeight(raw=raw, params=p)
            return
        if p.bipolar:
            raise self.fail(
                node, "BipolarQuant on activations (binarized activations) is not supported"
            )
        self.quantized_output(node, self.name(x), out, p)

    def qlinear_conv(self, node: Any) -> None:
        i = list(node.input)
        x = self.name(i[0])
        xp = self.params(node, i[1], i[2])
        self.out.activations.setdefault(x, xp)  # an integer graph input has no QuantizeLinear
        wname, qw = self.weight(node, i[3], i[4], i[5], 0, f"{node.output[0]}_weight")
        yp = self.params(node, i[6], i[7])
        inputs = [x, wname]
        if len(i) > 8 and i[8]:
            inputs.append(self.bias(node, i[8], xp, qw.params, f"{node.output[0]}_bias"))
        attrs = {a.name: _attr(node, a.name) for a in node.attribute}
        conv_out = f"{node.output[0]}_float"
        self.emit("Conv", inputs, [conv_out], node.name or conv_out, **attrs)
        self.quantized_output(node, conv_out, node.output[0], yp)

    def qlinear_matmul(self, node: Any) -> None:
        i = list(node.input)
        a = self.name(i[0])
        self.out.activations.setdefault(a, self.params(node, i[1], i[2]))
        wname, _ = self.weight(node, i[3], i[4], i[5], 1, f"{node.output[0]}_weight")
        yp = self.params(node, i[6], i[7])
        mm_out = f"{node.output[0]}_float"
        self.emit("MatMul", [a, wname], [mm_out], node.name or mm_out)
        self.quantized_output(node, mm_out, node.output[0], yp)

    def qgemm(self, node: Any) -> None:
        i = list(node.input) + [""] * (9 - len(node.input))
        a = self.name(i[0])
        ap = self.params(node, i[1], i[2])
        self.out.activations.setdefault(a, ap)
        trans_b = int(_attr(node, "transB", 0))
        wname, qw = self.weight(
            node, i[3], i[4], i[5], 0 if trans_b else 1, f"{node.output[0]}_weight"
        )
        inputs = [a, wname]
        if i[6]:
            inputs.append(self.bias(node, i[6], ap, qw.params, f"{node.output[0]}_bias"))
        attrs = {k: _attr(node, k) for k in ("alpha", "transA", "transB") if _has(node, k)}
        if i[7]:
            g_out = f"{node.output[0]}_float"
            self.emit("Gemm", inputs, [g_out], node.name or g_out, **attrs)
            self.quantized_output(node, g_out, node.output[0], self.params(node, i[7], i[8]))
        else:
            self.emit("Gemm", inputs, [node.output[0]], node.name or node.output[0], **attrs)

    def qlinear_elementwise(
        self, node: Any, float_op: str, data: list[int], y: tuple[int, int]
    ) -> None:
        i = list(node.input)
        for k in data:
            self.out.activations.setdefault(self.name(i[k]), self.params(node, i[k + 1], i[k + 2]))
        attrs = {a.name: _attr(node, a.name) for a in node.attribute if a.name != "channels_last"}
        if _attr(node, "channels_last", 0):
            raise self.fail(node, "channels_last layout is not supported")
        out = f"{node.output[0]}_float"
        self.emit(float_op, [self.name(i[k]) for k in data], [out], node.name or out, **attrs)
        self.quantized_output(node, out, node.output[0], self.params(node, i[y[0]], i[y[1]]))

    def qlinear_concat(self, node: Any) -> None:
        i = list(node.input)
        yp = self.params(node, i[0], i[1])
        data = [self.name(i[k]) for k in range(2, len(i), 3)]
        out = f"{node.output[0]}_float"
        self.emit("Concat", data, [out], node.name or out, axis=_attr(node, "axis"))
        self.quantized_output(node, out, node.output[0], yp)

    def passthrough(self, node: Any) -> None:
        """Any other operator, on the float tensors its inputs stand for."""
        from onnx import helper

        new = helper.make_node(
            node.op_type,
            [self.name(t) if t else "" for t in node.input],
            list(node.output),
            name=node.name,
            domain=node.domain,
        )
        new.attribute.extend(node.attribute)
        self.nodes.append(new)
        for o in node.output:
            self.producer[o] = new
        # order- and layout-only operators keep their input's quantisation
        if node.op_type in _KEEPS_QUANT and node.input and node.input[0] in self.qview:
            p = self.qview[node.input[0]]
            for o in node.output:
                self.qview[o] = p
                self.out.activations[o] = p

    def visit(self, node: Any) -> None:
        dom = node.domain if node.domain != "ai.onnx" else ""
        op = node.op_type
        if dom == "" and op == "Constant":
            from onnx import numpy_helper

            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is not None:
                self.consts[node.output[0]] = numpy_helper.to_array(value.t)
                return
            self.passthrough(node)
            return
        if dom == "" and op == "QuantizeLinear":
            self.quantize_linear(node)
        elif dom == "" and op == "DequantizeLinear":
            self.dequantize_linear(node)
        elif dom == "" and op == "Clip" and self.clip_int(node):
            return
        elif dom in _QONNX_DOMAINS and op in ("Quant", "BipolarQuant"):
            self.kinds.add("qonnx")
            self.qonnx_quant(node)
        elif dom == "" and op == "QLinearConv":
            self.kinds.add("qoperator")
            self.qlinear_conv(node)
        elif dom == "" and op == "QLinearMatMul":
            self.kinds.add("qoperator")
            self.qlinear_matmul(node)
        elif dom == _MS and op == "QGemm":
            self.kinds.add("qoperator")
            self.qgemm(node)
        elif dom == _MS and op in _ELEMENTWISE:
            self.kinds.add("qoperator")
            float_op, data, y = _ELEMENTWISE[op]
            self.qlinear_elementwise(node, float_op, data, y)
        elif dom == _MS and op == "QLinearConcat":
            self.kinds.add("qoperator")
            self.qlinear_concat(node)
        else:
            self.passthrough(node)


_ELEMENTWISE: dict[str, tuple[str, list[int], tuple[int, int]]] = {
    # op: (float op, positions of data inputs (each followed by scale, zero point), (y_s, y_zp))
    "QLinearAdd": ("Add", [0, 3], (6, 7)),
    "QLinearMul": ("Mul", [0, 3], (6, 7)),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", [0], (3, 4)),
    "QLinearAveragePool": ("AveragePool", [0], (3, 4)),
    "QLinearSigmoid": ("Sigmoid", [0], (3, 4)),
    "QLinearLeakyRelu": ("LeakyRelu", [0], (3, 4)),
    "QLinearSoftmax": ("Softmax", [0], (3, 4)),
}

_ABSORBS_ACTIVATION = frozenset(
    ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "BatchNormalization")
)

_KEEPS_QUANT = frozenset(
    "MaxPool Flatten Reshape Transpose Squeeze Unsqueeze Identity Slice Split Gather Pad".split()
)


def _range_bits(lo: int, hi: int, signed: bool) -> tuple[int, bool]:
    """Fewest bits whose range holds ``[lo, hi]``, and whether its lowest code is unused."""
    if not signed:
        bits = max(1, int(hi).bit_length())
        return bits, lo > 0
    bits = max(int(hi).bit_length(), int(-lo - 1).bit_length() if lo < 0 else 0) + 1
    return bits, lo > -(1 << (bits - 1))


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _has(node: Any, name: str) -> bool:
    return any(a.name == name for a in node.attribute)


def dequantize_onnx(model: Any, *, label: str = "model") -> QuantizedModel:
    """Turn a quantized ONNX model into a float model plus its quantisation.

    Parameters
    ----------
    model : onnx.ModelProto, str or Path
        A model (or its file) in QDQ, QOperator or QONNX form; a float model passes through.
    label : str, default "model"
        Names the model in error messages (the file name when a path is given).

    Returns
    -------
    QuantizedModel

    Raises
    ------
    ValueError
        A quantisation parameter that is not a constant, an unsupported zero-point type,
        rounding mode or layout, or binarized activations.
    """
    import onnx
    from onnx import helper, numpy_helper

    if isinstance(model, (str, Path)):
        label = str(model)
        try:
            model = onnx.load(str(model))
        except Exception as exc:  # onnx raises DecodeError, OSError, ...
            raise ValueError(f"{label}: cannot read ONNX model: {exc}") from None
    rw = _Rewriter(model, label)
    for node in model.graph.node:
        rw.visit(node)
    has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    kind = (
        "qonnx"
        if "qonnx" in rw.kinds
        else "qoperator"
        if "qoperator" in rw.kinds
        else "qdq"
        if has_qdq
        else "float"
    )
    rw.out.kind = kind
    g = model.graph
    used = {t for n in rw.nodes for t in n.input}
    outputs = []
    for o in g.output:
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(o)
        vi.name = rw.name(o.name)
        outputs.append(vi)
        used.add(vi.name)
    consts = {**rw.consts, **rw.new_consts}
    inits = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in consts.items() if k in used]
    inputs = [i for i in g.input if i.name not in consts]
    graph = helper.make_graph(rw.nodes, g.name or "dequantized", inputs, outputs, inits)
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    version = max([o.version for o in opsets] + [13])
    imports = [helper.make_opsetid("", version)]
    extra = {n.domain for n in rw.nodes if n.domain not in ("", "ai.onnx")}
    imports += [o for o in model.opset_import if o.domain in extra]
    rw.out.float_model = helper.make_model(graph, opset_imports=imports, producer_name="shiftsim")
    rw.out.float_model.ir_version = min(model.ir_version, 10) if model.ir_version else 8
    rw.out.layers = _layers(rw, consts)
    return rw.out


def _layers(rw: _Rewriter, consts: dict[str, NDArray[Any]]) -> dict[str, QuantizedLayer]:
    """The Conv / Gemm / MatMul nodes whose input and weight are quantized."""
    layers: dict[str, QuantizedLayer] = {}
    for node in rw.nodes:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        x, w = node.input[0], node.input[1]
        if x not in rw.out.activations or w not in rw.out.weights:
            continue
        qw = rw.out.weights[w]
        xp = rw.out.activations[x]
        if xp.axis is not None:
            continue  # per-channel activation scales do not map to one MAC input format
        out = node.output[0]
        relu = next((n for n in rw.nodes if n.op_type == "Relu" and n.input[0] == out), None)
        y = (
            rw.out.activations.get(out)
            or (relu is not None and rw.out.activations.get(relu.output[0]))
            or None
        )
        bias_raw = None
        if len(node.input) > 2 and node.input[2]:
            bq = rw.out.weights.get(node.input[2])
            if bq is None:
                continue  # a float bias: not an integer layer
            bias_raw = bq.raw.astype(np.int64).reshape(-1)
        raw = qw.raw
        if node.op_type == "Conv":
            kshape = raw.shape[2:]
            if len(kshape) != 2:
                continue
            pads = list(_attr(node, "pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:]:
                continue
            layer: Conv2d | Linear = Conv2d(
                raw.shape[1] * int(_attr(node, "group", 1)),
                raw.shape[0],
                tuple(kshape),
                stride=tuple(_attr(node, "strides", [1, 1])),
                padding=(int(pads[0]), int(pads[1])),
                dilation=tuple(_attr(node, "dilations", [1, 1])),
                groups=int(_attr(node, "group", 1)),
            )
            wq = QuantizedWeight(raw=raw, params=qw.params)
        else:
            trans_b = node.op_type == "Gemm" and int(_attr(node, "transB", 0))
            if raw.ndim != 2 or (node.op_type == "Gemm" and _attr(node, "transA", 0)):
                continue
            if node.op_type == "Gemm" and float(_attr(node, "alpha", 1.0)) != 1.0:
                continue
            mat = raw if trans_b else raw.T
            p = qw.params
            if p.axis is not None:  # per-column of (in, out) becomes per-row of (out, in)
                p = QuantParams(
                    scale=p.scale, zero_point=p.zero_point, bits=p.bits, signed=p.signed,
                    axis=0, qmin=p.qmin, qmax=p.qmax,
                )  # fmt: skip
            layer = Linear(mat.shape[1], mat.shape[0])
            wq = QuantizedWeight(raw=np.ascontiguousarray(mat), params=p)
        layers[node.name] = QuantizedLayer(
            node=node.name, layer=layer, x=xp, weight=wq, bias_raw=bias_raw, y=y or None
        )
    return layers
