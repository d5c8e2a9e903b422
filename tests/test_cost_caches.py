"""The analytic model's caches never return a stale result.

:func:`~shiftsim.cost.estimate` keeps tables, counts and mappings between calls (keyed by the
geometry, the datapath's description and the machine fields each reads) and the number of
zero ShiftCNN indices of an immutable code. Every test here changes one input that matters
and checks the estimate against one computed with every cache emptied, or against a count
made by hand.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shiftsim.cost import estimate, mapping
from shiftsim.cycle.schedule import _clear_caches, describe, geometry, smallest_tile_needs
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.datapath.weight_cache import immutable
from shiftsim.hardware import Hardware
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import ShiftCode
from tests.strategies import hardware_configs, layer_and_input_shape

DATAPATHS = {"shift": ShiftAddDatapath, "mac": FixedMacDatapath, "log": LogDatapath}

#: Each field of a machine a sweep changes, and values for it.
CHANGES = {
    "shift_width": st.integers(1, 5),
    "acc_units": st.integers(1, 9),
    "tree_width": st.integers(1, 5),
    "input_buffer_bytes": st.one_of(st.just(1 << 22), st.integers(0, 3000)),
    "shift_buffer_bytes": st.one_of(st.just(1 << 22), st.integers(0, 3000)),
    "weight_buffer_bytes": st.one_of(st.just(1 << 22), st.integers(0, 3000)),
    "output_buffer_bytes": st.one_of(st.just(1 << 22), st.integers(0, 3000)),
    "dram_bytes_per_cycle": st.integers(1, 9),
    "pipelined": st.booleans(),
    "weight_rf_entries": st.sampled_from([0, 1, 8, 64, 1024]),
    "dataflow": st.sampled_from(["os", "ws", "auto"]),
    "sram_access_bits": st.sampled_from([8, 64, 256]),
}


def _outcome(layer, dp, hw, shape):
    """The estimate, or the message of the ValueError that refuses the machine."""
    try:
        return estimate(layer, dp, hw, input_shape=shape)
    except ValueError as e:
        return str(e)


@given(
    layer_and_input_shape(max_channels=6, max_size=7),
    hardware_configs(),
    st.sampled_from(sorted(DATAPATHS)),
    st.lists(st.sampled_from(sorted(CHANGES)), min_size=1, max_size=6),
    st.data(),
)
def test_a_sweep_of_machines_gives_what_a_cold_model_gives(case, hw, kind, names, data):
    """Each machine differs from the previous one in one field; warm == cold, field for field."""
    layer, shape = case
    dp = DATAPATHS[kind]()
    machines = [hw]
    for name in names:
        machines.append(machines[-1].replace(**{name: data.draw(CHANGES[name], label=name)}))
    warm = [_outcome(layer, dp, m, shape) for m in machines]  # caches filled in turn
    for m, got in zip(machines, warm, strict=True):
        _clear_caches()
        assert got == _outcome(layer, dp, m, shape), m


#: Layers whose mappings change with every buffer: a convolution, a grouped one, a Linear.
WALK_LAYERS = [
    (Conv2d(12, 20, 3, padding=1), (1, 12, 10, 10)),
    (Conv2d(12, 12, 3, padding=1, groups=3, stride=(1, 2)), (2, 12, 8, 9)),
    (Linear(40, 24), (3, 40)),
]


@pytest.mark.parametrize("kind", sorted(DATAPATHS))
def test_a_random_walk_over_machines_gives_what_a_cold_model_gives(kind, rng):
    """Machines one field apart, buffers around every layer's thresholds; warm == cold.

    Buffers take values from the smallest tile's needs to far beyond them, so weight
    placement, input residency, tiles and dataflow change along the walk, and every value
    is met again later (a stale entry would be found).
    """
    dp = DATAPATHS[kind]()
    hw = Hardware.tiny()
    needs = {}
    for layer, shape in WALK_LAYERS:
        for name, v in smallest_tile_needs(geometry(layer, shape), describe(dp), hw).items():
            needs[name] = max(needs.get(name, 0), v)
    ladders = {name: [v * f // 4 for f in (3, 4, 5, 6, 8, 12, 16, 32, 64, 256)]
               for name, v in needs.items()}  # fmt: skip
    ladders.update(
        acc_units=[2, 3, 4, 8], tree_width=[1, 2, 4, 5], shift_width=[1, 4, 16],
        dram_bytes_per_cycle=[1, 2, 8], weight_rf_entries=[0, 9, 36, 1024],
        pipelined=[True, False], dataflow=["os", "ws", "auto"],
    )  # fmt: skip
    names = sorted(ladders)
    machines = [hw]
    for _ in range(60):
        name = names[rng.integers(len(names))]
        value = ladders[name][rng.integers(len(ladders[name]))]
        machines.append(machines[-1].replace(**{name: value}))
    warm = [[_outcome(layer, dp, m, shape) for layer, shape in WALK_LAYERS] for m in machines]
    for m, got in zip(machines, warm, strict=True):
        _clear_caches()
        assert got == [_outcome(layer, dp, m, shape) for layer, shape in WALK_LAYERS], m
    mapped = sum(not isinstance(v, str) for row in warm for v in row)
    assert mapped >= len(warm)  # most machines map most layers: the walk tests mappings


@pytest.mark.parametrize("kind", sorted(DATAPATHS))
def test_input_residency_is_part_of_every_key(kind):
    """Two machines with the same tiles, the inputs resident on one: each gets its own counts.

    Their input buffers are one byte apart, across two elements' tapped rows (12 channels,
    10 x 10 positions); the weights (800 bytes of buffer) are swept in output-channel tiles.
    """
    layer, shape = Conv2d(12, 20, 3, padding=1), (1, 12, 10, 10)
    dp = DATAPATHS[kind]()
    keep = 2 * 12 * 10 * 10 * describe(dp).act_bits // 8
    hw = Hardware.tiny().replace(weight_buffer_bytes=800, dataflow="os")
    line, kept = hw.replace(input_buffer_bytes=keep - 1), hw.replace(input_buffer_bytes=keep)
    plans = [mapping(layer, dp, m, shape) for m in (line, kept)]
    tiles = [(m["tile_co"], m["tile_c"], m["weights"]) for m in plans]
    assert tiles[0] == tiles[1] and tiles[0][0] < 20 and tiles[0][1:] == (12, "sweep")
    assert [m["input_resident"] for m in plans] == [False, True]
    cold = []
    for m in (line, kept):
        _clear_caches()
        cold.append(estimate(layer, dp, m, input_shape=shape))
    assert cold[0].dram_read_bytes > cold[1].dram_read_bytes
    for order in ((line, kept), (kept, line)):
        _clear_caches()
        for m in order:
            assert estimate(layer, dp, m, input_shape=shape) == cold[m is kept]


def test_each_machine_field_the_counts_read_changes_them():
    """The fields the cached hardware counts are keyed by each change a count they must."""
    layer, shape = Conv2d(16, 16, 3, padding=1), (1, 16, 12, 12)
    dp = ShiftAddDatapath()
    base = Hardware.tiny().replace(dataflow="os")
    ref = estimate(layer, dp, base, input_shape=shape)
    for name, value, field in [
        ("dram_bytes_per_cycle", 1, "cycles"),
        ("shift_width", 1, "cycles"),
        ("pipelined", False, "cycles"),
        ("tree_width", 2, "compute_cycles"),
        ("acc_units", 8, "compute_cycles"),
        ("weight_rf_entries", 0, "weight_rf_read_bits"),
    ]:
        got = estimate(layer, dp, base.replace(**{name: value}), input_shape=shape)
        _clear_caches()
        cold = estimate(layer, dp, base.replace(**{name: value}), input_shape=shape)
        assert got == cold, name
        assert getattr(got, field) != getattr(ref, field), name


def _code(index):
    return ShiftCode(index=index, scale=np.float64(1.0), n_codebooks=2, bits=4)


def test_zero_indices_of_a_code_changed_in_place_are_seen():
    layer, shape = Conv2d(3, 2, 3, padding=1), (1, 3, 5, 5)
    dp, hw = ShiftAddDatapath(), Hardware.edge()
    index = np.ones((*layer.weight_shape, 2), dtype=np.int8)
    code = _code(index)
    assert estimate(layer, dp, hw, code=code, input_shape=shape).zero_selects == 0
    index[0, 1, 2, 0, 1] = 0  # in place: the same code object, one zero index
    index[1, 0, 0, 2, 0] = 0
    # every zero index is selected once per output position: 5 x 5 of them
    assert estimate(layer, dp, hw, code=code, input_shape=shape).zero_selects == 2 * 25
    index[:] = 0
    assert estimate(layer, dp, hw, code=code, input_shape=shape).zero_selects == 108 * 25


def test_zero_indices_of_immutable_codes_are_their_own():
    """An immutable code's count is kept with it; another code (other zeros) has its own."""
    layer, shape = Conv2d(3, 2, 3, padding=1), (1, 3, 5, 5)
    dp, hw = ShiftAddDatapath(), Hardware.edge()
    base = np.ones((*layer.weight_shape, 2), dtype=np.int8)
    frozen = _code(immutable(base))
    assert not frozen.index.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        frozen.index[0, 0, 0, 0, 0] = 0
    for zeros in (0, 7, 0, 108, 7):
        idx = base.copy()
        idx.reshape(-1)[:zeros] = 0
        code = _code(immutable(idx))
        for _ in range(2):  # counted, then kept
            got = estimate(layer, dp, hw, code=code, input_shape=shape)
            assert got.zero_selects == zeros * 25
    # the same indices, writable and immutable, give the same counts
    assert estimate(layer, dp, hw, code=frozen, input_shape=shape) == estimate(
        layer, dp, hw, code=_code(base), input_shape=shape
    )


def test_geometry_is_shared_and_still_validated():
    layer = Conv2d(3, 4, 3, stride=2)
    g = geometry(layer, (2, 3, 9, 9))
    assert geometry(Conv2d(3, 4, 3, stride=2), [2, 3, 9, 9]) is g  # an equal layer, a list
    assert (g.batch, g.c, g.co, g.ho, g.wo) == (2, 3, 4, 4, 4)
    assert geometry(layer, (1, 3, 9, 9)) is not g
    for _ in range(2):  # refused every time, not cached
        with pytest.raises(ValueError, match="input_shape"):
            geometry(layer, (2, 4, 9, 9))
        with pytest.raises(ValueError, match="larger than the padded input"):
            geometry(layer, (2, 3, 2, 2))
    with pytest.raises(TypeError, match="layer must be a Conv2d or Linear"):
        geometry("conv", (2, 3, 9, 9))
    assert dataclasses.replace(g, batch=3) == geometry(layer, (3, 3, 9, 9))
