"""The command line on bad paths, foreign results files and every results format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shiftsim.cli import main

TOPO = (
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
    "Strides,\nA,4,4,3,3,2,3,1,\n"
)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: bad flags
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def sweep_args(topo: Path, out: Path, *extra: str) -> list[str]:
    return [
        "sweep", "--topology", str(topo), "--grid", "bits=2,3", "--out", str(out),
        "--workers", "1", "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture
def topo(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    path.write_text(TOPO)
    return path


@pytest.mark.parametrize(
    "change",
    [
        ["--acc-bits", "8"],
        ["--seed", "1"],
        ["--level", "golden"],
        ["--max-size", "3"],
        ["--batch", "2"],
        ["--codebooks", "3"],
        ["--hardware", "edge"],
        ["--overflow", "sat"],
    ],
    ids=lambda c: c[0],
)
def test_sweep_refuses_results_of_another_configuration(
    capsys, tmp_path: Path, topo: Path, change: list[str]
) -> None:
    out = tmp_path / "r.jsonl"
    code, _text, err = run(capsys, *sweep_args(topo, out))
    assert code == 0, err
    before = out.read_bytes()
    code, _, err = run(capsys, *sweep_args(topo, out, *change))
    assert code == 2
    assert "another configuration" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before


def test_sweep_refuses_results_of_another_topology(capsys, tmp_path: Path, topo: Path) -> None:
    out = tmp_path / "r.jsonl"
    assert run(capsys, *sweep_args(topo, out))[0] == 0
    topo.write_text(TOPO.replace("A,4,4,3,3,2,3,1", "A,4,4,3,3,2,4,1"))
    code, _, err = run(capsys, *sweep_args(topo, out))
    assert code == 2 and "another configuration" in err


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_sweep_and_report_in_every_format(capsys, tmp_path: Path, topo: Path, suffix: str) -> None:
    out = tmp_path / f"r{suffix}"
    code, text, err = run(capsys, *sweep_args(topo, out))
    assert code == 0, err
    assert "2 points" in text
    content = out.read_bytes()
    if suffix == ".csv":
        assert content.startswith(b"key,config,bits,")
    elif suffix == ".json":
        assert [r["bits"] for r in json.loads(content)] == [2, 3]
    elif suffix == ".parquet":
        assert content[:4] == b"PAR1"
    code, text, err = run(capsys, *sweep_args(topo, out))  # resume: nothing to do
    assert code == 0, err
    assert out.read_bytes() == content
    code, text, err = run(capsys, "report", str(out))
    assert code == 0, err
    lines = text.splitlines()
    header = lines[0].split()
    assert header[:2] == ["bits", "min_layer_sqnr_db"]
    assert "key" not in header and "config" not in header
    assert [line.split()[0] for line in lines[1:]] == ["2", "3"]


def test_unknown_suffix_and_unwritable_out_are_refused_first(
    capsys, tmp_path: Path, topo: Path
) -> None:
    code, _, err = run(capsys, *sweep_args(topo, tmp_path / "r.txt"))
    assert code == 2 and "unknown suffix '.txt'" in err
    missing = tmp_path / "no" / "dir" / "r.jsonl"
    code, _, err = run(capsys, *sweep_args(topo, missing))
    assert code == 2 and "no such folder" in err and str(missing) in err
    assert not missing.parent.exists()


def test_report_refuses_json_lines_named_csv(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "old.csv"
    bad.write_text('{"key": "{\\"bits\\": 2}", "bits": 2, "adds": 5}\n')
    code, out, err = run(capsys, "report", str(bad))
    assert code == 2 and "holds JSON, not CSV" in err and out == ""


# ------------------------------------------------------------------ item 13: messages
def test_messages_name_the_thing(capsys, tmp_path: Path) -> None:
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    code, _, err = run(capsys, "simulate", "--model", "digits", "--weights", str(other))
    assert code == 2
    assert "other.npz" in err and "'conv1.weight'" in err and "has no array" in err
    csv = tmp_path / "nonexistent" / "dir" / "out.csv"
    code, _, err = run(capsys, "simulate", "--model", "digits", "--images", "2", "--csv", str(csv))
    assert code == 2
    assert "--csv" in err and "no such folder" in err and str(csv.parent) in err
    assert "None" not in err
    code, _, err = run(capsys, "simulate", "--model", "digits", "--seed", "-1")
    assert code == 2 and "--seed" in err and "non-negative integer, got '-1'" in err
    code, _, err = run(capsys, "report", str(tmp_path))
    assert code == 2 and "is a directory" in err and "no such file" not in err
