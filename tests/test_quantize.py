"""Quantizers (SPEC §3-4): hand tables, an independent exact model, properties, bad input.

The oracle is ``tests/naive_quantize.py`` (Fractions and Python ints, no shiftsim code). With
``SHIFTSIM_EXHAUSTIVE=1`` the sweeps cover every float32 in [2**-13, 1] (ShiftCNN, N <= 2,
B <= 4) and every float32 significand (log rounding); CI runs samples of them.
"""

from __future__ import annotations

import itertools
import os
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shiftsim.formats import FixedFormat, LogFormat, Rounding
from shiftsim.quantize import (
    ShiftCode,
    _nearest_log_exponent,
    log_from_fixed,
    log_mantissa_thresholds,
    quantize_linear,
    quantize_log,
    quantize_shiftcnn,
    shiftcnn_error_bound,
)
from tests import naive_quantize as naive
from tests.strategies import fixed_formats, float_arrays

FLOATS = (np.float32, np.float64)
EXHAUSTIVE = os.environ.get("SHIFTSIM_EXHAUSTIVE") == "1"

# ---- ShiftCNN: SPEC §3 tables -----------------------------------------------------------------

# (normalized r, N, indices, dequantized value), from SPEC §3 (0.8 with N=1 and 0.2 with N=3
# hand-derived the same way: 0.8 -> 1; 0.2 -> 0.1875 + 2**-6 = 0.203125).
SPEC_TABLE = [
    (0.8, 1, [1], 1.0),
    (0.8, 2, [1, -2], 0.75),
    (0.8, 3, [1, -2, 3], 0.8125),
    (0.2, 2, [3, -4], 0.1875),
    (0.2, 3, [3, -4, 5], 0.203125),
    (0.01, 1, [0], 0.0),
    (0.01, 2, [0, 7], 0.0078125),
    (0.75, 2, [2, 2], 0.75),
    (-0.3, 2, [-3, -4], -0.3125),
    (1.0, 2, [1, 0], 1.0),
    (0.0, 2, [0, 0], 0.0),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("r", "n", "index", "value"), SPEC_TABLE)
def test_spec_examples(dtype, r, n, index, value):
    w = np.array([r, 1.0], dtype=dtype)  # wmax == 1: r is exact
    code = quantize_shiftcnn(w, n_codebooks=n, bits=4)
    assert code.index.dtype == np.int8
    assert code.index.shape == (2, n)
    np.testing.assert_array_equal(code.index[0], np.array(index, dtype=np.int8))
    assert code.to_float()[0] == value
    assert code.scale.shape == ()
    assert code.scale.dtype == np.float64
    assert float(code.scale) == 1.0


def test_spec_example_with_scale():
    w = np.array([1.6, 0.4, -0.6, 2.0])  # normalized: 0.8, 0.2, -0.3, 1.0
    code = quantize_shiftcnn(w, n_codebooks=2, bits=4)
    np.testing.assert_array_equal(code.index, np.array([[1, -2], [3, -4], [-3, -4], [1, 0]]))
    np.testing.assert_array_equal(code.to_float(), np.array([1.5, 0.375, -0.625, 2.0]))


def codebook(n, bits):
    """C_n of SPEC §3, from its definition, as Fractions."""
    half = 2 ** (bits - 1) - 1
    mags = [Fraction(2) ** e for e in range(-n - half + 2, -n + 2)]
    return {Fraction(0)} | set(mags) | {-m for m in mags}


@pytest.mark.parametrize(("n", "bits", "p"), [(2, 4, 17), (3, 4, 19), (1, 4, 15), (1, 2, 3)])
def test_n_values(n, bits, p):
    code = quantize_shiftcnn([1.0], n_codebooks=n, bits=bits)
    assert code.n_values == p
    assert len(set().union(*(codebook(i, bits) for i in range(1, n + 1)))) == p


@pytest.mark.parametrize(("n", "bits"), list(itertools.product(range(1, 5), range(2, 9))))
def test_indices_select_codebook_values(n, bits, rng):
    w = rng.standard_normal(300) * np.exp(rng.uniform(-12, 0, 300))
    code = quantize_shiftcnn(w, n_codebooks=n, bits=bits)
    half = 2 ** (bits - 1) - 1
    assert np.abs(code.index.astype(int)).max() <= half
    shift, sign = code.shifts()
    assert shift.dtype == np.int64 and sign.dtype == np.int8
    assert shift.shape == sign.shape == code.index.shape
    assert shift.max() <= code.max_shift
    assert code.max_shift == half + n - 2
    for row in code.index[:40]:
        for i, j in enumerate(row, start=1):
            value = naive.shiftcnn_value([0] * (i - 1) + [int(j)])
            assert value in codebook(i, bits)


