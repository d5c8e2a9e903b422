"""Read an ONNX model into a :class:`~shiftsim.network.Network` (needs the ``onnx`` package).

Supported operators: Conv, Gemm, MatMul (with a following Add of a constant folded as bias),
Relu, MaxPool, AveragePool, GlobalAveragePool, Add, Flatten, Reshape (only to ``(batch,
features)``: read as Flatten), BatchNormalization (folded into the Conv or Gemm before it), and
the pass-throughs Identity and Dropout. Anything else, or an option shiftsim does not model
(asymmetric Conv pads, ``auto_pad`` SAME_UPPER or SAME_LOWER, ``transA``, MaxPool's indices
output), raises ``ValueError`` naming the node.

MaxPool and AveragePool take 2-D ``kernel_shape``, ``strides`` (default 1), ``pads`` (symmetric
or not), ``dilations``, ``ceil_mode`` and, for AveragePool, ``count_include_pad``, with ONNX's
meaning (see :mod:`shiftsim.network` for the pooled size and the divisors).

Reshape's target shape is a constant (an initializer or a Constant node) of two entries, with
ONNX's meaning (``0`` copies the input's size on that axis, ``-1`` takes what is left); it must
give ``(batch, features)`` for the graph's batch size (for a batch size the graph leaves open,
for batches of 1 and 2), so ``[0, -1]``, ``[-1, features]`` and ``[1, -1]`` for a graph of
batch 1 flatten.

Folding BatchNormalization: with ``s = gamma / sqrt(var + eps)``, the weights of output
channel ``o`` become ``W[o] * s[o]`` and the bias ``(b[o] - mean[o]) * s[o] + beta[o]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shiftsim.layers import Conv2d, Linear
from shiftsim.network import Network, Node

__all__ = ["SUPPORTED_OPS", "read_onnx"]

SUPPORTED_OPS = (
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Conv",
    "Dropout",
    "Flatten",
    "Gemm",
    "GlobalAveragePool",
    "Identity",
    "MatMul",
    "MaxPool",
    "Relu",
    "Reshape",
)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Builder:
    def __init__(self, label: str, inits: dict[str, NDArray[np.float64]]) -> None:
        self.label = label
        self.inits = inits
        self.nodes: list[Node] = []
        self.producer: dict[str, str] = {}  # ONNX tensor -> our node name ("" = network input)
        self.uses: dict[str, int] = {}
        self.reshapes: list[tuple[Any, str, tuple[int, ...]]] = []  # (ONNX node, ours, shape)

    def fail(self, node: Any, problem: str) -> ValueError:
        name = node.name or node.op_type
        return ValueError(f"{self.label}: node {name!r} ({node.op_type}): {problem}")

    def src(self, node: Any, tensor: str) -> str:
        if tensor not in self.producer:
            raise self.fail(node, f"input {tensor!r} is neither a graph input nor computed")
        return self.producer[tensor]

    def unique(self, node: Any) -> str:
        base = node.name or f"{node.op_type.lower()}{len(self.nodes)}"
        name, i = base, 1
        taken = {n.name for n in self.nodes}
        while name in taken or name == "":
            name, i = f"{base}_{i}", i + 1
        return name

    def const(self, node: Any, tensor: str, what: str) -> NDArray[np.float64]:
        if tensor not in self.inits:
            raise self.fail(node, f"{what} must be a constant initializer")
        return self.inits[tensor]

    def add(self, onnx_node: Any, **kw: Any) -> str:
        name = self.unique(onnx_node)
        try:
            self.nodes.append(Node(name=name, **kw))
        except (ValueError, TypeError) as exc:
            raise self.fail(onnx_node, str(exc)) from None
        self.producer[onnx_node.output[0]] = name
        return name

    def last_layer_for(self, node: Any, tensor: str) -> int:
        """Index of the conv node producing ``tensor``, if nothing else reads it."""
        src = self.src(node, tensor)
        for i, n in enumerate(self.nodes):
            if n.name == src and n.op == "conv" and self.uses.get(tensor, 0) == 1:
                return i
        return -1


def read_onnx(path: str | Path) -> Network:
    """Read an ONNX model file.

    Parameters
    ----------
    path : str or Path
        An ONNX model with one 4-D (NCHW) or 2-D input of static shape.

    Returns
    -------
    Network
        Float weights; BatchNormalization folded.

    Raises
    ------
    ValueError
        Unreadable file, dynamic input shape, unsupported operator or option.
    ImportError
        Without the ``onnx`` package.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("reading ONNX models needs onnx: pip install 'shiftsim[onnx]'") from None
    label = str(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ValueError(f"{label}: cannot read ONNX model: {exc}") from None
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            attrs = _attrs(node)
            if attrs.get("value") is not None:
                inits[node.output[0]] = numpy_helper.to_array(attrs["value"]).astype(np.float64)
            for key in ("value_ints", "value_int", "value_floats", "value_float"):
                if key in attrs:
                    inits[node.output[0]] = np.asarray(attrs[key], dtype=np.float64)
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"{label}: expected one graph input, got {[i.name for i in inputs]}")
    dims = [
        d.dim_value if d.HasField("dim_value") else 0 for d in inputs[0].type.tensor_type.shape.dim
    ]
    if len(dims) not in (2, 4) or min(dims[1:], default=0) < 1:
        raise ValueError(
            f"{label}: the input must be NCHW or (N, features) of static size, got dims {dims}"
        )
    b = _Builder(label, inits)
    b.producer[inputs[0].name] = ""
    for node in graph.node:
        for t in node.input:
            b.uses[t] = b.uses.get(t, 0) + 1
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        _convert(b, node)
    outputs = [o.name for o in graph.output]
    if len(outputs) != 1 or b.producer.get(outputs[0]) != b.nodes[-1].name:
        raise ValueError(f"{label}: the graph output must be the last node's, got {outputs}")
    name = Path(label).stem
    net = Network(b.nodes, input_shape=tuple(dims[1:]), name=name)
    if b.reshapes:
        _check_reshapes(b, net, dims[0])
    return net


