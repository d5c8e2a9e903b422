"""hypothesis strategies shared by the test modules."""

from dataclasses import dataclass as _dataclass

import numpy as _np
from hypothesis import strategies as _st

from shiftsim.formats import FixedFormat as _FixedFormat
from shiftsim.formats import Overflow as _Overflow
from shiftsim.formats import Rounding as _Rounding
from shiftsim.layers import Conv2d as _Conv2d
from shiftsim.layers import Linear as _Linear

# --- layers (SPEC §5) ------------------------------------------------------------------------


@_st.composite
def layer_and_input_shape(draw, max_channels=4, max_size=6, linear=None):
    """A small Conv2d (every geometry option) or Linear layer and a valid input shape.

    ``linear``: True for a Linear layer, False for a Conv2d, None to draw which.
    """
    batch = draw(_st.integers(1, 2))
    if draw(_st.booleans()) if linear is None else linear:
        cin, cout = draw(_st.integers(1, 8)), draw(_st.integers(1, 4))
        return _Linear(cin, cout), (batch, cin)
    groups = draw(_st.integers(1, 3))
    cin = groups * draw(_st.integers(1, max(1, max_channels // groups)))
    cout = groups * draw(_st.integers(1, 2))
    k = (draw(_st.integers(1, 3)), draw(_st.integers(1, 3)))
    stride = (draw(_st.integers(1, 3)), draw(_st.integers(1, 3)))
    pad = (draw(_st.integers(0, 2)), draw(_st.integers(0, 2)))
    dil = (draw(_st.integers(1, 2)), draw(_st.integers(1, 2)))
    layer = _Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dil, groups=groups)
    span = [d * (kk - 1) + 1 for d, kk in zip(dil, k)]
    h = draw(_st.integers(max(1, span[0] - 2 * pad[0]), max_size))
    w = draw(_st.integers(max(1, span[1] - 2 * pad[1]), max_size))
    return layer, (batch, cin, h, w)


# --- shift-add datapath (SPEC §5.1) -------------------------------------------------------


@_dataclass(frozen=True)
class ShiftCase:
    """One shift-add run: layer, datapath options, raw index/input/bias arrays."""

    layer: object
    n_codebooks: int
    bits: int
    act: object
    shift_frac_bits: int
    shift_rounding: object
    acc_bits: int
    overflow: object
    index: object
    x_raw: object
    bias_raw: object

    def datapath(self):
        """The ShiftAddDatapath with this case's options."""
        from shiftsim.datapath.shift_add import ShiftAddDatapath

        return ShiftAddDatapath(
            n_codebooks=self.n_codebooks,
            bits=self.bits,
            act=self.act,
            shift_frac_bits=self.shift_frac_bits,
            shift_rounding=self.shift_rounding,
            acc_bits=self.acc_bits,
            overflow=self.overflow,
        )

    def code(self):
        """The case's indices as a ShiftCode of scale 1."""
        from shiftsim.quantize import ShiftCode

        return ShiftCode(
            index=self.index, scale=_np.float64(1.0), n_codebooks=self.n_codebooks, bits=self.bits
        )


@_st.composite
def shift_cases(draw, max_channels=4, max_size=6, linear=None, max_acc_bits=62):
    """Small layers (Conv2d with every geometry option, or Linear) with random options.

    The accumulator is drawn narrow often enough that WRAP and SAT really happen.
    """
    is_linear = draw(_st.booleans()) if linear is None else linear
    n_cb = draw(_st.integers(1, 3))
    bits = draw(_st.integers(2, 5))
    half = (1 << (bits - 1)) - 1
    act = _FixedFormat(
        draw(_st.integers(1, 10)), draw(_st.integers(-2, 4)), signed=draw(_st.booleans())
    )
    f = draw(_st.one_of(_st.integers(0, 4), _st.integers(5, 40)))  # int16..int64 buffers
    rounding = draw(_st.sampled_from([_Rounding.TRN, _Rounding.RND]))
    acc_bits = draw(_st.one_of(_st.integers(2, 12), _st.integers(13, 62)))
    acc_bits = min(acc_bits, max_acc_bits)
    overflow = draw(_st.sampled_from([_Overflow.WRAP, _Overflow.SAT]))
    seed = draw(_st.integers(0, 2**32 - 1))
    rng = _np.random.default_rng(seed)
    layer, x_shape = draw(layer_and_input_shape(max_channels, max_size, linear=is_linear))
    # indices: mostly nonzero, some zeros; all magnitudes reachable
    index = rng.integers(-half, half + 1, size=(*layer.weight_shape, n_cb)).astype(_np.int8)
    x_kind = draw(_st.sampled_from(["uniform", "extremes"]))
    if x_kind == "uniform":
        x = rng.integers(act.min_raw, act.max_raw + 1, size=x_shape)
    else:
        x = rng.choice(_np.array([act.min_raw, act.max_raw, 0, min(1, act.max_raw)]), size=x_shape)
    bias = None
    if draw(_st.booleans()):
        lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
        bias = _np.array(
            [draw(_st.integers(lo, hi)) for _ in range(layer.weight_shape[0])], dtype=_np.int64
        )
    return ShiftCase(
        layer, n_cb, bits, act, f, rounding, acc_bits, overflow, index, x.astype(_np.int64), bias
    )


# --- quantizers and formats (SPEC §2-4) ----------------------------------------------------


def float_arrays(dtype=None, min_dims=1, max_dims=3, max_side=5, min_value=None, max_value=None):
    """Finite float32 / float64 arrays, subnormals and signed zeros included, never empty."""
    from hypothesis.extra import numpy as _hnp

    dtypes = _st.sampled_from([_np.float32, _np.float64]) if dtype is None else _st.just(dtype)

    def build(dt):
        width = 32 if dt == _np.float32 else 64
        elements = _st.floats(
            min_value=min_value,
            max_value=max_value,
            allow_nan=False,
            allow_infinity=False,
            width=width,
        )
        shapes = _hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, max_side=max_side)
        return _hnp.arrays(dt, shapes, elements=elements)

    return dtypes.flatmap(build)


def fixed_formats(max_bits=62, frac_bits=(-8, 70)):
    """Any FixedFormat: bits 1..max_bits, frac_bits in the given range, signed or not."""
    return _st.builds(
        _FixedFormat,
        _st.integers(1, max_bits),
        _st.integers(*frac_bits),
        signed=_st.booleans(),
    )


# --- log-domain and fixed-point MAC datapaths (SPEC §5.2, §5.3) --------------------------

from shiftsim.formats import LogFormat as _LogFormat  # noqa: E402 (this section's import)


def random_log_code(rng, shape, fmt, p_zero=0.2):
    """Random LogCode of ``fmt``: exponents uniform over the format, about ``p_zero`` zeros."""
    from shiftsim.quantize import LogCode

    exp = rng.integers(fmt.e_min, fmt.e_max + 1, size=shape).astype(_np.int64)
    sign = _np.where(rng.random(shape) < 0.5, -1, 1) if fmt.signed else _np.ones(shape, int)
    sign = _np.where(rng.random(shape) < p_zero, 0, sign).astype(_np.int8)
    return LogCode(exponent=exp, sign=sign, format=fmt)


@_dataclass(frozen=True)
class LogCase:
    """One log-domain run: layer, LogDatapath keyword options, codes and bias."""

    layer: object
    options: dict
    w_code: object
    x_code: object
    bias_raw: object


@_st.composite
def log_cases(draw, accumulate=None):
    """Small layers with every LogDatapath mode; narrow registers so overflow really happens."""
    layer, x_shape = draw(layer_and_input_shape())
    w_base = draw(_st.sampled_from([2, "sqrt2"]))
    a_base = draw(_st.sampled_from([2, "sqrt2"]))
    k = 2 if "sqrt2" in (w_base, a_base) else 1
    weight = _LogFormat(draw(_st.integers(1, 4)), draw(_st.integers(-2, 2)), w_base, True)
    act = _LogFormat(draw(_st.integers(1, 4)), draw(_st.integers(-2, 6)), a_base,
                     draw(_st.booleans()))  # fmt: skip
    mode = draw(_st.sampled_from(["linear", "log"])) if accumulate is None else accumulate
    acc_bits = draw(_st.one_of(_st.integers(2, 12), _st.integers(13, 62)))
    options = dict(
        act=act,
        weight=weight,
        accumulate=mode,
        acc_bits=acc_bits,
        acc_frac_bits=draw(_st.integers(-3, 12)),
        overflow=draw(_st.sampled_from([_Overflow.WRAP, _Overflow.SAT])),
        log_frac_bits=draw(_st.integers(1 if k == 2 else 0, 8)),
        log_add=draw(_st.sampled_from(["floor", "mitchell"])),
        sqrt2_mode=draw(_st.sampled_from(["split", "shift_add"])),
        sqrt2_frac_bits=draw(_st.integers(0, min(20, 63 - acc_bits))),
        sqrt2_shifts=tuple(sorted(draw(_st.sets(_st.integers(0, 8), min_size=1, max_size=5)))),
    )
    rng = _np.random.default_rng(draw(_st.integers(0, 2**32 - 1)))
    p_zero = draw(_st.sampled_from([0.0, 0.2, 0.7]))
    w_code = random_log_code(rng, layer.weight_shape, weight, p_zero)
    x_code = random_log_code(rng, x_shape, act, p_zero)
    bias = None
    if draw(_st.booleans()):
        half = 1 << (acc_bits - 1)
        bias = rng.integers(-half, half, size=layer.weight_shape[0], dtype=_np.int64)
    return LogCase(layer, options, w_code, x_code, bias)


@_dataclass(frozen=True)
class MacCase:
    """One fixed-point MAC run: layer, FixedMacDatapath options, raw operands and bias."""

    layer: object
    options: dict
    w_raw: object
    x_raw: object
    bias_raw: object


@_st.composite
def mac_cases(draw):
    """Small layers, random fixed formats, narrow accumulators often (WRAP/SAT happen)."""
    layer, x_shape = draw(layer_and_input_shape())
    weight = _FixedFormat(draw(_st.integers(1, 12)), draw(_st.integers(-2, 8)),
                          signed=draw(_st.booleans()))  # fmt: skip
    act = _FixedFormat(draw(_st.integers(1, 12)), draw(_st.integers(-2, 8)),
                       signed=draw(_st.booleans()))  # fmt: skip
    acc_bits = draw(_st.one_of(_st.integers(2, 12), _st.integers(13, 62)))
    options = dict(
        weight=weight,
        act=act,
        acc_bits=acc_bits,
        overflow=draw(_st.sampled_from([_Overflow.WRAP, _Overflow.SAT])),
    )
    rng = _np.random.default_rng(draw(_st.integers(0, 2**32 - 1)))

    def raw(fmt, shape):
        if draw(_st.booleans()):
            return rng.integers(fmt.min_raw, fmt.max_raw + 1, size=shape, dtype=_np.int64)
        return rng.choice(_np.array([fmt.min_raw, fmt.max_raw, 0]), size=shape).astype(_np.int64)

    bias = None
    if draw(_st.booleans()):
        half = 1 << (acc_bits - 1)
        bias = rng.integers(-half, half, size=layer.weight_shape[0], dtype=_np.int64)
    return MacCase(layer, options, raw(weight, layer.weight_shape), raw(act, x_shape), bias)


# --- hardware for the cycle and analytic models (SPEC §7) ---------------------------------


@_st.composite
def hardware_configs(draw, max_units=9):
    """Tiny machines: few units, narrow DRAM, buffers huge or (often too) small."""
    from shiftsim.hardware import Hardware

    def buf():
        return draw(_st.one_of(_st.just(1 << 22), _st.integers(0, 3000)))

    return Hardware(
        shift_width=draw(_st.integers(1, 5)),
        acc_units=draw(_st.integers(1, max_units)),
        tree_width=draw(_st.integers(1, 5)),
        input_buffer_bytes=buf(),
        shift_buffer_bytes=buf(),
        weight_buffer_bytes=buf(),
        output_buffer_bytes=buf(),
        dram_bytes_per_cycle=draw(_st.integers(1, 9)),
        clock_hz=1e8,
        pipelined=draw(_st.booleans()),
        weight_rf_entries=draw(_st.sampled_from([0, 1, 8, 64, 1024])),
        dataflow=draw(_st.sampled_from(["os", "ws", "auto"])),
    )


# --- pooling geometry (network pooling, ONNX MaxPool/AveragePool) -------------------------


@_st.composite
def pool_params(draw, max_size=7):
    """Input ``(h, w)`` and pooling attributes: kernel, stride, dilation, pads (each below
    the window's extent), ceil_mode, count_include_pad; the window may not fit the input."""
    k = tuple(draw(_st.integers(1, 3)) for _ in range(2))
    d = tuple(draw(_st.integers(1, 2)) for _ in range(2))
    ext = [di * (ki - 1) + 1 for ki, di in zip(k, d)]
    pads = tuple(draw(_st.integers(0, ext[i % 2] - 1)) for i in range(4))
    return {
        "hw": tuple(draw(_st.integers(1, max_size)) for _ in range(2)),
        "kernel_size": k,
        "stride": tuple(draw(_st.integers(1, 3)) for _ in range(2)),
        "dilation": d,
        "pads": pads,
        "ceil_mode": draw(_st.booleans()),
        "count_include_pad": draw(_st.booleans()),
    }


def int_op(node, raw):
    """An exact integer operator (pooling, shapes) on raw values: its ``run_int`` output."""
    import numpy as np

    from shiftsim.formats import FixedFormat
    from shiftsim.network import Act

    step = node.run_int(
        [Act(np.asarray(raw, np.int64), FixedFormat(40, 0, signed=True), 1.0)], None
    )
    return step.act.raw


def small_convs(max_ci, max_co, max_hw):
    """Small Conv2d layers (groups 1-2, kernel 1-3, stride 1-2, padding 0-1 below the kernel,
    dilation 1) with an input shape ``(B, C, H, W)`` at least the kernel, batch 1 or 2."""
    return _st.builds(
        lambda g, ci, co, k, s, p, hh, ww, b: (
            _Conv2d(g * ci, g * co, k, stride=s, padding=min(p, k - 1), groups=g),
            (b, g * ci, max(hh, k), max(ww, k)),
        ),
        _st.integers(1, 2), _st.integers(1, max_ci), _st.integers(1, max_co),
        _st.integers(1, 3), _st.integers(1, 2), _st.integers(0, 1), _st.integers(1, max_hw),
        _st.integers(1, max_hw), _st.integers(1, 2),
    )  # fmt: skip


def tiny_machines(units, trees, input_bytes, shift_bytes, weight_bytes):
    """``Hardware.tiny()`` with the given strategies for its units, tree width and buffers, a
    weight register file of 0, 9, 64 or 4096 entries, and every dataflow."""
    from shiftsim.hardware import Hardware

    return _st.builds(
        lambda a, t, ib, sb, wb, rf, flow: Hardware.tiny().replace(
            acc_units=a, tree_width=t, input_buffer_bytes=ib, shift_buffer_bytes=sb,
            weight_buffer_bytes=wb, weight_rf_entries=rf, dataflow=flow,
        ),
        units, trees, input_bytes, shift_bytes, weight_bytes,
        _st.sampled_from([0, 9, 64, 4096]), _st.sampled_from(["os", "ws", "auto"]),
    )  # fmt: skip