def test_shifts_hand():
    code = ShiftCode(
        index=np.array([[1, -2, 0], [-3, 0, 7]], dtype=np.int8),
        scale=np.float64(2.0),
        n_codebooks=3,
        bits=4,
    )
    shift, sign = code.shifts()
    np.testing.assert_array_equal(shift, np.array([[0, 2, 0], [2, 0, 8]], dtype=np.int64))
    np.testing.assert_array_equal(sign, np.array([[1, -1, 0], [-1, 0, 1]], dtype=np.int8))
    np.testing.assert_array_equal(code.to_float(), np.array([2 * (1 - 0.25), 2 * (-0.25 + 2**-8)]))


# ---- ShiftCNN against the exact model ---------------------------------------------------------


def check_against_naive(w, n, bits):
    code = quantize_shiftcnn(w, n_codebooks=n, bits=bits)
    expect = naive.shiftcnn(w.ravel().tolist(), n, bits, w.dtype)
    np.testing.assert_array_equal(
        code.index.reshape(-1, n), np.array(expect, dtype=np.int8).reshape(-1, n)
    )
    assert float(code.scale) == float(np.abs(w).max())


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("n", "bits"), [(1, 2), (2, 4), (3, 3), (4, 8), (8, 5)])
def test_random_against_naive(dtype, n, bits, rng):
    for _ in range(3):
        w = (rng.standard_normal(150) * np.exp(rng.uniform(-20, 3, 150))).astype(dtype)
        w *= np.exp(rng.uniform(-30, 30))
        check_against_naive(w.astype(dtype), n, bits)


def adversarial(dtype):
    """1-2 ulps around every tie 0.75 * 2**k and power of two 2**k of the normalized range."""
    vals = []
    for k in range(-40, 1):
        for centre in (0.75 * 2.0**k, 1.5 * 2.0**k, 2.0**k):
            c = dtype(centre)
            lo = hi = c
            vals.append(c)
            for _ in range(2):
                lo, hi = np.nextafter(lo, dtype(0)), np.nextafter(hi, dtype(2))
                vals += [lo, hi]
    v = np.array(vals, dtype=dtype)
    return v[np.abs(v) <= 1]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("n", "bits"), [(1, 4), (2, 4), (3, 8), (2, 2)])
def test_adversarial_ties(dtype, n, bits):
    v = adversarial(dtype)
    w = np.concatenate([v, -v, np.array([1.0, 0.0, -0.0], dtype=dtype)])
    check_against_naive(w, n, bits)


@pytest.mark.parametrize("dtype", FLOATS)
def test_adversarial_with_odd_scale(dtype):
    v = adversarial(dtype)
    for scale in (3.3, 1e-30, 0.1):
        w = np.concatenate([v, [1.0]]).astype(dtype) * dtype(scale)
        check_against_naive(w.astype(dtype), 2, 4)


