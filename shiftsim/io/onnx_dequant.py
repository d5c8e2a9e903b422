"""Quantized ONNX graphs to float graphs (the rewriting behind ``dequantize_onnx``).

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

:class:`Dequantizer` turns such a graph into plain float ONNX nodes — weights dequantized,
``QLinear*`` operators replaced by their float operators, quantize/dequantize pairs removed —
and records every tensor's :class:`~shiftsim.affine.QuantParams` and every weight's integers.
Where onnxruntime's quantiser dropped a ReLU or ReLU6 after a convolution, matrix product, add
or batch normalization (the output's range, starting at the real value 0, clamps instead), the
float graph gets it back: a range ``[0, 6]`` becomes ``Clip(0, 6)``, any other range from 0 a
``Relu`` (a ReLU6 whose calibrated range ends below 6 therefore reads as a ReLU; the two agree
on every value the quantized model represents). Otherwise the float graph is the source model
with the dequantized weights (checked on the test fixtures: equal outputs in onnxruntime).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from shiftsim.affine import QuantizedWeight, QuantParams, bits_for_range

__all__ = ["QUANT_OPS", "Dequantizer", "attr", "has_attr", "is_quantized"]

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


def is_quantized(model: Any) -> bool:
    """Whether ``model`` (an onnx.ModelProto) holds any of :data:`QUANT_OPS`."""
    ops = set(QUANT_OPS)
    return any(
        (n.domain if n.domain != "ai.onnx" else "", n.op_type) in ops for n in model.graph.node
    )


class Dequantizer:
    """Walks a quantized graph in order and emits the float graph (see the module notes).

    After :meth:`visit` has seen every node, :attr:`nodes` is the float graph's node list,
    :attr:`activations` and :attr:`weights` the quantisation of its tensors and initializers.
    """

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
        self.activations: dict[str, QuantParams] = {}
        self.weights: dict[str, QuantizedWeight] = {}
        self.producer: dict[str, Any] = {}
        self.kinds: set[str] = set()

    # ------------------------------------------------------------ helpers
    def fail(self, node: Any, problem: str) -> ValueError:
        """A ValueError naming the model, the node and the problem."""
        return ValueError(
            f"{self.label}: node {node.name or node.op_type!r} ({node.op_type}): {problem}"
        )

    def name(self, t: str) -> str:
        """The float-graph tensor that ``t`` stands for."""
        while t in self.alias:
            t = self.alias[t]
        return t

    def const(self, node: Any, t: str, what: str) -> NDArray[Any]:
        """The value of constant ``t``; a ValueError naming ``what`` when it is not one."""
        t = self.name(t)
        if t in self.consts:
            return self.consts[t]
        if t in self.new_consts:
            return self.new_consts[t]
        raise self.fail(node, f"{what} ({t!r}) must be a constant")

    def is_const(self, t: str) -> bool:
        """Whether ``t`` stands for a constant."""
        t = self.name(t)
        return t in self.consts or t in self.new_consts

    def params(self, node: Any, s: str, zp: str | None, *, axis: int | None = None) -> QuantParams:
        """QuantParams from a scale and zero-point pair of constants."""
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
        """Append a float-graph node."""
        from onnx import helper

        node = helper.make_node(op, inputs, outputs, name=name, **attrs)
        self.nodes.append(node)
        for o in outputs:
            self.producer[o] = node
        return node

    def add_const(self, name: str, value: NDArray[Any]) -> str:
        """Add a float-graph initializer; return its name."""
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
        self.weights[name] = qw
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
        self.weights[name] = QuantizedWeight(raw=b, params=p)
        return name

    def quantized_output(self, node: Any, float_out: str, out: str, p: QuantParams) -> None:
        """``out`` carries ``float_out`` quantized by ``p``; restore an activation it absorbed.

        onnxruntime's quantiser drops the ReLU (or ReLU6 ``Clip``) after a convolution, matrix
        product, add or batch normalization and lets the output's range do the clamping; such
        a range starts at the real value 0. After those producers, a range ``[0, 6]`` becomes
        ``Clip(0, 6)`` and any other range from 0 a ``Relu``.
        """
        self.activations[float_out] = p
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
            self.activations[act] = p
            self.alias[out] = act
        elif out != float_out:
            self.alias[out] = float_out
        self.qview[out] = p

    # ------------------------------------------------------------ operators
    def quantize_linear(self, node: Any) -> None:
        """``QuantizeLinear``: fold it on a constant, else record the activation's quantisation."""
        x, out = node.input[0], node.output[0]
        axis = attr(node, "axis", 1)
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
        bits, narrow = bits_for_range(lo, hi, p.signed)
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
            self.activations[self.name(src)] = narrowed
        return True

    def dequantize_linear(self, node: Any) -> None:
        """``DequantizeLinear``: a float initializer from constant integers, else an alias."""
        q, out = node.input[0], node.output[0]
        axis = attr(node, "axis", 1)
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
            self.weights[out] = QuantizedWeight(raw=raw.astype(np.int64), params=p)
            return
        self.alias[out] = self.name(q)

    def qonnx_quant(self, node: Any) -> None:
        """QONNX ``Quant`` / ``BipolarQuant``: weights folded, activations recorded."""
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
            mode = attr(node, "rounding_mode", b"ROUND")
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
                signed=bool(attr(node, "signed", 1)), narrow=bool(attr(node, "narrow", 0)),
                axis=axis,
            )  # fmt: skip
        if self.is_const(x):
            raw = p.quantize(self.const(node, x, "input"))
            self.new_consts[out] = p.dequantize(raw)
            self.weights[out] = QuantizedWeight(raw=raw, params=p)
            return
        if p.bipolar:
            raise self.fail(
                node, "BipolarQuant on activations (binarized activations) is not supported"
            )
        self.quantized_output(node, self.name(x), out, p)

    def qlinear_conv(self, node: Any) -> None:
        """``QLinearConv`` becomes ``Conv`` on the dequantized weight and bias."""
        i = list(node.input)
        x = self.name(i[0])
        xp = self.params(node, i[1], i[2])
        self.activations.setdefault(x, xp)  # an integer graph input has no QuantizeLinear
        wname, qw = self.weight(node, i[3], i[4], i[5], 0, f"{node.output[0]}_weight")
        yp = self.params(node, i[6], i[7])
        inputs = [x, wname]
        if len(i) > 8 and i[8]:
            inputs.append(self.bias(node, i[8], xp, qw.params, f"{node.output[0]}_bias"))
        attrs = {a.name: attr(node, a.name) for a in node.attribute}
        conv_out = f"{node.output[0]}_float"
        self.emit("Conv", inputs, [conv_out], node.name or conv_out, **attrs)
        self.quantized_output(node, conv_out, node.output[0], yp)

    def qlinear_matmul(self, node: Any) -> None:
        """``QLinearMatMul`` becomes ``MatMul`` on the dequantized weight."""
        i = list(node.input)
        a = self.name(i[0])
        self.activations.setdefault(a, self.params(node, i[1], i[2]))
        wname, _ = self.weight(node, i[3], i[4], i[5], 1, f"{node.output[0]}_weight")
        yp = self.params(node, i[6], i[7])
        mm_out = f"{node.output[0]}_float"
        self.emit("MatMul", [a, wname], [mm_out], node.name or mm_out)
        self.quantized_output(node, mm_out, node.output[0], yp)

    def qgemm(self, node: Any) -> None:
        """``QGemm`` (com.microsoft) becomes ``Gemm``; float output when it has no y scale."""
        i = list(node.input) + [""] * (9 - len(node.input))
        a = self.name(i[0])
        ap = self.params(node, i[1], i[2])
        self.activations.setdefault(a, ap)
        trans_b = int(attr(node, "transB", 0))
        wname, qw = self.weight(
            node, i[3], i[4], i[5], 0 if trans_b else 1, f"{node.output[0]}_weight"
        )
        inputs = [a, wname]
        if i[6]:
            inputs.append(self.bias(node, i[6], ap, qw.params, f"{node.output[0]}_bias"))
        attrs = {k: attr(node, k) for k in ("alpha", "transA", "transB") if has_attr(node, k)}
        if i[7]:
            g_out = f"{node.output[0]}_float"
            self.emit("Gemm", inputs, [g_out], node.name or g_out, **attrs)
            self.quantized_output(node, g_out, node.output[0], self.params(node, i[7], i[8]))
        else:
            self.emit("Gemm", inputs, [node.output[0]], node.name or node.output[0], **attrs)

    def qlinear_elementwise(
        self, node: Any, float_op: str, data: list[int], y: tuple[int, int]
    ) -> None:
        """A ``QLinear*`` operator of :data:`_ELEMENTWISE` becomes its float operator."""
        i = list(node.input)
        for k in data:
            self.activations.setdefault(self.name(i[k]), self.params(node, i[k + 1], i[k + 2]))
        attrs = {a.name: attr(node, a.name) for a in node.attribute if a.name != "channels_last"}
        if attr(node, "channels_last", 0):
            raise self.fail(node, "channels_last layout is not supported")
        out = f"{node.output[0]}_float"
        self.emit(float_op, [self.name(i[k]) for k in data], [out], node.name or out, **attrs)
        self.quantized_output(node, out, node.output[0], self.params(node, i[y[0]], i[y[1]]))

    def qlinear_concat(self, node: Any) -> None:
        """``QLinearConcat`` becomes ``Concat``."""
        i = list(node.input)
        yp = self.params(node, i[0], i[1])
        data = [self.name(i[k]) for k in range(2, len(i), 3)]
        out = f"{node.output[0]}_float"
        self.emit("Concat", data, [out], node.name or out, axis=attr(node, "axis"))
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
                self.activations[o] = p

    def visit(self, node: Any) -> None:
        """Rewrite one node of the quantized graph."""
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


def attr(node: Any, name: str, default: Any = None) -> Any:
    """The value of attribute ``name`` of an ONNX node, or ``default``."""
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def has_attr(node: Any, name: str) -> bool:
    """Whether an ONNX node has attribute ``name``."""
    return any(a.name == name for a in node.attribute)
