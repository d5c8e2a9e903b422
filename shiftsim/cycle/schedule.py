"""Shared pieces of the schedule: datapath word widths, layer geometry, buffer requirements.

Both the cycle-stepped model (:mod:`shiftsim.cycle.model`) and the analytic model
(:mod:`shiftsim.cost`) start from these; they then count the schedule's events independently
(one steps it, the other sums closed forms), which is what makes their agreement a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shiftsim.hardware import Hardware
from shiftsim.layers import Conv2d, Linear

__all__ = [
    "KIND_LOG",
    "KIND_MAC",
    "KIND_SHIFT",
    "DatapathParams",
    "Geometry",
    "Plan",
    "chunk_windows",
    "datapath_params",
    "geometry",
    "parallel_outputs",
    "plan",
    "steps_per_chunk",
    "tapped",
]

KIND_SHIFT = 0
KIND_MAC = 1
KIND_LOG = 2


@dataclass(frozen=True)
class DatapathParams:
    """What the schedule needs to know about a datapath.

    Attributes
    ----------
    kind : int
        ``KIND_SHIFT``, ``KIND_MAC`` or ``KIND_LOG``.
    passes : int
        Passes over the receptive field: N codebooks for the shift datapath, else 1.
    weight_bits : int
        Bits stored per weight (``N*B`` for ShiftCNN indices).
    pass_weight_bits : int
        Bits of a weight read in one pass (``B`` for ShiftCNN, ``weight_bits`` otherwise).
    act_bits : int
        Bits per stored input value.
    word_bits : int
        Bits per shift-buffer word: ``act_bits + f``, plus a sign bit for unsigned inputs.
    words_per_input : int
        Shift-buffer words per input value, ``P - 1 = 2*(S+1)``; 0 without a shift unit.
    max_shift : int
        S (0 without a shift unit).
    acc_bits : int
        Accumulator (and output) width.
    mult_bits : int
        Multiplier width (MAC datapath), else 0.
    """

    kind: int
    passes: int
    weight_bits: int
    pass_weight_bits: int
    act_bits: int
    word_bits: int
    words_per_input: int
    max_shift: int
    acc_bits: int
    mult_bits: int = 0


def datapath_params(datapath: Any) -> DatapathParams:
    """Describe ``datapath`` (ShiftAddDatapath, FixedMacDatapath or LogDatapath) to the schedule.

    Raises
    ------
    TypeError
        If ``datapath`` is none of these.
    """
    from shiftsim.datapath.log_domain import LogDatapath
    from shiftsim.datapath.mac import FixedMacDatapath
    from shiftsim.datapath.shift_add import ShiftAddDatapath

    if isinstance(datapath, ShiftAddDatapath):
        s = datapath.max_shift
        act = datapath.act
        return DatapathParams(
            kind=KIND_SHIFT,
            passes=datapath.n_codebooks,
            weight_bits=datapath.n_codebooks * datapath.bits,
            pass_weight_bits=datapath.bits,
            act_bits=act.bits,
            word_bits=act.bits + datapath.shift_frac_bits + (0 if act.signed else 1),
            words_per_input=2 * (s + 1),
            max_shift=s,
            acc_bits=datapath.acc_bits,
        )
    if isinstance(datapath, (FixedMacDatapath, LogDatapath)):  # one pass, no shift unit
        if isinstance(datapath, FixedMacDatapath):
            kind, mult = KIND_MAC, True
            wb, ab = datapath.weight.bits, datapath.act.bits
        else:  # log codes: exponent bits plus a sign bit when signed
            kind, mult = KIND_LOG, False
            wb = datapath.weight.bits + int(datapath.weight.signed)
            ab = datapath.act.bits + int(datapath.act.signed)
        return DatapathParams(
            kind=kind,
            passes=1,
            weight_bits=wb,
            pass_weight_bits=wb,
            act_bits=ab,
            word_bits=0,
            words_per_input=0,
            max_shift=0,
            acc_bits=datapath.acc_bits,
            mult_bits=max(wb, ab) if mult else 0,
        )
    raise TypeError(
        "datapath must be a ShiftAddDatapath, FixedMacDatapath or LogDatapath, got "
        f"{type(datapath).__name__}"
    )


def parallel_outputs(p: DatapathParams, hw: Hardware) -> int:
    """Outputs computed at once, the chunk size: ``A`` (``A*T`` serial lanes for the log datapath).

    The shift and MAC datapaths' ``A`` units each sum ``T`` channels of one output per cycle
    in an adder tree. The log datapath's accumulation is serial (every term is merged into
    the register, and wrapped or saturated, before the next), so each of its ``A*T`` lanes
    is a serial accumulator of its own output, one term per cycle.
    """
    return hw.acc_units * hw.tree_width if p.kind == KIND_LOG else hw.acc_units


def steps_per_chunk(g: Geometry, p: DatapathParams, hw: Hardware) -> int:
    """Compute cycles of one chunk: ``N*Kh*Kw*ceil(Cg/T)``, or ``Cg*Kh*Kw`` (log datapath)."""
    if p.kind == KIND_LOG:
        return g.cg * g.kh * g.kw
    return p.passes * g.kh * g.kw * -(-g.cg // hw.tree_width)


@dataclass(frozen=True)
class Geometry:
    """A layer's loop bounds as plain ints (a Linear layer is its 1x1 convolution)."""

    batch: int
    c: int
    h: int
    w: int
    co: int
    ho: int
    wo: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    groups: int

    @property
    def cg(self) -> int:
        """Input channels per group."""
        return self.c // self.groups

    @property
    def outputs(self) -> int:
        """Outputs per batch element, ``Co*Ho*Wo``."""
        return self.co * self.ho * self.wo