@pytest.mark.parametrize("dtype", FLOATS)
def test_subnormals_and_zeros(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    w = np.array([tiny, 3 * tiny, -2 * tiny, 0.0, -0.0, 7 * tiny], dtype=dtype)
    check_against_naive(w, 3, 4)
    code = quantize_shiftcnn(w, n_codebooks=3, bits=4)
    assert float(code.scale) == float(7 * tiny)
    z = quantize_shiftcnn(np.array([0.0, -0.0], dtype=dtype), n_codebooks=2, bits=3)
    np.testing.assert_array_equal(z.index, np.zeros((2, 2), dtype=np.int8))
    np.testing.assert_array_equal(z.to_float(), np.zeros(2))
    assert float(z.scale) == 0.0


def check_fixed_sweep(w32, n, bits):
    """quantize_shiftcnn against the integer model on float32 values in [2**-13, 1]."""
    w = np.concatenate([w32, -w32, np.array([1.0], dtype=np.float32)])
    code = quantize_shiftcnn(w, n_codebooks=n, bits=bits)
    r_fixed = np.ldexp(w.astype(np.float64), 36).astype(np.int64)  # exact: ulp >= 2**-36
    np.testing.assert_array_equal(code.index, naive.shiftcnn_fixed(r_fixed, 36, n, bits))


LO32 = int(np.float32(2.0**-13).view(np.uint32))
HI32 = int(np.float32(1.0).view(np.uint32))


@pytest.mark.parametrize(("n", "bits"), list(itertools.product((1, 2), (2, 3, 4))))
def test_float32_against_integer_model(n, bits, rng):
    """A sample in CI; every float32 in [2**-13, 1] (both signs) with SHIFTSIM_EXHAUSTIVE=1."""
    if EXHAUSTIVE:
        start, total, chunk = time.perf_counter(), 0, 1 << 22
        for lo in range(LO32, HI32 + 1, chunk):
            w = np.arange(lo, min(lo + chunk, HI32 + 1), dtype=np.uint32).view(np.float32)
            check_fixed_sweep(w, n, bits)
            total += 2 * w.size
        print(f"N={n} B={bits}: {total} values in {time.perf_counter() - start:.1f} s")
        assert total == 2 * (HI32 - LO32 + 1)
    pattern = rng.integers(LO32, HI32 + 1, size=50_000).astype(np.uint32)
    w = np.concatenate([pattern.view(np.float32), adversarial(np.float32)])
    check_fixed_sweep(w[np.abs(w) >= 2.0**-13], n, bits)


def test_integer_model_matches_fraction_model(rng):
    w = rng.integers(LO32, HI32 + 1, size=300).astype(np.uint32).view(np.float32)
    w = np.concatenate([w, np.array([1.0], dtype=np.float32)])
    r_fixed = np.ldexp(w.astype(np.float64), 36).astype(np.int64)
    for n, bits in itertools.product((1, 2), (2, 3, 4)):
        expect = naive.shiftcnn(w.tolist(), n, bits, np.dtype(np.float32))
        got = naive.shiftcnn_fixed(r_fixed, 36, n, bits)
        np.testing.assert_array_equal(got, np.array(expect))


# ---- ShiftCNN properties ----------------------------------------------------------------------

nb = st.tuples(st.integers(1, 8), st.integers(2, 8))


# Re-quantizing a dequantized tensor gives the same values and scale. The indices can differ
# where a code sums to an exact tie: SPEC's own 0.8 -> [1, -2] = 0.75, but 0.75 -> [2, 2].


@given(float_arrays(np.float32), nb)
def test_requantize_is_fixed_point(w, n_bits):
    n, bits = n_bits
    code = quantize_shiftcnn(w, n_codebooks=n, bits=bits)
    again = quantize_shiftcnn(code.to_float(), n_codebooks=n, bits=bits)
    np.testing.assert_array_equal(again.to_float(), code.to_float())
    np.testing.assert_array_equal(again.scale, code.scale)
    if n == 1:  # one codebook: no two codes share a value
        np.testing.assert_array_equal(again.index, code.index)


def test_requantize_tie_changes_indices_not_values():
    code = quantize_shiftcnn([0.8, 1.0], n_codebooks=2, bits=4)
    again = quantize_shiftcnn(code.to_float(), n_codebooks=2, bits=4)
    np.testing.assert_array_equal(again.index[0], np.array([2, 2], dtype=np.int8))
    np.testing.assert_array_equal(again.to_float(), code.to_float())


@given(float_arrays(np.float32, min_dims=2), nb, st.data())
def test_requantize_is_fixed_point_per_axis(w, n_bits, data):
    n, bits = n_bits
    axis = data.draw(st.integers(-w.ndim, w.ndim - 1))
    code = quantize_shiftcnn(w, n_codebooks=n, bits=bits, axis=axis)
    again = quantize_shiftcnn(code.to_float(), n_codebooks=n, bits=bits, axis=axis)
    np.testing.assert_array_equal(again.to_float(), code.to_float())
    np.testing.assert_array_equal(again.scale, code.scale)


@given(float_arrays(min_dims=2), nb, st.data())
def test_per_axis_equals_per_slice(w, n_bits, data):
    n, bits = n_bits
    axis = data.draw(st.integers(0, w.ndim - 1))
    code = quantize_shiftcnn(w, n_codebooks=n, bits=bits, axis=axis)
    assert code.axis == axis
    assert code.scale.shape == (w.shape[axis],)
    for i in range(w.shape[axis]):
        one = quantize_shiftcnn(np.take(w, i, axis=axis), n_codebooks=n, bits=bits)
        np.testing.assert_array_equal(np.take(code.index, i, axis=axis), one.index)
        assert code.scale[i] == one.scale
        np.testing.assert_array_equal(np.take(code.to_float(), i, axis=axis), one.to_float())


@given(float_arrays(), nb)
def test_error_bound(w, n_bits):
    n, bits = n_bits
    code = quantize_shiftcnn(w, n_codebooks=n, bits=bits)
    wmax = float(code.scale)
    err = np.abs(w.astype(np.float64) - code.to_float())
    eps = float(np.finfo(w.dtype).eps)  # the rounding of w / wmax, and of to_float's product
    assert np.all(err <= wmax * (shiftcnn_error_bound(n, bits) + eps))


@pytest.mark.parametrize(("n", "bits"), list(itertools.product(range(1, 5), range(2, 6))))
def test_error_bound_is_reached(n, bits):
    r = np.arange(2**16 + 1) / 2**16
    err = np.abs(quantize_shiftcnn(r, n_codebooks=n, bits=bits).to_float() - r)
    half = 2 ** (bits - 1) - 1
    assert err.max() == max(Fraction(1, 4**n), Fraction(3, 2 ** (n + half)))
    assert err.max() == shiftcnn_error_bound(n, bits)


def test_error_bound_hand():
    assert shiftcnn_error_bound(2, 4) == 0.0625
    assert shiftcnn_error_bound(1, 2) == 0.75  # 0.75 ties down to 0.5, below C_1 = {0, +-1}


@given(float_arrays(min_dims=1, max_dims=1, max_side=40), nb)
def test_monotonic(w, n_bits):
    n, bits = n_bits
    w = np.sort(w)
    q = quantize_shiftcnn(w, n_codebooks=n, bits=bits).to_float()
    assert np.all(np.diff(q) >= 0)


@given(float_arrays(), nb)
def test_sign_symmetry(w, n_bits):
    n, bits = n_bits
    a = quantize_shiftcnn(w, n_codebooks=n, bits=bits)
    b = quantize_shiftcnn(-w, n_codebooks=n, bits=bits)
    np.testing.assert_array_equal(b.index, -a.index)
    np.testing.assert_array_equal(b.scale, a.scale)


@given(float_arrays(max_side=4), st.sampled_from([(1, 2), (2, 4), (3, 5)]))
def test_hypothesis_against_naive(w, n_bits):
    check_against_naive(w, *n_bits)


def test_int_and_float16_input():
    code = quantize_shiftcnn(np.array([4, -3, 1], dtype=np.int16), n_codebooks=2, bits=4)
    ref = quantize_shiftcnn(np.array([4.0, -3.0, 1.0]), n_codebooks=2, bits=4)
    np.testing.assert_array_equal(code.index, ref.index)
    half = quantize_shiftcnn(np.array([0.5, 0.2], dtype=np.float16), n_codebooks=2, bits=4)
    assert half.index.shape == (2, 2)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"w": [np.nan, 1.0]}, ValueError, "w must be finite.*nan"),
        ({"w": [np.inf]}, ValueError, "w must be finite.*inf"),
        ({"w": []}, ValueError, "w must not be empty"),
        ({"w": np.array([1 + 2j])}, TypeError, "w must be.*complex"),
        ({"w": np.array([True])}, TypeError, "w must be.*bool"),
        ({"w": np.array(["a"])}, TypeError, "w must be"),
        ({"n_codebooks": 0}, ValueError, "n_codebooks must be in \\[1, 8\\], got 0"),
        ({"n_codebooks": 9}, ValueError, "n_codebooks must be in \\[1, 8\\], got 9"),
        ({"n_codebooks": 2.0}, TypeError, "n_codebooks must be an int, got 2.0"),
        ({"n_codebooks": True}, TypeError, "n_codebooks must be an int, got True"),
        ({"bits": 1}, ValueError, "bits must be in \\[2, 8\\], got 1"),
        ({"bits": 9}, ValueError, "bits must be in \\[2, 8\\], got 9"),
        ({"axis": 2}, ValueError, "axis must be in \\[-2, 1\\].*got 2"),
        ({"axis": -3}, ValueError, "axis must be.*got -3"),
        ({"axis": 0.0}, TypeError, "axis must be an int or None, got 0.0"),
    ],
)
def test_shiftcnn_bad_input(kwargs, exc, match):
    args = {"w": np.ones((2, 3)), "n_codebooks": 2, "bits": 4, **kwargs}
    with pytest.raises(exc, match=match):
        quantize_shiftcnn(**args)


