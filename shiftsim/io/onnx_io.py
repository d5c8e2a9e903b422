"""Read an ONNX model into a :class:`~shiftsim.network.Network` (needs the ``onnx`` package).

The reader walks the graph in order and hands every node to the converter registered for its
ONNX domain and op type (:func:`converter`; the standard ones are in
:mod:`shiftsim.io.onnx_ops`). Before anything is converted, every node is checked: a model
with operators no converter handles raises one ``ValueError`` listing **every** unsupported op
type with its domain and the nodes that use it. A node of a non-default domain (onnxruntime's
``com.microsoft.nchwc``, ...) is never read as the default-domain op of the same name.

*Quantized models* (QDQ and QOperator from onnxruntime's quantiser, QONNX ``Quant`` /
``BipolarQuant`` and QCDQ from Brevitas) are read as their float graph: weights dequantized
as onnxruntime does, quantize/dequantize pairs removed, ``QLinear*`` operators replaced by
their float operators (:func:`shiftsim.io.onnx_quant.dequantize_onnx`, which also returns
the integers, scales and zero points).

*Constants.* Initializers, ``Constant`` nodes and every node whose inputs are all constants
(``Shape`` of a tensor of static shape included: shapes are known, the batch taken as the
graph's, or 1 when it is left open) are folded with onnx's reference implementation; the
converters see their values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shiftsim.network import Network, Node
from shiftsim.network.node import OPS, onnx_class

__all__ = ["CONVERTERS", "OnnxBuilder", "converter", "read_onnx", "supported_ops"]

#: ``(domain, op_type) -> converter``; ``""`` is the default ONNX domain.
CONVERTERS: dict[tuple[str, str], Callable[[OnnxBuilder, Any], None]] = {}

_DEFAULT_DOMAINS = ("", "ai.onnx")


def converter(*op_types: str, domain: str = "") -> Callable[[Any], Any]:
    """Decorator registering ``fn(builder, node)`` as the converter of ``op_types`` in ``domain``.

    Examples
    --------
    >>> @converter("MyRelu", domain="com.example")
    ... def _my_relu(b, node):
    ...     b.add(node, Node(name=b.unique(node), op="relu", inputs=(b.src(node, node.input[0]),)))
    >>> ("com.example", "MyRelu") in CONVERTERS
    True
    >>> del CONVERTERS[("com.example", "MyRelu")]
    """

    def wrap(fn: Callable[[OnnxBuilder, Any], None]) -> Callable[[OnnxBuilder, Any], None]:
        for op in op_types:
            CONVERTERS[(domain, op)] = fn
        return fn

    return wrap


def converter_of(domain: str, op_type: str) -> Callable[[OnnxBuilder, Any], None] | None:
    """The converter of ``op_type`` in ``domain``, or None.

    A registered converter, else the direct reading of an operator class that lists ``op_type``
    in its ``onnx_types`` (default domain only).
    """
    _load_converters()
    fn = CONVERTERS.get((domain, op_type))
    if fn is None and domain == "" and onnx_class(op_type) is not None:
        return _direct
    return fn


def _direct(b: OnnxBuilder, node: Any) -> None:
    """Read a node as the operator class that declares its op type: inputs and attributes."""
    cls = onnx_class(node.op_type)
    assert cls is not None
    fields = {f.name for f in dataclasses.fields(cls)} - {"name", "inputs"}
    extra = sorted(set(attrs(node)) - fields)
    if extra:
        raise b.fail(node, f"attributes {extra} are not supported")
    srcs = tuple(b.src(node, t) for t in node.input if t)
    b.make(node, cls.op, inputs=srcs, **attrs(node))


def supported_ops() -> list[str]:
    """The op types read: those with a converter and the quantized ones.

    ``domain:op`` outside the default domain; quantized operators are turned into float ones
    first (:func:`shiftsim.io.onnx_quant.dequantize_onnx`).
    """
    from shiftsim.io.onnx_quant import QUANT_OPS

    _load_converters()
    direct = {("", t) for cls in OPS.values() for t in cls.onnx_types}
    ops = set(CONVERTERS) | set(QUANT_OPS) | direct
    return sorted(op if d == "" else f"{d}:{op}" for d, op in ops)


def _load_converters() -> None:
    import shiftsim.io.onnx_ops  # noqa: F401  (registers the standard converters)


def attrs(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values (bytes decoded to str)."""
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _domain(node: Any) -> str:
    return "" if node.domain in _DEFAULT_DOMAINS else str(node.domain)


