"""Audit findings outside the sweep: quantization memory, validation gaps, huge layers."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction

import numpy as np
import pytest

from shiftsim import quantize
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.formats import FixedFormat
from shiftsim.layers import Linear
from shiftsim.quantize import quantize_linear, quantize_log, quantize_shiftcnn
from tests import naive_quantize as naive


# ------------------------------------------------------------------ item 10: peak memory
def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "quantizer",
    [
        lambda w: quantize_shiftcnn(w, n_codebooks=2, bits=4),
        lambda w: quantize_shiftcnn(w, n_codebooks=2, bits=4, axis=0),
        lambda w: quantize_log(w, bits=4, fsr=0),
        lambda w: quantize_linear(w, bits=7, fsr=0, signed=True),
        lambda w: FixedFormat(8, 7).from_float_counted(w),
        lambda w: ShiftAddDatapath().prepare(Linear(2048, 1024), w, np.ones((1, 2048))),
    ],
    ids=["shiftcnn", "shiftcnn-per-channel", "log", "linear", "fixed", "shift-prepare"],
)
def test_weight_quantization_peaks_under_twice_the_weights(quantizer) -> None:
    # a Linear(2048, 1024) layer (16 MiB of float64): the same per weight as Linear(25088, 1024)
    w = np.random.default_rng(0).standard_normal((1024, 2048))
    peak = _peak_bytes(lambda: quantizer(w))
    assert peak <= 2 * w.nbytes, f"peak {peak / w.nbytes:.2f}x the weight bytes"


@pytest.mark.parametrize("axis", [None, 0, 1, 2])
def test_blocked_quantizers_match_the_oracle_across_block_edges(monkeypatch, axis) -> None:
    monkeypatch.setattr(quantize, "BLOCK_ELEMENTS", 7)  # many blocks, edges inside every row
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 5, 4)) * np.exp2(rng.integers(-6, 6, (3, 5, 4)))
    w[1] = 0.0  # an all-zero slice (scale 0)
    code = quantize_shiftcnn(w, n_codebooks=3, bits=4, axis=axis)
    slices = [w] if axis is None else [np.take(w, i, axis=axis) for i in range(w.shape[axis])]
    for i, part in enumerate(slices):
        got = code.index if axis is None else np.take(code.index, i, axis=axis)
        want = naive.shiftcnn(part.ravel().tolist(), 3, 4, w.dtype)
        np.testing.assert_array_equal(got.reshape(-1, 3), np.array(want, dtype=np.int8))
    normalized = code.normalized()
    for value, idx in zip(normalized.ravel(), code.index.reshape(-1, 3)):
        assert Fraction(float(value)) == naive.shiftcnn_value(idx.tolist())
    log = quantize_log(w, bits=4, fsr=1)
    for x, e, s in zip(w.ravel(), log.exponent.ravel(), log.sign.ravel()):
        sign, exp = naive.log_quant(float(x), 4, Fraction(1), 1)
        assert int(s) == sign and (exp is None or int(e) == exp)
    lin = quantize_linear(w, bits=5, fsr=2, signed=True)
    assert lin.raw.shape == w.shape and lin.raw.dtype == np.int64
    assert lin.raw.ravel().tolist() == [naive.linear_quant(x, 5, 2, True) for x in w.ravel()]


@pytest.mark.parametrize("overflow", ["WRAP", "SAT"])
def test_blocked_fixed_conversion_matches_the_oracle(monkeypatch, overflow) -> None:
    from shiftsim import formats
    from shiftsim.formats import Overflow, Rounding

    monkeypatch.setattr(formats, "BLOCK_ELEMENTS", 7)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 9)) * 3
    fmt = FixedFormat(6, 3, signed=True)
    raw, n_over = fmt.from_float_counted(x, Rounding.RND, Overflow[overflow])
    want = [naive.fixed_from_float(v, 6, 3, True, "RND", overflow) for v in x.ravel()]
    assert raw.shape == x.shape and raw.dtype == np.int64
    assert raw.ravel().tolist() == [r for r, _ in want]
    assert n_over == sum(o for _, o in want) > 0  # overflows counted across every block


# ------------------------------------------------------------------ item 12: validation
def _code(scale):
    from shiftsim.quantize import ShiftCode

    return ShiftCode(index=np.ones((1, 1, 1, 1, 2), np.int8), scale=scale, n_codebooks=2, bits=4)


@pytest.mark.parametrize(
    ("make", "error", "needle"),
    [
        (lambda: _code(np.float64(-1.0)), ValueError, "ShiftCode.scale must be >= 0"),
        (lambda: _code(np.array([1.0, -0.5])), ValueError, "ShiftCode.scale must be >= 0"),
        (lambda: _code(np.float64("nan")), ValueError, "ShiftCode.scale must be finite"),
        (lambda: _code("big"), TypeError, "ShiftCode.scale must be a real number"),
        (lambda: _mac(-2.0), ValueError, "MacCode.scale must be >= 0"),
        (lambda: _mac(np.inf), ValueError, "MacCode.scale must be finite"),
        (lambda: _mac(np.ones(2)), ValueError, "MacCode.scale must be one number"),
    ],
)
def test_negative_or_bad_weight_scales_are_refused(make, error, needle) -> None:
    with pytest.raises(error, match=needle):
        make()


def _mac(scale):
    from shiftsim.datapath.mac import MacCode

    return MacCode(raw=np.ones((1, 1, 1, 1), np.int64), scale=scale)


def test_a_refused_negative_scale_no_longer_flips_the_output() -> None:
    from shiftsim.formats import FixedFormat
    from shiftsim.layers import Conv2d

    dp = ShiftAddDatapath(act=FixedFormat(8, 0, signed=False))
    x = np.full((1, 1, 1, 1), 4)
    good = dp.run(Conv2d(1, 1, 1), _code(np.float64(1.0)), x)
    assert good.y.ravel().tolist() == [6.0]  # index (1, 1): 4 + 4 >> 1 = 6, scale 1
    with pytest.raises(ValueError, match="must be >= 0"):
        dp.run(Conv2d(1, 1, 1), _code(np.float64(-1.0)), x)


def test_layer_result_validates_its_fields() -> None:
    from shiftsim.counts import Counts
    from shiftsim.datapath import LayerResult
    from shiftsim.formats import FixedFormat

    fmt, y = FixedFormat(16, 0), np.zeros((1, 3), np.int64)
    assert LayerResult(y, fmt, np.ones(3), Counts()).y.shape == (1, 3)
    bad = [
        ((y.astype(float), fmt, 1.0, Counts()), TypeError, "y_raw must be an integer ndarray"),
        (([[1, 2, 3]], fmt, 1.0, Counts()), TypeError, "y_raw must be an integer ndarray"),
        ((np.zeros(3, np.int64), fmt, 1.0, Counts()), ValueError, "batch and a channel"),
        ((y, "Q15", 1.0, Counts()), TypeError, "out_format must be a FixedFormat"),
        ((y, fmt, 1.0, {"adds": 1}), TypeError, "counts must be a Counts"),
        ((y, fmt, np.ones(2), Counts()), ValueError, r"scale must have shape \(\) or \(3,\)"),
        ((y, fmt, -1.0, Counts()), ValueError, "scale must be finite and >= 0"),
        ((y, fmt, "1", Counts()), TypeError, "scale must be a float or an array"),
    ]
    for args, error, needle in bad:
        with pytest.raises(error, match=needle):
            LayerResult(*args)
    with pytest.raises(TypeError, match="trace must be an ndarray or None"):
        LayerResult(y, fmt, 1.0, Counts(), trace=[1])


def test_topology_layer_validates_its_fields() -> None:
    from shiftsim.io.topology import TopologyLayer
    from shiftsim.layers import Conv2d

    conv = Conv2d(3, 4, 3)
    t = TopologyLayer(name="c", layer=conv, input_hw=(np.int64(5), 6))
    assert t.input_hw == (5, 6) and type(t.input_hw[0]) is int
    for kwargs, error, needle in [
        ({"name": ""}, ValueError, "name must be a non-empty str"),
        ({"layer": Linear(3, 4)}, TypeError, "layer must be a Conv2d"),
        ({"input_hw": (0, 5)}, ValueError, "input_hw must be two positive ints"),
        ({"input_hw": (5.0, 5)}, ValueError, "input_hw must be two positive ints"),
        ({"input_hw": (5,)}, ValueError, "input_hw must be two positive ints"),
        ({"input_hw": (2, 2)}, ValueError, "TopologyLayer 'c'"),  # kernel larger than input
    ]:
        args = {"name": "c", "layer": conv, "input_hw": (5, 5), **kwargs}
        with pytest.raises(error, match=needle):
            TopologyLayer(**args)


def test_sweep_targets_validate_their_fields() -> None:
    from shiftsim.layers import Conv2d
    from shiftsim.models.digits import digits_network
    from shiftsim.sweep import LayerTarget, NetworkTarget

    conv = Conv2d(2, 3, 1)
    ok = {"layer": conv, "w": np.ones((3, 2, 1, 1)), "x": np.ones((1, 2, 2, 2)),
          "datapath": ShiftAddDatapath()}  # fmt: skip
    LayerTarget(**ok)
    for change, error, needle in [
        ({"layer": "conv"}, TypeError, "LayerTarget.layer must be a Conv2d or Linear"),
        ({"datapath": None}, TypeError, "LayerTarget.datapath must be a Datapath"),
        ({"w": np.ones((3, 2))}, ValueError, r"LayerTarget.w must have shape \(3, 2, 1, 1\)"),
        ({"w": np.full((3, 2, 1, 1), np.nan)}, ValueError, "LayerTarget.w must be finite"),
        ({"x": np.ones((1, 5, 2, 2))}, ValueError, "LayerTarget.x must have shape"),
        ({"bias": np.ones(2)}, ValueError, r"LayerTarget.bias must have shape \(3,\)"),
        ({"level": "fast"}, ValueError, "LayerTarget.level must be one of"),
        ({"hardware": "edge"}, TypeError, "LayerTarget.hardware must be a Hardware"),
    ]:
        with pytest.raises(error, match=needle):
            LayerTarget(**{**ok, **change})
    net = digits_network()
    x = np.zeros((2, 1, 8, 8))
    NetworkTarget(network=net, datapath=ShiftAddDatapath(), x=x, labels=np.array([1, 2]))
    for change, error, needle in [
        ({"network": "digits"}, TypeError, "NetworkTarget.network must be a Network"),
        ({"batch": 0}, ValueError, "NetworkTarget.batch must be >= 1"),
        ({"batch": 1.5}, TypeError, "NetworkTarget.batch must be an int"),
        ({"seed": -1}, ValueError, "NetworkTarget.seed must be >= 0"),
        ({"max_hw": 0}, ValueError, "NetworkTarget.max_hw must be >= 1"),
        ({"level": "rtl"}, ValueError, "NetworkTarget.level must be one of"),
        ({"requant": 8}, TypeError, "NetworkTarget.requant must be a Requant"),
        ({"labels": np.array([1, 2, 3])}, ValueError, "NetworkTarget.labels must be 2 integers"),
        ({"x": None}, ValueError, "NetworkTarget.labels needs x"),
        ({"x": np.full((2, 1, 8, 8), np.inf)}, ValueError, "NetworkTarget.x must be finite"),
    ]:
        args = {"network": net, "datapath": ShiftAddDatapath(), "x": x,
                "labels": np.array([1, 2]), **change}  # fmt: skip
        with pytest.raises(error, match=needle):
            NetworkTarget(**args)


def test_complex_weights_in_an_npz_are_refused(tmp_path) -> None:
    from shiftsim.models.digits import digits_network, weights_path
    from shiftsim.network import Network

    data = dict(np.load(weights_path()))
    data["conv2.weight"] = data["conv2.weight"] + 0.5j
    path = tmp_path / "complex.npz"
    np.savez(path, **data)
    with pytest.raises(ValueError, match=r"array 'conv2\.weight' is complex128"):
        digits_network(path)
    topo = tmp_path / "t.csv"
    topo.write_text(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,\nA,4,4,1,1,1,2,1,\n"
    )
    np.savez(tmp_path / "w.npz", A=np.ones((2, 1, 1, 1)) * (1 + 1j))
    with pytest.raises(ValueError, match="array 'A' is complex128; weights must be real"):
        Network.from_topology(topo, weights=tmp_path / "w.npz")


def test_report_helpers_raise_type_errors_naming_the_parameter(tmp_path) -> None:
    import pandas as pd

    from shiftsim.counts import Counts
    from shiftsim.hardware import Hardware
    from shiftsim.io import reports

    hw = Hardware.edge()
    cases = [
        (lambda: reports.layer_table({"a": Counts()}, datapath=None, hardware="edge"), "hardware"),
        (
            lambda: reports.layer_table(
                {"a": Counts()}, datapath=ShiftAddDatapath(), hardware=hw, energy_table={}
            ),
            "energy_table",
        ),
        (lambda: reports.layer_table(5, datapath=ShiftAddDatapath(), hardware=hw), "results"),
        (lambda: reports.layer_table([Counts()], datapath=None, hardware=hw), "results"),
        (lambda: reports.write_table({"a": [1]}, tmp_path / "t.csv"), "df"),
        (lambda: reports.write_table(pd.DataFrame(), 5), "path"),
        (lambda: reports.read_table(None), "path"),
        (lambda: reports.scalesim_reports([{"cycles": 1}], hw), "df"),
        (lambda: reports.accelergy_action_counts({"adds": 1}, hw), "counts"),
        (lambda: reports.accelergy_action_counts(Counts(), None), "hardware"),
        (lambda: reports.write_accelergy_yaml([1], tmp_path / "a.yaml"), "action_counts"),
    ]
    for call, name in cases:
        with pytest.raises(TypeError, match=rf"^{name} must (be|hold)"):
            call()
    with pytest.raises(ValueError, match=r"df lacks the column\(s\) \['cycles'"):
        reports.scalesim_reports(pd.DataFrame({"adds": [1]}), hw)
    with pytest.raises(ValueError, match="action_counts must be what accelergy_action_counts"):
        reports.write_accelergy_yaml({"local": []}, tmp_path / "a.yaml")


# ------------------------------------------------------------------ item 14: golden cost
def _small_run(dp=None, **kwargs):
    from shiftsim.layers import Conv2d

    dp = dp or ShiftAddDatapath()
    layer = Conv2d(2, 4, 3)
    rng = np.random.default_rng(0)
    prep = dp.prepare(layer, rng.standard_normal(layer.weight_shape), rng.random((1, 2, 5, 5)))
    return dp.run(layer, prep.code, prep.x_in, level="golden", **kwargs)


def test_golden_cost_is_estimated_and_refused_above_the_limit(monkeypatch) -> None:
    from shiftsim.datapath.log_domain import LogDatapath
    from shiftsim.datapath.mac import FixedMacDatapath

    monkeypatch.delenv("SHIFTSIM_GOLDEN_LIMIT_S", raising=False)
    for dp in (ShiftAddDatapath(), LogDatapath(), FixedMacDatapath()):
        with pytest.raises(ValueError, match=r"golden_limit_s=1e-06; .*raise the limit"):
            _small_run(dp, golden_limit_s=1e-6)
        assert _small_run(dp, golden_limit_s=float("inf")).y_raw.shape == (1, 4, 3, 3)
    monkeypatch.setenv("SHIFTSIM_GOLDEN_LIMIT_S", "1e-6")
    with pytest.raises(ValueError, match="about 0 s on this layer \\(648 MACs"):
        _small_run()
    monkeypatch.setenv("SHIFTSIM_GOLDEN_LIMIT_S", "soon")
    with pytest.raises(ValueError, match="SHIFTSIM_GOLDEN_LIMIT_S must be a number"):
        _small_run()
    monkeypatch.delenv("SHIFTSIM_GOLDEN_LIMIT_S")
    with pytest.raises(ValueError, match="golden_limit_s must be > 0"):
        _small_run(golden_limit_s=0)
    # a full-size layer is refused at once, before any work (the default limit: 600 s)
    from shiftsim.layers import Conv2d

    big = Conv2d(256, 256, 3, padding=1)
    dp = ShiftAddDatapath()
    assert dp.golden_seconds(big, (1, 256, 56, 56)) > 600
    code = quantize_shiftcnn(np.ones(big.weight_shape), 2, 4)
    with pytest.raises(ValueError, match=r"about \d+ min on this layer \(1,849,688,064 MACs"):
        dp.run(big, code, np.zeros((1, 256, 56, 56), np.int64), level="golden")


def test_a_long_golden_run_warns_and_shows_progress(monkeypatch, capsys) -> None:
    from shiftsim.datapath import base

    monkeypatch.setattr(base, "GOLDEN_NOTICE_S", 0.0)
    with pytest.warns(RuntimeWarning, match=r"the golden model will take about 0 s .*648 MACs"):
        quiet = _small_run()
    err = capsys.readouterr().err
    assert "golden Conv2d" in err and "4/4" in err
    monkeypatch.setattr(base, "GOLDEN_NOTICE_S", 1e9)
    np.testing.assert_array_equal(_small_run().y_raw, quiet.y_raw)


def test_golden_models_report_progress_per_output_channel() -> None:
    from shiftsim.layers import Conv2d
    from shiftsim.reference.golden import shift_add_golden
    from shiftsim.reference.golden_mac import conv_mac_golden

    layer = Conv2d(1, 3, 1)
    calls: list[tuple[int, int]] = []
    x = np.ones((2, 1, 2, 2), np.int64)
    shift_add_golden(layer, np.ones((3, 1, 1, 1, 2), np.int8), x, bits=4,
                     progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert calls == [(i, 6) for i in range(6)]
    calls.clear()
    conv_mac_golden(layer, np.ones((3, 1, 1, 1), np.int64), x, None, acc_bits=32,
                    overflow=ShiftAddDatapath().overflow,
                    progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert calls == [(i, 6) for i in range(6)]


# ------------------------------------------------------------------ item 9: huge layers
def test_a_huge_topology_row_is_refused_in_one_line_before_allocating(tmp_path, capsys) -> None:
    from shiftsim.cli import main

    topo = tmp_path / "huge.csv"
    topo.write_text(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,\nBig,100000,100000,3,3,3,8,1,\n"
    )
    tracemalloc.start()
    try:
        code = main(["simulate", "--topology", str(topo)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "layer 'Big' (input 1x3x100000x100000" in err and "crop the inputs with --max-size N" in err
    )
    assert len(err.strip().splitlines()) == 1 and "MemoryError" not in err
    assert peak < 200 * 2**20  # refused before allocating anything large
    assert main(["simulate", "--topology", str(topo), "--max-size", "8"]) == 0
    code = main(["verify", "--topology", str(topo), "--size", "100000"])
    assert code == 2 and "crop the inputs with --size N" in capsys.readouterr().err


def test_cli_golden_limit(tmp_path, capsys, monkeypatch) -> None:
    import os

    from shiftsim.cli import main

    monkeypatch.delenv("SHIFTSIM_GOLDEN_LIMIT_S", raising=False)
    topo = tmp_path / "t.csv"
    topo.write_text(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,\nA,6,6,3,3,3,4,1,\n"
    )
    args = ["simulate", "--topology", str(topo), "--level", "golden"]
    code = main([*args, "--golden-limit", "1e-9"])
    err = capsys.readouterr().err
    assert code == 2 and "over golden_limit_s=1e-09" in err and "--golden-limit" in err
    assert "SHIFTSIM_GOLDEN_LIMIT_S" not in os.environ  # restored after the command
    assert main([*args, "--golden-limit", "inf"]) == 0
    with pytest.raises(SystemExit) as exc:
        main([*args, "--golden-limit", "-1"])
    assert exc.value.code == 2
    assert "expected a number of seconds > 0, got '-1'" in capsys.readouterr().err