# ---- log quantizer ----------------------------------------------------------------------------

# (x, bits, fsr, base, exponent, sign), hand-checked: log2 0.7 = -0.515 -> -1; log2 0.71 = -0.494
# -> 0; 3.0 clips to fsr - 1 = 0; 1e-3 (log2 = -9.97 -> -10) is at or below fsr - 2**bits = -7.
LOG_TABLE = [
    (0.7, 3, 1, 2, -1, 1),
    (0.71, 3, 1, 2, 0, 1),
    (3.0, 3, 1, 2, 0, 1),
    (-0.25, 3, 1, 2, -2, -1),
    (2.0**-6, 3, 1, 2, -6, 1),  # smallest code, e_min = 1 - 8 + 1
    (2.0**-7, 3, 1, 2, -6, 0),  # flushed
    (1.5 * 2.0**-7, 3, 1, 2, -6, 1),  # log2 = -6.415 -> -6
    (0.0, 3, 1, 2, -6, 0),
    # base sqrt(2): 2 log2 0.8 = -0.64 -> -1; 2 log2 0.85 = -0.469 -> 0; 2 log2 0.6 = -1.47 -> -1
    (0.8, 3, 0, "sqrt2", -1, 1),
    (0.85, 3, 0, "sqrt2", -1, 1),  # clipped to k*fsr - 1 = -1
    (0.6, 4, 1, "sqrt2", -1, 1),
    (0.58, 4, 1, "sqrt2", -2, 1),  # 2 log2 0.58 = -1.57 -> -2
    (-5.0, 4, 3, "sqrt2", 5, -1),  # 2 log2 5 = 4.64 -> 5
]


