"""Whole networks: a graph of layers with float weights, run bit-accurately on a datapath.

A :class:`Network` is an ordered list of :class:`Node` objects (convolutions and fully connected
layers with their float weights, ReLU, pooling, flatten, residual add). It comes from a SCALE-Sim
topology (:meth:`Network.from_topology`), an ONNX file (:func:`shiftsim.io.onnx_io.read_onnx`)
or the built-in digits CNN (:func:`shiftsim.models.digits.digits_network`).

Two ways to run it on a datapath:

* :meth:`Network.run` chains the layers on real inputs, bit-accurately: every convolution runs on
  the datapath (functional, golden or cycle level) and its accumulator output is requantised to
  the next layer's activation format, in integers (see *Requantisation*). Pooling and adds work
  on raw integers too. The result holds a per-layer table (error against the float network at
  the same point), the totals, and the top-1 accuracy when labels are given.
* :meth:`Network.run_layers` runs every convolution on its own seeded random post-ReLU input
  (a topology has no real data) and reports each layer's error against float.

Notes
-----
*Activations.* Between layers an activation is a raw integer tensor in a
:class:`~shiftsim.formats.FixedFormat` times one float scale per tensor: value =
``raw * 2**-frac_bits * scale``. The format is the datapath's ``act`` format (unsigned 8-bit
integers when the datapath has none); a tensor that is not followed by a ReLU (it feeds an add
or is the network output) is signed, with one more bit. Scales come from a float calibration
pass: the largest value of each tensor on the calibration inputs (the largest magnitude for a
signed tensor) maps to the format's largest raw value.

*Requantisation* of a layer's accumulator ``y_raw`` (format ``F`` fractional bits, weight scale
``w``, input scale ``s_in``) to the next activation (``fa`` fractional bits, scale ``s_out``)
multiplies by ``m = 2**-F * w * s_in / (s_out * 2**-fa)``, given as an integer multiplier and a
right shift, ``m ~ M * 2**-sh`` with ``M`` of ``mult_bits`` bits (one per output channel when the
weight scale is per channel); or, with ``power_of_two=True``, ``M = 1`` and
``sh = round(-log2 m)`` (a pure shift: no multiplier in the hardware). The product is rounded
half up, ``floor((y_raw * M + 2**(sh-1)) / 2**sh)``, then clamped to the format (to 0 from
below when a ReLU follows: the ReLU is fused); clamped values are counted as ``clipped``.

*Pooling* follows ONNX (and PyTorch). Along an axis of size ``n``, with kernel ``k``, stride
``s``, dilation ``d`` and pads ``lo``, ``hi``, the pooled size is
``floor((n + lo + hi - d*(k-1) - 1) / s) + 1``; with ``ceil_mode`` the division rounds up, and
a last window that would start at or beyond ``n + lo`` (in the bottom or right padding) is
dropped. Padding never wins a max. An average is the sum of the window's taps inside the
input divided by the window's divisor ``q``: by default the number of those taps (each window
has its own divisor: a corner window of a 3x3 pooling with pads 1 divides by 4); with
``count_include_pad``, the number of taps inside the padded input (pads count as zeros; what
``ceil_mode`` adds past the bottom or right pad does not count). A window lying entirely in
the padding is an error. On raw integers max pooling is exact and average pooling rounds half
up, ``floor((sum + q // 2) / q)``; the scale is unchanged.

*Add* rescales both operands to the output scale with the same multiplier-and-shift rule and
adds them, then clamps.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.counts import Counts
from shiftsim.datapath.base import LEVELS, Datapath
from shiftsim.formats import FixedFormat, LogFormat, as_float_array
from shiftsim.layers import Conv2d, Linear

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "OPS",
    "Network",
    "NetworkResult",
    "Node",
    "Requant",
    "act_format",
    "conv_float",
    "weight_gain",
    "fixed_multiplier",
]

OPS = ("conv", "relu", "maxpool", "avgpool", "global_avgpool", "flatten", "add")
"""Node operations: ``conv`` is a Conv2d or a Linear layer with weights."""

_DEFAULT_ACT = FixedFormat(8, 0, signed=False)


def _pair(name: str, value: object) -> tuple[int, int]:
    items = value if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in items
    ):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def _pads(name: str, value: object) -> tuple[int, int, int, int]:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(items) not in (1, 2, 4) or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in items
    ):
        raise ValueError(
            f"{name} must be one, two or four non-negative ints (top, left, bottom, right), "
            f"got {value!r}"
        )
    p = [int(v) for v in items]
    if len(p) == 1:
        return p[0], p[0], p[0], p[0]
    if len(p) == 2:
        return p[0], p[1], p[0], p[1]
    return p[0], p[1], p[2], p[3]


@dataclass(frozen=True, kw_only=True, eq=False)
class Node:
    """One operation of a network.

    Parameters
    ----------
    name : str
        Unique within the network.
    op : str
        One of :data:`OPS`.
    inputs : tuple of str, default ()
        Names of the nodes it reads, ``""`` for the network input; empty means the previous
        node (the network input for the first node). ``add`` reads two.
    layer : Conv2d or Linear, optional
        The geometry of a ``conv`` node.
    weight : ndarray of float, optional
        ``layer.weight_shape`` float weights of a ``conv`` node.
    bias : ndarray of float, optional
        ``(out_channels,)`` float bias of a ``conv`` node.
    kernel_size, stride : (int, int), optional
        Window of a pooling node (stride defaults to the kernel size).
    pads : int, (int, int) or (int, int, int, int), default 0
        Padding of a pooling node: one value for all sides, ``(rows, cols)`` on both sides, or
        ``(top, left, bottom, right)`` (ONNX's ``pads`` order). Each must be smaller than the
        window's extent ``dilation * (kernel - 1) + 1`` along its axis.
    dilation : (int, int), default (1, 1)
        Spacing of a pooling window's taps.
    ceil_mode : bool, default False
        Round the pooled size up rather than down (see the module notes).
    count_include_pad : bool, default False
        Average pooling divides by the taps inside the padded input rather than by the taps
        inside the input (see the module notes); max pooling ignores it.
    input_hw : (int, int), optional
        The input size a topology layer runs on in :meth:`Network.run_layers`.
    """

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    layer: Conv2d | Linear | None = None
    weight: NDArray[np.float64] | None = None
    bias: NDArray[np.float64] | None = None
    kernel_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    pads: int | tuple[int, ...] = 0
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = False
    input_hw: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r} (node {self.name!r})")
        set_(self, "inputs", tuple(self.inputs))
        if self.op == "conv":
            if not isinstance(self.layer, (Conv2d, Linear)):
                raise TypeError(f"node {self.name!r}: layer must be a Conv2d or Linear")
            w = as_float_array(np.asarray(self.weight), f"{self.name}.weight").astype(np.float64)
            if w.shape != self.layer.weight_shape:
                raise ValueError(
                    f"{self.name}.weight must have shape {self.layer.weight_shape}, got {w.shape}"
                )
            set_(self, "weight", w)
            if self.bias is not None:
                b = as_float_array(self.bias, f"{self.name}.bias").astype(np.float64)
                if b.shape != (self.layer.weight_shape[0],):
                    raise ValueError(
                        f"{self.name}.bias must have shape ({self.layer.weight_shape[0]},), "
                        f"got {b.shape}"
                    )
                set_(self, "bias", b)
        if self.op in ("maxpool", "avgpool"):
            set_(self, "kernel_size", _pair(f"{self.name}.kernel_size", self.kernel_size))
            stride = self.kernel_size if self.stride is None else self.stride
            set_(self, "stride", _pair(f"{self.name}.stride", stride))
            set_(self, "dilation", _pair(f"{self.name}.dilation", self.dilation))
            pads = _pads(f"{self.name}.pads", self.pads)
            set_(self, "pads", pads)
            for flag in ("ceil_mode", "count_include_pad"):
                if not isinstance(getattr(self, flag), bool):
                    raise TypeError(
                        f"{self.name}.{flag} must be a bool, got {getattr(self, flag)!r}"
                    )
            kernel, dilation = self.kernel_size, self.dilation
            assert kernel is not None
            for axis, (k, d) in enumerate(zip(kernel, dilation)):
                extent = d * (k - 1) + 1
                if max(pads[axis], pads[axis + 2]) >= extent:
                    raise ValueError(
                        f"{self.name}.pads {pads} must be smaller than the window extent "
                        f"{extent} along axis {axis}"
                    )
        if self.op == "add" and len(self.inputs) != 2:
            raise ValueError(f"node {self.name!r}: add takes 2 inputs, got {self.inputs!r}")


@dataclass(frozen=True, kw_only=True)
class Requant:
    """How accumulators become the next layer's activations (see the module notes).

    Parameters
    ----------
    mult_bits : int, default 16
        Width of the unsigned integer multiplier ``M`` (1..31).
    power_of_two : bool, default False
        Scale by a shift only (``M = 1``).
    """

    mult_bits: int = 16
    power_of_two: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.mult_bits, bool) or not isinstance(self.mult_bits, int):
            raise TypeError(f"mult_bits must be an int, got {self.mult_bits!r}")
        if not 1 <= self.mult_bits <= 31:
            raise ValueError(f"mult_bits must be in [1, 31], got {self.mult_bits!r}")
        if not isinstance(self.power_of_two, bool):
            raise TypeError(f"power_of_two must be a bool, got {self.power_of_two!r}")


def fixed_multiplier(
    m: ArrayLike, requant: Requant = Requant()
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Integer multiplier and shift approximating positive real factors: ``m ~ M * 2**-sh``.

    Parameters
    ----------
    m : array_like of float
        Positive, finite factors.
    requant : Requant
        ``mult_bits`` and ``power_of_two``.

    Returns
    -------
    M, sh : ndarray of int64
        ``M`` in ``[2**(mult_bits-1), 2**mult_bits)`` (or 1 with ``power_of_two``); ``sh`` may be
        negative (a left shift).

    Examples
    --------
    >>> M, sh = fixed_multiplier(0.1, Requant(mult_bits=8))
    >>> int(M), int(sh)
    (205, 11)
    >>> [int(v) for v in fixed_multiplier(0.1, Requant(power_of_two=True))]
    [1, 3]
    """
    m = np.asarray(m, dtype=np.float64)
    if m.size and (not np.all(np.isfinite(m)) or np.any(m <= 0)):
        raise ValueError(f"m must be positive and finite, got {m.ravel()[:4]!r}")
    if requant.power_of_two:
        sh = -np.rint(np.log2(m)).astype(np.int64)
        return np.ones_like(sh), sh
    mant, exp = np.frexp(m)  # m = mant * 2**exp, mant in [0.5, 1)
    big = np.rint(np.ldexp(mant, requant.mult_bits)).astype(np.int64)
    sh = (requant.mult_bits - exp).astype(np.int64)
    carry = big >= (1 << requant.mult_bits)  # mant rounded up to 1.0
    big = np.where(carry, big >> 1, big)
    sh = np.where(carry, sh - 1, sh)
    return big, sh


def _rescale(
    raw: NDArray[np.int64], mult: NDArray[np.int64], sh: NDArray[np.int64], axis_shape: tuple
) -> NDArray[np.int64]:
    """``floor((raw * M + 2**(sh-1)) / 2**sh)`` elementwise, ``M`` and ``sh`` per channel."""
    mult = mult.reshape(axis_shape)
    sh = sh.reshape(axis_shape)
    peak = int(np.abs(raw).max(initial=0))
    if (
        peak.bit_length() + int(mult.max(initial=1)).bit_length() + max(0, -int(sh.min(initial=0)))
        > 62
    ):
        raise ValueError(
            f"requantisation overflows int64: |y_raw| up to {peak} times a "
            f"{int(mult.max())}-multiplier; use fewer mult_bits or a narrower accumulator"
        )
    v = raw * mult
    left = np.maximum(-sh, 0)
    v = v << left
    s = np.clip(sh, 0, 64)
    s1 = np.maximum(s - 1, 0)
    shifted = ((v >> np.minimum(s1, 63)) + 1) >> 1  # round half up, as bitops.round_shr
    shifted = np.where(s > 63, 0, shifted)
    return np.where(s == 0, v, shifted).astype(np.int64)


@dataclass(frozen=True, eq=False)
class _Act:
    """An activation tensor: ``fmt.to_float(raw) * scale``."""

    raw: NDArray[np.int64]
    fmt: FixedFormat
    scale: float

    @property
    def value(self) -> NDArray[np.float64]:
        return self.fmt.to_float(self.raw) * self.scale


@dataclass(frozen=True, eq=False)
class NetworkResult:
    """The outcome of :meth:`Network.run` or :meth:`Network.run_layers`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per node: ``layer``, ``op``, ``shape`` (output), ``macs``, the datapath's
        :class:`~shiftsim.counts.Counts` fields, ``clipped`` (requantisation clamps),
        ``rmse``, ``max_abs_err``, ``sqnr_db`` (against float at the same point), ``time_s``.
    totals : Counts
        Sum of the layers' counts.
    output : ndarray of float64 or None
        The network output, dequantized (chained runs).
    output_raw : ndarray of int64 or None
        The last layer's raw accumulators (chained runs).
    float_output : ndarray of float64 or None
        The float network's output on the same inputs.
    """

    table: pd.DataFrame
    totals: Counts
    output: NDArray[np.float64] | None = None
    output_raw: NDArray[np.int64] | None = None
    float_output: NDArray[np.float64] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def top1(self, labels: ArrayLike) -> float:
        """Fraction of inputs whose largest output is the label."""
        return _top1(self.output, labels)

    def float_top1(self, labels: ArrayLike) -> float:
        """Top-1 accuracy of the float network."""
        return _top1(self.float_output, labels)

    def agreement(self) -> float:
        """Fraction of inputs where the simulated and float networks pick the same class."""
        if self.output is None or self.float_output is None:
            raise ValueError("agreement needs a chained run (Network.run)")
        a = self.output.reshape(len(self.output), -1).argmax(axis=1)
        b = self.float_output.reshape(len(self.float_output), -1).argmax(axis=1)
        return float(np.mean(a == b))


def _top1(out: NDArray[np.float64] | None, labels: ArrayLike) -> float:
    if out is None:
        raise ValueError("top1 needs a chained run (Network.run)")
    labels = np.asarray(labels)
    if labels.shape != (len(out),):
        raise ValueError(f"labels must have shape ({len(out)},), got {labels.shape}")
    return float(np.mean(out.reshape(len(out), -1).argmax(axis=1) == labels))


def _sqnr_db(ref: NDArray[np.float64], got: NDArray[np.float64]) -> float:
    noise = float(np.sum((ref - got) ** 2))
    sig = float(np.sum(ref**2))
    if noise == 0:
        return math.inf
    if sig == 0:
        return -math.inf
    return 10 * math.log10(sig / noise)


def _finish_row(
    row: dict[str, Any],
    counts: Counts,
    clipped: int,
    ref: NDArray[np.float64],
    got: NDArray[np.float64],
    t0: float,
) -> dict[str, Any]:
    """Complete a table row: counts, values clipped, errors against ``ref``, seconds taken."""
    row.update(dataclasses.asdict(counts))
    row["clipped"] = clipped
    row["rmse"] = float(np.sqrt(np.mean((ref - got) ** 2)))
    row["max_abs_err"] = float(np.max(np.abs(ref - got)))
    row["sqnr_db"] = _sqnr_db(ref, got)
    row["time_s"] = time.perf_counter() - t0
    return row


def _pool_size(n: int, k: int, s: int, d: int, lo: int, hi: int, ceil: bool) -> int:
    """Pooled size along one axis: ONNX's (and PyTorch's) rule, see the module notes."""
    span = n + lo + hi - (d * (k - 1) + 1)
    if span < 0:
        raise ValueError(f"pooling window {k} (dilation {d}) larger than the padded input {n}")
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + lo:  # the last window must start inside the input
        out -= 1
    return out


def _pool(node: Node, x: NDArray[Any], fill: Any) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """Reduce every pooling window of ``x`` and give each window's divisor.

    The reduction is the window's max (``fill`` the smallest value) or its sum (``fill`` 0);
    the divisor, an ``(Ho, Wo)`` array, counts the taps inside the input, or inside the padded
    input with ``count_include_pad``.
    """
    assert node.kernel_size is not None and node.stride is not None
    pads = node.pads
    assert isinstance(pads, tuple)
    geo = []
    for axis in range(2):
        n, k, s, d = (
            x.shape[2 + axis],
            node.kernel_size[axis],
            node.stride[axis],
            node.dilation[axis],
        )
        lo, hi = pads[axis], pads[axis + 2]
        out = _pool_size(n, k, s, d, lo, hi, node.ceil_mode)
        need = (out - 1) * s + d * (k - 1) + 1  # padded length the windows reach
        pos = np.arange(out)[:, None] * s + np.arange(k)[None, :] * d - lo  # input index of taps
        inside = ((pos >= 0) & (pos < n)).sum(axis=1)
        if np.any(inside == 0):
            raise ValueError(f"node {node.name!r}: a pooling window lies entirely in the padding")
        in_pad = ((pos >= -lo) & (pos < n + hi)).sum(axis=1)
        geo.append((out, need, k, s, d, lo, inside, in_pad))
    (ho, need_h, kh, sh, dh, top, in_h, pad_h) = geo[0]
    (wo, need_w, kw, sw, dw, left, in_w, pad_w) = geo[1]
    h, w = x.shape[2:]
    xp = np.pad(
        x,
        ((0, 0), (0, 0), (top, max(0, need_h - top - h)), (left, max(0, need_w - left - w))),
        constant_values=fill,
    )
    acc: NDArray[Any] | None = None
    for i in range(kh):
        for j in range(kw):
            tap = xp[
                :,
                :,
                i * dh : i * dh + (ho - 1) * sh + 1 : sh,
                j * dw : j * dw + (wo - 1) * sw + 1 : sw,
            ]
            if acc is None:
                acc = tap.copy()
            elif node.op == "maxpool":
                np.maximum(acc, tap, out=acc)
            else:
                acc += tap
    assert acc is not None
    count = np.outer(pad_h, pad_w) if node.count_include_pad else np.outer(in_h, in_w)
    return acc, count.astype(np.int64)


def conv_float(
    layer: Conv2d | Linear,
    w: NDArray[np.float64],
    x: NDArray[np.float64],
    bias: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Float64 convolution (im2col and matmul), for the float network and calibration."""
    conv = layer.as_conv()
    xc = layer.to_nchw(np.asarray(x, dtype=np.float64))
    wc = layer.to_nchw(np.asarray(w, dtype=np.float64))
    (ph, pw), (sh, sw), (dh, dw) = conv.padding, conv.stride, conv.dilation
    kh, kw = conv.kernel_size
    xp = np.pad(xc, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    b = xc.shape[0]
    ho, wo = conv.output_hw(xc.shape[2], xc.shape[3])
    g, cg, og = conv.groups, conv.channels_per_group, conv.out_channels // conv.groups
    cols = np.empty((b, conv.in_channels, kh, kw, ho, wo))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[
                :, :, i * dh : i * dh + sh * ho : sh, j * dw : j * dw + sw * wo : sw
            ][:, :, :ho, :wo]
    flat = cols.reshape(b, g, cg * kh * kw, ho * wo)
    wg = wc.reshape(g, og, cg * kh * kw)
    y = np.einsum("gok,bgkp->bgop", wg, flat, optimize=True)  # type: ignore[arg-type]
    y = y.reshape(b, conv.out_channels, ho, wo)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape(1, -1, 1, 1)
    return np.asarray(layer.from_nchw(y), dtype=np.float64)


class Network:
    """An ordered graph of layers with float weights.

    Parameters
    ----------
    nodes : sequence of Node
        In execution order; a node reads earlier nodes only.
    input_shape : tuple of int, optional
        Shape of one input without the batch axis (``(C, H, W)`` or ``(features,)``); None for
        a list of independent layers (a topology), which only :meth:`run_layers` runs.
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
        self.input_shape = None if input_shape is None else tuple(int(v) for v in input_shape)
        self.name = name
        self._consumers: dict[str, list[str]] = {n.name: [] for n in nodes}
        for i, node in enumerate(nodes):
            for src in self._sources(i):
                if src != "":
                    self._consumers[src].append(node.name)

    def __repr__(self) -> str:
        return f"Network({self.name!r}, {len(self.nodes)} nodes, input_shape={self.input_shape})"

    @property
    def conv_nodes(self) -> list[Node]:
        """The nodes with weights (Conv2d and Linear layers)."""
        return [n for n in self.nodes if n.op == "conv"]

    def _sources(self, i: int) -> tuple[str, ...]:
        node = self.nodes[i]
        if node.inputs:
            return node.inputs
        return (self.nodes[i - 1].name,) if i else ("",)

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
        nodes = []
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
            nodes.append(
                Node(
                    name=t.name, op="conv", layer=t.layer, weight=w, bias=bias, input_hw=t.input_hw
                )
            )
        name = str(path_or_name) if not isinstance(path_or_name, Path) else path_or_name.stem
        return cls(nodes, input_shape=None, name=name)

    def save_weights(self, path: str | Path) -> None:
        """Write every layer's weights (and biases, as ``NAME.bias``) to an .npz file."""
        arrays: dict[str, NDArray[np.float64]] = {}
        for n in self.conv_nodes:
            arrays[n.name] = n.weight  # type: ignore[assignment]
            if n.bias is not None:
                arrays[f"{n.name}.bias"] = n.bias
        np.savez(path, **arrays)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- float model
    def forward_float(self, x: ArrayLike) -> dict[str, NDArray[np.float64]]:
        """Run the float64 network; return every node's output by name."""
        x = self._check_input(x)
        outs: dict[str, NDArray[np.float64]] = {"": x}
        for i, node in enumerate(self.nodes):
            args = [outs[s] for s in self._sources(i)]
            outs[node.name] = _float_op(node, args)
        del outs[""]
        return outs

    def _check_input(self, x: ArrayLike) -> NDArray[np.float64]:
        if self.input_shape is None:
            raise ValueError(
                f"network {self.name!r} is a list of independent layers: use run_layers"
            )
        arr = as_float_array(x, "x").astype(np.float64)
        if arr.ndim != len(self.input_shape) + 1 or arr.shape[1:] != self.input_shape:
            raise ValueError(f"x must have shape (B, {self.input_shape}), got {arr.shape}")
        if len(arr) < 1:
            raise ValueError("x must hold at least one input")
        return arr

    # ---------------------------------------------------------------- bit-accurate runs
    def run(
        self,
        x: ArrayLike,
        datapath: Datapath,
        *,
        calibration: ArrayLike | None = None,
        requant: Requant = Requant(),
        level: str = "functional",
        hardware: Any = None,
    ) -> NetworkResult:
        """Run the whole network bit-accurately on ``datapath`` (see the module notes).

        Parameters
        ----------
        x : array_like of float
            ``(B, *input_shape)`` inputs.
        datapath : Datapath
            Runs every conv and linear layer.
        calibration : array_like of float, optional
            Inputs that fix the activation scales (default: ``x``).
        requant : Requant
            Multiplier width or power-of-two scaling.
        level : {"functional", "golden", "cycle"}
            The datapath level.
        hardware : Hardware, optional
            When given, per-layer analytic cycles and energy
            (:func:`shiftsim.cost.estimate`) join the table.

        Returns
        -------
        NetworkResult
        """
        if not isinstance(datapath, Datapath):
            raise TypeError(f"datapath must be a Datapath, got {type(datapath).__name__}")
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if not isinstance(requant, Requant):
            raise TypeError(f"requant must be a Requant, got {type(requant).__name__}")
        x = self._check_input(x)
        ref = self.forward_float(x)
        cal = ref if calibration is None else self.forward_float(calibration)
        act = act_format(datapath)
        signed_act = FixedFormat(min(act.bits + 1, 62), act.frac_bits, signed=True)

        def fmt_of(name: str) -> tuple[FixedFormat, bool]:
            cons = self._consumers[name]
            relu = len(cons) == 1 and self._node(cons[0]).op == "relu"
            return (act if relu or act.signed else signed_act), relu

        def scale_of(name: str, fmt: FixedFormat) -> float:
            vals = cal[name] if fmt.signed else np.maximum(cal[name], 0.0)
            peak = float(np.abs(vals).max())
            return (peak if peak > 0 else 1.0) / (fmt.max_raw * fmt.lsb)

        in_scale = scale_of_input(x if calibration is None else calibration, act)
        acts: dict[str, _Act] = {"": _Act(act.from_float(x / in_scale), act, in_scale)}
        rows: list[dict[str, Any]] = []
        totals = Counts()
        out_raw = None
        y_final: NDArray[np.float64] | None = None
        last = self.nodes[-1].name
        for i, node in enumerate(self.nodes):
            t0 = time.perf_counter()
            srcs = [acts[s] for s in self._sources(i)]
            row: dict[str, Any] = {"layer": node.name, "op": node.op}
            clipped = 0
            counts = Counts()
            if node.op == "conv":
                a = srcs[0]
                layer = node.layer
                assert layer is not None and node.weight is not None
                x_units = a.fmt.to_float(a.raw)
                gain = weight_gain(datapath, node.weight)
                bias = None if node.bias is None else node.bias * gain / a.scale
                prep = datapath.prepare(layer, node.weight * gain, x_units, bias)
                res = datapath.run(
                    layer, prep.code, prep.x_in, prep.bias_raw, level=level, hardware=hardware
                )
                counts = res.counts
                y_val = res.y * (a.scale / gain)
                row["macs"] = layer.macs(x_units.shape)
                if hardware is not None and level != "cycle":  # the cycle model counts them itself
                    counts = counts + _analytic(layer, datapath, hardware, prep.code, x_units)
                if node.name == last:
                    out_raw = res.y_raw
                    acts[node.name] = _Act(res.y_raw, res.out_format, 1.0)
                    y_final = y_val
                else:
                    fmt, relu = fmt_of(node.name)
                    s_out = scale_of(node.name, fmt)
                    w_scale = np.atleast_1d(np.asarray(res.scale, dtype=np.float64)) / gain
                    m = res.out_format.lsb * w_scale * a.scale / (s_out * fmt.lsb)
                    mult, sh = fixed_multiplier(m, requant)
                    shape = (1, -1) + (1,) * (res.y_raw.ndim - 2) if m.size > 1 else (1,)
                    v = _rescale(res.y_raw, mult, sh, shape)
                    raw, clipped = _clamp(v, fmt, relu)
                    acts[node.name] = _Act(raw, fmt, s_out)
                    row["requant_mults"] = 0 if requant.power_of_two else int(v.size)
                got = y_val
            elif node.op == "relu":
                a = srcs[0]
                if a.fmt.signed:
                    fmt = FixedFormat(a.fmt.bits, a.fmt.frac_bits, signed=False)
                    raw, clipped = _clamp(np.maximum(a.raw, 0), fmt, True)
                    acts[node.name] = _Act(raw, fmt, a.scale)
                else:
                    acts[node.name] = a
                got = acts[node.name].value
            elif node.op == "add":
                fmt, relu = fmt_of(node.name)
                s_out = scale_of(node.name, fmt)
                total = np.zeros(
                    np.broadcast_shapes(srcs[0].raw.shape, srcs[1].raw.shape), np.int64
                )
                for a in srcs:
                    factor = a.fmt.lsb * a.scale / (s_out * fmt.lsb)
                    mult, sh = fixed_multiplier(factor, requant)
                    total = total + _rescale(a.raw, mult, sh, (1,))
                raw, clipped = _clamp(total, fmt, relu)
                acts[node.name] = _Act(raw, fmt, s_out)
                got = fmt.to_float(total) * s_out  # before the fused ReLU, like the reference
            else:
                a = srcs[0]
                acts[node.name] = _Act(_int_op(node, a.raw), a.fmt, a.scale)
                got = acts[node.name].value
            if node.name == last and node.op != "conv":
                y_final = got
                out_raw = acts[node.name].raw
            refv = ref[node.name]
            row["shape"] = "x".join(str(v) for v in refv.shape[1:])
            rows.append(_finish_row(row, counts, clipped, refv, got, t0))
            totals = totals + counts
        return NetworkResult(
            table=_frame(rows),
            totals=totals,
            output=y_final,
            output_raw=out_raw,
            float_output=ref[last],
            extra={"input_scale": in_scale},
        )

    def run_layers(
        self,
        datapath: Datapath,
        *,
        batch: int = 1,
        seed: int = 0,
        level: str = "functional",
        hardware: Any = None,
        max_hw: int | None = None,
    ) -> NetworkResult:
        """Run every conv and linear layer on its own seeded random post-ReLU input.

        Inputs are ``max(0, N(0, sigma))`` with ``sigma`` a quarter of the datapath's ``act``
        range (1.0 without one), so about half the values are zero and few saturate. Each
        layer's error is against the float64 layer on the unquantized operands.

        Parameters
        ----------
        datapath : Datapath
            Runs every layer.
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
        if not isinstance(datapath, Datapath):
            raise TypeError(f"datapath must be a Datapath, got {type(datapath).__name__}")
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        act = act_format(datapath)
        sigma = act.max_raw * act.lsb / 4
        shapes = self.layer_input_shapes(batch, max_hw)
        rng = np.random.default_rng(seed)
        rows = []
        totals = Counts()
        for node in self.conv_nodes:
            t0 = time.perf_counter()
            layer = node.layer
            assert layer is not None and node.weight is not None
            x = np.maximum(rng.standard_normal(shapes[node.name]) * sigma, 0.0)
            gain = weight_gain(datapath, node.weight)
            bias = None if node.bias is None else node.bias * gain
            prep = datapath.prepare(layer, node.weight * gain, x, bias)
            res = datapath.run(
                layer, prep.code, prep.x_in, prep.bias_raw, level=level, hardware=hardware
            )
            counts = res.counts
            if hardware is not None and level != "cycle":  # the cycle model counts them itself
                counts = counts + _analytic(layer, datapath, hardware, prep.code, x)
            ref = conv_float(layer, node.weight, x, node.bias)
            got = res.y / gain
            out_shape = ref.shape
            row: dict[str, Any] = {
                "layer": node.name,
                "op": node.op,
                "shape": "x".join(str(v) for v in out_shape[1:]),
                "macs": layer.macs(x.shape),
            }
            rows.append(_finish_row(row, counts, prep.overflows, ref, got, t0))
            totals = totals + counts
        return NetworkResult(table=_frame(rows), totals=totals)

    def layer_input_shapes(
        self, batch: int, max_hw: int | None = None
    ) -> dict[str, tuple[int, ...]]:
        """Input shape of every conv and linear layer, cropped to ``max_hw`` when given."""
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
        shapes: dict[str, tuple[int, ...]] = {}
        if self.input_shape is not None:
            outs = self.forward_float(np.zeros((1, *self.input_shape)))
            for i, node in enumerate(self.nodes):
                if node.op == "conv":
                    src = self._sources(i)[0]
                    one = self.input_shape if src == "" else outs[src].shape[1:]
                    shapes[node.name] = (batch, *one)
            return shapes
        for node in self.conv_nodes:
            if node.input_hw is None:
                raise ValueError(f"node {node.name!r} has no input_hw and the network no input")
            layer = node.layer
            if isinstance(layer, Linear):
                shapes[node.name] = (batch, layer.in_features)
            else:
                assert layer is not None
                shapes[node.name] = (batch, layer.in_channels, *node.input_hw)
        return shapes

    def _node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def act_format(datapath: Datapath) -> FixedFormat:
    """The fixed-point format of the activations a network passes to ``datapath``.

    The datapath's ``act`` when it is a FixedFormat; for a log-domain ``act`` (a LogFormat of
    full-scale range ``fsr``), unsigned ``floor(fsr)``-bit integers, whose values stay below
    ``2**fsr``; otherwise unsigned 8-bit integers.
    """
    act = getattr(datapath, "act", None)
    if isinstance(act, FixedFormat):
        return act
    if isinstance(act, LogFormat):
        return FixedFormat(min(max(1, math.floor(act.fsr)), 62), 0, signed=False)
    return _DEFAULT_ACT


def weight_gain(datapath: Datapath, w: NDArray[np.float64]) -> float:
    """Power of two the weights are multiplied by before ``datapath.prepare``.

    1 for datapaths that scale weights themselves (shift-add, MAC). A log-domain datapath
    quantizes weights against a fixed full-scale range (``weight.fsr``) with no scale of its
    own, so the largest weight magnitude is moved into ``[2**(fsr-1), 2**fsr)``; the network
    divides the layer's output by the same power of two (exact in floating point, and folded
    into the requantisation multiplier).
    """
    fmt = getattr(datapath, "weight", None)
    peak = float(np.max(np.abs(w), initial=0.0))
    if not isinstance(fmt, LogFormat) or peak == 0:
        return 1.0
    return math.ldexp(1.0, math.floor(fmt.fsr - math.log2(peak)))


def scale_of_input(x: ArrayLike, act: FixedFormat) -> float:
    """Scale that maps the largest input value to ``act``'s largest raw value."""
    peak = float(np.max(np.abs(np.asarray(x, dtype=np.float64))))
    return (peak if peak > 0 else 1.0) / (act.max_raw * act.lsb)