def _check_reshapes(b: _Builder, net: Network, batch: int) -> None:
    """Every Reshape must give ``(batch, features)``: resolve its shape as ONNX does."""
    names = [n.name for n in net.nodes]
    last = max(names.index(ours) for _, ours, _ in b.reshapes)
    prefix = Network(net.nodes[: last + 1], input_shape=net.input_shape, name=net.name)
    assert net.input_shape is not None
    outs = prefix.forward_float(np.zeros((1, *net.input_shape)))
    for node, ours, target in b.reshapes:
        src = net.nodes[names.index(ours)].inputs[0]  # set by the Reshape branch
        one = net.input_shape if src == "" else outs[src].shape[1:]
        for n in [batch] if batch >= 1 else [1, 2]:
            shape = (n, *one)
            want = (n, int(np.prod(one)))
            got = _resolve_reshape(shape, target)
            if got != want:
                raise b.fail(
                    node,
                    f"only a Reshape to (batch, features) is supported; shape {list(target)} "
                    f"turns {shape} into {got if got else 'no valid shape'}, not {want}",
                )


def _resolve_reshape(shape: tuple[int, ...], target: tuple[int, ...]) -> tuple[int, ...] | None:
    """ONNX Reshape (``allowzero=0``): ``0`` copies, ``-1`` infers; None if impossible."""
    out = []
    for i, t in enumerate(target):
        if t == 0:
            if i >= len(shape):
                return None
            out.append(shape[i])
        else:
            out.append(t)
    total = int(np.prod(shape))
    if out.count(-1) == 1:
        known = int(np.prod([v for v in out if v != -1]))
        if known == 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    if min(out) < 1 or int(np.prod(out)) != total:
        return None
    return tuple(out)


