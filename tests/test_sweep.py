"""Sweeps: grids, targets, results file, resume after a kill, process pool and Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import distributed
import numpy as np
import pytest

from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.formats import Overflow
from shiftsim.layers import Conv2d
from shiftsim.models.digits import digits_network, digits_test_split
from shiftsim.sweep import (
    LayerTarget,
    NetworkTarget,
    apply_point,
    grid_points,
    point_key,
    read_results,
    sweep,
)


def test_grid_points_and_keys() -> None:
    pts = grid_points({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(pts) == 6
    assert pts[0] == {"a": 1, "b": "x"}
    assert pts[-1] == {"a": 2, "b": "z"}
    assert point_key({"b": 1, "a": Overflow.SAT}) == '{"a": "SAT", "b": 1}'
    for bad in ({}, {"a": []}, {"a": "12"}, {"": [1]}, [("a", [1])]):
        with pytest.raises(ValueError, match="grid"):
            grid_points(bad)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FakeHardware:
    n_adders: int = 8
    clock_mhz: float = 500.0


def test_apply_point_coerces_strings() -> None:
    base = ShiftAddDatapath()
    dp, hw, rest = apply_point(
        {"bits": "3", "overflow": "sat", "n_adders": "16", "hw.clock_mhz": "250", "foo": 1},
        base,
        FakeHardware(),
    )
    assert (dp.bits, dp.overflow, dp.n_codebooks) == (3, Overflow.SAT, 2)
    assert hw == FakeHardware(n_adders=16, clock_mhz=250.0)
    assert rest == {"foo": 1}
    with pytest.raises(ValueError, match="overflow must be one of"):
        apply_point({"overflow": "clamp"}, base)
    with pytest.raises(ValueError, match="bits must be an integer"):
        apply_point({"bits": "four"}, base)
    with pytest.raises(ValueError, match=r"bits must be in \[2, 8\]"):
        apply_point({"bits": 9}, base)


def layer_target() -> LayerTarget:
    rng = np.random.default_rng(5)
    layer = Conv2d(3, 4, 3)
    return LayerTarget(
        layer=layer,
        w=rng.standard_normal(layer.weight_shape),
        x=rng.random((1, 3, 6, 6)) * 255,
        datapath=ShiftAddDatapath(),
    )


GRID = {"n_codebooks": [1, 2], "bits": [2, 4]}


def test_layer_sweep_in_process_and_on_processes(tmp_path: Path) -> None:
    target = layer_target()
    serial = sweep(target, GRID, workers=1, progress=False)
    assert list(serial.columns[:2]) == ["n_codebooks", "bits"]
    assert serial[["n_codebooks", "bits"]].values.tolist() == [[1, 2], [1, 4], [2, 2], [2, 4]]
    # more codebooks and bits: smaller error; selects = N * MACs
    assert serial["sqnr_db"].iloc[3] > serial["sqnr_db"].iloc[0]
    assert (serial["selects"] == serial["n_codebooks"] * serial["macs"]).all()
    out = tmp_path / "r.jsonl"
    pooled = sweep(target, GRID, workers=2, out=out, progress=False)
    cols = [c for c in serial.columns if c != "time_s"]
    assert pooled[cols].equals(serial[cols])
    recs = read_results(out)
    assert sorted(r["key"] for r in recs) == sorted(point_key(p) for p in grid_points(GRID))


def test_unknown_parameter_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match=r"grid parameter\(s\) \['bogus'\] match no field"):
        sweep(layer_target(), {"bogus": [1]}, workers=1, progress=False)


def test_resume_skips_finished_points_and_repairs_a_torn_line(tmp_path: Path) -> None:
    target = layer_target()
    out = tmp_path / "r.jsonl"
    calls: list[dict] = []

    def counting(point):
        calls.append(dict(point))
        return target(point)

    first = sweep(
        counting, {"n_codebooks": [1], "bits": [2, 4]}, out=out, workers=1, progress=False
    )
    with out.open("a") as fh:
        fh.write('{"key": "torn')  # a crash in the middle of a write
    calls.clear()
    full = sweep(counting, GRID, out=out, workers=1, progress=False)
    assert calls == [{"n_codebooks": 2, "bits": 2}, {"n_codebooks": 2, "bits": 4}]
    assert len(full) == 4
    assert full["sqnr_db"].iloc[:2].tolist() == first["sqnr_db"].tolist()
    lines = out.read_text().splitlines()
    assert len(lines) == 4
    assert all(json.loads(line)["key"] for line in lines)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nonsense\n{}\n")
    with pytest.raises(ValueError, match="line 1: not a sweep result"):
        sweep(counting, GRID, out=bad, workers=1, progress=False)


SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from shiftsim.sweep import sweep

    calls = sys.argv[2]

    def slow(point):
        with open(calls, "a") as fh:
            fh.write(f"{point['i']}\\n")
        time.sleep(float(sys.argv[3]))
        return {"double": 2 * point["i"], "pid": os.getpid()}

    if __name__ == "__main__":
        sweep(slow, {"i": list(range(12))}, out=sys.argv[1], workers=int(sys.argv[4]),
              progress=False)
    """
)


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_sweep_resumes_with_every_point_exactly_once(tmp_path: Path, workers: int) -> None:
    script = tmp_path / "run_sweep.py"
    script.write_text(SCRIPT)
    out, calls = tmp_path / "r.jsonl", tmp_path / "calls.txt"
    args = [sys.executable, str(script), str(out), str(calls)]
    proc = subprocess.Popen([*args, "0.15", str(workers)], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= 3:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers, mid-run
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    finished = {
        json.loads(line)["i"] for line in out.read_text().splitlines() if line.endswith("}")
    }
    assert 3 <= len(finished) < 12
    before = calls.read_text().split()
    subprocess.run([*args, "0", "1"], check=True, timeout=60)
    after = calls.read_text().split()[len(before) :]
    assert not finished & {int(i) for i in after}  # nothing finished is computed again
    recs = read_results(out)
    assert sorted(r["i"] for r in recs) == list(range(12))  # every point exactly once
    assert all(r["double"] == 2 * r["i"] for r in recs)


def test_network_target_digits() -> None:
    x, y = digits_test_split()
    target = NetworkTarget(
        network=digits_network(), datapath=ShiftAddDatapath(), x=x[:50], labels=y[:50]
    )
    frame = sweep(
        target, {"n_codebooks": [2], "power_of_two": ["false", "true"]}, workers=1, progress=False
    )
    assert frame["float_top1"].tolist() == [frame["float_top1"].iloc[0]] * 2
    assert (frame["top1"] > 0.8).all()
    assert (frame["multiplies"] == 0).all()
    assert frame["macs"].iloc[0] == 50 * (8 * 64 * 9 + 16 * 16 * 8 * 9 + 640)


def test_network_target_topology_layers(tmp_path: Path) -> None:
    from shiftsim.network import Network

    topo = tmp_path / "t.csv"
    topo.write_text(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,\nConv3,13,13,3,3,16,24,1,\nConv4,13,13,3,3,24,24,1,\n"
    )
    target = NetworkTarget(
        network=Network.from_topology(topo), datapath=ShiftAddDatapath(), max_hw=4
    )
    frame = sweep(target, {"bits": [3, 4]}, workers=1, progress=False)
    # inputs cropped to 4x4: 2x2 outputs of 24 channels, 9 taps over 16 and 24 channels
    assert frame["macs"].tolist() == [4 * 24 * 9 * (16 + 24)] * 2
    assert "sqnr_db" not in frame  # no chained output: per-layer errors only
    assert frame["min_layer_sqnr_db"].iloc[1] > frame["min_layer_sqnr_db"].iloc[0]


def test_dask_local_cluster(tmp_path: Path) -> None:
    target = layer_target()
    serial = sweep(target, GRID, workers=1, progress=False)
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cl,
        distributed.Client(cl) as client,
    ):
        out = tmp_path / "d.jsonl"
        got = sweep(target, GRID, client=client, out=out, progress=False)
    cols = [c for c in serial.columns if c != "time_s"]
    assert got[cols].equals(serial[cols])
    assert len(read_results(out)) == 4


def test_hardware_parameters_sweep_with_analytic_counts() -> None:
    from dataclasses import replace

    from shiftsim.cost import estimate
    from shiftsim.hardware import Hardware

    base = layer_target()
    target = replace(base, hardware=Hardware.edge())
    frame = sweep(target, {"acc_units": [4, 16], "bits": [4]}, workers=1, progress=False)
    for units, row in zip([4, 16], frame.itertuples()):
        dp = ShiftAddDatapath(bits=4)
        prep = dp.prepare(base.layer, base.w, base.x)
        want = estimate(
            base.layer,
            dp,
            Hardware.edge().replace(acc_units=units),
            code=prep.code,
            input_shape=base.x.shape,
        )
        assert row.cycles == want.cycles
        assert row.energy_pj == want.energy_pj
        assert row.adds == want.adds  # arithmetic counts: functional == analytic
    assert frame["cycles"].iloc[1] < frame["cycles"].iloc[0]
