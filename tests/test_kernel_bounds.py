"""Kernels on the bounds that select their paths: no hang, and golden == functional exactly.

Issue #9 item 1: with ``max|x << f| == 2**15 - 1`` the shift-add adders once took partial sums
of ``32767 // 32768 == 0`` terms and never advanced. The reproducer runs in a subprocess under a
timeout (a numba loop cannot be interrupted in-process); the properties drive every datapath's
functional kernels with data whose maximum sits exactly on each bound that selects a path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftsim.datapath.log_domain import LogDatapath, log_linear_plan
from shiftsim.datapath.mac import FixedMacDatapath, mac_plan
from shiftsim.datapath.shift_add import ShiftAddDatapath, partial_group
from shiftsim.formats import FixedFormat, LogFormat, Overflow, Rounding
from shiftsim.kernels import shift_add as shift_kernels
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import LogCode, ShiftCode
from tests.conftest import JIT_DISABLED
from tests.strategies import layer_and_input_shape, random_log_code

REPRO = textwrap.dedent(
    """
    import numpy as np
    from shiftsim import Conv2d, FixedFormat, ShiftAddDatapath, ShiftCode
    dp = ShiftAddDatapath(act=FixedFormat(16, 0, signed=True))
    code = ShiftCode(index=np.ones((1, 1, 1, 1, 2), np.int8), scale=np.float64(1.0),
                     n_codebooks=2, bits=4)
    print(int(dp.run(Conv2d(1, 1, 1), code, np.full((1, 1, 1, 1), 32767)).y_raw[0, 0, 0, 0]))
    """
)


def test_issue9_int16_boundary_reproducer_returns():
    # index 1 in both codebooks: shifts 0 and 1, so 32767 + (32767 >> 1) = 49150 (by hand)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-c", REPRO], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["49150"]


@pytest.mark.parametrize(
    ("dtype", "x_max", "group"),
    [
        (np.int16, 0, 32767),  # capped: a count the kernels' int64 arguments hold
        (np.int64, 0, (1 << 63) - 1),  # all-zero input: 2**63 before the cap (OverflowError)
        (np.int16, 1, 16384),
        (np.int16, 32766, 1),
        (np.int16, 32767, 1),  # the hang: 32767 // 32768 == 0 before the fix
        (np.int16, 16383, 2),
        (np.int64, (1 << 62) - 1, 2),
        (np.int64, (1 << 63) - 1, 1),
    ],
)
def test_partial_group_is_the_largest_exact_group(dtype, x_max, group):
    assert partial_group(dtype, x_max) == group
    # by definition: group terms in [-(x_max + 1), x_max] fit, group + 1 do not (or the cap)
    half = 1 << (np.iinfo(dtype).bits - 1)
    assert group * (x_max + 1) <= half
    assert group == half - 1 or half < (group + 1) * (x_max + 1)


def test_all_zero_input_with_a_wide_bias_runs():
    # found by hypothesis: x = 0 with |bias| = 2**31 takes the int64 path, whose partial group
    # was 2**63 // 1, too big for the kernel's int64 argument (OverflowError)
    dp = ShiftAddDatapath(n_codebooks=1, bits=2, act=FixedFormat(1, 0, signed=False), acc_bits=33)
    code = ShiftCode(
        index=np.ones((1, 1, 1), np.int8), scale=np.float64(1.0), n_codebooks=1, bits=2
    )
    layer = Linear(1, 1)
    x, bias = np.zeros((1, 1), np.int64), np.array([1 << 31])
    gold = dp.run(layer, code, x, bias, level="golden")
    fast = dp.run(layer, code, x, bias)
    assert_same(fast, gold)
    assert fast.y_raw.tolist() == [[1 << 31]]


@pytest.mark.parametrize(
    ("dtype", "x_max"), [(np.int16, 32768), (np.int16, -1), (np.int64, 1 << 63)]
)
def test_partial_group_refuses_a_term_that_does_not_fit(dtype, x_max):
    with pytest.raises(ValueError, match="x_max"):
        partial_group(dtype, x_max)


# ------------------------------------------------------------------ shared pieces

# A hung kernel cannot be interrupted in-process: the thread method ends the run (a failure).
TIMEOUT = pytest.mark.timeout(600, method="thread")


def assert_same(fast, gold):
    assert fast.y_raw.dtype == gold.y_raw.dtype == np.int64
    assert fast.y_raw.shape == gold.y_raw.shape
    np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
    assert fast.counts == gold.counts


def data_with_max(rng, shape, x_max, signed, draw):
    """Integers in [-x_max, x_max] ([0, x_max] unsigned) with |x| == x_max somewhere."""
    lo = -x_max if signed else 0
    x = rng.integers(lo, x_max + 1, size=shape, dtype=np.int64)
    if draw(st.booleans()):  # extremes: sums really reach their bounds
        x = rng.choice(np.array([lo, x_max, 0]), size=shape).astype(np.int64)
    at = tuple(int(rng.integers(0, n)) for n in shape)
    x[at] = -x_max if signed and draw(st.booleans()) else x_max
    return x


# ------------------------------------------------------------------ shift-add (SPEC §5.1)

TWO15, TWO31 = 1 << 15, 1 << 31


@st.composite
def shift_bound_cases(draw):
    """Shift-add layers whose ``max|x << f|`` or worst-case sum sits on a path bound.

    Kinds: ``x``: ``max|x << f|`` on an int16/int32 bound; ``tree``: ``C/groups * max`` on
    2**31; ``fast``: ``|bias| + nonzero terms * max`` of channel 0 on 2**31 (int32 sums);
    ``acc``: the same sum on the accumulator's limit ``2**(acc_bits-1)``.
    """
    layer, x_shape = draw(layer_and_input_shape(max_channels=3, max_size=5))
    n_cb, bits = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    half = (1 << (bits - 1)) - 1
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    index = rng.integers(-half, half + 1, size=(*layer.weight_shape, n_cb)).astype(np.int8)
    index.reshape(index.shape[0], -1)[0, 0] = half  # channel 0 has a nonzero term
    nnz0 = int(np.count_nonzero(index[0]))
    cg = layer.as_conv().channels_per_group
    kind = draw(st.sampled_from(["x", "tree", "fast", "acc"]))
    delta = draw(st.integers(-1, 1))
    acc_bits = draw(st.integers(2, 62))
    bias = None
    if kind == "x":
        target = draw(st.sampled_from([TWO15 - 1, TWO15, TWO31 - 1, TWO31])) + delta
    elif kind == "tree":
        target = (TWO31 - 1) // cg + delta + 1
    else:
        target = draw(st.sampled_from([TWO15 - 1, TWO15 - 2, 1, 255, 32766]))
        target = min(target, (TWO31 - 2) // nnz0)
        limit = TWO31 if kind == "fast" else 1 << ((nnz0 * target).bit_length())
        acc_bits = 40 if kind == "fast" else limit.bit_length()
        small = min(9, limit - 1)
        bias = rng.integers(-small, small + 1, size=index.shape[0], dtype=np.int64)
        # |bias0| + nnz0 * max == limit - 1 + {0, 1}: one below or on the limit
        bias[0] = (limit - 1 + max(delta, 0) - nnz0 * target) * (1 if draw(st.booleans()) else -1)
    f = draw(st.integers(0, min(8, (target & -target).bit_length() - 1)))
    x_max = target >> f
    signed = draw(st.booleans())
    act = FixedFormat(x_max.bit_length() + signed, 0, signed=signed)
    x = data_with_max(rng, x_shape, x_max, signed, draw)
    dp = ShiftAddDatapath(
        n_codebooks=n_cb, bits=bits, act=act, shift_frac_bits=f, acc_bits=acc_bits,
        shift_rounding=draw(st.sampled_from([Rounding.TRN, Rounding.RND])),
        overflow=draw(st.sampled_from([Overflow.WRAP, Overflow.SAT])),
    )  # fmt: skip
    code = ShiftCode(index=index, scale=np.float64(1.0), n_codebooks=n_cb, bits=bits)
    return layer, dp, code, x, bias


@TIMEOUT
@settings(max_examples=150 if not JIT_DISABLED else 30)
@given(case=shift_bound_cases())
def test_shift_add_on_every_path_bound(case):
    layer, dp, code, x, bias = case
    gold = dp.run(layer, code, x, bias, level="golden")
    fast = dp.run(layer, code, x, bias, level="functional")
    assert_same(fast, gold)


@TIMEOUT
@settings(max_examples=40 if not JIT_DISABLED else 10)
@given(case=shift_bound_cases())
def test_shift_add_without_scratch_slots(case):
    # more threads than scratch rows (or a buffer beyond 32-bit offsets): the checked
    # channels take adder_array_checked, the unchecked ones the whole-row adders
    layer, dp, code, x, bias = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shift_kernels, "scratch_slots_suffice", lambda: False)
        fast = dp.run(layer, code, x, bias)
    assert_same(fast, dp.run(layer, code, x, bias, level="golden"))


@pytest.mark.parametrize(
    ("h", "w", "stride"), [(5, 7, 1), (9, 20, 1), (17, 30, 1), (23, 23, 2), (40, 9, 1)]
)
@pytest.mark.parametrize(("overflow", "cg"), [(Overflow.SAT, 3), (Overflow.WRAP, 3),
                                             (Overflow.SAT, 9), (Overflow.WRAP, 5)])  # fmt: skip
def test_shift_add_checked_tiles_of_every_width(h, w, stride, overflow, cg, rng):
    # tiles of at most ROW lanes, of up to WIDE lanes, and of several WIDE blocks, with a
    # 10-bit register that really overflows: the step-by-step adders against the golden model
    # (up to FEW_TERMS channels: one pass per step; more: the scratch rows)
    layer = Conv2d(cg, 4, 3, stride=stride, padding=1)
    index = rng.integers(-3, 4, size=(*layer.weight_shape, 2)).astype(np.int8)
    code = ShiftCode(index=index, scale=np.float64(1.0), n_codebooks=2, bits=3)
    x = rng.integers(0, 256, size=(2, cg, h, w))
    dp = ShiftAddDatapath(n_codebooks=2, bits=3, act=FixedFormat(8, 0, signed=False),
                          acc_bits=10, overflow=overflow)  # fmt: skip
    gold = dp.run(layer, code, x, level="golden")
    assert gold.counts.overflows > 0
    assert_same(dp.run(layer, code, x), gold)


# ------------------------------------------------------------------ MAC (SPEC §5.3)


def weights_with_sum(rng, shape, total, signed=True):
    """Integers whose magnitudes sum to ``total`` in channel 0, at most that elsewhere."""
    n_co = shape[0]
    k = int(np.prod(shape[1:]))
    w = np.zeros((n_co, k), dtype=object)
    for co in range(n_co):
        t = total if co == 0 else int(rng.integers(0, total + 1)) if total < 2**62 else total
        q, r = divmod(t, k)
        mags = [q + (i < r) for i in range(k)]
        signs = rng.choice([-1, 1], size=k) if signed else np.ones(k, int)
        w[co] = [int(s) * m for s, m in zip(signs, mags)]
    return w.astype(np.int64).reshape(shape)


@st.composite
def mac_bound_cases(draw):
    """MAC layers whose bound sits on 2**53 (one float64 product vs limbs) or the register.

    ``f64``: ``max|x| * sum|w[0]|`` is ``2**53 - X``, ``2**53`` or ``2**53 + X`` (``X = max|x|``
    a power of two), in a 62-bit register. ``acc``: ``|bias[0]| + max|x| * sum|w[0]|`` is
    ``2**(acc_bits-1) - 1`` (no overflow possible) or ``2**(acc_bits-1)`` (possible).
    ``limbs``: products far beyond 2**53, in a 62-bit register. ``f32``: ``max|x| * sum|w[0]|``
    one below, on or above ``m * 2**24`` (``m`` float32 pieces of the reduction axis).
    """
    layer, x_shape = draw(layer_and_input_shape(max_channels=3, max_size=5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["f32", "f64", "acc", "limbs"]))
    bias = None
    if kind == "f32":  # pieces of the reduction with max|x| * sum|w| on 2**24, 1..5 of them
        x_bits = draw(st.integers(4, 16))
        x_max = 1 << x_bits
        total = draw(st.integers(1, 5)) * (1 << (24 - x_bits)) + draw(st.integers(-1, 1))
        acc_bits = 40
    elif kind == "f64":
        x_bits = draw(st.integers(8, 30))
        x_max = 1 << x_bits
        total = (1 << (53 - x_bits)) + draw(st.integers(-1, 1))
        acc_bits = 62
    elif kind == "limbs":
        x_max = int(rng.integers(1 << 20, 1 << 28))
        total = int(rng.integers(1 << 27, 1 << 32))
        acc_bits = 62
    else:
        x_max = int(rng.integers(1, 1 << draw(st.integers(1, 20))))
        total = int(rng.integers(1, 1 << draw(st.integers(1, 20))))
        acc_bits = min(62, (x_max * total).bit_length() + draw(st.integers(1, 3)))
        limit = 1 << (acc_bits - 1)
        small = min(9, limit - 1)
        bias = rng.integers(-small, small + 1, size=layer.weight_shape[0], dtype=np.int64)
        sign = 1 if draw(st.booleans()) else -1
        bias[0] = sign * (limit - 1 + draw(st.integers(0, 1)) - x_max * total)
    w = weights_with_sum(rng, layer.weight_shape, total)
    w_fmt = FixedFormat(int(np.abs(w).max()).bit_length() + 1, 0)
    signed = draw(st.booleans())
    act = FixedFormat(x_max.bit_length() + signed, 0, signed=signed)
    x = data_with_max(rng, x_shape, x_max, signed, draw)
    if not isinstance(layer, Conv2d):  # a Linear layer's operands are (Co, C) and (B, C)
        w, x = w.reshape(layer.weight_shape), x.reshape(x_shape)
    overflow = draw(st.sampled_from([Overflow.WRAP, Overflow.SAT]))
    dp = FixedMacDatapath(weight=w_fmt, act=act, acc_bits=acc_bits, overflow=overflow)
    return layer, dp, w, x, bias


@TIMEOUT
@settings(max_examples=150 if not JIT_DISABLED else 30)
@given(case=mac_bound_cases())
def test_mac_on_every_path_bound(case):
    layer, dp, w, x, bias = case
    gold = dp.run(layer, w, x, bias, level="golden")
    fast = dp.run(layer, w, x, bias, level="functional")
    assert_same(fast, gold)


@pytest.mark.parametrize(("delta", "n_limbs"), [(-1, 1), (0, 1), (1, 2)])
def test_mac_plan_one_float64_product_up_to_2_53(delta, n_limbs):
    # max|x| * sum|w| = 2**20 * (2**33 + delta): up to 2**53 one float64 product is exact
    w = np.full((1, 1, 1, 1), (1 << 33) + delta, dtype=np.int64)
    x = np.full((1, 1, 1, 1), -(1 << 20), dtype=np.int64)
    plan = mac_plan(w, x, np.zeros(1, np.int64), acc_bits=62)
    assert (plan.n_limbs, plan.gemm.tolist(), plan.checked.tolist()) == (n_limbs, [0], [])
    dp = FixedMacDatapath(weight=FixedFormat(35, 0), act=FixedFormat(22, 0), acc_bits=62)
    y = dp.run(Conv2d(1, 1, 1), w, x).y_raw
    assert y.dtype == np.int64
    assert int(y[0, 0, 0, 0]) == -((1 << 33) + delta) * (1 << 20)  # exact, by hand


@pytest.mark.parametrize(("extra", "path"), [(0, "gemm"), (1, "checked")])
def test_mac_plan_register_bound(extra, path):
    # |bias| + max|x| * sum|w| = 2**11 - 1 + extra in a 12-bit register: up to 2**11 - 1 no
    # partial sum can overflow (BLAS); one more and the checked kernel runs
    w = np.array([[3, -2]], dtype=np.int64).reshape(1, 2, 1, 1)
    x = np.array([5, 5], dtype=np.int64).reshape(1, 2, 1, 1)
    bias = np.array([(1 << 11) - 1 + extra - 25, 0], dtype=np.int64)[:1]
    plan = mac_plan(w, x, bias, acc_bits=12)
    assert getattr(plan, path).tolist() == [0]
    dp = FixedMacDatapath(weight=FixedFormat(4, 0), act=FixedFormat(4, 0), acc_bits=12)
    res = dp.run(Conv2d(2, 1, 1), w, x, bias)
    # the sum is bias + 15 - 10: never at the limit, so both paths give it exactly
    assert int(res.y_raw[0, 0, 0, 0]) == int(bias[0]) + 5
    assert res.counts.overflows == 0


# ------------------------------------------------------------------ log domain (SPEC §5.2)


def shift_of(xe, we, k, frac_bits):
    """The shift of a term, floor(p / k) + F, p = e_x + e_w in units of 1/k (by the spec)."""
    return (xe + we) // k + frac_bits


def channel_sum(x_code, w_code, co, k, frac_bits):
    """Sum over channel co's nonzero weights of 2**shift at the largest input exponent."""
    xk = k // x_code.format.k
    wk = k // w_code.format.k
    xe_max = max(int(e) * xk for e, s in zip(x_code.exponent.flat, x_code.sign.flat) if s != 0)
    total = 0
    for e, s in zip(w_code.exponent[co].flat, w_code.sign[co].flat):
        m = shift_of(xe_max, int(e) * wk, k, frac_bits)
        total += (1 << m) if s != 0 and m >= 0 else 0
    return total


