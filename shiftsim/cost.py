"""Analytic cost model: closed-form counts of the schedule in :mod:`shiftsim.cycle`.

:func:`estimate` returns the same :class:`~shiftsim.counts.Counts` as the cycle-stepped model,
field for field, without stepping a single cycle or running a datapath kernel; the formulas
are in the package docstring of :mod:`shiftsim.cycle`. What it needs the data for:

- ``overflows`` are a data *outcome* (whether a register wrapped or saturated depends on every
  value and, with SAT, on the order): :func:`estimate` cannot know them and reports 0; the
  tests compare the cycle model's overflows with the functional and golden models' instead;
- shift datapath: zero weight indices (``zero_selects``, shift-buffer reads) come from
  ``code``; without it every index is taken nonzero (the most shift-buffer reads). Its other
  counts, and every MAC count, do not depend on the values;
- log datapath: which terms have two nonzero operands, their signs and (base sqrt(2)) the
  parity of their exponents set every arithmetic count. With ``code`` (weights) and ``x``
  (activations) they are exact sums over the outputs, from correlations of the operands'
  nonzero/sign/parity masks (numpy, no datapath kernel); without ``code`` every weight, and
  without ``x`` every activation, is taken as +1 (nonzero, positive, an even exponent).
  Log accumulation also needs to know whether a bias is added (``bias_raw``).
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
    Geometry,
    compulsory_dram_bytes,
    describe,
    geometry,
    hardware_counts,
    map_layer,
)
from shiftsim.datapath.weight_cache import weight_store
from shiftsim.energy import energy_pj
from shiftsim.hardware import Hardware
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import LogCode

__all__ = ["estimate", "mapping", "real_taps"]


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


def _zero_indices(layer: Conv2d | Linear, code: Any, n: int) -> int:
    """How many of the ShiftCNN indices of ``code`` are 0 (their shape validated).

    Counted once per immutable code (its index array read-only over ``bytes``, as
    :func:`~shiftsim.datapath.weight_cache.immutable` makes it) and kept with the code; a
    code with writable arrays is counted on every call, so that a change made to it in
    place is always seen.
    """
    index = np.asarray(getattr(code, "index", code))
    want = (*layer.weight_shape, n)
    if index.shape != want or index.dtype.kind not in "iu":
        raise ValueError(f"code.index must be an integer array of shape {want}, got {index.shape}")
    store = weight_store(code, (index,), "zero_indices")
    zeros = store.get("zeros")
    if zeros is None:
        zeros = store["zeros"] = index.size - int(np.count_nonzero(index))
    return int(zeros)


def _correlate(
    g: Geometry, xm: NDArray[np.float64] | None, wm: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Per output, the sum over its real taps of ``xm * wm``: ``(B, Co, Ho, Wo)`` counts.

    ``xm`` (``(B, C, H, W)``, or None for all ones) and ``wm`` (``(Co, Cg, Kh, Kw)``) are 0/1
    masks; padding contributes nothing. A matrix product per kernel tap and group (float64,
    exact: every count is below 2**53).
    """
    out = np.zeros((g.batch, g.co, g.ho, g.wo), dtype=np.float64)
    oh = np.arange(g.ho) * g.sh - g.ph
    ow = np.arange(g.wo) * g.sw - g.pw
    if xm is None:  # all-ones activations: real[oh, kh] * real[ow, kw] * sum_c wm
        rows = oh[:, None] + np.arange(g.kh)[None, :] * g.dh
        cols = ow[:, None] + np.arange(g.kw)[None, :] * g.dw
        rr = ((rows >= 0) & (rows < g.h)).astype(np.float64)
        cc = ((cols >= 0) & (cols < g.w)).astype(np.float64)
        out[:] = np.einsum("hk,wl,okl->ohw", rr, cc, wm.sum(axis=1))
        return np.rint(out).astype(np.int64)
    xp = np.zeros((g.batch, g.c, g.h + 2 * g.ph, g.w + 2 * g.pw), dtype=np.float64)
    xp[:, :, g.ph : g.ph + g.h, g.pw : g.pw + g.w] = xm
    cog = g.co // g.groups
    for kh in range(g.kh):
        r0 = kh * g.dh
        for kw in range(g.kw):
            c0 = kw * g.dw
            tap = xp[:, :, r0 : r0 + (g.ho - 1) * g.sh + 1 : g.sh,
                     c0 : c0 + (g.wo - 1) * g.sw + 1 : g.sw]  # fmt: skip
            for grp in range(g.groups):
                xs = tap[:, grp * g.cg : (grp + 1) * g.cg]  # (B, Cg, Ho, Wo)
                ws = wm[grp * cog : (grp + 1) * cog, :, kh, kw]  # (Cog, Cg)
                prod = np.tensordot(ws, xs, axes=([1], [1]))  # (Cog, B, Ho, Wo)
                out[:, grp * cog : (grp + 1) * cog] += prod.transpose(1, 0, 2, 3)
    return np.rint(out).astype(np.int64)


