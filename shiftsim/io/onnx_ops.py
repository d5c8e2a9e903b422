"""Converters of the standard ONNX operators to shiftsim nodes, one function per op type.

Each converter is registered with :func:`shiftsim.io.onnx_io.converter` and reads one ONNX
node into zero or more of our nodes (:mod:`shiftsim.network.ops`):

* Conv, ConvTranspose, Gemm, MatMul (constant weights): layers with weights; asymmetric Conv
  pads become a Pad node before the Conv.
* BatchNormalization: folded into the Conv or Gemm before it when that layer feeds only it
  (exact: ``W[o] * s[o]`` and ``(b[o] - mean[o]) * s[o] + beta[o]`` with
  ``s = gamma / sqrt(var + eps)``), an ``affine`` node anywhere else.
* Add, Sub, Mul, Div with a constant operand: a per-channel bias or scale folded into the
  layer before it (when that layer feeds only it), else an ``affine`` node; of two computed
  tensors: ``add``, ``sub``, ``mul`` (Div is refused).
* Relu, activations (Sigmoid, HardSigmoid, HardSwish, Clip, LeakyRelu, PRelu, Tanh,
  Softmax), Neg, Max, Min, Mean, Sum, Concat.
* MaxPool, AveragePool (2-D ``kernel_shape``, ``strides``, ``pads``, ``dilations``,
  ``ceil_mode``, ``count_include_pad``), GlobalAveragePool, GlobalMaxPool, ReduceMean.
* Flatten, Reshape, Squeeze, Unsqueeze (to the shape computed from the input's static shape;
  the batch axis must stay), Transpose, Split, Slice, Gather (constant indices), Pad,
  Resize and Upsample (nearest, integer factors), Identity, Dropout, Cast to a float type.

Anything else, or an option shiftsim does not model, raises ``ValueError`` naming the node.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shiftsim.io.onnx_io import OnnxBuilder, attrs, converter
from shiftsim.layers import Conv2d, Linear
from shiftsim.network.ops import Conv

__all__: list[str] = []

# ------------------------------------------------------------------------- helpers


def _x(b: OnnxBuilder, node: Any, i: int = 0) -> str:
    return b.src(node, node.input[i])


def _fit_const(b: OnnxBuilder, node: Any, c: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A constant operand as an array broadcastable to one input ``shape[1:]``."""
    c = np.asarray(c, dtype=np.float64)
    if c.ndim == len(shape):  # a leading batch axis of 1
        if c.shape[0] != 1:
            raise b.fail(node, f"a constant of shape {c.shape} varies along the batch axis")
        c = c[0]
    try:
        np.broadcast_shapes(c.shape, shape[1:])
    except ValueError:
        raise b.fail(node, f"a constant of shape {c.shape} does not fit {shape}") from None
    if np.broadcast_shapes(c.shape, shape[1:]) != tuple(shape[1:]):
        raise b.fail(node, f"a constant of shape {c.shape} would grow the input {shape}")
    return c


