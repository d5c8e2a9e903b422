"""The bit-accurate runner: chains a network's nodes on raw integer activations.

:func:`run_network` walks the nodes in order and hands each one its inputs (raw integers in a
format, with a scale: :class:`~shiftsim.network.activations.Act`) and a :class:`StepContext`;
the node's :meth:`~shiftsim.network.node.Node.run_int` returns a :class:`Step` (its output,
the value compared with float, the counts, the values clipped, extra table columns). The
runner knows no operator: every per-operator decision is in the operator's class.

*Output formats.* A node's output takes the activation format of the datapath of the first
layer with weights that reads it (directly or through operators without weights; the
network's last datapath when none does), signed with one more bit unless a ReLU is its only
consumer (the ReLU is then fused: negative values become 0 and are not counted as clipped).
The scale comes from the calibration pass (see :mod:`shiftsim.network.activations`).

*The network input* is quantised to the first layer's activation format, signed (one more
bit) when the calibration data has negative values: nothing is zeroed. Input values beyond
the calibration range are clipped and counted in the first row of the table.
"""

from __future__ import annotations

import fnmatch
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shiftsim.counts import Counts
from shiftsim.datapath.base import Datapath
from shiftsim.formats import FixedFormat
from shiftsim.network.activations import Act, act_format, scale_of, signed_format
from shiftsim.network.report import (
    NetworkResult,
    RangeWarning,
    add_rates,
    finish_row,
    frame,
    range_warnings,
)
from shiftsim.network.requant import Requant, clamp, fixed_multiplier, rescale

if TYPE_CHECKING:
    from shiftsim.network.graph import Network

__all__ = [
    "DatapathMap",
    "Step",
    "StepContext",
    "datapath_label",
    "resolve_datapaths",
    "run_network",
]

#: A datapath for every layer, or layer-name patterns (``fnmatch``, first match wins).
DatapathMap = Datapath | Mapping[str, Datapath]


@dataclass(eq=False)
class Step:
    """What one node's integer step returns.

    Attributes
    ----------
    act : Act
        The output activation.
    value : ndarray of float64, optional
        The value compared with the float network (default ``act.value``).
    counts : Counts
        Datapath and extra operator counts (multiplies of a Mul, ...).
    clipped : int
        Values clamped while quantising or requantising.
    columns : dict
        Extra table columns (``macs``, ``requant_mults``, ``float_ops``, ``datapath``).
    """

    act: Act
    value: NDArray[np.float64] | None = None
    counts: Counts = field(default_factory=Counts)
    clipped: int = 0
    columns: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class StepContext:
    """What the runner tells a node about its place in the network.

    Attributes
    ----------
    datapath : Datapath or None
        The datapath of a layer with weights.
    act : FixedFormat
        The activation format of the node's output (before signing; see the module notes).
    relu_fused : bool
        A ReLU is the output's only consumer.
    last : bool
        The node is the network output.
    calibration : ndarray of float64
        The node's float output on the calibration inputs.
    input_calibration : list of ndarray of float64
        The inputs' float values on the calibration inputs.
    level, hardware, requant, scaling
        As given to :meth:`Network.run`.
    """

    datapath: Datapath | None
    act: FixedFormat
    relu_fused: bool
    last: bool
    calibration: NDArray[np.float64]
    input_calibration: list[NDArray[np.float64]]
    level: str = "functional"
    hardware: Any = None
    requant: Requant = field(default_factory=Requant)
    scaling: str = "calibrated"

    def input_format(self, datapath: Datapath) -> FixedFormat:
        """The activation format ``datapath`` reads under this run's scaling."""
        return act_format(datapath, self.scaling)

    def _scale(self, values: NDArray[np.float64], fmt: FixedFormat) -> float:
        return 1.0 if self.scaling == "fixed" else scale_of(values, fmt)

    def out_format(self) -> FixedFormat:
        """The output format: the activation format, signed unless a ReLU is fused."""
        return self.act if self.relu_fused else signed_format(self.act)

    def out_scale(self, fmt: FixedFormat) -> float:
        """The output scale: from the calibration pass, or 1 with fixed scaling."""
        return self._scale(self.calibration, fmt)

    def requantise(
        self,
        raw: NDArray[np.int64],
        factor: Any,
        fmt: FixedFormat,
        *,
        channel_axis: int = 1,
        relu: bool | None = None,
    ) -> tuple[NDArray[np.int64], int, int]:
        """Rescale raw values by positive ``factor`` (one, or one per channel) and clamp.

        The clamp fuses a ReLU when ``relu`` says so (default: when the node's output has
        one fused). Returns the raw output, the values clipped, and the multiplies spent
        (0 with ``power_of_two``).
        """
        m = np.atleast_1d(np.asarray(factor, dtype=np.float64))
        mult, sh = fixed_multiplier(m, self.requant)
        shape: tuple[int, ...] = (1,)
        if m.size > 1:
            shape = tuple(-1 if i == channel_axis else 1 for i in range(raw.ndim))
        v = rescale(raw, mult, sh, shape)
        out, clipped = clamp(v, fmt, self.relu_fused if relu is None else relu)
        return out, clipped, 0 if self.requant.power_of_two else int(v.size)

    def to_format(self, a: Act, fmt: FixedFormat, index: int = 0) -> tuple[Act, int, int]:
        """Input ``index`` requantised to ``fmt`` with a scale from its calibration values.

        For a tensor read by layers of datapaths with different activation formats. Values
        the target format cannot hold (negative ones in an unsigned format included) are
        clipped and counted.
        """
        if a.fmt == fmt:
            return a, 0, 0
        s = self._scale(self.input_calibration[index], fmt)
        factor = a.fmt.lsb * a.scale / (s * fmt.lsb)
        raw, clipped, mults = self.requantise(a.raw, factor, fmt, relu=False)
        return Act(raw, fmt, s), clipped, mults

    def quantise(self, values: NDArray[np.float64]) -> tuple[Act, int]:
        """Float values to the output format and scale, rounding half up; count the clipped."""
        fmt = self.out_format()
        s = self.out_scale(fmt)
        v = np.floor(values / (s * fmt.lsb) + 0.5)
        lo = 0 if self.relu_fused else fmt.min_raw
        clipped = int(np.count_nonzero(v > fmt.max_raw))
        if not self.relu_fused:  # values a fused ReLU zeroes are not clipped
            clipped += int(np.count_nonzero(v < lo))
        return Act(np.clip(v, lo, fmt.max_raw).astype(np.int64), fmt, s), clipped


