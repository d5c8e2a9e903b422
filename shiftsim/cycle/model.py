"""The cycle-stepped model: validate, pack, step the schedule kernel, unpack."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from shiftsim.counts import Counts
from shiftsim.cycle.schedule import (
    KIND_LOG,
    KIND_SHIFT,
    describe,
    geometry,
    map_layer,
    parallel_outputs,
)
from shiftsim.datapath.base import LayerResult, from_nchw_int64, register_cycle_model
from shiftsim.energy import energy_pj
from shiftsim.formats import Overflow, Rounding
from shiftsim.hardware import Hardware
from shiftsim.kernels import cycle as _k
from shiftsim.layers import Conv2d, Linear

__all__ = ["ACTIONS", "TRACE_DTYPE", "UNITS", "CycleLimitError", "run_cycle"]

#: Names of the trace's ``unit`` codes.
UNITS = ("adders", "dma", "shift_unit")
#: Names of the trace's ``action`` codes.
ACTIONS = ("compute", "stall", "load", "shift", "store")
#: One row per unit and cycle; ``address`` is the output tile (chunk) the action serves.
TRACE_DTYPE = np.dtype([("cycle", np.int64), ("unit", np.int8), ("action", np.int8),
                        ("address", np.int64)])  # fmt: skip

_COUNTERS = {
    "cycles": _k.CT_CYCLES,
    "compute_cycles": _k.CT_COMPUTE,
    "stall_cycles": _k.CT_STALL,
    "input_buffer_read_bits": _k.CT_IN_R,
    "input_buffer_write_bits": _k.CT_IN_W,
    "shift_buffer_read_bits": _k.CT_SH_R,
    "shift_buffer_write_bits": _k.CT_SH_W,
    "weight_buffer_read_bits": _k.CT_W_R,
    "weight_buffer_write_bits": _k.CT_W_W,
    "output_buffer_read_bits": _k.CT_O_R,
    "output_buffer_write_bits": _k.CT_O_W,
    "dram_read_bytes": _k.CT_DRAM_R,
    "dram_write_bytes": _k.CT_DRAM_W,
    "shift_unit_inputs": _k.CT_SHIFT_INPUTS,
    "weight_rf_read_bits": _k.CT_RF_R,
    "weight_rf_write_bits": _k.CT_RF_W,
    "psum_read_bits": _k.CT_PSUM_R,
    "psum_write_bits": _k.CT_PSUM_W,
}
_ARITHMETIC = {
    "shift_ops": _k.CT_SHIFT_OPS,
    "negations": _k.CT_NEG,
    "selects": _k.CT_SELECTS,
    "zero_selects": _k.CT_ZERO_SELECTS,
    "adds": _k.CT_ADDS,
    "multiplies": _k.CT_MULTIPLIES,
    "acc_updates": _k.CT_ACC_UPDATES,
    "overflows": _k.CT_OVERFLOWS,
    "exponent_adds": _k.CT_EXP_ADDS,
    "compares": _k.CT_COMPARES,
    "log_to_linear": _k.CT_LOG_TO_LINEAR,
}


class CycleLimitError(RuntimeError):
    """The cycle model ran past its ``max_cycles``."""


def _operand_arrays(
    kind: int, datapath: Any, layer: Conv2d | Linear, operands: Any
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64] | None, Any]:
    """``(x, wq, bias, scale)`` from a datapath's checked operands, NCHW int64."""
    if kind == KIND_SHIFT:
        wq = operands.index
        x = operands.x_raw
        scale = operands.scale
    elif kind == KIND_LOG:  # packed codes 4*e + sign + 1, exponents in units of 1/k
        k = datapath.k
        x = operands.x_exp * (k // datapath.act.k) * 4 + operands.x_sign + 1
        w = operands.w_exp * (k // datapath.weight.k) * 4 + operands.w_sign + 1
        wq = w[..., None]
        scale = 1.0
    else:
        x = operands.x_raw
        wq = operands.w_raw[..., None]
        scale = operands.scale
    x = np.ascontiguousarray(x, dtype=np.int64)
    if x.ndim == 2:
        x = layer.to_nchw(x)
    wq = np.ascontiguousarray(wq, dtype=np.int64)
    return x, wq, operands.bias_raw, scale


def run_cycle(
    datapath: Any,
    layer: Conv2d | Linear,
    operands: Any,
    hardware: Hardware | None = None,
    trace: bool = False,
    max_cycles: int | None = None,
) -> LayerResult:
    """Step the schedule of :mod:`shiftsim.cycle` cycle by cycle on checked operands.

    Called by ``datapath.run(..., level="cycle", hardware=hw)``; ``operands`` is what the
    datapath's ``check`` returned. Every datapath's outputs and arithmetic counts are
    computed by the stepped units from the buffers' contents (the log datapath's by its
    serial lanes, with the cycle model's own log-domain arithmetic).

    Parameters
    ----------
    datapath : ShiftAddDatapath, FixedMacDatapath or LogDatapath
        The datapath.
    layer : Conv2d or Linear
        The layer.
    operands : object
        The datapath's checked operands.
    hardware : Hardware, optional
        The machine (``Hardware.paper()`` when None).
    trace : bool, default False
        Also return the per-cycle trace (:data:`TRACE_DTYPE`, one row per busy unit and
        cycle, adders always).
    max_cycles : int, optional
        Stop with :class:`CycleLimitError` past this many cycles.

    Returns
    -------
    LayerResult
        ``y_raw`` equal to the functional model's, every count, ``energy_pj`` from the
        default energy table, and the trace when asked for.

    Raises
    ------
    TypeError, ValueError
        On a bad ``hardware``/``max_cycles``, or a buffer too small for the layer.
    CycleLimitError
        Past ``max_cycles``.
    """
    hw = Hardware.paper() if hardware is None else hardware
    if not isinstance(hw, Hardware):
        raise TypeError(f"hardware must be a Hardware, got {type(hw).__name__}")
    if max_cycles is not None and (
        isinstance(max_cycles, bool) or not isinstance(max_cycles, (int, np.integer))
    ):
        raise TypeError(f"max_cycles must be an int or None, got {max_cycles!r}")
    if max_cycles is not None and max_cycles < 0:
        raise ValueError(f"max_cycles must be >= 0, got {max_cycles!r}")
    p = describe(datapath)
    x, wq, bias, scale = _operand_arrays(p.kind, datapath, layer, operands)
    g = geometry(layer, x.shape if isinstance(layer, Conv2d) else x.shape[:2])
    pl = map_layer(g, p, hw, where=str(layer))
    lanes = parallel_outputs(p, hw)
    cfg = np.zeros(_k.N_CFG, dtype=np.int64)
    rnd = getattr(datapath, "shift_rounding", Rounding.TRN) == Rounding.RND
    sat = datapath.overflow == Overflow.SAT
    for slot, value in (
        (_k.CF_KIND, p.kind), (_k.CF_A, lanes), (_k.CF_T, hw.tree_width),
        (_k.CF_SHIFT_WIDTH, hw.shift_width), (_k.CF_BW, hw.dram_bytes_per_cycle),
        (_k.CF_PIPELINED, hw.pipelined), (_k.CF_TILE_CO, pl.tile_co),
        (_k.CF_TILE_C, pl.tile_c), (_k.CF_WEIGHTS, pl.weights),
        (_k.CF_RF_ENTRIES, hw.weight_rf_entries),
        (_k.CF_INPUT_RESIDENT, pl.input_resident), (_k.CF_N, p.passes),
        (_k.CF_S, p.max_shift), (_k.CF_F, getattr(datapath, "shift_frac_bits", 0)),
        (_k.CF_RND, rnd), (_k.CF_ACC_BITS, p.acc_bits), (_k.CF_SAT, sat),
        (_k.CF_ACT_BITS, p.act_bits), (_k.CF_WORD_BITS, p.word_bits),
        (_k.CF_WORDS, p.words_per_input), (_k.CF_WEIGHT_BITS, p.weight_bits),
        (_k.CF_PASS_WEIGHT_BITS, p.pass_weight_bits), (_k.CF_SH, g.sh), (_k.CF_SW, g.sw),
        (_k.CF_PH, g.ph), (_k.CF_PW, g.pw), (_k.CF_DH, g.dh), (_k.CF_DW, g.dw),
        (_k.CF_GROUPS, g.groups), (_k.CF_MAX_CYCLES, -1 if max_cycles is None else max_cycles),
    ):  # fmt: skip
        cfg[slot] = int(value)
    shifts = np.zeros(1, dtype=np.int64)
    if p.kind == KIND_LOG:
        k2 = datapath.k == 2
        for slot, value in (
            (_k.CF_LOG_K, datapath.k), (_k.CF_LOG_ACC, datapath.accumulate == "log"),
            (_k.CF_LOG_G, datapath.log_frac_bits),
            (_k.CF_LOG_MITCHELL, datapath.log_add == "mitchell"),
            (_k.CF_LOG_SPLIT, k2 and datapath.sqrt2_mode == "split"),
            (_k.CF_SQRT2_BITS, datapath.sqrt2_frac_bits), (_k.CF_SQRT2_C, datapath.sqrt2_const),
            (_k.CF_FRAC, datapath.acc_frac_bits), (_k.CF_HAS_BIAS, bias is not None),
        ):  # fmt: skip
            cfg[slot] = int(value)
        shifts = np.asarray(datapath.sqrt2_shifts, dtype=np.int64)
    bias_arr = np.zeros(g.co, np.int64) if bias is None else np.asarray(bias, np.int64)

    def step(rows: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], int]:
        y = np.zeros((g.batch, g.co, g.ho, g.wo), dtype=np.int64)
        ct = np.zeros(_k.N_CT, dtype=np.int64)
        tr = np.zeros((rows, 4), dtype=np.int64)
        status, wanted = _k.run_schedule(cfg, shifts, x, wq, bias_arr, y, ct, tr)
        if status == _k.STATUS_MAX_CYCLES:
            raise CycleLimitError(
                f"the cycle model passed max_cycles={max_cycles} on {layer} (input "
                f"{tuple(x.shape)}); raise max_cycles or use shiftsim.estimate for big layers"
            )
        if status != _k.STATUS_OK:  # pragma: no cover - a schedule bug, not a user error
            raise RuntimeError(
                f"cycle model: an operand was read that its buffer did not hold ({layer}, "
                f"input {tuple(x.shape)}, tiles {pl.tile_co} x {pl.tile_c})"
            )
        return y, ct, tr, int(wanted)

    y, ct, tr, wanted = step(0)
    if trace:
        y, ct, tr, _ = step(wanted)
    fields = {name: int(ct[i]) for name, i in _COUNTERS.items()}
    arith = {name: int(ct[i]) for name, i in _ARITHMETIC.items()}
    y_raw = from_nchw_int64(layer, y)
    counts = Counts(**arith, **fields)
    counts = counts.replace(energy_pj=energy_pj(counts, datapath, hw))
    trace_arr = None
    if trace:
        trace_arr = np.zeros(len(tr), dtype=TRACE_DTYPE)
        for i, name in enumerate(TRACE_DTYPE.names or ()):
            trace_arr[name] = tr[:, i]
    return LayerResult(
        y_raw=y_raw,
        out_format=datapath.out_format,
        scale=scale,
        counts=counts,
        trace=trace_arr,
    )


register_cycle_model(run_cycle)