def _per_channel(c: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``c`` as an ``(C,)`` vector if it is constant but along the channel axis 1."""
    full = np.broadcast_to(c, shape[1:])
    n = shape[1]
    flat = full.reshape(n, -1)
    if np.all(flat == flat[:, :1]):
        return np.ascontiguousarray(flat[:, 0])
    return None


def _axis(b: OnnxBuilder, node: Any, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise b.fail(node, f"axis {axis} out of range for a {ndim}-D tensor")
    axis %= ndim
    if axis == 0:
        raise b.fail(node, "operating along the batch axis 0 is not supported")
    return axis


# ------------------------------------------------------------------------- pass-throughs


@converter("Identity", "Dropout")
def _identity(b: OnnxBuilder, node: Any) -> None:
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        raise b.fail(node, "the mask output is not supported")
    b.alias(node, node.input[0])


@converter("Cast")
def _cast(b: OnnxBuilder, node: Any) -> None:
    from onnx import TensorProto

    to = attrs(node).get("to")
    if to not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
        raise b.fail(node, f"a Cast of a computed tensor to type {to} is not supported")
    b.alias(node, node.input[0])


# ------------------------------------------------------------------------- layers


def _same_pads(
    shape: tuple[int, ...], k: list[int], s: list[int], d: list[int], mode: str
) -> list[int]:
    out = [0, 0, 0, 0]
    for i in range(2):
        n = shape[2 + i]
        total = max(0, (-(-n // s[i]) - 1) * s[i] + d[i] * (k[i] - 1) + 1 - n)
        small, big = total // 2, total - total // 2
        out[i], out[i + 2] = (small, big) if mode == "SAME_UPPER" else (big, small)
    return out


@converter("Conv")
def _conv(b: OnnxBuilder, node: Any) -> None:
    a = attrs(node)
    w = b.const(node, node.input[1], "the weight")
    if w.ndim != 4:
        raise b.fail(node, f"only 2-D convolutions are supported, weight shape {w.shape}")
    shape = b.shape(node, node.input[0])
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(shape, list(w.shape[2:]), strides, dilations, auto_pad)
    elif auto_pad in ("NOTSET", "VALID"):
        pads = list(a.get("pads", [0, 0, 0, 0]))
    else:
        raise b.fail(node, f"auto_pad={auto_pad} is not supported")
    src = _x(b, node)
    if pads[0] != pads[2] or pads[1] != pads[3]:  # an explicit Pad before a pad-free Conv
        src = b.make(
            node,
            "pad",
            name=b.unique(node, "_pad"),
            pads=((0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
            inputs=(src,),
        )
        pads = [0, 0, 0, 0]
    group = int(a.get("group", 1))
    try:
        layer = Conv2d(
            w.shape[1] * group,
            w.shape[0],
            (int(w.shape[2]), int(w.shape[3])),
            stride=(int(strides[0]), int(strides[1])),
            padding=(int(pads[0]), int(pads[1])),
            dilation=(int(dilations[0]), int(dilations[1])),
            groups=group,
        )
    except (ValueError, TypeError) as exc:
        raise b.fail(node, str(exc)) from None
    bias = b.const(node, node.input[2], "the bias") if b.optional(node, 2) else None
    b.make(node, "conv", layer=layer, weight=w, bias=bias, inputs=(src,))


@converter("ConvTranspose")
def _conv_transpose(b: OnnxBuilder, node: Any) -> None:
    a = attrs(node)
    w = b.const(node, node.input[1], "the weight")
    if w.ndim != 4:
        raise b.fail(node, f"only 2-D transposed convolutions are supported, weight {w.shape}")
    if a.get("auto_pad", "NOTSET") != "NOTSET" or "output_shape" in a:
        raise b.fail(node, "auto_pad and output_shape are not supported; give pads")
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise b.fail(node, f"asymmetric pads {pads} are not supported")
    bias = b.const(node, node.input[2], "the bias") if b.optional(node, 2) else None
    b.make(
        node,
        "conv_transpose",
        weight=w,
        bias=bias,
        stride=tuple(a.get("strides", [1, 1])),
        padding=(pads[0], pads[1]),
        dilation=tuple(a.get("dilations", [1, 1])),
        output_padding=tuple(a.get("output_padding", [0, 0])),
        groups=int(a.get("group", 1)),
        inputs=(_x(b, node),),
    )


@converter("Gemm", "MatMul")
def _gemm(b: OnnxBuilder, node: Any) -> None:
    a = attrs(node)
    if node.op_type == "Gemm" and a.get("transA", 0):
        raise b.fail(node, "transA is not supported")
    if not b.is_const(node.input[1]):
        raise b.fail(
            node,
            "the weight must be a constant initializer (a product of two "
            "computed tensors is not supported)",
        )
    w = b.const(node, node.input[1], "the weight")
    if w.ndim != 2:
        raise b.fail(node, f"the weight must be 2-D, got shape {w.shape}")
    if len(b.shape(node, node.input[0])) != 2:
        raise b.fail(
            node, f"the input must be (batch, features), got {b.shape(node, node.input[0])}"
        )
    w = w if node.op_type == "Gemm" and a.get("transB", 0) else w.T
    w = w * float(a.get("alpha", 1.0))
    bias = None
    if node.op_type == "Gemm" and b.optional(node, 2):
        c = b.const(node, node.input[2], "C") * float(a.get("beta", 1.0))
        bias = np.broadcast_to(c.reshape(-1) if c.size == w.shape[0] else c, (w.shape[0],)).copy()
    layer = Linear(w.shape[1], w.shape[0])
    b.make(node, "conv", layer=layer, weight=w, bias=bias, inputs=(_x(b, node),))


@converter("BatchNormalization")
def _batchnorm(b: OnnxBuilder, node: Any) -> None:
    a = attrs(node)
    if len(node.output) > 1 and any(node.output[1:]):
        raise b.fail(node, "training-mode outputs are not supported")
    gamma, beta, mean, var = (
        b.const(node, t, "a BatchNormalization parameter") for t in node.input[1:5]
    )
    s = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))
    x = node.input[0]
    i = b.sole_layer(node, x)
    if i >= 0:
        prev = b.nodes[i]
        assert isinstance(prev, Conv)
        w = prev.weight * s.reshape((-1,) + (1,) * (prev.weight.ndim - 1))
        bias0 = prev.bias if prev.bias is not None else np.zeros(len(s))
        bias = (bias0 - mean) * s + beta
        b.replace(
            i, Conv(name=prev.name, layer=prev.layer, weight=w, bias=bias, inputs=prev.inputs)
        )
        b.alias(node, x)
        return
    shape = b.shape(node, x)
    tail = (1,) * (len(shape) - 2)
    b.make(
        node,
        "affine",
        mul=s.reshape(-1, *tail),
        add=(beta - mean * s).reshape(-1, *tail),
        inputs=(_x(b, node),),
    )


# ------------------------------------------------------------------------- elementwise


@converter("Add", "Sub", "Mul", "Div")
def _arith(b: OnnxBuilder, node: Any) -> None:
    op = node.op_type
    x, y = node.input[0], node.input[1]
    cx, cy = b.is_const(x), b.is_const(y)
    if not cx and not cy:
        if op == "Div":
            raise b.fail(node, "dividing by a computed tensor is not supported")
        b.make(node, op.lower(), inputs=(b.src(node, x), b.src(node, y)))
        return
    tensor, const = (y, x) if cx else (x, y)
    shape = b.shape(node, tensor)
    c = _fit_const(b, node, b.const(node, const, "the constant"), shape)
    src = b.src(node, tensor)
    if op == "Add" or (op == "Sub" and not cx):
        add = c if op == "Add" else -c
        i = b.sole_layer(node, tensor)
        vec = _per_channel(add, shape)
        if i >= 0 and vec is not None:  # the bias of the layer before
            prev = b.nodes[i]
            assert isinstance(prev, Conv)
            bias0 = prev.bias if prev.bias is not None else np.zeros(len(vec))
            b.replace(
                i,
                Conv(
                    name=prev.name,
                    layer=prev.layer,
                    weight=prev.weight,
                    bias=bias0 + vec,
                    inputs=prev.inputs,
                ),
            )
            b.alias(node, tensor)
            return
        b.make(node, "affine", add=add, inputs=(src,))
    elif op == "Sub":  # c - x
        b.make(node, "affine", mul=-1.0, add=c, inputs=(src,))
    else:
        if op == "Div":
            if cx:
                raise b.fail(node, "dividing a constant by a computed tensor is not supported")
            if np.any(c == 0):
                raise b.fail(node, "division by zero")
            c = 1.0 / c
        i = b.sole_layer(node, tensor)
        vec = _per_channel(c, shape)
        if i >= 0 and vec is not None:  # scales the layer before: exact, no node
            prev = b.nodes[i]
            assert isinstance(prev, Conv)
            w = prev.weight * vec.reshape((-1,) + (1,) * (prev.weight.ndim - 1))
            bias = None if prev.bias is None else prev.bias * vec
            b.replace(
                i, Conv(name=prev.name, layer=prev.layer, weight=w, bias=bias, inputs=prev.inputs)
            )
            b.alias(node, tensor)
            return
        b.make(node, "affine", mul=c, inputs=(src,))


@converter("Max", "Min", "Mean", "Sum", "Concat")
def _nary(b: OnnxBuilder, node: Any) -> None:
    if any(b.is_const(t) for t in node.input):
        raise b.fail(node, "constant operands are not supported")
    srcs = tuple(b.src(node, t) for t in node.input)
    if node.op_type == "Concat":
        axis = _axis(b, node, int(attrs(node)["axis"]), len(b.shape(node, node.input[0])))
        b.make(node, "concat", axis=axis, inputs=srcs)
    elif node.op_type == "Sum":
        if len(srcs) == 1:
            b.alias(node, node.input[0])
        elif len(srcs) == 2:
            b.make(node, "add", inputs=srcs)
        else:
            raise b.fail(node, "Sum of more than two tensors is not supported")
    elif len(srcs) == 1:
        b.alias(node, node.input[0])
    else:
        b.make(node, node.op_type.lower(), inputs=srcs)


# Relu, Neg, Sigmoid, Tanh and HardSwish need no converter: their operator classes list the
# ONNX op type in ``onnx_types`` and are read directly (see shiftsim.network.node).


@converter("LeakyRelu")
def _leaky(b: OnnxBuilder, node: Any) -> None:
    b.make(node, "leaky_relu", alpha=float(attrs(node).get("alpha", 0.01)), inputs=(_x(b, node),))


@converter("HardSigmoid")
def _hard_sigmoid(b: OnnxBuilder, node: Any) -> None:
    a = attrs(node)
    b.make(
        node,
        "hard_sigmoid",
        alpha=float(a.get("alpha", 0.2)),
        beta=float(a.get("beta", 0.5)),
        inputs=(_x(b, node),),
    )


@converter("PRelu")
def _prelu(b: OnnxBuilder, node: Any) -> None:
    shape = b.shape(node, node.input[0])
    slope = _fit_const(b, node, b.const(node, node.input[1], "the slope"), shape)
    if slope.ndim == 1 and len(shape) > 2 and slope.size == shape[1] and slope.size > 1:
        raise b.fail(node, f"slope of shape {slope.shape} broadcasts along the last axis")
    b.make(node, "prelu", slope=slope, inputs=(_x(b, node),))


@converter("Clip")
def _clip(b: OnnxBuilder, node: Any) -> None:
    a = attrs(node)
    lo, hi = a.get("min"), a.get("max")
    if b.optional(node, 1):
        lo = float(b.const(node, node.input[1], "min"))
    if b.optional(node, 2):
        hi = float(b.const(node, node.input[2], "max"))
    b.make(node, "clip", low=lo, high=hi, inputs=(_x(b, node),))


@converter("Softmax")
def _softmax(b: OnnxBuilder, node: Any) -> None:
    ndim = len(b.shape(node, node.input[0]))
    default = -1 if b.opset >= 13 else 1
    axis = _axis(b, node, int(attrs(node).get("axis", default)), ndim)
    if b.opset < 13 and axis != ndim - 1:
        raise b.fail(node, "a Softmax before opset 13 over more than the last axis")
    b.make(node, "softmax", axis=axis, inputs=(_x(b, node),))


# ------------------------------------------------------------------------- pooling


def _ints(
    b: OnnxBuilder, node: Any, a: dict[str, Any], key: str, n: int, default: int
) -> list[int]:
    values = [int(v) for v in a.get(key, [default] * n)]
    if len(values) != n:
        raise b.fail(node, f"{key} must have {n} entries for 2-D pooling, got {values}")
    return values


@converter("MaxPool", "AveragePool")
def _pool(b: OnnxBuilder, node: Any) -> None:
    a = attrs(node)
    if "kernel_shape" not in a:
        raise b.fail(node, "kernel_shape is missing")
    k = [int(v) for v in a["kernel_shape"]]
    if len(k) != 2:
        raise b.fail(node, f"only 2-D pooling is supported, got kernel_shape {k}")
    auto_pad = a.get("auto_pad", "NOTSET")
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
    if node.op_type == "MaxPool" and a.get("storage_order", 0):
        raise b.fail(node, "storage_order is not supported")
    b.make(
        node,
        "maxpool" if node.op_type == "MaxPool" else "avgpool",
        kernel_size=(k[0], k[1]),
        stride=(strides[0], strides[1]),
        pads=(pads[0], pads[1], pads[2], pads[3]),
        dilation=(dilations[0], dilations[1]),
        ceil_mode=flags["ceil_mode"],
        count_include_pad=flags["count_include_pad"] and node.op_type == "AveragePool",
        inputs=(_x(b, node),),
    )


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(b: OnnxBuilder, node: Any) -> None:
    shape = b.shape(node, node.input[0])
    if len(shape) != 4:
        raise b.fail(node, f"only NCHW inputs are supported, got {shape}")
    if node.op_type == "GlobalAveragePool":
        b.make(node, "global_avgpool", inputs=(_x(b, node),))
    else:
        b.make(node, "maxpool", kernel_size=(shape[2], shape[3]), inputs=(_x(b, node),))


@converter("ReduceMean")
def _reduce_mean(b: OnnxBuilder, node: Any) -> None:
    a = attrs(node)
    shape = b.shape(node, node.input[0])
    if b.optional(node, 1):
        axes = b.const_ints(node, node.input[1], "axes")
    else:
        axes = [int(v) for v in a.get("axes", [])]
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            b.alias(node, node.input[0])
            return
        raise b.fail(node, "a mean over every axis (the batch included) is not supported")
    axes = sorted({_axis(b, node, v, len(shape)) for v in axes})
    b.make(
        node,
        "reduce_mean",
        axes=tuple(axes),
        keepdims=bool(a.get("keepdims", 1)),
        inputs=(_x(b, node),),
    )


# ------------------------------------------------------------------------- shapes


def _resolve(shape: tuple[int, ...], target: list[int], allowzero: bool) -> tuple[int, ...] | None:
    """ONNX Reshape: ``0`` copies (unless ``allowzero``), ``-1`` infers; None if impossible."""
    out = []
    for i, t in enumerate(target):
        if t == 0 and not allowzero:
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
    if not out or min(out) < 1 or int(np.prod(out)) != total:
        return None
    return tuple(out)


def _reshape_to(b: OnnxBuilder, node: Any, out: tuple[int, ...]) -> None:
    shape = b.shape(node, node.input[0])
    if out == tuple(shape):
        b.alias(node, node.input[0])
    elif len(out) == 2 and out[0] == shape[0]:
        b.make(node, "flatten", inputs=(_x(b, node),))
    else:
        b.make(node, "reshape", shape=out[1:], inputs=(_x(b, node),))


@converter("Reshape")
def _reshape(b: OnnxBuilder, node: Any) -> None:
    if len(node.input) < 2:
        raise b.fail(node, "the target shape input is missing")
    target = b.const_ints(node, node.input[1], "the target shape")
    allowzero = bool(attrs(node).get("allowzero", 0))
    if allowzero and 0 in target:
        raise b.fail(node, f"allowzero=1 with a 0 in the shape {target} is not supported")
    if min(target, default=0) < -1 or target.count(-1) > 1:
        raise b.fail(node, f"invalid target shape {target}")
    shape = b.shape(node, node.input[0])
    batches = [shape[0], 2] if b.open_batch and node.input[1] in b.literal else [shape[0]]
    out = None
    for n in batches:
        one = (n, *shape[1:])
        got = _resolve(one, target, allowzero)
        if got is None or got[0] != n:
            raise b.fail(
                node,
                f"shape {target} turns {one} into {got if got else 'no valid shape'}, which "
                "does not keep the batch axis",
            )
        out = got if out is None else out
    assert out is not None
    _reshape_to(b, node, out)


@converter("Flatten")
def _flatten(b: OnnxBuilder, node: Any) -> None:
    shape = b.shape(node, node.input[0])
    axis = int(attrs(node).get("axis", 1)) % max(len(shape), 1)
    if axis != 1:
        raise b.fail(node, f"only Flatten with axis=1 is supported, got axis={axis}")
    b.make(node, "flatten", inputs=(_x(b, node),))


@converter("Squeeze", "Unsqueeze")
def _squeeze(b: OnnxBuilder, node: Any) -> None:
    shape = b.shape(node, node.input[0])
    if b.optional(node, 1):
        axes = b.const_ints(node, node.input[1], "axes")
    else:
        axes = [int(v) for v in attrs(node).get("axes", [])]
    if node.op_type == "Squeeze":
        axes = [v % len(shape) for v in axes] or [i for i, n in enumerate(shape) if n == 1]
        if 0 in axes or any(shape[v] != 1 for v in axes):
            raise b.fail(node, f"cannot squeeze axes {axes} of {shape} (batch axis or size > 1)")
        out = tuple(n for i, n in enumerate(shape) if i not in axes)
    else:
        rank = len(shape) + len(axes)
        axes = [v % rank for v in axes]
        if 0 in axes:
            raise b.fail(node, "cannot insert an axis before the batch axis")
        rest = iter(shape)
        out = tuple(1 if i in axes else next(rest) for i in range(rank))
    _reshape_to(b, node, out)


@converter("Transpose")
def _transpose(b: OnnxBuilder, node: Any) -> None:
    ndim = len(b.shape(node, node.input[0]))
    perm = [int(v) for v in attrs(node).get("perm", list(range(ndim))[::-1])]
    b.make(node, "transpose", perm=tuple(perm), inputs=(_x(b, node),))


@converter("Slice")
def _slice(b: OnnxBuilder, node: Any) -> None:
    shape = b.shape(node, node.input[0])
    if b.opset >= 10:
        starts = b.const_ints(node, node.input[1], "starts")
        ends = b.const_ints(node, node.input[2], "ends")
        axes = b.const_ints(node, node.input[3], "axes") if b.optional(node, 3) else None
        steps = b.const_ints(node, node.input[4], "steps") if b.optional(node, 4) else None
    else:
        a = attrs(node)
        starts, ends = list(a["starts"]), list(a["ends"])
        axes, steps = a.get("axes"), None
    axes = list(range(len(starts))) if axes is None else [v % len(shape) for v in axes]
    steps = [1] * len(starts) if steps is None else steps
    keep = []
    for ax, s, e, st in zip(axes, starts, ends, steps):
        if ax == 0:
            if slice(s, e, st).indices(shape[0]) != (0, shape[0], 1):
                raise b.fail(node, "slicing the batch axis is not supported")
            continue
        keep.append((ax, s, e, st))
    if not keep:
        b.alias(node, node.input[0])
        return
    b.make(
        node,
        "slice",
        axes=tuple(k[0] for k in keep),
        starts=tuple(k[1] for k in keep),
        ends=tuple(k[2] for k in keep),
        steps=tuple(k[3] for k in keep),
        inputs=(_x(b, node),),
    )


@converter("Split")
def _split(b: OnnxBuilder, node: Any) -> None:
    a = attrs(node)
    shape = b.shape(node, node.input[0])
    axis = _axis(b, node, int(a.get("axis", 0)), len(shape))
    n_out = len(node.output)
    if b.optional(node, 1):
        sizes = b.const_ints(node, node.input[1], "split")
    elif "split" in a:
        sizes = [int(v) for v in a["split"]]
    else:
        size = -(-shape[axis] // n_out)
        sizes = [min(size, shape[axis] - i * size) for i in range(n_out)]
    if len(sizes) != n_out or sum(sizes) != shape[axis] or min(sizes) < 1:
        raise b.fail(node, f"split sizes {sizes} do not divide axis {axis} of {shape}")
    start = 0
    for k, size in enumerate(sizes):
        b.make(
            node,
            "slice",
            output=k,
            name=b.unique(node, f"_{k}"),
            axes=(axis,),
            starts=(start,),
            ends=(start + size,),
            inputs=(_x(b, node),),
        )
        start += size


@converter("Gather")
def _gather(b: OnnxBuilder, node: Any) -> None:
    shape = b.shape(node, node.input[0])
    axis = _axis(b, node, int(attrs(node).get("axis", 0)), len(shape))
    if not b.is_const(node.input[1]):
        raise b.fail(node, "the indices must be constant")
    idx = np.asarray(b.consts[node.input[1]]).astype(np.int64)
    b.make(node, "gather", axis=axis, indices=idx, inputs=(_x(b, node),))


@converter("Pad")
def _pad(b: OnnxBuilder, node: Any) -> None:
    a = attrs(node)
    shape = b.shape(node, node.input[0])
    if b.opset >= 11:
        pads = b.const_ints(node, node.input[1], "pads")
        value = float(b.const(node, node.input[2], "the value")) if b.optional(node, 2) else 0.0
        if b.optional(node, 3):
            raise b.fail(node, "the axes input is not supported")
    else:
        pads, value = [int(v) for v in a["pads"]], float(a.get("value", 0.0))
    mode = a.get("mode", "constant")
    n = len(shape)
    if len(pads) != 2 * n or pads[0] or pads[n] or min(pads) < 0:
        raise b.fail(node, f"pads {pads} must be non-negative and leave the batch axis alone")
    if mode == "constant" and value != 0.0:
        raise b.fail(node, f"constant padding with {value} (not 0) is not supported")
    if mode not in ("constant", "reflect", "edge"):
        raise b.fail(node, f"mode {mode!r} is not supported")
    b.make(
        node,
        "pad",
        pads=tuple((pads[i], pads[i + n]) for i in range(1, n)),
        mode=mode,
        inputs=(_x(b, node),),
    )


@converter("Resize", "Upsample")
def _resize(b: OnnxBuilder, node: Any) -> None:
    a = attrs(node)
    shape = b.shape(node, node.input[0])
    if a.get("mode", "nearest") != "nearest":
        raise b.fail(node, f"mode {a.get('mode')!r} is not supported (only nearest)")
    if a.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        raise b.fail(node, "tf_crop_and_resize is not supported")
    scales: list[float] | None = None
    if node.op_type == "Upsample":
        scales = (
            list(a["scales"]) if "scales" in a else list(b.const(node, node.input[1], "scales"))
        )
    else:
        if b.optional(node, 2) and b.consts[node.input[2]].size:
            scales = [float(v) for v in b.const(node, node.input[2], "scales")]
        elif b.optional(node, 3):
            sizes = b.const_ints(node, node.input[3], "sizes")
            scales = [s / n for s, n in zip(sizes, shape)]
    if scales is None or len(scales) != 4 or len(shape) != 4:
        raise b.fail(node, "only NCHW resizing with scales or sizes is supported")
    f = [float(v) for v in scales]
    if f[0] != 1 or f[1] != 1 or any(v != round(v) or v < 1 for v in f[2:]):
        raise b.fail(node, f"only integer upsampling of the spatial axes is supported, scales {f}")
    b.make(node, "upsample", factors=(int(f[2]), int(f[3])), inputs=(_x(b, node),))