@pytest.mark.parametrize(("x", "bits", "fsr", "base", "e", "s"), LOG_TABLE)
def test_log_hand(x, bits, fsr, base, e, s):
    code = quantize_log(np.array([x]), bits, fsr, base=base)
    assert code.exponent.dtype == np.int64 and code.sign.dtype == np.int8
    assert code.format == LogFormat(bits, fsr, base, True)
    assert (int(code.exponent[0]), int(code.sign[0])) == (e, s)


def log_thresholds_adversarial(dtype):
    """1-2 ulps around 2**(i/4) * 2**E for every i: the rounding points of both bases."""
    vals = []
    for e in range(-30, 10):
        for i in range(4):
            c = dtype(2.0 ** (e + i / 4 - 0.5))
            lo = hi = c
            vals.append(c)
            for _ in range(3):
                lo, hi = np.nextafter(lo, dtype(0)), np.nextafter(hi, dtype(np.inf))
                vals += [lo, hi]
    return np.array(vals, dtype=dtype)


def check_log_against_naive(x, bits, fsr, base, signed):
    k = 1 if base == 2 else 2
    code = quantize_log(x, bits, fsr, base=base, signed=signed)
    got = list(zip(code.sign.ravel().tolist(), code.exponent.ravel().tolist()))
    expect = [naive.log_quant(v, bits, Fraction(fsr), k) for v in x.ravel().tolist()]
    for (gs, ge), (es, ee) in zip(got, expect):
        assert gs == es and (gs == 0 or ge == ee)
    values = [naive.log_value(s, e, k) for s, e in expect]
    np.testing.assert_array_equal(code.to_float().ravel(), np.array(values))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("base", [2, "sqrt2"])
def test_log_thresholds_against_naive(dtype, base):
    x = log_thresholds_adversarial(dtype)
    check_log_against_naive(np.concatenate([x, -x]), 8, 10, base, True)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(
    ("bits", "fsr", "base", "signed"),
    [
        (1, 0, 2, True),
        (3, 2, 2, False),
        (5, -3, "sqrt2", True),
        (8, 4, 2, True),
        (4, 1.5, "sqrt2", False),
    ],
)
def test_log_random_against_naive(dtype, bits, fsr, base, signed, rng):
    x = (rng.standard_normal(400) * np.exp(rng.uniform(-25, 8, 400))).astype(dtype)
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.concatenate([x, np.array([0.0, -0.0, tiny, 5 * tiny], dtype=dtype)])
    if not signed:
        x = np.abs(x)
    check_log_against_naive(x, bits, fsr, base, signed)


