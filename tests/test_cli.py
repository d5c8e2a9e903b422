"""The command line (main(argv) and python -m shiftsim), and the plots it draws."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import distributed
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from shiftsim import plots
from shiftsim.cli import main
from shiftsim.io.topology import TOPOLOGIES

TOPO = (
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
    "Strides,\nA,6,6,3,3,3,4,1,\nB,4,4,1,1,4,5,1,\n"
)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --help, bad flags
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_digits_table_and_outputs(capsys, tmp_path: Path) -> None:
    csv, js = tmp_path / "t.csv", tmp_path / "t.json"
    code, out, err = run(
        capsys,
        "simulate",
        "--model",
        "digits",
        "--images",
        "12",
        "--csv",
        str(csv),
        "--json",
        str(js),
    )
    assert code == 0, err
    for name in ("conv1", "pool1", "conv2", "fc", "top-1:", "total:"):
        assert name in out
    table = pd.read_csv(csv)
    assert table["layer"].tolist() == [
        "conv1",
        "relu1",
        "pool1",
        "conv2",
        "relu2",
        "pool2",
        "flatten",
        "fc",
    ]
    # 12 images: conv1 8*8*8 outputs * 9 taps, conv2 16*4*4 * 72, fc 10 * 64
    assert table["macs"].tolist()[::3] == [12 * 512 * 9, 12 * 256 * 72, 0]  # conv1, conv2, flatten
    assert int(table["macs"].sum()) == 12 * (512 * 9 + 256 * 72 + 640)
    assert json.loads(js.read_text())[0]["layer"] == "conv1"


def test_simulate_topology_file(capsys, tmp_path: Path) -> None:
    topo = tmp_path / "net.csv"
    topo.write_text(TOPO)
    code, out, _ = run(
        capsys,
        "simulate",
        "--topology",
        str(topo),
        "--datapath",
        "mac",
        "--bits",
        "6",
        "--batch",
        "2",
    )
    assert code == 0
    lines = out.splitlines()
    assert any(line.split()[0] == "A" for line in lines[1:])
    assert "FixedMacDatapath" in lines[0]
    assert "total: 4,096 MACs" in out  # 2 * (4*4*4*27 + 5*4*4*4)


@pytest.mark.jit_only
@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_packaged_topologies_simulate(capsys, name: str) -> None:
    """Every packaged topology loads and simulates (inputs cropped to the kernel size)."""
    code, out, err = run(capsys, "simulate", "--topology", name, "--max-size", "1")
    assert code == 0, err
    assert "total:" in out
    n_rows = len([line for line in out.splitlines()[1:-1]])
    assert (
        n_rows
        == 1
        + {"resnet18": 21, "alexnet": 5, "googlenet": 58, "mobilenet": 27, "yolo_tiny": 9}[name]
    )  # header + one row per layer


def test_sweep_resume_and_report(capsys, tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    args = [
        "sweep",
        "--model",
        "digits",
        "--images",
        "10",
        "--grid",
        "n_codebooks=1,2",
        "--grid",
        "bits=3,4",
        "--out",
        str(out),
        "--workers",
        "1",
        "--no-progress",
    ]
    code, text, err = run(capsys, *args)
    assert code == 0, err
    assert "4 points" in text
    first = out.read_text()
    assert len(first.splitlines()) == 4
    code, text, _ = run(capsys, *args)  # everything is done: nothing is appended
    assert code == 0
    assert out.read_text() == first
    grid = tmp_path / "g.toml"
    grid.write_text("[grid]\nn_codebooks = [2]\nbits = [2, 3, 4]\n")
    code, text, err = run(capsys, *args[:5], "--grid-file", str(grid), *args[9:])
    assert code == 0, err
    assert len(out.read_text().splitlines()) == 5  # only (2, 2) is new
    png = tmp_path / "p.png"
    code, text, err = run(
        capsys,
        "report",
        str(out),
        "--x",
        "bits",
        "--y",
        "top1",
        "--hue",
        "n_codebooks",
        "--plot",
        str(png),
    )
    assert code == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "top1" in text.splitlines()[0]


def test_report_layers_plot(capsys, tmp_path: Path) -> None:
    csv, png = tmp_path / "t.csv", tmp_path / "l.png"
    assert run(capsys, "simulate", "--model", "digits", "--images", "3", "--csv", str(csv))[0] == 0
    code, _, err = run(capsys, "report", str(csv), "--plot", str(png))
    assert code == 0, err
    assert png.stat().st_size > 1000


def test_verify_digits_layer(capsys) -> None:
    code, out, err = run(capsys, "verify", "--model", "digits", "--layer", "conv2", "--size", "3")
    assert code == 0, err
    assert "golden == functional: outputs identical" in out
    assert "counts identical" in out
    assert "sqnr" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["simulate"], "one of the arguments --topology --onnx --model is required"),
        (["simulate", "--model", "digits", "--bogus"], "unrecognized arguments: --bogus"),
        (["simulate", "--model", "digits", "--bits", "0"], "expected a positive integer"),
        (["simulate", "--model", "digits", "--bits", "9"], "bits must be in [2, 8], got 9"),
        (["simulate", "--topology", "nosuch.csv"], "no topology named 'nosuch.csv'"),
        (["simulate", "--onnx", "{bad}"], "cannot read ONNX model"),
        (["simulate", "--topology", "{badcsv}"], "row 2: expected 8 values"),
        (["sweep", "--model", "digits", "--out", "{out}"], "at least one --grid"),
        (["sweep", "--model", "digits", "--out", "{out}", "--grid", "bits"], "NAME=V1,V2"),
        (["sweep", "--model", "digits", "--out", "{out}", "--grid", "nope=1"], "match no field"),
        (["sweep", "--model", "digits", "--out", "{out}", "--grid-file", "{bad}"], "TOML"),
        (["verify", "--model", "digits", "--layer", "conv9"], "no layer 'conv9'"),
        (["report", "{missing}"], "no such file"),
        (["report", "{bad}"], "unknown suffix '.onnx'"),
        (["report", "{badjsonl}"], "line 1: not a sweep result"),
        (["report", "{csv}", "--plot", "{png}", "--kind", "line"], "needs --x and --y"),
        (["report", "{csv}", "--plot", "{png}", "--y", "nope"], "no column 'nope'"),
    ],
)
def test_errors_are_one_line_and_exit_2(capsys, tmp_path: Path, argv, needle: str) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_text("garbage {\nmore\n")
    badjsonl = tmp_path / "bad.jsonl"
    badjsonl.write_text("garbage {\nmore\n")
    badcsv = tmp_path / "bad.csv"
    badcsv.write_text(TOPO.splitlines()[0] + "\nA,1,2\n")
    csv = tmp_path / "t.csv"
    csv.write_text("layer,op,adds\nc,conv,3\n")
    subst = dict(
        bad=bad,
        badjsonl=badjsonl,
        badcsv=badcsv,
        out=tmp_path / "o.jsonl",
        missing=tmp_path / "none",
        csv=csv,
        png=tmp_path / "x.png",
    )
    argv = [a.format(**subst) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_python_dash_m_help() -> None:
    for argv in ([], ["simulate"], ["sweep"], ["verify"], ["report"]):
        proc = subprocess.run(
            [sys.executable, "-m", "shiftsim", *argv, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert "usage: shiftsim" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "shiftsim", "simulate", "--model", "mnist"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'mnist'" in proc.stderr


# ---------------------------------------------------------------- plots
SWEEP = pd.DataFrame(
    {
        "n_codebooks": [1, 1, 2, 2, 3, 3],
        "bits": [3, 4, 3, 4, 3, 4],
        "adds": [10, 10, 20, 20, 30, 30],
        "sqnr_db": [5.0, 8.0, 12.0, 20.0, 18.0, 21.0],
    }
)


def test_metric_vs_draws_one_line_per_hue() -> None:
    fig = plots.metric_vs(SWEEP, "bits", "sqnr_db", hue="n_codebooks")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.lines) == 3
    np.testing.assert_array_equal(ax.lines[1].get_xydata(), [[3, 12.0], [4, 20.0]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "n_codebooks=1",
        "n_codebooks=2",
        "n_codebooks=3",
    ]
    assert ax.get_xlabel() == "bits"


def test_pareto_front() -> None:
    front = plots.pareto_front(SWEEP, "adds", "sqnr_db")
    # cheapest first; a point stays only if it beats every cheaper one
    assert front[["adds", "sqnr_db"]].values.tolist() == [[10, 8.0], [20, 20.0], [30, 21.0]]
    fig = plots.pareto(SWEEP, "adds", "sqnr_db", label="bits")
    (ax,) = fig.axes
    assert len(ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [10, 20, 30])
    assert sum(isinstance(c, PathCollection) for c in ax.collections) == 1
    assert len(ax.texts) == len(SWEEP)


def test_layer_costs_bars() -> None:
    table = pd.DataFrame(
        {"layer": ["c1", "r", "c2"], "op": ["conv", "relu", "conv"], "adds": [5, 0, 7]}
    )
    fig = plots.layer_costs(table, "adds", log=True)
    (ax,) = fig.axes
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [b.get_height() for b in bars] == [5, 7]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c1", "c2"]
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="no column 'energy_pj'"):
        plots.layer_costs(table, "energy_pj")


def test_sweep_on_a_dask_scheduler(capsys, tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cl:
        code, text, err = run(
            capsys,
            "sweep",
            "--model",
            "digits",
            "--images",
            "5",
            "--grid",
            "bits=3,4",
            "--out",
            str(out),
            "--dask",
            cl.scheduler_address,
            "--no-progress",
        )
    assert code == 0, err
    assert "2 points" in text
    assert len(out.read_text().splitlines()) == 2
