"""The schedule's mapping: layer geometry, tiles, buffer requirements, closed-form traffic.

The cycle-stepped model (:mod:`shiftsim.cycle.model`) and the analytic model
(:mod:`shiftsim.cost`) both run the :class:`Plan` that :func:`plan` chooses; the stepped model
then counts every event as it moves data, while :func:`hardware_counts` gives the same counts
in closed form, which is what makes their agreement a test. For speed (a sweep evaluates
thousands of machines) the closed forms never walk the chunks when they evaluate a machine:
every full weight tile of an ungrouped layer is alike, and a tile's chunk sequence is
summarised once (per geometry and number of units) into its distinct chunks *in context* (the
chunk's features, the next chunk's, the previous chunk's length: everything a term of the
closed forms reads) with their multiplicities (:class:`_Summary`), so that every sum over the
chunks is a weighted sum over a few hundred rows, and a chunk's ``m`` passes are ``m - 1``
full input-channel tiles plus the last. The mapping search reads each output tile's buffer
needs from cached maxima and skips output tiles whose DRAM lower bound cannot beat the best
found. Summaries, maxima, counts and mappings are cached, each keyed by what it reads and
nothing more, so that the machines of a sweep share what does not depend on them:

- per geometry and ``A`` (:func:`parallel_outputs`): the chunk summaries and their maxima;
- per output tile and weight placement (and ``T``, which sets the input-channel tiles):
  each input-channel tile's buffer needs, with the inputs resident and not, and whether it
  can be weight-stationary (:func:`_tile_options`); per tiling, its DRAM bytes;
- per tiling and the machine's :class:`_Machine` fields (``A``, ``T``, shift width, DRAM
  port, register file, pipelining): the hardware counts. A sweep over buffer sizes meets
  the same few tilings again and again;
- per machine (every field): the mapping (:func:`map_layer`), which checks the buffers,
  the machine's part of input residency and of weight-stationarity, and prices ``auto``.

The formulas are in the package docstring of :mod:`shiftsim.cycle`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

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

    @functools.cached_property
    def cg(self) -> int:
        """Input channels per group."""
        return self.c // self.groups

    def __hash__(self) -> int:
        # the caches look a geometry up many times per machine: hash its ints once
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in fields(self)))

    @functools.cached_property
    def outputs(self) -> int:
        """Outputs per batch element, ``Co*Ho*Wo``."""
        return self.co * self.ho * self.wo


def geometry(layer: Conv2d | Linear, input_shape: tuple[int, ...]) -> Geometry:
    """Loop bounds of ``layer`` on an input of ``input_shape`` (validated).

    The same layer and shape give the same :class:`Geometry` object (cached), so that the
    caches keyed by it compare keys by identity.

    Raises
    ------
    TypeError, ValueError
        If ``layer`` is not a layer or ``input_shape`` does not fit it.
    """
    if not isinstance(layer, (Conv2d, Linear)):
        raise TypeError(f"layer must be a Conv2d or Linear, got {type(layer).__name__}")
    return _geometry(layer, tuple(int(v) for v in input_shape))


@functools.lru_cache(maxsize=4096)
def _geometry(layer: Conv2d | Linear, shape: tuple[int, ...]) -> Geometry:
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


def _real_taps(g: Geometry) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Kernel rows (per output row) and columns (per output column) inside the image."""
    oh = np.arange(g.ho)[:, None] * g.sh - g.ph + np.arange(g.kh)[None, :] * g.dh
    ow = np.arange(g.wo)[:, None] * g.sw - g.pw + np.arange(g.kw)[None, :] * g.dw
    rr = ((oh >= 0) & (oh < g.h)).sum(axis=1).astype(np.int64)
    cc = ((ow >= 0) & (ow < g.w)).sum(axis=1).astype(np.int64)
    return rr, cc


def _real_per_position(g: Geometry) -> NDArray[np.int64]:
    """Kernel taps of each output position (raster order) that land inside the image."""
    rr, cc = _real_taps(g)
    return (rr[:, None] * cc[None, :]).ravel()


@functools.lru_cache(maxsize=256)
def _tapped_prefix(g: Geometry) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Prefix sums of the tapped rows and columns (``cum[i]``: tapped indices below ``i``)."""
    trow, tcol = tapped(g)
    out = (np.concatenate(([0], np.cumsum(trow))), np.concatenate(([0], np.cumsum(tcol))))
    for v in out:
        v.flags.writeable = False
    return out


@functools.lru_cache(maxsize=256)
def _prefix_sums(
    g: Geometry,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Prefix sums of the tapped rows and columns; real taps per position and their sums."""
    real = _real_per_position(g)
    real.flags.writeable = False
    rcs = np.concatenate(([0], np.cumsum(real)))
    rcs.flags.writeable = False
    return (*_tapped_prefix(g), real, rcs)


def _tile_chunks(g: Geometry, a_units: int, ct: int) -> dict[str, NDArray[np.int64]]:
    """Chunks of one output-channel tile of ``ct`` channels (see :func:`pass_table`)."""
    rcum, ccum, real, rcs = _prefix_sums(g)
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


#: Per-chunk features a summary keeps (see :class:`_Summary`): the chunk's length, its
#: window's rows, new rows, positions and new positions (each times the groups it spans),
#: distinct output channels, whether it is a sweep's first chunk (``k0``), ``same_co``, the
#: tile's channels and ``reads``.
_CUR = ("length", "rg", "nrg", "bg", "nbg", "dco", "k0", "same", "ct", "reads")
#: Features of the following chunk a chunk's terms read (its first pass's loads).
_NXT = ("nrg", "bg", "nbg", "dco", "k0", "ct")