def _clamp(v: NDArray[np.int64], fmt: FixedFormat, relu: bool) -> tuple[NDArray[np.int64], int]:
    lo = 0 if relu else fmt.min_raw
    out = np.clip(v, lo, fmt.max_raw)
    # values a fused ReLU zeroes are not clipped; those beyond the range are
    clipped = int(np.count_nonzero(v > fmt.max_raw))
    if not relu:
        clipped += int(np.count_nonzero(v < fmt.min_raw))
    return out.astype(np.int64), clipped


def _float_op(node: Node, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
    if node.op == "conv":
        assert node.layer is not None and node.weight is not None
        return conv_float(node.layer, node.weight, args[0], node.bias)
    if node.op == "relu":
        return np.maximum(args[0], 0.0)
    if node.op == "add":
        return args[0] + args[1]
    if node.op == "flatten":
        return args[0].reshape(len(args[0]), -1)
    if node.op == "global_avgpool":
        return args[0].mean(axis=(2, 3), keepdims=True)
    if node.op == "maxpool":
        return _pool(node, args[0], -np.inf)[0]
    total, count = _pool(node, args[0], 0.0)
    return total / count


def _int_op(node: Node, raw: NDArray[np.int64]) -> NDArray[np.int64]:
    """Flatten and pooling on raw integers (see the module notes for the rounding)."""
    if node.op == "flatten":
        return raw.reshape(len(raw), -1)
    if node.op == "global_avgpool":
        n = raw.shape[2] * raw.shape[3]
        return (raw.sum(axis=(2, 3), keepdims=True) + n // 2) // n
    if node.op == "maxpool":  # padding never wins: every window holds an input value
        return _pool(node, raw, np.iinfo(np.int64).min)[0]
    total, n = _pool(node, raw, 0)
    return (total + n // 2) // n


def _analytic(layer: Any, datapath: Datapath, hardware: Any, code: Any, x: Any) -> Counts:
    """Hardware counts from the analytic model, arithmetic counts zeroed (no double count)."""
    from shiftsim.cost import estimate

    est = estimate(layer, datapath, hardware, code=code, input_shape=tuple(np.shape(x)))
    arith = (
        "shift_ops negations selects zero_selects adds multiplies exponent_adds compares "
        "acc_updates log_to_linear overflows"
    ).split()
    return dataclasses.replace(est, **{k: 0 for k in arith})


def _load_npz(path: str | Path) -> dict[str, NDArray[np.float64]]:
    from shiftsim.io.weights import read_npz  # refuses complex arrays

    return {k: np.asarray(v, dtype=np.float64) for k, v in read_npz(path).items()}


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows)
    if "macs" in frame:
        frame["macs"] = frame["macs"].fillna(0).astype("int64")
    if "requant_mults" in frame:
        frame["requant_mults"] = frame["requant_mults"].fillna(0).astype("int64")
    return frame
