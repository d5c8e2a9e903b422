"""Cycle-stepped model: values equal the golden model's, counts equal the analytic model's."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given

from shiftsim.cost import estimate
from shiftsim.counts import Counts
from shiftsim.cycle import TRACE_DTYPE, CycleLimitError
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.formats import FixedFormat
from shiftsim.hardware import Hardware
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import ShiftCode
from tests.strategies import hardware_configs, log_cases, mac_cases, shift_cases

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


def _shift_dp(case):
    return ShiftAddDatapath(
        n_codebooks=case.n_codebooks,
        bits=case.bits,
        act=case.act,
        shift_frac_bits=case.shift_frac_bits,
        shift_rounding=case.shift_rounding,
        acc_bits=case.acc_bits,
        overflow=case.overflow,
    )


def _code(case):
    return ShiftCode(
        index=case.index, scale=np.float64(1.0), n_codebooks=case.n_codebooks, bits=case.bits
    )


def _run_both(dp, layer, code, x, bias, hw):
    """Cycle result and analytic counts, or None when the machine is too small (both say so)."""
    try:
        shape = x.exponent.shape if hasattr(x, "exponent") else np.shape(x)
        est = estimate(layer, dp, hw, code=code, input_shape=shape)
    except ValueError as err:
        assert "too small" in str(err)
        with pytest.raises(ValueError, match="too small"):
            dp.run(layer, code, x, bias, level="cycle", hardware=hw)
        return None, None
    return dp.run(layer, code, x, bias, level="cycle", hardware=hw), est


def _compute_cycles(layer, x_shape, hw, passes):
    conv = layer.as_conv()
    if isinstance(layer, Linear):
        x_shape = (*x_shape, 1, 1)
    b, _, h, w = x_shape
    ho, wo = conv.output_hw(h, w)
    kh, kw = conv.kernel_size
    per_item = math.ceil(conv.out_channels * ho * wo / hw.acc_units) * passes * kh * kw
    return b * per_item * math.ceil(conv.channels_per_group / hw.tree_width)


@given(shift_cases(), hardware_configs())
def test_shift_cycle_matches_golden_and_analytic(case, hw):
    dp = _shift_dp(case)
    code = _code(case)
    res, est = _run_both(dp, case.layer, code, case.x_raw, case.bias_raw, hw)
    if res is None:
        return
    gold = dp.run(case.layer, code, case.x_raw, case.bias_raw, level="golden")
    assert res.y_raw.dtype == np.int64 and res.y_raw.shape == gold.y_raw.shape
    np.testing.assert_array_equal(res.y_raw, gold.y_raw)
    for name, value in gold.counts.nonzero().items():
        assert getattr(res.counts, name) == value, name
    assert est == res.counts.replace(overflows=0)  # every field, energy included
    assert res.counts.compute_cycles == _compute_cycles(
        case.layer, case.x_raw.shape, hw, case.n_codebooks
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
    for name, value in gold.counts.nonzero().items():
        assert getattr(res.counts, name) == value, name
    assert est == res.counts.replace(overflows=0)
    assert res.counts.compute_cycles == _compute_cycles(case.layer, case.x_raw.shape, hw, 1)


@given(log_cases(), hardware_configs())
def test_log_cycle_hardware_counts_match_analytic(case, hw):
    dp = LogDatapath(**case.options)
    res, est = _run_both(dp, case.layer, case.w_code, case.x_code, case.bias_raw, hw)
    if res is None:
        return
    func = dp.run(case.layer, case.w_code, case.x_code, case.bias_raw)
    np.testing.assert_array_equal(res.y_raw, func.y_raw)
    for name in HARDWARE_FIELDS:
        assert getattr(res.counts, name) == getattr(est, name), name
    assert res.counts.exponent_adds == func.counts.exponent_adds


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
