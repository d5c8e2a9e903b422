"""Weight-side preparation kept with immutable weight codes (issue 12): exact, never stale.

The cached path is checked against the golden model on a second input (other exponent range,
other bound), and a writable code mutated between runs is always seen.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftsim.datapath import log_gemm
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.log_gemm import LinearWeights, float32_rows, plan_channels, x_range
from shiftsim.datapath.mac import FixedMacDatapath, MacCode
from shiftsim.datapath.shift_add import ShiftAddDatapath, ShiftWeights
from shiftsim.datapath.weight_cache import immutable, is_immutable, weight_store
from shiftsim.formats import FixedFormat, LogFormat, Overflow
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import LogCode, ShiftCode
from tests.conftest import JIT_DISABLED
from tests.strategies import layer_and_input_shape, log_cases, random_log_code, shift_cases


def assert_same(fast, gold):
    assert fast.y_raw.dtype == gold.y_raw.dtype == np.int64
    assert fast.y_raw.shape == gold.y_raw.shape
    np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
    assert fast.counts == gold.counts


def frozen_log(code):
    return LogCode(immutable(code.exponent), immutable(code.sign), code.format)


# ------------------------------------------------------------------ the store itself


def test_immutable_arrays_cannot_be_made_writable():
    a = immutable(np.arange(6).reshape(2, 3))
    assert is_immutable(a) and is_immutable(a.T) and is_immutable(a[:, 1])
    with pytest.raises(ValueError, match="WRITEABLE"):
        a.flags.writeable = True
    b = np.arange(3)
    b.flags.writeable = False  # read-only but owned: could be made writable again
    assert not is_immutable(b)
    assert not is_immutable(np.arange(3)) and not is_immutable([1, 2])


def test_store_is_kept_only_for_immutable_arrays():
    frozen = immutable(np.arange(3))
    code = MacCode(raw=frozen)
    s1 = weight_store(code, (frozen,), "k")
    s1["x"] = 1
    assert weight_store(code, (frozen,), "k") is s1
    assert weight_store(code, (frozen,), "other") == {}
    other = immutable(np.arange(3))  # same values, another array: a new entry
    assert weight_store(code, (other,), "k") == {}
    writable = MacCode(raw=np.arange(3))
    t1 = weight_store(writable, (writable.raw,), "k")
    t1["x"] = 1
    assert weight_store(writable, (writable.raw,), "k") == {}
    arr = immutable(np.arange(2))  # an ndarray code: weakly referenceable but not hashable
    assert weight_store(arr, (arr,), "k") == {}


def test_prepare_returns_immutable_weight_codes(rng):
    layer = Conv2d(2, 3, 3, padding=1)
    w, x = rng.normal(size=layer.weight_shape), rng.random((1, 2, 5, 5)) * 4
    prep = LogDatapath().prepare(layer, w, x)
    assert is_immutable(prep.code.exponent) and is_immutable(prep.code.sign)
    prep = FixedMacDatapath().prepare(layer, w, x)
    assert is_immutable(prep.code.raw)
    prep = ShiftAddDatapath().prepare(layer, w, x)
    assert is_immutable(prep.code.index)


def test_shift_runs_reuse_the_weight_side(rng):
    layer = Conv2d(2, 3, 3, padding=1)
    dp = ShiftAddDatapath()
    prep = dp.prepare(layer, rng.normal(size=layer.weight_shape), rng.random((1, 2, 5, 5)) * 4)
    op1 = dp.check(layer, prep.code, prep.x_in, None)
    assert isinstance(op1.weights, ShiftWeights)
    op2 = dp.check(layer, prep.code, prep.x_in, None)
    assert op2.weights is op1.weights
    # another datapath or layer never shares it
    assert dp.check(Conv2d(2, 3, 3), prep.code, prep.x_in, None).weights is not op1.weights
    dp2 = ShiftAddDatapath(acc_bits=20)
    assert dp2.check(layer, prep.code, prep.x_in, None).weights is not op1.weights
    # a writable code: derived afresh on every run
    code = ShiftCode(np.array(prep.code.index), prep.code.scale, 2, 4)
    assert dp.check(layer, code, prep.x_in, None).weights is not (
        dp.check(layer, code, prep.x_in, None).weights
    )


def test_shift_weights_by_hand():
    index = np.array([[1, 0], [0, 0], [-3, 2]], np.int8).reshape(3, 1, 1, 1, 2)
    weights = ShiftWeights(index)
    assert weights.nnz.tolist() == [1, 0, 2] and weights.n_zero == 3
    assert weights.flat.tolist() == [[1, 0], [0, 0], [-3, 2]]
    assert weights.step_major().tolist() == [[1, 0], [0, 0], [-3, 2]]  # one channel, one tap
    index = np.arange(12, dtype=np.int8).reshape(1, 2, 1, 3, 2)  # (co, c, kh, kw, n)
    # step-major: (n, kh, kw, c); value = c*6 + kw*2 + n
    want = [c * 6 + kw * 2 + n for n in range(2) for kw in range(3) for c in range(2)]
    assert ShiftWeights(index).step_major().tolist() == [want]


def test_log_runs_reuse_the_weight_side(rng):
    layer = Conv2d(2, 3, 3, padding=1)
    dp = LogDatapath()
    prep = dp.prepare(layer, rng.normal(size=layer.weight_shape), rng.random((1, 2, 5, 5)) * 4)
    op1 = dp.check(layer, prep.code, prep.x_in, None)
    dp.run_functional(layer, op1)
    op2 = dp.check(layer, prep.code, prep.x_in, None)
    assert op2.weight_store is op1.weight_store
    assert isinstance(op2.weight_store["linear"], LinearWeights)
    # another datapath or layer never shares it
    other = dp.check(Conv2d(2, 3, 3, padding=0), prep.code, prep.x_in, None).weight_store
    assert other is not op1.weight_store and "linear" not in other
    dp2 = LogDatapath(acc_frac_bits=15)
    assert dp2.check(layer, prep.code, prep.x_in, None).weight_store is not op1.weight_store


# ------------------------------------------------------------------ never stale, always exact


@st.composite
def two_inputs(draw, accumulate):
    """A log case plus a second input of another exponent range (other bounds, other a_lo)."""
    case = draw(log_cases(accumulate=accumulate))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    act = case.x_code.format
    x2 = random_log_code(rng, case.x_code.exponent.shape, act, draw(st.sampled_from([0, 0.5])))
    lo = draw(st.integers(act.e_min, act.e_max))
    x2 = LogCode(np.clip(x2.exponent, lo, act.e_max), x2.sign, act)
    return case, x2


@settings(max_examples=60 if not JIT_DISABLED else 15)
@given(data=two_inputs(accumulate="linear"))
def test_cached_log_weights_equal_golden_on_every_input(data):
    case, x2 = data
    dp = LogDatapath(**case.options)
    w = frozen_log(case.w_code)
    for x in (case.x_code, x2, case.x_code):
        fast = dp.run(case.layer, w, x, case.bias_raw)
        gold = dp.run(case.layer, case.w_code, x, case.bias_raw, level="golden")
        assert_same(fast, gold)


@pytest.mark.parametrize("base", [2, "sqrt2"])
def test_a_mutated_writable_log_code_is_seen(base):
    fmt = LogFormat(3, 0, base=base, signed=True)
    act = LogFormat(2, 2, base=2, signed=False)
    dp = LogDatapath(act=act, weight=fmt, acc_frac_bits=8)
    w = LogCode(np.full((1, 2), -1, np.int64), np.ones((1, 2), np.int8), fmt)
    x = LogCode(np.zeros((1, 2), np.int64), np.ones((1, 2), np.int8), act)
    first = dp.run(Linear(2, 1), w, x).y_raw.copy()
    w.exponent[0, 1] = -3
    w.sign[0, 0] = -1
    again = dp.run(Linear(2, 1), w, x)
    assert_same(again, dp.run(Linear(2, 1), w, x, level="golden"))
    assert not np.array_equal(first, again.y_raw)


def test_a_mutated_writable_mac_code_is_seen():
    dp = FixedMacDatapath(weight=FixedFormat(4, 0), act=FixedFormat(4, 0), acc_bits=12)
    w = np.array([[3, -2]], dtype=np.int64)
    x = np.array([[5, 5]], dtype=np.int64)
    code = MacCode(raw=w)
    assert dp.run(Linear(2, 1), code, x).y_raw.tolist() == [[5]]
    w[0, 1] = 4
    assert dp.run(Linear(2, 1), code, x).y_raw.tolist() == [[35]]  # by hand


def test_a_mutated_writable_shift_code_is_seen():
    dp = ShiftAddDatapath(n_codebooks=1, bits=3, act=FixedFormat(6, 0, signed=False))
    index = np.array([[1, 2]], np.int8).reshape(1, 2, 1)
    code = ShiftCode(index, np.float64(1.0), 1, 3)
    x = np.array([[20, 20]], np.int64)
    assert dp.run(Linear(2, 1), code, x).y_raw.tolist() == [[30]]  # 20 + (20 >> 1)
    index[0, 1, 0] = -3
    assert dp.run(Linear(2, 1), code, x).y_raw.tolist() == [[15]]  # 20 - (20 >> 2), by hand
    index[0, 0, 0] = 0
    again = dp.run(Linear(2, 1), code, x)
    assert again.y_raw.tolist() == [[-5]] and again.counts.zero_selects == 1


@settings(max_examples=60 if not JIT_DISABLED else 15)
@given(case=shift_cases(), data=st.data())
def test_cached_shift_weights_equal_golden_on_every_input(case, data):
    dp = ShiftAddDatapath(
        n_codebooks=case.n_codebooks, bits=case.bits, act=case.act,
        shift_frac_bits=case.shift_frac_bits, shift_rounding=case.shift_rounding,
        acc_bits=case.acc_bits, overflow=case.overflow,
    )  # fmt: skip
    frozen = ShiftCode(immutable(case.index), np.float64(1.0), case.n_codebooks, case.bits)
    writable = ShiftCode(case.index, np.float64(1.0), case.n_codebooks, case.bits)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    act = case.act
    x2 = rng.integers(act.min_raw, act.max_raw + 1, size=case.x_raw.shape) >> int(
        rng.integers(0, act.bits)
    )  # another range: another bound, maybe another path
    for x in (case.x_raw, x2, case.x_raw):
        fast = dp.run(case.layer, frozen, x, case.bias_raw)
        gold = dp.run(case.layer, writable, x, case.bias_raw, level="golden")
        assert_same(fast, gold)


@st.composite
def mac_two_inputs(draw):
    layer, x_shape = draw(layer_and_input_shape(max_channels=3, max_size=5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w_bits, x_bits = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    acc_bits = draw(st.integers(8, 40))
    w = rng.integers(-(1 << (w_bits - 1)), 1 << (w_bits - 1), size=layer.weight_shape)
    xs = [rng.integers(0, 1 << x_bits, size=x_shape) >> int(rng.integers(0, x_bits)) for _ in "ab"]
    overflow = draw(st.sampled_from([Overflow.WRAP, Overflow.SAT]))
    dp = FixedMacDatapath(weight=FixedFormat(w_bits, 0), act=FixedFormat(x_bits, 0, signed=False),
                          acc_bits=acc_bits, overflow=overflow)  # fmt: skip
    return layer, dp, w.astype(np.int64), xs


@settings(max_examples=60 if not JIT_DISABLED else 15)
@given(data=mac_two_inputs())
def test_cached_mac_weights_equal_golden_on_every_input(data):
    layer, dp, w, xs = data
    code = MacCode(raw=immutable(w), scale=1.0)
    for x in (*xs, xs[0]):
        fast = dp.run(layer, code, x)
        gold = dp.run(layer, w, x, level="golden")
        assert_same(fast, gold)


# ------------------------------------------------------------------ the float32 bound


def binary_weights(target, shift):
    """Exponents of the powers of two summing to ``target``, each times ``2**shift``."""
    return [i + shift for i in range(target.bit_length()) if target >> i & 1]


@pytest.mark.parametrize(
    ("target", "shift", "f32"),
    [
        ((1 << 24) - 1, 0, True),  # 24 terms, every partial sum below 2**24
        (1 << 24, 0, True),  # one term: on the bound
        ((1 << 24) + 1, 0, False),  # 2**24 + 1 is no float32: float64
        ((1 << 24) + 1, 5, False),  # the same in units of 2**5
        ((1 << 24) - 1, 5, True),  # multiples of 2**5 up to (2**24 - 1) * 2**5: float32
        ((1 << 25) - 2, 0, True),  # all terms even: 2**24 - 1 in units of 2
        ((1 << 25) - 1, 0, False),
    ],
)
def test_log_linear_float32_bound(target, shift, f32):
    # x = 1 everywhere, w = 2**(e - 60), F = 60: the sum is target * 2**shift, by hand
    exps = binary_weights(target, shift)
    n = len(exps)
    weight = LogFormat(7, 0, base=2, signed=True)
    act = LogFormat(1, 1, base=2, signed=False)  # the one code 1
    w = LogCode(np.array([exps], np.int64) - 60, np.ones((1, n), np.int8), weight)
    x = LogCode(np.zeros((1, n), np.int64), np.ones((1, n), np.int8), act)
    dp = LogDatapath(act=act, weight=weight, acc_bits=62, acc_frac_bits=60)
    op = dp.check(Linear(n, 1), w, x, None)
    weights = LinearWeights(op.w_exp, op.w_sign, 1, 60, 1)
    xr = x_range(op.x_exp, op.x_sign, 1)
    safe, total = plan_channels(weights, xr, np.zeros(1, np.int64), 62)
    assert safe.tolist() == [True] and total == [target << shift]
    rows = weights.products(0, 0)
    assert rows.q.tolist() == [min(exps)]
    assert float32_rows(rows, total, 0).tolist() == [f32]
    for level in ("functional", "golden"):
        assert dp.run(Linear(n, 1), w, x, level=level).y_raw.tolist() == [[target << shift]]


@pytest.mark.parametrize(
    ("target", "t", "n_low"),
    [
        ((1 << 24) + 1, 1, 1),  # 2**24 in float32 (units of 2), the 1 beside it
        ((1 << 25) + 3, 2, 2),  # 2**25 in units of 4, the 2 and the 1 beside it
        ((1 << 24) - 1, 0, 0),  # float32 as it is: nothing beside
    ],
)
def test_log_linear_split_rows(target, t, n_low, monkeypatch):
    # every row in float32 above its threshold t, the weights below it added in float64
    monkeypatch.setattr(log_gemm, "SPLIT_MAX_FRACTION", 1.0)
    exps = binary_weights(target, 0)
    n = len(exps)
    weight = LogFormat(7, 0, base=2, signed=True)
    act = LogFormat(1, 1, base=2, signed=False)
    w = LogCode(np.array([exps], np.int64) - 60, np.ones((1, n), np.int8), weight)
    x = LogCode(np.zeros((1, n), np.int64), np.ones((1, n), np.int8), act)
    dp = LogDatapath(act=act, weight=weight, acc_bits=62, acc_frac_bits=60)
    op = dp.check(Linear(n, 1), w, x, None)
    split = LinearWeights(op.w_exp, op.w_sign, 1, 60, 1).products(0, 0).split
    assert split is not None
    assert split.t.tolist() == [t] and len(split.rows) == n_low
    assert dp.run(Linear(n, 1), w, x).y_raw.tolist() == [[target]]  # by hand


@settings(max_examples=150 if not JIT_DISABLED else 20)
@given(
    data=two_inputs(accumulate="linear"),
    fraction=st.sampled_from([0.0, 1.0]),
    bound=st.sampled_from([1 << 24, 1 << 5, 1 << 2, 1]),
)
def test_every_gemm_path_equals_golden(data, fraction, bound):
    # small random layers rarely leave float32: a smaller float32 bound (more conservative,
    # so still exact) sends rows to float64, to the float32/float64 mix and to the split,
    # taken whenever the spread allows it (1.0) or only with nothing beside (0.0)
    case, x2 = data
    dp = LogDatapath(**case.options)
    w = frozen_log(case.w_code)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(log_gemm, "SPLIT_MAX_FRACTION", fraction)
        mp.setattr(log_gemm, "FLOAT32_EXACT", bound)
        fast = [dp.run(case.layer, w, x, case.bias_raw) for x in (case.x_code, x2)]
    for x, f in zip((case.x_code, x2), fast):
        assert_same(f, dp.run(case.layer, case.w_code, x, case.bias_raw, level="golden"))
