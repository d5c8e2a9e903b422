"""The schedule's mapping: layer geometry, tiles, buffer requirements, closed-form traffic.

The cycle-stepped model (:mod:`shiftsim.cycle.model`) and the analytic model
(:mod:`shiftsim.cost`) both run the :class:`Plan` that :func:`plan` chooses; the stepped model
then counts every event as it moves data, while :func:`hardware_counts` gives the same counts
in closed form (vectorised over the passes), which is what makes their agreement a test.
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


def _tapped_cols(g: Geometry) -> int:
    """Columns some output reads: a line-buffer row holds these (padding is never stored)."""
    return int(tapped(g)[1].sum())


def _count(cum: NDArray[np.int64], lo: NDArray[np.int64], hi: NDArray[np.int64]) -> NDArray:
    """Tapped indices in ``[lo, hi]`` (0 when empty) from a prefix sum ``cum``."""
    lo_c = np.clip(lo, 0, len(cum) - 1)
    hi_c = np.clip(hi + 1, 0, len(cum) - 1)
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
    rows = int(tapped(g)[0].sum())
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
    ch = chunks
    m = -(-g.cg // tile_c)
    more = g.batch > 1
    word = p.words_per_input * p.word_bits
    if m == 1:
        chans = ch["groups"] * g.cg
        cur = ch["rows"] * chans
        if input_resident:
            inp = 2 * int(tapped(g)[0].sum()) * g.c * _tapped_cols(g) * p.act_bits
        else:
            inp = int((cur + _next(ch["new_rows"] * chans, cur, more)).max())
            inp *= _tapped_cols(g) * p.act_bits
        cur_b = ch["box"] * chans
        both = int((cur_b + _next(ch["new_box"] * chans, cur_b, more)).max())
        shift = both * word
    else:  # two consecutive passes: within a chunk, or a chunk's last and the next's first
        last = g.cg - (m - 1) * tile_c
        vol = ch["box"] * ch["groups"]
        inside = int(vol.max()) * (2 * tile_c if m > 2 else tile_c + last)
        across = int((vol * last + _next(vol * tile_c, vol * tile_c, more)).max())
        both = max(inside, across)
        inp = both * p.act_bits
        shift = both * word
    k = g.kh * g.kw * p.weight_bits
    if weights == WEIGHTS_RESIDENT:
        wgt = g.co * g.cg * k
    elif weights == WEIGHTS_SWEEP:
        wgt = 2 * int(ch["ct"].max()) * g.cg * k
    else:
        wgt = 2 * int(ch["distinct_co"].max()) * min(tile_c, g.cg) * k
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

    See the package docstring of :mod:`shiftsim.cycle` for the formulas.
    """
    tb = pl.table
    n_e = len(tb["t"])
    batch = g.batch
    line = pl.n_ctiles == 1
    chans = tb["groups"] * tb["tcl"]
    k_taps = g.kh * g.kw
    if line and pl.input_resident:
        rows_in = np.zeros(n_e, np.int64)
        rows_in[0] = int(tapped(g)[0].sum())
        in_e = rows_in * (g.c * _tapped_cols(g) * p.act_bits)
    elif line:
        in_e = tb["new_rows"] * chans * (_tapped_cols(g) * p.act_bits)
    else:
        in_e = tb["box"] * chans * p.act_bits
    shift_e = (tb["new_box"] if line else tb["box"]) * chans if p.has_shift_unit else 0 * chans
    w_slice = tb["tcl"] * k_taps * p.weight_bits
    first_pass = (tb["k"] == 0).astype(np.int64)
    if pl.weights == WEIGHTS_SWEEP:
        w_e = first_pass * tb["ct"] * w_slice
    elif pl.weights == WEIGHTS_PASS:
        w_e = tb["distinct_co"] * w_slice
    else:
        w_e = 0 * w_slice
    last_ci = (tb["ci"] == pl.n_ctiles - 1).astype(np.int64)
    out_e = last_ci * tb["length"] * p.acc_bits
    steps_e = _steps(g, p, hw, tb["tcl"])
    per_term = tb["tcl"] * k_taps * p.passes  # weights a unit takes in a pass
    rf_fits = hw.weight_rf_entries >= tb["tcl"] * k_taps  # an entry holds a whole weight
    hit = (tb["same_co"] == 1) & line & rf_fits
    w_reads_e = np.where(hit, 0, tb["distinct_co"] * per_term * p.pass_weight_bits)
    rf_use = tb["length"] * per_term * p.pass_weight_bits
    rf_write_e = np.where(rf_fits & ~hit, rf_use, 0)
    rf_read_e = np.where(rf_fits, rf_use, 0)
    word = p.words_per_input * p.word_bits if p.has_shift_unit else p.act_bits
    reads_e = tb["reads"] * tb["tcl"] * p.passes * word
    psum_bits = tb["length"] * (p.passes * k_taps * p.acc_bits)
    if p.serial_lanes:
        psum_w = psum_r = 0 * psum_bits
    else:
        psum_w = (1 - last_ci) * psum_bits
        psum_r = (tb["ci"] > 0) * psum_bits

    def whole(arr: NDArray[np.int64]) -> NDArray[np.int64]:
        return np.tile(np.asarray(arr, dtype=np.int64), batch)

    in_b, w_b, out_b, sh_v = whole(in_e), whole(w_e), whole(out_e), whole(shift_e)
    if pl.weights == WEIGHTS_RESIDENT:
        w_b[0] = g.co * g.cg * k_taps * p.weight_bits
    rd = _cdiv(in_b, 8) + _cdiv(w_b, 8)
    wr = _cdiv(out_b, 8)
    prep = _cdiv(rd, hw.dram_bytes_per_cycle) + _cdiv(sh_v, hw.shift_width)
    store = _cdiv(wr, hw.dram_bytes_per_cycle)
    steps = whole(steps_e)
    compute = int(steps.sum())
    if hw.pipelined:
        nxt = np.concatenate((prep[1:], [0]))
        before = np.concatenate(([0], store[:-1]))
        cycles = int(prep[0]) + int(np.maximum(steps, nxt + before).sum()) + int(store[-1])
    else:
        cycles = int(prep.sum()) + compute + int(store.sum())
    shift_inputs = int(sh_v.sum()) if p.has_shift_unit else 0
    return {
        "cycles": cycles,
        "compute_cycles": compute,
        "stall_cycles": cycles - compute,
        "input_buffer_write_bits": int(in_b.sum()),
        "input_buffer_read_bits": batch
        * (int(shift_e.sum()) * p.act_bits if p.has_shift_unit else int(reads_e.sum())),
        "shift_buffer_write_bits": shift_inputs * p.words_per_input * p.word_bits,
        "shift_buffer_read_bits": batch * int(reads_e.sum()) if p.has_shift_unit else 0,
        "weight_buffer_write_bits": int(w_b.sum()),
        "weight_buffer_read_bits": batch * int(w_reads_e.sum()),
        "weight_rf_write_bits": batch * int(rf_write_e.sum()),
        "weight_rf_read_bits": batch * int(rf_read_e.sum()),
        "psum_write_bits": batch * int(psum_w.sum()),
        "psum_read_bits": batch * int(psum_r.sum()),
        "output_buffer_write_bits": int(out_b.sum()),
        "output_buffer_read_bits": int(out_b.sum()),
        "dram_read_bytes": int(rd.sum()),
        "dram_write_bytes": int(wr.sum()),
        "shift_unit_inputs": shift_inputs,
    }


