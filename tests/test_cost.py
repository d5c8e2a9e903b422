"""Analytic model, hardware presets, energy tables: closed forms checked by hand and by property."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftsim.cost import estimate, mapping, real_taps
from shiftsim.counts import Counts
from shiftsim.cycle.schedule import describe, geometry, smallest_tile_needs
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.energy import COMPONENTS, EnergyTable, energy_breakdown, energy_pj
from shiftsim.formats import LogFormat
from shiftsim.hardware import Hardware
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import LogCode, ShiftCode
from tests.strategies import hardware_configs, layer_and_input_shape

BUFFERS = ("input_buffer_bytes", "shift_buffer_bytes", "weight_buffer_bytes", "output_buffer_bytes")


DATAPATHS = {"shift": ShiftAddDatapath, "mac": FixedMacDatapath, "log": LogDatapath}


def _dram(layer, dp, hw, shape):
    c = estimate(layer, dp, hw, input_shape=shape)
    return c.dram_read_bytes + c.dram_write_bytes


@given(
    layer_and_input_shape(),
    hardware_configs(),
    st.sampled_from(BUFFERS),
    st.integers(1, 1 << 20),
    st.sampled_from(sorted(DATAPATHS)),
)
def test_dram_traffic_never_grows_with_a_buffer(case, hw, name, extra, kind):
    # "os" is the least-traffic mapping; a bigger buffer only adds candidates
    layer, shape = case
    dp = DATAPATHS[kind]()
    hw = hw.replace(dataflow="os")
    try:
        before = _dram(layer, dp, hw, shape)
    except ValueError as err:
        assert "smallest tile" in str(err)
        return  # the smaller machine cannot run the layer at all
    bigger = hw.replace(**{name: getattr(hw, name) + extra})
    assert _dram(layer, dp, bigger, shape) <= before


@given(layer_and_input_shape(), hardware_configs(), st.sampled_from(sorted(DATAPATHS)))
def test_bounds_hold_for_every_dataflow(case, hw, kind):
    # modelled DRAM traffic never below compulsory (each tapped input, weight, output once),
    # cycles never below MACs / lanes; the report names the dataflow it ran
    layer, shape = case
    dp = DATAPATHS[kind]()
    for flow in ("os", "ws", "auto"):
        machine = hw.replace(dataflow=flow)
        try:
            c = estimate(layer, dp, machine, input_shape=shape)
        except ValueError as err:
            assert "smallest tile" in str(err)
            return
        m = mapping(layer, dp, machine, shape, counts=c)
        assert m["dram_ratio"] >= 1.0
        assert c.dram_read_bytes + c.dram_write_bytes >= m["compulsory_dram_bytes"]
        assert c.compute_cycles >= m["ideal_cycles"] and 0 < m["utilisation"] <= 1
        assert m["dataflow"] in ("os", "ws")
        if flow == "ws" and m["dataflow"] == "ws":  # every unit reuses its weights
            assert m["weight_reuse"] >= 1


@settings(max_examples=40)
@given(layer_and_input_shape(max_channels=6, max_size=7), st.sampled_from(sorted(DATAPATHS)),
       st.integers(1, 9), st.integers(1, 5), st.data())  # fmt: skip
def test_every_layer_maps_down_to_the_smallest_tile(case, kind, units, tree, data):
    # buffers of exactly the documented minimum (or a little more) map the layer; below it
    # a refusal names the layer, a buffer short of its minimum and the bytes it needs
    layer, shape = case
    dp = DATAPATHS[kind]()
    base = Hardware.tiny().replace(acc_units=units, tree_width=tree)
    g = geometry(layer, shape)
    need = smallest_tile_needs(g, describe(dp), base)
    hw = base.replace(**{n: need[n] for n in BUFFERS})
    assert estimate(layer, dp, hw, input_shape=shape).compute_cycles > 0
    slack = {n: need[n] + data.draw(st.integers(0, 64)) for n in BUFFERS}
    estimate(layer, dp, base.replace(**slack), input_shape=shape)
    for name in BUFFERS:
        if need[name] == 0:
            continue
        short = hw.replace(**{name: data.draw(st.integers(0, need[name] - 1))})
        try:
            estimate(layer, dp, short, input_shape=shape)
        except ValueError as err:  # another tile may need less of this buffer; if none does:
            msg = str(err)
            assert msg.startswith(f"{layer}: {name}={getattr(short, name)} is too small"), msg
            assert msg.endswith(f"needs at least {need[name]} bytes"), msg


def test_weight_tiles_when_weights_do_not_fit():
    layer = Conv2d(8, 8, 3, padding=1)
    shape = (2, 8, 5, 5)  # two batch elements; one element's input is 5 rows of 40 bytes
    dp = ShiftAddDatapath()
    big = Hardware.edge().replace(acc_units=2, dataflow="os")
    filter_bytes = 8 * 9 * 8 // 8  # Cg*Kh*Kw*N*B bits
    resident = estimate(layer, dp, big, input_shape=shape)
    assert resident.weight_buffer_write_bits == 8 * filter_bytes * 8  # once for the batch
    assert resident.input_buffer_write_bits == 2 * 200 * 8
    # room for 4 filters: tiles of 2 (two in the buffer), loaded once per element
    tiled = big.replace(weight_buffer_bytes=4 * filter_bytes)
    c = estimate(layer, dp, tiled, input_shape=shape)
    m = mapping(layer, dp, tiled, shape)
    assert (m["tile_co"], m["tile_c"], m["weights"], m["input_resident"]) == (2, 8, "sweep", True)
    assert c.weight_buffer_write_bits == 2 * 8 * filter_bytes * 8  # once per element
    assert c.input_buffer_write_bits == 2 * 200 * 8  # rows stay resident across sweeps
    # too little input buffer for two elements' rows (400 bytes): each of the 4 sweeps
    # reloads them
    line = tiled.replace(input_buffer_bytes=399)
    c = estimate(layer, dp, line, input_shape=shape)
    assert c.input_buffer_write_bits == 2 * 4 * 200 * 8
    out = 2 * 8 * 25 * 4  # 32-bit results
    assert c.dram_read_bytes == 2 * 4 * 200 + 2 * 8 * filter_bytes
    assert c.dram_write_bytes == out
    # below two filters the weights of a chunk are reloaded every pass, down to one input
    # channel of one filter, twice: 2 * 9 * 8 bits = 18 bytes
    c = estimate(layer, dp, tiled.replace(weight_buffer_bytes=18), input_shape=shape)
    assert mapping(layer, dp, tiled.replace(weight_buffer_bytes=18), shape)["tile_c"] == 1
    with pytest.raises(ValueError, match=r"Conv2d.*weight_buffer_bytes=17 .* at least 18 bytes"):
        estimate(layer, dp, tiled.replace(weight_buffer_bytes=17), input_shape=shape)


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
    # the shift buffer sends an input's P-1 = 16 words of 9 bits once per cycle that reads
    # it, whatever the indices: 9 positions x 2 channels x N = 2 passes
    assert with_code.shift_buffer_read_bits == 9 * 2 * 2 * 16 * 9
    blind = estimate(layer, dp, hw, input_shape=(1, 2, 3, 3))
    assert blind.zero_selects == 0
    assert blind.shift_buffer_read_bits == with_code.shift_buffer_read_bits


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
     ("clock_hz", float("nan")), ("sram_access_bits", 0), ("acc_units", 1 << 63),
     ("weight_buffer_bytes", 1 << 64), ("dram_bytes_per_cycle", 2**70),
     ("weight_rf_entries", -1), ("dataflow", "rs")],
)  # fmt: skip
def test_hardware_validation(field, value):
    # ints beyond int64 (the kernels count in int64) are refused, naming the field
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
    assert Hardware.tiny().acc_units < Hardware.edge().acc_units < hw.acc_units
    for name in BUFFERS:  # the microcontroller-class preset: 8-16 KiB per buffer at most
        assert getattr(Hardware.tiny(), name) <= 16 * 1024


@pytest.mark.parametrize(
    ("field", "value"),
    [("acc_units", -1), ("adds", 1.5), ("cycles", True), ("energy_pj", float("nan")),
     ("energy_pj", -1.0), ("dram_read_bytes", "3")],
)  # fmt: skip
def test_counts_validation(field, value):
    with pytest.raises((TypeError, ValueError), match=field if field != "acc_units" else "acc"):
        Counts(**{field if field != "acc_units" else "acc_updates": value})
    assert Counts(adds=np.int64(3)).adds == 3 and type(Counts(adds=np.int64(3)).adds) is int


def test_counts_replace_validates_what_changes():
    c = Counts(adds=5, cycles=7, energy_pj=1.5)
    r = c.replace(adds=np.int64(9), energy_pj=2)
    assert r == Counts(adds=9, cycles=7, energy_pj=2.0) and c.adds == 5
    assert type(r.adds) is int and type(r.energy_pj) is float and type(r) is Counts
    assert c.replace() == c
    for field, value, err in [("adds", -1, ValueError), ("cycles", 2.0, TypeError),
                              ("selects", np.bool_(True), TypeError),
                              ("energy_pj", math.inf, ValueError), ("energy_pj", "1", TypeError),
                              ("dram_bytes", 1, TypeError)]:  # fmt: skip
        with pytest.raises(err, match=field):
            c.replace(**{field: value})
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.adds = 1


def test_storage_energy_is_continuous_in_capacity_and_width():
    t = EnergyTable.default()
    assert "45 nm" in t.name
    assert t.add_pj(8) == pytest.approx(0.03) and t.add_pj(32) == pytest.approx(0.1)
    assert t.multiply_pj(8) == pytest.approx(0.2) and t.multiply_pj(32) == pytest.approx(3.1)
    # Horowitz's points: 8 KB 10 pJ, 32 KB 20 pJ (exact), 1 MB 10 * sqrt(128) = 113 pJ
    kib = 1024
    assert t.storage_access_pj(8 * kib, 64) == pytest.approx(10.0)
    assert t.storage_access_pj(32 * kib, 64) == pytest.approx(20.0)
    assert t.storage_access_pj(1024 * kib, 64) == pytest.approx(10 * math.sqrt(128))
    # no size classes: 33 KB costs a little more than 32 KB, not a megabyte's energy
    assert t.storage_access_pj(33 * kib, 64) == pytest.approx(20 * math.sqrt(33 / 32))
    # register files follow the same law down to the floor
    assert t.storage_access_pj(16, 64) == pytest.approx(10 * math.sqrt(16 / 8192))
    assert t.storage_access_pj(0, 64) == pytest.approx(t.storage_floor_pj)
    # linear in the width with a fixed part: wider accesses cost less per bit
    e64, e128 = t.storage_access_pj(8 * kib, 64), t.storage_access_pj(8 * kib, 128)
    assert e128 - e64 == pytest.approx(10.0 * 0.75)
    assert t.storage_pj_per_bit(8 * kib, 128) < t.storage_pj_per_bit(8 * kib, 64)
    assert 1300 <= t.dram_pj <= 2600


@given(st.integers(0, 1 << 30), st.integers(0, 1 << 30), st.integers(1, 1024))
def test_energy_never_grows_when_a_buffer_shrinks(cap_a, cap_b, bits):
    t = EnergyTable.default()
    lo, hi = sorted((cap_a, cap_b))
    assert t.storage_access_pj(lo, bits) <= t.storage_access_pj(hi, bits)
    c = Counts(input_buffer_read_bits=bits * 1000, weight_buffer_write_bits=bits)
    small = Hardware.edge().replace(input_buffer_bytes=lo, weight_buffer_bytes=lo)
    big = Hardware.edge().replace(input_buffer_bytes=hi, weight_buffer_bytes=hi)
    dp = FixedMacDatapath()
    assert energy_pj(c, dp, small) <= energy_pj(c, dp, big)


def test_sram_access_bits_changes_energy():
    layer, shape = Conv2d(8, 8, 3, padding=1), (1, 8, 8, 8)
    dp = FixedMacDatapath()
    narrow = estimate(layer, dp, Hardware.edge().replace(sram_access_bits=32), input_shape=shape)
    wide = estimate(layer, dp, Hardware.edge().replace(sram_access_bits=256), input_shape=shape)
    assert narrow.input_buffer_read_bits == wide.input_buffer_read_bits
    assert wide.energy_pj < narrow.energy_pj


def test_sqrt2_split_multiplies_are_priced():
    layer, shape = Conv2d(4, 4, 3), (1, 4, 5, 5)
    split = LogDatapath(weight=LogFormat(4, 1, "sqrt2", True))
    c = estimate(layer, split, Hardware.edge(), input_shape=shape)
    assert c.multiplies == 4 * 3 * 3  # one constant multiply per output
    parts = energy_breakdown(c, split, Hardware.edge())
    want = c.multiplies * EnergyTable.default().multiply_pj(split.acc_bits)
    assert parts["multiply"] == pytest.approx(want) and want > 0


def _unit_table():
    return {
        "name": "unit",
        "add": {"bits": [8], "pj": [1.0]},
        "multiply": {"bits": [8], "pj": [4.0]},
        "storage": {"ref_bytes": 1024, "ref_bits": 64, "pj": 64.0, "exponent": 0.5},
        "dram": {"pj": 640.0},
    }


def test_energy_table_from_dict_and_toml(tmp_path):
    data = _unit_table()
    t = EnergyTable.from_dict(data)
    assert (t.add_pj(16), t.multiply_pj(16), t.storage_access_pj(4096, 64)) == (2.0, 16.0, 128.0)
    assert t.select_pj_per_bit == 0 and t.storage_fixed == 0
    path = tmp_path / "t.toml"
    path.write_text(
        'name = "unit"\n[add]\nbits = [8]\npj = [1.0]\n[multiply]\nbits = [8]\npj = [4.0]\n'
        "[storage]\nref_bytes = 1024\nref_bits = 64\npj = 64.0\nexponent = 0.5\n"
        "[dram]\npj = 640.0\n"
    )
    assert EnergyTable.from_toml(path) == t
    assert EnergyTable.from_dict(t.to_dict()) == t
    assert EnergyTable.from_dict(EnergyTable.default().to_dict()) == EnergyTable.default()
    with pytest.raises(ValueError, match="dram"):
        EnergyTable.from_dict({k: v for k, v in data.items() if k != "dram"})
    with pytest.raises(ValueError, match="add"):
        EnergyTable.from_dict({**data, "add": {"bits": [0], "pj": [1.0]}})


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("dram", "pj", float("nan")), ("dram", "pj", float("inf")), ("dram", "pj", -1.0),
     ("storage", "pj", -0.5), ("storage", "floor_pj", float("nan")),
     ("storage", "ref_bits", 64.5), ("storage", "ref_bytes", True), ("dram", "access_bits", "64"),
     ("dram", "access_bits", 0), ("add", "pj", [float("inf")]), ("multiply", "pj", [-4.0]),
     ("add", "bits", [8.5]), ("select", "pj_per_bit", float("nan"))],
)  # fmt: skip
def test_energy_table_refuses_bad_numbers(section, key, value):
    data = _unit_table()
    data[section] = {**data.get(section, {}), key: value}
    with pytest.raises(ValueError, match=section):
        EnergyTable.from_dict(data)


def test_energy_breakdown_by_hand():
    t = EnergyTable.from_dict(
        {
            "name": "unit",
            "add": {"bits": [32], "pj": [1.0]},
            "multiply": {"bits": [8], "pj": [10.0]},
            "storage": {"ref_bytes": 32 * 1024, "ref_bits": 64, "pj": 64.0, "exponent": 0.5},
            "dram": {"pj": 6400.0},
        }
    )
    layer = Linear(3, 2)
    hw = Hardware.edge()  # 32 KiB input buffer: 64 pJ per 64-bit access, 1 pJ per bit
    dp = FixedMacDatapath()  # 8-bit weights and inputs, 32-bit accumulator
    c = estimate(layer, dp, hw, input_shape=(1, 3), energy_table=t)
    parts = energy_breakdown(c, dp, hw, t)
    assert tuple(parts) == COMPONENTS
    assert parts["multiply"] == 6 * 10.0 and parts["add"] == 6 * 1.0
    # weights 6 bytes + inputs 3 bytes read, 2 * 4 bytes written: 17 bytes
    assert parts["dram"] == (9 + 8) * 8 / 64 * 6400.0
    # 3 inputs written, each read once per cycle and multicast to both units
    assert c.input_buffer_write_bits == c.input_buffer_read_bits == 3 * 8
    assert parts["input_buffer"] == pytest.approx(2 * 3 * 8 * 1.0)
    assert c.energy_pj == pytest.approx(sum(parts.values()))


def test_ert_export_and_import_round_trip():
    t = EnergyTable.default()
    dp, hw = ShiftAddDatapath(), Hardware.edge()
    ert = t.to_ert(dp, hw)
    names = {tab["name"] for tab in ert["ERT"]["tables"]}
    assert {"shiftsim.adder", "shiftsim.selector", "shiftsim.multicast",
            "shiftsim.weight_rf", "shiftsim.shift_buffer", "shiftsim.dram"} <= names  # fmt: skip
    back = t.from_ert(ert, dp, hw)
    desc = describe(dp)
    for k, v in t.per_event(desc, hw).items():
        assert back.per_event(desc, hw)[k] == pytest.approx(v), k
    # a changed entry changes that level only
    for tab in ert["ERT"]["tables"]:
        if tab["name"] == "shiftsim.shift_buffer":
            tab["actions"][0]["energy"] *= 2
    doubled = t.from_ert(ert, dp, hw).per_event(desc, hw)
    assert doubled["shift_buffer_pj_per_bit"] == pytest.approx(
        2 * t.per_event(desc, hw)["shift_buffer_pj_per_bit"]
    )
    assert doubled["input_buffer_pj_per_bit"] == pytest.approx(
        t.per_event(desc, hw)["input_buffer_pj_per_bit"]
    )
    with pytest.raises(ValueError, match="ERT"):
        t.from_ert({"tables": []}, dp, hw)
    nan = [{"name": "access", "energy": float("nan")}]
    bad = {"ERT": {"tables": [{"name": "shiftsim.dram", "actions": nan}]}}
    with pytest.raises(ValueError, match="dram"):
        t.from_ert(bad, dp, hw)


PRESETS = {"paper": Hardware.paper(), "edge": Hardware.edge(), "tiny": Hardware.tiny()}


@pytest.mark.jit_only  # runs no kernel: the no-JIT run would repeat it unchanged
@pytest.mark.parametrize("net", ["resnet18", "alexnet", "mobilenet", "yolo_tiny", "googlenet"])
@pytest.mark.parametrize("hw", sorted(PRESETS))
def test_presets_run_every_layer_of_real_networks(net, hw):
    from shiftsim.io.topology import read_topology

    machine = PRESETS[hw]
    for dp in (ShiftAddDatapath(), FixedMacDatapath()):
        for tl in read_topology(net, padding="same"):
            conv = tl.layer
            shape = (1, conv.in_channels, *tl.input_hw)
            c = estimate(conv, dp, machine, input_shape=shape)
            m = mapping(conv, dp, machine, shape, counts=c)
            ho, wo = conv.output_hw(*tl.input_hw)
            assert c.cycles >= c.compute_cycles >= m["ideal_cycles"]
            assert m["dram_ratio"] >= 1.0
            assert c.dram_write_bytes == conv.out_channels * ho * wo * 4  # 32-bit results


def test_layer_table_names_the_mapping():
    from shiftsim.io.reports import MAPPING_COLUMNS, layer_table

    layer, shape, dp = Conv2d(8, 8, 3, padding=1), (1, 8, 6, 6), ShiftAddDatapath()
    hw = Hardware.tiny()
    c = estimate(layer, dp, hw, input_shape=shape)
    m = mapping(layer, dp, hw, shape, counts=c)
    df = layer_table({"conv": c}, datapath=dp, hardware=hw, mappings={"conv": m})
    for col in MAPPING_COLUMNS:
        assert df.loc[0, col] == m[col], col
    assert df.loc[0, "dataflow"] in ("os", "ws") and df.loc[0, "dram_ratio"] >= 1


VGG16 = [  # name, H, W, Kh, Kw, C, Co, stride (SCALE-Sim CSV rows)
    ("Conv1_1", 224, 3, 64), ("Conv1_2", 224, 64, 64), ("Conv2_1", 112, 64, 128),
    ("Conv2_2", 112, 128, 128), ("Conv3_1", 56, 128, 256), ("Conv3_2", 56, 256, 256),
    ("Conv3_3", 56, 256, 256), ("Conv4_1", 28, 256, 512), ("Conv4_2", 28, 512, 512),
    ("Conv4_3", 28, 512, 512), ("Conv5_1", 14, 512, 512), ("Conv5_2", 14, 512, 512),
    ("Conv5_3", 14, 512, 512),
]  # fmt: skip


@pytest.mark.jit_only  # runs no kernel: the no-JIT run would repeat it unchanged
@pytest.mark.parametrize("hw", sorted(PRESETS))
def test_vgg16_csv_maps_on_every_preset(tmp_path, hw):
    from shiftsim.io.topology import read_topology

    rows = ["Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides,"]  # fmt: skip
    rows += [f"{n}, {s}, {s}, 3, 3, {c}, {co}, 1," for n, s, c, co in VGG16]
    rows += ["FC6, 7, 7, 7, 7, 512, 4096, 1,", "FC7, 1, 1, 1, 1, 4096, 4096, 1,"]
    path = tmp_path / "vgg16.csv"
    path.write_text("\n".join(rows) + "\n")
    for tl in read_topology(path, padding="same"):
        shape = (1, tl.layer.in_channels, *tl.input_hw)
        c = estimate(tl.layer, FixedMacDatapath(), PRESETS[hw], input_shape=shape)
        assert c.cycles >= c.compute_cycles > 0


def test_line_buffer_stores_only_tapped_columns():
    # found by the property above: stride 2 and padding 1 on a 1-wide input read no column,
    # yet a line buffer of whole rows loaded one; a bigger input buffer then moved more
    layer, shape = Conv2d(2, 1, 1, stride=(1, 2), padding=(0, 1)), (1, 2, 1, 1)
    hw = Hardware.tiny().replace(acc_units=1, tree_width=1, input_buffer_bytes=0, dataflow="os")
    dp = LogDatapath()
    small = _dram(layer, dp, hw, shape)
    assert _dram(layer, dp, hw.replace(input_buffer_bytes=1), shape) <= small
    c = estimate(layer, dp, hw.replace(input_buffer_bytes=64), input_shape=shape)
    assert c.input_buffer_write_bits == 0  # no column is read: nothing is loaded
    # 8 columns, stride 2, 1x1 kernel: columns 0, 2, 4, 6 are read; rows hold only those
    layer2, shape2 = Conv2d(1, 1, 1, stride=(1, 2)), (1, 1, 1, 8)
    c2 = estimate(layer2, FixedMacDatapath(), Hardware.edge(), input_shape=shape2)
    assert c2.input_buffer_write_bits == 4 * 8
