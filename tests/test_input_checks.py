"""Audit findings outside the sweep: quantization memory, validation gaps, huge layers."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction

import numpy as np
import pytest

from shiftsim import quantize
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.layers import Linear
from shiftsim.quantize import quantize_log, quantize_shiftcnn
from tests import naive_quantize as naive


# ------------------------------------------------------------------ item 10: peak memory
def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "quantizer",
    [
        lambda w: quantize_shiftcnn(w, n_codebooks=2, bits=4),
        lambda w: quantize_shiftcnn(w, n_codebooks=2, bits=4, axis=0),
        lambda w: quantize_log(w, bits=4, fsr=0),
        lambda w: ShiftAddDatapath().prepare(Linear(2048, 1024), w, np.ones((1, 2048))),
    ],
    ids=["shiftcnn", "shiftcnn-per-channel", "log", "shift-prepare"],
)
def test_weight_quantization_peaks_under_twice_the_weights(quantizer) -> None:
    # a Linear(2048, 1024) layer (16 MiB of float64): the same per weight as Linear(25088, 1024)
    w = np.random.default_rng(0).standard_normal((1024, 2048))
    peak = _peak_bytes(lambda: quantizer(w))
    assert peak <= 2 * w.nbytes, f"peak {peak / w.nbytes:.2f}x the weight bytes"


@pytest.mark.parametrize("axis", [None, 0, 1, 2])
def test_blocked_quantizers_match_the_oracle_across_block_edges(monkeypatch, axis) -> None:
    monkeypatch.setattr(quantize, "BLOCK_ELEMENTS", 7)  # many blocks, edges inside every row
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 5, 4)) * np.exp2(rng.integers(-6, 6, (3, 5, 4)))
    w[1] = 0.0  # an all-zero slice (scale 0)
    code = quantize_shiftcnn(w, n_codebooks=3, bits=4, axis=axis)
    slices = [w] if axis is None else [np.take(w, i, axis=axis) for i in range(w.shape[axis])]
    for i, part in enumerate(slices):
        got = code.index if axis is None else np.take(code.index, i, axis=axis)
        want = naive.shiftcnn(part.ravel().tolist(), 3, 4, w.dtype)
        np.testing.assert_array_equal(got.reshape(-1, 3), np.array(want, dtype=np.int8))
    normalized = code.normalized()
    for value, idx in zip(normalized.ravel(), code.index.reshape(-1, 3)):
        assert Fraction(float(value)) == naive.shiftcnn_value(idx.tolist())
    log = quantize_log(w, bits=4, fsr=1)
    for x, e, s in zip(w.ravel(), log.exponent.ravel(), log.sign.ravel()):
        sign, exp = naive.log_quant(float(x), 4, Fraction(1), 1)
        assert int(s) == sign and (exp is None or int(e) == exp)
