"""Quantized ONNX models in: a float graph plus the integers and scales of every tensor.

:func:`dequantize_onnx` reads a model in QDQ or QOperator form (onnxruntime's quantiser) or
in QONNX or QCDQ form (Brevitas) and returns a :class:`QuantizedModel`: a plain float ONNX model
that :func:`~shiftsim.io.onnx_io.read_onnx` reads (weights dequantized as onnxruntime does,
``QLinear*`` operators replaced by their float operators, quantize/dequantize pairs removed,
the activations the quantiser absorbed put back; see :mod:`shiftsim.io.onnx_dequant`), and
every tensor's :class:`~shiftsim.affine.QuantParams` and every weight's integers.

:class:`QuantizedLayer` runs one quantized convolution or matrix product on the
:class:`~shiftsim.datapath.mac.FixedMacDatapath` with the file's own integers: raw activations
``x_q - x_zero_point`` (one more bit when needed, signed), raw weights ``w_q - w_zero_point``,
the int32 bias as the accumulator's initial value, a 32-bit accumulator; then onnxruntime's
requantisation (:func:`~shiftsim.affine.requantize`). The result is bit-exact with
onnxruntime's ``QLinearConv`` / ``QLinearMatMul`` / ``QGemm`` (and with the fused convolution
onnxruntime makes of a QDQ ``DequantizeLinear -> Conv -> QuantizeLinear`` group).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.affine import QuantizedWeight, QuantParams, requantize
from shiftsim.datapath.mac import FixedMacDatapath, MacCode
from shiftsim.formats import Overflow
from shiftsim.io.onnx_dequant import QUANT_OPS, Dequantizer, attr, is_quantized
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
    rw = Dequantizer(model, label)
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
    float_model = helper.make_model(graph, opset_imports=imports, producer_name="shiftsim")
    float_model.ir_version = min(model.ir_version, 10) if model.ir_version else 8
    return QuantizedModel(
        float_model=float_model,
        kind=kind,
        activations=rw.activations,
        weights=rw.weights,
        layers=_layers(rw),
    )


def _layers(rw: Dequantizer) -> dict[str, QuantizedLayer]:
    """The Conv / Gemm / MatMul nodes whose input and weight are quantized."""
    layers: dict[str, QuantizedLayer] = {}
    for node in rw.nodes:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        x, w = node.input[0], node.input[1]
        if x not in rw.activations or w not in rw.weights:
            continue
        qw = rw.weights[w]
        xp = rw.activations[x]
        if xp.axis is not None:
            continue  # per-channel activation scales do not map to one MAC input format
        out = node.output[0]
        relu = next((n for n in rw.nodes if n.op_type == "Relu" and n.input[0] == out), None)
        y = (
            rw.activations.get(out)
            or (relu is not None and rw.activations.get(relu.output[0]))
            or None
        )
        bias_raw = None
        if len(node.input) > 2 and node.input[2]:
            bq = rw.weights.get(node.input[2])
            if bq is None:
                continue  # a float bias: not an integer layer
            bias_raw = bq.raw.astype(np.int64).reshape(-1)
        raw = qw.raw
        if node.op_type == "Conv":
            kshape = raw.shape[2:]
            if len(kshape) != 2:
                continue
            pads = list(attr(node, "pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:]:
                continue
            layer: Conv2d | Linear = Conv2d(
                raw.shape[1] * int(attr(node, "group", 1)),
                raw.shape[0],
                tuple(kshape),
                stride=tuple(attr(node, "strides", [1, 1])),
                padding=(int(pads[0]), int(pads[1])),
                dilation=tuple(attr(node, "dilations", [1, 1])),
                groups=int(attr(node, "group", 1)),
            )
            wq = QuantizedWeight(raw=raw, params=qw.params)
        else:
            trans_b = node.op_type == "Gemm" and int(attr(node, "transB", 0))
            if raw.ndim != 2 or (node.op_type == "Gemm" and attr(node, "transA", 0)):
                continue
            if node.op_type == "Gemm" and float(attr(node, "alpha", 1.0)) != 1.0:
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