def geometry(layer: Conv2d | Linear, input_shape: tuple[int, ...]) -> Geometry:
    """Loop bounds of ``layer`` on an input of ``input_shape`` (validated).

    Raises
    ------
    TypeError, ValueError
        If ``layer`` is not a layer or ``input_shape`` does not fit it.
    """
    if not isinstance(layer, (Conv2d, Linear)):
        raise TypeError(f"layer must be a Conv2d or Linear, got {type(layer).__name__}")
    shape = tuple(int(v) for v in input_shape)
    layer.check_input_shape(shape, "input_shape")
    conv = layer.as_conv()
    if isinstance(layer, Linear):
        shape = (shape[0], shape[1], 1, 1)
    b, c, h, w = shape
    ho, wo = conv.output_hw(h, w)
    return Geometry(
        batch=b, c=c, h=h, w=w, co=conv.out_channels, ho=ho, wo=wo,
        kh=conv.kernel_size[0], kw=conv.kernel_size[1], sh=conv.stride[0], sw=conv.stride[1],
        ph=conv.padding[0], pw=conv.padding[1], dh=conv.dilation[0], dw=conv.dilation[1],
        groups=conv.groups,
    )  # fmt: skip


def tapped(g: Geometry) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Input rows and columns some kernel tap of some output reads (padding excluded)."""
    rows = np.zeros(g.h, dtype=bool)
    cols = np.zeros(g.w, dtype=bool)
    r = (np.arange(g.ho)[:, None] * g.sh - g.ph + np.arange(g.kh)[None, :] * g.dh).ravel()
    c = (np.arange(g.wo)[:, None] * g.sw - g.pw + np.arange(g.kw)[None, :] * g.dw).ravel()
    rows[r[(r >= 0) & (r < g.h)]] = True
    cols[c[(c >= 0) & (c < g.w)]] = True
    return rows, cols


def _count(cum: NDArray[np.int64], lo: NDArray[np.int64], hi: NDArray[np.int64]) -> NDArray:
    """Tapped indices in ``[lo, hi]`` (0 when empty) from a prefix sum ``cum``."""
    lo_c = np.clip(lo, 0, len(cum) - 1)
    hi_c = np.clip(hi + 1, 0, len(cum) - 1)
    return np.where(hi >= lo, np.maximum(cum[hi_c] - cum[lo_c], 0), 0)


def chunk_windows(g: Geometry, acc_units: int, tile_co: int) -> dict[str, NDArray[np.int64]]:
    """Per-chunk input windows of one batch element, as closed forms over the chunk index.

    The ``Co`` output channels are cut into weight tiles of ``tile_co`` (a multiple of
    ``A``, or ``Co``); a sweep over the image computes one tile's outputs in the order
    ``o = (oh*Wo + ow)*Ct + co`` and cuts them into chunks of ``A``. Returns int64 arrays over
    the element's chunks: ``length`` (L_k), ``sweep`` (weight tile), ``sweep_start`` (1 on a
    sweep's first chunk), ``rows`` (tapped input rows of its window), ``new_rows`` (tapped
    rows no earlier chunk of the sweep loaded), ``box`` (tapped positions of its window),
    ``new_box`` (positions not in the previous chunk's window), ``distinct_co``.
    """
    a_units = acc_units
    trow, tcol = tapped(g)
    rcum = np.concatenate(([0], np.cumsum(trow)))
    ccum = np.concatenate(([0], np.cumsum(tcol)))
    parts: dict[str, list[NDArray[np.int64]]] = {}
    n_tiles = -(-g.co // tile_co)
    for t in range(n_tiles):
        ct = min(tile_co, g.co - t * tile_co)
        n_out = ct * g.ho * g.wo
        first = np.arange(-(-n_out // a_units), dtype=np.int64) * a_units
        length = np.minimum(a_units, n_out - first)
        p0, p1 = first // ct, (first + length - 1) // ct
        oh0, ow0, oh1, ow1 = p0 // g.wo, p0 % g.wo, p1 // g.wo, p1 % g.wo
        r0 = np.maximum(oh0 * g.sh - g.ph, 0)
        r1 = np.minimum(oh1 * g.sh - g.ph + (g.kh - 1) * g.dh, g.h - 1)
        one_row = oh0 == oh1
        c0 = np.where(one_row, np.maximum(ow0 * g.sw - g.pw, 0), 0)
        c1 = np.where(one_row, np.minimum(ow1 * g.sw - g.pw + (g.kw - 1) * g.dw, g.w - 1), g.w - 1)
        ends = np.where(r1 >= r0, r1, -1)
        seen = np.concatenate(([-1], np.maximum.accumulate(ends)[:-1]))
        start = np.zeros(len(first), dtype=np.int64)
        start[0] = 1
        for key, arr in (
            ("length", length), ("r0", r0), ("r1", r1), ("c0", c0), ("c1", c1),
            ("new_rows", _count(rcum, np.maximum(r0, seen + 1), r1)),
            ("sweep", np.full(len(first), t)), ("sweep_start", start),
            ("distinct_co", np.minimum(length, ct)),
        ):  # fmt: skip
            parts.setdefault(key, []).append(np.asarray(arr, dtype=np.int64))
    w = {k: np.concatenate(v) for k, v in parts.items()}
    r0, r1, c0, c1 = w.pop("r0"), w.pop("r1"), w.pop("c0"), w.pop("c1")
    w["rows"] = _count(rcum, r0, r1)
    w["box"] = w["rows"] * _count(ccum, c0, c1)
    ir = _count(rcum, np.maximum(r0[1:], r0[:-1]), np.minimum(r1[1:], r1[:-1]))
    ic = _count(ccum, np.maximum(c0[1:], c0[:-1]), np.minimum(c1[1:], c1[:-1]))
    w["new_box"] = w["box"] - np.concatenate(([0], ir * ic))
    return w


@dataclass(frozen=True)
class Plan:
    """How a layer runs on a machine: weight tiles and input residency.

    Attributes
    ----------
    tile_co : int
        Output channels per weight tile (``Co`` when all weights are resident).
    weights_resident : bool
        All weights fit: loaded once for the whole batch.
    input_resident : bool
        The tapped input rows of an element stay in the input buffer across weight tiles
        (only chosen when there are several tiles); else each sweep reloads them.
    windows : dict of str to ndarray
        :func:`chunk_windows` of one element.
    """

    tile_co: int
    weights_resident: bool
    input_resident: bool
    windows: dict[str, NDArray[np.int64]]

    @property
    def n_tiles(self) -> int:
        """Weight tiles (sweeps over the image) per batch element."""
        return int(self.windows["sweep"][-1]) + 1


def plan(g: Geometry, p: DatapathParams, hw: Hardware) -> Plan:
    """Choose weight tiles and input residency, and check every buffer against the layer.

    Weights: all resident if they fit; else tiles of ``tile_co`` output channels, the
    largest multiple of ``A`` with room for two tiles (one computing, one loading). Inputs:
    a line buffer holding the tapped rows of a chunk's window plus the next chunk's new
    ones; with several weight tiles and room for two elements' tapped rows, the rows stay
    resident. Shift buffer: a chunk's window positions plus the next chunk's new ones, all
    channels, P-1 words each. Output buffer: two chunks of results.

    Raises
    ------
    ValueError
        Naming the first buffer that is too small and the bytes it needs.
    """
    a_units = parallel_outputs(p, hw)
    filter_bits = g.cg * g.kh * g.kw * p.weight_bits
    cap = hw.weight_buffer_bytes * 8
    if g.co * filter_bits <= cap:
        tile_co = g.co
    else:
        tile_co = cap // (2 * filter_bits) // a_units * a_units
        if tile_co == 0:
            need = min(g.co, 2 * a_units) * filter_bits
            raise ValueError(
                f"weight_buffer_bytes={hw.weight_buffer_bytes} is too small for this layer: it"
                f" needs at least {-(-need // 8)} bytes"
            )
    win = chunk_windows(g, a_units, tile_co)
    trow, _ = tapped(g)
    row_bits = g.c * g.w * p.act_bits
    resident_in = tile_co < g.co and 2 * int(trow.sum()) * row_bits <= hw.input_buffer_bytes * 8
    more = g.batch > 1
    nxt_rows = np.concatenate((win["new_rows"][1:], win["new_rows"][:1] if more else [0]))
    nxt_box = np.concatenate((win["new_box"][1:], win["box"][:1] if more else [0]))
    needs = {
        "input_buffer_bytes": 0 if resident_in else int((win["rows"] + nxt_rows).max()) * row_bits,
        "shift_buffer_bytes": int((win["box"] + nxt_box).max())
        * g.c
        * p.words_per_input
        * p.word_bits,
        "output_buffer_bytes": 2 * min(a_units, g.outputs) * p.acc_bits,
    }
    for name, bits in needs.items():
        if bits > getattr(hw, name) * 8:
            raise ValueError(
                f"{name}={getattr(hw, name)} is too small for this layer: it needs at least"
                f" {-(-bits // 8)} bytes"
            )
    return Plan(
        tile_co=tile_co,
        weights_resident=tile_co == g.co,
        input_resident=resident_in,
        windows=win,
    )