@dataclass(frozen=True, eq=False)
class _Summary:
    """A chunk sequence compressed to its distinct chunks in context, with multiplicities.

    Every closed form of this module is a sum or a maximum over chunks of a term that reads
    the chunk's features, the next chunk's (its loads are prepared during this chunk) and
    the previous chunk's length (its results are stored during this chunk). Row ``i`` is
    such a triple, ``w[i]`` how many chunks it stands for (rows are distinct when built by
    :func:`_summarise`; two rows may be equal, which no sum or maximum minds); a sum over
    the sequence is ``sum(w * term(rows))``. The first chunk (row ``first``) and the last
    (row ``last``) are rows of their own with weight 1: their previous (next) chunk lies
    outside the sequence (``has_prev``/``has_next`` false), and the caller supplies it. A
    few hundred rows stand for the tens of thousands of chunks of a large layer, and the
    search over tilings and machines evaluates only those.
    """

    n: int
    cur: dict[str, NDArray[np.int64]]
    nxt: dict[str, NDArray[np.int64]]
    prev_len: NDArray[np.int64]
    w: NDArray[np.int64]
    has_next: NDArray[np.bool_]
    has_prev: NDArray[np.bool_]
    first: int
    last: int

    @functools.cached_property
    def sums(self) -> dict[str, int]:
        """``sum(w * x)`` of every feature, and of ``dco`` and ``length`` where not ``same``."""
        out = {k: int(np.dot(self.w, v)) for k, v in self.cur.items()}
        keep = 1 - self.cur["same"]
        out["dco_ns"] = int(np.dot(self.w, self.cur["dco"] * keep))
        out["length_ns"] = int(np.dot(self.w, self.cur["length"] * keep))
        out["k0ct"] = int(np.dot(self.w, self.cur["k0"] * self.cur["ct"]))
        out["chunks"] = int(self.w.sum())
        return out

    @functools.cached_property
    def _mod8(self) -> dict[str, tuple[int, list[int]]]:
        """Per feature (filled on first use), ``sum(w * x)`` and each residue's weight."""
        return {}

    @functools.cached_property
    def _round_up(self) -> dict[tuple[str, int], int]:
        """Per feature and ``bits mod 8`` (filled on first use), ``sum(w * (-x*bits mod 8))``."""
        return {}

    def bytes_sum(self, name: str, bits: int) -> int:
        """``sum over chunks of ceil(x * bits / 8)`` for the feature ``name`` (``x >= 0``).

        ``ceil(y / 8) = (y + (-y mod 8)) / 8`` and ``-x*bits mod 8`` depends only on
        ``x mod 8``: the sum is exact from the residues' weights.
        """
        if name not in self._mod8:
            x = self.cur["k0"] * self.cur["ct"] if name == "k0ct" else self.cur[name]
            counts = np.bincount(x % 8, weights=self.w, minlength=8)
            self._mod8[name] = (int(np.dot(self.w, x)), [int(v) for v in counts])
        total, res = self._mod8[name]
        key = (name, bits % 8)
        up = self._round_up.get(key)
        if up is None:
            up = self._round_up[key] = sum(c * (-r * bits % 8) for r, c in enumerate(res) if c)
        return (total * bits + up) // 8


