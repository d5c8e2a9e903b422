"""Fixed-point and log formats (SPEC §2, §4): hand tables, exhaustive small formats, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shiftsim.formats import FixedFormat, LogFormat, Overflow, Rounding, as_float_array
from tests import naive_quantize as naive
from tests.strategies import fixed_formats, float_arrays

NEAR_HALF = 0.49999999999999994  # largest float64 below 0.5: x + 0.5 rounds to 1.0
VALUES = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, NEAR_HALF, -NEAR_HALF, 0.0, -0.0, 3.75, -3.75]
# floor, toward zero, floor(x + 1/2), half to even; checked by hand
ROUNDING_TABLE = {
    Rounding.TRN: [0, -1, 1, -2, 2, -3, 0, -1, 0, 0, 3, -4],
    Rounding.TRN_ZERO: [0, 0, 1, -1, 2, -2, 0, 0, 0, 0, 3, -3],
    Rounding.RND: [1, 0, 2, -1, 3, -2, 0, 0, 0, 0, 4, -4],
    Rounding.RND_CONV: [0, 0, 2, -2, 2, -2, 0, 0, 0, 0, 4, -4],
}


@pytest.mark.parametrize("rounding", list(Rounding))
def test_rounding_table(rounding):
    raw = FixedFormat(16).from_float(VALUES, rounding=rounding)
    assert raw.dtype == np.int64 and raw.shape == (len(VALUES),)
    np.testing.assert_array_equal(raw, np.array(ROUNDING_TABLE[rounding], dtype=np.int64))


def test_rounding_with_frac_bits():
    fmt = FixedFormat(8, 2)  # LSB 0.25: 0.375 -> 1.5 LSB, -0.125 -> -0.5 LSB
    x = [0.375, -0.125]
    assert fmt.from_float(x, Rounding.TRN).tolist() == [1, -1]
    assert fmt.from_float(x, Rounding.TRN_ZERO).tolist() == [1, 0]
    assert fmt.from_float(x, Rounding.RND).tolist() == [2, 0]
    assert fmt.from_float(x, Rounding.RND_CONV).tolist() == [2, 0]


# (format, x, SAT raw, WRAP raw), checked by hand
OVERFLOW_TABLE = [
    (FixedFormat(4), 8.0, 7, -8),
    (FixedFormat(4), -9.0, -8, 7),
    (FixedFormat(4), 100.0, 7, 4),
    (FixedFormat(4, signed=False), -1.0, 0, 15),
    (FixedFormat(4, signed=False), 16.0, 15, 0),
    (FixedFormat(1), 1.0, 0, -1),
    (FixedFormat(1, signed=False), 3.0, 1, 1),
    (FixedFormat(62), 2.0**61, 2**61 - 1, -(2**61)),
    (FixedFormat(62), -(2.0**61) - 2048, -(2**61), 2**61 - 2048),
    (FixedFormat(62, signed=False), 2.0**62, 2**62 - 1, 0),
    (FixedFormat(8, 1000), 1.0, 127, 0),  # 2**1000 is a multiple of 2**8
    (FixedFormat(8, 1000), 1e300, 127, 0),  # beyond float64 after scaling: still exact
    (FixedFormat(8, 1000), -3.0, -128, 0),
]


@pytest.mark.parametrize(("fmt", "x", "sat", "wrap"), OVERFLOW_TABLE)
def test_overflow_table(fmt, x, sat, wrap):
    raw, n = fmt.from_float_counted([x], Rounding.TRN, Overflow.SAT)
    assert raw.tolist() == [sat] and n == 1
    raw, n = fmt.from_float_counted([x], Rounding.TRN, Overflow.WRAP)
    assert raw.tolist() == [wrap] and n == 1
    assert raw.dtype == np.int64


def test_in_range_counts_no_overflow():
    raw, n = FixedFormat(62).from_float_counted([2.0**61 - 256, -(2.0**61)], overflow=Overflow.SAT)
    assert raw.tolist() == [2**61 - 256, -(2**61)] and n == 0
    u = FixedFormat(62, signed=False)
    raw, n = u.from_float_counted([2.0**62 - 512], overflow=Overflow.WRAP)
    assert raw.tolist() == [2**62 - 512] and n == 0


def test_tiny_negative_floors_to_minus_one():
    # -2**-1074 * 2**-1 underflows to -0.0 in float64, but floor of the exact value is -1
    fmt = FixedFormat(8, -1)
    assert fmt.from_float([-5e-324], Rounding.TRN).tolist() == [-1]
    assert fmt.from_float([-5e-324], Rounding.TRN_ZERO).tolist() == [0]
    assert fmt.from_float([5e-324, -5e-324], Rounding.RND).tolist() == [0, 0]


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("frac_bits", [-3, 0, 5])
def test_every_raw_value_round_trips(bits, signed, frac_bits):
    fmt = FixedFormat(bits, frac_bits, signed)
    raw = np.arange(fmt.min_raw, fmt.max_raw + 1, dtype=np.int64)
    assert raw.size == 2**bits
    x = fmt.to_float(raw)
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x, raw * 2.0**-frac_bits)
    for rounding in Rounding:
        for overflow in Overflow:
            back, n = fmt.from_float_counted(x, rounding, overflow)
            np.testing.assert_array_equal(back, raw)
            assert n == 0
    assert fmt.contains(raw) and not fmt.contains(raw.max() + 1) and not fmt.contains(raw.min() - 1)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("signed", [True, False])
def test_every_small_format_against_int_model(bits, signed):
    """Every value on a 1/8 grid well beyond the range, every mode: wrap/sat as Python ints."""
    fmt = FixedFormat(bits, 1, signed)
    x = np.arange(-8 * 2**bits, 8 * 2**bits + 1) / 8.0
    for rounding in Rounding:
        for overflow in Overflow:
            raw, n = fmt.from_float_counted(x, rounding, overflow)
            expect = [
                naive.fixed_from_float(v, bits, 1, signed, rounding.name, overflow.name)
                for v in x.tolist()
            ]
            np.testing.assert_array_equal(raw, np.array([e[0] for e in expect], dtype=np.int64))
            assert n == sum(e[1] for e in expect)


@given(
    float_arrays(),
    fixed_formats(),
    st.sampled_from(list(Rounding)),
    st.sampled_from(list(Overflow)),
)
def test_from_float_against_int_model(x, fmt, rounding, overflow):
    raw, n = fmt.from_float_counted(x, rounding, overflow)
    expect = [
        naive.fixed_from_float(v, fmt.bits, fmt.frac_bits, fmt.signed, rounding.name, overflow.name)
        for v in x.ravel().tolist()
    ]
    assert raw.dtype == np.int64 and raw.shape == x.shape
    np.testing.assert_array_equal(raw.ravel(), np.array([e[0] for e in expect], dtype=np.int64))
    assert n == sum(e[1] for e in expect)
    assert fmt.contains(raw)


@given(fixed_formats(max_bits=53), st.data())
def test_to_float_exact(fmt, data):
    raw = data.draw(st.lists(st.integers(fmt.min_raw, fmt.max_raw), min_size=1, max_size=20))
    x = fmt.to_float(raw)
    for r, v in zip(raw, x.tolist()):
        assert naive.Fraction(v) == naive.Fraction(r) * naive.Fraction(2) ** -fmt.frac_bits


def test_fixed_properties():
    fmt = FixedFormat(8, 4)
    assert (fmt.min_raw, fmt.max_raw, fmt.lsb) == (-128, 127, 0.0625)
    u = FixedFormat(62, signed=False)
    assert (u.min_raw, u.max_raw) == (0, 2**62 - 1)
    assert FixedFormat(1).min_raw == -1 and FixedFormat(1).max_raw == 0


def test_check_raw():
    fmt = FixedFormat(4, signed=False)
    out = fmt.check_raw(np.array([0, 15], dtype=np.uint8), "x_raw")
    assert out.dtype == np.int64 and out.tolist() == [0, 15]
    with pytest.raises(ValueError, match="x_raw holds raw value 16, outside \\[0, 15\\]"):
        fmt.check_raw([16], "x_raw")
    with pytest.raises(TypeError, match="x_raw must be an integer array, got dtype float64"):
        fmt.check_raw([1.0], "x_raw")
    with pytest.raises(ValueError, match="x_raw holds"):
        fmt.check_raw(np.array([2**64 - 1], dtype=np.uint64), "x_raw")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"bits": 0}, ValueError, "bits must be in \\[1, 62\\], got 0"),
        ({"bits": 63}, ValueError, "bits must be in \\[1, 62\\], got 63"),
        ({"bits": 8.0}, TypeError, "bits must be an int, got 8.0"),
        ({"bits": True}, TypeError, "bits must be an int, got True"),
        ({"bits": 8, "frac_bits": 2000}, ValueError, "frac_bits must be in.*2000"),
        ({"bits": 8, "frac_bits": "1"}, TypeError, "frac_bits must be an int"),
        ({"bits": 8, "signed": 1}, TypeError, "signed must be a bool, got 1"),
    ],
)
def test_fixed_bad_fields(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        FixedFormat(**kwargs)


@pytest.mark.parametrize(
    ("x", "kwargs", "exc", "match"),
    [
        ([np.nan], {}, ValueError, "x must be finite, got nan"),
        ([1.0, np.inf], {}, ValueError, "x must be finite, got inf"),
        ([-np.inf], {}, ValueError, "x must be finite, got -inf"),
        (np.array([1j]), {}, TypeError, "x must be a float32 or float64 array, got dtype complex"),
        (np.array([True]), {}, TypeError, "x must be.*got dtype bool"),
        (np.array(["1"]), {}, TypeError, "x must be"),
        ([1.0], {"rounding": 7}, ValueError, "rounding must be a member of Rounding, got 7"),
        ([1.0], {"rounding": "RND"}, TypeError, "rounding must be a member of Rounding, got 'RND'"),
        ([1.0], {"overflow": 2}, ValueError, "overflow must be a member of Overflow, got 2"),
    ],
)
def test_from_float_bad_input(x, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        FixedFormat(8).from_float(x, **kwargs)


def test_as_float_array_dtypes():
    assert as_float_array(np.array([1, 2], dtype=np.int8), "w").dtype == np.float64
    assert as_float_array(np.array([1], dtype=np.float16), "w").dtype == np.float32
    assert as_float_array(np.array([1], dtype=np.float32), "w").dtype == np.float32
    assert as_float_array(0.5, "w").dtype == np.float64


# ---- LogFormat --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "k", "e_min", "e_max", "n_codes"),
    [
        (LogFormat(3, 0), 1, -7, -1, 15),  # 2**3 - 1 = 7 magnitudes, +-, zero
        (LogFormat(3, 0, signed=False), 1, -7, -1, 8),
        (LogFormat(4, 2, "sqrt2"), 2, -11, 3, 31),
        (LogFormat(1, 5), 1, 4, 4, 3),
        (LogFormat(8, 0.5, "sqrt2", False), 2, -254, 0, 256),
    ],
)
def test_log_format(fmt, k, e_min, e_max, n_codes):
    assert (fmt.k, fmt.e_min, fmt.e_max, fmt.n_codes) == (k, e_min, e_max, n_codes)
    assert fmt.e_max - fmt.e_min + 1 == 2**fmt.bits - 1


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((0, 0), ValueError, "bits must be in \\[1, 8\\], got 0"),
        ((9, 0), ValueError, "bits must be in \\[1, 8\\], got 9"),
        ((3, 0.5), ValueError, "fsr must be finite with k\\*fsr an integer.*0.5"),
        ((3, 0.25, "sqrt2"), ValueError, "fsr must be.*0.25"),
        ((3, float("nan")), ValueError, "fsr must be.*nan"),
        ((3, None), TypeError, "fsr must be a number, got None"),
        ((3, 0, 4), ValueError, "base must be 2 or 'sqrt2', got 4"),
        ((3, 0, 2, "yes"), TypeError, "signed must be a bool"),
    ],
)
def test_log_format_bad_fields(args, exc, match):
    with pytest.raises(exc, match=match):
        LogFormat(*args)
