"""Sweep reliability: configuration identity, locking, worker lifetime, formats, failures."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.layers import Conv2d
from shiftsim.sweep import LayerTarget, read_results, sweep


def layer_target(**changes) -> LayerTarget:
    rng = np.random.default_rng(5)
    layer = Conv2d(2, 2, 1)
    base = LayerTarget(
        layer=layer,
        w=rng.standard_normal(layer.weight_shape),
        x=rng.random((1, 2, 3, 3)) * 255,
        datapath=ShiftAddDatapath(),
    )
    return dataclasses.replace(base, **changes)


GRID = {"bits": [2, 3]}


# ------------------------------------------------------------------ item 2: identity
@pytest.mark.parametrize(
    "change",
    [
        {"datapath": ShiftAddDatapath(acc_bits=8)},
        {"level": "golden"},
        {"x": np.ones((1, 2, 3, 3))},
        {"layer": Conv2d(2, 2, 1, stride=2)},
        {"bias": np.ones(2)},
    ],
    ids=["acc_bits", "level", "inputs", "layer", "bias"],
)
def test_results_of_another_configuration_are_refused(tmp_path: Path, change) -> None:
    out = tmp_path / "r.jsonl"
    sweep(layer_target(), GRID, out=out, workers=1, progress=False)
    before = out.read_bytes()
    with pytest.raises(ValueError, match="another configuration"):
        sweep(layer_target(**change), GRID, out=out, workers=1, progress=False)
    assert out.read_bytes() == before  # nothing mixed in
    same = sweep(layer_target(), GRID, out=out, workers=1, progress=False)
    assert len(same) == 2 and out.read_bytes() == before  # the same configuration resumes


def square(point):
    return {"y": point["x"] ** 2}


def test_function_target_identity_takes_a_config(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    sweep(square, {"x": [1, 2]}, out=out, workers=1, progress=False, config={"v": 1})
    with pytest.raises(ValueError, match="another configuration"):
        sweep(square, {"x": [1, 2]}, out=out, workers=1, progress=False, config={"v": 2})
    with pytest.raises(ValueError, match="another configuration"):
        sweep(lambda p: {"y": 0}, {"x": [1, 2]}, out=out, workers=1, progress=False)


# ------------------------------------------------------------------ item 6: formats
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_every_format_is_written_as_named_and_resumes(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"r{suffix}"
    calls: list[int] = []

    def counted(point):
        calls.append(point["x"])
        return {"y": point["x"] ** 2, "name": f"p{point['x']}", "ratio": point["x"] / 4}

    first = sweep(counted, {"x": [1, 2]}, out=out, workers=1, progress=False)
    if suffix == ".csv":
        header = out.read_text().splitlines()[0].split(",")
        assert header[:3] == ["key", "config", "x"]
        assert pd.read_csv(out)["y"].tolist() == [1, 4]
    elif suffix == ".json":
        assert [r["y"] for r in json.loads(out.read_text())] == [1, 4]
    elif suffix == ".parquet":
        assert pd.read_parquet(out)["y"].tolist() == [1, 4]
    else:
        assert [json.loads(line)["y"] for line in out.read_text().splitlines()] == [1, 4]
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not 0600
    calls.clear()
    full = sweep(counted, {"x": [1, 2, 3]}, out=out, workers=1, progress=False)
    assert calls == [3]  # resume: only the new point
    assert full["y"].tolist() == [1, 4, 9]
    assert full["name"].tolist() == ["p1", "p2", "p3"]
    assert full["ratio"].tolist() == [0.25, 0.5, 0.75]
    assert full.iloc[:2].equals(first)
    assert [r["x"] for r in read_results(out)] == [1, 2, 3]


@pytest.mark.parametrize("name", ["r.txt", "r", "r.xlsx"])
def test_unknown_suffix_is_refused_before_computing(tmp_path: Path, name: str) -> None:
    calls: list[int] = []

    def counted(point):
        calls.append(1)
        return {"y": 1}

    with pytest.raises(ValueError, match=r"unknown suffix .*\.jsonl, \.json, \.csv, \.parquet"):
        sweep(counted, {"x": [1]}, out=tmp_path / name, workers=1, progress=False)
    assert calls == [] and not (tmp_path / name).exists()


# ------------------------------------------------------------------ item 7: last newline
def test_last_record_without_its_newline_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    calls: list[int] = []

    def counted(point):
        calls.append(point["x"])
        return {"y": point["x"]}

    sweep(counted, {"x": [1, 2]}, out=out, workers=1, progress=False)
    out.write_bytes(out.read_bytes()[:-1])  # the crash hit between the record and its newline
    calls.clear()
    frame = sweep(counted, {"x": [1, 2, 3]}, out=out, workers=1, progress=False)
    assert calls == [3]
    assert frame["y"].tolist() == [1, 2, 3]
    lines = out.read_text().splitlines()
    assert [json.loads(line)["x"] for line in lines] == [1, 2, 3]
    assert out.read_bytes().endswith(b"\n")


# ------------------------------------------------------------------ item 11: failures
def fails_on_two(point):
    if point["x"] == 2:
        raise ArithmeticError(f"cannot do x={point['x']}")
    return {"y": 10 * point["x"]}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path: Path, workers: int) -> None:
    out = tmp_path / "r.jsonl"
    with pytest.warns(RuntimeWarning, match="1 of 4 sweep points failed"):
        frame = sweep(fails_on_two, {"x": [1, 2, 3, 4]}, out=out, workers=workers, progress=False)
    assert frame["x"].tolist() == [1, 2, 3, 4]
    assert frame["error"].tolist() == [None, "ArithmeticError: cannot do x=2", None, None]
    assert frame["y"].iloc[[0, 2, 3]].tolist() == [10, 30, 40]
    recs = {r["x"]: r for r in read_results(out)}
    assert sorted(recs) == [1, 2, 3, 4]  # every finished point of every worker is kept
    assert recs[2]["error"] == "ArithmeticError: cannot do x=2" and "y" not in recs[2]
    # resume keeps a failed point; retry_failed computes it again (and replaces the record)
    with pytest.warns(RuntimeWarning):
        again = sweep(fails_on_two, {"x": [1, 2, 3, 4]}, out=out, workers=1, progress=False)
    assert again["error"].tolist() == frame["error"].tolist()
    with pytest.warns(RuntimeWarning):
        sweep(
            fails_on_two, {"x": [1, 2, 3, 4]}, out=out, workers=1, progress=False,
            retry_failed=True,
        )  # fmt: skip
    assert sorted(r["x"] for r in read_results(out)) == [1, 2, 3, 4]


@pytest.mark.parametrize("where", ["missing_dir", "a_directory"])
def test_unwritable_output_is_refused_before_computing(tmp_path: Path, where: str) -> None:
    calls: list[int] = []

    def counted(point):
        calls.append(1)
        return {"y": 1}

    if where == "missing_dir":
        out = tmp_path / "no" / "such" / "r.jsonl"
        needle = "no such folder"
    else:
        out = tmp_path / "d.jsonl"
        out.mkdir()
        needle = "is a directory"
    with pytest.raises(ValueError, match=needle):
        sweep(counted, {"x": [1, 2]}, out=out, workers=1, progress=False)
    assert calls == []


# ------------------------------------------------------------------ item 15: module
def test_import_of_the_sweep_module_gives_the_module() -> None:
    import shiftsim
    import shiftsim.sweep as m

    assert isinstance(m, types.ModuleType)
    assert m is shiftsim.sweep
    assert callable(m.sweep) and m.sweep is shiftsim.run_sweep
    from shiftsim import sweep as from_package

    assert from_package is m
    with pytest.warns(DeprecationWarning, match="shiftsim.sweep.sweep"):
        frame = from_package(square, {"x": [3]}, workers=1, progress=False)
    assert frame["y"].tolist() == [9]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shiftsim.run_sweep(square, {"x": [3]}, workers=1, progress=False)["y"][0] == 9


# ------------------------------------------------------------------ items 4, 5: processes
SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from shiftsim.sweep import sweep

    calls = sys.argv[2]

    def slow(point):
        with open(calls, "a") as fh:
            fh.write(f"{point['i']} {os.getpid()} {os.getppid()}\\n")
        time.sleep(float(sys.argv[3]))
        return {"double": 2 * point["i"], "pid": os.getpid()}

    if __name__ == "__main__":
        sweep(slow, {"i": list(range(16))}, out=sys.argv[1], workers=int(sys.argv[4]),
              config={"version": sys.argv[5]}, progress=True)
    """
)


