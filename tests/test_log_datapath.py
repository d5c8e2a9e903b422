"""Log-domain datapath (SPEC §5.2): hand-worked examples, golden == functional, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from shiftsim.counts import Counts
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.formats import FixedFormat, LogFormat, Overflow
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import LogCode, quantize_log
from tests.levels import LEVELS, arithmetic
from tests.strategies import log_cases, random_log_code

ACT = LogFormat(3, 4, base=2, signed=False)  # exponents -3..3
WEIGHT = LogFormat(3, 0, base=2, signed=True)  # exponents -7..-1
WEIGHT_SQRT2 = LogFormat(3, 0, base="sqrt2", signed=True)  # exponents -7..-1, in half octaves


def code(exponent, sign, fmt):
    return LogCode(
        exponent=np.array(exponent, dtype=np.int64), sign=np.array(sign, dtype=np.int8), format=fmt
    )


def run_linear(dp, x_exp, w_exp, w_sign, level, bias=None, x_sign=None):
    """One output of a Linear layer: x codes (1, n), weight codes (1, n)."""
    n = len(x_exp)
    x = code([x_exp], [x_sign or [1] * n], dp.act)
    w = code([w_exp], [w_sign], dp.weight)
    b = None if bias is None else np.array([bias])
    return dp.run(Linear(n, 1), w, x, b, level=level)


def check_result(result, y_raw, **counts):
    np.testing.assert_array_equal(result.y_raw, np.array([[y_raw]], dtype=np.int64))
    assert result.y_raw.dtype == np.int64
    assert arithmetic(result.counts) == Counts(**counts)


@pytest.fixture(params=LEVELS)
def level(request):
    """The hook (:mod:`tests.levels`): every hand-worked table at every level."""
    return request.param


# --- hand-worked examples ------------------------------------------------------------------


def test_linear_base2_by_hand(level):
    # x = 8, 1, 1/8 (e 3, 0, -3); w = 0.5, -0.25, 0.125 (e -1, -2, -3); F = 2
    # p = 2, -2, -6 -> terms +2**4 = 16, -2**0 = -1, 2**-4 floored to 0 (p + F < 0)
    dp = LogDatapath(act=ACT, weight=WEIGHT, acc_frac_bits=2)
    r = run_linear(dp, [3, 0, -3], [-1, -2, -3], [1, -1, 1], level)
    check_result(r, 15, exponent_adds=3, shift_ops=3, adds=3, acc_updates=3)
    assert r.y.tolist() == [[3.75]]
    assert r.out_format == FixedFormat(32, 2)


def test_linear_sqrt2_split_by_hand(level):
    # act base 2 counts double in half octaves: x e 2, 1, 0 -> 4, 2, 0 (x = 4, 2, 1)
    # w (base sqrt2) e -1, -3, -2 -> p = 3, -1, -2; F = 3
    # odd p = 3: 2**((3-1)/2 + 3) = 16 -> acc_odd; odd p = -1: 2**(-1 + 3) = 4 -> acc_odd = 20
    # even p = -2: 2**(-1 + 3) = 4 -> acc = 4
    # c = floor(sqrt(2) * 2**2) / 2**2 = 5/4; acc = 4 + floor(20 * 5 / 4) = 4 + 25 = 29
    dp = LogDatapath(act=ACT, weight=WEIGHT_SQRT2, acc_frac_bits=3, sqrt2_frac_bits=2)
    r = run_linear(dp, [2, 1, 0], [-1, -3, -2], [1, 1, 1], level)
    check_result(r, 29, exponent_adds=3, shift_ops=3, adds=4, acc_updates=4, multiplies=1)


def test_linear_sqrt2_shift_add_by_hand(level):
    # same terms; odd ones scaled by 1 + 1/4 + 1/8 + 1/32, each partial floored:
    # 16 -> 16 + 4 + 2 + 0 = 22; 4 -> 4 + 1 + 0 + 0 = 5; even 4; acc = 31
    dp = LogDatapath(act=ACT, weight=WEIGHT_SQRT2, acc_frac_bits=3, sqrt2_mode="shift_add")
    r = run_linear(dp, [2, 1, 0], [-1, -3, -2], [1, 1, 1], level)
    # shifts: 3 exponent shifts + 2 odd terms * 3 nonzero shifts; adds: 3 + 2 * 3
    check_result(r, 31, exponent_adds=3, shift_ops=9, adds=9, acc_updates=3)


# Four positive terms with p = 0, -1, -2, -3 (values 1, 0.5, 0.25, 0.125; sum 1.875), F = 4:
# x = 2, 1, 1, 0.25 (e 1, 0, 0, -2) and w = 0.5, 0.5, 0.25, 0.5 (e -1, -1, -2, -1).
FOUR_X, FOUR_W = [1, 0, 0, -2], [-1, -1, -2, -1]


def test_log_floor_g2_by_hand(level):
    # g = 2 (S in quarters). S = 0 (p = 0)
    # P = -4: d = |floor(0/4) - (-1)| = 1, S = max(0, -4) + (4 >> 1) = 2
    # P = -8: d = |0 - (-2)| = 2, S = 2 + (4 >> 2) = 3
    # P = -12: d = 3, S = 3 + (4 >> 3) = 3
    # lin: I = 0, phi = 3/4 -> 1.75 * 2**4 = 28
    dp = LogDatapath(act=ACT, weight=WEIGHT, accumulate="log", log_frac_bits=2, acc_frac_bits=4)
    r = run_linear(dp, FOUR_X, FOUR_W, [1, 1, 1, 1], level)
    # 3 merges: 3 compares, 3 shifts (+1 conversion), 3 adds (+1 final subtraction)
    check_result(r, 28, exponent_adds=4, compares=3, shift_ops=4, adds=4, acc_updates=4,
                 log_to_linear=1)  # fmt: skip


def test_log_floor_g3_by_hand(level):
    # g = 3 (eighths): S = 0; P = -8: d = 1, +4 -> 4; P = -16: d = 2, +2 -> 6;
    # P = -24: d = 3, +1 -> 7; lin: 1 + 7/8 = 1.875 -> 30 (exact here)
    dp = LogDatapath(act=ACT, weight=WEIGHT, accumulate="log", log_frac_bits=3, acc_frac_bits=4)
    r = run_linear(dp, FOUR_X, FOUR_W, [1, 1, 1, 1], level)
    check_result(r, 30, exponent_adds=4, compares=3, shift_ops=4, adds=4, acc_updates=4,
                 log_to_linear=1)  # fmt: skip


def test_log_mitchell_g3_by_hand(level):
    # g = 3: S = 0
    # P = -8:  D = 8,  i = 1, phi = 0 -> (16 - 0) >> 2 = 4, S = 4
    # P = -16: D = 20, i = 2, phi = 4 -> (16 - 4) >> 3 = 1, S = 5
    # P = -24: D = 29, i = 3, phi = 5 -> (16 - 5) >> 4 = 0, S = 5
    # lin: 1 + 5/8 = 1.625 -> 26
    dp = LogDatapath(
        act=ACT, weight=WEIGHT, accumulate="log", log_add="mitchell", log_frac_bits=3,
        acc_frac_bits=4,
    )  # fmt: skip
    r = run_linear(dp, FOUR_X, FOUR_W, [1, 1, 1, 1], level)
    # mitchell merges are 2 adds each: 6 + 1 final
    check_result(r, 26, exponent_adds=4, compares=3, shift_ops=4, adds=7, acc_updates=4,
                 log_to_linear=1)  # fmt: skip


def test_log_mitchell_signs_bias_negative_exponent_by_hand(level):
    # x = 1, 1, 1; w = +0.5, +0.25, -0.125: p = -1, -2, -3; g = 2, F = 3, bias 5 (5/8)
    # pos: S = -4; P = -8: D = 4, i = 1, phi = 0 -> 8 >> 2 = 2, S = max(-4, -8) + 2 = -2
    # neg: S = -12
    # lin(-2): I = -1, phi = 2/4 -> 0.5 * 1.5 * 8 = 6; lin(-12): I = -3 -> 1
    # y = 5 + 6 - 1 = 10 (1.25, exact)
    dp = LogDatapath(
        act=ACT, weight=WEIGHT, accumulate="log", log_add="mitchell", log_frac_bits=2,
        acc_frac_bits=3,
    )  # fmt: skip
    r = run_linear(dp, [0, 0, 0], [-1, -2, -3], [1, 1, -1], level, bias=5)
    # 1 merge (2 adds) + subtraction + bias add; 2 conversions
    check_result(r, 10, exponent_adds=3, compares=1, shift_ops=3, adds=4, acc_updates=3,
                 log_to_linear=2)  # fmt: skip
    assert r.y.tolist() == [[1.25]]


def test_log_equal_terms_double_exactly(level):
    # two equal terms: floor d = 0 adds 2**g; mitchell D = 0 adds (2**(g+1)) >> 1 = 2**g
    for log_add in ("floor", "mitchell"):
        dp = LogDatapath(act=ACT, weight=WEIGHT, accumulate="log", log_add=log_add,
                         log_frac_bits=3, acc_frac_bits=0)  # fmt: skip
        r = run_linear(dp, [3, 3], [-1, -1], [1, 1], level)  # 4 + 4
        np.testing.assert_array_equal(r.y_raw, [[8]])


def test_log_sqrt2_floor_by_hand(level):
    # act base 2 x = 2, 1 (e 1, 0 -> 2, 0 in half octaves); w base sqrt2 e -1, -3: p = 1, -3
    # g = 2: P = p * 2**(g-1) = 2, -6. S = 2; d = |floor(2/4) - floor(-6/4)| = |0 + 2| = 2,
    # S = 2 + (4 >> 2) = 3; lin: 1.75 * 2**2 = 7 (exact 2**0.5 + 2**-1.5 = 1.768)
    dp = LogDatapath(act=ACT, weight=WEIGHT_SQRT2, accumulate="log", log_frac_bits=2,
                     acc_frac_bits=2)  # fmt: skip
    r = run_linear(dp, [1, 0], [-1, -3], [1, 1], level)
    check_result(r, 7, exponent_adds=2, compares=1, shift_ops=2, adds=2, acc_updates=2,
                 log_to_linear=1)  # fmt: skip


def test_empty_log_registers_give_bias(level):
    dp = LogDatapath(act=ACT, weight=WEIGHT, accumulate="log")
    r = run_linear(dp, [0, 1], [-1, -2], [0, 0], level, bias=-7)
    check_result(r, -7, adds=2)


# The largest term of a configuration: act e = 59 only, weight e = 0 only, p = 59.
HUGE_ACT = LogFormat(1, 60, base=2, signed=False)
HUGE_WEIGHT = LogFormat(1, 1, base=2, signed=True)


@pytest.mark.parametrize(("overflow", "y", "n_over"), [(Overflow.WRAP, 0, 1), (Overflow.SAT, 1, 2)])
def test_linear_terms_at_the_int64_limit(level, overflow, y, n_over):
    # F = 2: each term is 2**61 in a 62-bit register (max 2**61 - 1)
    # WRAP: 2**61 -> -2**61 (overflow), then -2**61 + 2**61 = 0
    # SAT: 2**61 - 1 (overflow), then 2**61 - 1 + 2**61 -> 2**61 - 1 (overflow)
    dp = LogDatapath(act=HUGE_ACT, weight=HUGE_WEIGHT, acc_bits=62, acc_frac_bits=2,
                     overflow=overflow)  # fmt: skip
    r = run_linear(dp, [59, 59], [0, 0], [1, 1], level)
    np.testing.assert_array_equal(r.y_raw, [[y * ((1 << 61) - 1)]])
    assert r.counts.overflows == n_over


@pytest.mark.parametrize(("overflow", "y"), [(Overflow.WRAP, 0), (Overflow.SAT, 127)])
def test_log_conversion_beyond_int64(level, overflow, y):
    # four terms p = 59, g = 1: S = 118, +2 (d = 0) -> 120, +1 (d = 1) -> 121, +1 -> 122
    # lin(122) = 2**(61 + 2) = 2**63 in an 8-bit register: 0 mod 2**8 (WRAP), 127 (SAT)
    dp = LogDatapath(act=HUGE_ACT, weight=HUGE_WEIGHT, accumulate="log", log_frac_bits=1,
                     acc_bits=8, acc_frac_bits=2, overflow=overflow)  # fmt: skip
    r = run_linear(dp, [59] * 4, [0] * 4, [1] * 4, level)
    np.testing.assert_array_equal(r.y_raw, [[y]])
    assert r.counts.overflows == 1


def test_term_beyond_int64_is_rejected():
    with pytest.raises(ValueError, match="acc_frac_bits must be <= 2"):
        LogDatapath(act=HUGE_ACT, weight=HUGE_WEIGHT, acc_frac_bits=3)
    LogDatapath(act=HUGE_ACT, weight=HUGE_WEIGHT, acc_frac_bits=3, accumulate="log")


def test_conv_term_order_with_sat(level):
    # Conv2d 1 -> 1, kernel 2x2 on a 2x2 input: one output, terms in order (kh, kw) =
    # (0, 0), (0, 1), (1, 0), (1, 1). x = [[8, 8], [4, 4]] (e 3, 3, 2, 2);
    # w = [[+0.5, +0.5], [-0.5, -0.5]]; F = 0: terms +4, +4, -2, -2. 4-bit SAT register:
    # 4, 8 -> 7 (overflow), 5, 3. (Negative terms first would give 4: the order is the contract.)
    dp = LogDatapath(act=ACT, weight=WEIGHT, acc_bits=4, acc_frac_bits=0,
                     overflow=Overflow.SAT)  # fmt: skip
    x = code([[[[3, 3], [2, 2]]]], [[[[1, 1], [1, 1]]]], ACT)
    w = code([[[[-1, -1], [-1, -1]]]], [[[[1, 1], [-1, -1]]]], WEIGHT)
    r = dp.run(Conv2d(1, 1, 2), w, x, level=level)
    np.testing.assert_array_equal(r.y_raw, [[[[3]]]])
    assert r.counts.overflows == 1


# --- golden == functional, every mode ----------------------------------------------------


def assert_same(a, b):
    np.testing.assert_array_equal(a.y_raw, b.y_raw)
    assert a.y_raw.dtype == b.y_raw.dtype == np.int64
    assert a.y_raw.shape == b.y_raw.shape
    assert a.counts == b.counts
    assert a.out_format == b.out_format


@given(log_cases(accumulate="linear"))
def test_golden_equals_functional_linear(case):
    dp = LogDatapath(**case.options)
    fast = dp.run(case.layer, case.w_code, case.x_code, case.bias_raw)
    slow = dp.run(case.layer, case.w_code, case.x_code, case.bias_raw, level="golden")
    assert_same(fast, slow)


@given(log_cases(accumulate="log"))
def test_golden_equals_functional_log(case):
    dp = LogDatapath(**case.options)
    fast = dp.run(case.layer, case.w_code, case.x_code, case.bias_raw)
    slow = dp.run(case.layer, case.w_code, case.x_code, case.bias_raw, level="golden")
    assert_same(fast, slow)


MODES = [
    {"accumulate": "linear", "sqrt2_mode": "split", "sqrt2_frac_bits": 3},
    {"accumulate": "linear", "sqrt2_mode": "shift_add"},
    {"accumulate": "log", "log_add": "floor"},
    {"accumulate": "log", "log_add": "mitchell"},
]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(map(str, m.values())))
@pytest.mark.parametrize("base", [2, "sqrt2"])
@pytest.mark.parametrize("overflow", [Overflow.WRAP, Overflow.SAT])
def test_every_activation_code_triple(rng, mode, base, overflow):
    # every (x0, x1, x2) of a signed 2-bit format (7 codes each: 343 rows) against 12 random
    # weight rows, in a 5-bit register that overflows often
    act = LogFormat(2, 1, base=base, signed=True)
    codes = [(0, act.e_min)] + [(s, e) for s in (-1, 1) for e in range(act.e_min, act.e_max + 1)]
    rows = np.array([[a, b, c] for a in codes for b in codes for c in codes])  # (343, 3, 2)
    x = code(rows[:, :, 1], rows[:, :, 0], act)
    w = random_log_code(rng, (12, 3), WEIGHT)
    dp = LogDatapath(act=act, weight=WEIGHT, acc_bits=5, acc_frac_bits=4, log_frac_bits=2,
                     overflow=overflow, **mode)  # fmt: skip
    fast = dp.run(Linear(3, 12), w, x, np.arange(12) % 7 - 3)
    slow = dp.run(Linear(3, 12), w, x, np.arange(12) % 7 - 3, level="golden")
    assert_same(fast, slow)
    assert fast.counts.overflows > 0


def test_counts_by_formula(rng):
    # the module docstring's formulas, computed from the codes with numpy
    layer = Conv2d(4, 6, 3, padding=1, groups=2)
    w = random_log_code(rng, layer.weight_shape, WEIGHT)
    x = random_log_code(rng, (2, 4, 5, 5), ACT)
    cols = np.zeros((2, 2, 2 * 9, 5, 5), dtype=np.int64)  # (B, group, c*kh*kw, H, W) nonzero x
    xp = np.pad(x.sign != 0, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for c in range(4):
        for kh in range(3):
            for kw in range(3):
                cols[:, c // 2, (c % 2) * 9 + kh * 3 + kw] = xp[:, c, kh : kh + 5, kw : kw + 5]
    wnz = (w.sign != 0).reshape(6, 18).astype(np.int64)
    t_nz = sum(int(np.einsum("btij,t->", cols[:, co // 3], wnz[co])) for co in range(6))
    r = LogDatapath(act=ACT, weight=WEIGHT).run(layer, w, x)
    assert r.counts == Counts(exponent_adds=t_nz, shift_ops=t_nz, adds=t_nz, acc_updates=t_nz)
    r = LogDatapath(act=ACT, weight=WEIGHT, accumulate="log").run(layer, w, x)
    c = r.counts
    assert c.exponent_adds == c.acc_updates == t_nz
    assert c.compares == t_nz - c.log_to_linear  # each register's first term is no merge
    assert c.shift_ops == t_nz
    assert c.adds == c.compares + 2 * 6 * 25


def test_linear_equals_conv1x1(rng):
    dp = LogDatapath(act=ACT, weight=WEIGHT, accumulate="log", log_add="mitchell")
    w = random_log_code(rng, (3, 5), WEIGHT)
    x = random_log_code(rng, (4, 5), ACT)
    r = dp.run(Linear(5, 3), w, x)
    w4 = LogCode(exponent=w.exponent[:, :, None, None], sign=w.sign[:, :, None, None],
                 format=WEIGHT)  # fmt: skip
    x4 = LogCode(exponent=x.exponent[:, :, None, None], sign=x.sign[:, :, None, None], format=ACT)
    r4 = dp.run(Conv2d(5, 3, 1), w4, x4)
    np.testing.assert_array_equal(r.y_raw, r4.y_raw[:, :, 0, 0])
    assert r.y_raw.shape == (4, 3)
    assert r.counts == r4.counts


def test_linear_accumulation_is_exact_when_every_term_fits(rng):
    # base 2, F large enough that every term is an integer: y is the exact dequantized sum
    dp = LogDatapath(act=ACT, weight=WEIGHT, acc_frac_bits=10)
    layer = Conv2d(3, 2, 3, stride=2, padding=1)
    w = random_log_code(rng, layer.weight_shape, WEIGHT)
    x = random_log_code(rng, (1, 3, 7, 7), ACT)
    y = dp.run(layer, w, x).y
    wd, xd = w.to_float(), np.pad(x.to_float(), ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros_like(y)
    for co in range(2):
        for oh in range(4):
            for ow in range(4):
                patch = xd[0, :, 2 * oh : 2 * oh + 3, 2 * ow : 2 * ow + 3]
                ref[0, co, oh, ow] = np.sum(patch * wd[co])
    np.testing.assert_array_equal(y, ref)  # exact: sums of powers of two well within 53 bits


# --- prepare ---------------------------------------------------------------------------------


def test_prepare_quantizes_with_the_formats(rng):
    dp = LogDatapath(accumulate="log")
    layer = Conv2d(2, 3, 3)
    w = rng.normal(0, 0.2, size=layer.weight_shape)
    x = np.maximum(rng.normal(0, 40, size=(1, 2, 5, 5)), 0)
    x[0, 0, 0, 0] = 1000.0  # above the largest code 2**6 = 64: clipped
    prep = dp.prepare(layer, w, x, bias=np.array([0.5, -1.0, 2.0]))
    ref_w = quantize_log(w, 4, 0, 2, True)
    np.testing.assert_array_equal(prep.code.exponent, ref_w.exponent)
    np.testing.assert_array_equal(prep.code.sign, ref_w.sign)
    np.testing.assert_array_equal(prep.x_deq, quantize_log(x, 3, 7, signed=False).to_float())
    np.testing.assert_array_equal(prep.bias_raw, [1 << 15, -(1 << 16), 1 << 17])
    # clipped: the values a wider format rounds above the largest exponent (6 for x, -1 for w)
    wide_x = quantize_log(x, 8, 30, signed=False)
    wide_w = quantize_log(w, 8, 30)
    clipped = np.sum((wide_x.sign != 0) & (wide_x.exponent > 6))
    clipped += np.sum((wide_w.sign != 0) & (wide_w.exponent > -1))
    assert prep.clipped == clipped
    assert prep.clipped >= 1
    r = dp.run(layer, prep.code, prep.x_in, prep.bias_raw)
    assert r.y.shape == (1, 3, 3, 3)


def test_simulate_accepts_the_log_datapath(rng):
    from shiftsim.verify import simulate

    layer = Conv2d(4, 2, 3, padding=1)
    w = rng.laplace(0, 0.1, size=layer.weight_shape)
    x = np.maximum(rng.normal(0, 8, size=(1, 4, 6, 6)), 0)
    for dp in (LogDatapath(), LogDatapath(accumulate="log", log_add="mitchell")):
        sim = simulate(layer, w, x, dp)
        assert sim.result.y_raw.shape == (1, 2, 6, 6)
        assert np.isfinite(sim.stats.sqnr_db)
        assert sim.stats.sqnr_db > 10  # a 3-bit log layer is close to the float layer


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"accumulate": "exact"}, ValueError, "accumulate"),
        ({"log_add": "round"}, ValueError, "log_add"),
        ({"sqrt2_mode": "mul"}, ValueError, "sqrt2_mode"),
        ({"acc_bits": 63}, ValueError, "acc_bits"),
        ({"acc_bits": 1.5}, TypeError, "acc_bits"),
        ({"acc_frac_bits": 2000}, ValueError, "acc_frac_bits"),
        ({"log_frac_bits": 31}, ValueError, "log_frac_bits"),
        ({"sqrt2_frac_bits": -1}, ValueError, "sqrt2_frac_bits"),
        ({"overflow": "wrap"}, TypeError, "overflow"),
        ({"act": FixedFormat(8)}, TypeError, "act"),
        ({"sqrt2_shifts": (0, 2, 2)}, ValueError, "sqrt2_shifts"),
        ({"sqrt2_shifts": [0, 2]}, ValueError, "sqrt2_shifts"),
        ({"sqrt2_shifts": (0, 63)}, ValueError, "sqrt2_shifts"),
        ({"weight": WEIGHT_SQRT2, "accumulate": "log", "log_frac_bits": 0}, ValueError,
         "log_frac_bits"),
        ({"weight": WEIGHT_SQRT2, "acc_bits": 60, "sqrt2_frac_bits": 4}, ValueError,
         "sqrt2_frac_bits"),
    ],
)  # fmt: skip
def test_bad_configuration(options, error, match):
    with pytest.raises(error, match=match):
        LogDatapath(**options)


def test_bad_operands(rng):
    dp = LogDatapath(act=ACT, weight=WEIGHT)
    layer = Conv2d(2, 1, 2)
    w = random_log_code(rng, layer.weight_shape, WEIGHT)
    x = random_log_code(rng, (1, 2, 3, 3), ACT)
    with pytest.raises(TypeError, match="w_code must be a LogCode"):
        dp.run(layer, w.exponent, x)
    with pytest.raises(ValueError, match=r"x_code\.format"):
        dp.run(layer, w, LogCode(exponent=x.exponent, sign=x.sign, format=WEIGHT))
    with pytest.raises(ValueError, match="w_code must have shape"):
        dp.run(Conv2d(2, 2, 2), w, x)
    with pytest.raises(ValueError, match="x_code must have shape"):
        dp.run(Conv2d(3, 1, 2), random_log_code(rng, (1, 3, 2, 2), WEIGHT), x)
    with pytest.raises(ValueError, match=r"w_code.exponent holds 0, outside \[-7, -1\]"):
        dp.run(layer, code(np.zeros(layer.weight_shape), np.ones(layer.weight_shape), WEIGHT), x)
    with pytest.raises(ValueError, match=r"x_code\.sign holds -1"):
        dp.run(layer, w, code(x.exponent, -np.ones(x.sign.shape), ACT))
    with pytest.raises(ValueError, match=r"w_code\.sign holds 2"):
        dp.run(layer, code(w.exponent, 2 * np.ones(w.sign.shape), WEIGHT), x)
    with pytest.raises(TypeError, match=r"x_code\.exponent must be an integer array"):
        dp.run(layer, w, LogCode(exponent=x.exponent * 1.0, sign=x.sign, format=ACT))
    with pytest.raises(ValueError, match="bias_raw holds raw value"):
        dp.run(layer, w, x, np.array([1 << 40]))
    with pytest.raises(ValueError, match="bias_raw must have shape"):
        dp.run(layer, w, x, np.array([1, 2]))
    with pytest.raises(ValueError, match="kernel_size"):
        dp.run(Conv2d(2, 1, 4), random_log_code(rng, (1, 2, 4, 4), WEIGHT), x)
    with pytest.raises(ValueError, match="level"):
        dp.run(layer, w, x, level="rtl")
    with pytest.raises(ValueError, match="x must be finite"):
        dp.prepare(layer, np.zeros(layer.weight_shape), np.full((1, 2, 3, 3), np.nan))
    with pytest.raises(ValueError, match="w must have shape"):
        dp.prepare(layer, np.zeros((2, 2)), np.zeros((1, 2, 3, 3)))