def _convert(b: _Builder, node: Any) -> None:
    op, a = node.op_type, _attrs(node)
    if op not in SUPPORTED_OPS:
        raise b.fail(node, f"unsupported operator; supported: {', '.join(SUPPORTED_OPS)}")
    x = node.input[0]
    if op in ("Identity", "Dropout"):
        b.producer[node.output[0]] = b.src(node, x)
        return
    if op == "Conv":
        w = b.const(node, node.input[1], "the weight")
        if w.ndim != 4:
            raise b.fail(node, f"only 2-D convolutions are supported, weight shape {w.shape}")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[0] != pads[2] or pads[1] != pads[3]:
            raise b.fail(node, f"asymmetric pads {pads} are not supported")
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise b.fail(node, "auto_pad is not supported; give explicit pads")
        group = int(a.get("group", 1))
        layer = Conv2d(
            w.shape[1] * group,
            w.shape[0],
            tuple(w.shape[2:]),
            stride=tuple(a.get("strides", [1, 1])),
            padding=(pads[0], pads[1]),
            dilation=tuple(a.get("dilations", [1, 1])),
            groups=group,
        )
        bias = b.const(node, node.input[2], "the bias") if len(node.input) > 2 else None
        b.add(node, op="conv", layer=layer, weight=w, bias=bias, inputs=(b.src(node, x),))
    elif op in ("Gemm", "MatMul"):
        if op == "Gemm" and a.get("transA", 0):
            raise b.fail(node, "transA is not supported")
        w = b.const(node, node.input[1], "the weight")
        if w.ndim != 2:
            raise b.fail(node, f"the weight must be 2-D, got shape {w.shape}")
        w = w if op == "Gemm" and a.get("transB", 0) else w.T
        w = w * float(a.get("alpha", 1.0))
        bias = None
        if op == "Gemm" and len(node.input) > 2 and node.input[2]:
            bias = np.broadcast_to(
                b.const(node, node.input[2], "C") * float(a.get("beta", 1.0)), (w.shape[0],)
            ).copy()
        linear = Linear(w.shape[1], w.shape[0])
        b.add(node, op="conv", layer=linear, weight=w, bias=bias, inputs=(b.src(node, x),))
    elif op == "BatchNormalization":
        i = b.last_layer_for(node, x)
        if i < 0:
            raise b.fail(node, "BatchNormalization is supported only right after a Conv or Gemm")
        gamma, beta, mean, var = (
            b.const(node, t, "a BatchNormalization parameter") for t in node.input[1:5]
        )
        s = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))
        prev = b.nodes[i]
        assert prev.weight is not None
        w = prev.weight * s.reshape((-1,) + (1,) * (prev.weight.ndim - 1))
        bias0 = prev.bias if prev.bias is not None else np.zeros(len(s))
        b.nodes[i] = Node(
            name=prev.name,
            op="conv",
            layer=prev.layer,
            weight=w,
            bias=(bias0 - mean) * s + beta,
            inputs=prev.inputs,
        )
        b.producer[node.output[0]] = prev.name
    elif op == "Relu":
        b.add(node, op="relu", inputs=(b.src(node, x),))
    elif op in ("MaxPool", "AveragePool"):
        _pool(b, node, a)
    elif op == "GlobalAveragePool":
        b.add(node, op="global_avgpool", inputs=(b.src(node, x),))
    elif op == "Flatten":
        if int(a.get("axis", 1)) != 1:
            raise b.fail(node, "only Flatten with axis=1 is supported")
        b.add(node, op="flatten", inputs=(b.src(node, x),))
    elif op == "Reshape":
        if len(node.input) < 2:
            raise b.fail(node, "the target shape input is missing")
        target = b.const(node, node.input[1], "the target shape")
        if target.ndim != 1 or target.size != 2 or np.any(target != np.rint(target)):
            raise b.fail(
                node, f"only a Reshape to (batch, features) is supported, got shape {target}"
            )
        shape = tuple(int(v) for v in target)
        if int(a.get("allowzero", 0)) and 0 in shape:
            raise b.fail(node, f"allowzero=1 with a 0 in the shape {list(shape)} is not supported")
        if min(shape) < -1 or shape.count(-1) > 1:
            raise b.fail(node, f"invalid target shape {list(shape)}")
        ours = b.add(node, op="flatten", inputs=(b.src(node, x),))
        b.reshapes.append((node, ours, shape))
    elif op == "Add":
        consts = [t for t in node.input if t in b.inits]
        if consts:  # bias of the layer before
            other = next(t for t in node.input if t not in b.inits)
            i = b.last_layer_for(node, other)
            if i < 0 or len(consts) != 1:
                raise b.fail(node, "adding a constant is supported only as the bias of a layer")
            prev = b.nodes[i]
            n_out = prev.layer.weight_shape[0]  # type: ignore[union-attr]
            c = b.inits[consts[0]]
            if c.size not in (1, n_out) or (c.ndim > 1 and c.shape[-1] != n_out and c.size > 1):
                raise b.fail(node, f"constant of shape {c.shape} is not a per-channel bias")
            bias0 = prev.bias if prev.bias is not None else np.zeros(n_out)
            b.nodes[i] = Node(
                name=prev.name,
                op="conv",
                layer=prev.layer,
                weight=prev.weight,
                bias=bias0 + c.reshape(-1),
                inputs=prev.inputs,
            )
            b.producer[node.output[0]] = prev.name
        else:
            b.add(node, op="add", inputs=(b.src(node, node.input[0]), b.src(node, node.input[1])))


