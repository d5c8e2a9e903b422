"""Regressions found by the release audit: inputs nobody on the team wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shiftsim.cli import main
from tests.test_readme_commands import _small_onnx


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path: Path) -> Path:
    _small_onnx(tmp_path / "m.onnx")  # input (3, 8, 8)
    return tmp_path


def test_an_npz_given_as_input_is_a_one_line_error(capsys, files: Path) -> None:
    with open(files / "in.npy", "wb") as f:  # an .npz archive under an .npy name
        np.savez(f, x=np.zeros((1, 3, 8, 8)))
    code, _out, err = run(
        capsys, "simulate", "--onnx", str(files / "m.onnx"), "--input", str(files / "in.npy")
    )
    assert code == 2, err
    assert "cannot read inputs" in err and str(files / "in.npy") in err and err.count("\n") == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_input_names_the_file(capsys, files: Path, bad: float) -> None:
    x = np.zeros((2, 3, 8, 8))
    x[1, 2, 3, 4] = bad
    np.save(files / "in.npy", x)
    code, _out, err = run(
        capsys, "simulate", "--onnx", str(files / "m.onnx"), "--input", str(files / "in.npy")
    )
    assert code == 2, err
    assert str(files / "in.npy") in err and "finite" in err and err.count("\n") == 1


@pytest.mark.parametrize("scale", [1e-200, 1.0, 1e200])
def test_sqnr_does_not_depend_on_the_magnitude(scale: float) -> None:
    from shiftsim.network.report import sqnr_db

    ref = np.array([1.0, -2.0, 3.0, 0.5])
    got = np.array([1.0, -2.0, 2.5, 0.5])
    expected = 10 * np.log10(14.25 / 0.25)
    with np.errstate(all="raise"):
        assert sqnr_db(ref * scale, got * scale) == pytest.approx(expected, rel=1e-12)
    assert sqnr_db(ref * scale, ref * scale) == np.inf
    assert sqnr_db(ref * 0, got * scale) == -np.inf


def test_a_non_str_pattern_is_named_as_the_culprit() -> None:
    from shiftsim import FixedMacDatapath
    from shiftsim.models import digits_network

    net = digits_network()
    with pytest.raises(TypeError, match=r"pattern must be a str, got 3 \(int\)"):
        net.run(np.zeros((1, *net.input_shape)), {3: FixedMacDatapath()})  # type: ignore[dict-item]
