"""Fixed against calibrated activation scaling, the log weights' gain, and range warnings."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from shiftsim import FixedFormat, LogDatapath, LogFormat, ShiftAddDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.layers import Linear
from shiftsim.network import Network, Node, RangeWarning, weight_gain
from shiftsim.network.activations import act_format, log_calibrated_format, log_carrier_format
from shiftsim.quantize import quantize_log


def _identity_net() -> Network:
    """fc1 (1 -> 1, weight 1) -> ReLU -> fc2 (1 -> 1, weight 0.5): y = x / 2 in float."""
    return Network(
        [
            Node(name="fc1", op="conv", layer=Linear(1, 1), weight=np.array([[1.0]])),
            Node(name="relu", op="relu"),
            Node(name="fc2", op="conv", layer=Linear(1, 1), weight=np.array([[0.5]])),
        ],
        input_shape=(1,),
    )


def test_log_carrier_format_by_hand() -> None:
    # LogFormat(2, 2): codes 2**-1, 2**0, 2**1 (e_min = -1): 4 fractional bits below 2**-1
    assert log_carrier_format(LogFormat(2, 2, signed=False)) == FixedFormat(7, 5, signed=False)
    assert log_carrier_format(LogFormat(3, 7, signed=True)) == FixedFormat(12, 4, signed=True)
    # base sqrt2, fsr 1: e_max 1, e_min -5 (half octaves): smallest code 2**-2.5; + sign bit
    assert log_carrier_format(LogFormat(3, 1, base="sqrt2")) == FixedFormat(9, 7, signed=True)
    with pytest.raises(ValueError, match="scaling='fixed' cannot carry"):
        log_carrier_format(LogFormat(7, 0))
    dp = LogDatapath(act=LogFormat(3, 7, signed=False))
    # calibrated: codes 2**0 .. 2**6 round up from 2**6.5, so the top is 2**6 (integer bits 6)
    assert act_format(dp) == FixedFormat(10, 4, signed=False)
    assert log_calibrated_format(LogFormat(3, 7, signed=True)) == FixedFormat(11, 4, signed=True)
    # base sqrt2, fsr 5, 4 bits: top code 2**4.5 clips from 2**4.75: carrier top 2**4; e_min -5
    assert log_calibrated_format(LogFormat(4, 5, base="sqrt2")) == FixedFormat(12, 7, signed=True)
    # 7-bit base 2: 127 octaves of codes; the LSB stops at 61 bits (lower codes flush)
    assert log_calibrated_format(LogFormat(7, 0, signed=False)) == FixedFormat(61, 62, signed=False)
    assert act_format(dp, "fixed") == FixedFormat(11, 4, signed=False)
    with pytest.raises(ValueError, match="scaling must be one of"):
        act_format(dp, "peak")


@pytest.mark.parametrize(
    ("x", "want"),
    [
        # fc2's input is x itself; LogFormat(2, fsr=2) has codes 0.5, 1, 2 and flushes below
        # 2**-1.5. fc2's weight 0.5 is exact; y = code(x) / 2.
        (3.0, 1.0),  # log2 3 = 1.58 rounds to 2 > e_max = 1: clipped to 2
        (1.3, 0.5),  # rounds to 2**0
        (0.6, 0.25),  # rounds to 2**-1
        (0.3, 0.0),  # log2 0.3 = -1.74 rounds to -2 <= e_min - 1: flushed
    ],
)
def test_fixed_scaling_uses_the_paper_fsr(x: float, want: float) -> None:
    net = _identity_net()
    # fc1 (a fine MAC) passes x on in the network's units (fixed scaling: scale 1)
    mac = FixedMacDatapath(weight=FixedFormat(8, 6), act=FixedFormat(12, 8, signed=False))
    dp = LogDatapath(act=LogFormat(2, 2, signed=False), weight=LogFormat(4, 0))
    cal = np.array([[0.3], [0.6], [1.3], [3.0], [4.0]])  # the input's scale: 4.0 is its top
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RangeWarning)  # 3.0 clips
        res = net.run(np.array([[x]]), {"fc1": mac, "fc2": dp}, calibration=cal, scaling="fixed")
    assert res.output is not None
    assert res.output.tolist() == [[want]]


def test_fixed_scaling_puts_a_log_input_peak_on_the_top_code() -> None:
    # the network input is calibrated with either scaling: read by LogFormat(2, 2) (codes
    # 0.5, 1, 2; 2 from 2**1.5), the peak 4.0 maps to 2 - 1/32 (the carrier's 5 fractional
    # bits), scale s = 4 / (63/32): 4.0 -> code 2, 2.0 -> 0.984 -> code 1, 1.2 -> 0.59 ->
    # code 0.5, 0.5 -> 0.246 -> flushed. fc1 (weight 1) gives code * s in network units,
    # which fc2 on a fine MAC passes on times 0.5.
    net = _identity_net()
    log = LogDatapath(act=LogFormat(2, 2, signed=False), weight=LogFormat(4, 0))
    mac = FixedMacDatapath(weight=FixedFormat(8, 6), act=FixedFormat(16, 8, signed=False))
    x = np.array([[4.0], [2.0], [1.2], [0.5]])
    res = net.run(x, {"fc1": log, "fc2": mac}, calibration=x, scaling="fixed")
    assert res.output is not None
    s = 4 / (63 / 32)
    got = res.output.ravel()
    want = [2 * s / 2, 1 * s / 2, 0.5 * s / 2, 0.0]
    # fc1's output is requantised to fc2's 8 fractional bits: within half an LSB of want
    assert np.all(np.abs(got - want) <= 2.0**-9), (got, want)
    assert int(res.table.set_index("layer").loc["fc1", "clipped"]) == 0


def test_fixed_scaling_fsr_moves_the_window_of_codes() -> None:
    # fc1 on a fine MAC datapath passes x on; fc2's LogFormat(2, fsr) input has codes
    # 2**(fsr-3) .. 2**(fsr-1) and flushes what rounds to 2**(fsr-4) or below
    net = _identity_net()
    mac = FixedMacDatapath(weight=FixedFormat(8, 6), act=FixedFormat(12, 8, signed=False))
    x = np.array([[0.3], [0.6], [1.3], [3.0]])  # log2 rounds to -2, -1, 0, 2
    want = {
        1: [0.125, 0.25, 0.5, 0.5],  # codes 0.25 .. 1: 3.0 clips to 1
        2: [0.0, 0.25, 0.5, 1.0],  # codes 0.5 .. 2: 0.3 flushes, 3.0 clips to 2
        3: [0.0, 0.0, 0.5, 2.0],  # codes 1 .. 4: 0.3 and 0.6 flush
    }
    for fsr, expected in want.items():
        log = LogDatapath(act=LogFormat(2, fsr, signed=False), weight=LogFormat(4, 0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RangeWarning)
            res = net.run(x, {"fc1": mac, "fc2": log}, scaling="fixed")
        assert res.output is not None
        assert res.output.ravel().tolist() == expected, fsr
        clipped = int(res.table.set_index("layer").loc["fc2", "clipped"])
        assert clipped == {1: 1, 2: 1, 3: 0}[fsr]


@pytest.mark.parametrize(
    "fc2",
    [
        LogDatapath(act=LogFormat(3, 7, signed=False), weight=LogFormat(4, 0)),
        # log activations with linear weights: the same codes, 0.5 exact as 1.0 * scale
        FixedMacDatapath(
            weight=FixedFormat(8, 6),
            act=FixedFormat(11, 4, signed=False),
            act_log=LogFormat(3, 7, signed=False),
        ),
    ],
    ids=["log", "mac-log-act"],
)
def test_calibrated_log_activations_put_the_peak_on_the_top_code(fc2) -> None:
    # fc1 (a fine MAC) passes x on; fc2 reads LogFormat(3, 7): codes 2**0 .. 2**6. Calibrated,
    # the peak 3.0 maps to the carrier's top 1023/16, just under 2**6: scale s = 3 / (1023/16).
    # 3.0 -> 63.94 -> code 2**6; 1.8 -> 38.4 -> 2**5; 3/64 -> 0.999 -> 2**0 (the smallest);
    # 3/128 -> 0.4995 -> 2**-1: flushed. y = code * s * 0.5 (fc2's weight, exact).
    # (Before the fix the carrier's top was 127 = 2**6.99: 3.0 clipped and 1.8 took 2**6.)
    net = _identity_net()
    mac = FixedMacDatapath(weight=FixedFormat(8, 6), act=FixedFormat(12, 8, signed=False))
    x = np.array([[3.0], [1.8], [3.0 / 64], [3.0 / 128]])
    res = net.run(x, {"fc1": mac, "fc2": fc2}, calibration=x[:2])
    assert res.output is not None
    s = 3.0 / (1023 / 16)
    want = [64 * s / 2, 32 * s / 2, 1 * s / 2, 0.0]
    np.testing.assert_allclose(res.output.ravel(), want, rtol=1e-12, atol=0)
    assert int(res.table.set_index("layer").loc["fc2", "clipped"]) == 0
    assert res.warnings() == []


def test_fixed_linear_baseline_clips_at_its_full_scale_range() -> None:
    net = _identity_net()
    # FixedFormat(3, 1): fsr 2 -> values 0, 0.5, ..., 3.5; 5.0 clips to 3.5
    dp = FixedMacDatapath(weight=FixedFormat(8, 7), act=FixedFormat(3, 1, signed=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = net.run(np.array([[5.0], [0.75]]), dp, scaling="fixed", calibration=np.array([[8.0]]))
    assert res.output is not None
    # 5.0 clips to 3.5, 0.75 rounds half up to 1.0; fc2's weight 0.5 is 127/256 in 8 bits
    assert res.output.ravel().tolist() == [3.5 * 127 / 256, 1.0 * 127 / 256]
    row = res.table.set_index("layer").loc["fc1"]
    # the requantisation clamp of 5.0 (and the weight 1.0, above 8-bit's 127/128, if clipped)
    assert row["clipped"] >= 1 and row["clip_rate"] == row["clipped"] / 2
    assert any(issubclass(w.category, RangeWarning) for w in caught)
    pct = f"{100 * row['clipped'] / 2:.3g}"
    assert res.warnings()[0] == (
        f"WARNING: layer fc1: {pct}% of values clipped ({row['clipped']}); check the activation "
        "format and its full-scale range"
    )


def test_weight_gain_never_clips_the_peak() -> None:
    for fmt in (LogFormat(4, 0), LogFormat(4, 1, base="sqrt2"), LogFormat(3, 0.5, base="sqrt2")):
        dp = LogDatapath(weight=fmt)
        for peak in (0.3, 0.5, 0.7071, 0.75, 0.99, 1.0, 3.0, 1e-3):
            gain = weight_gain(dp, np.array([peak, -peak / 3]))
            assert math.log2(gain) == round(math.log2(gain))  # a power of two
            code = quantize_log(np.array([peak * gain]), fmt.bits, fmt.fsr, fmt.base)
            rounded = round(fmt.k * math.log2(peak * gain))
            assert rounded <= fmt.e_max, (fmt, peak)  # not clipped
            assert rounded >= fmt.e_max - fmt.k - 1  # within 1.5 octaves of the top code
            assert int(code.exponent[0]) == rounded


def test_range_warning_names_the_overflowing_layer() -> None:
    net = _identity_net()
    x = np.linspace(0.5, 4.0, 16).reshape(-1, 1)
    with pytest.warns(RangeWarning, match=r"layer fc\d: .* accumulator updates overflowed"):
        res = net.run(x, ShiftAddDatapath(acc_bits=4))
    assert float(res.table["overflow_rate"].max()) > 1e-3
    quiet = net.run(x, ShiftAddDatapath(acc_bits=32))
    assert quiet.warnings() == [] and float(quiet.table["overflow_rate"].max()) == 0.0