def datapath_label(datapath: Datapath | None) -> str:
    """A short name of a datapath for the table: ``shift(N=2,B=4)``, ``mac(w8,a8)``, ..."""
    if datapath is None:
        return ""
    kind = type(datapath).__name__
    act = act_format(datapath)
    if kind == "ShiftAddDatapath":
        d: Any = datapath
        return f"shift(N={d.n_codebooks},B={d.bits},a{act.bits})"
    if kind == "FixedMacDatapath":
        d = datapath
        if d.act_log is not None:
            return f"mac(w{d.weight.bits},alog{d.act_log.bits})"
        return f"mac(w{d.weight.bits},a{act.bits})"
    if kind == "LogDatapath":
        d = datapath
        return f"log(w{d.weight.bits},a{d.act.bits})"
    return kind


def resolve_datapaths(net: Network, datapath: DatapathMap) -> dict[str, Datapath]:
    """The datapath of every layer with weights.

    Parameters
    ----------
    net : Network
        The network.
    datapath : Datapath or mapping of str to Datapath
        One datapath for every layer, or ``{pattern: datapath}`` with ``fnmatch`` patterns
        of layer names (``"conv1"``, ``"layer*"``, ``"*"``), the first matching pattern wins;
        ``"@first"`` and ``"@last"`` name the first and the last layer with weights.

    Raises
    ------
    TypeError
        Not a Datapath or a mapping of patterns to datapaths.
    ValueError
        A layer no pattern matches, or a pattern that matches no layer.
    """
    layers = [n.name for n in net.nodes if n.has_weights]
    if isinstance(datapath, Datapath):
        return dict.fromkeys(layers, datapath)
    if not isinstance(datapath, Mapping) or not datapath:
        raise TypeError(
            "datapath must be a Datapath or a non-empty mapping of layer-name patterns to "
            f"Datapaths, got {type(datapath).__name__}"
        )
    for pattern, dp in datapath.items():
        if not isinstance(pattern, str):
            raise TypeError(
                f"datapath: a layer-name pattern must be a str, got {pattern!r} "
                f"({type(pattern).__name__})"
            )
        if not isinstance(dp, Datapath):
            raise TypeError(
                f"datapath[{pattern!r}] must map a str pattern to a Datapath, got "
                f"{type(dp).__name__}"
            )
    out: dict[str, Datapath] = {}
    used: set[str] = set()
    special = {"@first": layers[:1], "@last": layers[-1:]}
    for name in layers:
        for pattern, dp in datapath.items():
            hit = name in special[pattern] if pattern in special else None
            if hit or (hit is None and fnmatch.fnmatchcase(name, pattern)):
                out[name] = dp
                used.add(pattern)
                break
    missing = [n for n in layers if n not in out]
    if missing:
        raise ValueError(
            f"datapath: no pattern matches layers {missing} (patterns {list(datapath)}); "
            "add a '*' entry for the rest"
        )
    unused = [p for p in datapath if p not in used]
    if unused:
        raise ValueError(f"datapath: patterns {unused} match no layer (layers {layers})")
    return out


