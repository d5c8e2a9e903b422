"""Fixed-point MAC datapath (SPEC §5.3): hand-worked examples, golden == functional, bad input."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shiftsim.counts import Counts
from shiftsim.datapath.mac import FixedMacDatapath, MacCode
from shiftsim.formats import FixedFormat, LogFormat, Overflow
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import quantize_linear
from tests.levels import LEVELS, arithmetic
from tests.strategies import mac_cases

W4 = FixedFormat(4, 0)  # -8..7
A4 = FixedFormat(4, 0, signed=False)  # 0..15


@pytest.fixture(params=LEVELS)
def level(request):
    """The hook (:mod:`tests.levels`): every hand-worked table at every level."""
    return request.param


# --- hand-worked examples ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overflow", "y", "n_over"),
    [
        # steps kw = 0, 1: 8 -> -8 (wrap), -8 - 8 = -16 -> 0 (wrap): exact modulo 16
        (Overflow.WRAP, 0, 2),
        # 8 -> 7 (sat), 7 - 8 = -1: the step order is the contract
        (Overflow.SAT, -1, 1),
    ],
)
def test_register_overflows_per_step(level, overflow, y, n_over):
    dp = FixedMacDatapath(weight=W4, act=A4, acc_bits=4, overflow=overflow)
    x = np.array([[[[4, 4]]]])
    w = np.array([[[[2, -2]]]])
    r = dp.run(Conv2d(1, 1, (1, 2)), w, x, level=level)
    np.testing.assert_array_equal(r.y_raw, np.array([[[[y]]]], dtype=np.int64))
    assert r.y_raw.dtype == np.int64
    assert arithmetic(r.counts) == Counts(multiplies=2, adds=2, acc_updates=2, overflows=n_over)


def test_adder_tree_over_channels_is_exact(level):
    # two channels per step: step 0 = 2*4 + (-1)*4 = 4 (8 alone would overflow 4 bits, but the
    # tree is exact and only the register wraps); step 1 = -8 + 4 = -4; y = 0, no overflow
    dp = FixedMacDatapath(weight=W4, act=A4, acc_bits=4, overflow=Overflow.SAT)
    x = np.array([[[[4, 4]], [[4, 4]]]])
    w = np.array([[[[2, -2]], [[-1, 1]]]])
    r = dp.run(Conv2d(2, 1, (1, 2)), w, x, level=level)
    np.testing.assert_array_equal(r.y_raw, [[[[0]]]])
    assert arithmetic(r.counts) == Counts(multiplies=4, adds=4, acc_updates=2)


def test_bias_padding_and_formats_by_hand(level):
    # w = 0.75, -0.5 (FixedFormat(4, 2): raw 3, -2); x = 1.5, 2 (FixedFormat(4, 1): raw 3, 4)
    # 1x2 kernel, padding (0, 1) on a 1x2 input -> 3 outputs; output frac bits 2 + 1 = 3
    # out 0: pad, x0 -> -2*3 = -6;  out 1: x0, x1 -> 3*3 - 2*4 = 1;  out 2: x1, pad -> 12
    # bias 5 (5/8) added to each
    dp = FixedMacDatapath(weight=FixedFormat(4, 2), act=FixedFormat(4, 1, signed=False))
    r = dp.run(Conv2d(1, 1, (1, 2), padding=(0, 1)), np.array([[[[3, -2]]]]),
               np.array([[[[3, 4]]]]), np.array([5]), level=level)  # fmt: skip
    np.testing.assert_array_equal(r.y_raw, [[[[-1, 6, 17]]]])
    assert r.out_format == FixedFormat(32, 3)
    assert r.y.tolist() == [[[[-0.125, 0.75, 2.125]]]]
    # every position of the 3 outputs x 2 taps is a multiply, padding included
    assert arithmetic(r.counts) == Counts(multiplies=6, adds=6, acc_updates=6)


# --- golden == functional ----------------------------------------------------------------


@given(mac_cases())
def test_golden_equals_functional(case):
    dp = FixedMacDatapath(**case.options)
    fast = dp.run(case.layer, case.w_raw, case.x_raw, case.bias_raw)
    slow = dp.run(case.layer, case.w_raw, case.x_raw, case.bias_raw, level="golden")
    np.testing.assert_array_equal(fast.y_raw, slow.y_raw)
    assert fast.y_raw.dtype == slow.y_raw.dtype == np.int64
    assert fast.y_raw.shape == slow.y_raw.shape
    assert fast.counts == slow.counts


def test_matches_integer_convolution(rng):
    # no overflow possible with 62 bits: y_raw is the exact integer convolution
    dp = FixedMacDatapath(acc_bits=62)
    layer = Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2)
    w = rng.integers(-128, 128, size=layer.weight_shape)
    x = rng.integers(0, 256, size=(2, 4, 9, 9))
    r = dp.run(layer, w, x, np.arange(6) - 3)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros(r.y_raw.shape, dtype=np.int64)
    for co in range(6):
        g = co // 3
        for oh in range(r.y_raw.shape[2]):
            for ow in range(r.y_raw.shape[3]):
                patch = xp[:, 2 * g : 2 * g + 2, 2 * oh : 2 * oh + 5 : 2, 2 * ow : 2 * ow + 5 : 2]
                ref[:, co, oh, ow] = np.einsum("bchw,chw->b", patch, w[co]) + co - 3
    np.testing.assert_array_equal(r.y_raw, ref)


def test_linear_code_operands():
    # quantize_linear(x, bits=3, fsr=0): step 1/8, raw in 0..8, frac_bits 3
    x_code = quantize_linear([[0.5, 0.25]], bits=3, fsr=0)
    w_code = quantize_linear([[0.75, -1.0]], bits=2, fsr=0, signed=True)  # raw 3, -4; frac 2
    dp = FixedMacDatapath(weight=FixedFormat(4, 2), act=FixedFormat(4, 3, signed=False))
    r = dp.run(Linear(2, 1), w_code, x_code)
    np.testing.assert_array_equal(r.y_raw, [[3 * 4 - 4 * 2]])
    assert r.y.tolist() == [[0.75 * 0.5 - 0.25]]
    with pytest.raises(ValueError, match="frac_bits"):
        FixedMacDatapath(act=FixedFormat(4, 2, signed=False)).run(Linear(2, 1), w_code, x_code)


def test_prepare_and_simulate(rng):
    from shiftsim.verify import simulate

    dp = FixedMacDatapath()
    layer = Conv2d(3, 4, 3, padding=1)
    w = rng.normal(0, 0.1, size=layer.weight_shape)
    x = np.maximum(rng.normal(0, 60, size=(1, 3, 6, 6)), 0)
    bias = rng.normal(0, 1, size=4)
    prep = dp.prepare(layer, w, x, bias)
    wmax = np.max(np.abs(w))
    assert prep.code.scale == wmax
    np.testing.assert_array_equal(prep.code.raw, np.clip(np.floor(w / wmax * 128 + 0.5), -128, 127))
    # saturated: x above 255.5, and w == wmax (1.0 -> 128 > 127; -wmax -> -128 fits)
    assert prep.clipped == np.count_nonzero(np.floor(x + 0.5) > 255) + np.count_nonzero(w == wmax)
    sim = simulate(layer, w, x, dp, bias=bias)
    # no overflow: the arithmetic is exact; only the float64 reference rounds (wmax scale)
    assert sim.stats.max_abs_error_lsb < 1e-6
    assert sim.stats.sqnr_db > 30


def test_prepare_zero_weights():
    prep = FixedMacDatapath().prepare(Linear(2, 1), np.zeros((1, 2)), np.ones((1, 2)))
    assert prep.code.scale == 1.0
    np.testing.assert_array_equal(prep.code.raw, [[0, 0]])


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"acc_bits": 63}, ValueError, "acc_bits"),
        ({"acc_bits": True}, TypeError, "acc_bits"),
        ({"weight": 8}, TypeError, "weight"),
        ({"act": None}, TypeError, "act"),
        ({"overflow": 1}, TypeError, "overflow"),
    ],
)
def test_bad_configuration(options, error, match):
    with pytest.raises(error, match=match):
        FixedMacDatapath(**options)


def test_bad_operands():
    dp = FixedMacDatapath(weight=W4, act=A4, acc_bits=8)
    layer = Conv2d(2, 1, 2)
    w = np.ones((1, 2, 2, 2), dtype=np.int64)
    x = np.ones((1, 2, 3, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="code holds raw value 8"):
        dp.run(layer, w * 8, x)
    with pytest.raises(ValueError, match="x_raw holds raw value -1"):
        dp.run(layer, w, -x)
    with pytest.raises(TypeError, match="x_raw must be an integer array"):
        dp.run(layer, w, x * 1.0)
    with pytest.raises(TypeError, match="code must be a raw integer array"):
        dp.run(layer, "w", x)
    with pytest.raises(TypeError, match="x_raw must be a raw integer array or a LinearCode"):
        dp.run(layer, w, MacCode(raw=x))
    with pytest.raises(ValueError, match="code must have shape"):
        dp.run(layer, w[:, :1], x)
    with pytest.raises(ValueError, match="x_raw must have shape"):
        dp.run(layer, w, x[:, :1])
    with pytest.raises(ValueError, match="bias_raw holds raw value 128"):
        dp.run(layer, w, x, np.array([128]))
    with pytest.raises(ValueError, match="overflows int64"):
        big = FixedMacDatapath(weight=FixedFormat(40), act=FixedFormat(40))
        big.run(layer, w << 38, x << 38)
    with pytest.raises(ValueError, match="w must have shape"):
        dp.prepare(layer, np.zeros((2, 2)), np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="bias must have shape"):
        dp.prepare(layer, np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 3, 3)), np.zeros(3))


# --- log-quantised activations (act_log) ------------------------------------------------------


def _logquant_oracle(x: float, bits: int, fsr: int, frac: int) -> Fraction:
    """SPEC §4's LogQuant (base 2) decided with exact rationals: nearest e with x**2 in
    [2**(2e-1), 2**(2e+1)), flushed at e <= fsr - 2**bits, clipped to fsr - 1; then 0 when
    below the LSB 2**-frac of the activation format."""
    if x == 0:
        return Fraction(0)
    sq = Fraction(abs(x)) ** 2
    e = 0
    while sq >= Fraction(2) ** (2 * e + 1):
        e += 1
    while sq < Fraction(2) ** (2 * e - 1):
        e -= 1
    if e <= fsr - 2**bits:
        return Fraction(0)
    e = min(e, fsr - 1)
    if e < -frac:
        return Fraction(0)
    return (1 if x > 0 else -1) * Fraction(2) ** e


@given(
    bits=st.integers(1, 4),
    fsr=st.integers(-2, 6),
    x=st.lists(
        st.floats(-300, 300, allow_nan=False, allow_infinity=False), min_size=1, max_size=12
    ),
    signed=st.booleans(),
    below=st.integers(-3, 2),
)
def test_log_activations_are_logquant_values(bits, fsr, x, signed, below):
    log = LogFormat(bits, fsr, signed=False)
    e_min = fsr - 2**bits + 1
    frac = max(1 - fsr, -e_min - below)  # LSB on, above (codes flush) or below the smallest
    act = FixedFormat(max(1, fsr) + frac + int(signed), frac, signed=signed)
    dp = FixedMacDatapath(weight=FixedFormat(8, 7), act=act, act_log=log)
    xs = [v if signed else abs(v) for v in x]
    prep = dp.prepare(Linear(len(xs), 1), np.ones((1, len(xs))), np.array([xs]))
    want = [_logquant_oracle(v, bits, fsr, frac) for v in xs]
    assert [Fraction(v) for v in prep.x_deq.ravel().tolist()] == want
    assert prep.x_in.ravel().tolist() == [int(v * 2**frac) for v in want]  # exact in act
    clipped_x = sum(Fraction(v) ** 2 >= 2 * Fraction(4) ** (fsr - 1) for v in xs)  # >= 2**(fsr-.5)
    # every weight is the peak: w / max|w| = 1 saturates to 127/128 in FixedFormat(8, 7)
    assert prep.clipped == clipped_x + len(xs)
    # the arithmetic is the MAC's: golden == functional on the log-valued operands
    g = dp.run(Linear(len(xs), 1), prep.code, prep.x_in, level="golden")
    f = dp.run(Linear(len(xs), 1), prep.code, prep.x_in, level="functional")
    np.testing.assert_array_equal(g.y_raw, f.y_raw)
    assert arithmetic(g.counts) == arithmetic(f.counts)


@pytest.mark.parametrize(
    ("act", "act_log", "error", "match"),
    [
        (FixedFormat(12, 8), "3-bit log", TypeError, "act_log must be a LogFormat or None"),
        (FixedFormat(12, 8), LogFormat(3, 4, base="sqrt2"), ValueError, "act_log must be base 2"),
        (FixedFormat(6, 3), LogFormat(3, 4), ValueError, r"cannot hold act_log's largest code"),
        (FixedFormat(8, -4), LogFormat(3, 4), ValueError, r"largest code 2\*\*3"),
    ],
)
def test_bad_log_activations(act, act_log, error, match):
    with pytest.raises(error, match=match):
        FixedMacDatapath(act=act, act_log=act_log)
