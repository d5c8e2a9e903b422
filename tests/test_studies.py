"""Streamed evaluation, the study tables and the shipped 28x28 models."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from shiftsim import FixedFormat, LogFormat, ShiftAddDatapath
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datasets import ImageSet, load_fashion_mnist, load_mnist
from shiftsim.models.digits import digits_network, digits_test_split
from shiftsim.models.mnist_family import MODELS, load_model, model_info, model_test_set
from shiftsim.studies import calibration_images, evaluate
from shiftsim.studies import miyashita as miy
from shiftsim.studies.shiftcnn import pivot_markdown
from shiftsim.studies.weights import log_weight_sqnr, sqnr_db, weight_sqnr_study

REQUIRE_DATA = os.environ.get("SHIFTSIM_REQUIRE_DATA", "0") not in ("", "0")


def _digits_set() -> ImageSet:
    x, y = digits_test_split()
    pixels = np.rint(x * 255).astype(np.uint8)  # batches() divides by 255 again
    return ImageSet(pixels, y, "digits")


@pytest.mark.jit_only
def test_evaluate_does_not_depend_on_the_batch_size() -> None:
    net, data = digits_network(), _digits_set().head(90)
    cal = data.images[:50].astype(np.float64) / 255.0
    dp = ShiftAddDatapath(n_codebooks=2, bits=3)
    whole = evaluate(net, dp, data, calibration=cal, batch_size=1000)
    parts = evaluate(net, dp, data, calibration=cal, batch_size=7)
    assert (parts.correct, parts.float_correct, parts.agree) == (
        whole.correct,
        whole.float_correct,
        whole.agree,
    )
    assert parts.totals == whole.totals
    for col in ("values", "acc_updates", "overflows", "clipped"):
        np.testing.assert_array_equal(parts.layers[col].to_numpy(), whole.layers[col].to_numpy())
    # one Network.run over every image with the same calibration gives the same top-1
    x = data.images.astype(np.float64) / 255.0
    res = net.run(x, dp, calibration=cal)
    assert whole.correct == round(res.top1(data.labels) * len(data))
    assert whole.images == 90 and whole.images_per_s > 0
    assert whole.drop_points == pytest.approx(100 * (whole.float_top1 - whole.top1))


@pytest.mark.jit_only
def test_evaluate_warns_on_overflow() -> None:
    net, data = digits_network(), _digits_set().head(40)
    cal = data.images.astype(np.float64) / 255.0
    quiet = evaluate(net, ShiftAddDatapath(acc_bits=32), data, calibration=cal)
    assert quiet.warnings() == [] and quiet.max_overflow_rate == 0.0
    loud = evaluate(net, ShiftAddDatapath(acc_bits=9), data, calibration=cal)
    assert loud.max_overflow_rate > 1e-3
    lines = loud.warnings()
    assert lines and all(line.startswith("WARNING: layer ") for line in lines)
    assert any("accumulator updates overflowed" in line for line in lines)
    row = loud.layers.set_index("layer").loc["conv2"]
    assert row["overflow_rate"] == row["overflows"] / row["acc_updates"]


def test_evaluate_rejects_bad_data() -> None:
    with pytest.raises(TypeError, match="data must be an ImageSet"):
        evaluate(digits_network(), ShiftAddDatapath(), [1, 2], calibration=np.zeros((1, 1, 8, 8)))  # type: ignore[arg-type]


def test_calibration_images_seeded(rng: np.random.Generator) -> None:
    data = ImageSet(rng.integers(0, 256, (30, 1, 28, 28), dtype=np.uint8), np.zeros(30), "r")
    a, b = calibration_images(data, 5, seed=3), calibration_images(data, 5, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 1, 28, 28) and a.dtype == np.float64
    with pytest.raises(ValueError, match=r"n must be an int in \[1, 30\]"):
        calibration_images(data, 31)


def test_sqnr_by_hand() -> None:
    w = np.array([3.0, 4.0])
    assert sqnr_db(w, np.array([3.0, 3.0])) == pytest.approx(10 * math.log10(25.0))
    assert sqnr_db(w, w) == math.inf
    # powers of two within 3 exponent bits are exact in base 2; base sqrt2 covers 3 octaves
    p2 = np.array([1.0, -0.5, 0.25, -0.0625])
    assert log_weight_sqnr(p2, 3, 2) == math.inf
    assert log_weight_sqnr(p2, 3, "sqrt2") < math.inf  # 7 half-octave codes stop at 2**-3
    assert log_weight_sqnr(p2, 4, "sqrt2") == math.inf


def test_weight_sqnr_study_columns_and_order(rng: np.random.Generator) -> None:
    w = {"a.weight": rng.laplace(0, 0.05, (8, 4, 3, 3)), "zero.weight": np.zeros((2, 2))}
    frame = weight_sqnr_study(w, shift_configs=((1, 4), (3, 4)), log_bits=(4,))
    assert frame["layer"].tolist() == ["a.weight"]  # all-zero tensors are left out
    row = frame.iloc[0]
    assert row["params"] == 288 and row["shape"] == "8x4x3x3"
    assert row["shift_N3_B4"] > row["shift_N1_B4"]
    assert row["log2_4_best"] >= row["log2_4"] and row["sqrt2_4_best"] >= row["sqrt2_4"]


def test_pivot_markdown() -> None:
    import pandas as pd

    frame = pd.DataFrame({"N": [1, 1, 2], "B": [2, 3, 2], "drop_points": [9.0, 1.25, 0.5]})
    assert pivot_markdown(frame, "N", "B").splitlines() == [
        "| N \\ B | 2 | 3 |",
        "|---|---|---|",
        "| 1 | 9.00 | 1.25 |",
        "| 2 | 0.50 | nan |",
    ]


def test_study_configs() -> None:
    w = miy.weight_base_configs((3, 5))
    assert len(w) == 8 and w[("all", "sqrt2", 5)].weight.base == "sqrt2"  # type: ignore[union-attr]
    conv_only = w[("conv", 2, 3)]
    assert isinstance(conv_only, dict) and conv_only["fc*"] is miy.MAC8
    assert conv_only["*"].weight == LogFormat(3, 0)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="scopes must hold"):
        miy.weight_base_configs((3,), ("fc",))
    acc = miy.accumulation_configs((4, 10))
    assert [k[:2] for k in acc] == [("linear", "-")] + [("log", "floor")] * 2 + [
        ("log", "mitchell")
    ] * 2
    act = miy.activation_configs((3,), (6, 7))
    assert len(act) == 8
    lin6 = act[("linear", "quantised", 3, 6)]
    assert isinstance(lin6, FixedMacDatapath) and lin6.weight == FixedFormat(6, 5)
    assert lin6.act == FixedFormat(3, -3, signed=False)  # top value 2**6 - 2**3: fsr 6
    log7 = act[("log", "quantised", 3, 7)]
    assert isinstance(log7, LogDatapath) and log7.act == LogFormat(3, 7, signed=False)
    # 16-bit weights: the same weights for both kinds, log codes on entry to the MAC
    lin16, log16 = act[("linear", "16-bit", 3, 6)], act[("log", "16-bit", 3, 6)]
    assert isinstance(lin16, FixedMacDatapath) and isinstance(log16, FixedMacDatapath)
    assert lin16.weight == log16.weight == FixedFormat(16, 15)
    assert log16.act_log == LogFormat(3, 6, signed=False) and log16.act.frac_bits == 16
    with pytest.raises(ValueError, match="weights must hold"):
        miy.activation_configs((3,), (6,), ("8-bit",))


def _require(loader):  # type: ignore[no-untyped-def]
    try:
        return loader()
    except ValueError as exc:  # the data sets and EfficientNet-Lite0's weights are optional
        if REQUIRE_DATA:
            raise AssertionError(f"SHIFTSIM_REQUIRE_DATA=1 but data is missing: {exc}") from exc
        pytest.skip(f"data not installed: {exc}")


@pytest.mark.parametrize("name", list(MODELS))
def test_shipped_models_float_accuracy(name: str) -> None:
    data = _require(lambda: model_test_set(name)).head(1000)
    net = load_model(name)
    info = model_info(name)
    correct = 0
    for start in range(0, 1000, 250):
        x = data.images[start : start + 250].astype(np.float64) / 255.0
        out = net.forward_float(x)[net.nodes[-1].name]
        correct += int(np.sum(out.argmax(1) == data.labels[start : start + 250]))
    floor = 0.97 if MODELS[name] == "mnist" else 0.85
    assert correct / 1000 >= floor
    assert (
        info["float_top1"] == info["torch_top1"]
        or abs(info["float_top1"] - info["torch_top1"]) <= 2e-4
    )
    shapes = net.layer_input_shapes(1)
    assert info["macs_per_image"] == sum(n.layer.macs(shapes[n.name]) for n in net.conv_nodes)  # type: ignore[union-attr]


@pytest.mark.jit_only  # no numba inside, but 10,000 float images: once per CI is enough
def test_lenet_full_test_set_matches_recorded_accuracy() -> None:
    data = _require(lambda: load_mnist("test"))
    net = load_model("mnist_lenet")
    correct = 0
    for start in range(0, len(data), 1000):
        x = data.images[start : start + 1000].astype(np.float64) / 255.0
        out = net.forward_float(x)[net.nodes[-1].name]
        correct += int(np.sum(out.argmax(1) == data.labels[start : start + 1000]))
    assert correct / len(data) == model_info("mnist_lenet")["float_top1"]


@pytest.mark.jit_only
def test_studies_command_runs_small(capsys: pytest.CaptureFixture[str]) -> None:
    _require(lambda: load_fashion_mnist("test"))
    from shiftsim.studies.__main__ import main

    args = "shiftcnn --models fmnist_vgg --images 20 --codebooks 2 --bits 4 --scales channel"
    assert main(args.split()) == 0
    out = capsys.readouterr().out
    assert "fmnist_vgg channel N=2 B=4: top-1" in out
    assert "| N \\ B | 4 |" in out and "20 test images" in out


def test_studies_command_refuses_unknown_settings(capsys: pytest.CaptureFixture[str]) -> None:
    from shiftsim.studies.__main__ import main

    for args, said in [
        ("miyashita --weights 8-bit", "argument --weights: unknown weights '8-bit'"),
        ("miyashita --models cifar", "argument --models: unknown model 'cifar'"),
        ("shiftcnn --bits four", "argument --bits: expected comma-separated ints, got 'four'"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(args.split())
        assert exc.value.code == 2
        assert said in capsys.readouterr().err


def test_torch_legacy_reader_on_efficientnet_lite0() -> None:
    from shiftsim.studies.weights import efficientnet_lite0_path, load_efficientnet_lite0

    _require(efficientnet_lite0_path)
    w = load_efficientnet_lite0()
    assert len(w) == 50 and sum(v.size for v in w.values()) == 4_608_992
    assert w["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert w["_fc.weight"].shape == (1000, 1280)
    assert w["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert all(v.dtype == np.float64 and np.all(np.isfinite(v)) for v in w.values())


def test_torch_legacy_reader_rejects_other_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pickle

    from shiftsim.studies.weights import read_torch_legacy

    bad = tmp_path / "x.pth"
    bad.write_bytes(pickle.dumps(12345))
    with pytest.raises(ValueError, match=r"x.pth: not a readable legacy torch file \(bad magic"):
        read_torch_legacy(bad)
    bad.write_bytes(b"PK\x03\x04 zip")
    with pytest.raises(ValueError, match=r"x.pth: not a readable legacy torch file"):
        read_torch_legacy(bad)
    bad.write_bytes(pickle.dumps(os.system))
    with pytest.raises(ValueError, match="refusing to load"):
        read_torch_legacy(bad)


@pytest.mark.jit_only
def test_cli_simulates_trained_models_and_warns(capsys: pytest.CaptureFixture[str]) -> None:
    _require(lambda: load_mnist("test"))
    from shiftsim.cli import main

    assert main("simulate --model mnist_lenet --images 20 --codebooks 2 --bits 4".split()) == 0
    cap = capsys.readouterr()
    assert "top-1:" in cap.out and "on 20 test images" in cap.out and "WARNING" not in cap.err
    assert main("simulate --model mnist_lenet --images 20 --acc-bits 10".split()) == 0
    cap = capsys.readouterr()
    assert "WARNING: layer conv1: " in cap.err and "accumulator updates overflowed" in cap.err
    args = "simulate --model mnist_lenet --images 20 --datapath log --scaling fixed"
    assert main(args.split()) == 0
    assert "top-1:" in capsys.readouterr().out