#: Operand masks of :func:`_log_arithmetic`: positive, negative, nonzero odd, nonzero even.
_POS, _NEG, _ODD, _EVEN = 0, 1, 2, 3


def _log_arithmetic(
    g: Geometry, datapath: Any, w_op: Any, x_op: Any, has_bias: bool
) -> dict[str, int]:
    """The log datapath's arithmetic counts in closed form (see the module docstring).

    ``w_op``/``x_op`` are ``(exponent, sign)`` pairs in NCHW, or None for all ``+1`` codes.
    """
    k = datapath.k

    def masks(op: Any, fmt_k: int) -> tuple[Any, Any, Any, Any] | None:
        if op is None:
            return None
        exp, sign = op
        odd = (exp * (k // fmt_k)) % 2 == 1
        nz = sign != 0
        f = np.float64
        return (
            (sign > 0).astype(f),
            (sign < 0).astype(f),
            (nz & odd).astype(f),
            (nz & ~odd).astype(f),
        )

    wmask = masks(w_op, datapath.weight.k)
    if wmask is None:
        ones = np.ones((g.co, g.cg, g.kh, g.kw))
        wmask = (ones, 0 * ones, 0 * ones, ones)
    xmask = masks(x_op, datapath.act.k)

    def corr(xi: int, wi: int) -> NDArray[np.int64]:
        if xmask is None:  # every activation +1 with an even exponent
            if xi in (_NEG, _ODD):
                return np.zeros((g.batch, g.co, g.ho, g.wo), dtype=np.int64)
            return _correlate(g, None, wmask[wi])
        if not xmask[xi].any() or not wmask[wi].any():
            return np.zeros((g.batch, g.co, g.ho, g.wo), dtype=np.int64)
        return _correlate(g, xmask[xi], wmask[wi])

    n_pos = corr(_POS, _POS) + corr(_NEG, _NEG)  # products > 0, per output
    n_neg = corr(_POS, _NEG) + corr(_NEG, _POS)
    terms = int(n_pos.sum() + n_neg.sum())  # T_nz
    regs = int(np.count_nonzero(n_pos) + np.count_nonzero(n_neg))  # R: non-empty log registers
    outputs = g.batch * g.outputs
    if datapath.accumulate == "log":
        merges = terms - regs  # L: terms that find their register non-empty
        per_merge = 2 if datapath.log_add == "mitchell" else 1
        return {
            "exponent_adds": terms,
            "compares": merges,
            "shift_ops": merges + regs,
            "adds": per_merge * merges + outputs * (2 if has_bias else 1),
            "acc_updates": terms,
            "log_to_linear": regs,
        }
    counts = {"exponent_adds": terms, "shift_ops": terms, "adds": terms, "acc_updates": terms}
    if k == 2 and datapath.sqrt2_mode == "split":
        counts["adds"] += outputs
        counts["acc_updates"] += outputs
        counts["multiplies"] = outputs
    elif k == 2:  # shift_add: odd products pass the constant's shifters and adders
        n_odd = int(corr(_ODD, _EVEN).sum() + corr(_EVEN, _ODD).sum())
        shifts = datapath.sqrt2_shifts
        counts["shift_ops"] += n_odd * sum(1 for s in shifts if s > 0)
        counts["adds"] += n_odd * (len(shifts) - 1)
    return counts


def _input_shape_of(x: Any) -> tuple[int, ...]:
    arr = x.exponent if hasattr(x, "exponent") else x
    return tuple(int(v) for v in np.shape(arr))


def estimate(
    layer: Conv2d | Linear,
    datapath: Any,
    hardware: Hardware,
    code: Any = None,
    input_shape: tuple[int, ...] | None = None,
    x: Any = None,
    *,
    bias_raw: Any = None,
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
    code : ShiftCode, LogCode or ndarray, optional
        The weights as the datapath takes them. ShiftCNN indices: zero indices are counted
        exactly (once per immutable code, kept with it: sweeps over machines pass the same
        code again; a writable one is counted on every call); log codes: see ``x``; MAC
        weights are not needed (no count depends on them).
    input_shape : tuple of int, optional
        ``(B, C, H, W)`` (``(B, in_features)`` for Linear); required for Conv2d unless ``x``
        is given. A Linear layer defaults to batch 1.
    x : ndarray or LogCode, optional
        The input the datapath would run on (raw integers, or log codes). The log
        datapath's arithmetic counts depend on it (which terms are zero, their signs and
        parities): with ``x`` and ``code`` they are exact; without them every activation
        (weight) is taken as the code of +1. No shift or MAC count depends on it; it is
        validated and gives the input shape.
    bias_raw : ndarray, optional
        The bias the layer runs with; only whether it is given matters (log accumulation
        adds it after the conversion: one more add per output).
    energy_table : EnergyTable, optional
        Energy per event (the default 45 nm table when None).

    Returns
    -------
    Counts
        Every count the cycle model reports, ``energy_pj`` included; ``overflows`` is 0 (a
        data outcome the analytic model cannot know).

    Raises
    ------
    ValueError
        If a buffer is too small for the layer, or ``input_shape``/``code``/``x`` do not fit
        it or each other.

    Examples
    --------
    >>> from shiftsim.datapath.shift_add import ShiftAddDatapath
    >>> c = estimate(Conv2d(1, 1, 3), ShiftAddDatapath(), Hardware.edge(), input_shape=(1, 1, 4, 4))
    >>> c.compute_cycles  # ceil(1*2*2 / 16) * N=2 * 3 * 3 * ceil(1 / 8)
    18
    """
    if not isinstance(hardware, Hardware):
        raise TypeError(f"hardware must be a Hardware, got {type(hardware).__name__}")
    p = describe(datapath)
    if x is not None:
        shape = _input_shape_of(x)
        if input_shape is not None and tuple(int(v) for v in input_shape) != shape:
            raise ValueError(f"input_shape {tuple(input_shape)} differs from x's shape {shape}")
        input_shape = shape
    if input_shape is None:
        if not isinstance(layer, Linear):
            raise ValueError("input_shape is required for a Conv2d layer, got None")
        input_shape = (1, layer.in_features)
    g = geometry(layer, input_shape)
    if x is not None and code is not None:  # validate the operands as run() would
        operands = datapath.check(layer, code, x, bias_raw)
    elif x is not None and p.kind != KIND_LOG:
        datapath.act.check_raw(x, "x")
    elif p.kind == KIND_LOG and (x is not None or code is not None):
        fmt = datapath.act if code is not None else datapath.weight
        shape = input_shape if code is not None else layer.weight_shape
        dummy = LogCode(exponent=np.full(shape, fmt.e_max, np.int64),
                        sign=np.ones(shape, np.int8), format=fmt)  # fmt: skip
        operands = datapath.check(layer, dummy if code is None else code,
                                  dummy if x is None else x, bias_raw)  # fmt: skip
    pl = map_layer(g, p, hardware, where=str(layer), table=energy_table)
    hw_counts = hardware_counts(g, p, hardware, pl)
    terms = g.batch * g.outputs * g.cg * g.kh * g.kw
    arith: dict[str, int] = {}
    if p.kind == KIND_SHIFT:
        n = p.passes
        inputs = g.batch * g.c * g.h * g.w
        zeros = 0 if code is None else _zero_indices(layer, code, n)
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
    elif p.kind == KIND_LOG:
        w_op = x_op = None
        if code is not None:
            w_op = (operands.w_exp, operands.w_sign)
        if x is not None:
            x_op = (operands.x_exp, operands.x_sign)
        arith = _log_arithmetic(g, datapath, w_op, x_op, bias_raw is not None)
    else:  # pragma: no cover - datapath_params knows three kinds
        raise AssertionError(p.kind)
    counts = Counts(**arith, **hw_counts)
    return counts.replace(energy_pj=energy_pj(counts, datapath, hardware, energy_table))


_WEIGHTS = ("resident", "sweep", "pass")


def mapping(
    layer: Conv2d | Linear,
    datapath: Any,
    hardware: Hardware,
    input_shape: tuple[int, ...] | None = None,
    *,
    counts: Counts | None = None,
    energy_table: Any = None,
) -> dict[str, Any]:
    """How ``layer`` maps onto ``hardware``, and the bounds its counts must respect.

    Parameters
    ----------
    layer, datapath, hardware, input_shape
        As for :func:`estimate` (a Linear layer defaults to batch 1).
    counts : Counts, optional
        The layer's counts (from :func:`estimate` or the cycle model) for the ratios; the
        analytic counts of the shape when None.
    energy_table : EnergyTable, optional
        The table ``auto`` decides with.

    Returns
    -------
    dict
        ``dataflow`` ("os"/"ws", the one chosen), ``tile_co``, ``tile_c``, ``n_tiles``,
        ``n_ctiles``, ``weights`` ("resident", "sweep" or "pass"), ``input_resident``,
        ``compulsory_dram_bytes`` (each tapped input, weight and output moved once),
        ``dram_ratio`` (modelled / compulsory, never below 1), ``ideal_cycles``
        (``ceil(N * MACs / lanes)``), ``utilisation`` (ideal / cycles), and the reuse
        factors ``weight_reuse`` (weight uses per weight-buffer read), ``input_reuse``
        (input uses per input- or shift-buffer word read: the multicast) and
        ``dram_reuse`` (on-chip reads per DRAM byte moved, in bits per bit).

    Examples
    --------
    >>> from shiftsim.datapath.mac import FixedMacDatapath
    >>> m = mapping(Conv2d(8, 8, 3), FixedMacDatapath(), Hardware.tiny(), (1, 8, 6, 6))
    >>> m["dram_ratio"] >= 1.0, m["utilisation"] <= 1.0
    (True, True)
    """
    p = describe(datapath)
    if input_shape is None:
        if not isinstance(layer, Linear):
            raise ValueError("input_shape is required for a Conv2d layer, got None")
        input_shape = (1, layer.in_features)
    g = geometry(layer, input_shape)
    pl = map_layer(g, p, hardware, where=str(layer), table=energy_table)
    if counts is None:
        counts = estimate(layer, datapath, hardware, input_shape=input_shape,
                          energy_table=energy_table)  # fmt: skip
    comp = compulsory_dram_bytes(g, p)
    terms = g.batch * g.outputs * g.cg * g.kh * g.kw
    lanes = hardware.acc_units * hardware.tree_width
    ideal = -(-(p.passes * terms) // lanes)
    dram = counts.dram_read_bytes + counts.dram_write_bytes
    w_uses = p.passes * terms * p.pass_weight_bits
    word = p.words_per_input * p.word_bits if p.has_shift_unit else p.act_bits
    in_reads = counts.shift_buffer_read_bits if p.has_shift_unit else counts.input_buffer_read_bits
    onchip = sum(
        getattr(counts, f"{b}_{d}_bits")
        for b in ("input_buffer", "shift_buffer", "weight_buffer", "output_buffer")
        for d in ("read", "write")
    )
    return {
        "dataflow": pl.dataflow,
        "tile_co": pl.tile_co,
        "tile_c": pl.tile_c,
        "n_tiles": pl.n_tiles,
        "n_ctiles": pl.n_ctiles,
        "weights": _WEIGHTS[pl.weights],
        "input_resident": pl.input_resident,
        "compulsory_dram_bytes": comp,
        "dram_ratio": dram / comp,
        "ideal_cycles": ideal,
        "utilisation": ideal / counts.cycles if counts.cycles else 0.0,
        "weight_reuse": w_uses / counts.weight_buffer_read_bits
        if counts.weight_buffer_read_bits
        else float("inf"),
        "input_reuse": p.passes * terms * word / in_reads if in_reads else float("inf"),
        "dram_reuse": onchip / (8 * dram) if dram else float("inf"),
    }