def compulsory_dram_bytes(g: Geometry, p: HardwareDesc) -> int:
    """DRAM bytes if every input, weight and output moved once (the tapped inputs only)."""
    trow, tcol = tapped(g)
    inputs = g.batch * g.c * int(trow.sum()) * int(tcol.sum()) * p.act_bits
    weights = g.co * g.cg * g.kh * g.kw * p.weight_bits
    outputs = g.batch * g.outputs * p.acc_bits
    return -(-inputs // 8) + -(-weights // 8) + -(-outputs // 8)


def _dram_bytes(g: Geometry, p: HardwareDesc, pl: Plan) -> int:
    """DRAM bytes of ``pl`` summed per chunk (the closed form of :func:`hardware_counts`)."""
    ch = pl.chunks
    m = pl.n_ctiles
    last = g.cg - (m - 1) * pl.tile_c

    def per_pass(bits_per_channel: NDArray[np.int64]) -> NDArray[np.int64]:
        """Bytes of the chunk's passes when a pass moves ``bits_per_channel * tcl`` bits."""
        return (m - 1) * _cdiv(bits_per_channel * pl.tile_c, 8) + _cdiv(bits_per_channel * last, 8)

    k = g.kh * g.kw * p.weight_bits
    if m == 1 and pl.input_resident:
        rows = int(tapped(g)[0].sum())
        inp = np.zeros(1, np.int64) + _cdiv(rows * g.c * _tapped_cols(g) * p.act_bits, 8)
    elif m == 1:
        inp = _cdiv(ch["new_rows"] * ch["groups"] * g.cg * _tapped_cols(g) * p.act_bits, 8)
    else:
        inp = per_pass(ch["box"] * ch["groups"] * p.act_bits)
    if pl.weights == WEIGHTS_SWEEP:
        wgt = (ch["k"] == 0) * per_pass(ch["ct"] * k)
    elif pl.weights == WEIGHTS_PASS:
        wgt = per_pass(ch["distinct_co"] * k)
    else:
        wgt = np.zeros(1, np.int64)
    out = _cdiv(ch["length"] * p.acc_bits, 8)
    total = g.batch * int(inp.sum() + wgt.sum() + out.sum())
    if pl.weights == WEIGHTS_RESIDENT:
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
    a_units = parallel_outputs(p, hw)
    chunks = _chunk_table(g, a_units, tile_co)
    weights = _weight_mode(g, p, hw, tile_co)
    resident = _input_resident(g, p, hw, tile_co, tile_c)
    per_unit = g.cg * g.kh * g.kw
    ws = tile_c >= g.cg and a_units % tile_co == 0 and per_unit <= hw.weight_rf_entries
    ws = ws and bool(chunks["same_co"].any())
    pl = Plan(tile_co, tile_c, weights, resident, "ws" if ws else "os", chunks, g.cg)
    return pl, buffer_needs(g, p, hw, chunks, tile_c, weights, resident)


def _fits(needs: dict[str, int], hw: Hardware) -> bool:
    return all(bits <= getattr(hw, name) * 8 for name, bits in needs.items())


def smallest_tile_needs(g: Geometry, p: HardwareDesc, hw: Hardware) -> dict[str, int]:
    """Bytes each buffer needs for the smallest legal tile (one output and one input channel).

    The weights reloaded every pass (or all resident when that is less), the inputs not
    resident. A machine whose buffers hold these maps the layer (:func:`plan` refuses a
    machine only when no tile fits, naming the first buffer short of these).
    """
    chunks = _chunk_table(g, parallel_outputs(p, hw), 1)
    needs = buffer_needs(g, p, hw, chunks, 1, WEIGHTS_PASS, False)
    resident = buffer_needs(g, p, hw, chunks, 1, WEIGHTS_RESIDENT, False)
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
    found: list[tuple[tuple[int, int], Plan]] = []
    floor = compulsory_dram_bytes(g, p)
    done = {"os": False, "ws": hw.dataflow == "os"}
    for tile_co in _candidates(g.co, a_units):
        for tile_c in _candidates(g.cg, hw.tree_width):
            pl, needs = _mapping(g, p, hw, tile_co, tile_c)
            if _fits(needs, hw):
                dram = _dram_bytes(g, p, pl)
                found.append(((dram, -tile_co), pl))
                if dram == floor:  # nothing smaller can beat it (ties: the larger tile)
                    done["os"] = True
                    done["ws"] = done["ws"] or pl.dataflow == "ws"
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
    least = min(found, key=lambda kv: kv[0])[1]
    ws = [kv for kv in found if kv[1].dataflow == "ws"]
    if hw.dataflow == "os" or not ws:
        return least
    best_ws = min(ws, key=lambda kv: kv[0])[1]
    if hw.dataflow == "ws" or best_ws is least:
        return best_ws
    if energy is None:
        return least
    return min((least, best_ws), key=energy)


def map_layer(
    g: Geometry,
    p: HardwareDesc,
    hw: Hardware,
    *,
    where: str = "this layer",
    table: EnergyTable | None = None,
) -> Plan:
    """:func:`plan` with ``auto`` deciding by the storage energy of ``table`` (the default)."""

    def energy(pl: Plan) -> float:
        return energy_pj(Counts(**hardware_counts(g, p, hw, pl)), p, hw, table)

    return plan(g, p, hw, where=where, energy=energy)
