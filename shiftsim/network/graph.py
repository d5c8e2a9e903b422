"""The network graph: nodes in execution order, their wiring, shapes and the float model.

A :class:`Network` is an ordered list of nodes (:mod:`shiftsim.network.ops`: convolutions and
fully connected layers with their float weights, activations, pooling, shape and elementwise
operators). It comes from a SCALE-Sim topology (:meth:`Network.from_topology`), an ONNX file
(:func:`shiftsim.io.onnx_io.read_onnx`) or the built-in digits CNN
(:func:`shiftsim.models.digits.digits_network`).

Two ways to run it on a datapath:

* :meth:`Network.run` chains the nodes on real inputs, bit-accurately (see
  :mod:`shiftsim.network.runner`): every layer with weights runs on its datapath (functional,
  golden or cycle level; one datapath for all, or one per layer by name pattern) and its
  accumulator output is requantised to the next activation format in integers
  (:mod:`shiftsim.network.requant`). The result holds a per-layer table
  (:mod:`shiftsim.network.report`), the totals, and the top-1 accuracy when labels are given.
* :meth:`Network.run_layers` runs every layer with weights on its own seeded random post-ReLU
  input (a topology has no real data) and reports each layer's error against float.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.counts import Counts
from shiftsim.datapath.base import LEVELS, Datapath
from shiftsim.formats import as_float_array
from shiftsim.io.weights import read_npz
from shiftsim.layers import Conv2d
from shiftsim.network.activations import act_format, check_scaling, weight_gain
from shiftsim.network.node import Node
from shiftsim.network.ops.conv import Conv, analytic_counts, conv_float
from shiftsim.network.report import NetworkResult, finish_row, frame
from shiftsim.network.requant import Requant
from shiftsim.network.runner import DatapathMap, datapath_label, resolve_datapaths, run_network

__all__ = ["Network"]


def _check_input_shape(value: object) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise TypeError(f"input_shape must be a non-empty tuple of ints, got {value!r}")
    for v in value:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"input_shape must hold ints, got {value!r}")
        if v < 1:
            raise ValueError(f"input_shape sizes must be positive, got {value!r}")
    return tuple(int(v) for v in value)


class Network:
    """An ordered graph of operators, the layers with float weights.

    Parameters
    ----------
    nodes : sequence of Node
        In execution order; a node reads earlier nodes only.
    input_shape : tuple of int, optional
        Shape of one input without the batch axis (``(C, H, W)`` or ``(features,)``), positive
        ints that the first layers accept; None for a list of independent layers (a
        topology), which only :meth:`run_layers` runs.
    name : str, default "network"

    Examples
    --------
    >>> net = Network.from_topology("alexnet", seed=0)
    >>> len(net.conv_nodes), net.conv_nodes[0].weight.shape
    (5, (96, 3, 11, 11))
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        *,
        input_shape: tuple[int, ...] | None = None,
        name: str = "network",
    ) -> None:
        nodes = list(nodes)
        if not nodes:
            raise ValueError("nodes must not be empty")
        seen: set[str] = set()
        for node in nodes:
            if not isinstance(node, Node):
                raise TypeError(f"nodes must hold Node objects, got {type(node).__name__}")
            if node.name in seen:
                raise ValueError(f"duplicate node name {node.name!r}")
            for src in node.inputs:
                if src != "" and src not in seen:
                    raise ValueError(f"node {node.name!r} reads {src!r}, not an earlier node")
            seen.add(node.name)
        self.nodes: list[Node] = nodes
        self.input_shape = None if input_shape is None else _check_input_shape(input_shape)
        self.name = name
        self._index = {n.name: i for i, n in enumerate(nodes)}
        self.consumers: dict[str, list[str]] = {"": [], **{n.name: [] for n in nodes}}
        for i, node in enumerate(nodes):
            for src in self.sources(i):
                self.consumers[src].append(node.name)
        self._shapes: dict[str, tuple[int, ...]] | None = None
        if self.input_shape is not None:
            self._shapes = self.shapes(1)

    def __repr__(self) -> str:
        return f"Network({self.name!r}, {len(self.nodes)} nodes, input_shape={self.input_shape})"

    @property
    def conv_nodes(self) -> list[Any]:
        """The nodes with weights (Conv2d, Linear and ConvTranspose layers)."""
        return [n for n in self.nodes if n.has_weights]

    def sources(self, i: int) -> tuple[str, ...]:
        """Names of the tensors node ``i`` reads (``""`` is the network input)."""
        node = self.nodes[i]
        if node.inputs:
            return node.inputs
        return (self.nodes[i - 1].name,) if i else ("",)

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        if name not in self._index:
            raise KeyError(name)
        return self.nodes[self._index[name]]

    def shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """Every node's output shape for a batch of ``batch`` (shape inference).

        Raises
        ------
        ValueError
            The input shape does not fit a node.
        """
        if self.input_shape is None:
            raise ValueError(f"network {self.name!r} has no input_shape")
        shapes: dict[str, tuple[int, ...]] = {"": (batch, *self.input_shape)}
        for i, node in enumerate(self.nodes):
            ins = [shapes[s] for s in self.sources(i)]
            try:
                shapes[node.name] = tuple(int(v) for v in node.infer_shape(ins))
            except ValueError as exc:
                raise ValueError(
                    f"input_shape {self.input_shape} does not fit node {node.name!r} "
                    f"({node.op}, inputs {[s[1:] for s in ins]}): {exc}"
                ) from None
        return shapes

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_topology(
        cls,
        path_or_name: str | Path,
        *,
        seed: int = 0,
        weights: str | Path | None = None,
        padding: str = "none",
        depthwise: bool = True,
    ) -> Network:
        """Independent layers of a SCALE-Sim topology, with weights.

        Parameters
        ----------
        path_or_name : str or Path
            See :func:`shiftsim.io.topology.read_topology`.
        seed : int, default 0
            Seed of the He-normal weights, ``N(0, 2 / fan_in)``, ``fan_in = C/groups * Kh * Kw``,
            drawn layer by layer in file order (no bias).
        weights : str or Path, optional
            An .npz file holding each layer's weights under its name (and optionally its bias
            under ``NAME.bias``); it replaces the random weights.
        padding, depthwise
            As for ``read_topology``.
        """
        from shiftsim.io.topology import read_topology

        topo = read_topology(path_or_name, padding, depthwise=depthwise)
        rng = np.random.default_rng(seed)
        stored = _load_npz(weights) if weights is not None else None
        nodes: list[Node] = []
        for t in topo:
            shape = t.layer.weight_shape
            bias = None
            if stored is not None:
                if t.name not in stored:
                    raise ValueError(f"weights: {weights} has no array named {t.name!r}")
                w = stored[t.name]
                bias = stored.get(f"{t.name}.bias")
            else:
                fan_in = shape[1] * shape[2] * shape[3]
                w = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
            nodes.append(Conv(name=t.name, layer=t.layer, weight=w, bias=bias, input_hw=t.input_hw))
        name = str(path_or_name) if not isinstance(path_or_name, Path) else path_or_name.stem
        return cls(nodes, input_shape=None, name=name)

    def save_weights(self, path: str | Path) -> None:
        """Write every layer's weights (and biases, as ``NAME.bias``) to an .npz file."""
        arrays: dict[str, NDArray[np.float64]] = {}
        for n in self.conv_nodes:
            arrays[n.name] = n.weight
            if n.bias is not None:
                arrays[f"{n.name}.bias"] = n.bias
        np.savez(path, **arrays)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- float model
    def forward_float(self, x: ArrayLike) -> dict[str, NDArray[np.float64]]:
        """Run the float64 network; return every node's output by name."""
        arr = self._check_input(x)
        outs: dict[str, NDArray[np.float64]] = {"": arr}
        for i, node in enumerate(self.nodes):
            outs[node.name] = node.forward([outs[s] for s in self.sources(i)])
        del outs[""]
        return outs

    def _check_input(self, x: ArrayLike, name: str = "x") -> NDArray[np.float64]:
        if self.input_shape is None:
            raise ValueError(
                f"network {self.name!r} is a list of independent layers: use run_layers"
            )
        arr = as_float_array(x, name).astype(np.float64)
        if arr.ndim != len(self.input_shape) + 1 or arr.shape[1:] != self.input_shape:
            raise ValueError(f"{name} must have shape (B, {self.input_shape}), got {arr.shape}")
        if len(arr) < 1:
            raise ValueError(f"{name} must hold at least one input")
        return arr

    # ---------------------------------------------------------------- bit-accurate runs
    def run(
        self,
        x: ArrayLike,
        datapath: DatapathMap,
        *,
        calibration: ArrayLike | None = None,
        requant: Requant | None = None,
        level: str = "functional",
        hardware: Any = None,
        scaling: str = "calibrated",
    ) -> NetworkResult:
        """Run the whole network bit-accurately (see :mod:`shiftsim.network.runner`).

        Parameters
        ----------
        x : array_like of float
            ``(B, *input_shape)`` inputs; negative values keep their sign.
        datapath : Datapath or mapping of str to Datapath
            Runs every layer with weights; or ``{pattern: datapath}``, ``fnmatch`` patterns of
            layer names, the first match wins (e.g. ``{"conv1": mac8, "fc": mac8, "*":
            shift}``).
        calibration : array_like of float, optional
            Inputs that fix the activation scales (default: ``x``).
        requant : Requant, optional
            Multiplier width or power-of-two scaling (default ``Requant()``).
        level : {"functional", "golden", "cycle"}
            The datapath level.
        hardware : Hardware, optional
            When given, per-layer analytic cycles and energy
            (:func:`shiftsim.cost.estimate`) join the table.
        scaling : {"calibrated", "fixed"}, default "calibrated"
            Activation scales from the calibration pass (every tensor's peak at the top of its
            format), or fixed at 1 so that each format's full-scale range (a log format's
            ``fsr``) decides what clips and what underflows, as in the papers (see
            :mod:`shiftsim.network.activations`).

        Returns
        -------
        NetworkResult
            Its :meth:`~NetworkResult.warnings` name every layer whose overflow or clipping
            rate is large; a :class:`~shiftsim.network.report.RangeWarning` is also issued.
        """
        check_scaling(scaling)
        self._check_datapath(datapath)
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        requant = Requant() if requant is None else requant
        if not isinstance(requant, Requant):
            raise TypeError(f"requant must be a Requant, got {type(requant).__name__}")
        arr = self._check_input(x)
        cal = None if calibration is None else self._check_input(calibration, "calibration")
        return run_network(
            self,
            arr,
            datapath,
            calibration=cal,
            requant=requant,
            level=level,
            hardware=hardware,
            scaling=scaling,
        )

    def _check_datapath(self, datapath: Any) -> None:
        if not isinstance(datapath, (Datapath, dict)) and not hasattr(datapath, "items"):
            raise TypeError(
                f"datapath must be a Datapath or a mapping of layer-name patterns to Datapaths, "
                f"got {type(datapath).__name__}"
            )

    def run_layers(
        self,
        datapath: DatapathMap,
        *,
        batch: int = 1,
        seed: int = 0,
        level: str = "functional",
        hardware: Any = None,
        max_hw: int | None = None,
    ) -> NetworkResult:
        """Run every layer with weights on its own seeded random post-ReLU input.

        Inputs are ``max(0, N(0, sigma))`` with ``sigma`` a quarter of the datapath's ``act``
        range (1.0 without one), so about half the values are zero and few saturate. Each
        layer's error is against the float64 layer on the unquantized operands.

        Parameters
        ----------
        datapath : Datapath or mapping of str to Datapath
            Runs every layer (see :meth:`run`).
        batch : int, default 1
            Inputs per layer.
        seed : int, default 0
            Seed of the inputs.
        level : {"functional", "golden", "cycle"}
            The datapath level.
        hardware : Hardware, optional
            When given, per-layer analytic cycles and energy join the table.
        max_hw : int, optional
            Crop every input to at most ``max_hw`` rows and columns (never below what the
            kernel needs): a quick look at a large network.
        """
        if max_hw is not None and (
            isinstance(max_hw, bool) or not isinstance(max_hw, int) or max_hw < 1
        ):
            raise ValueError(f"max_hw must be a positive int, got {max_hw!r}")
        self._check_datapath(datapath)
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        dps = resolve_datapaths(self, datapath)
        shapes = self.layer_input_shapes(batch, max_hw)
        rng = np.random.default_rng(seed)
        rows = []
        totals = Counts()
        for node in self.conv_nodes:
            t0 = time.perf_counter()
            dp = dps[node.name]
            act = act_format(dp)
            sigma = act.max_raw * act.lsb / 4
            layer, w = node.layer, node.conv_weight
            x = np.maximum(rng.standard_normal(shapes[node.name]) * sigma, 0.0)
            gain = weight_gain(dp, w)
            bias = None if node.bias is None else node.bias * gain
            prep = dp.prepare(layer, w * gain, x, bias)
            res = dp.run(layer, prep.code, prep.x_in, prep.bias_raw, level=level, hardware=hardware)
            counts = res.counts
            if hardware is not None and level != "cycle":  # the cycle model counts them itself
                counts = counts + analytic_counts(layer, dp, hardware, prep.code, x)
            ref = conv_float(layer, w, x, node.bias)
            row: dict[str, Any] = {
                "layer": node.name,
                "op": node.op,
                "datapath": datapath_label(dp),
                "shape": "x".join(str(v) for v in ref.shape[1:]),
                "macs": layer.macs(x.shape),
            }
            rows.append(finish_row(row, counts, prep.clipped, ref, res.y / gain, t0))
            totals = totals + counts
        return NetworkResult(table=frame(rows), totals=totals)

    def layer_input_shapes(
        self, batch: int, max_hw: int | None = None
    ) -> dict[str, tuple[int, ...]]:
        """Input shape of every layer's datapath convolution, cropped to ``max_hw`` if given."""
        shapes = self._full_input_shapes(batch)
        if max_hw is None:
            return shapes
        for node in self.conv_nodes:
            shape = shapes[node.name]
            if len(shape) == 4 and isinstance(node.layer, Conv2d):
                need = [
                    max(1, d * (k - 1) + 1 - 2 * p)
                    for k, d, p in zip(
                        node.layer.kernel_size, node.layer.dilation, node.layer.padding
                    )
                ]
                hw = [min(n, max(max_hw, m)) for n, m in zip(shape[2:], need)]
                shapes[node.name] = (*shape[:2], *hw)
        return shapes

    def _full_input_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        if self.input_shape is not None:
            shapes = self.shapes(batch)
            for i, node in enumerate(self.nodes):
                if node.has_weights:
                    one = shapes[self.sources(i)[0]]
                    expanded = node.expand(np.zeros((1, *one[1:]), np.int8))  # type: ignore[attr-defined]
                    out[node.name] = (batch, *expanded.shape[1:])
            return out
        for node in self.conv_nodes:
            if node.input_hw is None:
                raise ValueError(f"node {node.name!r} has no input_hw and the network no input")
            layer = node.layer
            if isinstance(layer, Conv2d):
                out[node.name] = (batch, layer.in_channels, *node.input_hw)
            else:
                out[node.name] = (batch, layer.in_features)
        return out


def _load_npz(path: str | Path) -> dict[str, NDArray[np.float64]]:
    return {k: np.asarray(v, dtype=np.float64) for k, v in read_npz(path).items()}
