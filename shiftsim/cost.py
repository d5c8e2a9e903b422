"""Analytic cost model: closed-form counts of the schedule in :mod:`shiftsim.cycle`.

:func:`estimate` returns the same :class:`~shiftsim.counts.Counts` as the cycle-stepped model,
field for field, without stepping a single cycle; the formulas are in the package docstring of
:mod:`shiftsim.cycle`. What it cannot know without the data:

- ``overflows`` (they depend on the activations) are reported as 0;
- without ``code``, every weight index is assumed nonzero (``zero_selects = 0``, the most
  shift-buffer reads); with ``code``, zero indices are counted exactly;
- for the log datapath the arithmetic counts depend on which activations are zero and on the
  log-domain adder's comparisons: they are left at 0 (the hardware counts are exact).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from shiftsim.counts import Counts
from shiftsim.cycle.schedule import (
    KIND_LOG,
    KIND_MAC,
    KIND_SHIFT,
    DatapathParams,
    Geometry,
    Plan,
    datapath_params,
    geometry,
    plan,
    tapped,
)
from shiftsim.hardware import Hardware
from shiftsim.layers import Conv2d, Linear

__all__ = ["estimate", "real_taps"]


def _ceil_div(a: Any, b: int) -> Any:
    return -(-a // b)


def real_taps(g: Geometry) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Outputs per kernel row and column whose input lies inside the image (not padding).

    Returns
    -------
    rows : ndarray of int64, shape (Kh,)
        ``rows[kh] = #{oh : 0 <= oh*sh - ph + kh*dh < H}``.
    cols : ndarray of int64, shape (Kw,)
        The same along the width.
    """
    oh = np.arange(g.ho)[None, :] * g.sh - g.ph + np.arange(g.kh)[:, None] * g.dh
    ow = np.arange(g.wo)[None, :] * g.sw - g.pw + np.arange(g.kw)[:, None] * g.dw
    rows = ((oh >= 0) & (oh < g.h)).sum(axis=1).astype(np.int64)
    cols = ((ow >= 0) & (ow < g.w)).sum(axis=1).astype(np.int64)
    return rows, cols


def _shift_index(layer: Conv2d | Linear, code: Any, g: Geometry, n: int) -> NDArray[Any]:
    """The ShiftCNN indices as ``(Co, Cg, Kh, Kw, N)``, validated."""
    index = np.asarray(getattr(code, "index", code))
    want = (*layer.weight_shape, n)
    if index.shape != want or index.dtype.kind not in "iu":
        raise ValueError(f"code.index must be an integer array of shape {want}, got {index.shape}")
    return layer.to_nchw(index)


def _hardware_counts(g: Geometry, p: DatapathParams, hw: Hardware, pl: Plan) -> dict:
    win = pl.windows
    q = g.batch * len(win["length"])
    length = np.tile(win["length"], g.batch)
    if pl.input_resident:  # every tapped row once per element, at its first chunk
        rows = np.zeros_like(win["new_rows"])
        rows[0] = int(tapped(g)[0].sum())
    else:  # each sweep reloads the rows it taps
        rows = win["new_rows"]
    in_bits = np.tile(rows, g.batch) * (g.c * g.w * p.act_bits)
    filter_bits = g.cg * g.kh * g.kw * p.weight_bits
    if pl.weights_resident:
        w_bits = np.zeros(q, dtype=np.int64)
        w_bits[0] = g.co * filter_bits
    else:  # each sweep's first chunk loads the sweep's tile
        tile = np.minimum(pl.tile_co, g.co - win["sweep"] * pl.tile_co)
        w_bits = np.tile(win["sweep_start"] * tile, g.batch) * filter_bits
    shift_vals = np.tile(win["new_box"], g.batch) * g.c if p.kind == KIND_SHIFT else 0 * length
    rd_bytes = _ceil_div(in_bits, 8) + _ceil_div(w_bits, 8)
    out_bits = length * p.acc_bits
    wr_bytes = _ceil_div(out_bits, 8)
    prep = _ceil_div(rd_bytes, hw.dram_bytes_per_cycle) + _ceil_div(shift_vals, hw.shift_width)
    store = _ceil_div(wr_bytes, hw.dram_bytes_per_cycle)
    steps = p.passes * g.kh * g.kw * _ceil_div(g.cg, hw.tree_width)
    compute = q * steps
    if hw.pipelined:
        nxt = np.concatenate((prep[1:], [0]))
        before = np.concatenate(([0], store[:-1]))
        cycles = int(prep[0]) + int(np.maximum(steps, nxt + before).sum()) + int(store[-1])
    else:
        cycles = int(prep.sum()) + compute + int(store.sum())
    if p.kind == KIND_SHIFT:
        in_reads = int(shift_vals.sum()) * p.act_bits
    else:
        rows, cols = real_taps(g)
        in_reads = g.batch * g.co * g.cg * int(rows.sum()) * int(cols.sum()) * p.act_bits
    w_reads = int(np.tile(win["distinct_co"], g.batch).sum()) * g.kh * g.kw * g.cg
    return {
        "cycles": cycles,
        "compute_cycles": compute,
        "stall_cycles": cycles - compute,
        "input_buffer_write_bits": int(in_bits.sum()),
        "input_buffer_read_bits": in_reads,
        "shift_buffer_write_bits": int(shift_vals.sum()) * p.words_per_input * p.word_bits,
        "weight_buffer_write_bits": int(w_bits.sum()),
        "weight_buffer_read_bits": w_reads * p.weight_bits,
        "output_buffer_write_bits": int(out_bits.sum()),
        "output_buffer_read_bits": int(out_bits.sum()),
        "dram_read_bytes": int(rd_bytes.sum()),
        "dram_write_bytes": int(wr_bytes.sum()),
        "shift_unit_inputs": int(shift_vals.sum()),
    }