@st.composite
def log_bound_cases(draw):
    """Log layers whose smallest term's shift p/k + F is -2..1, or whose worst-case sum sits
    on the register limit (``acc``) or on 2**53 (``f64``); both accumulation modes."""
    layer, x_shape = draw(layer_and_input_shape(max_channels=3, max_size=5))
    w_base, a_base = draw(st.sampled_from([2, "sqrt2"])), draw(st.sampled_from([2, "sqrt2"]))
    k = 2 if "sqrt2" in (w_base, a_base) else 1
    kind = draw(st.sampled_from(["pF", "acc", "f64"]))
    w_bits = 7 if kind == "f64" else draw(st.integers(1, 4))
    weight = LogFormat(w_bits, draw(st.integers(-2, 2)), w_base, True)
    act = LogFormat(draw(st.integers(1, 4)), draw(st.integers(-2, 4)), a_base, draw(st.booleans()))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p_zero = draw(st.sampled_from([0.0, 0.3]))
    w_code = random_log_code(rng, layer.weight_shape, weight, p_zero)
    x_code = random_log_code(rng, x_shape, act, p_zero)
    x_code.sign.flat[int(rng.integers(0, x_code.sign.size))] = 1
    w_code.sign.reshape(w_code.sign.shape[0], -1)[0, 0] = 1
    wk, xk = k // weight.k, k // act.k
    xe = [int(e) * xk for e, s in zip(x_code.exponent.flat, x_code.sign.flat) if s != 0]
    we = [int(e) * wk for e, s in zip(w_code.exponent.flat, w_code.sign.flat) if s != 0]
    bias = None
    acc_bits = draw(st.integers(20, 62))
    if kind == "pF":  # the smallest term's shift on -2, -1, 0 or 1
        frac_bits = -((min(xe) + min(we)) // k) + draw(st.integers(-2, 1))
    elif kind == "acc":
        frac_bits = draw(st.integers(-3, 8))
        total = channel_sum(x_code, w_code, 0, k, frac_bits)
        acc_bits = min(62, max(2, total.bit_length() + 1))
        limit = 1 << (acc_bits - 1)
        small = min(9, limit - 1)
        bias = rng.integers(-small, small + 1, size=layer.weight_shape[0], dtype=np.int64)
        b0 = limit - 1 + draw(st.integers(0, 1)) - total
        bias[0] = max(-(limit - 1), min(limit - 1, b0)) * (1 if draw(st.booleans()) else -1)
    else:  # channel 0: one term 2**53 at the largest input (plus one more, or not)
        x_code.exponent[x_code.sign != 0] = np.where(
            rng.random(int((x_code.sign != 0).sum())) < 0.5,
            act.e_max,
            x_code.exponent[x_code.sign != 0],
        )
        x_code.exponent.flat[int(np.flatnonzero(x_code.sign.flat)[0])] = act.e_max
        frac_bits = 53 - shift_of(act.e_max * xk, weight.e_max * wk, k, 0)
        w0 = w_code.exponent.reshape(w_code.sign.shape[0], -1)[0]
        s0 = w_code.sign.reshape(w_code.sign.shape[0], -1)[0]
        s0[:] = 0
        s0[0], w0[0] = 1, weight.e_max
        if draw(st.booleans()) and s0.size > 1:
            s0[1] = -1 if draw(st.booleans()) else 1
            w0[1] = draw(st.integers(weight.e_min, weight.e_max))
        acc_bits = 62
    options = dict(
        act=act, weight=weight, accumulate=draw(st.sampled_from(["linear", "log"])),
        acc_bits=acc_bits, acc_frac_bits=frac_bits,
        overflow=draw(st.sampled_from([Overflow.WRAP, Overflow.SAT])),
        log_frac_bits=draw(st.integers(1, 8)), log_add=draw(st.sampled_from(["floor", "mitchell"])),
        sqrt2_mode=draw(st.sampled_from(["split", "split", "shift_add"])),
        sqrt2_frac_bits=draw(st.integers(0, min(20, 63 - acc_bits))),
    )  # fmt: skip
    return layer, options, w_code, x_code, bias


@TIMEOUT
@settings(max_examples=200 if not JIT_DISABLED else 30)
@given(case=log_bound_cases())
def test_log_on_every_path_bound(case):
    layer, options, w_code, x_code, bias = case
    try:
        dp = LogDatapath(**options)
    except ValueError as err:  # a term beyond 2**61: refused by design, not a path
        assert "acc_frac_bits" in str(err)
        return
    gold = dp.run(layer, w_code, x_code, bias, level="golden")
    fast = dp.run(layer, w_code, x_code, bias, level="functional")
    assert_same(fast, gold)


def ones_code(n):
    """n activations of value 1 (exponent 0) in a 1-bit unsigned base-2 format."""
    return LogCode(
        exponent=np.zeros((1, n), np.int64), sign=np.ones((1, n), np.int8),
        format=LogFormat(1, 1, base=2, signed=False),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("w1", "total", "gemm"), [(-55, 1 << 53, True), (-54, (1 << 53) + 1, False)]
)
def test_log_linear_plan_float64_bound_and_floor(w1, total, gemm):
    # x = 1, 1; w = 2**-1, 2**w1; F = 54: shifts 53 and w1 + 54 (-1: floored to 0, or 0: 1)
    weight = LogFormat(7, 0, base=2, signed=True)
    w = LogCode(exponent=np.array([[-1, w1]]), sign=np.array([[1, 1]], np.int8), format=weight)
    dp = LogDatapath(act=ones_code(2).format, weight=weight, acc_bits=62, acc_frac_bits=54)
    op = dp.check(Linear(2, 1), w, ones_code(2), None)
    plan = log_linear_plan(op.x_exp, op.x_sign, op.w_exp, op.w_sign, np.zeros(1, np.int64),
                           k=1, frac_bits=54, acc_bits=62)  # fmt: skip
    assert plan.tolist() == [gemm]
    for level in ("functional", "golden"):
        res = dp.run(Linear(2, 1), w, ones_code(2), level=level)
        assert res.y_raw.tolist() == [[total]]  # by hand
        assert res.counts.overflows == 0


@pytest.mark.parametrize(
    ("bias", "gemm", "y", "n_over"), [(31, True, 127, 0), (32, False, -128, 1)]
)
def test_log_linear_plan_register_bound(bias, gemm, y, n_over):
    # terms 2**6 + 2**5 = 96 in an 8-bit register: bias 31 reaches 127 (the limit, no
    # overflow possible: GEMM); bias 32 reaches 128 (kernel: wraps to -128, one overflow)
    weight = LogFormat(3, 7, base=2, signed=True)
    w = LogCode(exponent=np.array([[6, 5]]), sign=np.array([[1, 1]], np.int8), format=weight)
    dp = LogDatapath(act=ones_code(2).format, weight=weight, acc_bits=8, acc_frac_bits=0)
    b = np.array([bias])
    op = dp.check(Linear(2, 1), w, ones_code(2), b)
    plan = log_linear_plan(op.x_exp, op.x_sign, op.w_exp, op.w_sign, b, k=1, frac_bits=0,
                           acc_bits=8)  # fmt: skip
    assert plan.tolist() == [gemm]
    for level in ("functional", "golden"):
        res = dp.run(Linear(2, 1), w, ones_code(2), b, level=level)
        assert res.y_raw.tolist() == [[y]]
        assert res.counts.overflows == n_over


@pytest.mark.parametrize(
    ("weights", "dtype", "chunks"),
    [
        ([1 << 12], np.float32, (0, 1)),  # 2**12 * 2**12 = 2**24: exact in float32
        ([(1 << 12) + 1], np.float64, (0, 1)),  # one term above 2**24: float64
        ([1 << 12] * 4, np.float32, (0, 1, 2, 3, 4)),  # four pieces of 2**24 (MAX_CHUNKS)
        ([1 << 12] * 5, np.float64, (0, 5)),  # five pieces needed: float64
        ([1 << 11] * 4, np.float32, (0, 2, 4)),  # two pieces of 2**24
        # equal pieces: two would hold 2049 + 2048 > 4096, three fit
        ([(1 << 11) + 1, 1 << 11, 1, 0], np.float32, (0, 1, 2, 4)),
    ],
)
def test_mac_plan_float32_pieces(weights, dtype, chunks):
    w = np.array(weights, dtype=np.int64).reshape(1, len(weights), 1, 1)
    x = np.full((1, len(weights), 1, 1), 1 << 12, dtype=np.int64)
    plan = mac_plan(w, x, np.zeros(1, np.int64), acc_bits=40)
    assert (plan.dtype, plan.chunks, plan.gemm.tolist()) == (dtype, chunks, [0])
    dp = FixedMacDatapath(weight=FixedFormat(14, 0), act=FixedFormat(14, 0), acc_bits=40)
    y = dp.run(Conv2d(len(weights), 1, 1), w, x).y_raw
    assert int(y[0, 0, 0, 0]) == sum(weights) << 12  # by hand
