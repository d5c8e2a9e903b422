"""The schedule's mapping: layer geometry, tiles, buffer requirements, closed-form traffic.

The cycle-stepped model (:mod:`shiftsim.cycle.model`) and the analytic model
(:mod:`shiftsim.cost`) both run the :class:`Plan` that :func:`plan` chooses; the stepped model
then counts every event as it moves data, while :func:`hardware_counts` gives the same counts
in closed form (vectorised over the passes), which is what makes their agreement a test.
The formulas are in the package docstring of :mod:`shiftsim.cycle`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
    a_units = parallel_outputs(p, hw)
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
    chunks = {k: np.concatenate([pt[k] for pt in parts]) for k in parts[0]}
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
    table : dict of str to ndarray
        :func:`pass_table` of one element.
    """

    tile_co: int
    tile_c: int
    weights: int
    input_resident: bool
    dataflow: str
    table: dict[str, NDArray[np.int64]]

    @property
    def n_tiles(self) -> int:
        """Weight tiles (sweeps over the image) per batch element."""
        return int(self.table["t"][-1]) + 1

    @property
    def n_ctiles(self) -> int:
        """Input-channel tiles per chunk."""
        return int(self.table["ci"].max()) + 1


def _next(arr: NDArray[np.int64], first: NDArray[np.int64], more: bool) -> NDArray[np.int64]:
    """``arr`` of the following pass (the next element's first when there is one, else 0)."""
    tail = first[:1] if more else np.zeros(1, np.int64)
    return np.concatenate((arr[1:], tail))


def buffer_needs(
    g: Geometry,
    p: HardwareDesc,
    hw: Hardware,
    table: dict[str, NDArray[np.int64]],
    weights: int,
    input_resident: bool,
) -> dict[str, int]:
    """Bits each buffer must hold for this mapping (double-buffered where it loads ahead)."""
    tb = table
    line = int(tb["ci"].max()) == 0
    chans = tb["groups"] * tb["tcl"]
    more = g.batch > 1
    word = p.words_per_input * p.word_bits
    if line:
        cur = tb["rows"] * chans
        if input_resident:
            inp = 2 * int(tapped(g)[0].sum()) * g.c * g.w * p.act_bits
        else:
            inp = int((cur + _next(tb["new_rows"] * chans, cur, more)).max()) * g.w * p.act_bits
        cur_b = tb["box"] * chans
        shift = int((cur_b + _next(tb["new_box"] * chans, cur_b, more)).max()) * word
    else:
        cur_b = tb["box"] * chans
        both = int((cur_b + _next(cur_b, cur_b, more)).max())
        inp = both * p.act_bits
        shift = both * word
    k = g.kh * g.kw * p.weight_bits
    if weights == WEIGHTS_RESIDENT:
        wgt = g.co * g.cg * k
    elif weights == WEIGHTS_SWEEP:
        wgt = 2 * int(tb["ct"].max()) * g.cg * k
    else:
        wgt = 2 * int((tb["distinct_co"] * tb["tcl"]).max()) * k
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
        in_e = rows_in * (g.c * g.w * p.act_bits)
    elif line:
        in_e = tb["new_rows"] * chans * (g.w * p.act_bits)
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
    rf_fits = hw.weight_rf_entries >= per_term
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
    tb = pass_table(g, p, hw, tile_co, tile_c)
    k = g.kh * g.kw * p.weight_bits
    cap_w = hw.weight_buffer_bytes * 8
    if g.co * g.cg * k <= cap_w:
        weights = WEIGHTS_RESIDENT
    elif 2 * min(tile_co, g.co) * g.cg * k <= cap_w:
        weights = WEIGHTS_SWEEP
    else:
        weights = WEIGHTS_PASS
    line = tile_c >= g.cg
    resident = bool(
        line
        and g.groups == 1
        and tile_co < g.co
        and 2 * int(tapped(g)[0].sum()) * g.c * g.w * p.act_bits <= hw.input_buffer_bytes * 8
    )
    a_units = parallel_outputs(p, hw)
    per_unit = g.cg * g.kh * g.kw * p.passes
    ws = line and a_units % tile_co == 0 and per_unit <= hw.weight_rf_entries
    ws = ws and bool(tb["same_co"].any())
    pl = Plan(tile_co, tile_c, weights, resident, "ws" if ws else "os", tb)
    return pl, buffer_needs(g, p, hw, tb, weights, resident)


def _fits(needs: dict[str, int], hw: Hardware) -> bool:
    return all(bits <= getattr(hw, name) * 8 for name, bits in needs.items())


def plan(
    g: Geometry,
    p: HardwareDesc,
    hw: Hardware,
    *,
    where: str = "this layer",
    energy: Callable[[Plan], float] | None = None,
) -> Plan:
    """Choose the mapping of a layer onto ``hw``: tiles, weight placement, dataflow.

    Output-stationary candidates: for each output-channel tile size (``Co``, multiples and
    divisors of ``A`` by powers of two, 1), the largest input-channel tile whose buffers
    fit; the one with the least DRAM traffic wins (then the fewest cycles). Weight-stationary
    candidates: output-channel tiles dividing ``A`` (each unit keeps one output channel's
    weights in its register file across the positions it computes), no input-channel tiles.
    ``hw.dataflow`` picks the set; ``"auto"`` takes the lower ``energy(plan)`` of the two
    best (DRAM traffic when ``energy`` is None).

    Raises
    ------
    ValueError
        When even the smallest tile (one output channel, one input channel, the weights
        reloaded every pass) does not fit: naming ``where``, the buffer and the bytes needed.
    """
    a_units = parallel_outputs(p, hw)
    cands: dict[str, list[tuple[tuple[int, int, int], Plan]]] = {"os": [], "ws": []}
    for tile_co in _candidates(g.co, a_units):
        for tile_c in _candidates(g.cg, hw.tree_width):
            pl, needs = _mapping(g, p, hw, tile_co, tile_c)
            if _fits(needs, hw):
                c = hardware_counts(g, p, hw, pl)
                key = (c["dram_read_bytes"] + c["dram_write_bytes"], c["cycles"], -tile_co)
                cands[pl.dataflow].append((key, pl))
                break  # the largest fitting input-channel tile of this output tile
    if not cands["os"] and not cands["ws"]:
        _, needs = _mapping(g, p, hw, 1, 1)
        for name, bits in needs.items():
            if bits > getattr(hw, name) * 8:
                raise ValueError(
                    f"{where}: {name}={getattr(hw, name)} is too small for this layer: the"
                    f" smallest tile (1 output channel, 1 input channel) needs at least"
                    f" {-(-bits // 8)} bytes"
                )
        raise AssertionError("no mapping fits, yet the smallest tile does")  # pragma: no cover
    best = {k: min(v, key=lambda kv: kv[0])[1] for k, v in cands.items() if v}
    if hw.dataflow in best:
        return best[hw.dataflow]
    if len(best) == 1 or hw.dataflow != "auto":
        return next(iter(best.values()))
    if energy is None:
        return min(cands["os"] + cands["ws"], key=lambda kv: kv[0])[1]
    return min((best["os"], best["ws"]), key=energy)


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