def estimate(
    layer: Conv2d | Linear,
    datapath: Any,
    hardware: Hardware,
    code: Any = None,
    input_shape: tuple[int, ...] | None = None,
    *,
    energy_table: Any = None,
) -> Counts:
    """Closed-form counts of ``layer`` on ``datapath`` and ``hardware`` (SPEC §7).

    Parameters
    ----------
    layer : Conv2d or Linear
        The layer.
    datapath : ShiftAddDatapath, FixedMacDatapath or LogDatapath
        The datapath (its widths size every buffer access).
    hardware : Hardware
        The machine.
    code : ShiftCode or ndarray, optional
        ShiftCNN weight indices: zero indices are then counted exactly.
    input_shape : tuple of int, optional
        ``(B, C, H, W)`` (``(B, in_features)`` for Linear); required for Conv2d. A Linear
        layer defaults to batch 1.
    energy_table : EnergyTable, optional
        Energy per event (the default 45 nm table when None).

    Returns
    -------
    Counts
        Every count the cycle model reports, ``energy_pj`` included (``overflows`` is 0).

    Raises
    ------
    ValueError
        If a buffer is too small for the layer, or ``input_shape``/``code`` do not fit it.

    Examples
    --------
    >>> from shiftsim.datapath.shift_add import ShiftAddDatapath
    >>> c = estimate(Conv2d(1, 1, 3), ShiftAddDatapath(), Hardware.edge(), input_shape=(1, 1, 4, 4))
    >>> c.compute_cycles  # ceil(1*2*2 / 16) * N=2 * 3 * 3 * ceil(1 / 8)
    18
    """
    from shiftsim.energy import energy_pj

    if not isinstance(hardware, Hardware):
        raise TypeError(f"hardware must be a Hardware, got {type(hardware).__name__}")
    p = datapath_params(datapath)
    if input_shape is None:
        if not isinstance(layer, Linear):
            raise ValueError("input_shape is required for a Conv2d layer, got None")
        input_shape = (1, layer.in_features)
    g = geometry(layer, input_shape)
    hw_counts = _hardware_counts(g, p, hardware, plan(g, p, hardware))
    terms = g.batch * g.outputs * g.cg * g.kh * g.kw
    rows, cols = real_taps(g)
    arith: dict[str, int] = {}
    if p.kind == KIND_SHIFT:
        n = p.passes
        inputs = g.batch * g.c * g.h * g.w
        if code is not None:
            index = _shift_index(layer, code, g, n)
            taps = np.ascontiguousarray(np.moveaxis(index, (2, 3), (0, 1)))
            taps = taps.reshape(g.kh * g.kw, -1)
            nz = np.array([np.count_nonzero(t) for t in taps], np.int64).reshape(g.kh, g.kw)
            zeros = index.size - int(nz.sum())
        else:
            zeros = 0
            nz = np.full((g.kh, g.kw), g.co * g.cg * n, dtype=np.int64)
        real_nz = g.batch * int((nz * rows[:, None] * cols[None, :]).sum())
        hw_counts["shift_buffer_read_bits"] = real_nz * p.word_bits
        arith = {
            "shift_ops": inputs * p.max_shift,
            "negations": inputs * (p.max_shift + 1),
            "selects": n * terms,
            "zero_selects": g.batch * g.ho * g.wo * zeros,
            "adds": n * terms,
            "acc_updates": n * g.batch * g.outputs * g.kh * g.kw,
        }
    elif p.kind == KIND_MAC:
        steps = g.batch * g.outputs * g.kh * g.kw
        arith = {"multiplies": terms, "adds": terms, "acc_updates": steps}
    elif p.kind != KIND_LOG:  # pragma: no cover - datapath_params knows three kinds
        raise AssertionError(p.kind)
    counts = Counts(**arith, **hw_counts)
    return counts.replace(energy_pj=energy_pj(counts, datapath, hardware, energy_table))
