"""The schedule's mapping: layer geometry, tiles, buffer requirements, closed-form traffic.

The cycle-stepped model (:mod:`shiftsim.cycle.model`) and the analytic model
(:mod:`shiftsim.cost`) both run the :class:`Plan` that :func:`plan` chooses; the stepped model
then counts every event as it moves data, while :func:`hardware_counts` gives the same counts
in closed form, which is what makes their agreement a test. For speed (a sweep evaluates
thousands of machines) the closed forms never build the per-pass table: they run over the
chunks of one weight tile at a time (every full tile of an ungrouped layer is alike, so a
tile's sums count for all of them and only the tile boundaries are evaluated apart), and over
a chunk's input-channel tiles as ``m - 1`` full tiles plus the last; tables, counts and
mapping searches are cached per geometry, datapath description and machine.
The formulas are in the package docstring of :mod:`shiftsim.cycle`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from shiftsim.counts import Counts
from shiftsim.datapath.hardware_desc import (
    KIND_LOG,
    KIND_MAC,
    KIND_SHIFT,
    HardwareDesc,
    describe,
)
from shiftsim.energy import EnergyTable, energy_pj
from shiftsim.hardware import Hardware
from shiftsim.layers import Conv2d, Linear

__all__ = [
    "KIND_LOG",
    "KIND_MAC",
    "KIND_SHIFT",
    "WEIGHTS_PASS",
    "WEIGHTS_RESIDENT",
    "WEIGHTS_SWEEP",
    "Geometry",
    "HardwareDesc",
    "Plan",
    "buffer_needs",
    "compulsory_dram_bytes",
    "describe",
    "geometry",
    "hardware_counts",
    "map_layer",
    "parallel_outputs",
    "pass_table",
    "plan",
    "smallest_tile_needs",
    "tapped",
]

#: Weight placement: all weights on chip for the batch; one output-channel tile's weights
#: per sweep (all its input-channel tiles); or the chunk's weights reloaded every pass.
WEIGHTS_RESIDENT, WEIGHTS_SWEEP, WEIGHTS_PASS = 0, 1, 2


def parallel_outputs(p: HardwareDesc, hw: Hardware) -> int:
    """Outputs computed at once, the chunk size: ``A`` (``A*T`` serial lanes for the log datapath).

    The shift and MAC datapaths' ``A`` units each sum ``T`` channels of one output per cycle
    in an adder tree. The log datapath's accumulation is serial (every term is merged into
    the register, and wrapped or saturated, before the next), so each of its ``A*T`` lanes
    is a serial accumulator of its own output, one term per cycle.
    """
    return hw.acc_units * hw.tree_width if p.serial_lanes else hw.acc_units


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


@functools.lru_cache(maxsize=256)
def _tapped_counts(g: Geometry) -> tuple[int, int]:
    """How many input rows and columns some output reads."""
    rows, cols = tapped(g)
    return int(rows.sum()), int(cols.sum())


def _tapped_cols(g: Geometry) -> int:
    """Columns some output reads: a line-buffer row holds these (padding is never stored)."""
    return _tapped_counts(g)[1]


def _tapped_rows(g: Geometry) -> int:
    """Rows some output reads."""
    return _tapped_counts(g)[0]


def _count(cum: NDArray[np.int64], lo: NDArray[np.int64], hi: NDArray[np.int64]) -> NDArray:
    """Tapped indices in ``[lo, hi]`` (0 when empty) from a prefix sum ``cum``."""
    top = len(cum) - 1
    lo_c = np.minimum(np.maximum(lo, 0), top)
    hi_c = np.minimum(np.maximum(hi + 1, 0), top)
    return np.where(hi >= lo, np.maximum(cum[hi_c] - cum[lo_c], 0), 0)


def _real_per_position(g: Geometry) -> NDArray[np.int64]:
    """Kernel taps of each output position (raster order) that land inside the image."""
    oh = np.arange(g.ho)[:, None] * g.sh - g.ph + np.arange(g.kh)[None, :] * g.dh
    ow = np.arange(g.wo)[:, None] * g.sw - g.pw + np.arange(g.kw)[None, :] * g.dw
    rr = ((oh >= 0) & (oh < g.h)).sum(axis=1)
    cc = ((ow >= 0) & (ow < g.w)).sum(axis=1)
    return (rr[:, None] * cc[None, :]).ravel().astype(np.int64)


def _tile_chunks(g: Geometry, a_units: int, ct: int) -> dict[str, NDArray[np.int64]]:
    """Chunks of one output-channel tile of ``ct`` channels (see :func:`pass_table`)."""
    trow, tcol = tapped(g)
    rcum = np.concatenate(([0], np.cumsum(trow)))
    ccum = np.concatenate(([0], np.cumsum(tcol)))
    n_out = ct * g.ho * g.wo
    first = np.arange(-(-n_out // a_units), dtype=np.int64) * a_units
    length = np.minimum(a_units, n_out - first)
    last = first + length - 1
    p0, p1 = first // ct, last // ct
    oh0, ow0, oh1, ow1 = p0 // g.wo, p0 % g.wo, p1 // g.wo, p1 % g.wo
    r0 = np.maximum(oh0 * g.sh - g.ph, 0)
    r1 = np.minimum(oh1 * g.sh - g.ph + (g.kh - 1) * g.dh, g.h - 1)
    one_row = oh0 == oh1
    c0 = np.where(one_row, np.maximum(ow0 * g.sw - g.pw, 0), 0)
    c1 = np.where(one_row, np.minimum(ow1 * g.sw - g.pw + (g.kw - 1) * g.dw, g.w - 1), g.w - 1)
    ends = np.where(r1 >= r0, r1, -1)
    seen = np.concatenate(([-1], np.maximum.accumulate(ends)[:-1]))
    rows = _count(rcum, r0, r1)
    box = rows * _count(ccum, c0, c1)
    ir = _count(rcum, np.maximum(r0[1:], r0[:-1]), np.minimum(r1[1:], r1[:-1]))
    ic = _count(ccum, np.maximum(c0[1:], c0[:-1]), np.minimum(c1[1:], c1[:-1]))
    real = _real_per_position(g)
    rcs = np.concatenate(([0], np.cumsum(real)))
    inner = np.where(p1 > p0, rcs[p1] - rcs[np.minimum(p0 + 1, len(real))], 0)
    return {
        "first": first,
        "length": length,
        "a0": first % ct,
        "b0": np.where(p0 == p1, last % ct, ct - 1),
        "b1": last % ct,
        "split": (p1 > p0).astype(np.int64),
        "real0": real[p0],
        "real1": np.where(p1 > p0, real[p1], 0),
        "real_inner": inner,
        "rows": rows,
        "new_rows": _count(rcum, np.maximum(r0, seen + 1), r1),
        "box": box,
        "new_box": box - np.concatenate(([0], ir * ic)),
        "distinct_co": np.minimum(length, ct),
        "k": np.arange(len(first), dtype=np.int64),
        "same_co": ((np.arange(len(first)) > 0) & (a_units % ct == 0)).astype(np.int64),
    }


@functools.lru_cache(maxsize=64)
def _chunk_table(g: Geometry, a_units: int, tile_co: int) -> dict[str, NDArray[np.int64]]:
    """The chunks of one element for weight tiles of ``tile_co`` (see :func:`pass_table`)."""
    cog = g.co // g.groups
    n_full, rest = divmod(g.co, tile_co)
    parts = []
    for ct, n_tiles, t0 in ((tile_co, n_full, 0), (rest, 1 if rest else 0, n_full)):
        if n_tiles == 0:
            continue
        c = _tile_chunks(g, a_units, ct)
        q = len(c["first"])
        t = np.repeat(np.arange(t0, t0 + n_tiles, dtype=np.int64), q)
        base = t * tile_co
        tl = {k: np.tile(v, n_tiles) for k, v in c.items()}

        def groups(lo: NDArray[np.int64], hi: NDArray[np.int64]) -> NDArray[np.int64]:
            return (base + hi) // cog - (base + lo) // cog + 1  # noqa: B023

        ng_t = groups(0 * base, 0 * base + ct - 1)
        reads = (
            tl["real0"] * groups(tl["a0"], tl["b0"])
            + tl["split"] * tl["real1"] * groups(0 * base, tl["b1"])
            + tl["real_inner"] * ng_t
        )
        keep = ("length", "rows", "new_rows", "box", "new_box", "distinct_co", "k", "same_co")
        part = {k: tl[k] for k in keep}
        part.update(t=t, ct=np.full(len(t), ct, np.int64), groups=ng_t, reads=reads)
        parts.append(part)
    out = {k: np.concatenate([pt[k] for pt in parts]) for k in parts[0]}
    for v in out.values():
        v.flags.writeable = False
    return out


#: A chunk sequence as segments: ``(chunks, n)`` is ``chunks`` repeated ``n`` times in a row.
Segments = tuple[tuple[dict[str, NDArray[np.int64]], int], ...]


@functools.lru_cache(maxsize=256)
def _tile_segment(g: Geometry, a_units: int, ct: int) -> dict[str, NDArray[np.int64]]:
    """The chunks of one weight tile of ``ct`` channels, ungrouped (every tile alike).

    When ``ct = q*A`` (``q > 1``), the ``q`` chunks of an output position share its window:
    they are the ``A``-channel tile's chunks each repeated ``q`` times, the copies after the
    first loading nothing new.
    """
    q, r = divmod(ct, a_units)
    if q > 1 and r == 0:
        base = _tile_segment(g, a_units, a_units)
        out = {k: np.repeat(base[k], q) for k in ("length", "rows", "box", "distinct_co", "reads")}
        copy = np.tile(np.arange(q, dtype=np.int64), len(base["k"]))
        for k in ("new_rows", "new_box"):
            out[k] = np.where(copy == 0, np.repeat(base[k], q), 0)
        n = len(copy)
        out["k"] = np.arange(n, dtype=np.int64)
        out["same_co"] = np.zeros(n, np.int64)
        out["ct"] = np.full(n, ct, np.int64)
        out["groups"] = np.ones(n, np.int64)
        for v in out.values():
            v.flags.writeable = False
        return out
    c = _tile_chunks(g, a_units, ct)
    keep = ("length", "rows", "new_rows", "box", "new_box", "distinct_co", "k", "same_co")
    out = {k: c[k] for k in keep}
    out["ct"] = np.full(len(c["first"]), ct, np.int64)
    out["groups"] = np.ones(len(c["first"]), np.int64)
    out["reads"] = c["real0"] + c["split"] * c["real1"] + c["real_inner"]
    for v in out.values():
        v.flags.writeable = False
    return out


def _segments(g: Geometry, a_units: int, tile_co: int) -> Segments:
    """:func:`_chunk_table` as segments (ungrouped, every full weight tile is alike)."""
    if g.groups != 1:
        return ((_chunk_table(g, a_units, tile_co), 1),)
    n_full, rest = divmod(g.co, tile_co)
    segs = [
        (_tile_segment(g, a_units, ct), n) for ct, n in ((tile_co, n_full), (rest, 1)) if ct and n
    ]
    return tuple(segs)


def _seq_sum(segs: Segments, f: Callable[[dict[str, NDArray[np.int64]]], NDArray]) -> int:
    """Sum over the chunk sequence of ``f(chunks)``."""
    return sum(n * int(np.sum(f(d))) for d, n in segs)


def _seq_max(segs: Segments, f: Callable[[dict[str, NDArray[np.int64]]], NDArray]) -> int:
    """Maximum over the chunk sequence of ``f(chunks)``."""
    return max(int(np.max(f(d))) for d, _ in segs)


def _seq_max_next(
    segs: Segments,
    cur: Callable[[dict[str, NDArray[np.int64]]], NDArray[np.int64]],
    new: Callable[[dict[str, NDArray[np.int64]]], NDArray[np.int64]],
    first: Callable[[dict[str, NDArray[np.int64]]], NDArray[np.int64]],
    more: bool,
) -> int:
    """Maximum over chunks of ``cur`` plus the next chunk's ``new`` (see :func:`_next`).

    After the element's last chunk comes the next element's first chunk's ``first`` (when
    there is one), else 0.
    """
    curs = [np.broadcast_to(cur(d), d["k"].shape) for d, _ in segs]
    news = [np.broadcast_to(new(d), d["k"].shape) for d, _ in segs]
    vals = []
    for i, (n, c, nw) in enumerate(zip((n for _, n in segs), curs, news, strict=True)):
        if len(c) > 1:
            vals.append(int((c[:-1] + nw[1:]).max()))
        if n > 1:
            vals.append(int(c[-1] + nw[0]))
        if i + 1 < len(segs):
            vals.append(int(c[-1] + news[i + 1][0]))
        else:
            head = np.broadcast_to(first(segs[0][0]), segs[0][0]["k"].shape)[0]
            vals.append(int(c[-1] + (head if more else 0)))
    return max(vals)


def _clear_caches() -> None:
    """Forget every cached table and count (benchmarks time the model cold with it)."""
    for fn in (_tapped_counts, _chunk_table, _tile_segment, _hardware_counts, _map_layer_cached):
        fn.cache_clear()


def pass_table(
    g: Geometry, p: HardwareDesc, hw: Hardware, tile_co: int, tile_c: int
) -> dict[str, NDArray[np.int64]]:
    """The passes of one batch element, in schedule order, as int64 arrays.

    A *pass* is one chunk (``A`` consecutive outputs of a weight tile's sweep) over one
    input-channel tile. Order: tiles ``t`` of ``tile_co`` output channels, their chunks ``k``,
    the input-channel tiles ``ci`` of ``tile_c`` channels per group. Keys: ``t``, ``k``,
    ``ci``, ``tcl`` (channels per group in the pass), ``ct`` (the tile's output channels),
    ``length`` (L), ``rows``/``new_rows`` (tapped rows of the window / not yet loaded in the
    sweep), ``box``/``new_box`` (tapped positions of the window / not in the previous
    chunk's window of the sweep), ``distinct_co``, ``groups`` (groups the tile spans),
    ``reads`` (sum over the chunk's positions of real taps times groups read there: distinct
    input words per cycle, summed over a pass's ``Kh*Kw`` taps, per channel), ``same_co``
    (every unit computes the same output channel as in the previous chunk).
    """
    chunks = _chunk_table(g, parallel_outputs(p, hw), tile_co)
    m = -(-g.cg // tile_c)
    out = {k: np.repeat(v, m) for k, v in chunks.items()}
    ci = np.tile(np.arange(m, dtype=np.int64), len(chunks["t"]))
    out["ci"] = ci
    out["tcl"] = np.minimum(tile_c, g.cg - ci * tile_c)
    return out


def _steps(g: Geometry, p: HardwareDesc, hw: Hardware, tcl: NDArray[np.int64]) -> NDArray:
    """Compute cycles of a pass: ``N*Kh*Kw*ceil(tcl/T)``, or ``tcl*Kh*Kw`` (serial lanes)."""
    if p.serial_lanes:
        return tcl * (g.kh * g.kw)
    return p.passes * g.kh * g.kw * -(-tcl // hw.tree_width)


class _LazyChunks(dict):  # type: ignore[type-arg]
    """A :func:`_chunk_table`, built on first use (the analytic model never reads it)."""

    def __init__(self, build: Callable[[], dict[str, NDArray[np.int64]]]) -> None:
        super().__init__()
        self._build: Callable[[], dict[str, NDArray[np.int64]]] | None = build

    def _fill(self) -> None:
        if self._build is not None:
            build, self._build = self._build, None
            self.update(build())

    def __missing__(self, key: str) -> NDArray[np.int64]:
        self._fill()
        return dict.__getitem__(self, key)

    def __iter__(self):  # type: ignore[no-untyped-def]
        self._fill()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._fill()
        return dict.__len__(self)

    def __contains__(self, key: object) -> bool:
        self._fill()
        return dict.__contains__(self, key)

    def __eq__(self, other: object) -> bool:
        self._fill()
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._fill()
        return dict.__repr__(self)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        self._fill()
        return (dict, (dict(self.items()),))

    def keys(self):  # type: ignore[no-untyped-def]
        self._fill()
        return dict.keys(self)

    def values(self):  # type: ignore[no-untyped-def]
        self._fill()
        return dict.values(self)

    def items(self):  # type: ignore[no-untyped-def]
        self._fill()
        return dict.items(self)

    def get(self, key, default=None):  # type: ignore[no-untyped-def]
        self._fill()
        return dict.get(self, key, default)

    def copy(self) -> dict[str, NDArray[np.int64]]:
        self._fill()
        return dict(dict.items(self))


@dataclass(frozen=True)
class Plan:
    """How a layer runs on a machine: tiles, weight placement, input residency, dataflow.

    Attributes
    ----------
    tile_co : int
        Output channels per weight tile (``Co``: one tile).
    tile_c : int
        Input channels per group and pass (``Cg``: no input-channel tiling). With several
        input-channel tiles the units keep one partial sum per step ``(n, kh, kw)`` across
        them (SPEC §5.1's register updates are unchanged) and the buffers hold one pass's
        window (box mode); with one, the input buffer is a line buffer of rows.
    weights : int
        ``WEIGHTS_RESIDENT``, ``WEIGHTS_SWEEP`` or ``WEIGHTS_PASS``.
    input_resident : bool
        The tapped input rows of an element stay in the input buffer across weight tiles.
    dataflow : str
        ``"ws"`` when the units keep their weights in their register files across the
        output positions they compute (one output channel per unit), else ``"os"``.
    chunks : dict of str to ndarray
        The chunks of one element (:func:`pass_table` before the input-channel tiles).
    """

    tile_co: int
    tile_c: int
    weights: int
    input_resident: bool
    dataflow: str
    chunks: dict[str, NDArray[np.int64]] = field(repr=False)
    cg: int = field(repr=False, default=1)

    @property
    def n_tiles(self) -> int:
        """Weight tiles (sweeps over the image) per batch element."""
        return int(self.chunks["t"][-1]) + 1

    @property
    def n_ctiles(self) -> int:
        """Input-channel tiles per chunk."""
        return -(-self.cg // self.tile_c)

    @functools.cached_property
    def table(self) -> dict[str, NDArray[np.int64]]:
        """:func:`pass_table` of one element."""
        return _expand(self.chunks, self.cg, self.tile_c)


def _expand(
    chunks: dict[str, NDArray[np.int64]], cg: int, tile_c: int
) -> dict[str, NDArray[np.int64]]:
    """Repeat every chunk once per input-channel tile (``ci``, ``tcl`` added)."""
    m = -(-cg // tile_c)
    out = {k: np.repeat(v, m) for k, v in chunks.items()}
    ci = np.tile(np.arange(m, dtype=np.int64), len(chunks["t"]))
    out["ci"] = ci
    out["tcl"] = np.minimum(tile_c, cg - ci * tile_c)
    return out


def _next(arr: NDArray[np.int64], first: NDArray[np.int64], more: bool) -> NDArray[np.int64]:
    """``arr`` of the following chunk (the next element's first when there is one, else 0)."""
    tail = first[:1] if more else np.zeros(1, np.int64)
    return np.concatenate((arr[1:], tail))


def _weight_mode(g: Geometry, p: HardwareDesc, hw: Hardware, tile_co: int) -> int:
    k = g.cg * g.kh * g.kw * p.weight_bits
    cap_w = hw.weight_buffer_bytes * 8
    if g.co * k <= cap_w:
        return WEIGHTS_RESIDENT
    if 2 * min(tile_co, g.co) * k <= cap_w:
        return WEIGHTS_SWEEP
    return WEIGHTS_PASS


def _input_resident(g: Geometry, p: HardwareDesc, hw: Hardware, tile_co: int, tile_c: int) -> bool:
    rows = _tapped_rows(g)
    return bool(
        tile_c >= g.cg
        and g.groups == 1
        and tile_co < g.co
        and 2 * rows * g.c * _tapped_cols(g) * p.act_bits <= hw.input_buffer_bytes * 8
    )


def buffer_needs(
    g: Geometry,
    p: HardwareDesc,
    hw: Hardware,
    chunks: dict[str, NDArray[np.int64]],
    tile_c: int,
    weights: int,
    input_resident: bool,
) -> dict[str, int]:
    """Bits each buffer must hold for this mapping (double-buffered where it loads ahead).

    Line mode (one input-channel tile): the rows of a chunk's window plus the next chunk's
    new rows, all the tile's channels (or every tapped row of two elements when resident);
    shift buffer: the window's positions plus the next chunk's new ones, ``P-1`` words each.
    Box mode: two consecutive passes' windows, their channels. Weights: all, two tiles, or
    two chunks' slices. Output: two chunks of results.
    """
    return _needs(g, p, hw, ((chunks, 1),), tile_c, weights, input_resident)


def _needs(
    g: Geometry,
    p: HardwareDesc,
    hw: Hardware,
    segs: Segments,
    tile_c: int,
    weights: int,
    input_resident: bool,
) -> dict[str, int]:
    """:func:`buffer_needs` of a chunk sequence given as segments."""
    m = -(-g.cg // tile_c)
    more = g.batch > 1
    word = p.words_per_input * p.word_bits
    if m == 1:
        cg = g.cg
        if input_resident:
            inp = 2 * _tapped_rows(g) * g.c * _tapped_cols(g) * p.act_bits
        else:

            def rows(d: dict[str, NDArray[np.int64]]) -> NDArray[np.int64]:
                return d["rows"] * d["groups"] * cg

            inp = _seq_max_next(segs, rows, lambda d: d["new_rows"] * d["groups"] * cg, rows, more)
            inp *= _tapped_cols(g) * p.act_bits

        def box(d: dict[str, NDArray[np.int64]]) -> NDArray[np.int64]:
            return d["box"] * d["groups"] * cg

        both = _seq_max_next(segs, box, lambda d: d["new_box"] * d["groups"] * cg, box, more)
        shift = both * word
    else:  # two consecutive passes: within a chunk, or a chunk's last and the next's first
        # Within a chunk: its largest window times two full tiles' channels (a full and the
        # last when m = 2). Across chunks (the last tile's channels, then a full tile's) it
        # is never more: each window is at most the largest and last <= tile_c.
        last = g.cg - (m - 1) * tile_c
        vmax = _seq_max(segs, lambda d: d["box"] * d["groups"])
        both = vmax * (2 * tile_c if m > 2 else tile_c + last)
        inp = both * p.act_bits
        shift = both * word
    k = g.kh * g.kw * p.weight_bits
    if weights == WEIGHTS_RESIDENT:
        wgt = g.co * g.cg * k
    elif weights == WEIGHTS_SWEEP:
        wgt = 2 * _seq_max(segs, lambda d: d["ct"]) * g.cg * k
    else:
        wgt = 2 * _seq_max(segs, lambda d: d["distinct_co"]) * min(tile_c, g.cg) * k
    return {
        "input_buffer_bytes": inp,
        "shift_buffer_bytes": shift if p.has_shift_unit else 0,
        "weight_buffer_bytes": wgt,
        "output_buffer_bytes": 2 * min(parallel_outputs(p, hw), g.outputs) * p.acc_bits,
    }


def _cdiv(a: NDArray[np.int64] | int, b: int) -> NDArray[np.int64]:
    return -(-np.asarray(a, dtype=np.int64) // b)


def hardware_counts(g: Geometry, p: HardwareDesc, hw: Hardware, pl: Plan) -> dict[str, int]:
    """Closed-form hardware counts of ``pl`` (every field of the cycle model's but arithmetic).

    See the package docstring of :mod:`shiftsim.cycle` for the formulas. Evaluated per chunk,
    not per pass: a chunk's ``m`` passes are ``m - 1`` full input-channel tiles of ``tile_c``
    channels and a last one of ``Cg - (m-1)*tile_c``, so every sum over passes is ``m - 1``
    times the full pass's term plus the last pass's, and the pipelined schedule's
    ``max(steps, next prep + previous store)`` takes one of four forms per chunk.
    """
    return dict(_hardware_counts(g, p, hw, pl.tile_co, pl.tile_c, pl.weights, pl.input_resident))


@functools.lru_cache(maxsize=256)
def _hardware_counts(
    g: Geometry, p: HardwareDesc, hw: Hardware, tile_co: int, tile_c: int, weights: int,
    input_resident: bool,
) -> tuple[tuple[str, int], ...]:  # fmt: skip
    m = -(-g.cg // tile_c)
    line = m == 1
    full, last = min(tile_c, g.cg), g.cg - (m - 1) * tile_c
    nf = m - 1
    k_taps = g.kh * g.kw
    batch = g.batch
    word = p.words_per_input * p.word_bits if p.has_shift_unit else p.act_bits
    bw, sw = hw.dram_bytes_per_cycle, hw.shift_width
    segs = list(_segments(g, parallel_outputs(p, hw), tile_co))
    resident_in = line and input_resident
    if resident_in:  # only the element's first chunk loads (every tapped row)
        d0, n0 = segs[0]
        head = {k: v[:1] for k, v in d0.items()}
        rest = {k: v[1:] for k, v in d0.items()}
        lead = [(head, 1)] + ([(rest, 1)] if len(rest["k"]) else [])
        segs = lead + ([(d0, n0 - 1)] if n0 > 1 else []) + segs[1:]
    in_all = _tapped_rows(g) * g.c * _tapped_cols(g) * p.act_bits

    def per_pass(d: dict[str, NDArray[np.int64]], tcl: int, head: bool) -> dict[str, NDArray]:
        """One pass of every chunk of ``d`` with ``tcl`` channels per group (bits)."""
        zero = np.zeros(len(d["k"]), np.int64)
        chans = d["groups"] * tcl
        if resident_in:
            in_e = zero + (in_all if head else 0)
        elif line:
            in_e = d["new_rows"] * chans * (_tapped_cols(g) * p.act_bits)
        else:
            in_e = d["box"] * chans * p.act_bits
        if p.has_shift_unit:
            shift_e = (d["new_box"] if line else d["box"]) * chans
        else:
            shift_e = zero
        w_slice = tcl * k_taps * p.weight_bits
        if weights == WEIGHTS_SWEEP:
            w_e = (d["k"] == 0) * d["ct"] * w_slice
        elif weights == WEIGHTS_PASS:
            w_e = d["distinct_co"] * w_slice
        else:
            w_e = zero
        per_term = tcl * k_taps * p.passes * p.pass_weight_bits
        rf_fits = hw.weight_rf_entries >= tcl * k_taps
        rf_use = d["length"] * per_term
        w_reads = d["distinct_co"] * per_term
        rf_write = rf_use if rf_fits else zero
        if line and rf_fits:  # the unit keeps its weights from the previous chunk
            w_reads = np.where(d["same_co"] == 1, 0, w_reads)
            rf_write = np.where(d["same_co"] == 1, 0, rf_use)
        rd = _cdiv(in_e, 8) + _cdiv(w_e, 8)
        return {
            "in": in_e, "shift": shift_e, "w": w_e, "w_reads": w_reads, "rf_write": rf_write,
            "rf_read": rf_use if rf_fits else zero, "reads": d["reads"] * (tcl * p.passes * word),
            "rd": rd, "prep": _cdiv(rd, bw) + _cdiv(shift_e, sw),
        }  # fmt: skip

    parts = []
    for i, (d, n) in enumerate(segs):
        lp = per_pass(d, last, resident_in and i == 0)
        fp = per_pass(d, full, resident_in and i == 0) if m > 1 else lp
        store = _cdiv(_cdiv(d["length"] * p.acc_bits, 8), bw)
        parts.append((d, n, fp, lp, store))

    def total(key: str) -> int:
        """Sum over the element's passes."""
        return sum(n * (nf * int(fp[key].sum()) + int(lp[key].sum())) for _, n, fp, lp, _ in parts)

    s_f, s_l = (
        (full * k_taps, last * k_taps)
        if p.serial_lanes
        else (p.passes * k_taps * -(-full // hw.tree_width),
              p.passes * k_taps * -(-last // hw.tree_width))
    )  # fmt: skip
    n_chunks = sum(n * len(d["k"]) for d, n, *_ in parts)
    compute = batch * n_chunks * (nf * s_f + s_l)
    first_fp = parts[0][2]
    rd_first = int(first_fp["rd"][0])
    rd0 = rd_first
    w_res = g.co * g.cg * k_taps * p.weight_bits if weights == WEIGHTS_RESIDENT else 0
    if weights == WEIGHTS_RESIDENT:  # the very first pass also loads every weight
        rd0 = int(_cdiv(first_fp["in"][0], 8)) + int(_cdiv(w_res, 8))
    prep0 = int(_cdiv(rd0, bw)) + int(_cdiv(first_fp["shift"][0], sw))
    last_store = int(parts[-1][4][-1])
    if hw.pipelined:

        def body(fp: dict, lp: dict, store: NDArray, nxt_x: int, before_y: int) -> int:
            """``sum max(steps, next prep + previous store)`` over one copy's passes."""
            nxt = np.concatenate((fp["prep"][1:], [nxt_x]))  # the next chunk's first pass
            before = np.concatenate(([before_y], store[:-1]))  # the previous chunk's store
            if m == 1:
                return int(np.maximum(s_l, nxt + before).sum())
            out = np.maximum(s_l, nxt) + np.maximum(s_f, (fp if m > 2 else lp)["prep"] + before)
            if m > 2:
                out = out + (m - 3) * np.maximum(s_f, fp["prep"]) + np.maximum(s_f, lp["prep"])
            return int(out.sum())

        seq = parts * batch
        acc = 0
        for i, (_, n, fp, lp, store) in enumerate(seq):
            nxt_x = int(seq[i + 1][2]["prep"][0]) if i + 1 < len(seq) else 0
            before_y = int(seq[i - 1][4][-1]) if i > 0 else 0
            own_x, own_y = int(fp["prep"][0]), int(store[-1])
            if n == 1:
                acc += body(fp, lp, store, nxt_x, before_y)
            else:
                acc += body(fp, lp, store, own_x, before_y) + body(fp, lp, store, nxt_x, own_y)
                if n > 2:
                    acc += (n - 2) * body(fp, lp, store, own_x, own_y)
        cycles = prep0 + acc + last_store
    else:
        stores = sum(n * int(st.sum()) for _, n, _, _, st in parts)
        cycles = batch * (total("prep") + stores) + prep0 - int(first_fp["prep"][0]) + compute
    shift_inputs = batch * total("shift") if p.has_shift_unit else 0
    reads = total("reads")
    length_sum = sum(n * int(d["length"].sum()) for d, n, *_ in parts)
    psum = 0 if p.serial_lanes else nf * length_sum * (p.passes * k_taps * p.acc_bits)
    out_bits = batch * length_sum * p.acc_bits
    wr = sum(n * int(_cdiv(d["length"] * p.acc_bits, 8).sum()) for d, n, *_ in parts)
    return tuple({
        "cycles": cycles,
        "compute_cycles": compute,
        "stall_cycles": cycles - compute,
        "input_buffer_write_bits": batch * total("in"),
        "input_buffer_read_bits": batch
        * (total("shift") * p.act_bits if p.has_shift_unit else reads),
        "shift_buffer_write_bits": shift_inputs * p.words_per_input * p.word_bits,
        "shift_buffer_read_bits": batch * reads if p.has_shift_unit else 0,
        "weight_buffer_write_bits": batch * total("w") + w_res,
        "weight_buffer_read_bits": batch * total("w_reads"),
        "weight_rf_write_bits": batch * total("rf_write"),
        "weight_rf_read_bits": batch * total("rf_read"),
        "psum_write_bits": batch * psum,
        "psum_read_bits": batch * psum,
        "output_buffer_write_bits": out_bits,
        "output_buffer_read_bits": out_bits,
        "dram_read_bytes": batch * total("rd") + rd0 - rd_first,
        "dram_write_bytes": batch * wr,
        "shift_unit_inputs": shift_inputs,
    }.items())  # fmt: skip


def compulsory_dram_bytes(g: Geometry, p: HardwareDesc) -> int:
    """DRAM bytes if every input, weight and output moved once (the tapped inputs only)."""
    inputs = g.batch * g.c * _tapped_rows(g) * _tapped_cols(g) * p.act_bits
    weights = g.co * g.cg * g.kh * g.kw * p.weight_bits
    outputs = g.batch * g.outputs * p.acc_bits
    return -(-inputs // 8) + -(-weights // 8) + -(-outputs // 8)


def _dram_bytes(g: Geometry, p: HardwareDesc, pl: Plan) -> int:
    """DRAM bytes of ``pl`` summed per chunk (the closed form of :func:`hardware_counts`)."""
    return _dram(g, p, ((pl.chunks, 1),), pl.tile_c, pl.weights, pl.input_resident)


def _dram(
    g: Geometry, p: HardwareDesc, segs: Segments, tile_c: int, weights: int, resident: bool
) -> int:
    """:func:`_dram_bytes` of a chunk sequence given as segments."""
    m = -(-g.cg // tile_c)
    last = g.cg - (m - 1) * tile_c

    def per_pass(bits_per_channel: NDArray[np.int64]) -> NDArray[np.int64]:
        """Bytes of the chunk's passes when a pass moves ``bits_per_channel * tcl`` bits."""
        return (m - 1) * _cdiv(bits_per_channel * tile_c, 8) + _cdiv(bits_per_channel * last, 8)

    k = g.kh * g.kw * p.weight_bits
    row_bits = g.cg * _tapped_cols(g) * p.act_bits
    if m == 1 and resident:
        inp = int(_cdiv(_tapped_rows(g) * g.c * _tapped_cols(g) * p.act_bits, 8))
    elif m == 1:
        inp = _seq_sum(segs, lambda d: _cdiv(d["new_rows"] * d["groups"] * row_bits, 8))
    else:
        inp = _seq_sum(segs, lambda d: per_pass(d["box"] * d["groups"] * p.act_bits))
    if weights == WEIGHTS_SWEEP:
        wgt = _seq_sum(segs, lambda d: per_pass(d["ct"][d["k"] == 0] * k))
    elif weights == WEIGHTS_PASS:
        wgt = _seq_sum(segs, lambda d: per_pass(d["distinct_co"] * k))
    else:
        wgt = 0
    out = _seq_sum(segs, lambda d: _cdiv(d["length"] * p.acc_bits, 8))
    total = g.batch * (inp + wgt + out)
    if weights == WEIGHTS_RESIDENT:
        total += int(_cdiv(g.co * g.cg * k, 8))
    return total


def _candidates(limit: int, unit: int) -> list[int]:
    """``limit``, the multiples ``unit * 2**j`` below it and ``unit / 2**j`` down to 1."""
    vals = {limit}
    v = unit
    while v < limit:
        vals.add(v)
        v *= 2
    v = unit
    while v >= 1:
        if v <= limit:
            vals.add(v)
        v //= 2
    vals.add(1)
    return sorted(vals, reverse=True)


def _mapping(
    g: Geometry, p: HardwareDesc, hw: Hardware, tile_co: int, tile_c: int
) -> tuple[Plan, dict[str, int]]:
    """The plan of these tiles (weight placement and input residency chosen) and its needs."""
    weights, resident, dataflow, needs = _choose(g, p, hw, tile_co, tile_c)
    chunks = _chunk_table(g, parallel_outputs(p, hw), tile_co)
    return Plan(tile_co, tile_c, weights, resident, dataflow, chunks, g.cg), needs


def _choose(
    g: Geometry, p: HardwareDesc, hw: Hardware, tile_co: int, tile_c: int
) -> tuple[int, bool, str, dict[str, int]]:
    """Weight placement, input residency and dataflow of these tiles, and their needs."""
    a_units = parallel_outputs(p, hw)
    segs = _segments(g, a_units, tile_co)
    weights = _weight_mode(g, p, hw, tile_co)
    resident = _input_resident(g, p, hw, tile_co, tile_c)
    per_unit = g.cg * g.kh * g.kw
    ws = tile_c >= g.cg and a_units % tile_co == 0 and per_unit <= hw.weight_rf_entries
    ws = ws and any(bool(d["same_co"].any()) for d, _ in segs)
    return (
        weights,
        resident,
        "ws" if ws else "os",
        _needs(g, p, hw, segs, tile_c, weights, resident),
    )


def _fits(needs: dict[str, int], hw: Hardware) -> bool:
    return all(bits <= getattr(hw, name) * 8 for name, bits in needs.items())


def smallest_tile_needs(g: Geometry, p: HardwareDesc, hw: Hardware) -> dict[str, int]:
    """Bytes each buffer needs for the smallest legal tile (one output and one input channel).

    The weights reloaded every pass (or all resident when that is less), the inputs not
    resident. A machine whose buffers hold these maps the layer (:func:`plan` refuses a
    machine only when no tile fits, naming the first buffer short of these).
    """
    segs = _segments(g, parallel_outputs(p, hw), 1)
    needs = _needs(g, p, hw, segs, 1, WEIGHTS_PASS, False)
    resident = _needs(g, p, hw, segs, 1, WEIGHTS_RESIDENT, False)
    key = "weight_buffer_bytes"
    needs[key] = min(needs[key], resident[key])
    return {name: -(-bits // 8) for name, bits in needs.items()}


def plan(
    g: Geometry,
    p: HardwareDesc,
    hw: Hardware,
    *,
    where: str = "this layer",
    energy: Callable[[Plan], float] | None = None,
) -> Plan:
    """Choose the mapping of a layer onto ``hw``: tiles, weight placement, dataflow.

    Candidates: for each output-channel tile size (``Co``, multiples and divisors of ``A``
    by powers of two, 1), the largest input-channel tile whose buffers fit (for a given
    output tile the largest moves the least DRAM data). ``hw.dataflow``: ``"os"`` takes
    the candidate with the least DRAM traffic (then the largest tile), ``"ws"`` the best
    weight-stationary candidate (output tiles dividing ``A``, every unit keeping one output
    channel's weights in its register file across the positions it computes) when there
    is one, ``"auto"`` the lower ``energy(plan)`` of the two.

    Raises
    ------
    ValueError
        When even the smallest tile (one output channel, one input channel, the weights
        reloaded every pass) does not fit: naming ``where``, the buffer and the bytes needed.
    """
    a_units = parallel_outputs(p, hw)
    found: list[tuple[tuple[int, int], tuple[int, int, int, bool, str]]] = []
    floor = compulsory_dram_bytes(g, p)
    done = {"os": False, "ws": hw.dataflow == "os"}
    for tile_co in _candidates(g.co, a_units):
        for tile_c in _candidates(g.cg, hw.tree_width):
            weights, resident, dataflow, needs = _choose(g, p, hw, tile_co, tile_c)
            if _fits(needs, hw):
                segs = _segments(g, a_units, tile_co)
                dram = _dram(g, p, segs, tile_c, weights, resident)
                found.append(((dram, -tile_co), (tile_co, tile_c, weights, resident, dataflow)))
                if dram == floor:  # nothing smaller can beat it (ties: the larger tile)
                    done["os"] = True
                    done["ws"] = done["ws"] or dataflow == "ws"
                break  # the largest fitting input-channel tile of this output tile
        if done["os"] and done["ws"]:
            break
    if not found:
        needs = smallest_tile_needs(g, p, hw)
        for name, need in needs.items():
            if need > getattr(hw, name):
                raise ValueError(
                    f"{where}: {name}={getattr(hw, name)} is too small for this layer: the"
                    f" smallest tile (1 output channel, 1 input channel) needs at least"
                    f" {need} bytes"
                )
        raise AssertionError("no mapping fits, yet the smallest tile does")  # pragma: no cover

    def make(choice: tuple[int, int, int, bool, str]) -> Plan:
        tile_co, tile_c, weights, resident, dataflow = choice
        chunks = _LazyChunks(functools.partial(_chunk_table, g, a_units, tile_co))
        return Plan(tile_co, tile_c, weights, resident, dataflow, chunks, g.cg)

    least_key, least = min(found, key=lambda kv: kv[0])
    ws = [kv for kv in found if kv[1][4] == "ws"]
    if hw.dataflow == "os" or not ws:
        return make(least)
    ws_key, best_ws = min(ws, key=lambda kv: kv[0])
    if hw.dataflow == "ws" or ws_key == least_key:
        return make(best_ws)
    if energy is None:
        return make(least)
    return min((make(least), make(best_ws)), key=energy)


def map_layer(
    g: Geometry,
    p: HardwareDesc,
    hw: Hardware,
    *,
    where: str = "this layer",
    table: EnergyTable | None = None,
) -> Plan:
    """:func:`plan` with ``auto`` deciding by the storage energy of ``table`` (the default).

    Cached by ``(g, p, hw, where, table)`` (a table that cannot be hashed is not cached).
    """
    try:
        hash(table)
    except TypeError:
        return _map_layer(g, p, hw, where, table)
    return _map_layer_cached(g, p, hw, where, table)


def _map_layer(
    g: Geometry, p: HardwareDesc, hw: Hardware, where: str, table: EnergyTable | None
) -> Plan:
    def energy(pl: Plan) -> float:
        return energy_pj(Counts(**hardware_counts(g, p, hw, pl)), p, hw, table)

    return plan(g, p, hw, where=where, energy=energy)


_map_layer_cached = functools.lru_cache(maxsize=1024)(_map_layer)
