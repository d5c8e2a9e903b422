"""Cycle-stepped model: values equal the golden model's, counts equal the analytic model's."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, given

from shiftsim.cost import estimate, mapping
from shiftsim.counts import Counts
from shiftsim.cycle import TRACE_DTYPE, CycleLimitError
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.formats import FixedFormat, LogFormat, Overflow
from shiftsim.hardware import Hardware
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import LogCode, ShiftCode
from tests.strategies import (
    hardware_configs,
    log_cases,
    mac_cases,
    random_log_code,
    shift_cases,
)

HARDWARE_FIELDS = [
    "cycles",
    "compute_cycles",
    "stall_cycles",
    "input_buffer_read_bits",
    "input_buffer_write_bits",
    "shift_buffer_read_bits",
    "shift_buffer_write_bits",
    "weight_buffer_read_bits",
    "weight_buffer_write_bits",
    "output_buffer_read_bits",
    "output_buffer_write_bits",
    "dram_read_bytes",
    "dram_write_bytes",
    "shift_unit_inputs",
]


ARITHMETIC_FIELDS = [
    "shift_ops",
    "negations",
    "selects",
    "zero_selects",
    "adds",
    "multiplies",
    "exponent_adds",
    "compares",
    "acc_updates",
    "log_to_linear",
    "overflows",
]


def _run_both(dp, layer, code, x, bias, hw):
    """Cycle result and analytic counts (given the data), or None when the machine is too
    small (both say so)."""
    try:
        est = estimate(layer, dp, hw, code=code, x=x, bias_raw=bias)
    except ValueError as err:
        assert "too small" in str(err)
        event("machine too small")
        with pytest.raises(ValueError, match="too small"):
            dp.run(layer, code, x, bias, level="cycle", hardware=hw)
        return None, None
    return dp.run(layer, code, x, bias, level="cycle", hardware=hw), est


def _compute_cycles(layer, x_shape, hw, passes, dp, log=False):
    """SPEC's compute cycles for the chosen tiles: per weight tile of ``ct`` output channels
    ``ceil(ct*Ho*Wo / lanes)`` chunks, each ``N*Kh*Kw*ceil(tcl/T)`` cycles per input-channel
    tile of ``tcl`` channels (the log datapath: A*T serial lanes, ``tcl*Kh*Kw`` cycles)."""
    m = mapping(layer, dp, hw, x_shape)
    conv = layer.as_conv()
    if isinstance(layer, Linear):
        x_shape = (*x_shape, 1, 1)
    b, _, h, w = x_shape
    ho, wo = conv.output_hw(h, w)
    kh, kw = conv.kernel_size
    cg = conv.channels_per_group
    co = conv.out_channels
    lanes = hw.acc_units * hw.tree_width if log else hw.acc_units
    tiles = [min(m["tile_co"], co - s) for s in range(0, co, m["tile_co"])]
    chunks = sum(math.ceil(ct * ho * wo / lanes) for ct in tiles)
    ctiles = [min(m["tile_c"], cg - s) for s in range(0, cg, m["tile_c"])]
    if log:
        per_chunk = sum(tcl * kh * kw for tcl in ctiles)
    else:
        per_chunk = sum(passes * kh * kw * math.ceil(tcl / hw.tree_width) for tcl in ctiles)
    if m["tile_co"] == co and m["tile_c"] == cg:  # untiled: the closed form of SPEC §7
        assert chunks * per_chunk == math.ceil(co * ho * wo / lanes) * per_chunk
    return b * chunks * per_chunk


def _same_arithmetic(got, want):
    for name in ARITHMETIC_FIELDS:
        assert getattr(got, name) == getattr(want, name), name


@given(shift_cases(), hardware_configs())
def test_shift_cycle_matches_golden_and_analytic(case, hw):
    dp = case.datapath()
    code = case.code()
    res, est = _run_both(dp, case.layer, code, case.x_raw, case.bias_raw, hw)
    if res is None:
        return
    gold = dp.run(case.layer, code, case.x_raw, case.bias_raw, level="golden")
    assert res.y_raw.dtype == np.int64 and res.y_raw.shape == gold.y_raw.shape
    np.testing.assert_array_equal(res.y_raw, gold.y_raw)
    _same_arithmetic(res.counts, gold.counts)  # overflows included
    assert est == res.counts.replace(overflows=0)  # every field, energy included
    # no count but overflows depends on the input values: the shape is enough
    assert estimate(case.layer, dp, hw, code=code, input_shape=case.x_raw.shape) == est
    assert res.counts.compute_cycles == _compute_cycles(
        case.layer, case.x_raw.shape, hw, case.n_codebooks, dp
    )
    assert res.counts.cycles == res.counts.compute_cycles + res.counts.stall_cycles


@given(mac_cases(), hardware_configs())
def test_mac_cycle_matches_golden_and_analytic(case, hw):
    dp = FixedMacDatapath(**case.options)
    res, est = _run_both(dp, case.layer, case.w_raw, case.x_raw, case.bias_raw, hw)
    if res is None:
        return
    gold = dp.run(case.layer, case.w_raw, case.x_raw, case.bias_raw, level="golden")
    assert res.y_raw.dtype == np.int64 and res.y_raw.shape == gold.y_raw.shape
    np.testing.assert_array_equal(res.y_raw, gold.y_raw)
    _same_arithmetic(res.counts, gold.counts)
    assert est == res.counts.replace(overflows=0)
    assert estimate(case.layer, dp, hw, input_shape=case.x_raw.shape) == est
    assert res.counts.compute_cycles == _compute_cycles(case.layer, case.x_raw.shape, hw, 1, dp)


def _plus_one(code, dp):
    """``code`` with every value replaced by +1's stand-in: positive, an even exponent (in
    units of 1/k), or None when the format has no such exponent."""
    fmt = code.format
    e = fmt.e_max if fmt.e_max * (dp.k // fmt.k) % 2 == 0 else fmt.e_max - 1
    if e < fmt.e_min:
        return None
    shape = code.exponent.shape
    return LogCode(exponent=np.full(shape, e), sign=np.ones(shape, np.int8), format=fmt)


@pytest.mark.parametrize("accumulate", ["linear", "log"])
@given(case=log_cases(), hw=hardware_configs())
def test_log_cycle_matches_golden_and_analytic(accumulate, case, hw):
    dp = LogDatapath(**{**case.options, "accumulate": accumulate})
    res, est = _run_both(dp, case.layer, case.w_code, case.x_code, case.bias_raw, hw)
    if res is None:
        return
    gold = dp.run(case.layer, case.w_code, case.x_code, case.bias_raw, level="golden")
    assert res.y_raw.dtype == np.int64 and res.y_raw.shape == gold.y_raw.shape
    np.testing.assert_array_equal(res.y_raw, gold.y_raw)
    _same_arithmetic(res.counts, gold.counts)  # overflows: cycle == golden
    assert est == res.counts.replace(overflows=0)  # every other field, energy included
    shape = case.x_code.exponent.shape
    assert res.counts.compute_cycles == _compute_cycles(case.layer, shape, hw, 1, dp, log=True)
    assert res.counts.cycles == res.counts.compute_cycles + res.counts.stall_cycles
    # without the data, estimate assumes +1 codes: exact for such operands
    w1, x1 = _plus_one(case.w_code, dp), _plus_one(case.x_code, dp)
    if w1 is None or x1 is None:
        return
    event("estimate without data checked")
    for code, x, kw in (
        (w1, x1, {"input_shape": shape}),
        (case.w_code, x1, {"code": case.w_code, "input_shape": shape}),
        (w1, case.x_code, {"x": case.x_code}),
    ):
        blind = estimate(case.layer, dp, hw, bias_raw=case.bias_raw, **kw)
        ran = dp.run(case.layer, code, x, case.bias_raw, level="cycle", hardware=hw)
        assert blind == ran.counts.replace(overflows=0)


def test_log_cycle_by_hand():
    # Linear(3, 1), log accumulation, floor log adder, g = 4, F = 4, no bias.
    # w = +2^-1, -2^-2, +2^0; x = 2^1, 2^0, 2^1: products p = 0 (+), -2 (-), 1 (+).
    # positive register: S = 0, then p = 1: d = |0 - 1| = 1, S = max(0, 16) + (16 >> 1) = 24
    #   (log2 1.5: Mitchell 2 * 1.5 = 3 -> 48 in F = 4); negative: S = -32 -> 0.25 -> 4.
    # y = 48 - 4 = 44 (2.75, exact). exponent adds 3, compares 1, shifts 1 merge + 2
    # conversions, adds 1 merge + 1 final, 3 register writes, 2 conversions.
    # Hardware: A = 1, T = 2 -> 2 lanes; one output: one chunk of 3 steps (c = 0, 1, 2).
    # prep: inputs 3 * 3 bits -> 2 bytes, weights 3 * 5 bits -> 2 bytes: 4 cycles at 1 B/cycle;
    # store: 32 bits = 4 bytes = 4 cycles. Pipelined: 4 + max(3, 0) + 4 = 11 cycles.
    dp = LogDatapath(accumulate="log", acc_frac_bits=4, weight=LogFormat(4, 1, 2, True))
    w = LogCode(exponent=np.array([[-1, -2, 0]]), sign=np.array([[1, -1, 1]], np.int8),
                format=dp.weight)  # fmt: skip
    x = LogCode(exponent=np.array([[1, 0, 1]]), sign=np.ones((1, 3), np.int8), format=dp.act)
    hw = Hardware(
        shift_width=1, acc_units=1, tree_width=2, input_buffer_bytes=64, shift_buffer_bytes=0,
        weight_buffer_bytes=64, output_buffer_bytes=64, dram_bytes_per_cycle=1, clock_hz=1e6,
    )  # fmt: skip
    res = dp.run(Linear(3, 1), w, x, level="cycle", hardware=hw)
    np.testing.assert_array_equal(res.y_raw, np.array([[44]]))
    c = res.counts
    assert (c.exponent_adds, c.compares, c.shift_ops, c.adds) == (3, 1, 3, 2)
    assert (c.acc_updates, c.log_to_linear, c.multiplies, c.overflows) == (3, 2, 0, 0)
    assert (c.cycles, c.compute_cycles, c.stall_cycles) == (11, 3, 8)
    assert (c.dram_read_bytes, c.dram_write_bytes) == (4, 4)
    assert c.input_buffer_read_bits == 3 * 3 and c.weight_buffer_read_bits == 3 * 5
    assert c == estimate(Linear(3, 1), dp, hw, code=w, x=x)


@pytest.mark.parametrize("overflow", [Overflow.WRAP, Overflow.SAT])
@pytest.mark.parametrize("acc_bits", [8, 40, 62])
def test_log_conversion_beyond_int64(rng, overflow, acc_bits):
    # F = 70: the log registers convert to values of 2**62 and more, which no register holds
    dp = LogDatapath(accumulate="log", acc_frac_bits=70, acc_bits=acc_bits, overflow=overflow)
    layer = Conv2d(3, 2, 2, padding=1)
    w = random_log_code(rng, layer.weight_shape, dp.weight)
    x = random_log_code(rng, (2, 3, 3, 3), dp.act)
    res = dp.run(layer, w, x, level="cycle", hardware=Hardware.edge())
    gold = dp.run(layer, w, x, level="golden")
    np.testing.assert_array_equal(res.y_raw, gold.y_raw)
    _same_arithmetic(res.counts, gold.counts)
    assert res.counts.overflows > 0


def _tiny():
    """A 1-channel 3x3 layer on a 4x4 input: 2x2 outputs, all weights 1 (index [1, 0])."""
    layer = Conv2d(1, 1, 3)
    index = np.zeros((1, 1, 3, 3, 2), dtype=np.int8)
    index[..., 0] = 1
    code = ShiftCode(index=index, scale=np.float64(1.0), n_codebooks=2, bits=4)
    x = np.arange(16, dtype=np.int64).reshape(1, 1, 4, 4)
    hw = Hardware(
        shift_width=1, acc_units=2, tree_width=1, input_buffer_bytes=1024,
        shift_buffer_bytes=1024, weight_buffer_bytes=1024, output_buffer_bytes=1024,
        dram_bytes_per_cycle=1, clock_hz=1e6,
    )  # fmt: skip
    return layer, code, x, hw, ShiftAddDatapath(acc_bits=16)


def test_tiny_schedule_counted_by_hand():
    # N=2, B=4: S = 7, P-1 = 16 words of 8+1 bits per input; 8-bit inputs; 16-bit outputs.
    # Chunks of A=2 outputs: chunk 0 = (0,0),(0,1), chunk 1 = (1,0),(1,1).
    # Steps per chunk: N*Kh*Kw*ceil(1/1) = 18 -> compute 36 cycles.
    # prep 0: rows 0..2 (3*4 bytes) + 9 weight bytes at 1 byte/cycle = 21 cycles, then the
    #         shift unit shifts the 3x4 window, 1 value/cycle = 12 cycles -> 33 cycles.
    # prep 1: row 3 (4 bytes) = 4 cycles; window rows 1..3 minus rows 1..2 = 4 values -> 8.
    # store: 2 outputs * 16 bits = 4 bytes = 4 cycles each.
    # pipelined: 33 + max(18, 8 + 0) + max(18, 0 + 4) + 4 = 73.
    layer, code, x, hw, dp = _tiny()
    res = dp.run(layer, code, x, level="cycle", hardware=hw, trace=True)
    c = res.counts
    assert (c.cycles, c.compute_cycles, c.stall_cycles) == (73, 36, 37)
    assert (c.dram_read_bytes, c.dram_write_bytes) == (25, 8)
    assert c.shift_unit_inputs == 16
    assert c.input_buffer_write_bits == 16 * 8
    assert c.shift_buffer_write_bits == 16 * 16 * 9
    assert c.weight_buffer_write_bits == 9 * 8
    # every weight selects x >> 0: the outputs are plain 3x3 box sums
    want = np.array([[[[45, 54], [81, 90]]]])
    np.testing.assert_array_equal(res.y_raw, want)
    # sequential: (33 + 18 + 4) + (8 + 18 + 4)
    seq = dp.run(layer, code, x, level="cycle", hardware=hw.replace(pipelined=False))
    assert seq.counts.cycles == 85


def test_trace_one_adder_row_per_cycle():
    layer, code, x, hw, dp = _tiny()
    res = dp.run(layer, code, x, level="cycle", hardware=hw, trace=True)
    tr = res.trace
    assert tr.dtype == TRACE_DTYPE
    adders = tr[tr["unit"] == 0]
    np.testing.assert_array_equal(adders["cycle"], np.arange(res.counts.cycles))
    assert np.count_nonzero(adders["action"] == 0) == res.counts.compute_cycles
    # the first 21 cycles load, the next 12 shift, all for chunk 0
    first = tr[(tr["unit"] != 0) & (tr["cycle"] < 33)]
    assert list(first["unit"]) == [1] * 21 + [2] * 12
    assert set(first["address"]) == {0}
    assert dp.run(layer, code, x, level="cycle", hardware=hw).trace is None


def test_max_cycles_guard():
    layer, code, x, hw, dp = _tiny()
    assert dp.run(layer, code, x, level="cycle", hardware=hw, max_cycles=73).counts.cycles == 73
    with pytest.raises(CycleLimitError, match="max_cycles=72"):
        dp.run(layer, code, x, level="cycle", hardware=hw, max_cycles=72)
    with pytest.raises(ValueError, match="max_cycles"):
        dp.run(layer, code, x, level="cycle", hardware=hw, max_cycles=-1)
    with pytest.raises(TypeError, match="hardware"):
        dp.run(layer, code, x, level="cycle", hardware="edge")


def test_too_small_buffer_names_it():
    layer, code, x, hw, dp = _tiny()
    for name in ("input_buffer_bytes", "shift_buffer_bytes", "output_buffer_bytes"):
        with pytest.raises(ValueError, match=name):
            dp.run(layer, code, x, level="cycle", hardware=hw.replace(**{name: 1}))
    with pytest.raises(ValueError, match="weight_buffer_bytes"):
        estimate(layer, dp, hw.replace(weight_buffer_bytes=8), input_shape=(1, 1, 4, 4))


def test_linear_layer_and_default_hardware():
    dp = FixedMacDatapath(weight=FixedFormat(4, 2), act=FixedFormat(4, 0, signed=False))
    w = np.array([[3, -2], [1, 1]])
    x = np.array([[5, 7], [1, 2]])
    res = dp.run(Linear(2, 2), w, x, level="cycle")
    np.testing.assert_array_equal(res.y_raw, np.array([[1, 12], [-1, 3]]))
    assert res.counts == estimate(Linear(2, 2), dp, Hardware.paper(), input_shape=(2, 2))
    assert isinstance(res.counts, Counts) and res.counts.energy_pj > 0


@pytest.mark.parametrize("weight_bytes", [1 << 20, 288, 500])
@pytest.mark.parametrize("input_bytes", [1 << 20, 399])
@pytest.mark.parametrize("pipelined", [True, False])
def test_weight_tiles_and_line_buffer(rng, weight_bytes, input_bytes, pipelined):
    # 8 filters of 72 bytes: resident, tiles of 2 (288 bytes) or of 2 again (500 // 144 = 3,
    # rounded down to a multiple of A=2); the input rows stay resident or are reloaded
    layer = Conv2d(8, 8, 3, stride=(1, 2), padding=1)
    x = rng.integers(0, 256, size=(2, 8, 5, 5))
    index = rng.integers(-7, 8, size=(8, 8, 3, 3, 2)).astype(np.int8)
    code = ShiftCode(index=index, scale=np.float64(1.0), n_codebooks=2, bits=4)
    hw = Hardware.edge().replace(
        acc_units=2, weight_buffer_bytes=weight_bytes, input_buffer_bytes=input_bytes,
        pipelined=pipelined,
    )  # fmt: skip
    dp = ShiftAddDatapath()
    res = dp.run(layer, code, x, level="cycle", hardware=hw)
    np.testing.assert_array_equal(res.y_raw, dp.run(layer, code, x, level="golden").y_raw)
    assert res.counts == estimate(layer, dp, hw, code=code, input_shape=x.shape)
    mac = FixedMacDatapath()
    w = rng.integers(-128, 128, size=layer.weight_shape)
    res = mac.run(layer, w, x, level="cycle", hardware=hw)
    np.testing.assert_array_equal(res.y_raw, mac.run(layer, w, x, level="golden").y_raw)
    assert res.counts == estimate(layer, mac, hw, input_shape=x.shape)