def _gone(pids: set[int], timeout: float) -> set[int]:
    """The pids still alive (not zombies) after waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {
            p
            for p in alive
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        }
        time.sleep(0.05)
    return alive


def _wait_text(path: Path, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in path.read_text():
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not say {needle!r} in {timeout} s")


def _wait_lines(path: Path, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {n} lines in {timeout} s")


@pytest.mark.jit_only  # no numba kernel runs here: once (in the JIT run) is enough
@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_concurrent_sweeps_kill_and_changed_config(tmp_path: Path, sig: int) -> None:
    """Two sweeps on one file, the first's parent killed: every point exactly once, no orphan."""
    script = tmp_path / "run_sweep.py"
    script.write_text(SCRIPT)
    out, calls = tmp_path / "r.jsonl", tmp_path / "calls.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def start(version: str, log: str) -> subprocess.Popen:
        cmd = [sys.executable, str(script), str(out), str(calls), "0.4", "2", version]
        with (tmp_path / log).open("w") as err:
            return subprocess.Popen(cmd, env=env, stderr=err)

    first = start("1", "first.log")
    second = None
    try:
        _wait_lines(out, 2, 90)
        second = start("1", "second.log")  # the same sweep on the same file, while the first runs
        _wait_text(tmp_path / "second.log", "waiting for another sweep", 60)
        first.send_signal(sig)  # only the parent: its workers must follow it
        first.wait(timeout=30)
        killed_at = calls.read_text().splitlines()
        workers = {int(line.split()[1]) for line in killed_at if int(line.split()[2]) == first.pid}
        assert workers, "the first sweep ran no worker"
        assert not _gone(workers, 10.0), "pool workers outlived their parent"
        second.wait(timeout=120)
        assert second.returncode == 0, (tmp_path / "second.log").read_text()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    recs = read_results(out)
    assert sorted(r["i"] for r in recs) == list(range(16))  # every point exactly once
    assert all(r["double"] == 2 * r["i"] and "error" not in r for r in recs)
    finished_first = {r["i"] for r in recs if r["pid"] in workers}
    assert finished_first  # the first sweep's finished points were kept, not recomputed
    computed = [int(line.split()[0]) for line in calls.read_text().splitlines()]
    for i in finished_first:
        assert computed.count(i) == 1
    # a changed base configuration on resume is refused; the file is untouched
    before = out.read_bytes()
    third = start("2", "third.log")
    third.wait(timeout=60)
    assert third.returncode != 0
    assert "another configuration" in (tmp_path / "third.log").read_text()
    assert out.read_bytes() == before