class OnnxBuilder:
    """The state of a conversion: constants, shapes, the nodes built so far.

    Attributes
    ----------
    label : str
        The file name, for messages.
    consts : dict of str to ndarray
        Constant tensors (original dtypes).
    shapes : dict of str to tuple of int
        Static shapes of the computed tensors (batch included).
    producer : dict of str to str
        ONNX tensor -> name of the node computing it (``""`` is the network input).
    nodes : list of Node
    """

    def __init__(self, label: str, batch: int) -> None:
        self.label = label
        self.batch = batch
        self.consts: dict[str, NDArray[Any]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.producer: dict[str, str] = {}
        self.nodes: list[Node] = []
        self.uses: dict[str, int] = {}
        self.literal: set[str] = set()
        self.open_batch = False
        self.opset = 17  # constants given in the file, not folded
        self.node_shapes: dict[str, tuple[int, ...]] = {}
        self._names: set[str] = set()

    # ---------------------------------------------------------------- messages
    def fail(self, node: Any, problem: str) -> ValueError:
        """A ValueError naming the file, the node and its op type."""
        name = node.name or node.op_type
        return ValueError(f"{self.label}: node {name!r} ({node.op_type}): {problem}")

    # ---------------------------------------------------------------- tensors
    def src(self, node: Any, tensor: str) -> str:
        """Our node computing ``tensor``."""
        if tensor not in self.producer:
            if tensor in self.consts:
                raise self.fail(node, f"input {tensor!r} is a constant where a tensor is expected")
            raise self.fail(node, f"input {tensor!r} is neither a graph input nor computed")
        return self.producer[tensor]

    def shape(self, node: Any, tensor: str) -> tuple[int, ...]:
        """Static shape of a computed tensor."""
        self.src(node, tensor)
        return self.shapes[tensor]

    def is_const(self, tensor: str) -> bool:
        """Whether ``tensor`` is a constant (an empty name, an optional input, is not)."""
        return bool(tensor) and tensor in self.consts

    def const(self, node: Any, tensor: str, what: str) -> NDArray[np.float64]:
        """A constant input as float64."""
        if not self.is_const(tensor):
            raise self.fail(node, f"{what} must be a constant initializer")
        return np.asarray(self.consts[tensor], dtype=np.float64)

    def const_ints(self, node: Any, tensor: str, what: str) -> list[int]:
        """A constant input as a list of Python ints."""
        if not self.is_const(tensor):
            raise self.fail(node, f"{what} must be a constant")
        return [int(v) for v in np.asarray(self.consts[tensor]).ravel()]

    def optional(self, node: Any, i: int) -> str:
        """Name of input ``i``, ``""`` when absent."""
        return node.input[i] if len(node.input) > i else ""

    # ---------------------------------------------------------------- nodes
    def unique(self, node: Any, suffix: str = "") -> str:
        """A fresh node name from the ONNX node's."""
        base = (node.name or f"{node.op_type.lower()}{len(self.nodes)}") + suffix
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        return name

    def add(self, onnx_node: Any, ours: Node, output: int = 0) -> str:
        """Append ``ours`` as the node computing output ``output`` of ``onnx_node``."""
        ins = [self.node_shapes[s] for s in ours.inputs]
        try:
            shape = tuple(int(v) for v in ours.infer_shape(ins))
        except (ValueError, TypeError) as exc:
            raise self.fail(onnx_node, str(exc)) from None
        self.nodes.append(ours)
        self._names.add(ours.name)
        tensor = onnx_node.output[output]
        self.producer[tensor] = ours.name
        self.shapes[tensor] = shape
        self.node_shapes[ours.name] = shape
        return ours.name

    def make(self, onnx_node: Any, op: str, output: int = 0, **kw: Any) -> str:
        """Build our node ``op`` from keyword arguments and :meth:`add` it."""
        name = kw.pop("name", None) or self.unique(onnx_node)
        try:
            ours = Node(name=name, op=op, **kw)  # type: ignore[abstract, call-arg]
        except (ValueError, TypeError) as exc:
            raise self.fail(onnx_node, str(exc)) from None
        return self.add(onnx_node, ours, output)

    def alias(self, node: Any, tensor: str, output: int = 0) -> None:
        """Output ``output`` of ``node`` is the tensor ``tensor`` (Identity, Dropout)."""
        if self.is_const(tensor):
            self.consts[node.output[output]] = self.consts[tensor]
            return
        self.producer[node.output[output]] = self.src(node, tensor)
        self.shapes[node.output[output]] = self.shapes[tensor]

    def replace(self, index: int, ours: Node) -> None:
        """Replace node ``index`` (same name) after folding something into it."""
        self.nodes[index] = ours

    def sole_layer(self, node: Any, tensor: str) -> int:
        """Index of the layer with weights computing ``tensor`` if nothing else reads it."""
        src = self.src(node, tensor)
        if self.uses.get(tensor, 0) != 1:
            return -1
        for i, n in enumerate(self.nodes):
            if n.name == src and n.op == "conv":
                return i
        return -1


def _fold(b: OnnxBuilder, node: Any) -> bool:
    """Evaluate a node whose inputs are all constants (or a Shape of a static tensor)."""
    if _domain(node) != "":
        return False
    if node.op_type == "Constant":
        from onnx import numpy_helper

        a = attrs(node)
        if "value" in a:
            b.consts[node.output[0]] = numpy_helper.to_array(a["value"])
            return True
        for key in ("value_ints", "value_int", "value_floats", "value_float"):
            if key in a:
                kind = np.int64 if "int" in key else np.float32
                b.consts[node.output[0]] = np.asarray(a[key], dtype=kind)
                return True
        return False
    if node.op_type == "Shape" and node.input[0] in b.shapes:
        shape = np.asarray(b.shapes[node.input[0]], dtype=np.int64)
        a = attrs(node)
        start, end = a.get("start", 0), a.get("end", None)
        b.consts[node.output[0]] = shape[start:end]
        return True
    if node.op_type == "Size" and node.input[0] in b.shapes:
        b.consts[node.output[0]] = np.asarray(int(np.prod(b.shapes[node.input[0]])), np.int64)
        return True
    if not node.input or not all(t == "" or t in b.consts for t in node.input):
        return False
    from onnx.reference import ReferenceEvaluator

    feeds = {t: b.consts[t] for t in node.input if t}
    try:
        outs = ReferenceEvaluator(node).run(None, feeds)
    except Exception as exc:  # the reference raises many kinds
        raise b.fail(node, f"cannot fold this constant computation: {exc}") from None
    for name, value in zip(node.output, outs):
        b.consts[name] = np.asarray(value)
    return True


def _live(graph: Any) -> list[Any]:
    """The nodes the graph's outputs depend on, in order (exporters leave dead ones)."""
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(graph.node):
        if any(t in needed for t in node.output):
            live.append(node)
            needed.update(t for t in node.input if t)
    return live[::-1]


def _unsupported(nodes: list[Any], consts: set[str], shaped: set[str]) -> list[str]:
    """Every op type (with its domain) no converter handles, with the nodes using it."""
    known = set(consts)
    bad: dict[tuple[str, str], list[str]] = {}
    for node in nodes:
        dom = _domain(node)
        ins = [t for t in node.input if t]
        foldable = dom == "" and (
            node.op_type == "Constant"
            or (node.op_type in ("Shape", "Size") and ins and ins[0] in shaped)
            or (ins and all(t in known for t in ins))
        )
        if foldable:
            known.update(node.output)
            continue
        shaped.update(node.output)
        if converter_of(dom, node.op_type) is None:
            bad.setdefault((dom, node.op_type), []).append(node.name or "?")
    out = []
    for (dom, op), names in sorted(bad.items()):
        where = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        out.append(f"{op} (domain {dom or 'ai.onnx'!r}, {len(names)} nodes: {where})")
    return out


def read_onnx(path: str | Path) -> Network:
    """Read an ONNX model file.

    Parameters
    ----------
    path : str or Path
        An ONNX model with one input of static shape apart from the batch.

    Returns
    -------
    Network
        Float weights; BatchNormalization folded into the layer before it where exact.

    Raises
    ------
    ValueError
        Unreadable file, dynamic input shape, unsupported operators (all listed at once) or
        options.
    ImportError
        Without the ``onnx`` package.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("reading ONNX models needs onnx: pip install 'shiftsim[onnx]'") from None
    _load_converters()
    label = str(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ValueError(f"{label}: cannot read ONNX model: {exc}") from None
    from shiftsim.io.onnx_quant import dequantize_onnx, is_quantized

    if is_quantized(model):  # QDQ, QOperator or QONNX: read its float graph
        model = dequantize_onnx(model, label=label).float_model
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    if len(inputs) != 1:
        raise ValueError(f"{label}: expected one graph input, got {[i.name for i in inputs]}")
    dims = [
        d.dim_value if d.HasField("dim_value") else 0 for d in inputs[0].type.tensor_type.shape.dim
    ]
    if len(dims) < 2 or min(dims[1:], default=0) < 1:
        raise ValueError(
            f"{label}: the input must have a static shape apart from the batch, got dims {dims}"
        )
    nodes = _live(graph)
    unsupported = _unsupported(nodes, init_names, {inputs[0].name})
    if unsupported:
        raise ValueError(
            f"{label}: {len(unsupported)} unsupported operator types: "
            + "; ".join(unsupported)
            + f" (supported: {', '.join(supported_ops())})"
        )
    b = OnnxBuilder(label, dims[0] if dims[0] >= 1 else 1)
    for t in graph.initializer:
        b.consts[t.name] = numpy_helper.to_array(t)
    b.producer[inputs[0].name] = ""
    b.shapes[inputs[0].name] = (b.batch, *dims[1:])
    b.node_shapes[""] = (b.batch, *dims[1:])
    b.literal = set(init_names) | {n.output[0] for n in nodes if n.op_type == "Constant"}
    b.open_batch = dims[0] < 1
    b.opset = next((int(o.version) for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), 17)
    for node in nodes:
        for t in node.input:
            b.uses[t] = b.uses.get(t, 0) + 1
    for node in nodes:
        if _fold(b, node):
            continue
        convert = converter_of(_domain(node), node.op_type)
        assert convert is not None  # _unsupported checked every node
        convert(b, node)
    outputs = [o.name for o in graph.output]
    if not b.nodes or len(outputs) != 1 or b.producer.get(outputs[0]) != b.nodes[-1].name:
        raise ValueError(f"{label}: the graph output must be the last node's, got {outputs}")
    return Network(b.nodes, input_shape=tuple(dims[1:]), name=Path(label).stem)