@given(float_arrays(), st.integers(1, 8), st.integers(-20, 20), st.sampled_from([2, "sqrt2"]))
def test_log_hypothesis(x, bits, fsr, base):
    check_log_against_naive(x, bits, fsr, base, True)
    code = quantize_log(x, bits, fsr, base=base)
    again = quantize_log(code.to_float(), bits, fsr, base=base)  # fixed point
    np.testing.assert_array_equal(again.sign, code.sign)
    np.testing.assert_array_equal(again.exponent, code.exponent)
    neg = quantize_log(-x, bits, fsr, base=base)  # sign symmetry
    np.testing.assert_array_equal(neg.sign, -code.sign)
    np.testing.assert_array_equal(neg.exponent, code.exponent)
    s = np.sort(x.ravel())  # monotonicity
    assert np.all(np.diff(quantize_log(s, bits, fsr, base=base).to_float()) >= 0)
    fmt = code.format
    assert code.exponent.min() >= fmt.e_min and code.exponent.max() <= fmt.e_max


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: quantize_log([-1.0], 3, 0, signed=False),
            ValueError,
            "x must be non-negative.*-1.0",
        ),
        (lambda: quantize_log([np.nan], 3, 0), ValueError, "x must be finite"),
        (lambda: quantize_log(np.array(["a"]), 3, 0), TypeError, "x must be"),
        (lambda: quantize_log([1.0], 0, 0), ValueError, "bits must be in \\[1, 8\\], got 0"),
        (lambda: quantize_log([1.0], 9, 0), ValueError, "bits must be in \\[1, 8\\], got 9"),
        (lambda: quantize_log([1.0], 3, 0.5), ValueError, "fsr must be.*0.5"),
        (lambda: quantize_log([1.0], 3, np.inf), ValueError, "fsr must be.*inf"),
        (lambda: quantize_log([1.0], 3, "1"), TypeError, "fsr must be a number"),
        (lambda: quantize_log([1.0], 3, 0, base=3), ValueError, "base must be 2 or 'sqrt2', got 3"),
        (lambda: quantize_log([1.0], 3, 0, signed=1), TypeError, "signed must be a bool"),
    ],
)
def test_log_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def check_log_model(x, k):
    """quantize_log's unclipped rounding against the integer-mantissa model, then the clip."""
    expect = naive.log_exponent_ieee(x, k)
    got = _nearest_log_exponent(x, k)
    np.testing.assert_array_equal(got, expect)
    fsr = int(np.median(expect)) // k  # a window where flushing and clipping both happen
    code = quantize_log(x, 8, fsr, base=2 if k == 1 else "sqrt2")
    fmt = code.format
    np.testing.assert_array_equal(code.sign, np.where(expect < fmt.e_min, 0, 1).astype(np.int8))
    kept = code.sign != 0
    np.testing.assert_array_equal(code.exponent[kept], np.minimum(expect, fmt.e_max)[kept])


@pytest.mark.parametrize("k", [1, 2])
def test_log_every_float32_mantissa(k, rng):
    """Every float32 significand (one binade; the exponent only shifts the result) with
    SHIFTSIM_EXHAUSTIVE=1, a sample in CI; plus random bit patterns over the whole range."""
    one = int(np.float32(1.0).view(np.uint32))
    if EXHAUSTIVE:
        bits = np.arange(one, one + 2**23, dtype=np.uint32)
    else:
        bits = rng.integers(one, one + 2**23, size=200_000).astype(np.uint32)
    check_log_model(bits.view(np.float32), k)
    every = rng.integers(1, 0x7F800000, size=200_000).astype(np.uint32).view(np.float32)
    check_log_model(every, k)


@pytest.mark.parametrize("k", [1, 2])
def test_log_float64_patterns(k, rng):
    patterns = rng.integers(1, 0x7FF0000000000000, size=200_000, dtype=np.int64)
    x = patterns.astype(np.uint64).view(np.float64)
    check_log_model(np.concatenate([x, log_thresholds_adversarial(np.float64)]), k)
    check_log_model(log_thresholds_adversarial(np.float32), k)


def test_log_unsigned_accepts_negative_zero():
    code = quantize_log(np.array([-0.0, 0.5]), 3, 0, signed=False)
    np.testing.assert_array_equal(code.sign, np.array([0, 1], dtype=np.int8))


# ---- fixed point -> log (hardware rule) -------------------------------------------------------


