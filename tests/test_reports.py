"""Reports: tables round-trip through CSV and JSON; SCALE-Sim and Accelergy formats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shiftsim.cost import estimate
from shiftsim.counts import Counts
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.energy import EnergyTable
from shiftsim.hardware import Hardware
from shiftsim.io.reports import (
    accelergy_action_counts,
    layer_table,
    read_table,
    scalesim_reports,
    write_accelergy_yaml,
    write_scalesim_reports,
    write_table,
)
from shiftsim.layers import Conv2d, Linear


@pytest.fixture
def table():
    hw = Hardware.edge()
    dp = ShiftAddDatapath()
    results = {
        "conv": estimate(Conv2d(3, 4, 3, padding=1), dp, hw, input_shape=(1, 3, 6, 6)),
        "fc": estimate(Linear(16, 10), dp, hw, input_shape=(2, 16)),
    }
    return layer_table(results, datapath=dp, hardware=hw), results, hw


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_table_round_trip(table, tmp_path, suffix):
    df, _, _ = table
    back = read_table(write_table(df, tmp_path / f"layers{suffix}"))
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert back["cycles"].dtype == np.int64
    assert (back["energy_table"] == EnergyTable.default().name).all()


def test_table_values(table):
    df, results, hw = table
    assert list(df["layer"]) == ["conv", "fc"]
    for row, counts in zip(df.to_dict(orient="records"), results.values()):
        for name, value in counts.to_dict().items():
            if name != "energy_pj":
                assert row[name] == value, name
        assert row["energy_pj"] == pytest.approx(counts.energy_pj)
        parts = sum(v for k, v in row.items() if k.startswith("energy_") and k.endswith("_pj"))
        assert parts - row["energy_pj"] == pytest.approx(row["energy_pj"])  # total + parts
        assert row["time_s"] == counts.cycles / hw.clock_hz
        assert 0 < row["utilization"] <= 1
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        write_table(df, "layers.txt")
    with pytest.raises(TypeError, match="Counts"):
        layer_table({"x": 1}, datapath=ShiftAddDatapath(), hardware=hw)


def test_scalesim_reports(table, tmp_path):
    df, results, hw = table
    reports = scalesim_reports(df, hw)
    compute = reports["COMPUTE_REPORT"]
    assert list(compute.columns) == [
        "LayerID", "Total Cycles", "Stall Cycles", "Overall Util %", "Mapping Efficiency %",
        "Compute Util %",
    ]  # fmt: skip
    assert list(compute["Total Cycles"]) == [c.cycles for c in results.values()]
    bw = reports["BANDWIDTH_REPORT"]
    assert list(bw.columns)[1:4] == ["Avg IFMAP SRAM BW", "Avg FILTER SRAM BW", "Avg OFMAP SRAM BW"]
    conv = results["conv"]
    assert bw["Avg OFMAP DRAM BW"][0] == conv.dram_write_bytes / conv.cycles
    detail = reports["DETAILED_ACCESS_REPORT"]
    assert detail["DRAM Filter Reads"][0] == conv.weight_buffer_write_bits / 8
    paths = write_scalesim_reports(df, hw, tmp_path / "out")
    assert sorted(p.name for p in paths) == [
        "BANDWIDTH_REPORT.csv", "COMPUTE_REPORT.csv", "DETAILED_ACCESS_REPORT.csv",
    ]  # fmt: skip
    pd.testing.assert_frame_equal(pd.read_csv(paths[0]), compute)


def test_accelergy_action_counts(tmp_path):
    c = Counts(adds=5, selects=7, zero_selects=2, input_buffer_read_bits=65, dram_read_bytes=16)
    hw = Hardware.edge()
    ac = accelergy_action_counts(c, hw, prefix="sys")
    local = {comp["name"]: comp["action_counts"] for comp in ac["action_counts"]["local"]}
    assert local == {
        "sys.input_buffer": [{"name": "read", "counts": 2}],
        "sys.dram": [{"name": "read", "counts": 2}],
        "sys.selector": [
            {"name": "select", "counts": 5},
            {"name": "select_zero", "counts": 2},
        ],
        "sys.adder": [{"name": "add", "counts": 5}],
    }
    text = write_accelergy_yaml(ac, tmp_path / "action_counts.yaml").read_text()
    assert text.startswith("action_counts:\n  version: 0.4\n  local:\n  - name: sys.input_buffer\n")
    assert "    - name: add\n      counts: 5\n" in text
