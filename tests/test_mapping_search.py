"""The mapping search against an exhaustive oracle that evaluates every candidate tiling.

The analytic model searches the tilings with summarised chunk sequences, cached per-tile
maxima and early exits. The oracle here shares none of that: for every output-channel tile
it walks every chunk of every weight tile and element in Python (windows from the output
positions, line-buffer rows seen so far, the previous window), sums each pass's DRAM bytes,
takes the largest input-channel tile whose buffers fit, and applies the documented choice
(least DRAM traffic, then the larger tile; weight-stationary candidates for ``"ws"``). Widths
are written out here (ShiftCNN N=2, B=4: 8-bit inputs, 8-bit weights, 16 words of 9 bits;
MAC: 8-bit inputs and weights; 32-bit accumulators).
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from shiftsim.cost import estimate, mapping
from shiftsim.cycle.schedule import (
    _chunk_table,
    _dram_lower_bound,
    _table_summary,
    _tile_segment,
    _tile_summary,
    describe,
    geometry,
)
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.hardware import Hardware
from shiftsim.layers import Conv2d
from tests.strategies import small_convs, tiny_machines

_WEIGHTS = {0: "resident", 1: "sweep", 2: "pass"}


def _ladder(limit, unit):
    """``limit``, ``unit * 2**j`` below it, ``unit / 2**j`` down to 1, largest first.

    Written apart from the search's own candidate list on purpose: the oracle shares no code
    with what it checks.
    """
    vals = {limit, 1}
    v = unit
    while v < limit:
        vals.add(v)
        v *= 2
    v = unit
    while v >= 1:
        if v <= limit:
            vals.add(v)
        v //= 2
    return sorted(vals, reverse=True)


def _chunks(geo, a, tile_co):
    """Every chunk of one element, in order: (tile start, tile size, k, outputs)."""
    co_n, ho, wo = geo["co"], geo["ho"], geo["wo"]
    out = []
    for t0 in range(0, co_n, tile_co):
        ct = min(tile_co, co_n - t0)
        outs = [(t0 + o % ct, (o // ct) // wo, (o // ct) % wo) for o in range(ct * ho * wo)]
        for k, k0 in enumerate(range(0, len(outs), a)):
            out.append((t0, ct, k, outs[k0 : k0 + a]))
    return out


def _oracle(layer, shape, hw, bits):
    """Every candidate's (dram bytes, tile_co, tile_c, weights, resident, ws) that fits."""
    b_n, c_n, h, w = shape
    co_n = layer.out_channels
    kh_n, kw_n = layer.kernel_size
    sh, sw = layer.stride
    ph, pw = layer.padding
    groups = layer.groups
    cg, cog = c_n // groups, co_n // groups
    ho = (h + 2 * ph - kh_n) // sh + 1
    wo = (w + 2 * pw - kw_n) // sw + 1
    geo = {"co": co_n, "ho": ho, "wo": wo}
    act, wb, acc, word = bits["act"], bits["weight"], bits["acc"], bits["word"]
    a, t_w = hw.acc_units, hw.tree_width
    rows_t = sorted({oh * sh - ph + i for oh in range(ho) for i in range(kh_n)} & set(range(h)))
    cols_t = sorted({ow * sw - pw + j for ow in range(wo) for j in range(kw_n)} & set(range(w)))
    taps = kh_n * kw_n

    def window(units):
        """Rows and columns (tapped) of a chunk's window."""
        (_, oh0, ow0), (_, oh1, ow1) = units[0], units[-1]
        r0, r1 = max(oh0 * sh - ph, 0), min(oh1 * sh - ph + kh_n - 1, h - 1)
        if oh0 == oh1:
            c0, c1 = max(ow0 * sw - pw, 0), min(ow1 * sw - pw + kw_n - 1, w - 1)
        else:
            c0, c1 = 0, w - 1
        return {r for r in rows_t if r0 <= r <= r1}, {c for c in cols_t if c0 <= c <= c1}

    found = []
    for tile_co in _ladder(co_n, a):
        chunks = _chunks(geo, a, tile_co)
        all_w = co_n * cg * taps * wb
        if all_w <= hw.weight_buffer_bytes * 8:
            wmode = 0
        elif 2 * min(tile_co, co_n) * cg * taps * wb <= hw.weight_buffer_bytes * 8:
            wmode = 1
        else:
            wmode = 2
        # per chunk: groups of its tile, window, new rows, new positions
        info = []
        seen, prev = -1, None
        for t0, ct, k, units in chunks:
            if k == 0:
                seen, prev = -1, None
            grp = len({(t0 + i) // cog for i in range(ct)})
            rows, cols = window(units)
            new_rows = {r for r in rows if r > seen}
            if rows:
                seen = max(seen, max(rows))
            box = {(r, c) for r in rows for c in cols}
            new_box = box - prev if prev is not None else box
            prev = box
            dco = len({co for co, _, _ in units})
            info.append((ct, k, units, grp, len(rows), len(new_rows), len(box), len(new_box), dco))
        for tile_c in _ladder(cg, t_w):
            ctl = [min(tile_c, cg - s) for s in range(0, cg, tile_c)]
            m = len(ctl)
            resident = (
                m == 1 and groups == 1 and tile_co < co_n
                and 2 * len(rows_t) * c_n * len(cols_t) * act <= hw.input_buffer_bytes * 8
            )  # fmt: skip
            # buffer needs
            if m == 1:
                seq = info * b_n
                # the next chunk's new rows (positions), all its groups' channels
                nxt = [(i[5] if i[1] > 0 else i[4]) * i[3] for i in seq[1:]] + [0]
                nxb = [(i[7] if i[1] > 0 else i[6]) * i[3] for i in seq[1:]] + [0]
                if resident:
                    need_in = 2 * len(rows_t) * c_n * len(cols_t) * act
                else:
                    need_in = max(i[4] * i[3] + n for i, n in zip(seq, nxt, strict=True))
                    need_in *= cg * len(cols_t) * act
                need_shift = max(i[6] * i[3] + n for i, n in zip(seq, nxb, strict=True))
                need_shift *= cg * word
            else:
                big = max(i[6] * i[3] for i in info) * (2 * tile_c if m > 2 else ctl[0] + ctl[-1])
                need_in, need_shift = big * act, big * word
            if wmode == 0:
                need_w = all_w
            elif wmode == 1:
                need_w = 2 * max(i[0] for i in info) * cg * taps * wb
            else:
                need_w = 2 * max(i[8] for i in info) * min(tile_c, cg) * taps * wb
            need_out = 2 * min(a, co_n * ho * wo) * acc
            needs = (need_in, need_shift if bits["shift"] else 0, need_w, need_out)
            caps = (hw.input_buffer_bytes, hw.shift_buffer_bytes, hw.weight_buffer_bytes,
                    hw.output_buffer_bytes)  # fmt: skip
            if any(n > c * 8 for n, c in zip(needs, caps, strict=True)):
                continue
            # DRAM bytes, pass by pass
            dram = math.ceil(all_w / 8) if wmode == 0 else 0
            for _b in range(b_n):
                for idx, (ct, k, units, grp, _, nrows, nbox_all, _, dco) in enumerate(info):
                    for tcl in ctl:
                        if m == 1 and resident:
                            in_bits = len(rows_t) * c_n * len(cols_t) * act if idx == 0 else 0
                        elif m == 1:
                            in_bits = nrows * grp * tcl * len(cols_t) * act
                        else:
                            in_bits = nbox_all * grp * tcl * act
                        if wmode == 1:
                            w_bits = ct * tcl * taps * wb if k == 0 else 0
                        elif wmode == 2:
                            w_bits = dco * tcl * taps * wb
                        else:
                            w_bits = 0
                        dram += math.ceil(in_bits / 8) + math.ceil(w_bits / 8)
                    dram += math.ceil(len(units) * acc / 8)
            ws = (
                m == 1 and a % tile_co == 0 and cg * taps <= hw.weight_rf_entries
                and any(i[1] > 0 and a % i[0] == 0 for i in info)
            )  # fmt: skip
            found.append((dram, tile_co, tile_c, _WEIGHTS[wmode], resident, ws))
            break
    return found


def _layers():
    """Small layers (dilation 1; groups, stride and padding drawn) and a batch of 1 or 2."""
    return small_convs(max_ci=6, max_co=9, max_hw=7)


def _machines():
    """Machines whose buffers cut the candidates anywhere (from all fitting to none)."""
    return tiny_machines(
        st.integers(1, 8),
        st.integers(1, 5),
        st.integers(8, 1200),
        st.integers(100, 6000),
        st.integers(10, 800),
    )


@settings(max_examples=80, deadline=None)
@given(_layers(), _machines(), st.booleans())
def test_search_chooses_the_exhaustive_best(case, hw, shift):
    layer, shape = case
    if shift:
        dp, bits = ShiftAddDatapath(), {"act": 8, "weight": 8, "word": 16 * 9, "shift": True}
    else:
        dp, bits = FixedMacDatapath(), {"act": 8, "weight": 8, "word": 0, "shift": False}
    bits["acc"] = 32
    found = _oracle(layer, shape, hw, bits)
    # the search skips an output tile whose lower bound cannot beat the best found: the
    # bound must never exceed a candidate's traffic, nor fall as the tiles shrink
    bound = _dram_lower_bound(geometry(layer, shape), describe(dp), hw)
    for f in found:
        assert bound(f[1]) <= f[0], f
    ladder = [bound(t) for t in _ladder(layer.out_channels, hw.acc_units)]
    assert ladder == sorted(ladder)
    event(f"candidates that fit: {min(len(found), 3)}")
    if not found:
        try:
            estimate(layer, dp, hw, input_shape=shape)
        except ValueError as err:
            assert "smallest tile" in str(err)
            return
        raise AssertionError("mapped a layer no candidate fits")
    c = estimate(layer, dp, hw, input_shape=shape)
    m = mapping(layer, dp, hw, shape, counts=c)
    got = (m["tile_co"], m["tile_c"], m["weights"], m["input_resident"])
    by_tiles = {f[1:5]: f for f in found}
    assert got in by_tiles, (got, found)
    chosen = by_tiles[got]
    event(f"tiles: {'several' if m['n_tiles'] > 1 else 'one'} x {min(m['n_ctiles'], 2)}")
    event(f"weights {m['weights']}, resident {m['input_resident']}, {m['dataflow']}")
    assert c.dram_read_bytes + c.dram_write_bytes == chosen[0]
    assert (m["dataflow"] == "ws") == chosen[5]
    least = min(found, key=lambda f: (f[0], -f[1]))
    ws = [f for f in found if f[5]]
    best_ws = min(ws, key=lambda f: (f[0], -f[1])) if ws else None
    if hw.dataflow == "os" or best_ws is None:
        assert chosen == least
    elif hw.dataflow == "ws":
        assert chosen == best_ws
    else:  # auto: the lower storage energy of the two
        assert chosen in (least, best_ws)
        if least != best_ws and (least[0], least[1]) != (best_ws[0], best_ws[1]):
            e = {
                flow: estimate(layer, dp, hw.replace(dataflow=flow), input_shape=shape).energy_pj
                for flow in ("os", "ws")
            }
            assert c.energy_pj == min(e.values())


def _triples(d):
    """Every chunk of a chunk table in context: its features, the next's, the previous length."""
    grp = d["groups"]
    feats = {
        "length": d["length"], "rg": d["rows"] * grp, "nrg": d["new_rows"] * grp,
        "bg": d["box"] * grp, "nbg": d["new_box"] * grp, "dco": d["distinct_co"],
        "k0": (d["k"] == 0) * 1, "same": d["same_co"], "ct": d["ct"], "reads": d["reads"],
    }  # fmt: skip
    n = len(d["length"])
    out = Counter()
    for j in range(n):
        cur = tuple(int(v[j]) for v in feats.values())
        nxt = None
        if j + 1 < n:
            nxt = tuple(int(feats[k][j + 1]) for k in ("nrg", "bg", "nbg", "dco", "k0", "ct"))
        prev = int(d["length"][j - 1]) if j > 0 else None
        out[(cur, nxt, prev)] += 1
    return out


def _summary_triples(s):
    """The same multiset from a summary's rows and weights."""
    keys = ("length", "rg", "nrg", "bg", "nbg", "dco", "k0", "same", "ct", "reads")
    out = Counter()
    for r in range(len(s.w)):
        cur = tuple(int(s.cur[k][r]) for k in keys)
        nxt = None
        if s.has_next[r]:
            nxt = tuple(int(s.nxt[k][r]) for k in ("nrg", "bg", "nbg", "dco", "k0", "ct"))
        prev = int(s.prev_len[r]) if s.has_prev[r] else None
        out[(cur, nxt, prev)] += int(s.w[r])
    return out


@settings(max_examples=60, deadline=None)
@given(_layers(), st.integers(1, 6), st.integers(1, 4), st.booleans())
def test_summaries_keep_every_chunk_in_context(case, a_units, q, multiple):
    """A summary (direct, or built from the ``A``-channel tile's for ``q*A``) stands for
    exactly the chunks of the table, each with its next chunk and its previous length."""
    layer, shape = case
    g = geometry(layer, shape)
    if g.groups != 1:
        for tile_co in {1, a_units, g.co}:
            table = _chunk_table(g, a_units, min(tile_co, g.co))
            assert _summary_triples(_table_summary(g, a_units, min(tile_co, g.co))) == _triples(
                table
            )
        return
    ct = q * a_units if multiple else q
    s = _tile_summary(g, a_units, ct)
    d = _tile_segment(g, a_units, ct)
    assert s.n == len(d["length"])
    assert _summary_triples(s) == _triples(d)
    assert int(s.w[s.first]) == int(s.w[s.last]) == 1
    assert not s.has_prev[s.first] and not s.has_next[s.last]
    assert int(s.cur["length"][s.first]) == int(d["length"][0])
    assert int(s.cur["nrg"][s.last]) == int(d["new_rows"][-1])


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
    st.integers(0, 3), st.integers(1, 2), st.integers(1, 5), st.integers(1, 5),
    st.integers(1, 5),
)  # fmt: skip
def test_position_summary_keeps_every_chunk_in_context(kh, kw, sh, dw, ph, dh, h, w, a_units):
    """The ``A``-channel tile's summary (built from output rows and columns, one position
    per chunk) against its chunk table: down to one output row or column, dilated, padded
    beyond the kernel's reach on one side."""
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    h, w = max(h, span_h - 2 * ph), max(w, span_w)
    layer = Conv2d(2, 3, (kh, kw), stride=(sh, 1), padding=(ph, 0), dilation=(dh, dw))
    g = geometry(layer, (1, 2, h, w))
    s = _tile_summary(g, a_units, a_units)
    d = _tile_segment(g, a_units, a_units)
    assert s.n == len(d["length"]) == g.ho * g.wo
    assert _summary_triples(s) == _triples(d)
    assert int(s.w[s.first]) == int(s.w[s.last]) == 1 and int(s.w.sum()) == s.n
    assert not s.has_prev[s.first] and not s.has_next[s.last]


@pytest.mark.parametrize(
    ("co", "input_bytes", "weight_bytes", "pipelined", "tile_co", "n_ctiles"),
    [
        (20, 1500, 1500, True, 6, 1),  # tiles of 2A and a rest of 2, line buffer
        (20, 400, 1500, False, 6, 3),  # the same in box mode, not pipelined
        (40, 1500, 3000, True, 12, 1),  # tiles of 4A: middle copies of every chunk
        (40, 1500, 3000, False, 12, 1),  # not pipelined
    ],
)
def test_cycle_model_agrees_on_tiles_of_several_units(
    rng, co, input_bytes, weight_bytes, pipelined, tile_co, n_ctiles
):
    """Output tiles of ``q*A`` channels (summarised from the ``A``-channel tile's), a rest
    tile, batch 2: the stepped model and the closed forms agree on every count."""
    layer = Conv2d(12, co, 3, padding=1)
    x = rng.integers(0, 256, size=(2, 12, 9, 11))
    w = rng.integers(-128, 128, size=layer.weight_shape)
    hw = Hardware.tiny().replace(
        acc_units=3, tree_width=4, input_buffer_bytes=input_bytes,
        weight_buffer_bytes=weight_bytes, pipelined=pipelined, dataflow="os",
    )  # fmt: skip
    dp = FixedMacDatapath()
    m = mapping(layer, dp, hw, x.shape)
    assert (m["tile_co"], m["n_ctiles"], m["weights"]) == (tile_co, n_ctiles, "sweep")
    res = dp.run(layer, w, x, level="cycle", hardware=hw)
    assert res.counts.replace(overflows=0) == estimate(layer, dp, hw, x=x)