def test_log_mantissa_thresholds_hand():
    # base 2: ceil((sqrt2 - 1) * 2**m); m = 3: 3.31 -> 4; m = 8: 106.04 -> 107
    assert log_mantissa_thresholds(0) == (1,)
    assert log_mantissa_thresholds(3) == (4,)
    assert log_mantissa_thresholds(8) == (107,)
    # base sqrt2: m = 3: (2**.25 - 1) * 8 = 1.51 -> 2, (2**.75 - 1) * 8 = 5.45 -> 6
    assert log_mantissa_thresholds(3, "sqrt2") == (2, 6)
    for m in range(0, 40):
        (t,) = log_mantissa_thresholds(m)
        assert (2**m + t) ** 2 >= 2 * 4**m > (2**m + t - 1) ** 2


def test_log_from_fixed_hand():
    fmt = FixedFormat(8, 4, signed=False)  # 16 = 1.0
    # 255 = 15.94 clips to fsr - 1 = 3
    # 23 = 1.4375: m=2 keeps F = 0b01 < 2 -> 2**0 (exact rounding would give 2**1); 24 = 1.5 -> 1
    code = log_from_fixed([16, 23, 24, 0, 255], fmt, bits=4, fsr=4, mantissa_bits=2)
    np.testing.assert_array_equal(code.exponent, np.array([0, 0, 1, -11, 3], dtype=np.int64))
    np.testing.assert_array_equal(code.sign, np.array([1, 1, 1, 0, 1], dtype=np.int8))
    exact = log_from_fixed([23], fmt, bits=4, fsr=4)
    assert int(exact.exponent[0]) == 1


@pytest.mark.parametrize("base", [2, "sqrt2"])
@pytest.mark.parametrize("m", [0, 1, 2, 3, 5, 10, None])
def test_log_from_fixed_against_naive(base, m, rng):
    k = 1 if base == 2 else 2
    fmt = FixedFormat(40, 12, signed=True)
    raw = rng.integers(fmt.min_raw, fmt.max_raw + 1, size=300) >> rng.integers(0, 39, size=300)
    raw = np.concatenate([raw, [0, 1, -1, fmt.max_raw, fmt.min_raw]])
    code = log_from_fixed(raw, fmt, bits=8, fsr=10, base=base, mantissa_bits=m)
    mm = 62 if m is None else m
    for r, s, e in zip(raw.tolist(), code.sign.tolist(), code.exponent.tolist()):
        es, ee = naive.log_from_fixed(r, fmt.frac_bits, 8, Fraction(10), k, mm)
        assert s == es and (s == 0 or e == ee)


@given(fixed_formats(max_bits=53), st.integers(1, 8), st.integers(-30, 30), st.data())
def test_log_from_fixed_exact_equals_quantize_log(fmt, bits, fsr, data):
    raw = np.array(data.draw(st.lists(st.integers(fmt.min_raw, fmt.max_raw), min_size=1)))
    base = data.draw(st.sampled_from([2, "sqrt2"]))
    signed = fmt.signed
    a = log_from_fixed(raw, fmt, bits, fsr, base=base)
    b = quantize_log(fmt.to_float(raw), bits, fsr, base=base, signed=signed)
    np.testing.assert_array_equal(a.sign, b.sign)
    np.testing.assert_array_equal(a.exponent, b.exponent)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: log_from_fixed([1], "int8", 3, 0), TypeError, "fmt must be a FixedFormat"),
        (lambda: log_from_fixed([1.0], FixedFormat(8), 3, 0), TypeError, "raw must be an integer"),
        (
            lambda: log_from_fixed([300], FixedFormat(8), 3, 0),
            ValueError,
            "raw holds raw value 300",
        ),
        (
            lambda: log_from_fixed([-3], FixedFormat(8), 3, 0, signed=False),
            ValueError,
            "raw must be non-negative.*-3",
        ),
        (
            lambda: log_from_fixed([1], FixedFormat(8), 3, 0, mantissa_bits=-1),
            ValueError,
            "mantissa_bits",
        ),
        (
            lambda: log_from_fixed([1], FixedFormat(8), 3, 0, mantissa_bits=63),
            ValueError,
            "mantissa_bits.*63",
        ),
        (lambda: log_from_fixed([1], FixedFormat(8), 0, 0), ValueError, "bits must be in"),
    ],
)
def test_log_from_fixed_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---- linear quantizer -------------------------------------------------------------------------