def _tensor_formats(
    net: Network, dps: dict[str, Datapath], default: Datapath, scaling: str = "calibrated"
) -> dict[str, FixedFormat]:
    """Activation format of every tensor ("" is the input): see the module notes."""
    names = ["", *[n.name for n in net.nodes]]
    consumers = net.consumers
    order = {n.name: i for i, n in enumerate(net.nodes)}
    fmts: dict[str, FixedFormat] = {}
    last_dp = default
    upstream: dict[str, Datapath] = {}
    for node in net.nodes:
        if node.name in dps:
            last_dp = dps[node.name]
        upstream[node.name] = last_dp
    for name in names:
        seen: set[str] = set()
        stack = list(consumers.get(name, []))
        found: list[str] = []
        while stack:
            c = stack.pop()
            if c in seen:
                continue
            seen.add(c)
            if c in dps:
                found.append(c)
            else:
                stack.extend(consumers.get(c, []))
        if found:
            dp = dps[min(found, key=order.__getitem__)]
        else:
            dp = upstream.get(name, default)
        fmts[name] = act_format(dp, scaling)
    return fmts


def run_network(
    net: Network,
    x: NDArray[np.float64],
    datapath: DatapathMap,
    *,
    calibration: NDArray[np.float64] | None,
    requant: Requant,
    level: str,
    hardware: Any,
    scaling: str = "calibrated",
) -> NetworkResult:
    """Run ``net`` bit-accurately (the work of :meth:`Network.run`, arguments validated)."""
    dps = resolve_datapaths(net, datapath)
    default = datapath if isinstance(datapath, Datapath) else next(iter(dps.values()))
    ref = net.forward_float(x)
    cal_in = x if calibration is None else calibration
    cal = ref if calibration is None else net.forward_float(calibration)
    fmts = _tensor_formats(net, dps, default, scaling)
    signed_in = float(np.min(cal_in)) < 0
    in_fmt = signed_format(fmts[""]) if signed_in else fmts[""]
    # the input is calibrated with either scaling: its peak goes where calibrated scaling
    # puts it (for a log consumer, on the top code), held in the input's format
    peak_fmt = fmts[""] if scaling == "calibrated" else _tensor_formats(net, dps, default)[""]
    in_scale = scale_of(cal_in, signed_format(peak_fmt) if signed_in else peak_fmt)
    in_raw, in_clipped = in_fmt.from_float_counted(x / in_scale)
    acts: dict[str, Act] = {"": Act(in_raw, in_fmt, in_scale)}
    cal_of = {"": np.asarray(cal_in, dtype=np.float64), **cal}
    rows: list[dict[str, Any]] = []
    totals = Counts()
    out_raw: NDArray[np.int64] | None = None
    y_final: NDArray[np.float64] | None = None
    last = net.nodes[-1].name
    input_counted = False
    for i, node in enumerate(net.nodes):
        t0 = time.perf_counter()
        srcs = net.sources(i)
        cons = net.consumers[node.name]
        relu_fused = len(cons) == 1 and net.node(cons[0]).fuses_into_producer
        ctx = StepContext(
            datapath=dps.get(node.name),
            act=fmts[node.name],
            relu_fused=relu_fused,
            last=node.name == last,
            calibration=cal[node.name],
            input_calibration=[cal_of[s] for s in srcs],
            level=level,
            hardware=hardware,
            requant=requant,
            scaling=scaling,
        )
        step = node.run_int([acts[s] for s in srcs], ctx)
        acts[node.name] = step.act
        value = step.act.value if step.value is None else step.value
        if node.name == last:
            y_final, out_raw = value, step.act.raw
        clipped = step.clipped
        if "" in srcs and not input_counted:
            clipped += in_clipped
            input_counted = True
        refv = ref[node.name]
        row: dict[str, Any] = {"layer": node.name, "op": node.op, "datapath": "int"}
        row.update(step.columns)
        row["shape"] = "x".join(str(v) for v in refv.shape[1:])
        rows.append(finish_row(row, step.counts, clipped, refv, value, t0))
        totals = totals + step.counts
    table = add_rates(frame(rows), len(x))
    lines = range_warnings(table)
    if lines:
        warnings.warn(f"network {net.name!r}:\n" + "\n".join(lines), RangeWarning, stacklevel=3)
    return NetworkResult(
        table=table,
        totals=totals,
        output=y_final,
        output_raw=out_raw,
        float_output=ref[last],
        extra={"input_scale": in_scale, "input_format": in_fmt, "input_clipped": in_clipped},
    )
