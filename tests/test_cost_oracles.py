"""Independent oracles for the cost model: brute-force access enumeration and hand counts.

The cycle-vs-analytic tests share :func:`shiftsim.cycle.schedule.plan` and the datapath
descriptions; these tests share neither. The brute-force reference walks the loop nest of a
small layer (batch, weight tile, chunk, input-channel tile, cycle, unit, channel) with the
tile sizes the report names, and counts the words each level serves by enumeration: distinct
input words per cycle (the multicast), weight words per cycle per distinct output channel or
from a unit's register file (simulated as a per-unit key), partial sums, results. Widths are
written out here, not taken from the datapath.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftsim.cost import estimate, mapping
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.hardware import Hardware
from shiftsim.layers import Conv2d
from shiftsim.quantize import ShiftCode
from tests.strategies import small_convs, tiny_machines


def _brute_force(layer, shape, hw, m, *, passes, pass_wbits, read_bits, acc_bits):
    """Enumerate every access of ``layer`` under the tiles of ``m`` (a mapping report).

    ``read_bits``: bits one input read moves (shift: 16 words of 9 bits; MAC: 8).
    """
    b_n, c_n, h, w = shape
    co_n = layer.out_channels
    kh_n, kw_n = layer.kernel_size
    sh, sw = layer.stride
    ph, pw = layer.padding
    groups = layer.groups
    cg, cog = c_n // groups, co_n // groups
    ho = (h + 2 * ph - kh_n) // sh + 1
    wo = (w + 2 * pw - kw_n) // sw + 1
    a, t_w = hw.acc_units, hw.tree_width
    tco, tc = m["tile_co"], m["tile_c"]
    ctiles = [(s, min(cg, s + tc)) for s in range(0, cg, tc)]
    got = dict.fromkeys(("in_reads", "w_reads", "rf_r", "rf_w", "psum_r", "psum_w", "out_w",
                         "cycles"), 0)  # fmt: skip
    for _b in range(b_n):
        rf: dict[int, tuple[int, int]] = {}  # unit -> (co, channel tile) its register file holds
        for t0 in range(0, co_n, tco):
            ct = min(tco, co_n - t0)
            outs = [(t0 + o % ct, (o // ct) // wo, (o // ct) % wo) for o in range(ct * ho * wo)]
            for k0 in range(0, len(outs), a):
                units = outs[k0 : k0 + a]
                for ci, (c_lo, c_hi) in enumerate(ctiles):
                    entries = (c_hi - c_lo) * kh_n * kw_n  # whole weights (N indices)
                    fits = entries <= hw.weight_rf_entries
                    hit = (
                        fits
                        and len(ctiles) == 1
                        and all(rf.get(u) == (co, ci) for u, (co, _, _) in enumerate(units))
                    )
                    for _n in range(passes):
                        for kh in range(kh_n):
                            for kw in range(kw_n):
                                for cb in range(c_lo, c_hi, t_w):
                                    words, cos = set(), set()
                                    for co, oh, ow in units:
                                        i, j = oh * sh - ph + kh, ow * sw - pw + kw
                                        for cl in range(cb, min(c_hi, cb + t_w)):
                                            cos.add(co)
                                            if 0 <= i < h and 0 <= j < w:
                                                words.add(((co // cog) * cg + cl, i, j))
                                    width = min(c_hi, cb + t_w) - cb
                                    got["in_reads"] += len(words) * read_bits
                                    got["cycles"] += 1
                                    if not hit:
                                        got["w_reads"] += len(cos) * width * pass_wbits
                                    if fits:
                                        got["rf_r"] += len(units) * width * pass_wbits
                                        if not hit:
                                            got["rf_w"] += len(units) * width * pass_wbits
                    step_sums = len(units) * passes * kh_n * kw_n * acc_bits
                    got["psum_w"] += step_sums if ci < len(ctiles) - 1 else 0
                    got["psum_r"] += step_sums if ci > 0 else 0
                    for u, (co, _, _) in enumerate(units):
                        rf[u] = (co, ci) if fits else None
                got["out_w"] += len(units) * acc_bits
    return got


def _layers():
    """Small dense layers, dilation 1 (groups, stride, padding drawn)."""
    return small_convs(max_ci=5, max_co=4, max_hw=6)


def _machine():
    return tiny_machines(
        st.integers(1, 6),
        st.integers(1, 4),
        st.sampled_from([64, 300, 1 << 20]),
        st.sampled_from([600, 5000, 1 << 20]),
        st.sampled_from([40, 200, 1 << 20]),
    )


@settings(max_examples=60, deadline=None)
@given(_layers(), _machine(), st.booleans())
def test_brute_force_access_enumeration(case, hw, shift):
    layer, shape = case
    if shift:  # N = 2, B = 4: 4-bit indices, 16 words of 8 + 1 bits per input
        dp, passes, pwb, read = ShiftAddDatapath(), 2, 4, 16 * 9
    else:  # 8-bit weights and inputs
        dp, passes, pwb, read = FixedMacDatapath(), 1, 8, 8
    try:
        c = estimate(layer, dp, hw, input_shape=shape)
    except ValueError as err:
        assert "smallest tile" in str(err)
        return
    m = mapping(layer, dp, hw, shape, counts=c)
    bf = _brute_force(layer, shape, hw, m, passes=passes, pass_wbits=pwb, read_bits=read,
                      acc_bits=32)  # fmt: skip
    assert bf["cycles"] == c.compute_cycles
    assert bf["in_reads"] == (c.shift_buffer_read_bits if shift else c.input_buffer_read_bits)
    assert bf["w_reads"] == c.weight_buffer_read_bits
    assert (bf["rf_r"], bf["rf_w"]) == (c.weight_rf_read_bits, c.weight_rf_write_bits)
    assert (bf["psum_r"], bf["psum_w"]) == (c.psum_read_bits, c.psum_write_bits)
    assert bf["out_w"] == c.output_buffer_write_bits
    # compulsory traffic by enumeration: every input some output reads, every weight, output
    b_n, c_n, h, w = shape
    kh_n, kw_n = layer.kernel_size
    ho, wo = layer.output_hw(h, w)
    rows = {oh * layer.stride[0] - layer.padding[0] + kh for oh in range(ho) for kh in range(kh_n)}
    cols = {ow * layer.stride[1] - layer.padding[1] + kw for ow in range(wo) for kw in range(kw_n)}
    n_in = b_n * c_n * len(rows & set(range(h))) * len(cols & set(range(w)))
    wbits = passes * pwb
    comp = math.ceil(n_in * 8 / 8) + math.ceil(layer.out_channels * c_n // layer.groups
                                               * kh_n * kw_n * wbits / 8)  # fmt: skip
    comp += b_n * layer.out_channels * ho * wo * 4
    assert m["compulsory_dram_bytes"] == comp
    assert c.dram_read_bytes + c.dram_write_bytes >= comp


def _one_index_code(layer):
    index = np.zeros((*layer.weight_shape, 2), dtype=np.int8)
    index[..., 0] = 1
    return ShiftCode(index=index, scale=np.float64(1.0), n_codebooks=2, bits=4)


def test_weight_stationary_schedule_counted_by_hand():
    # Conv2d(2, 2, 1) on a 1x2x2x2 input, A = 2 units, T = 2, shift datapath N = 2, B = 4.
    # Weight-stationary: tiles of Ct = 2 = A output channels; unit u always computes
    # co = u, at positions 0..3 (one chunk per position). Each unit's filter is
    # Cg*Kh*Kw = 2 weights (of N = 2 indices each): it fits the 2-entry register files.
    # Per chunk: N = 2 cycles (one channel block of T = 2 channels).
    # Weight buffer: chunk 0 streams 2 distinct co x 2 channels x 4 bits per cycle, 2
    #   cycles = 32 bits; chunks 1..3 hit the register files: 0.
    # Register files: read 2 units x 2 indices x 4 bits per cycle, 8 cycles = 128 bits;
    #   written at chunk 0 only: 2 x 2 x 4 x 2 cycles = 32 bits.
    # Shift buffer: both units sit at the same position: 2 distinct inputs per cycle, each
    #   sending 16 words of 9 bits: 2 x 144 x 8 cycles = 2304 bits (not 4608: multicast).
    layer = Conv2d(2, 2, 1)
    hw = Hardware.tiny().replace(acc_units=2, tree_width=2, weight_rf_entries=2, dataflow="ws")
    dp = ShiftAddDatapath()
    x = np.arange(8, dtype=np.int64).reshape(1, 2, 2, 2)
    res = dp.run(layer, _one_index_code(layer), x, level="cycle", hardware=hw)
    c = res.counts
    m = mapping(layer, dp, hw, x.shape, counts=c)
    assert (m["dataflow"], m["tile_co"], m["tile_c"]) == ("ws", 2, 2)
    assert c.compute_cycles == 8
    assert c.weight_buffer_read_bits == 32
    assert (c.weight_rf_read_bits, c.weight_rf_write_bits) == (128, 32)
    assert c.shift_buffer_read_bits == 2 * 144 * 8
    # N * terms = 2 * (2 co x 4 positions x 2 channels) = 32 index uses of 4 bits per 32
    # bits read from the weight buffer
    assert m["weight_reuse"] == 32 * 4 / 32
    # index 1 selects x << 0 in pass 1 and index 0 adds nothing: y = sum over channels
    np.testing.assert_array_equal(res.y_raw, np.broadcast_to(x.sum(axis=1), (1, 2, 2, 2)))
    # no register file: the weights stream from the buffer every cycle
    c0 = estimate(layer, dp, hw.replace(weight_rf_entries=0), input_shape=x.shape)
    assert c0.weight_buffer_read_bits == 4 * 32 and c0.weight_rf_read_bits == 0


def test_input_channel_tiles_counted_by_hand():
    # Conv2d(4, 1, 1) on a 1x4x1x2 input (2 positions), MAC datapath, A = 2, T = 2, and a
    # weight buffer of 2 bytes: all 4 weights (4 bytes) do not fit, nor two tiles of one
    # filter; a chunk's slice of 2 channels x 1 filter, twice, is 4 bytes: too much; one
    # channel per tile: 2 x 1 x 8 bits = 2 bytes fits. So 4 input-channel tiles of 1.
    # Chunk: both positions (Ct = 1, A = 2). Each tile: 1 cycle (ceil(1/2) block).
    # Partial sums: per unit and step (Kh*Kw = 1): written after tiles 0..2, read at 1..3:
    #   3 x 2 units x 32 bits each way.
    # DRAM: per tile the box of 2 positions x 1 channel = 2 bytes of input, 1 weight byte;
    #   results 2 x 4 bytes.
    layer = Conv2d(4, 1, 1)
    hw = Hardware.tiny().replace(acc_units=2, tree_width=2, weight_buffer_bytes=2,
                                 weight_rf_entries=0)  # fmt: skip
    dp = FixedMacDatapath()
    x = np.arange(8, dtype=np.int64).reshape(1, 4, 1, 2)
    wgt = np.array([[[[1]], [[2]], [[-3]], [[4]]]], dtype=np.int64)
    res = dp.run(layer, wgt, x, level="cycle", hardware=hw)
    c = res.counts
    m = mapping(layer, dp, hw, x.shape, counts=c)
    assert (m["tile_co"], m["tile_c"], m["n_ctiles"], m["weights"]) == (1, 1, 4, "pass")
    assert c.compute_cycles == 4
    assert (c.psum_write_bits, c.psum_read_bits) == (3 * 2 * 32, 3 * 2 * 32)
    assert c.dram_read_bytes == 4 * (2 + 1) and c.dram_write_bytes == 2 * 4
    assert c.acc_updates == 2  # one register update per output and step, as SPEC §5.1
    want = np.einsum("oc,bchw->bohw", wgt[:, :, 0, 0], x)
    np.testing.assert_array_equal(res.y_raw, want)
    gold = dp.run(layer, wgt, x, level="golden")
    assert (gold.counts.adds, gold.counts.acc_updates) == (c.adds, c.acc_updates)
    with pytest.raises(ValueError, match="weight_buffer_bytes=0"):
        estimate(layer, dp, hw.replace(weight_buffer_bytes=0), input_shape=x.shape)
