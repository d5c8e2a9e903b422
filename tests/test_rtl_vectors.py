"""Golden RTL test vectors (shiftsim.rtl.vectors): they agree with the golden models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings

from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.formats import FixedFormat, Overflow, Rounding
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import ShiftCode
from shiftsim.reference.golden import shift_add_golden
from shiftsim.reference.golden_log import conv_log_golden
from shiftsim.reference.golden_mac import conv_mac_golden
from shiftsim.rtl import make_vectors, read_vectors, write_vectors
from shiftsim.rtl import vectors as vectors_mod
from tests.strategies import log_cases, mac_cases, shift_cases


def _steps(vec, name):
    return [row[0] for row in vec.data[name]]


def _code(index, n_cb, bits):
    return ShiftCode(
        index=np.asarray(index, np.int8), scale=np.float64(1.0), n_codebooks=n_cb, bits=bits
    )


# ------------------------------------------------------------------ hand-checked tables


def test_shift_add_sat_table_by_hand():
    # x = 7 (4-bit unsigned), N = 2, B = 3 (half = 3, S = 3), one tap, two lanes, acc 5 bits.
    # lane 0: j = [1, 3] -> n=1: +x>>0 = 7;  n=2: +x>>3 = 0
    # lane 1: j = [2, -1] -> n=1: +x>>1 = 3; n=2: -(x>>1) = -3
    # bias 10: step 1: 10 + 7 + 3 = 20 -> SAT 15 (overflow); step 2: 15 + 0 - 3 = 12
    dp = ShiftAddDatapath(
        n_codebooks=2,
        bits=3,
        act=FixedFormat(4, 0, signed=False),
        acc_bits=5,
        overflow=Overflow.SAT,
    )
    index = np.array([[1, 3], [2, -1]]).reshape(1, 2, 1, 1, 2)
    vec = make_vectors(
        dp, Conv2d(2, 1, 1), _code(index, 2, 3), np.full((1, 2, 1, 1), 7), np.array([10])
    )
    assert vec.data["term"] == [[7, 3], [0, -3]]
    assert _steps(vec, "tree") == [10, -3]
    assert _steps(vec, "acc") == [15, 12]
    assert _steps(vec, "ovf") == [1, 0]
    assert _steps(vec, "n") == [1, 2]
    assert _steps(vec, "first") == [1, 0] and _steps(vec, "last") == [0, 1]
    assert vec.data["y"] == [[12]] and vec.data["y_ovf"] == [[1]]
    assert vec.data["xs"][0] == [7, 3, 1, 0]  # shift unit words of the first input
    assert vec.manifest["overflows"] == 1


def test_shift_add_rnd_words_by_hand():
    # RND with f = 1: r = x << 1; xs[s] = (r + 2^(s-1)) >> s.  x = -3 (signed 4-bit): r = -6
    dp = ShiftAddDatapath(
        n_codebooks=1, bits=3, act=FixedFormat(4, 0), shift_frac_bits=1, shift_rounding=Rounding.RND
    )
    vec = make_vectors(dp, Linear(1, 1), _code([[[1]]], 1, 3), np.array([[-3]]))
    # s=0: -6; s=1: (-6+1)>>1 = -3; s=2: (-6+2)>>2 = -1  (S = 2 for N = 1, B = 3)
    assert vec.data["xs"] == [[-6, -3, -1]]
    assert vec.manifest["params"] == {
        "XBITS": 4,
        "XSIGNED": 1,
        "F": 1,
        "RND": 1,
        "B": 3,
        "N": 1,
        "T": 1,
        "ACC_BITS": 32,
        "SAT": 0,
    }


def test_log_floor_table_by_hand():
    # base 2, g = 2: terms p = 1 then p = 1 -> S = 4, then max(4, 4) + (4 >> 0) = 8 (= 2.0 in
    # log2: 2 + 2 = 4 = 2^2); F = 0: lin(8) = 2^2 * (1 + 0) = 4; bias 1 -> y = 5
    from shiftsim.formats import LogFormat
    from shiftsim.quantize import LogCode

    act, weight = LogFormat(3, 4, signed=False), LogFormat(3, 2)
    dp = LogDatapath(act=act, weight=weight, accumulate="log", acc_frac_bits=0, log_frac_bits=2)
    x = LogCode(exponent=np.array([[0, 1]]), sign=np.array([[1, 1]], np.int8), format=act)
    w = LogCode(exponent=np.array([[1, 0]]), sign=np.array([[1, 1]], np.int8), format=weight)
    vec = make_vectors(dp, Linear(2, 1), w, x, np.array([1]))
    assert _steps(vec, "p") == [1, 1]
    assert _steps(vec, "s_pos") == [4, 8]
    assert _steps(vec, "pos_full") == [1, 1] and _steps(vec, "neg_full") == [0, 0]
    assert vec.data["y"] == [[5]]


# ------------------------------------------------------------------ against the golden models


def _check_steps_end_in_outputs(vec):
    """Each output's final register value is its last step's (shift-add, MAC, linear log)."""
    if "acc" not in vec.data:
        return
    lasts = [a for a, last in zip(_steps(vec, "acc"), _steps(vec, "last")) if last]
    assert lasts == _steps(vec, "y")


@settings(max_examples=min(60, settings.default.max_examples))
@given(shift_cases(max_size=5, max_acc_bits=40))
def test_shift_vectors_match_golden(case):
    dp = case.datapath()
    vec = make_vectors(dp, case.layer, case.code(), case.x_raw, case.bias_raw)
    y, counts = shift_add_golden(
        case.layer,
        case.index,
        case.x_raw,
        bits=case.bits,
        shift_frac_bits=case.shift_frac_bits,
        shift_rounding=case.shift_rounding,
        acc_bits=case.acc_bits,
        overflow=case.overflow,
        bias_raw=case.bias_raw,
    )
    assert _steps(vec, "y") == case.layer.as_conv().to_nchw(y).reshape(-1).tolist()
    assert vec.manifest["overflows"] == counts["overflows"] == sum(_steps(vec, "ovf"))
    assert sum(_steps(vec, "first")) == y.size
    _check_steps_end_in_outputs(vec)
    # every selected term is +-(a shift-unit word of the lane's input) or 0
    half = (1 << (case.bits - 1)) - 1
    assert all(abs(j) <= half for row in vec.data["idx"] for j in row)


@given(mac_cases())
def test_mac_vectors_match_golden(case):
    dp = FixedMacDatapath(**case.options)
    vec = make_vectors(dp, case.layer, case.w_raw, case.x_raw, case.bias_raw)
    conv = case.layer.as_conv()
    y, ev = conv_mac_golden(
        conv,
        case.layer.to_nchw(case.w_raw),
        case.layer.to_nchw(case.x_raw),
        case.bias_raw,
        acc_bits=dp.acc_bits,
        overflow=dp.overflow,
    )
    assert _steps(vec, "y") == y.reshape(-1).tolist()
    assert vec.manifest["overflows"] == ev["overflows"] == sum(_steps(vec, "ovf"))
    assert [sum(r) for r in vec.data["prod"]] == _steps(vec, "tree")
    _check_steps_end_in_outputs(vec)


@given(log_cases())
def test_log_vectors_match_golden(case):
    dp = LogDatapath(**case.options)
    if dp.k != 1:
        with pytest.raises(ValueError, match="base-2"):
            make_vectors(dp, case.layer, case.w_code, case.x_code, case.bias_raw)
        return
    vec = make_vectors(dp, case.layer, case.w_code, case.x_code, case.bias_raw)
    ops = dp.check(case.layer, case.w_code, case.x_code, case.bias_raw)
    y, ev = conv_log_golden(
        case.layer.as_conv(),
        ops.w_exp,
        ops.w_sign,
        1,
        ops.x_exp,
        ops.x_sign,
        1,
        ops.bias_raw,
        accumulate=dp.accumulate,
        acc_bits=dp.acc_bits,
        acc_frac_bits=dp.acc_frac_bits,
        overflow=dp.overflow,
        log_frac_bits=dp.log_frac_bits,
        log_add=dp.log_add,
        sqrt2_mode=dp.sqrt2_mode,
        sqrt2_frac_bits=dp.sqrt2_frac_bits,
        sqrt2_shifts=dp.sqrt2_shifts,
    )
    assert _steps(vec, "y") == y.reshape(-1).tolist()
    assert vec.manifest["overflows"] == ev["overflows"]
    _check_steps_end_in_outputs(vec)
    # the log registers fit the width the manifest gives the RTL
    if dp.accumulate == "log":
        top = 1 << (vec.manifest["params"]["SBITS"] - 1)
        assert all(-top <= v < top for name in ("s_pos", "s_neg") for v in _steps(vec, name))


# ------------------------------------------------------------------ files, tiles, bad input


@settings(max_examples=min(20, settings.default.max_examples))
@given(shift_cases(max_channels=3, max_size=5))
def test_hex_files_round_trip(tmp_path_factory, case):
    d = tmp_path_factory.mktemp("vec")
    lanes = case.layer.as_conv().channels_per_group + 1  # one spare lane, zero operands
    manifest = write_vectors(
        d, case.datapath(), case.layer, case.code(), case.x_raw, case.bias_raw, lanes=lanes
    )
    assert json.loads((d / "manifest.json").read_text()) == manifest
    back = read_vectors(d)
    assert (
        back.data
        == make_vectors(
            case.datapath(), case.layer, case.code(), case.x_raw, case.bias_raw, lanes=lanes
        ).data
    )
    for fld in manifest["fields"]:
        lines = [s for s in (d / fld["file"]).read_text().splitlines() if not s.startswith("//")]
        assert all(len(s) == -(-fld["word_bits"] // 4) for s in lines)
        rows = manifest["tables"][fld["table"]]["rows"]
        assert len(lines) == rows
    assert all(row[-1] == 0 for row in back.data["x"])  # the spare lane


def test_tile_of_output_channels(rng):
    layer = Conv2d(2, 4, 3, padding=1)
    dp = ShiftAddDatapath(n_codebooks=2, bits=4)
    index = rng.integers(-7, 8, size=(4, 2, 3, 3, 2))
    x = rng.integers(0, 256, size=(2, 2, 3, 3))
    y = dp.run(layer, _code(index, 2, 4), x, level="golden").y_raw
    vec = make_vectors(dp, layer, _code(index, 2, 4), x, out_channels=(1, 3))
    assert _steps(vec, "y") == y[:, 1:3].reshape(-1).tolist()
    assert vec.manifest["output_shape"] == [2, 2, 3, 3]


def test_trace_that_disagrees_is_refused(monkeypatch, rng):
    # a wrong register model (always wrap) under SAT with overflow must not be written
    dp = ShiftAddDatapath(n_codebooks=1, bits=3, acc_bits=4, overflow=Overflow.SAT)
    code = _code(np.ones((1, 3, 1, 1, 1)), 1, 3)
    x = np.full((1, 3, 1, 1), 200)
    make_vectors(dp, Conv2d(3, 1, 1), code, x)
    monkeypatch.setattr(vectors_mod, "_fit", lambda v, bits, _o: ((v + 8) % 16) - 8)
    with pytest.raises(RuntimeError, match="disagrees"):
        make_vectors(dp, Conv2d(3, 1, 1), code, x)


def test_bad_arguments_name_the_parameter(tmp_path):
    dp = ShiftAddDatapath(n_codebooks=1, bits=3)
    code = _code(np.ones((2, 3, 1, 1, 1)), 1, 3)
    x = np.ones((1, 3, 2, 2), np.int64)
    layer = Conv2d(3, 2, 1)
    with pytest.raises(ValueError, match="lanes"):
        write_vectors(tmp_path, dp, layer, code, x, lanes=2)
    with pytest.raises(ValueError, match="out_channels"):
        write_vectors(tmp_path, dp, layer, code, x, out_channels=(1, 1))
    with pytest.raises(TypeError, match="datapath"):
        write_vectors(tmp_path, "shift", layer, code, x)
    with pytest.raises(ValueError, match="x_raw"):
        write_vectors(tmp_path, dp, layer, code, np.full((1, 3, 2, 2), 300))
    big = Conv2d(3, 2, 1)
    with pytest.raises(ValueError, match="step rows"):
        make_vectors(dp, big, code, np.ones((1, 3, 1100, 1000), np.int64))
    assert not list(tmp_path.iterdir())  # nothing written


# ------------------------------------------------------------------ command line


def test_cli_vectors_writes_checked_vectors(tmp_path, capsys):
    from shiftsim.cli import main

    out = tmp_path / "v"
    args = [
        "vectors",
        "--datapath",
        "mac",
        "--in-channels",
        "3",
        "--out-channels",
        "2",
        "--kernel",
        "2",
        "--size",
        "3",
        "--bias",
        "--lanes",
        "4",
        "--tile",
        "1:2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["T"] == 4 and manifest["out_channels"] == [1, 2]
    assert manifest["tables"]["steps"]["rows"] == 2 * 2 * 4  # 2x2 outputs, 2x2 taps
    assert "RTL top mac_lane" in capsys.readouterr().out


def test_cli_vectors_bad_input_is_one_line(tmp_path, capsys):
    from shiftsim.cli import main

    assert main(["vectors", "--in-channels", "3", "--lanes", "2", "--out", str(tmp_path)]) == 2
    assert "lanes must be an int >= C/groups = 3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["vectors", "--tile", "2", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "START:STOP" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["vectors", "--datapath", "log", "--bits", "9", "--out", str(tmp_path)])
    assert "--bits" in capsys.readouterr().err


@settings(max_examples=min(15, settings.default.max_examples))
@given(shift_cases(max_channels=3, max_size=5, max_acc_bits=40))
def test_one_step_row_per_compute_cycle_of_the_cycle_model(case):
    # one accumulation unit whose tree takes all C/groups channels: the cycle model's compute
    # cycles are the vectors' step rows, and both reproduce the same outputs
    from shiftsim.hardware import Hardware

    cg = case.layer.as_conv().channels_per_group
    hw = Hardware.paper().replace(acc_units=1, tree_width=cg)
    dp = case.datapath()
    vec = make_vectors(dp, case.layer, case.code(), case.x_raw, case.bias_raw)
    res = dp.run(case.layer, case.code(), case.x_raw, case.bias_raw, level="cycle", hardware=hw)
    assert res.counts.compute_cycles == vec.manifest["tables"]["steps"]["rows"]
    y = case.layer.as_conv().to_nchw(res.y_raw)
    assert _steps(vec, "y") == np.asarray(y).reshape(-1).tolist()


def test_value_outside_its_field_is_refused(monkeypatch):
    # a field too narrow for its values must not be packed (masked) silently
    dp = ShiftAddDatapath(n_codebooks=1, bits=3)
    code = _code(np.ones((1, 1, 1, 1, 1)), 1, 3)
    monkeypatch.setattr(vectors_mod, "shift_widths", lambda p: {
        "XW": 9, "RW": 9, "TW": 4, "TREEW": 4, "S": 2, "NBITS": 1})  # fmt: skip
    with pytest.raises(RuntimeError, match="field term"):
        make_vectors(dp, Conv2d(1, 1, 1), code, np.full((1, 1, 1, 1), 200))
