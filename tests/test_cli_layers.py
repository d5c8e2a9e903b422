"""The command line's per-layer datapaths (--datapaths FILE.toml) and whole ONNX runs (--input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shiftsim.cli import main
from tests.test_readme_commands import _small_onnx

TOML = """
[[layer]]
match = "@first"
datapath = "mac"
bits = 8

[[layer]]
match = "gemm*"
datapath = "log"
bits = 4
"""


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path: Path) -> Path:
    _small_onnx(tmp_path / "m.onnx")  # conv0 (3 -> 4, 8x8), relu, maxpool, flatten, gemm4
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((3, 3, 8, 8)))
    (tmp_path / "layers.toml").write_text(TOML)
    return tmp_path


def test_datapaths_file_and_input(capsys, files: Path) -> None:
    code, out, err = run(
        capsys,
        "simulate",
        "--onnx",
        str(files / "m.onnx"),
        "--input",
        str(files / "x.npy"),
        "--datapaths",
        str(files / "layers.toml"),
        "--csv",
        str(files / "t.csv"),
    )
    assert code == 0, err
    assert "input: 3 x (3, 8, 8), signed 9-bit, 0 values clipped" in out
    import pandas as pd

    table = pd.read_csv(files / "t.csv")
    assert list(table["layer"]) == ["conv0", "relu1", "maxpool2", "flatten3", "gemm4"]
    assert list(table["datapath"]) == ["mac(w8,a9)", "int", "int", "int", "log(w4,a3)"]
    # without --input: every layer on its own random input, the same datapaths
    code, out, err = run(
        capsys,
        "simulate",
        "--onnx",
        str(files / "m.onnx"),
        "--datapaths",
        str(files / "layers.toml"),
        "--datapath",
        "shift",
    )
    assert code == 0, err
    assert "mac(w8,a8)" in out and "log(w4,a3)" in out


def test_a_file_that_leaves_layers_out_uses_the_flags(capsys, files: Path) -> None:
    (files / "one.toml").write_text('[[layer]]\nmatch = "conv*"\ndatapath = "mac"\n')
    code, out, err = run(
        capsys,
        "simulate",
        "--onnx",
        str(files / "m.onnx"),
        "--input",
        str(files / "x.npy"),
        "--datapaths",
        str(files / "one.toml"),
        "--codebooks",
        "3",
        "--bits",
        "3",
    )
    assert code == 0, err
    assert "mac(w3,a9)" in out and "shift(N=3,B=3,a8)" in out  # bits from the flags


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "expected [[layer]] entries"),
        ('[[layer]]\ndatapath = "mac"\n', "layer entry 1 needs match"),
        ('[[layer]]\nmatch = "c*"\nwidth = 3\n', "unknown keys ['width']"),
        ('[[layer]]\nmatch = "c*"\ndatapath = "gpu"\n', "datapath must be one of"),
        ('[[layer]]\nmatch = "c*"\nbits = 0\n', "bits must be a positive integer, got 0"),
        ('[[layer]]\nmatch = "conv9"\n', "patterns ['conv9'] match no layer"),
        ('[[layer]]\nmatch = "c*"\n[[layer]]\nmatch = "c*"\n', "given twice"),
        ("[[layer]\n", "not a valid TOML datapaths file"),
    ],
)
def test_bad_datapaths_files_are_one_line_errors(capsys, files: Path, text, needle) -> None:
    (files / "bad.toml").write_text(text)
    code, _out, err = run(
        capsys, "simulate", "--onnx", str(files / "m.onnx"), "--datapaths", str(files / "bad.toml")
    )
    assert code == 2
    assert needle in err and str(files / "bad.toml") in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("make", "extra", "needle"),
    [
        (lambda p: np.save(p, np.zeros((2, 3, 4, 4))), [], "must have shape (B, *(3, 8, 8))"),
        (lambda p: np.save(p, np.array(["a"])), [], "must be real numbers"),
        (lambda p: p.write_text("nope"), [], "cannot read inputs"),
        (lambda p: np.save(p, np.zeros((3, 8, 8))), ["--model", "digits"], "--input needs --onnx"),
    ],
)
def test_bad_inputs_are_one_line_errors(capsys, files: Path, make, extra, needle) -> None:
    make(files / "in.npy")
    source = extra or ["--onnx", str(files / "m.onnx")]
    code, _out, err = run(capsys, "simulate", *source, "--input", str(files / "in.npy"))
    assert code == 2 and needle in err, err


def test_one_input_without_a_batch_axis(capsys, files: Path) -> None:
    np.save(files / "one.npy", -np.ones((3, 8, 8)))
    code, out, _err = run(
        capsys, "simulate", "--onnx", str(files / "m.onnx"), "--input", str(files / "one.npy")
    )
    assert code == 0 and "input: 1 x (3, 8, 8), signed 9-bit" in out
