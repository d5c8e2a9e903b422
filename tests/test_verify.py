"""Float verification (SPEC §6): float64 reference, ErrorStats, simulate, truncation bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shiftsim.counts import Counts
from shiftsim.datapath.base import LayerResult
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.formats import FixedFormat, Overflow, Rounding
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import ShiftCode
from shiftsim.reference.float_ref import conv_float
from shiftsim.verify import ErrorStats, output_lsb, simulate

# ------------------------------------------------------------------ float reference


def test_conv_float_hand_example():
    # 1 channel 3x3 input, 2x2 kernel [[1, 0], [0, -1]], stride 1, no padding:
    # y[i, j] = x[i, j] - x[i+1, j+1]; x = 1..9 -> every output is -4; bias 0.5
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    y = conv_float(Conv2d(1, 1, 2), w, x, bias=[0.5])
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), -3.5))


def test_conv_float_padding_stride_dilation_groups_against_loops(rng):
    layer = Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    w = rng.normal(size=layer.weight_shape)
    x = rng.normal(size=(2, 4, 5, 6))
    bias = rng.normal(size=6)
    y = conv_float(layer, w, x, bias)
    ho, wo = layer.output_hw(5, 6)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2)))
    expected = np.zeros((2, 6, ho, wo))
    for b in range(2):
        for co in range(6):
            g = co // 3
            for i in range(ho):
                for j in range(wo):
                    acc = bias[co]
                    for c in range(2):
                        for kh in range(3):
                            for kw in range(2):
                                acc += w[co, c, kh, kw] * xp[b, g * 2 + c, i * 2 + kh, j + 2 * kw]
                    expected[b, co, i, j] = acc
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)  # floats: tolerance ok


def test_conv_float_linear():
    y = conv_float(Linear(3, 2), [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]], [[1.0, 1.0, 2.0]])
    np.testing.assert_array_equal(y, [[9.0, 0.0]])


@pytest.mark.parametrize(
    ("w", "x", "bias", "error", "words"),
    [
        (np.zeros((2, 3)), np.zeros((1, 3)), None, ValueError, "w must have shape"),
        (np.zeros((3, 2)), np.zeros((1, 4)), None, ValueError, "x must have shape"),
        (np.zeros((3, 2)), np.zeros((1, 2)), np.zeros(2), ValueError, "bias must have shape"),
        (np.zeros((3, 2)), np.full((1, 2), np.nan), None, ValueError, "x must be finite"),
    ],
)
def test_conv_float_bad_input(w, x, bias, error, words):
    with pytest.raises(error, match=words):
        conv_float(Linear(2, 3), w, x, bias)


# ------------------------------------------------------------------ ErrorStats


def test_error_stats_hand_example():
    # 4 outputs, 2 fractional bits (LSB 0.25), weight scale 2 -> output LSB 0.5.
    # y_raw = [2, 3, -1, 0] -> y = [1.0, 1.5, -0.5, 0.0]
    # ref_dequant = [1.0, 1.25, -0.5, 0.25] -> in LSBs [2, 2.5, -1, 0.5]:
    #   |diff| = [0, 0.5, 0, 0.5]: max 0.5, bit-exact 2/4
    # ref_float = [1.0, 1.5, 0.5, 0.0] -> err = [0, 0, -1, 0]: rmse = sqrt(1/4) = 0.5,
    #   sqnr = 10 log10((1 + 2.25 + 0.25) / 1)
    res = LayerResult(np.array([[2, 3, -1, 0]]), FixedFormat(16, 2), 2.0, Counts())
    s = ErrorStats.from_result(
        res, np.array([[1.0, 1.5, 0.5, 0.0]]), np.array([[1.0, 1.25, -0.5, 0.25]])
    )
    assert s.max_abs_error_lsb == 0.5
    assert s.bit_exact_fraction == 0.5
    assert s.rmse == 0.5
    assert s.sqnr_db == pytest.approx(10 * math.log10(3.5))
    assert s.n_outputs == 4


def test_error_stats_exact_output_has_infinite_sqnr():
    res = LayerResult(np.array([[4, -8]]), FixedFormat(16, 2), 1.0, Counts())
    ref = np.array([[1.0, -2.0]])
    s = ErrorStats.from_result(res, ref, ref)
    assert (s.max_abs_error_lsb, s.bit_exact_fraction, s.rmse) == (0.0, 1.0, 0.0)
    assert s.sqnr_db == math.inf


def test_error_stats_per_channel_scale():
    # channel scales [1, 4]: LSBs [1, 4]; ref_dequant [3, 8] -> [3, 2] LSBs; y_raw [3, 3]
    res = LayerResult(np.array([[3, 3]]), FixedFormat(16, 0), np.array([1.0, 4.0]), Counts())
    s = ErrorStats.from_result(res, np.array([[3.0, 12.0]]), np.array([[3.0, 8.0]]))
    assert s.max_abs_error_lsb == 1.0
    assert s.bit_exact_fraction == 0.5


# ------------------------------------------------------------------ simulate


def test_simulate_hand_example():
    # w = [0.5, -0.25] -> wmax 0.5, normalized [1, -0.5]: N=2, B=4 indices [1, 0], [-2, 0].
    # x = [3, 8] (8-bit unsigned, exact). Hardware: 3 - (8 >> 1) = -1 LSB; LSB = 0.5 (wmax)
    # -> y = -0.5 = 0.5*3 - 0.25*8 exactly. Bias 1.0 -> 2 accumulator units.
    sim = simulate(Linear(2, 1), [[0.5, -0.25]], [[3.0, 8.0]], ShiftAddDatapath(), bias=[1.0])
    assert sim.prepared.code.index.tolist() == [[[1, 0], [-2, 0]]]
    assert sim.prepared.bias_raw.tolist() == [2]
    np.testing.assert_array_equal(sim.result.y_raw, [[1]])
    np.testing.assert_array_equal(sim.result.y, [[0.5]])
    np.testing.assert_array_equal(sim.ref_float, [[0.5]])
    np.testing.assert_array_equal(sim.ref_dequant, [[0.5]])
    assert sim.stats.bit_exact_fraction == 1.0
    assert sim.counts.selects == 4


def test_simulate_counts_clipped_bias():
    # acc_bits=8: bias 1000 -> 1000 accumulator units, saturated to 127
    dp = ShiftAddDatapath(acc_bits=8)
    sim = simulate(Linear(1, 1), [[1.0]], [[0.0]], dp, bias=[1000.0])
    assert sim.prepared.bias_raw.tolist() == [127]
    assert sim.prepared.clipped == 1


def test_simulate_counts_clipped_activations():
    dp = ShiftAddDatapath(act=FixedFormat(4, 0, signed=False))
    sim = simulate(Linear(3, 1), [[1.0, 1.0, 1.0]], [[20.0, 3.0, -2.0]], dp)
    assert sim.prepared.clipped == 2  # 20 -> 15, -2 -> 0
    np.testing.assert_array_equal(sim.prepared.x_deq, [[15.0, 3.0, 0.0]])
    np.testing.assert_array_equal(sim.result.y_raw, [[18]])


def test_simulate_golden_level_and_per_channel_scale(rng):
    layer = Conv2d(3, 4, 3, padding=1)
    w = rng.normal(size=layer.weight_shape) * np.array([1, 10, 0.1, 3])[:, None, None, None]
    x = rng.uniform(0, 4, size=(1, 3, 5, 5))
    dp = ShiftAddDatapath(act=FixedFormat(8, 6, signed=False), weight_axis=0)
    gold = simulate(layer, w, x, dp, level="golden")
    fast = simulate(layer, w, x, dp)
    np.testing.assert_array_equal(gold.result.y_raw, fast.result.y_raw)
    assert gold.stats == fast.stats
    assert fast.prepared.code.scale.shape == (4,)
    assert fast.stats.sqnr_db > 20  # N=2, B=4 keeps about 4-5 bits per weight


def test_simulate_rejects_bad_arguments():
    with pytest.raises(TypeError, match="datapath must be a Datapath"):
        simulate(Linear(2, 1), [[1.0, 1.0]], [[1.0, 1.0]], "shift")
    with pytest.raises(TypeError, match="layer must be a Conv2d or Linear"):
        simulate(None, [[1.0, 1.0]], [[1.0, 1.0]], ShiftAddDatapath())
    with pytest.raises(ValueError, match="w must be finite"):
        simulate(Linear(2, 1), [[np.inf, 1.0]], [[1.0, 1.0]], ShiftAddDatapath())
    with pytest.raises(ValueError, match="w must have shape"):
        simulate(Linear(2, 1), [[1.0, 1.0, 1.0]], [[1.0, 1.0]], ShiftAddDatapath())


# ------------------------------------------------------------------ truncation bound (SPEC §6)


def test_truncation_bound_hand_example():
    # N=2, B=3 (half=3): index j of codebook n selects shift |j| + n - 2.
    # channel 0: [1, 0] -> s=0 (exact); [-3, 2] -> s=2 and s=2: TRN 2 * (1 - 1/4) = 1.5
    # channel 1: [0, 0], [2, -1] -> s=1, s=1: TRN 2 * 0.5 = 1.0
    code = ShiftCode(
        index=np.array([[[1, 0], [-3, 2]], [[0, 0], [2, -1]]], dtype=np.int8),
        scale=np.float64(1.0),
        n_codebooks=2,
        bits=3,
    )
    trn = ShiftAddDatapath(n_codebooks=2, bits=3)
    np.testing.assert_array_equal(trn.truncation_bound(code), [1.5, 1.0])
    rnd = ShiftAddDatapath(n_codebooks=2, bits=3, shift_rounding=Rounding.RND)
    np.testing.assert_array_equal(rnd.truncation_bound(code), [1.0, 1.0])
    # f = 1 keeps one extra bit: s=1 becomes exact, s=2 errs by at most 1 - 2**(1-2)
    f1 = ShiftAddDatapath(n_codebooks=2, bits=3, shift_frac_bits=1)
    np.testing.assert_array_equal(f1.truncation_bound(code), [1.0, 0.0])


def test_truncation_bound_is_reached_by_trn():
    # one term, index 3 (N=1, B=3): s = 2; x = 7: 7 >> 2 = 1 vs 7/4 = 1.75: error 0.75 = bound
    sim = simulate(Linear(1, 1), [[0.25]], [[7.0]], ShiftAddDatapath(n_codebooks=1, bits=3))
    assert sim.prepared.code.index.tolist() == [[[1]]]  # 0.25 is wmax itself: index 1, s=0
    layer = Linear(1, 2)
    sim = simulate(layer, [[1.0], [0.25]], [[7.0]], ShiftAddDatapath(n_codebooks=1, bits=3))
    bound = ShiftAddDatapath(n_codebooks=1, bits=3).truncation_bound(sim.prepared.code)
    np.testing.assert_array_equal(bound, [0.0, 0.75])
    assert sim.stats.max_abs_error_lsb == 0.75


@st.composite
def float_layers(draw):
    n_cb = draw(st.integers(1, 3))
    bits = draw(st.integers(2, 5))
    f = draw(st.integers(0, 6))
    rounding = draw(st.sampled_from([Rounding.TRN, Rounding.RND]))
    act = FixedFormat(draw(st.integers(2, 10)), draw(st.integers(0, 4)), signed=draw(st.booleans()))
    if draw(st.booleans()):
        layer = Linear(draw(st.integers(1, 8)), draw(st.integers(1, 3)))
        x_shape = (draw(st.integers(1, 2)), layer.in_features)
    else:
        layer = Conv2d(
            draw(st.integers(1, 3)),
            draw(st.integers(1, 3)),
            draw(st.integers(1, 3)),
            stride=draw(st.integers(1, 2)),
            padding=draw(st.integers(0, 1)),
        )
        k = layer.kernel_size[0]
        side = draw(st.integers(k, k + 3))
        x_shape = (1, layer.in_channels, side, side)
    seed = draw(st.integers(0, 2**32 - 1))
    dp = ShiftAddDatapath(
        n_codebooks=n_cb, bits=bits, act=act, shift_frac_bits=f, shift_rounding=rounding,
        weight_axis=draw(st.sampled_from([None, 0])),
    )  # fmt: skip
    return layer, x_shape, seed, dp


@given(float_layers())
def test_truncation_bound_holds(case):
    layer, x_shape, seed, dp = case
    rng = np.random.default_rng(seed)
    w = rng.normal(size=layer.weight_shape)
    x = rng.uniform(-1, 1, size=x_shape) * dp.act.max_raw * dp.act.lsb
    sim = simulate(layer, w, x, dp, bias=rng.normal(size=layer.weight_shape[0]))
    assert sim.result.counts.overflows == 0  # 32-bit accumulator, small layers
    bound = dp.truncation_bound(sim.prepared.code)
    bound = bound.reshape((1, -1) + (1,) * (sim.result.y_raw.ndim - 2))
    lsb = output_lsb(sim.result, sim.result.y_raw.ndim)
    lsb = np.where(lsb > 0, lsb, 1.0)
    err = np.abs(sim.result.y_raw - sim.ref_dequant / lsb)
    # the float64 reference rounds a little (wmax is any float): allow 1e-6 LSB for that
    assert np.all(err <= bound + 1e-6)
    if dp.shift_frac_bits >= dp.max_shift:  # every shift exact: bit-exact output
        assert sim.stats.max_abs_error_lsb <= 1e-6


def test_enough_fraction_bits_make_the_output_bit_exact(rng):
    # f >= S: the shift unit never drops a bit, so the datapath equals exact arithmetic
    layer = Conv2d(3, 2, 3)
    dp = ShiftAddDatapath(shift_frac_bits=7)
    w = rng.normal(size=layer.weight_shape)
    x = rng.uniform(0, 255, size=(1, 3, 5, 5))
    sim = simulate(layer, w, x, dp)
    np.testing.assert_array_equal(dp.truncation_bound(sim.prepared.code), [0.0, 0.0])
    assert sim.stats.bit_exact_fraction == 1.0
    assert sim.stats.max_abs_error_lsb < 1e-6  # the float64 reference's own rounding
    # and with f = 0 the same layer does truncate
    sim0 = simulate(layer, w, x, ShiftAddDatapath())
    assert sim0.stats.bit_exact_fraction < 1.0
    assert Overflow.WRAP == ShiftAddDatapath().overflow
