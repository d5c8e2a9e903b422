"""Integer semantics of the operators (hand-checked), signed inputs, per-layer datapaths,
ConvTranspose against an independent scatter oracle, and the network's own validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftsim import (
    Conv2d,
    FixedFormat,
    FixedMacDatapath,
    Linear,
    LogDatapath,
    Network,
    Requant,
    ShiftAddDatapath,
)
from shiftsim.network import Act, StepContext
from shiftsim.network.ops import (
    Affine,
    Concat,
    Conv,
    ConvTranspose,
    Flatten,
    Mul,
    Neg,
    ReduceMean,
    Relu,
    Sigmoid,
)

S9 = FixedFormat(9, 0, signed=True)
U8 = FixedFormat(8, 0, signed=False)


def ctx(peak: float, *, relu: bool = False, requant: Requant | None = None) -> StepContext:
    """A context whose output scale is 0.25 when ``peak`` is 63.75 (8-bit act, signed 9)."""
    return StepContext(
        datapath=None,
        act=U8,
        relu_fused=relu,
        last=False,
        calibration=np.array([peak]),
        input_calibration=[np.array([peak])] * 3,
        requant=requant or Requant(),
    )


def act(raw, scale: float, fmt: FixedFormat = S9) -> Act:
    return Act(np.asarray(raw, dtype=np.int64), fmt, scale)


# ---------------------------------------------------------------- hand-checked integer steps
def test_concat_aligns_every_operand_to_the_output_scale() -> None:
    # output scale 63.75 / 255 = 0.25: factors 0.5 / 0.25 = 2 and 2.0 / 0.25 = 8, exact
    node = Concat(name="c", axis=1, inputs=("a", "b"))
    step = node.run_int([act([[10, 20]], 0.5), act([[3, 40]], 2.0)], ctx(63.75))
    np.testing.assert_array_equal(step.act.raw, [[20, 40, 24, 255]])
    assert step.act.raw.dtype == np.int64 and step.act.fmt == S9 and step.act.scale == 0.25
    assert step.clipped == 1  # 40 * 8 = 320 > 255
    assert step.columns["requant_mults"] == 4


def test_mul_of_two_tensors_is_exact_then_requantised_and_counted() -> None:
    # (3 * 0.5) * (5 * 0.25) = 1.875 = 15 / 8 -> raw 7.5 at scale 0.25 -> 8 (half up);
    # (-4 * 0.5) * (6 * 0.25) = -3 -> -12
    step = Mul(name="m", inputs=("a", "b")).run_int(
        [act([3, -4], 0.5), act([5, 6], 0.25)], ctx(63.75)
    )
    np.testing.assert_array_equal(step.act.raw, [8, -12])
    assert step.counts.multiplies == 2
    np.testing.assert_array_equal(step.value, [1.875, -3.0])


def test_affine_with_a_negative_multiplier_and_an_offset() -> None:
    # y = x * -0.5 + 1: x = 4 -> -1, x = -3 -> 2.5; at scale 0.25: -4 and 10
    node = Affine(name="bn", mul=-0.5, add=1.0)
    step = node.run_int([act([4, -3], 1.0)], ctx(63.75))
    np.testing.assert_array_equal(step.act.raw, [-4, 10])
    per_channel = Affine(name="bn", mul=np.array([[[2.0]], [[-1.0]]]), add=0.0)
    step = per_channel.run_int([act(np.array([[[[1]], [[1]]]]), 0.25)], ctx(63.75))
    np.testing.assert_array_equal(step.act.raw.ravel(), [2, -1])


def test_relu_neg_and_mean_on_raw_integers() -> None:
    step = Relu(name="r").run_int([act([-3, 5], 0.5)], None)  # type: ignore[arg-type]
    np.testing.assert_array_equal(step.act.raw, [0, 5])
    assert step.act.fmt == FixedFormat(9, 0, signed=False)
    step = Neg(name="n").run_int([act([255, 0], 1.0, U8)], None)  # type: ignore[arg-type]
    np.testing.assert_array_equal(step.act.raw, [-255, 0])
    assert step.act.fmt == S9 and step.clipped == 0
    step = Neg(name="n").run_int([act([-256], 1.0)], None)  # type: ignore[arg-type]
    assert step.act.raw.tolist() == [255] and step.clipped == 1  # -(-256) does not fit
    mean = ReduceMean(name="m", axes=(2, 3), keepdims=False)
    raw = np.array([[[[1, 2], [3, 5]]], [[[-1, -2], [-3, -5]]]])
    step = mean.run_int([act(raw, 1.0)], None)  # type: ignore[arg-type]
    np.testing.assert_array_equal(step.act.raw, [[3], [-3]])  # 11/4 -> 3, -11/4 -> -3 (half up)


def test_float_operators_are_requantised_and_marked() -> None:
    step = Sigmoid(name="s").run_int([act([0, 1000], 0.01)], ctx(1.0))
    # sigmoid(0) = 0.5, sigmoid(10) = 0.9999546; scale 1 / 255
    np.testing.assert_array_equal(step.act.raw, [128, 255])  # 127.5 -> 128 (half up)
    assert step.columns == {"datapath": "float", "float_ops": 2}


# ---------------------------------------------------------------- ConvTranspose
def scatter_oracle(x, w, stride, pad, dil, out_pad, groups):
    """Transposed convolution by its definition: every input scatters into the output."""
    b, ci, h, wd = np.shape(x)
    _, og, kh, kw = np.shape(w)
    ho = (h - 1) * stride[0] - 2 * pad[0] + dil[0] * (kh - 1) + out_pad[0] + 1
    wo = (wd - 1) * stride[1] - 2 * pad[1] + dil[1] * (kw - 1) + out_pad[1] + 1
    y = [[[[0] * wo for _ in range(ho)] for _ in range(og * groups)] for _ in range(b)]
    cg = ci // groups
    for n, c, i, j, p, q, o in itertools.product(
        range(b), range(ci), range(h), range(wd), range(kh), range(kw), range(og)
    ):
        r = i * stride[0] - pad[0] + p * dil[0]
        s = j * stride[1] - pad[1] + q * dil[1]
        if 0 <= r < ho and 0 <= s < wo:
            y[n][(c // cg) * og + o][r][s] += x[n][c][i][j] * w[c][o][p][q]
    return y


geometry = st.fixed_dictionaries(
    {
        "stride": st.tuples(st.integers(1, 3), st.integers(1, 3)),
        "pad": st.tuples(st.integers(0, 2), st.integers(0, 2)),
        "dil": st.tuples(st.integers(1, 2), st.integers(1, 2)),
        "groups": st.sampled_from([1, 2]),
        "k": st.tuples(st.integers(1, 3), st.integers(1, 3)),
        "seed": st.integers(0, 2**16),
    }
)


@settings(max_examples=25, deadline=None)
@given(geometry, st.data())
def test_conv_transpose_bit_exact_against_the_scatter_oracle(g, data) -> None:
    out_pad = tuple(data.draw(st.integers(0, max(s, d) - 1)) for s, d in zip(g["stride"], g["dil"]))
    rng = np.random.default_rng(g["seed"])
    ci, og = 2 * g["groups"], 2
    w = rng.standard_normal((ci, og, *g["k"]))
    node = ConvTranspose(
        name="ct",
        weight=w,
        stride=g["stride"],
        padding=g["pad"],
        dilation=g["dil"],
        output_padding=out_pad,
        groups=g["groups"],
    )
    x = rng.integers(0, 256, (2, ci, 3, 4)).astype(np.float64)
    x[0, 0, 0, 0] = 255.0  # the largest input maps to raw 255 exactly: raw == x
    try:
        shape = node.infer_shape([x.shape])
    except ValueError:
        return
    if min(shape[2:]) < 1:
        return
    net = Network([node], input_shape=x.shape[1:])
    dp = FixedMacDatapath(acc_bits=48)
    res = net.run(x, dp)
    w_raw = dp.weight.from_float(w / np.abs(w).max())  # MAC: w / max|w|, per tensor
    want = scatter_oracle(
        x.astype(np.int64).tolist(),
        w_raw.tolist(),
        g["stride"],
        g["pad"],
        g["dil"],
        out_pad,
        g["groups"],
    )
    np.testing.assert_array_equal(res.output_raw, np.array(want, dtype=np.int64))
    assert res.output_raw.shape == shape
    # and the float reference is the same scatter on floats
    ref = scatter_oracle(
        x.tolist(), w.tolist(), g["stride"], g["pad"], g["dil"], out_pad, g["groups"]
    )
    np.testing.assert_allclose(net.forward_float(x)["ct"], ref, rtol=1e-12, atol=1e-12)


def test_conv_transpose_functional_equals_golden_on_shift_add() -> None:
    rng = np.random.default_rng(3)
    node = ConvTranspose(
        name="ct",
        weight=rng.standard_normal((2, 3, 3, 3)),
        stride=(2, 2),
        padding=(1, 1),
        output_padding=(1, 1),
    )
    net = Network([node], input_shape=(2, 3, 3))
    x = rng.random((2, 2, 3, 3))
    fast, gold = (net.run(x, ShiftAddDatapath(), level=lv) for lv in ("functional", "golden"))
    np.testing.assert_array_equal(fast.output_raw, gold.output_raw)
    assert fast.totals == gold.totals


# ---------------------------------------------------------------- signed inputs (issue 9/3)
def identity_net(c: int = 1) -> Network:
    conv = Conv2d(c, c, 1)
    return Network(
        [Conv(name="id", layer=conv, weight=np.eye(c).reshape(c, c, 1, 1))], input_shape=(c, 2, 2)
    )


@pytest.mark.parametrize("dp", [FixedMacDatapath(acc_bits=40), ShiftAddDatapath(), LogDatapath()])
def test_negative_inputs_keep_their_sign(dp) -> None:
    x = np.array([[[[-1.0, -0.5], [0.25, 1.0]]]])
    res = identity_net().run(x, dp)
    assert res.extra["input_format"].signed
    assert (np.sign(res.output) == np.sign(x)).all()  # the old runner zeroed the negatives
    if not isinstance(dp, LogDatapath):  # 3-bit log codes are coarse; the sign is the point
        assert res.table["sqnr_db"].iloc[0] > 30


def test_input_values_beyond_the_calibration_are_clipped_and_counted() -> None:
    x = np.array([[[[-3.0, -1.0], [0.5, 2.0]]]])
    cal = np.array([[[[-1.0, 0.0], [0.0, 0.5]]]])  # peak 1 -> scale 1/255, 9-bit signed
    res = identity_net().run(x, FixedMacDatapath(acc_bits=40), calibration=cal)
    assert res.extra["input_clipped"] == 2  # -3 -> -765 and 2 -> 510 leave [-256, 255]
    assert res.table["clipped"].iloc[0] >= 2
    nonneg = identity_net().run(np.abs(x), FixedMacDatapath(acc_bits=40))
    assert not nonneg.extra["input_format"].signed  # no negatives: the unsigned format


# ---------------------------------------------------------------- per-layer datapaths
def two_layer_net(rng: np.random.Generator) -> Network:
    c1 = Conv2d(2, 3, 3, padding=1)
    return Network(
        [
            Conv(name="conv1", layer=c1, weight=rng.standard_normal(c1.weight_shape)),
            Relu(name="relu1"),
            Conv(name="conv2", layer=Conv2d(3, 3, 1), weight=rng.standard_normal((3, 3, 1, 1))),
            Relu(name="relu2"),
            Flatten(name="flat"),
            Conv(name="fc", layer=Linear(27, 4), weight=rng.standard_normal((4, 27))),
        ],
        input_shape=(2, 3, 3),
    )


def test_per_layer_datapaths_by_name_pattern(rng: np.random.Generator) -> None:
    net = two_layer_net(rng)
    x = rng.standard_normal((2, 2, 3, 3))
    mac, shift = FixedMacDatapath(acc_bits=40), ShiftAddDatapath()
    res = net.run(x, {"conv1": mac, "fc": mac, "*": shift})
    table = res.table.set_index("layer")
    assert table.loc["conv1", "datapath"] == "mac(w8,a9)"  # signed input: one more bit
    assert table.loc["conv2", "datapath"] == "shift(N=2,B=4,a8)"
    assert table.loc["fc", "datapath"] == "mac(w8,a8)"
    assert table.loc["conv2", "multiplies"] == 0 and table.loc["conv1", "multiplies"] > 0
    same = net.run(x, {"*": shift})
    np.testing.assert_array_equal(same.output_raw, net.run(x, shift).output_raw)
    with pytest.raises(ValueError, match=r"no pattern matches layers \['conv2', 'fc'\]"):
        net.run(x, {"conv1": mac})
    with pytest.raises(ValueError, match=r"patterns \['conv9'\] match no layer"):
        net.run(x, {"conv9": mac, "*": shift})
    with pytest.raises(TypeError, match="must map a str pattern to a Datapath"):
        net.run(x, {"*": "shift"})  # type: ignore[dict-item]
    layers = net.run_layers({"conv*": mac, "*": shift})
    assert list(layers.table["datapath"]) == ["mac(w8,a8)", "mac(w8,a8)", "shift(N=2,B=4,a8)"]


# ---------------------------------------------------------------- validation (issue 9/12)
@pytest.mark.parametrize(
    ("shape", "error", "needle"),
    [
        ((0, 3, 3), ValueError, "must be positive"),
        ((2, -3, 3), ValueError, "must be positive"),
        ((2, 3.0, 3), TypeError, "must hold ints"),
        ("abc", TypeError, "non-empty tuple"),
        ((), TypeError, "non-empty tuple"),
        ((3, 3, 3), ValueError, r"input_shape \(3, 3, 3\) does not fit node 'conv1'"),
        ((2, 3), ValueError, "does not fit node 'conv1'"),
    ],
)
def test_network_input_shape_is_validated(rng, shape, error, needle) -> None:
    nodes = two_layer_net(rng).nodes
    with pytest.raises(error, match=needle):
        Network(nodes, input_shape=shape)
    ok = Network(nodes, input_shape=(np.int64(2), 3, 3))
    assert ok.input_shape == (2, 3, 3) and type(ok.input_shape[0]) is int


def test_requant_accepts_numpy_integers() -> None:
    assert Requant(mult_bits=np.int64(8)) == Requant(mult_bits=8)
    assert Requant(power_of_two=np.bool_(True)).power_of_two is True
    with pytest.raises(TypeError, match="mult_bits must be an int"):
        Requant(mult_bits=8.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mult_bits must be in \[1, 31\], got 32"):
        Requant(mult_bits=np.int32(32))


def test_a_tensor_read_by_datapaths_of_different_widths(rng: np.random.Generator) -> None:
    """conv0's output feeds a 4-bit shift-add layer and an 8-bit MAC layer: the MAC layer's
    input is requantised from the 4-bit tensor (the first reader's format), exactly."""
    c = Conv2d(2, 2, 1)
    nodes = [
        Conv(name="c0", layer=c, weight=rng.standard_normal((2, 2, 1, 1))),
        Relu(name="r0"),
        Conv(name="a", layer=c, weight=rng.standard_normal((2, 2, 1, 1)), inputs=("r0",)),
        Conv(name="b", layer=c, weight=rng.standard_normal((2, 2, 1, 1)), inputs=("r0",)),
        Concat(name="cat", axis=1, inputs=("a", "b")),
    ]
    net = Network(nodes, input_shape=(2, 3, 3))
    x = rng.random((2, 2, 3, 3))
    shift4 = ShiftAddDatapath(act=FixedFormat(4, 0, signed=False))
    mac8 = FixedMacDatapath(acc_bits=40)
    res = net.run(x, {"c0": mac8, "a": shift4, "b": mac8})
    table = res.table.set_index("layer")
    assert table.loc["a", "datapath"] == "shift(N=2,B=4,a4)"
    assert table.loc["b", "datapath"] == "mac(w8,a8)"
    # b requantises its 4-bit input to 8 bits (one multiply per value), then its output
    assert table.loc["b", "requant_mults"] == 2 * 2 * 9 * 2  # its input and its output
    assert np.isfinite(res.output).all()


def test_run_layers_with_a_conv_transpose() -> None:
    rng = np.random.default_rng(5)
    node = ConvTranspose(name="up", weight=rng.standard_normal((3, 2, 2, 2)), stride=(2, 2))
    net = Network([node], input_shape=(3, 4, 4))
    assert net.layer_input_shapes(2) == {"up": (2, 3, 9, 9)}  # zero-inserted, padded by 1
    res = net.run_layers(ShiftAddDatapath(), batch=2)
    assert list(res.table["shape"]) == ["2x8x8"] and res.table["macs"].iloc[0] == 2 * 2 * 64 * 12