def test_linear_hand():
    # bits=3, fsr=0: step 1/8; 0.3 -> 2.4 -> 2; 0.625 -> 5; 1.7 clips to 8 = 2**bits; -0.2 -> 0;
    # ties to even: 0.0625 -> 0.5 -> 0, 0.1875 -> 1.5 -> 2
    code = quantize_linear([0.3, 0.625, 1.7, -0.2, 0.0625, 0.1875], bits=3, fsr=0)
    np.testing.assert_array_equal(code.raw, np.array([2, 5, 8, 0, 0, 2], dtype=np.int64))
    assert code.step == 0.125
    assert code.format == FixedFormat(4, 3, signed=False)
    np.testing.assert_array_equal(code.to_float(), np.array([0.25, 0.625, 1.0, 0, 0, 0.25]))
    signed = quantize_linear([-1.7, -0.3, 0.3], bits=3, fsr=0, signed=True)
    np.testing.assert_array_equal(signed.raw, np.array([-8, -2, 2], dtype=np.int64))
    assert signed.format == FixedFormat(5, 3, signed=True)
    up = quantize_linear([0.0625, -0.0625], bits=3, fsr=0, signed=True, rounding=Rounding.RND)
    np.testing.assert_array_equal(up.raw, np.array([1, 0], dtype=np.int64))


@given(
    float_arrays(),
    st.integers(1, 60),
    st.integers(-40, 40),
    st.booleans(),
)
def test_linear_against_naive(x, bits, fsr, signed):
    code = quantize_linear(x, bits, fsr, signed=signed)
    expect = [naive.linear_quant(v, bits, fsr, signed) for v in x.ravel().tolist()]
    np.testing.assert_array_equal(code.raw.ravel(), np.array(expect, dtype=np.int64))
    assert code.raw.dtype == np.int64 and code.raw.shape == x.shape
    assert code.format.contains(code.raw)
    assert code.step == 2.0 ** (fsr - bits)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"bits": 0}, ValueError, "bits must be in \\[1, 60\\], got 0"),
        ({"bits": 61}, ValueError, "bits must be in \\[1, 60\\], got 61"),
        ({"fsr": 0.5}, ValueError, "fsr must be an integer.*0.5"),
        ({"fsr": "0"}, TypeError, "fsr must be an int"),
        ({"signed": "no"}, TypeError, "signed must be a bool"),
        ({"x": [np.inf]}, ValueError, "x must be finite"),
        ({"x": np.array([1j])}, TypeError, "x must be"),
        ({"rounding": 9}, ValueError, "rounding must be a member of Rounding, got 9"),
    ],
)
def test_linear_bad_input(kwargs, exc, match):
    args = {"x": [0.5], "bits": 4, "fsr": 0, **kwargs}
    with pytest.raises(exc, match=match):
        quantize_linear(**args)


def test_codes_are_frozen():
    code = quantize_shiftcnn([1.0], n_codebooks=1, bits=2)
    with pytest.raises(AttributeError):
        code.bits = 3


def test_scalar_and_zero_slice():
    code = quantize_shiftcnn(np.float32(-0.4), n_codebooks=2, bits=4)
    assert code.index.shape == (2,) and code.to_float().shape == ()
    np.testing.assert_array_equal(code.index, np.array([-1, 0], dtype=np.int8))  # r = -1
    w = np.array([[0.0, -0.0], [0.5, -0.1]])
    per = quantize_shiftcnn(w, n_codebooks=2, bits=4, axis=0)
    np.testing.assert_array_equal(per.scale, np.array([0.0, 0.5]))
    np.testing.assert_array_equal(per.index[0], np.zeros((2, 2), dtype=np.int8))
    np.testing.assert_array_equal(per.to_float()[0], np.zeros(2))
    # row 1: r = 1 and -0.2 (SPEC: 0.2 -> [3, -4])
    np.testing.assert_array_equal(per.index[1], np.array([[1, 0], [-3, 4]], dtype=np.int8))


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: shiftcnn_error_bound(0, 4),
            ValueError,
            "n_codebooks must be in \\[1, 8\\], got 0",
        ),
        (lambda: shiftcnn_error_bound(2, 9), ValueError, "bits must be in \\[2, 8\\], got 9"),
        (lambda: log_mantissa_thresholds(-1), ValueError, "mantissa_bits must be in.*-1"),
        (lambda: log_mantissa_thresholds(3, "e"), ValueError, "base must be 2 or 'sqrt2'"),
        (lambda: quantize_shiftcnn(1.0, 2, 4, axis=0), ValueError, "axis must be"),
    ],
)
def test_helpers_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
