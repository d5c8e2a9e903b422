"""ShiftCNN shift-add datapath (SPEC §5.1): hand-worked tables, golden == functional, bad input.

The hand-worked tests run at every level through the ``run_level`` hook, so the golden model
and the numba kernels answer the same hand-checked questions.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from shiftsim.counts import Counts
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.formats import FixedFormat, Overflow, Rounding
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import ShiftCode, quantize_shiftcnn
from tests.levels import LEVELS
from tests.strategies import shift_cases


def make_code(index, n_codebooks, bits, scale=1.0):
    idx = np.asarray(index, dtype=np.int8)
    return ShiftCode(index=idx, scale=np.float64(scale), n_codebooks=n_codebooks, bits=bits)


@pytest.fixture(params=LEVELS)
def run_level(request):
    """The hook: run a layer at one level of modelling."""

    def run(dp, layer, code, x, bias=None):
        return dp.run(layer, code, np.asarray(x), bias, level=request.param)

    return run


ARITHMETIC = (
    "shift_ops", "negations", "selects", "zero_selects", "adds", "multiplies", "acc_updates",
    "overflows",
)  # fmt: skip


def arithmetic(counts):
    """The arithmetic counts every level agrees on (the cycle level adds hardware counts)."""
    return {name: getattr(counts, name) for name in ARITHMETIC}


def assert_raw(result, expected):
    expected = np.asarray(expected, dtype=np.int64)
    assert result.y_raw.dtype == np.int64
    assert result.y_raw.shape == expected.shape
    np.testing.assert_array_equal(result.y_raw, expected)


# ------------------------------------------------------------------ hand-worked examples


def test_one_channel_2x2(run_level):
    # N=1, B=3: half=3, S = 3 + 1 - 2 = 2; index j of codebook 1 selects sign(j)*(x >> (|j|-1)).
    # x = 8 everywhere, indices [[1, -2], [3, 0]]:
    #   1 -> +(8>>0) = 8;  -2 -> -(8>>1) = -4;  3 -> +(8>>2) = 2;  0 -> 0.   y = 6
    dp = ShiftAddDatapath(n_codebooks=1, bits=3)
    code = make_code([[[[[1], [-2]], [[3], [0]]]]], 1, 3)
    res = run_level(dp, Conv2d(1, 1, 2), code, [[[[8, 8], [8, 8]]]])
    assert_raw(res, [[[[6]]]])
    # counts by hand: 4 inputs x S=2 shifts; 4 x 3 negated twins; 4 selections, one of them
    # index 0; adder tree over 1 channel = 1 add per step; 4 steps (n, kh, kw).
    assert arithmetic(res.counts) == arithmetic(
        Counts(shift_ops=8, negations=12, selects=4, zero_selects=1, adds=4, acc_updates=4)
    )
    assert res.out_format == FixedFormat(32, 0)
    assert float(res.y[0, 0, 0, 0]) == 6.0


def test_truncation_and_rounding(run_level):
    # N=1, B=3; one tap, index 3 -> shift s=2. shift_frac_bits f=1: r = x << 1.
    # x=5: r=10; TRN 10>>2 = 2; RND (10+2)>>2 = 3.  x=-5 (signed act): r=-10;
    # TRN -10>>2 = floor(-2.5) = -3; RND (-10+2)>>2 = -2.
    layer = Conv2d(1, 1, 1)
    code = make_code([[[[[3]]]]], 1, 3)
    x = [[[[5, -5]]]]
    act = FixedFormat(4, 0, signed=True)
    trn = ShiftAddDatapath(n_codebooks=1, bits=3, act=act, shift_frac_bits=1)
    rnd = ShiftAddDatapath(
        n_codebooks=1, bits=3, act=act, shift_frac_bits=1, shift_rounding=Rounding.RND
    )
    assert_raw(run_level(trn, layer, code, x), [[[[2, -3]]]])
    res = run_level(rnd, layer, code, x)
    assert_raw(res, [[[[3, -2]]]])
    # the output keeps fa + f = 1 fractional bit: 3 * 2**-1
    assert res.out_format.frac_bits == 1
    np.testing.assert_array_equal(res.y, [[[[1.5, -1.0]]]])


@pytest.mark.parametrize(
    ("overflow", "expected", "n_overflows"),
    [
        # acc_bits=4: range [-8, 7]. x = [7, 7]; codebook 1 indices [1, 1] -> +7, +7;
        # codebook 2 indices [-1, -1] -> -(7 >> (1 + 2 - 2)) = -3, -3.
        # Order n, kh, kw: SAT: 7, 14->7 (1 overflow), 4, 1.
        (Overflow.SAT, 1, 1),
        # WRAP: 7, 14->-2 (1 overflow), -5, -8 = 8 mod 16 (the order does not matter).
        (Overflow.WRAP, -8, 1),
    ],
)
def test_saturation_follows_the_contract_order(run_level, overflow, expected, n_overflows):
    # (with kw outer and n inner SAT would give 7-3=4, 4+7=11->7, 7-3=4: 4, not 1)
    dp = ShiftAddDatapath(n_codebooks=2, bits=2, acc_bits=4, overflow=overflow)
    code = make_code([[[[[1, -1], [1, -1]]]]], 2, 2)
    res = run_level(dp, Conv2d(1, 1, (1, 2)), code, [[[[7, 7]]]])
    assert_raw(res, [[[[expected]]]])
    assert res.counts.overflows == n_overflows
    assert res.counts.acc_updates == 4


def test_padding_bias_and_stride(run_level):
    # 3x3 kernel, padding 1, stride 2 on a 3x3 input: outputs at rows/cols {0, 2} of the
    # input, each seeing a 2x2 corner. N=1, B=2: half=1, S=0; index 1 = +x, -1 = -x.
    # Weights: +1 at the center, -1 at the bottom-right tap, 0 elsewhere; bias 100.
    idx = np.zeros((1, 1, 3, 3, 1), dtype=np.int8)
    idx[0, 0, 1, 1, 0] = 1
    idx[0, 0, 2, 2, 0] = -1
    x = np.arange(1, 10).reshape(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    # out(0,0): center x[0,0]=1, bottom-right x[1,1]=5 -> 100 + 1 - 5 = 96
    # out(0,1): center x[0,2]=3, bottom-right x[1,3] = padding 0 -> 103
    # out(1,0): center x[2,0]=7, bottom-right x[3,1] = padding -> 107;  out(1,1): 109
    dp = ShiftAddDatapath(n_codebooks=1, bits=2)
    res = run_level(dp, Conv2d(1, 1, 3, stride=2, padding=1), make_code(idx, 1, 2), x, [100])
    assert_raw(res, [[[[96, 103], [107, 109]]]])
    # 4 outputs x 9 taps = 36 selects, 7 of the 9 indices are 0 -> 28 zero selects; S=0.
    assert arithmetic(res.counts) == arithmetic(
        Counts(shift_ops=0, negations=9, selects=36, zero_selects=28, adds=36, acc_updates=36)
    )


def test_linear_batch(run_level):
    # Linear(3, 2), N=2, B=3 (half=3, S=3). Codebook n=2 selects x >> (|j| + 0).
    # out 0: [1, 0] [-2, 0] [0, 3] -> x0 - (x1 >> 1) + (x2 >> 3)
    # out 1: [0, 1] [0, 0] [-3, -1] -> (x0 >> 1) - (x2 >> 2) - (x2 >> 1)
    # x = [4, 8, 16]: out0 = 4 - 4 + 2 = 2; out1 = 2 - 4 - 8 = -10
    # x = [1, 3, 255]: out0 = 1 - 1 + 31 = 31; out1 = 0 - 63 - 127 = -190
    idx = [[[1, 0], [-2, 0], [0, 3]], [[0, 1], [0, 0], [-3, -1]]]
    dp = ShiftAddDatapath(n_codebooks=2, bits=3)
    res = run_level(dp, Linear(3, 2), make_code(idx, 2, 3), [[4, 8, 16], [1, 3, 255]])
    assert_raw(res, [[2, -10], [31, -190]])
    assert res.counts.selects == 2 * 2 * 2 * 3
    assert res.counts.zero_selects == 2 * 6  # 3 zero indices per output, 2 outputs, 2 rows


def test_depthwise_groups(run_level):
    # groups=2: output channel 0 reads input channel 0 only, output 1 reads input 1.
    # N=1, B=3, 1x1 kernel: out0 = x0 >> 1 (index 2), out1 = -(x1) (index -1).
    dp = ShiftAddDatapath(n_codebooks=1, bits=3)
    code = make_code([[[[[2]]]], [[[[-1]]]]], 1, 3)
    x = [[[[6, 7]], [[10, 11]]]]
    res = run_level(dp, Conv2d(2, 2, 1, groups=2), code, x)
    assert_raw(res, [[[[3, 3]], [[-10, -11]]]])


def test_per_channel_scale_dequantizes_per_channel():
    dp = ShiftAddDatapath(n_codebooks=1, bits=2)
    idx = np.ones((2, 1, 1, 1, 1), dtype=np.int8)
    code = ShiftCode(index=idx, scale=np.array([0.5, 2.0]), n_codebooks=1, bits=2, axis=0)
    res = dp.run(Conv2d(1, 2, 1), code, np.array([[[[3]]]]))
    np.testing.assert_array_equal(res.y, [[[[1.5]], [[6.0]]]])


# ------------------------------------------------------------------ golden == functional


def run_both(case):
    dp = ShiftAddDatapath(
        n_codebooks=case.n_codebooks,
        bits=case.bits,
        act=case.act,
        shift_frac_bits=case.shift_frac_bits,
        shift_rounding=case.shift_rounding,
        acc_bits=case.acc_bits,
        overflow=case.overflow,
    )
    code = make_code(case.index, case.n_codebooks, case.bits)
    gold = dp.run(case.layer, code, case.x_raw, case.bias_raw, level="golden")
    fast = dp.run(case.layer, code, case.x_raw, case.bias_raw, level="functional")
    return gold, fast


@given(case=shift_cases())
def test_functional_equals_golden(case):
    gold, fast = run_both(case)
    assert fast.y_raw.dtype == gold.y_raw.dtype == np.int64
    assert fast.y_raw.shape == gold.y_raw.shape
    np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
    assert fast.counts == gold.counts
    lo, hi = -(1 << (case.acc_bits - 1)), (1 << (case.acc_bits - 1)) - 1
    assert gold.y_raw.min() >= lo and gold.y_raw.max() <= hi


@settings(max_examples=60)
@given(case=shift_cases(linear=False, max_acc_bits=8))
def test_functional_equals_golden_narrow_accumulator(case):
    # narrow accumulators: the checked path, with real overflows
    gold, fast = run_both(case)
    np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
    assert fast.counts == gold.counts


def test_overflow_really_happens_in_the_hypothesis_space(rng):
    # the narrow-accumulator property above is not vacuous: such cases do overflow
    dp = ShiftAddDatapath(acc_bits=8, overflow=Overflow.SAT)
    layer = Conv2d(4, 2, 3, padding=1)
    idx = rng.integers(1, 8, size=(*layer.weight_shape, 2)).astype(np.int8)
    x = np.full((1, 4, 5, 5), 255)
    gold = dp.run(layer, make_code(idx, 2, 4), x, level="golden")
    fast = dp.run(layer, make_code(idx, 2, 4), x)
    assert gold.counts.overflows > 0
    np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
    assert fast.counts == gold.counts
    assert (gold.y_raw == 127).any()


def test_real_layer_with_quantized_weights_matches_golden(rng):
    layer = Conv2d(6, 4, 3, stride=(1, 2), padding=1, groups=2)
    w = rng.normal(size=layer.weight_shape)
    code = quantize_shiftcnn(w, 2, 4)
    x = rng.integers(0, 256, size=(2, 6, 7, 9))
    for overflow in Overflow:
        dp = ShiftAddDatapath(overflow=overflow, acc_bits=12)
        gold = dp.run(layer, code, x, np.arange(-2, 2) * 50, level="golden")
        fast = dp.run(layer, code, x, np.arange(-2, 2) * 50)
        np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
        assert fast.counts == gold.counts


# ------------------------------------------------------------------ bad input


@pytest.fixture
def no_kernels(monkeypatch):
    """Make every kernel fail loudly: validation must raise before any of them runs."""
    import shiftsim.kernels.shift_add as k

    def boom(*args):
        raise AssertionError("a kernel ran")

    for name in k.__all__:
        monkeypatch.setattr(k, name, boom)


def _ok():
    dp = ShiftAddDatapath(n_codebooks=2, bits=4)
    layer = Conv2d(2, 3, 3)
    code = make_code(np.zeros((3, 2, 3, 3, 2)), 2, 4)
    return dp, layer, code, np.zeros((1, 2, 4, 4), dtype=np.int64)


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (lambda a: {**a, "code": a["code"].index}, TypeError, "code must be a ShiftCode"),
        (lambda a: {**a, "code": make_code(np.zeros((3, 2, 3, 3, 3)), 3, 4)}, ValueError,
         "n_codebooks=3"),
        (lambda a: {**a, "code": make_code(np.zeros((3, 2, 3, 2, 2)), 2, 4)}, ValueError,
         "code.index must have shape"),
        (lambda a: {**a, "code": make_code(np.full((3, 2, 3, 3, 2), 8), 2, 4)}, ValueError,
         "code.index holds 8"),
        (lambda a: {**a, "code": make_code(np.full((3, 2, 3, 3, 2), -8), 2, 4)}, ValueError,
         "code.index holds -8"),
        (lambda a: {**a, "x": a["x"].astype(np.float64)}, TypeError, "x_raw must be an integer"),
        (lambda a: {**a, "x": a["x"] + 256}, ValueError, "x_raw holds raw value 256"),
        (lambda a: {**a, "x": a["x"] - 1}, ValueError, "x_raw holds raw value -1"),
        (lambda a: {**a, "x": a["x"][:, :1]}, ValueError, "x_raw must have shape"),
        (lambda a: {**a, "x": np.zeros((1, 2, 2, 2), np.int64)}, ValueError, "larger than"),
        (lambda a: {**a, "bias": np.zeros(2, np.int64)}, ValueError, "bias_raw must have shape"),
        (lambda a: {**a, "bias": np.array([0, 0, 1 << 31])}, ValueError, "bias_raw holds"),
        (lambda a: {**a, "bias": np.zeros(3)}, TypeError, "bias_raw must be an integer"),
        (lambda a: {**a, "layer": "conv"}, TypeError, "layer must be"),
    ],
)  # fmt: skip
def test_bad_run_arguments_raise_before_any_kernel(no_kernels, change, error, words):
    dp, layer, code, x = _ok()
    args = change({"layer": layer, "code": code, "x": x, "bias": None})
    with pytest.raises(error, match=words.replace("(", r"\(").replace(".", r"\.")):
        dp.run(args["layer"], args["code"], args["x"], args["bias"])


def test_shift_frac_bits_beyond_int64_is_refused(no_kernels):
    dp = ShiftAddDatapath(shift_frac_bits=60, act=FixedFormat(8, 0, signed=False))
    layer = Conv2d(2, 1, 1)
    code = make_code(np.ones((1, 2, 1, 1, 2)), 2, 4)
    with pytest.raises(ValueError, match="shift_frac_bits=60"):
        dp.run(layer, code, np.full((1, 2, 1, 1), 255))


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"n_codebooks": 0}, ValueError, "n_codebooks must be in"),
        ({"n_codebooks": 2.0}, TypeError, "n_codebooks must be an int"),
        ({"bits": 9}, ValueError, "bits must be in"),
        ({"bits": 1}, ValueError, "bits must be in"),
        ({"acc_bits": 63}, ValueError, "acc_bits must be in"),
        ({"acc_bits": 1}, ValueError, "acc_bits must be in"),
        ({"shift_frac_bits": -1}, ValueError, "shift_frac_bits must be in"),
        ({"shift_rounding": Rounding.RND_CONV}, ValueError, "shift_rounding must be"),
        ({"shift_rounding": "TRN"}, ValueError, "shift_rounding must be"),
        ({"overflow": "WRAP"}, TypeError, "overflow must be an Overflow"),
        ({"act": 8}, TypeError, "act must be a FixedFormat"),
        ({"weight_axis": 1}, ValueError, "weight_axis must be None or 0"),
    ],
)
def test_bad_configuration(kwargs, error, words):
    with pytest.raises(error, match=words):
        ShiftAddDatapath(**kwargs)


def test_configuration_is_frozen_and_keyword_only():
    dp = ShiftAddDatapath()
    with pytest.raises(AttributeError):
        dp.bits = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        ShiftAddDatapath(2, 4)  # type: ignore[misc]
    assert dp.max_shift == 7  # N=2, B=4: S = 7 + 2 - 2, P - 1 = 2 * (S + 1) = 16


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.uint64])
def test_any_integer_input_dtype(dtype):
    dp = ShiftAddDatapath(n_codebooks=1, bits=3)
    code = make_code([[[[[1], [-2]], [[3], [0]]]]], 1, 3)
    res = dp.run(Conv2d(1, 1, 2), code, np.full((1, 1, 2, 2), 200, dtype=dtype))
    assert_raw(res, [[[[200 - 100 + 50]]]])


@settings(max_examples=40)
@given(case=shift_cases(linear=False, max_size=9))
def test_tiled_rows_equal_golden(case):
    # force tiles of a single output row: every (channel, tile) pair lists its own terms
    import shiftsim.datapath.shift_add as dp_module

    old = dp_module._TILE_LANES
    dp_module._TILE_LANES = 1
    try:
        gold, fast = run_both(case)
    finally:
        dp_module._TILE_LANES = old
    np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
    assert fast.counts == gold.counts


@settings(max_examples=60)
@given(case=shift_cases(linear=False, max_size=9))
def test_whole_row_adders_equal_golden(case):
    # tiles summed whole-row at once (as on large layers), not ROW lanes at a time
    import shiftsim.datapath.shift_add as dp_module

    old = dp_module._SHORT_LANES
    dp_module._SHORT_LANES = 0
    try:
        gold, fast = run_both(case)
    finally:
        dp_module._SHORT_LANES = old
    np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
    assert fast.counts == gold.counts


@pytest.mark.parametrize(("short_lanes", "size"), [(256, 12), (1 << 20, 22)])
def test_short_row_adders_in_blocks_equal_golden(rng, short_lanes, size):
    # the short-row adders at their widths: one tile of 12 x 14 = 168 lanes (run-time width),
    # and (forced) 22 x 24 = 528 lanes, three blocks; both index signs, zeros, bias
    import shiftsim.datapath.shift_add as dp_module

    layer = Conv2d(2, 3, 3, padding=1)
    idx = rng.integers(-7, 8, size=(*layer.weight_shape, 2)).astype(np.int8)
    x = rng.integers(0, 256, size=(1, 2, size, size))
    dp = ShiftAddDatapath()
    old = dp_module._SHORT_LANES
    dp_module._SHORT_LANES = short_lanes
    try:
        fast = dp.run(layer, make_code(idx, 2, 4), x, np.array([5, -7, 0]))
    finally:
        dp_module._SHORT_LANES = old
    gold = dp.run(layer, make_code(idx, 2, 4), x, np.array([5, -7, 0]), level="golden")
    np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
    assert fast.counts == gold.counts


@pytest.mark.parametrize(
    ("cg", "width", "kernel"),
    [
        (5, 16, "adder_array_steps"),  # 16 x 16 = 256 lanes: short rows, on the bound
        (5, 17, "adder_array_checked"),  # 16 x 17 = 272 lanes: long rows of 5 terms a step
        (4, 17, "adder_array_steps"),  # long rows, steps of FEW_TERMS terms
    ],
)
def test_checked_adders_chosen_at_their_bounds(monkeypatch, rng, cg, width, kernel):
    # 1x1 convolution, no padding: a tile is 16 rows of `width` lanes; a 9-bit SAT register
    import shiftsim.datapath.shift_add as sa

    assert sa._SHORT_LANES == 256 and sa._k.FEW_TERMS == 4
    calls = []
    for name in ("adder_array_steps", "adder_array_checked", "adder_array_fast"):
        real = getattr(sa._k, name)
        monkeypatch.setattr(sa._k, name, lambda *a, _n=name, _f=real: calls.append(_n) or _f(*a))
    layer = Conv2d(cg, 3, 1)
    idx = rng.integers(-7, 8, size=(*layer.weight_shape, 2)).astype(np.int8)
    x = rng.integers(0, 256, size=(1, cg, 16, width))
    dp = ShiftAddDatapath(acc_bits=9, overflow=Overflow.SAT)
    fast = dp.run(layer, make_code(idx, 2, 4), x, np.array([5, -7, 0]))
    assert calls == [kernel]
    gold = dp.run(layer, make_code(idx, 2, 4), x, np.array([5, -7, 0]), level="golden")
    np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
    assert fast.counts == gold.counts and gold.counts.overflows > 0


@pytest.mark.parametrize(
    ("stride", "padding", "size"),
    [((2, 2), 0, (7, 8)), ((3, 1), 0, (8, 5)), ((1, 1), 0, (4, 4)), ((2, 2), 1, (7, 8))],
)
@pytest.mark.parametrize("acc_bits", [32, 9])  # unchecked and checked adders
def test_strided_1x1_convolutions_equal_golden(rng, stride, padding, size, acc_bits):
    # strided 1x1 convolutions without padding run at stride 1 on the inputs they read
    layer = Conv2d(3, 4, 1, stride=stride, padding=padding)
    idx = rng.integers(-7, 8, size=(*layer.weight_shape, 2)).astype(np.int8)
    x = rng.integers(0, 256, size=(2, 3, *size))
    dp = ShiftAddDatapath(acc_bits=acc_bits, overflow=Overflow.SAT)
    gold = dp.run(layer, make_code(idx, 2, 4), x, np.array([5, -7, 0, 3]), level="golden")
    fast = dp.run(layer, make_code(idx, 2, 4), x, np.array([5, -7, 0, 3]))
    assert fast.y_raw.shape == gold.y_raw.shape == (2, 4, *layer.output_hw(*size))
    np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
    assert fast.counts == gold.counts
    assert (gold.counts.overflows > 0) == (acc_bits == 9)


@pytest.mark.parametrize("batch_bytes", [1, 10000, 1 << 24])  # 1, 2 (2+2+1) or 5 items
@pytest.mark.parametrize("acc_bits", [32, 9])  # unchecked and checked adders
def test_batch_items_share_kernel_launches(monkeypatch, rng, batch_bytes, acc_bits):
    # one launch per item, a few items per launch (last launch partial), all items in one
    import shiftsim.datapath.shift_add as sa

    monkeypatch.setattr(sa, "_BATCH_BYTES", batch_bytes)
    layer = Conv2d(3, 4, 3, stride=(1, 2), padding=1)
    idx = rng.integers(-7, 8, size=(*layer.weight_shape, 2)).astype(np.int8)
    x = rng.integers(0, 256, size=(5, 3, 6, 7))
    dp = ShiftAddDatapath(acc_bits=acc_bits, overflow=Overflow.SAT)
    gold = dp.run(layer, make_code(idx, 2, 4), x, level="golden")
    fast = dp.run(layer, make_code(idx, 2, 4), x)
    np.testing.assert_array_equal(fast.y_raw, gold.y_raw)
    assert fast.counts == gold.counts
    assert (gold.counts.overflows > 0) == (acc_bits == 9)