def _distinct(
    cols: list[NDArray[np.int64]],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The first index of each distinct row of the columns ``cols`` and how often it occurs.

    The columns are packed into one integer key (mixed radix over each column's range) when
    it fits in 62 bits, else compared as rows.
    """
    key = np.zeros(len(cols[0]), np.int64)
    size = 1
    for col in cols:
        lo, hi = int(col.min()), int(col.max())
        if hi > lo:
            key += (col - lo) * size
            size *= hi - lo + 1
            if size >= 1 << 62:  # pragma: no cover - real layers pack into 62 bits
                _, idx, counts = np.unique(
                    np.stack(cols, axis=1), axis=0, return_index=True, return_counts=True
                )
                return idx, counts.astype(np.int64)
    _, idx, counts = np.unique(key, return_index=True, return_counts=True)
    return idx, counts.astype(np.int64)


def _summarise(d: dict[str, NDArray[np.int64]]) -> _Summary:
    """:class:`_Summary` of the chunks ``d`` (one array per key of :func:`pass_table`)."""
    grp = d["groups"]
    feat = {
        "length": d["length"], "rg": d["rows"] * grp, "nrg": d["new_rows"] * grp,
        "bg": d["box"] * grp, "nbg": d["new_box"] * grp, "dco": d["distinct_co"],
        "k0": (d["k"] == 0).astype(np.int64), "same": d["same_co"], "ct": d["ct"],
        "reads": d["reads"],
    }  # fmt: skip
    feat = {k: np.asarray(v, np.int64) for k, v in feat.items()}
    n = len(feat["length"])
    # rows: the first chunk, the last, then the distinct inner chunks in context
    j_cur = [0] + ([n - 1] if n > 1 else [])
    w = [1] * len(j_cur)
    inner = np.zeros(0, np.int64)
    counts = np.zeros(0, np.int64)
    if n > 2:
        cols = [feat[k][1:-1] for k in _CUR] + [feat[k][2:] for k in _NXT]
        idx, counts = _distinct([*cols, feat["length"][:-2]])
        inner = idx + 1
    jc = np.concatenate((np.array(j_cur, np.int64), inner))
    jn = np.minimum(jc + 1, n - 1)
    jp = np.maximum(jc - 1, 0)
    has_next = jc < n - 1
    has_prev = jc > 0
    return _Summary(
        n=n,
        cur={k: feat[k][jc] for k in _CUR},
        nxt={k: feat[k][jn] for k in _NXT},
        prev_len=feat["length"][jp],
        w=np.concatenate((np.array(w, np.int64), counts)),
        has_next=has_next,
        has_prev=has_prev,
        first=0,
        last=1 if n > 1 else 0,
    )


def _copies(b: _Summary, q: int, ct: int) -> _Summary:
    """The summary of a tile of ``ct = q*A`` channels from ``b``, the ``A``-channel tile's.

    Every chunk of ``b`` (one position, all ``A`` long) becomes ``q`` chunks of the same
    window, the copies after the first loading nothing new (see :func:`_tile_segment`):
    each row of ``b`` gives its first copy, the ``q - 2`` middle ones and the last.
    """
    zero = np.zeros(len(b.w), np.int64)
    ctv = np.full(len(b.w), ct, np.int64)
    first = dict(b.cur, same=zero, ct=ctv)
    later = dict(first, nrg=zero, nbg=zero, k0=zero)
    to_copy = {"nrg": zero, "bg": b.cur["bg"], "nbg": zero, "dco": b.cur["dco"], "k0": zero,
               "ct": ctv}  # fmt: skip
    to_next = dict(b.nxt, ct=ctv)
    yes = np.ones(len(b.w), bool)
    parts = [(first, to_copy, b.prev_len, b.w, yes, b.has_prev)]
    if q > 2:
        parts.append((later, to_copy, b.cur["length"], b.w * (q - 2), yes, yes))
    parts.append((later, to_next, b.cur["length"], b.w, b.has_next, yes))
    return _Summary(
        n=b.n * q,
        cur={k: np.concatenate([pt[0][k] for pt in parts]) for k in _CUR},
        nxt={k: np.concatenate([pt[1][k] for pt in parts]) for k in _NXT},
        prev_len=np.concatenate([pt[2] for pt in parts]),
        w=np.concatenate([pt[3] for pt in parts]),
        has_next=np.concatenate([pt[4] for pt in parts]),
        has_prev=np.concatenate([pt[5] for pt in parts]),
        first=b.first,
        last=(len(parts) - 1) * len(b.w) + b.last,
    )


#: A chunk sequence as segments: ``(summary, n)`` is the summary's chunks repeated ``n`` times.
Segments = tuple[tuple[_Summary, int], ...]


@functools.lru_cache(maxsize=4096)
def _tile_summary(g: Geometry, a_units: int, ct: int) -> _Summary:
    """:class:`_Summary` of :func:`_tile_segment` (a multiple of ``A`` from ``A``'s)."""
    q, r = divmod(ct, a_units)
    if q > 1 and r == 0:
        return _copies(_tile_summary(g, a_units, a_units), q, ct)
    if ct == a_units:
        return _position_summary(g, a_units)
    return _summarise(_tile_segment(g, a_units, ct))


def _position_summary(g: Geometry, a_units: int) -> _Summary:
    """:class:`_Summary` of the ``A``-channel tile from the rows and columns, not the chunks.

    Chunk ``k`` of this tile is output position ``(oh, ow) = divmod(k, Wo)``, all ``A``
    channels: its window is the rows of ``oh`` times the columns of ``ow``, so that every
    feature is a product of a row's term and a column's. With, per output row, ``RW`` (tapped
    rows of its window), ``NR`` (those no earlier row loaded), ``RI`` (those it shares with
    the previous row's window) and ``rr`` (real kernel rows), and per output column ``CW``,
    ``CI`` (shared with the previous column's window) and ``cc``; ``CX`` the columns the
    windows of the first and the last column share:

    - ``ow > 0``: ``rows = RW``, ``new_rows = 0``, ``box = RW*CW``,
      ``new_box = RW*(CW - CI)``;
    - ``ow = 0`` (``k > 0``): ``new_rows = NR``, ``new_box = RW*CW - RI*CX`` (the previous
      chunk ends the previous row);
    - ``reads = rr*cc``; ``length = distinct_co = ct = A``; ``same_co`` but for the first.

    Rows: the first and the last chunk; the chunks inside a row (``0 < ow < Wo - 1``) as
    the pairs of distinct row terms and distinct column terms, each weighted by the product
    of their multiplicities; each row's last chunk and first chunk one row per output row.
    Rows need not be distinct: every closed form is a weighted sum or a maximum over them.
    """
    rcum, ccum = _tapped_prefix(g)
    ho, wo, a = g.ho, g.wo, a_units
    oh = np.arange(ho, dtype=np.int64)
    ow = np.arange(wo, dtype=np.int64)
    r0 = np.maximum(oh * g.sh - g.ph, 0)
    r1 = np.minimum(oh * g.sh - g.ph + (g.kh - 1) * g.dh, g.h - 1)
    c0 = np.maximum(ow * g.sw - g.pw, 0)
    c1 = np.minimum(ow * g.sw - g.pw + (g.kw - 1) * g.dw, g.w - 1)
    ends = np.where(r1 >= r0, r1, -1)
    seen = np.concatenate(([-1], np.maximum.accumulate(ends)[:-1]))
    rw = _count(rcum, r0, r1)
    nr = _count(rcum, np.maximum(r0, seen + 1), r1)
    ri = np.concatenate(
        ([0], _count(rcum, np.maximum(r0[1:], r0[:-1]), np.minimum(r1[1:], r1[:-1])))
    )
    cw = _count(ccum, c0, c1)
    ci = np.concatenate(
        ([0], _count(ccum, np.maximum(c0[1:], c0[:-1]), np.minimum(c1[1:], c1[:-1])))
    )
    cx = int(_count(ccum, np.maximum(c0[:1], c0[-1:]), np.minimum(c1[:1], c1[-1:]))[0])
    rr, cc = _real_taps(g)

    def chunk(i: NDArray[np.int64], j: NDArray[np.int64]) -> dict[str, NDArray[np.int64]]:
        """Features of the chunks at rows ``i``, columns ``j`` (not the element's first)."""
        start = j == 0
        box = rw[i] * cw[j]
        return {
            "rg": rw[i],
            "nrg": np.where(start, nr[i], 0),
            "bg": box,
            "nbg": np.where(start, box - ri[i] * cx, rw[i] * (cw[j] - ci[j])),
            "reads": rr[i] * cc[j],
        }

    def following(i: NDArray[np.int64], j: NDArray[np.int64]) -> tuple[Any, Any]:
        """The position after ``(i, j)`` in raster order."""
        wrap = j == wo - 1
        return np.where(wrap, i + 1, i), np.where(wrap, 0, j + 1)

    ii: list[NDArray[np.int64]] = []
    jj: list[NDArray[np.int64]] = []
    ww: list[NDArray[np.int64]] = []
    n = ho * wo
    last_i, last_j = np.array([ho - 1]), np.array([wo - 1])
    zero = np.zeros(1, np.int64)
    ii.append(zero)  # the first chunk
    jj.append(zero)
    ww.append(np.ones(1, np.int64))
    if n > 1:  # the last chunk
        ii.append(last_i)
        jj.append(last_j)
        ww.append(np.ones(1, np.int64))
    if wo > 2:  # inside a row: distinct row terms x distinct column terms
        row_idx, row_n = _distinct([rw, rr])
        inner = np.arange(1, wo - 1)
        col_idx, col_n = _distinct([cw[inner], ci[inner], cc[inner], cw[inner + 1], ci[inner + 1]])
        col_idx = inner[col_idx]
        ii.append(np.repeat(row_idx, len(col_idx)))
        jj.append(np.tile(col_idx, len(row_idx)))
        ww.append(np.outer(row_n, col_n).ravel())
    # each row's first and last chunk (the element's first and last excluded)
    firsts = np.arange(1, ho) if wo > 1 or n == 1 else np.arange(1, ho - 1)
    ii.append(firsts)
    jj.append(np.zeros(len(firsts), np.int64))
    ww.append(np.ones(len(firsts), np.int64))
    if wo > 1:
        lasts = np.arange(0, ho - 1)
        ii.append(lasts)
        jj.append(np.full(len(lasts), wo - 1, np.int64))
        ww.append(np.ones(len(lasts), np.int64))
    i_cur, j_cur, w = np.concatenate(ii), np.concatenate(jj), np.concatenate(ww)
    cur = chunk(i_cur, j_cur)
    k0 = ((i_cur == 0) & (j_cur == 0)).astype(np.int64)
    cur["nrg"] = np.where(k0 == 1, nr[0], cur["nrg"])
    cur["nbg"] = np.where(k0 == 1, cur["bg"], cur["nbg"])
    has_next = (i_cur * wo + j_cur) < n - 1
    i_nxt, j_nxt = following(i_cur, j_cur)
    i_nxt, j_nxt = np.where(has_next, i_nxt, i_cur), np.where(has_next, j_nxt, j_cur)
    nxt = chunk(i_nxt, j_nxt)
    first_nxt = (i_nxt == 0) & (j_nxt == 0)  # only when the sequence is one chunk
    nxt["nrg"] = np.where(first_nxt, nr[0], nxt["nrg"])
    nxt["nbg"] = np.where(first_nxt, nxt["bg"], nxt["nbg"])
    rows = len(w)
    full = np.full(rows, a, np.int64)
    return _Summary(
        n=n,
        cur={"length": full, "rg": cur["rg"], "nrg": cur["nrg"], "bg": cur["bg"],
             "nbg": cur["nbg"], "dco": full, "k0": k0, "same": 1 - k0, "ct": full,
             "reads": cur["reads"]},
        nxt={"nrg": nxt["nrg"], "bg": nxt["bg"], "nbg": nxt["nbg"], "dco": full,
             "k0": first_nxt.astype(np.int64), "ct": full},
        prev_len=full,
        w=w,
        has_next=has_next,
        has_prev=k0 == 0,
        first=0,
        last=1 if n > 1 else 0,
    )  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _table_summary(g: Geometry, a_units: int, tile_co: int) -> _Summary:
    """:class:`_Summary` of :func:`_chunk_table`."""
    return _summarise(_chunk_table(g, a_units, tile_co))


def _segments(g: Geometry, a_units: int, tile_co: int) -> Segments:
    """:func:`_chunk_table` as summarised segments (ungrouped, every full tile is alike)."""
    if g.groups != 1:
        return ((_table_summary(g, a_units, tile_co), 1),)
    n_full, rest = divmod(g.co, tile_co)
    segs = [
        (_tile_summary(g, a_units, ct), n) for ct, n in ((tile_co, n_full), (rest, 1)) if ct and n
    ]
    return tuple(segs)


#: A per-row term of a summary: features in, one value per row (or a scalar) out.
Term = Callable[[dict[str, NDArray[np.int64]]], NDArray[np.int64]]


def _rows(s: _Summary, values: NDArray[np.int64] | int) -> NDArray[np.int64]:
    """``values`` as one value per row of ``s``."""
    v = np.asarray(values, np.int64)
    return v if v.shape == s.w.shape else np.broadcast_to(v, s.w.shape)


def _wsum(s: _Summary, values: NDArray[np.int64] | int) -> int:
    """Sum over the chunks of ``s`` of a per-row value (or a constant)."""
    v = np.asarray(values, np.int64)
    return int(np.dot(s.w, v)) if v.ndim else int(v) * s.n


def _seq_sum(segs: Segments, f: Term) -> int:
    """Sum over the chunk sequence of ``f(chunk)``."""
    return sum(n * _wsum(s, f(s.cur)) for s, n in segs)


def _seq_max(segs: Segments, f: Term) -> int:
    """Maximum over the chunk sequence of ``f(chunk)``."""
    return max(int(np.max(f(s.cur))) for s, _ in segs)


def _seq_max_next(segs: Segments, cur: Term, new: Term, first: Term, more: bool) -> int:
    """Maximum over chunks of ``cur`` plus the next chunk's ``new``.

    After the element's last chunk comes the next element's first chunk's ``first`` (when
    there is one), else 0.
    """
    vals = []
    for i, (s, n) in enumerate(segs):
        c = _rows(s, cur(s.cur))
        inner = (c + _rows(s, new(s.nxt)))[s.has_next]
        if inner.size:
            vals.append(int(inner.max()))
        c_last = int(c[s.last])
        if n > 1:
            vals.append(c_last + int(_rows(s, new(s.cur))[s.first]))
        if i + 1 < len(segs):
            t = segs[i + 1][0]
            vals.append(c_last + int(_rows(t, new(t.cur))[t.first]))
        else:
            t = segs[0][0]
            vals.append(c_last + (int(_rows(t, first(t.cur))[t.first]) if more else 0))
    return max(vals)


def _stats(g: Geometry, segs: Segments) -> tuple[int, int, int, int, int, bool]:
    """The maxima the buffer needs of a chunk sequence read (none depends on the machine).

    ``(rows_next, box_next, box, ct, distinct_co, same_co)``: the most tapped rows of a
    window plus the next window's new rows, the same for positions, the largest window, the
    largest tile, the most distinct output channels of a chunk (all per channel of a group),
    and whether some chunk keeps every unit's output channel.
    """

    def rows(d: dict[str, NDArray[np.int64]]) -> NDArray[np.int64]:
        return d["rg"]

    def box(d: dict[str, NDArray[np.int64]]) -> NDArray[np.int64]:
        return d["bg"]

    more = g.batch > 1
    return (
        _seq_max_next(segs, rows, lambda d: d["nrg"], rows, more),
        _seq_max_next(segs, box, lambda d: d["nbg"], box, more),
        _seq_max(segs, box),
        _seq_max(segs, lambda d: d["ct"]),
        _seq_max(segs, lambda d: d["dco"]),
        any(bool(s.cur["same"].any()) for s, _ in segs),
    )


@functools.lru_cache(maxsize=1024)
def _tile_stats(g: Geometry, a_units: int, tile_co: int) -> tuple[int, int, int, int, int, bool]:
    """:func:`_stats` of the weight tiles of ``tile_co`` channels."""
    return _stats(g, _segments(g, a_units, tile_co))


def _clear_caches() -> None:
    """Forget every cached table and count (benchmarks time the model cold with it)."""
    for fn in (
        _geometry, _tapped_counts, _tapped_prefix, _prefix_sums, _chunk_table, _tile_summary,
        _table_summary, _tile_stats, _tile_options, _plan_dram, _layout, _candidates,
        _hardware_counts, _map_layer_cached,
    ):  # fmt: skip
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
    st = _stats(g, ((_summarise(chunks), 1),))
    return _needs(g, p, hw, st, tile_c, weights, input_resident)


#: The buffers, in the order of :func:`_need_bits`.
_BUFFERS = (
    "input_buffer_bytes",
    "shift_buffer_bytes",
    "weight_buffer_bytes",
    "output_buffer_bytes",
)


def _needs(
    g: Geometry,
    p: HardwareDesc,
    hw: Hardware,
    st: tuple[int, int, int, int, int, bool],
    tile_c: int,
    weights: int,
    input_resident: bool,
) -> dict[str, int]:
    """:func:`buffer_needs` from the chunk sequence's :func:`_stats`."""
    bits = _need_bits(g, p, parallel_outputs(p, hw), st, tile_c, weights, input_resident)
    return dict(zip(_BUFFERS, bits, strict=True))


def _need_bits(
    g: Geometry,
    p: HardwareDesc,
    a_units: int,
    st: tuple[int, int, int, int, int, bool],
    tile_c: int,
    weights: int,
    input_resident: bool,
) -> tuple[int, int, int, int]:
    """Bits of the input, shift, weight and output buffers (see :func:`buffer_needs`)."""
    rows_next, box_next, vmax, ct_max, dco_max, _ = st
    cg = g.cg
    m = -(-cg // tile_c)
    word = p.words_per_input * p.word_bits
    if m == 1:
        if input_resident:
            inp = 2 * _tapped_rows(g) * g.c * _tapped_cols(g) * p.act_bits
        else:
            inp = rows_next * cg * _tapped_cols(g) * p.act_bits
        shift = box_next * cg * word
    else:  # two consecutive passes: within a chunk, or a chunk's last and the next's first
        # Within a chunk: its largest window times two full tiles' channels (a full and the
        # last when m = 2). Across chunks (the last tile's channels, then a full tile's) it
        # is never more: each window is at most the largest and last <= tile_c.
        last = cg - (m - 1) * tile_c
        both = vmax * (2 * tile_c if m > 2 else tile_c + last)
        inp = both * p.act_bits
        shift = both * word
    k = g.kh * g.kw * p.weight_bits
    if weights == WEIGHTS_RESIDENT:
        wgt = g.co * cg * k
    elif weights == WEIGHTS_SWEEP:
        wgt = 2 * ct_max * cg * k
    else:
        wgt = 2 * dco_max * min(tile_c, cg) * k
    out = 2 * min(a_units, g.outputs) * p.acc_bits
    return inp, shift if p.has_shift_unit else 0, wgt, out


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
    mc = _machine(p, hw)
    return dict(_hardware_counts(g, p, mc, pl.tile_co, pl.tile_c, pl.weights, pl.input_resident))


class _Machine(NamedTuple):
    """What the closed-form counts of a plan read of a :class:`Hardware`, and nothing else.

    The cache key of :func:`_hardware_counts`: machines that differ only in what it does
    not read (buffer sizes, once the plan is chosen; the clock; the energy's access widths;
    the dataflow) share their counts, as the machines of a sweep over buffers do.
    """

    a_units: int  # outputs in parallel, :func:`parallel_outputs`
    tree_width: int
    shift_width: int
    dram_bytes_per_cycle: int
    weight_rf_entries: int
    pipelined: bool


def _machine(p: HardwareDesc, hw: Hardware) -> _Machine:
    return _Machine(
        parallel_outputs(p, hw), hw.tree_width, hw.shift_width, hw.dram_bytes_per_cycle,
        hw.weight_rf_entries, bool(hw.pipelined),
    )  # fmt: skip


@dataclass(frozen=True, eq=False)
class _Layout:
    """An element's chunk sequence as the rows of its segments' summaries, concatenated.

    ``seq``: ``(summary, copies, head)`` per segment (``head``: its first chunk is the
    element's first and loads every tapped row; with several copies it is a segment of its
    own); ``offsets``: each segment's first row; ``stack``: the load features of every row
    three times (for a last and a full input-channel tile, then the next chunk's);
    ``length``/``prev_len``: each row's and its previous chunk's length; ``wn``: rows'
    chunks in the element (weights times copies), ``wn_inner`` only where both neighbours
    are in the segment; ``sums``: every feature summed over the element's chunks.
    """

    seq: tuple[tuple[_Summary, int, bool], ...]
    offsets: tuple[int, ...]
    rows: int
    stack: dict[str, NDArray[np.int64]]
    length: NDArray[np.int64]
    prev_len: NDArray[np.int64]
    wn: NDArray[np.int64]
    wn_inner: NDArray[np.int64]
    sums: dict[str, int]


#: Features of a chunk's loads (``k0ct``: the tile's channels at a sweep's first chunk).
_LOADS = ("nrg", "bg", "nbg", "dco", "k0ct")


@functools.lru_cache(maxsize=4096)
def _layout(g: Geometry, a_units: int, tile_co: int, resident_in: bool) -> _Layout:
    """:class:`_Layout` of the weight tiles of ``tile_co`` channels."""
    seq: list[tuple[_Summary, int, bool]] = []
    for i, (s, n) in enumerate(_segments(g, a_units, tile_co)):
        head = resident_in and i == 0
        if head and n > 1:  # only the element's first chunk loads (every tapped row)
            seq += [(s, 1, True), (s, n - 1, False)]
        else:
            seq.append((s, n, head))
    offsets = [0]
    for s, _, _ in seq[:-1]:
        offsets.append(offsets[-1] + len(s.w))

    def cat(d: Callable[[_Summary], NDArray[Any]]) -> NDArray[Any]:
        return np.concatenate([d(s) for s, _, _ in seq])

    def feat(d: dict[str, NDArray[np.int64]], k: str) -> NDArray[np.int64]:
        return d["k0"] * d["ct"] if k == "k0ct" else d[k]

    stack = {}
    for k in _LOADS:
        cur = cat(lambda s, k=k: feat(s.cur, k))  # type: ignore[misc]
        stack[k] = np.concatenate((cur, cur, cat(lambda s, k=k: feat(s.nxt, k))))  # type: ignore[misc]
    wn = cat(lambda s: s.w) * np.repeat([n for _, n, _ in seq], [len(s.w) for s, _, _ in seq])
    inner = cat(lambda s: s.has_next & s.has_prev)
    keys = seq[0][0].sums
    return _Layout(
        seq=tuple(seq),
        offsets=tuple(offsets),
        rows=len(wn),
        stack=stack,
        length=cat(lambda s: s.cur["length"]),
        prev_len=cat(lambda s: s.prev_len),
        wn=wn,
        wn_inner=np.where(inner, wn, 0),
        sums={k: sum(n * s.sums[k] for s, n, _ in seq) for k in keys},
    )


@functools.lru_cache(maxsize=4096)
def _hardware_counts(
    g: Geometry, p: HardwareDesc, hw: _Machine, tile_co: int, tile_c: int, weights: int,
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
    resident_in = line and input_resident
    lay = _layout(g, hw.a_units, tile_co, resident_in)
    seq, r_n = lay.seq, lay.rows
    in_all = _tapped_rows(g) * g.c * _tapped_cols(g) * p.act_bits
    row_bits = _tapped_cols(g) * p.act_bits
    w_slice_bits = k_taps * p.weight_bits
    per_term_bits = k_taps * p.passes * p.pass_weight_bits

    # Every term below is written with operators only, so that it takes one row (ints) or
    # every row at once (int64 arrays) alike; the element's first chunk (``head``) loads
    # every tapped row when the inputs stay resident, no other chunk loads inputs then.
    def loads(d: dict[str, Any], tcl: Any, head: bool) -> tuple[Any, Any, Any]:
        """Input, shifted and weight bits a pass of ``tcl`` channels per group loads."""
        if resident_in:
            in_e = in_all if head else 0 * d["nrg"]
        elif line:
            in_e = d["nrg"] * (tcl * row_bits)
        else:
            in_e = d["bg"] * (tcl * p.act_bits)
        shift_e = (d["nbg"] if line else d["bg"]) * tcl if p.has_shift_unit else 0 * d["nrg"]
        if weights == WEIGHTS_SWEEP:
            w_e = d["k0ct"] * (tcl * w_slice_bits)
        elif weights == WEIGHTS_PASS:
            w_e = d["dco"] * (tcl * w_slice_bits)
        else:
            w_e = 0 * d["nrg"]
        return in_e, shift_e, w_e

    def rd_prep(d: dict[str, Any], tcl: Any, head: bool) -> tuple[Any, Any]:
        """DRAM bytes read by a pass of ``tcl`` channels per group, and its prep cycles."""
        in_e, shift_e, w_e = loads(d, tcl, head)
        rd = -(-in_e // 8) + -(-w_e // 8)
        return rd, -(-rd // bw) + -(-shift_e // sw)

    def store_of(length: Any) -> Any:
        out_bytes = -(-length * p.acc_bits // 8)
        return -(-out_bytes // bw)

    # every row at once (no chunk the element's first): a last tile, a full one, the next's
    tcl = np.repeat(np.array([last, full, full], np.int64), r_n)
    rd_all, prep_all = rd_prep(lay.stack, tcl, False)
    rd_l, rd_f = rd_all[:r_n], rd_all[r_n : 2 * r_n]
    prep_l, prep_f, nxt_prep = prep_all[:r_n], prep_all[r_n : 2 * r_n], prep_all[2 * r_n :]

    def tot(values: NDArray[np.int64]) -> int:
        """Sum over the element's chunks (the element's first loaded as any other)."""
        return int(np.dot(lay.wn, values))

    def passes(f: Callable[[int], int]) -> int:
        """Sum over the element's passes of ``f(tcl)``, ``f`` of the chunks' summed features."""
        return nf * int(f(full)) + int(f(last))

    # the element's first chunk (a row of its own): what it loads as the head
    s0, h0 = seq[0][0], seq[0][2]
    head0 = {k: int(v[s0.first]) for k, v in lay.stack.items()}
    rd_h_l, prep_h_l = rd_prep(head0, last, h0)
    rd_h_f, prep_h_f = rd_prep(head0, full, h0)
    d_rd = nf * (rd_h_f - int(rd_f[s0.first])) + rd_h_l - int(rd_l[s0.first])
    d_prep = nf * (prep_h_f - int(prep_f[s0.first])) + prep_h_l - int(prep_l[s0.first])
    d_in = in_all if resident_in else 0

    rf_fits = {t: hw.weight_rf_entries >= t * k_taps for t in (full, last)}
    keep = line and rf_fits[last]  # the unit keeps its weights from the previous chunk
    sums = lay.sums  # linear terms need no rows
    ns = "_ns" if keep else ""
    totals = {
        "in": passes(lambda t: loads(sums, t, False)[0]) + d_in,
        "shift": passes(lambda t: loads(sums, t, False)[1]),
        "w": passes(lambda t: loads(sums, t, False)[2]),
        "w_reads": passes(lambda t: sums["dco" + ns] * (t * per_term_bits)),
        "rf_write": passes(lambda t: sums["length" + ns] * (t * per_term_bits) * rf_fits[t]),
        "rf_read": passes(lambda t: sums["length"] * (t * per_term_bits) * rf_fits[t]),
        "reads": passes(lambda t: sums["reads"] * (t * p.passes * word)),
        "rd": nf * tot(rd_f) + tot(rd_l) + d_rd,
        "prep": nf * tot(prep_f) + tot(prep_l) + d_prep,
    }
    s_f, s_l = (
        (full * k_taps, last * k_taps)
        if p.serial_lanes
        else (p.passes * k_taps * -(-full // hw.tree_width),
              p.passes * k_taps * -(-last // hw.tree_width))
    )  # fmt: skip
    compute = batch * sums["chunks"] * (nf * s_f + s_l)
    rd_first = rd_h_f
    rd0 = rd_first
    w_res = g.co * g.cg * k_taps * p.weight_bits if weights == WEIGHTS_RESIDENT else 0
    if weights == WEIGHTS_RESIDENT:  # the very first pass also loads every weight
        rd0 = -(-loads(head0, full, h0)[0] // 8) + -(-w_res // 8)
    prep0 = -(-rd0 // bw) + -(-loads(head0, full, h0)[1] // sw)
    sl = seq[-1][0]
    last_store = store_of(int(sl.cur["length"][sl.last]))
    if hw.pipelined:

        def term(fp: Any, lp: Any, nxt_prep: Any, before: Any) -> Any:
            """A chunk's ``sum max(steps, next prep + previous store)`` over its passes."""
            if m == 1:
                return np.maximum(s_l, nxt_prep + before)
            out = np.maximum(s_l, nxt_prep) + np.maximum(s_f, (fp if m > 2 else lp) + before)
            if m > 2:
                out = out + (m - 3) * np.maximum(s_f, fp) + np.maximum(s_f, lp)
            return out

        # the chunks with both neighbours inside their segment, every copy and element
        before = store_of(lay.prev_len)
        inner_sum = int(np.dot(lay.wn_inner, term(prep_f, prep_l, nxt_prep, before)))
        # the first and last chunk of each segment, one by one
        firsts = [prep_h_f] + [int(prep_f[o + s.first]) for (s, _, _), o in
                               zip(seq[1:], lay.offsets[1:], strict=True)]  # fmt: skip
        lasts = [store_of(int(s.cur["length"][s.last])) for s, _, _ in seq]

        def edge(i: int, nxt_x: int, before_y: int) -> int:
            """One copy of segment ``i``'s first and last chunk (one row when one chunk)."""
            s, _, head = seq[i]
            o = lay.offsets[i]
            acc = 0
            for r in sorted({s.first, s.last}):
                if r == s.first and head:
                    fp, lp = prep_h_f, prep_h_l
                else:
                    fp, lp = int(prep_f[o + r]), int(prep_l[o + r])
                nx = nxt_x if r == s.last else int(nxt_prep[o + r])
                bf = before_y if r == s.first else int(before[o + r])
                acc += int(term(fp, lp, nx, bf))
            return acc

        def element(before_y: int, nxt_x: int) -> int:
            """One element's edges (after a store of ``before_y``, before a prep of ``nxt_x``)."""
            acc = 0
            for i, (_, n, _) in enumerate(seq):
                after = firsts[i + 1] if i + 1 < len(seq) else nxt_x
                ahead = lasts[i - 1] if i > 0 else before_y
                if n == 1:
                    acc += edge(i, after, ahead)
                else:
                    own_x, own_y = firsts[i], lasts[i]
                    acc += edge(i, own_x, ahead) + edge(i, after, own_y)
                    if n > 2:
                        acc += (n - 2) * edge(i, own_x, own_y)
            return acc

        if batch == 1:
            acc = element(0, 0)
        else:  # the next element starts with the first chunk; the last stores last_store
            acc = element(0, firsts[0]) + element(last_store, 0)
            if batch > 2:
                acc += (batch - 2) * element(last_store, firsts[0])
        cycles = prep0 + batch * inner_sum + acc + last_store
    else:
        stores = tot(store_of(lay.length))
        cycles = batch * (totals["prep"] + stores) + prep0 - prep_h_f + compute
    reads = totals["reads"]
    length_sum = sums["length"]
    psum = 0 if p.serial_lanes else nf * length_sum * (p.passes * k_taps * p.acc_bits)
    out_bits = batch * length_sum * p.acc_bits
    wr = sum(n * s.bytes_sum("length", p.acc_bits) for s, n, _ in seq)
    shift_inputs = batch * totals["shift"] if p.has_shift_unit else 0
    return tuple({
        "cycles": cycles,
        "compute_cycles": compute,
        "stall_cycles": cycles - compute,
        "input_buffer_write_bits": batch * totals["in"],
        "input_buffer_read_bits": batch
        * (totals["shift"] * p.act_bits if p.has_shift_unit else reads),
        "shift_buffer_write_bits": shift_inputs * p.words_per_input * p.word_bits,
        "shift_buffer_read_bits": batch * reads if p.has_shift_unit else 0,
        "weight_buffer_write_bits": batch * totals["w"] + w_res,
        "weight_buffer_read_bits": batch * totals["w_reads"],
        "weight_rf_write_bits": batch * totals["rf_write"],
        "weight_rf_read_bits": batch * totals["rf_read"],
        "psum_write_bits": batch * psum,
        "psum_read_bits": batch * psum,
        "output_buffer_write_bits": out_bits,
        "output_buffer_read_bits": out_bits,
        "dram_read_bytes": batch * totals["rd"] + rd0 - rd_first,
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
    segs = ((_summarise(pl.chunks), 1),)
    return _dram(g, p, segs, pl.tile_c, pl.weights, pl.input_resident)


def _dram(
    g: Geometry, p: HardwareDesc, segs: Segments, tile_c: int, weights: int, resident: bool
) -> int:
    """:func:`_dram_bytes` of a chunk sequence given as segments."""
    m = -(-g.cg // tile_c)
    last = g.cg - (m - 1) * tile_c

    def per_pass(name: str, bits_per_channel: int) -> int:
        """Bytes of the passes when a pass moves ``x * bits_per_channel * tcl`` bits."""
        return sum(
            n * ((m - 1) * s.bytes_sum(name, bits_per_channel * tile_c)
                 + s.bytes_sum(name, bits_per_channel * last))
            for s, n in segs
        )  # fmt: skip

    def once(name: str, bits: int) -> int:
        return sum(n * s.bytes_sum(name, bits) for s, n in segs)

    k = g.kh * g.kw * p.weight_bits
    row_bits = g.cg * _tapped_cols(g) * p.act_bits
    if m == 1 and resident:
        inp = int(_cdiv(_tapped_rows(g) * g.c * _tapped_cols(g) * p.act_bits, 8))
    elif m == 1:
        inp = once("nrg", row_bits)
    else:
        inp = per_pass("bg", p.act_bits)
    if weights == WEIGHTS_SWEEP:
        wgt = per_pass("k0ct", k)
    elif weights == WEIGHTS_PASS:
        wgt = per_pass("dco", k)
    else:
        wgt = 0
    out = once("length", p.acc_bits)
    total = g.batch * (inp + wgt + out)
    if weights == WEIGHTS_RESIDENT:
        total += int(_cdiv(g.co * g.cg * k, 8))
    return total


def _dram_lower_bound(g: Geometry, p: HardwareDesc, hw: Hardware) -> Callable[[int], int]:
    """A lower bound on the DRAM bytes of any mapping with weight tiles of ``tile_co``.

    Every weight moves at least once and every output once; every sweep (weight tile) of an
    element loads each tapped input of its channels at least once (the union of its chunks'
    windows is every tapped position), so an ungrouped layer's inputs move once per weight
    tile, unless they may stay resident (then once per element). A sum of ceilings is at
    least the ceiling of the sum. The bound never falls as ``tile_co`` shrinks.
    """
    in_bits = g.c * _tapped_rows(g) * _tapped_cols(g) * p.act_bits
    resident = g.groups == 1 and 2 * in_bits <= hw.input_buffer_bytes * 8
    fixed = -(-(g.co * g.cg * g.kh * g.kw * p.weight_bits) // 8)
    fixed += g.batch * -(-(g.outputs * p.acc_bits) // 8)

    def bound(tile_co: int) -> int:
        once = g.groups != 1 or (resident and tile_co < g.co)
        sweeps = 1 if once else -(-g.co // tile_co)
        return fixed + g.batch * -(-(sweeps * in_bits) // 8)

    return bound


@functools.lru_cache(maxsize=4096)
def _candidates(limit: int, unit: int) -> tuple[int, ...]:
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
    return tuple(sorted(vals, reverse=True))


#: One input-channel tile of an output tile, as :func:`plan` checks it against a machine:
#: ``(tile_c, bits, bits_resident, ws)``: the buffers' bits (:func:`_need_bits`) with the
#: inputs not resident, and resident (None when these tiles cannot keep them: the machine
#: decides whether its input buffer can), and whether it is weight-stationary when the
#: machine's register files hold a filter.
_Option = tuple[int, tuple[int, int, int, int], tuple[int, int, int, int] | None, bool]


@functools.lru_cache(maxsize=4096)
def _tile_options(
    g: Geometry, p: HardwareDesc, a_units: int, tree_width: int, tile_co: int, weights: int
) -> tuple[_Option, ...]:
    """Every input-channel tile candidate of ``tile_co`` (largest first), machine-free.

    What :func:`plan` needs of each tile that does not depend on the buffer sizes. The
    inputs stay resident when the tiles allow it (one input-channel tile, several output
    tiles, no groups) and the input buffer holds two elements' tapped rows; the dataflow is
    weight-stationary when the tiles allow it and the units' register files hold a filter:
    :func:`plan` checks the machine's part of both.
    """
    st = _tile_stats(g, a_units, tile_co)
    out = []
    for tile_c in _candidates(g.cg, tree_width):
        can_keep = tile_c >= g.cg and g.groups == 1 and tile_co < g.co
        need = _need_bits(g, p, a_units, st, tile_c, weights, False)
        need_res = _need_bits(g, p, a_units, st, tile_c, weights, True) if can_keep else None
        ws = tile_c >= g.cg and a_units % tile_co == 0 and st[5]
        out.append((tile_c, need, need_res, ws))
    return tuple(out)


@functools.lru_cache(maxsize=8192)
def _plan_dram(
    g: Geometry, p: HardwareDesc, a_units: int, tile_co: int, tile_c: int, weights: int,
    resident: bool,
) -> int:  # fmt: skip
    """DRAM bytes of these tiles (:func:`_dram` of their segments): no machine field."""
    return _dram(g, p, _segments(g, a_units, tile_co), tile_c, weights, resident)


def smallest_tile_needs(g: Geometry, p: HardwareDesc, hw: Hardware) -> dict[str, int]:
    """Bytes each buffer needs for the smallest legal tile (one output and one input channel).

    The weights reloaded every pass (or all resident when that is less), the inputs not
    resident. A machine whose buffers hold these maps the layer (:func:`plan` refuses a
    machine only when no tile fits, naming the first buffer short of these).
    """
    st = _tile_stats(g, parallel_outputs(p, hw), 1)
    needs = _needs(g, p, hw, st, 1, WEIGHTS_PASS, False)
    resident = _needs(g, p, hw, st, 1, WEIGHTS_RESIDENT, False)
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
    want_ws = hw.dataflow != "os"
    top_os: int | None = None  # the least DRAM traffic found, of any and of a ws candidate
    top_ws: int | None = None
    lower = _dram_lower_bound(g, p, hw)
    c_in, c_shift, c_w, c_out = (getattr(hw, name) * 8 for name in _BUFFERS)
    # the machine's part of input residency (two elements' tapped rows) and of ws
    can_keep = 2 * _tapped_rows(g) * g.c * _tapped_cols(g) * p.act_bits <= c_in
    rf_holds = g.cg * g.kh * g.kw <= hw.weight_rf_entries
    for tile_co in _candidates(g.co, a_units):
        # skip what cannot beat the best found (a tie loses to the larger tile found first)
        bound = lower(tile_co)
        os_done = top_os is not None and bound >= top_os
        if os_done and (not want_ws or (top_ws is not None and bound >= top_ws)):
            break  # the bound only grows as the tiles shrink
        if os_done and a_units % tile_co != 0:
            continue  # nor can it be weight-stationary
        weights = _weight_mode(g, p, hw, tile_co)
        for tile_c, bits, bits_res, stationary in _tile_options(
            g, p, a_units, hw.tree_width, tile_co, weights
        ):
            resident = can_keep and bits_res is not None
            n_in, n_shift, n_w, n_out = bits_res if bits_res is not None and resident else bits
            if n_in <= c_in and n_shift <= c_shift and n_w <= c_w and n_out <= c_out:
                dataflow = "ws" if stationary and rf_holds else "os"
                dram = _plan_dram(g, p, a_units, tile_co, tile_c, weights, resident)
                found.append(((dram, -tile_co), (tile_co, tile_c, weights, resident, dataflow)))
                top_os = dram if top_os is None else min(top_os, dram)
                if dataflow == "ws":
                    top_ws = dram if top_ws is None else min(top_ws, dram)
                break  # the largest fitting input-channel tile of this output tile
        if top_os == floor and (not want_ws or top_ws == floor):
            break  # nothing smaller can beat them (ties: the larger tile)
    if not found:
        for name, need in smallest_tile_needs(g, p, hw).items():
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
