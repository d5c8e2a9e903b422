"""Analytic model, hardware presets, energy tables: closed forms checked by hand and by property."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shiftsim.cost import estimate, real_taps
from shiftsim.cycle.schedule import geometry
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.energy import COMPONENTS, EnergyTable, energy_breakdown
from shiftsim.formats import LogFormat
from shiftsim.hardware import Hardware
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import LogCode, ShiftCode
from tests.strategies import hardware_configs, layer_and_input_shape

BUFFERS = ("input_buffer_bytes", "shift_buffer_bytes", "weight_buffer_bytes", "output_buffer_bytes")


def _dram(layer, dp, hw, shape):
    c = estimate(layer, dp, hw, input_shape=shape)
    return c.dram_read_bytes + c.dram_write_bytes


@given(
    layer_and_input_shape(),
    hardware_configs(),
    st.sampled_from(BUFFERS),
    st.integers(1, 1 << 20),
    st.sampled_from(["shift", "mac", "log"]),
)
def test_dram_traffic_never_grows_with_a_buffer(case, hw, name, extra, kind):
    layer, shape = case
    dp = {"shift": ShiftAddDatapath, "mac": FixedMacDatapath, "log": LogDatapath}[kind]()
    try:
        before = _dram(layer, dp, hw, shape)
    except ValueError:
        return  # the smaller machine cannot run the layer at all
    bigger = hw.replace(**{name: getattr(hw, name) + extra})
    assert _dram(layer, dp, bigger, shape) <= before


def test_weight_tiles_when_weights_do_not_fit():
    layer = Conv2d(8, 8, 3, padding=1)
    shape = (2, 8, 5, 5)  # two batch elements; one element's input is 5 rows of 40 bytes
    dp = ShiftAddDatapath()
    big = Hardware.edge().replace(acc_units=2)
    filter_bytes = 8 * 9 * 8 // 8  # Cg*Kh*Kw*N*B bits
    resident = estimate(layer, dp, big, input_shape=shape)
    assert resident.weight_buffer_write_bits == 8 * filter_bytes * 8  # once for the batch
    assert resident.input_buffer_write_bits == 2 * 200 * 8
    # room for 4 filters: tiles of 2 (two in the buffer), 4 sweeps per element
    tiled = big.replace(weight_buffer_bytes=4 * filter_bytes)
    c = estimate(layer, dp, tiled, input_shape=shape)
    assert c.weight_buffer_write_bits == 2 * 8 * filter_bytes * 8  # once per element
    assert c.input_buffer_write_bits == 2 * 200 * 8  # rows stay resident across sweeps
    # too little input buffer for two elements' rows (400 bytes): each sweep reloads them
    line = tiled.replace(input_buffer_bytes=399)
    c = estimate(layer, dp, line, input_shape=shape)
    assert c.input_buffer_write_bits == 2 * 4 * 200 * 8
    assert c.dram_read_bytes == 2 * 4 * 200 + 2 * 8 * filter_bytes
    # a tile must hold at least A filters, twice
    with pytest.raises(ValueError, match=r"weight_buffer_bytes=287 .* at least 288 bytes"):
        estimate(layer, dp, tiled.replace(weight_buffer_bytes=287), input_shape=shape)


def test_real_taps_by_hand():
    # 4 wide, 3 taps, padding 1, stride 1: outputs 0..3; tap 0 reads column -1 at output 0
    g = geometry(Conv2d(1, 1, 3, padding=1), (1, 1, 4, 4))
    rows, cols = real_taps(g)
    np.testing.assert_array_equal(rows, [3, 4, 3])
    np.testing.assert_array_equal(cols, [3, 4, 3])


def test_zero_indices_counted_with_code():
    layer = Conv2d(2, 1, 1)
    index = np.array([[[[[1, 0]]], [[[0, 0]]]]], dtype=np.int8)  # (1, 2, 1, 1, 2)
    code = ShiftCode(index=index, scale=np.float64(1.0), n_codebooks=2, bits=4)
    hw = Hardware.edge()
    dp = ShiftAddDatapath()
    with_code = estimate(layer, dp, hw, code=code, input_shape=(1, 2, 3, 3))
    assert with_code.selects == 9 * 4 and with_code.zero_selects == 9 * 3
    assert with_code.shift_buffer_read_bits == 9 * 1 * 9  # one nonzero, 9-bit words
    blind = estimate(layer, dp, hw, input_shape=(1, 2, 3, 3))
    assert blind.zero_selects == 0 and blind.shift_buffer_read_bits == 9 * 4 * 9


def test_mac_counts_by_hand():
    c = estimate(Linear(3, 2), FixedMacDatapath(), Hardware.edge(), input_shape=(4, 3))
    assert (c.multiplies, c.adds, c.acc_updates) == (24, 24, 8)
    assert c.shift_ops == c.shift_buffer_write_bits == c.shift_unit_inputs == 0
    assert c.compute_cycles == 4 * math.ceil(2 / 16) * math.ceil(3 / 8)


def test_log_counts_without_data_by_hand():
    # 3x3 kernel, padding 1, on a 3x3 input of 2 channels: every activation and weight +1.
    # Real taps per output: corners 4, edges 6, centre 9, times 2 channels:
    # T = 4*8 + 4*12 + 18 = 98 terms, all positive: one log register per output (R = 9),
    # L = 98 - 9 = 89 merges.
    layer, shape, hw = Conv2d(2, 1, 3, padding=1), (1, 2, 3, 3), Hardware.edge()
    c = estimate(layer, LogDatapath(accumulate="log"), hw, input_shape=shape)
    assert (c.exponent_adds, c.acc_updates, c.compares, c.log_to_linear) == (98, 98, 89, 9)
    assert (c.shift_ops, c.adds, c.multiplies) == (89 + 9, 89 + 9, 0)
    c = estimate(layer, LogDatapath(accumulate="log", log_add="mitchell"), hw,
                 input_shape=shape, bias_raw=np.zeros(1, np.int64))  # fmt: skip
    assert c.adds == 2 * 89 + 2 * 9  # two adds per Mitchell merge; bias: one more per output
    c = estimate(layer, LogDatapath(), hw, input_shape=shape)  # linear accumulation
    assert (c.exponent_adds, c.shift_ops, c.adds, c.acc_updates, c.compares) == (98,) * 4 + (0,)
    # one lane per output, one term per cycle: 9 outputs on 16*8 lanes, 18 terms
    assert c.compute_cycles == 18


def test_log_counts_with_data_by_hand():
    # Linear(2, 1), base sqrt(2) weights, shift-add constant (0, 2): odd products cost one
    # more shift and one more add. w = +2^(1/2) (e = 1, odd), -2^0 (e = 0);
    # x (base 2, so even in units of 1/2): [2^1, 0] and [2^0, 2^0] (batch 2).
    # Terms: element 0: only the first (odd); element 1: both (one odd, one even).
    dp = LogDatapath(weight=LogFormat(4, 1, "sqrt2", True), sqrt2_mode="shift_add",
                     sqrt2_shifts=(0, 2))  # fmt: skip
    w = LogCode(exponent=np.array([[1, 0]]), sign=np.array([[1, -1]], np.int8), format=dp.weight)
    x = LogCode(exponent=np.array([[1, 0], [0, 0]]), sign=np.array([[1, 0], [1, 1]], np.int8),
                format=dp.act)  # fmt: skip
    c = estimate(Linear(2, 1), dp, Hardware.edge(), code=w, x=x)
    assert (c.exponent_adds, c.acc_updates) == (3, 3)
    assert (c.shift_ops, c.adds) == (3 + 2, 3 + 2)
    log = dataclasses.replace(dp, accumulate="log")
    c = estimate(Linear(2, 1), log, Hardware.edge(), code=w, x=x)
    # element 1 has one positive and one negative term: 3 registers, no merge
    assert (c.log_to_linear, c.compares, c.adds) == (3, 0, 2)


def test_estimate_rejects_bad_arguments():
    dp = ShiftAddDatapath()
    with pytest.raises(ValueError, match="input_shape"):
        estimate(Conv2d(1, 1, 3), dp, Hardware.edge())
    with pytest.raises(TypeError, match="hardware"):
        estimate(Conv2d(1, 1, 3), dp, "edge", input_shape=(1, 1, 3, 3))
    with pytest.raises(TypeError, match="datapath"):
        estimate(Conv2d(1, 1, 3), object(), Hardware.edge(), input_shape=(1, 1, 3, 3))
    with pytest.raises(ValueError, match="input_shape"):
        estimate(Conv2d(1, 1, 3), dp, Hardware.edge(), input_shape=(1, 2, 3, 3))
    x = np.zeros((1, 1, 3, 3), np.int64)
    with pytest.raises(ValueError, match="input_shape"):
        estimate(Conv2d(1, 1, 3), dp, Hardware.edge(), input_shape=(1, 1, 4, 4), x=x)
    with pytest.raises(ValueError, match="x holds raw value 256"):
        estimate(Conv2d(1, 1, 3), dp, Hardware.edge(), x=x + 256)  # 8-bit unsigned inputs
    log = LogDatapath()
    with pytest.raises(TypeError, match="w_code"):
        estimate(Conv2d(1, 1, 3), log, Hardware.edge(), code=np.ones((1, 1, 3, 3)), x=None,
                 input_shape=(1, 1, 3, 3))  # fmt: skip
    with pytest.raises(TypeError, match="x_code"):
        estimate(Conv2d(1, 1, 3), log, Hardware.edge(), x=x)


@pytest.mark.parametrize(
    ("field", "value"),
    [("acc_units", 0), ("tree_width", -1), ("input_buffer_bytes", -1), ("clock_hz", 0.0),
     ("clock_hz", float("nan")), ("sram_access_bits", 0)],
)  # fmt: skip
def test_hardware_validation(field, value):
    with pytest.raises(ValueError, match=field):
        Hardware.edge().replace(**{field: value})
    with pytest.raises(TypeError, match="shift_width"):
        Hardware.edge().replace(shift_width=2.0)
    with pytest.raises(TypeError, match="pipelined"):
        Hardware.edge().replace(pipelined=1)


def test_hardware_presets_are_frozen():
    hw = Hardware.paper()
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.acc_units = 1
    assert Hardware.edge().acc_units < hw.acc_units


def test_default_energy_table_is_horowitz():
    t = EnergyTable.default()
    assert "45 nm" in t.name
    assert t.add_pj(8) == pytest.approx(0.03) and t.add_pj(32) == pytest.approx(0.1)
    assert t.multiply_pj(8) == pytest.approx(0.2) and t.multiply_pj(32) == pytest.approx(3.1)
    assert [t.sram_pj(b) for b in (100, 8192, 8193, 1 << 20, 1 << 30)] == [10, 10, 20, 100, 100]
    assert 1300 <= t.dram_pj <= 2600
    assert t.add_pj(16) == pytest.approx(0.03 + 8 * 0.07 / 24)  # linear in the width


def test_energy_table_from_dict_and_toml(tmp_path):
    data = {
        "name": "unit",
        "add": {"bits": [8], "pj": [1.0]},
        "multiply": {"bits": [8], "pj": [4.0]},
        "sram": {"bytes": [1024], "pj": [64.0], "access_bits": 64},
        "dram": {"pj": 640.0},
    }
    t = EnergyTable.from_dict(data)
    assert (t.add_pj(16), t.multiply_pj(16), t.sram_pj(10), t.select_pj) == (2.0, 16.0, 64.0, 0)
    path = tmp_path / "t.toml"
    path.write_text(
        'name = "unit"\n[add]\nbits = [8]\npj = [1.0]\n[multiply]\nbits = [8]\npj = [4.0]\n'
        "[sram]\nbytes = [1024]\npj = [64.0]\n[dram]\npj = 640.0\n"
    )
    assert EnergyTable.from_toml(path) == t
    with pytest.raises(ValueError, match="dram"):
        EnergyTable.from_dict({k: v for k, v in data.items() if k != "dram"})
    with pytest.raises(ValueError, match="add"):
        EnergyTable.from_dict({**data, "add": {"bits": [0], "pj": [1.0]}})


def test_energy_breakdown_by_hand():
    t = EnergyTable.from_dict(
        {
            "name": "unit",
            "add": {"bits": [32], "pj": [1.0]},
            "multiply": {"bits": [8], "pj": [10.0]},
            "sram": {"bytes": [1 << 30], "pj": [64.0]},
            "dram": {"pj": 6400.0},
        }
    )
    layer = Linear(3, 2)
    hw = Hardware.edge()
    dp = FixedMacDatapath()  # 8-bit weights and inputs, 32-bit accumulator
    c = estimate(layer, dp, hw, input_shape=(1, 3), energy_table=t)
    parts = energy_breakdown(c, dp, hw, t)
    assert tuple(parts) == COMPONENTS
    assert parts["multiply"] == 6 * 10.0 and parts["add"] == 6 * 1.0
    # weights 6 bytes + inputs 3 bytes read, 2 * 4 bytes written: 17 bytes = 136 bits
    assert parts["dram"] == (9 + 8) * 8 / 64 * 6400.0
    assert parts["input_buffer"] == (24 + 3 * 2 * 8) / 64 * 64.0
    assert c.energy_pj == pytest.approx(sum(parts.values()))


@pytest.mark.parametrize("net", ["resnet18", "googlenet"])
@pytest.mark.parametrize("hw", [Hardware.paper(), Hardware.edge()], ids=["paper", "edge"])
def test_presets_run_every_layer_of_real_networks(net, hw):
    from shiftsim.io.topology import read_topology

    for dp in (ShiftAddDatapath(), FixedMacDatapath()):
        n = getattr(dp, "n_codebooks", 1)
        for tl in read_topology(net, padding="same"):
            conv = tl.layer
            c = estimate(conv, dp, hw, input_shape=(1, conv.in_channels, *tl.input_hw))
            ho, wo = conv.output_hw(*tl.input_hw)
            kh, kw = conv.kernel_size
            steps = n * kh * kw * math.ceil(conv.channels_per_group / hw.tree_width)
            assert c.compute_cycles == math.ceil(conv.out_channels * ho * wo / hw.acc_units) * steps
            assert c.cycles >= c.compute_cycles
            assert c.dram_write_bytes == conv.out_channels * ho * wo * 4  # 32-bit results
