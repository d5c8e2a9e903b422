"""Co-simulation: the reference RTL passes shiftsim's vectors in Icarus Verilog (via cocotb).

hypothesis draws the hardware parameters (formats, widths, lanes) of each compiled lane and a
batch of random layers, data and biases for it; every batch is one simulator run, compared
value by value. Without Icarus Verilog the tests are skipped with a loud reason, unless
``SHIFTSIM_REQUIRE_HDL=1`` (set by CI), where they fail.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.formats import FixedFormat, LogFormat, Overflow, Rounding
from shiftsim.layers import Linear
from shiftsim.quantize import ShiftCode
from shiftsim.rtl import write_vectors
from shiftsim.rtl.cosim import run_cosim, simulator_missing
from tests.strategies import layer_and_input_shape, random_log_code

MISSING = simulator_missing()
REQUIRE = os.environ.get("SHIFTSIM_REQUIRE_HDL", "0") not in ("", "0")
#: Layers per simulator run (one compiled parameter set).
BATCH = int(os.environ.get("SHIFTSIM_COSIM_BATCH", "30"))
_ONE_RUN = settings(max_examples=1, phases=[Phase.explicit, Phase.generate], deadline=None)

pytestmark = pytest.mark.jit_only  # one run suffices: the RTL does not depend on numba


@pytest.fixture(scope="module", autouse=True)
def _simulator():
    if MISSING:
        if REQUIRE:
            pytest.fail(f"SHIFTSIM_REQUIRE_HDL is set but the RTL cannot be simulated: {MISSING}")
        pytest.skip(f"RTL CO-SIMULATION NOT RUN: {MISSING}")


@st.composite
def _layer(draw, lanes):
    """A small Conv2d (any geometry) or Linear layer whose C/groups fits ``lanes``."""
    if draw(st.integers(0, 4)) == 0:
        batch = draw(st.integers(1, 2))
        return Linear(draw(st.integers(1, lanes)), draw(st.integers(1, 3))), (batch,)
    layer, shape = draw(layer_and_input_shape(max_channels=lanes, max_size=5, linear=False))
    return layer, shape


def _full_shape(layer, shape):
    return (shape[0], layer.in_features) if isinstance(layer, Linear) else shape


def _bias(draw, rng, n, fmt_bits):
    if not draw(st.booleans()):
        return None
    half = 1 << (fmt_bits - 1)
    return rng.integers(-half, half, size=n, dtype=np.int64)


def _raw(draw, rng, fmt, shape):
    if draw(st.booleans()):
        return rng.integers(fmt.min_raw, fmt.max_raw + 1, size=shape, dtype=np.int64)
    return rng.choice(np.array([fmt.min_raw, fmt.max_raw, 0]), size=shape).astype(np.int64)


def _run(batch, root):
    dirs = []
    for k, (dp, layer, code, x, bias, lanes) in enumerate(batch):
        d = root / f"v{k:03d}"
        write_vectors(d, dp, layer, code, x, bias, lanes=lanes)
        dirs.append(d)
    result = run_cosim(dirs, root / "build")
    assert result["mismatches"] == 0, result["first"]
    assert result["dirs"] == len(batch)
    return result


@pytest.mark.parametrize("rounding", [Rounding.TRN, Rounding.RND], ids=["TRN", "RND"])
@pytest.mark.parametrize("overflow", [Overflow.WRAP, Overflow.SAT], ids=["WRAP", "SAT"])
@_ONE_RUN
@given(data=st.data())
def test_shiftcnn_lane_passes_vectors(tmp_path_factory, rounding, overflow, data):
    draw = data.draw
    n_cb, bits, lanes = draw(st.integers(1, 3)), draw(st.integers(2, 5)), draw(st.integers(1, 4))
    dp = ShiftAddDatapath(
        n_codebooks=n_cb,
        bits=bits,
        act=FixedFormat(draw(st.integers(1, 8)), 0, signed=draw(st.booleans())),
        shift_frac_bits=draw(st.integers(0, 3)),
        shift_rounding=rounding,
        acc_bits=draw(st.integers(3, 20)),
        overflow=overflow,
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    half = (1 << (bits - 1)) - 1
    batch = []
    for _ in range(BATCH):
        layer, shape = draw(_layer(lanes))
        shape = _full_shape(layer, shape)
        index = rng.integers(-half, half + 1, size=(*layer.weight_shape, n_cb)).astype(np.int8)
        code = ShiftCode(index=index, scale=np.float64(1.0), n_codebooks=n_cb, bits=bits)
        bias = _bias(draw, rng, layer.weight_shape[0], dp.acc_bits)
        batch.append((dp, layer, code, _raw(draw, rng, dp.act, shape), bias, lanes))
    _run(batch, tmp_path_factory.mktemp("cosim"))


@pytest.mark.parametrize("overflow", [Overflow.WRAP, Overflow.SAT], ids=["WRAP", "SAT"])
@_ONE_RUN
@given(data=st.data())
def test_mac_lane_passes_vectors(tmp_path_factory, overflow, data):
    draw = data.draw
    lanes = draw(st.integers(1, 4))
    dp = FixedMacDatapath(
        weight=FixedFormat(draw(st.integers(2, 8)), 0, signed=draw(st.booleans())),
        act=FixedFormat(draw(st.integers(1, 8)), 0, signed=draw(st.booleans())),
        acc_bits=draw(st.integers(3, 24)),
        overflow=overflow,
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batch = []
    for _ in range(BATCH):
        layer, shape = draw(_layer(lanes))
        w = _raw(draw, rng, dp.weight, layer.weight_shape)
        x = _raw(draw, rng, dp.act, _full_shape(layer, shape))
        batch.append((dp, layer, w, x, _bias(draw, rng, layer.weight_shape[0], dp.acc_bits), lanes))
    _run(batch, tmp_path_factory.mktemp("cosim"))


@pytest.mark.parametrize(
    ("accumulate", "log_add", "overflow"),
    [
        ("linear", "floor", Overflow.WRAP),
        ("linear", "floor", Overflow.SAT),
        ("log", "floor", Overflow.WRAP),
        ("log", "mitchell", Overflow.SAT),
    ],
    ids=["linear-WRAP", "linear-SAT", "log-floor-WRAP", "log-mitchell-SAT"],
)
@_ONE_RUN
@given(data=st.data())
def test_log_lane_passes_vectors(tmp_path_factory, accumulate, log_add, overflow, data):
    draw = data.draw
    dp = LogDatapath(
        act=LogFormat(draw(st.integers(1, 4)), draw(st.integers(-2, 6)), 2, draw(st.booleans())),
        weight=LogFormat(draw(st.integers(1, 4)), draw(st.integers(-3, 3)), 2, True),
        accumulate=accumulate,
        log_add=log_add,
        overflow=overflow,
        acc_bits=draw(st.integers(3, 20)),
        acc_frac_bits=draw(st.integers(-2, 8)),
        log_frac_bits=draw(st.integers(0, 5)),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batch = []
    for _ in range(BATCH):
        layer, shape = draw(_layer(4))
        p_zero = draw(st.sampled_from([0.0, 0.2, 0.7]))
        w = random_log_code(rng, layer.weight_shape, dp.weight, p_zero)
        x = random_log_code(rng, _full_shape(layer, shape), dp.act, p_zero)
        bias = _bias(draw, rng, layer.weight_shape[0], dp.acc_bits)
        batch.append((dp, layer, w, x, bias, None))
    _run(batch, tmp_path_factory.mktemp("cosim"))


def test_bench_reports_a_wrong_expected_value(tmp_path, rng):
    # the comparison can fail: a copy with one corrupted accumulator value gives one mismatch,
    # and every expected value of both copies is compared (one simulator run)
    dp = ShiftAddDatapath(n_codebooks=2, bits=3, acc_bits=10, overflow=Overflow.SAT)
    layer = Linear(3, 2)
    index = rng.integers(-3, 4, size=(2, 3, 2)).astype(np.int8)
    code = ShiftCode(index=index, scale=np.float64(1.0), n_codebooks=2, bits=3)
    x = rng.integers(0, 256, size=(2, 3))
    manifest = write_vectors(tmp_path / "good", dp, layer, code, x)
    write_vectors(tmp_path / "bad", dp, layer, code, x)
    acc_file = tmp_path / "bad" / "acc.hex"
    lines = acc_file.read_text().splitlines()
    lines[2] = f"{(int(lines[2], 16) + 1) % 1024:03x}"
    acc_file.write_text("\n".join(lines) + "\n")
    result = run_cosim([tmp_path / "good", tmp_path / "bad"], tmp_path / "build")
    n_steps = manifest["tables"]["steps"]["rows"]
    n_out = manifest["tables"]["outputs"]["rows"]
    per_step = sum(
        f["table"] == "steps" and f["role"] in ("comb", "reg") for f in manifest["fields"]
    )
    per_out = sum(f["role"] == "final" for f in manifest["fields"])
    shift_rows = manifest["tables"]["shift_unit"]["rows"]
    assert result["checks"] == 2 * (n_steps * per_step + n_out * per_out + shift_rows)
    assert result["mismatches"] == 1
    assert result["first"][0].startswith("bad step 1 acc")