def _ints(b: _Builder, node: Any, a: dict[str, Any], key: str, n: int, default: int) -> list[int]:
    values = [int(v) for v in a.get(key, [default] * n)]
    if len(values) != n:
        raise b.fail(node, f"{key} must have {n} entries for 2-D pooling, got {values}")
    return values


def _pool(b: _Builder, node: Any, a: dict[str, Any]) -> None:
    """MaxPool or AveragePool: validate the attributes, add the node."""
    if "kernel_shape" not in a:
        raise b.fail(node, "kernel_shape is missing")
    k = [int(v) for v in a["kernel_shape"]]
    if len(k) != 2:
        raise b.fail(node, f"only 2-D pooling is supported, got kernel_shape {k}")
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad not in ("NOTSET", "VALID"):
        raise b.fail(node, f"auto_pad={auto_pad} is not supported; give explicit pads")
    pads = _ints(b, node, a, "pads", 4, 0)
    if auto_pad == "VALID" and any(pads):
        raise b.fail(node, "pads cannot be given with auto_pad=VALID")
    strides = _ints(b, node, a, "strides", 2, 1)
    dilations = _ints(b, node, a, "dilations", 2, 1)
    for key, values, low in (
        ("kernel_shape", k, 1),
        ("strides", strides, 1),
        ("dilations", dilations, 1),
        ("pads", pads, 0),
    ):
        if min(values) < low:
            raise b.fail(node, f"{key} must be at least {low}, got {values}")
    flags = {}
    for key in ("ceil_mode", "count_include_pad"):
        value = a.get(key, 0)
        if value not in (0, 1):
            raise b.fail(node, f"{key} must be 0 or 1, got {value!r}")
        flags[key] = bool(value)
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        raise b.fail(node, "the Indices output is not supported")
    b.add(
        node,
        op="maxpool" if node.op_type == "MaxPool" else "avgpool",
        kernel_size=(k[0], k[1]),
        stride=(strides[0], strides[1]),
        pads=(pads[0], pads[1], pads[2], pads[3]),
        dilation=(dilations[0], dilations[1]),
        ceil_mode=flags["ceil_mode"],
        count_include_pad=flags["count_include_pad"] and node.op_type == "AveragePool",
        inputs=(b.src(node, node.input[0]),),
    )
