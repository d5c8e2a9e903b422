"""Whole networks: requantisation arithmetic, integer pooling, chained and per-layer runs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.formats import FixedFormat
from shiftsim.layers import Conv2d, Linear
from shiftsim.models.digits import digits_network, digits_test_split, load_digits_split
from shiftsim.models.train_digits import accuracy, train
from shiftsim.network import (
    Network,
    Node,
    Requant,
    conv_float,
    fixed_multiplier,
)
from shiftsim.network.requant import rescale as _rescale
from tests.strategies import int_op as _int_op


# ---------------------------------------------------------------- requantisation arithmetic
@pytest.mark.parametrize(
    ("m", "bits", "mult", "shift"),
    [
        (0.1, 8, 205, 11),  # 0.1 * 2**11 = 204.8 -> 205
        (0.5, 8, 128, 8),
        (1.0, 4, 8, 3),
        (3.0, 4, 12, 2),
        (0.99999, 4, 8, 3),  # mantissa rounds up to 1.0: carried into the shift
        (1e-3, 16, 33554, 25),  # 1e-3 * 2**25 = 33554.43
    ],
)
def test_fixed_multiplier_hand_checked(m: float, bits: int, mult: int, shift: int) -> None:
    got_m, got_s = fixed_multiplier(m, Requant(mult_bits=bits))
    assert (int(got_m), int(got_s)) == (mult, shift)


@pytest.mark.parametrize(("m", "shift"), [(0.1, 3), (0.2, 2), (1.0, 0), (5.0, -2), (0.75, 0)])
def test_fixed_multiplier_power_of_two(m: float, shift: int) -> None:
    got_m, got_s = fixed_multiplier(m, Requant(power_of_two=True))
    assert (int(got_m), int(got_s)) == (1, shift)


@given(st.floats(1e-9, 1e6), st.integers(2, 31))
def test_fixed_multiplier_accuracy(m: float, bits: int) -> None:
    mult, sh = fixed_multiplier(m, Requant(mult_bits=bits))
    assert 1 << (bits - 1) <= int(mult) < 1 << bits
    approx = int(mult) * 2.0 ** -int(sh)
    assert abs(approx - m) <= m * 2.0 ** -(bits - 1)


def test_fixed_multiplier_rejects_bad_factors() -> None:
    with pytest.raises(ValueError, match="positive and finite"):
        fixed_multiplier(0.0)
    with pytest.raises(ValueError, match="mult_bits must be in"):
        Requant(mult_bits=0)
    with pytest.raises(TypeError, match="power_of_two"):
        Requant(power_of_two=1)  # type: ignore[arg-type]


@given(
    st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=8),
    st.integers(1, 2**15),
    st.integers(-4, 70),
)
def test_rescale_matches_python_integers(values: list[int], mult: int, sh: int) -> None:
    raw = np.array(values, dtype=np.int64)
    got = _rescale(raw, np.array([mult]), np.array([sh]), (1,))
    if sh <= 0:
        want = [v * mult << -sh for v in values]
    else:
        want = [(v * mult + (1 << (sh - 1))) >> sh for v in values]  # Python ints: exact floor
    np.testing.assert_array_equal(got, np.array(want, dtype=np.int64))
    assert got.dtype == np.int64


def test_rescale_hand_checked_half_up() -> None:
    raw = np.array([5, -5, 6, -6, 7, -7], dtype=np.int64)  # x * 1 / 4
    got = _rescale(raw, np.array([1]), np.array([2]), (1,))
    # 1.25 -> 1, -1.25 -> -1, 1.5 -> 2, -1.5 -> -1 (half up), 1.75 -> 2, -1.75 -> -2
    np.testing.assert_array_equal(got, [1, -1, 2, -1, 2, -2])


def test_rescale_refuses_int64_overflow() -> None:
    with pytest.raises(ValueError, match="overflows int64"):
        _rescale(np.array([1 << 50]), np.array([1 << 15]), np.array([1]), (1,))


# ---------------------------------------------------------------- integer pooling
def test_integer_pooling_hand_checked() -> None:
    raw = np.array([[1, 2, 0, 0], [3, 4, 1, 0], [9, 9, -3, -3], [9, 8, -3, -2]], dtype=np.int64)
    raw = raw.reshape(1, 1, 4, 4)
    mx = _int_op(Node(name="p", op="maxpool", kernel_size=2), raw)
    np.testing.assert_array_equal(mx, [[[[4, 1], [9, -2]]]])
    av = _int_op(Node(name="p", op="avgpool", kernel_size=2), raw)
    # sums 10, 1, 35, -11 over 4: 2.5 -> 3, 0.25 -> 0, 8.75 -> 9, -2.75 -> -3
    np.testing.assert_array_equal(av, [[[[3, 0], [9, -3]]]])
    gap = _int_op(Node(name="g", op="global_avgpool"), raw)
    np.testing.assert_array_equal(gap, [[[[2]]]])  # 35 / 16 = 2.1875 -> 2
    assert gap.dtype == np.int64
    st2 = _int_op(Node(name="p", op="maxpool", kernel_size=2, stride=1), raw)
    assert st2.shape == (1, 1, 3, 3)


# ---------------------------------------------------------------- float reference
def test_conv_float_matches_a_literal_loop(rng: np.random.Generator) -> None:
    layer = Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    w = rng.standard_normal(layer.weight_shape)
    x = rng.standard_normal((2, 4, 5, 6))
    b = rng.standard_normal(6)
    got = conv_float(layer, w, x, b)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2)))
    want = np.zeros(layer.output_shape(x.shape))
    for n in range(2):
        for o in range(6):
            g = o // 3
            for i in range(want.shape[2]):
                for j in range(want.shape[3]):
                    acc = b[o]
                    for c in range(2):
                        for u in range(3):
                            for v in range(2):
                                acc += w[o, c, u, v] * xp[n, g * 2 + c, 2 * i + u, j + 2 * v]
                    want[n, o, i, j] = acc
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    lin = Linear(5, 3)
    wl, xl = rng.standard_normal((3, 5)), rng.standard_normal((4, 5))
    np.testing.assert_allclose(conv_float(lin, wl, xl), xl @ wl.T, rtol=1e-12)


# ---------------------------------------------------------------- chained runs
def small_net(rng: np.random.Generator) -> Network:
    conv = Conv2d(2, 3, 3, padding=1)
    return Network(
        [
            Node(
                name="c1",
                op="conv",
                layer=conv,
                weight=rng.standard_normal(conv.weight_shape),
                bias=rng.standard_normal(3) * 0.1,
            ),
            Node(name="r1", op="relu"),
            Node(name="p1", op="avgpool", kernel_size=2),
            Node(name="f", op="flatten"),
            Node(name="fc", op="conv", layer=Linear(12, 4), weight=rng.standard_normal((4, 12))),
        ],
        input_shape=(2, 4, 4),
        name="small",
    )


@pytest.mark.parametrize("power_of_two", [False, True])
def test_chained_run_is_the_layers_plus_integer_requantisation(
    rng: np.random.Generator, power_of_two: bool
) -> None:
    """Rebuild the chain by hand: single-layer runs and Python-int requantisation."""
    net = small_net(rng)
    dp = ShiftAddDatapath(n_codebooks=2, bits=4)
    x = rng.random((3, 2, 4, 4))
    requant = Requant(mult_bits=12, power_of_two=power_of_two)
    res = net.run(x, dp, requant=requant)
    act = dp.act
    ref = net.forward_float(x)
    s_in = float(x.max()) / 255
    x_raw = np.rint(x / s_in).astype(np.int64)
    c1, fc = net.nodes[0], net.nodes[4]
    p1 = dp.prepare(c1.layer, c1.weight, x_raw.astype(float), c1.bias / s_in)
    np.testing.assert_array_equal(p1.x_in, x_raw)
    r1 = dp.run(c1.layer, p1.code, p1.x_in, p1.bias_raw)
    s1 = float(np.abs(ref["c1"]).max()) / 255  # peak of the conv output (ReLU fused)
    m = float(r1.scale) * s_in / s1
    if power_of_two:
        mult, sh = 1, -round(np.log2(m))
    else:
        e = int(np.floor(np.log2(m))) + 1
        mult, sh = round(m * 2.0 ** (12 - e)), 12 - e
    a1 = [
        min(max(((int(v) * mult) + (1 << (sh - 1))) >> sh, 0), act.max_raw)
        for v in r1.y_raw.ravel()
    ]
    a1 = np.array(a1, dtype=np.int64).reshape(r1.y_raw.shape)
    pooled = a1.reshape(3, 3, 2, 2, 2, 2).sum(axis=(3, 5))
    pooled = (pooled + 2) // 4
    flat = pooled.reshape(3, 12)
    p2 = dp.prepare(fc.layer, fc.weight, flat.astype(float))
    r2 = dp.run(fc.layer, p2.code, p2.x_in)
    np.testing.assert_array_equal(res.output_raw, r2.y_raw)
    assert res.output_raw.dtype == np.int64
    np.testing.assert_allclose(res.output, r2.y * s1, rtol=1e-12)
    assert list(res.table["layer"]) == ["c1", "r1", "p1", "f", "fc"]
    assert list(res.table["macs"]) == [3 * 3 * 16 * 18, 0, 0, 0, 3 * 4 * 12]
    assert res.totals.selects == int(res.table["selects"].sum())
    assert res.totals.selects == 2 * (3 * 3 * 16 * 18 + 3 * 4 * 12)  # N * MACs
    assert res.table["requant_mults"].iloc[0] == (0 if power_of_two else a1.size)


def test_golden_level_agrees_with_functional(rng: np.random.Generator) -> None:
    net = small_net(rng)
    x = rng.random((2, 2, 4, 4))
    dp = ShiftAddDatapath(n_codebooks=2, bits=3, acc_bits=12)
    a = net.run(x, dp)
    b = net.run(x, dp, level="golden")
    np.testing.assert_array_equal(a.output_raw, b.output_raw)
    assert a.totals == b.totals


def test_residual_add(rng: np.random.Generator) -> None:
    conv = Conv2d(2, 2, 3, padding=1)
    net = Network(
        [
            Node(name="a", op="conv", layer=conv, weight=rng.standard_normal(conv.weight_shape)),
            Node(name="ra", op="relu"),
            Node(name="b", op="conv", layer=conv, weight=rng.standard_normal(conv.weight_shape)),
            Node(name="sum", op="add", inputs=("ra", "b")),
            Node(name="out", op="relu"),
        ],
        input_shape=(2, 5, 5),
    )
    x = rng.random((2, 2, 5, 5))
    res = net.run(x, ShiftAddDatapath(n_codebooks=3, bits=4))
    assert res.output.shape == (2, 2, 5, 5)
    assert res.output_raw.dtype == np.int64
    assert res.output_raw.min() >= 0
    assert 250 <= res.output_raw.max() <= 255  # the add's output scale maps its peak to 255
    # 8-bit activations, 9-bit signed residual branch: well above 20 dB against float
    assert (res.table["sqnr_db"] > 20).all()


# ---------------------------------------------------------------- the digits CNN
def test_float_network_matches_the_training_code() -> None:
    net = digits_network()
    x, y = digits_test_split()
    params = {n.name + ".weight": n.weight for n in net.conv_nodes}
    params |= {n.name + ".bias": n.bias for n in net.conv_nodes}
    with np.load(__import__("shiftsim.models.digits").models.digits.weights_path()) as data:
        shipped_acc = float(data["float_test_accuracy"])
    assert accuracy(params, x, y) == shipped_acc  # the training script's own forward pass
    res = net.run(x[:60], ShiftAddDatapath(n_codebooks=2, bits=4))
    assert res.float_top1(y[:60]) == float(
        np.mean(net.forward_float(x[:60])["fc"].argmax(1) == y[:60])
    )
    assert shipped_acc > 0.95


def test_digits_accuracy_n2_b4_close_to_float() -> None:
    net = digits_network()
    x, y = digits_test_split()
    res = net.run(x, ShiftAddDatapath(n_codebooks=2, bits=4))
    assert res.top1(y) >= res.float_top1(y) - 0.02
    assert res.agreement() > 0.97
    assert np.isfinite(res.table["sqnr_db"]).all()


def test_retraining_reproduces_the_shipped_weights() -> None:
    x_tr, y_tr, x_te, y_te = load_digits_split()
    shipped, (x_s, y_s) = digits_network(), digits_test_split()
    np.testing.assert_array_equal(np.rint(x_te * 16), np.rint(x_s * 16))
    np.testing.assert_array_equal(y_te, y_s)
    params = train(x_tr, y_tr)
    for node in shipped.conv_nodes:
        np.testing.assert_allclose(params[node.name + ".weight"], node.weight, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(params[node.name + ".bias"], node.bias, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- topology networks
def test_topology_network_per_layer(tmp_path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,\nL1,6,6,3,3,3,4,1,\nDW,5,5,3,3,4,1,2,\nFC,1,1,1,1,8,5,1,\n"
    )
    net = Network.from_topology(csv, seed=3)
    assert net.input_shape is None
    w1 = net.conv_nodes[0].weight
    # He-normal: the first draws of default_rng(3), scaled by sqrt(2 / 27)
    np.testing.assert_array_equal(
        w1, np.random.default_rng(3).standard_normal((4, 3, 3, 3)) * np.sqrt(2 / 27)
    )
    res = net.run_layers(ShiftAddDatapath(), batch=2, seed=1)
    assert list(res.table["layer"]) == ["L1", "DW", "FC"]
    assert list(res.table["shape"]) == ["4x4x4", "4x2x2", "5x1x1"]
    assert list(res.table["macs"]) == [2 * 4 * 16 * 27, 2 * 4 * 4 * 9, 2 * 5 * 8]
    assert (res.table["sqnr_db"] > 15).all()
    weights = tmp_path / "w.npz"
    net.save_weights(weights)
    again = Network.from_topology(csv, weights=weights, seed=99)
    for a, b in zip(net.conv_nodes, again.conv_nodes):
        np.testing.assert_array_equal(a.weight, b.weight)
    with pytest.raises(ValueError, match="independent layers: use run_layers"):
        net.run(np.zeros((1, 3, 6, 6)), ShiftAddDatapath())


def test_chained_network_run_layers(rng: np.random.Generator) -> None:
    res = small_net(rng).run_layers(ShiftAddDatapath(), seed=0)
    assert list(res.table["layer"]) == ["c1", "fc"]
    assert list(res.table["shape"]) == ["3x4x4", "4"]


# ---------------------------------------------------------------- bad input
def test_bad_networks_and_inputs(rng: np.random.Generator, tmp_path) -> None:
    conv = Conv2d(1, 1, 1)
    ok = dict(name="c", op="conv", layer=conv, weight=np.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="op must be one of"):
        Node(name="x", op="frobnicate")
    with pytest.raises(ValueError, match=r"c\.weight must have shape"):
        Node(**{**ok, "weight": np.ones((2, 1, 1, 1))})
    with pytest.raises(ValueError, match="add takes 2 inputs"):
        Node(name="a", op="add", inputs=("c",))
    with pytest.raises(ValueError, match="duplicate node name"):
        Network([Node(**ok), Node(**ok)], input_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="not an earlier node"):
        Network([Node(name="r", op="relu", inputs=("c",)), Node(**ok)], input_shape=(1, 2, 2))
    net = Network([Node(**ok)], input_shape=(1, 2, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(B, \(1, 2, 2\)\)"):
        net.run(np.zeros((1, 1, 3, 3)), ShiftAddDatapath())
    with pytest.raises(ValueError, match="x must be finite"):
        net.run(np.full((1, 1, 2, 2), np.nan), ShiftAddDatapath())
    with pytest.raises(TypeError, match="datapath must be a Datapath"):
        net.run(np.zeros((1, 1, 2, 2)), "shift")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level must be one of"):
        net.run(np.zeros((1, 1, 2, 2)), ShiftAddDatapath(), level="rtl")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="weights: cannot read"):
        Network.from_topology("alexnet", weights=bad)
    assert isinstance(FixedFormat(8), FixedFormat)


def test_weight_gain_for_log_datapaths() -> None:
    from shiftsim.datapath.log_domain import LogDatapath
    from shiftsim.network import weight_gain

    log = LogDatapath()  # weights LogFormat(4, fsr=0): magnitudes below 1
    assert weight_gain(log, np.array([0.3, -0.1])) == 2.0  # 0.6 rounds to the top code 2**-1
    assert weight_gain(log, np.array([-3.0])) == 0.125  # 0.375 too (0.75 would clip to 0.5)
    assert weight_gain(log, np.zeros(3)) == 1.0
    assert weight_gain(ShiftAddDatapath(), np.array([3.0])) == 1.0  # scales by itself


def test_digits_on_the_log_datapath() -> None:
    from shiftsim.datapath.log_domain import LogDatapath

    x, y = digits_test_split()
    res = digits_network().run(x[:40], LogDatapath())
    assert res.output_raw.dtype == np.int64
    assert res.top1(y[:40]) > 0.5  # 3-bit log activations: far from float, far from chance


def test_cycle_level_and_hardware_counts(rng: np.random.Generator) -> None:
    from shiftsim.hardware import Hardware

    net = small_net(rng)
    x = rng.random((2, 2, 4, 4))
    dp = ShiftAddDatapath()
    functional = net.run(x, dp)
    cycle = net.run(x, dp, level="cycle", hardware=Hardware.edge())
    np.testing.assert_array_equal(cycle.output_raw, functional.output_raw)
    assert cycle.totals.adds == functional.totals.adds
    convs = cycle.table[cycle.table["op"] == "conv"]
    assert (convs["cycles"] > 0).all()
    assert cycle.totals.cycles == int(cycle.table["cycles"].sum())
    assert cycle.totals.energy_pj > 0
    assert functional.totals.cycles == 0  # no hardware: arithmetic counts only
    analytic = net.run(x, dp, hardware=Hardware.edge())
    assert list(analytic.table["cycles"]) == list(cycle.table["cycles"])  # cycle == analytic
    assert analytic.totals == cycle.totals
