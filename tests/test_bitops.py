"""Bit helpers against Python-int arithmetic, for every shift 0..70 and the int64 edges.

Each helper is called compiled and as its pure-Python ``py_func`` (with numpy int64 and with
Python int arguments): numba's ``x >> 64`` is ``x`` while numpy's is 0 or -1, and the helpers
must hide the difference.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shiftsim.kernels import bitops
from tests.naive_quantize import wrap_int

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
EDGES = [
    0,
    1,
    -1,
    2,
    -2,
    3,
    -3,
    5,
    -5,
    12345,
    -12345,
    2**31,
    -(2**31),
    2**62 - 1,
    2**62,
    -(2**62),
    -(2**62) + 1,
    I64_MAX - 1,
    I64_MAX,
    I64_MIN,
    I64_MIN + 1,
]
SHIFTS = range(71)


def variants(name):
    """The helper compiled, and its Python body with int64 and with Python-int arguments."""
    f = getattr(bitops, name)
    py = getattr(f, "py_func", f)  # under NUMBA_DISABLE_JIT ``f`` is already the Python body
    return [
        ("jit", f, int),
        ("py-int64", py, np.int64),
        ("py-int", py, int),
    ]


def call(f, conv, *args):
    return int(f(*(conv(a) if isinstance(a, int) and not isinstance(a, bool) else a for a in args)))


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_ashr_every_shift(mode):
    _, f, conv = variants("ashr")[mode]
    for x in EDGES:
        for s in SHIFTS:
            assert call(f, conv, x, s) == x >> s, (x, s)  # Python's >> is floor division


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_round_shr_every_shift(mode):
    _, f, conv = variants("round_shr")[mode]
    for x in EDGES:
        assert call(f, conv, x, 0) == x
        for s in range(1, 71):
            assert call(f, conv, x, s) == (x + 2 ** (s - 1)) >> s, (x, s)


def test_round_shr_hand():
    # half up: 5/2 = 2.5 -> 3, -5/2 = -2.5 -> -2, 7/4 = 1.75 -> 2, -6/4 = -1.5 -> -1
    f = bitops.round_shr
    assert [int(f(5, 1)), int(f(-5, 1)), int(f(7, 2)), int(f(-6, 2)), int(f(I64_MAX, 1))] == [
        3,
        -2,
        2,
        -1,
        2**62,
    ]


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_shl(mode):
    _, f, conv = variants("shl")[mode]
    for x in (0, 1, -1, 3, -3, 12345):
        for s in range(0, 48):
            assert call(f, conv, x, s) == x * 2**s


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_wrap_every_width(mode):
    _, f, conv = variants("wrap")[mode]
    for x in EDGES + [2**k + d for k in range(0, 62, 7) for d in (-1, 0, 1)]:
        for bits in range(1, 63):
            for signed in (True, False):
                assert call(f, conv, x, bits, signed) == wrap_int(x, bits, signed), (x, bits)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_saturate_and_apply_overflow(mode):
    _, sat, conv = variants("saturate")[mode]
    _, ovf, _ = variants("apply_overflow")[mode]
    for x in EDGES:
        for bits in range(1, 63):
            for signed in (True, False):
                lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
                clamped = min(max(x, lo), hi)
                assert call(sat, conv, x, lo, hi) == clamped
                assert call(ovf, conv, x, bits, signed, True) == clamped
                assert call(ovf, conv, x, bits, signed, False) == wrap_int(x, bits, signed)


def test_wrap_hand():
    # 4-bit signed: 8 -> -8, -9 -> 7, 100 -> 4; unsigned: -1 -> 15, 16 -> 0
    w = bitops.wrap
    got = [int(w(8, 4, True)), int(w(-9, 4, True)), int(w(100, 4, True))]
    assert got == [-8, 7, 4]
    assert [int(w(-1, 4, False)), int(w(16, 4, False))] == [15, 0]


@given(st.integers(I64_MIN, I64_MAX), st.integers(0, 200))
def test_shifts_random(x, s):
    assert int(bitops.ashr(x, s)) == x >> s
    expect = x if s == 0 else (x + 2 ** (s - 1)) >> s
    assert int(bitops.round_shr(x, s)) == expect
