"""Kernels of the cycle-stepped model: the schedule of :mod:`shiftsim.cycle`, one cycle a step.

The public wrapper is :func:`shiftsim.cycle.run_cycle`; it validates everything and packs the
configuration into the ``cfg`` array (indices ``CF_*``). Counters go into ``counters``
(indices ``CT_*``), the optional trace into ``trace`` rows ``(cycle, unit, action, address)``.
"""

from __future__ import annotations

import numpy as np

from shiftsim.kernels._jit import kernel
from shiftsim.kernels.bitops import apply_overflow, ashr, round_shr, shl
from shiftsim.kernels.log_domain import log_to_linear

__all__ = ["N_CFG", "N_CT", "run_schedule"]

# configuration slots
CF_KIND, CF_A, CF_T, CF_SHIFT_WIDTH, CF_BW, CF_PIPELINED, CF_SPARE = 0, 1, 2, 3, 4, 5, 6
CF_N, CF_S, CF_F, CF_RND, CF_ACC_BITS, CF_SAT, CF_ACT_BITS = 7, 8, 9, 10, 11, 12, 13
CF_WORD_BITS, CF_WORDS, CF_WEIGHT_BITS, CF_PASS_WEIGHT_BITS = 14, 15, 16, 17
CF_SH, CF_SW, CF_PH, CF_PW, CF_DH, CF_DW, CF_GROUPS, CF_MAX_CYCLES = 18, 19, 20, 21, 22, 23, 24, 25
CF_TILE_CO, CF_INPUT_RESIDENT = 26, 27
# log datapath: product units per octave k, log accumulation, g, Mitchell log adder, sqrt2
# split mode (k == 2 only), the split constant and its fractional bits, F, bias present
CF_LOG_K, CF_LOG_ACC, CF_LOG_G, CF_LOG_MITCHELL, CF_LOG_SPLIT = 28, 29, 30, 31, 32
CF_SQRT2_BITS, CF_SQRT2_C, CF_FRAC, CF_HAS_BIAS = 33, 34, 35, 36
N_CFG = 37

# counter slots
CT_CYCLES, CT_COMPUTE, CT_STALL = 0, 1, 2
CT_IN_R, CT_IN_W, CT_SH_R, CT_SH_W, CT_W_R, CT_W_W, CT_O_R, CT_O_W = 3, 4, 5, 6, 7, 8, 9, 10
CT_DRAM_R, CT_DRAM_W = 11, 12
CT_SHIFT_OPS, CT_NEG, CT_SELECTS, CT_ZERO_SELECTS, CT_ADDS = 13, 14, 15, 16, 17
CT_MULTIPLIES, CT_ACC_UPDATES, CT_OVERFLOWS, CT_SHIFT_INPUTS = 18, 19, 20, 21
CT_EXP_ADDS, CT_COMPARES, CT_LOG_TO_LINEAR = 22, 23, 24
N_CT = 25

# trace codes
UNIT_ADDERS, UNIT_DMA, UNIT_SHIFT = 0, 1, 2
ACT_COMPUTE, ACT_STALL, ACT_LOAD, ACT_SHIFT, ACT_STORE = 0, 1, 2, 3, 4

KIND_SHIFT, KIND_MAC, KIND_LOG = 0, 1, 2

# per-unit state (columns of ``units``): output, registers; row 0 also holds chunk facts
U_CO, U_OH, U_OW, U_ACC, U_PART, U_DISTINCT_CO, U_TILE = 0, 1, 2, 3, 4, 5, 6
U_ACC_ODD, U_LOG_POS, U_LOG_NEG, U_FULL_POS, U_FULL_NEG = 7, 8, 9, 10, 11
N_UNIT_COLS = 12

STATUS_OK, STATUS_MAX_CYCLES, STATUS_MISSING = 0, 1, 2


@kernel(inline=True)
def _cdiv(a, b):
    return (a + b - 1) // b


@kernel
def _window(k, co_n, ho, wo, h, w, kh_n, kw_n, cfg):
    """Chunk ``k`` of an element: its weight tile and the tapped-input window it reads.

    Returns ``(tile, first, length, tile_channels, r0, r1, c0, c1)``; ``first`` counts
    outputs within the tile, whose order is ``(oh*Wo + ow)*Ct + co``.
    """
    a_units = cfg[CF_A]
    tile_co = cfg[CF_TILE_CO]
    if tile_co == co_n:
        t, kk = 0, k
    else:  # tile_co is a multiple of A: a tile is a whole number of chunks
        per_tile = tile_co * ho * wo // a_units
        t, kk = k // per_tile, k % per_tile
    ct = min(tile_co, co_n - t * tile_co)
    first = kk * a_units
    length = min(a_units, ct * ho * wo - first)
    p0 = first // ct
    p1 = (first + length - 1) // ct
    oh0, ow0, oh1, ow1 = p0 // wo, p0 % wo, p1 // wo, p1 % wo
    r0 = max(oh0 * cfg[CF_SH] - cfg[CF_PH], 0)
    r1 = min(oh1 * cfg[CF_SH] - cfg[CF_PH] + (kh_n - 1) * cfg[CF_DH], h - 1)
    if oh0 == oh1:
        c0 = max(ow0 * cfg[CF_SW] - cfg[CF_PW], 0)
        c1 = min(ow1 * cfg[CF_SW] - cfg[CF_PW] + (kw_n - 1) * cfg[CF_DW], w - 1)
    else:
        c0, c1 = 0, w - 1
    return t, first, length, ct, r0, r1, c0, c1


@kernel
def _prepare(g, cfg, x, dims, trow, tcol, bufs, ct):
    """Move chunk ``g``'s new inputs, weights and shifted copies in; return its cycles.

    ``dims`` is ``(Co, Ho, Wo, Kh, Kw)``, ``bufs`` the buffers and their load stamps
    ``(lbuf, rowstamp, sbuf, sstamp, wstamp)`` (see :func:`run_schedule`). Returns
    ``(load_cycles, shift_cycles)``: DRAM reads at ``dram_bytes_per_cycle``, then the shift
    unit at ``shift_width`` values per cycle.
    """
    co_n, ho, wo, kh_n, kw_n = dims
    lbuf, rowstamp, sbuf, sstamp, wstamp = bufs
    n_chan, h, w = x.shape[1], x.shape[2], x.shape[3]
    a_units = cfg[CF_A]
    tile_co = cfg[CF_TILE_CO]
    n_tiles = _cdiv(co_n, tile_co)
    qb = _cdiv(co_n * ho * wo, a_units)
    b, k = g // qb, g % qb
    par = b % 2
    t, first, _, n_ct, r0, r1, c0, c1 = _window(k, co_n, ho, wo, h, w, kh_n, kw_n, cfg)
    sweep = b * n_tiles + t
    in_bits = 0
    if cfg[CF_INPUT_RESIDENT]:
        lo, hi, stamp = (0, h - 1, b * n_tiles) if k == 0 else (0, -1, 0)
    else:
        lo, hi, stamp = r0, r1, sweep
    for i in range(lo, hi + 1):
        if trow[i] and rowstamp[par, i] != stamp:
            rowstamp[par, i] = stamp
            for c in range(n_chan):
                for j in range(w):
                    lbuf[par, c, i, j] = x[b, c, i, j]
            in_bits += n_chan * w * cfg[CF_ACT_BITS]
    filter_bits = (n_chan // cfg[CF_GROUPS]) * kh_n * kw_n * cfg[CF_WEIGHT_BITS]
    w_bits = 0
    if tile_co == co_n:
        if g == 0:
            wstamp[:] = 1 << 62
            w_bits = co_n * filter_bits
    elif first == 0:  # a sweep's first chunk loads its weight tile
        for co in range(t * tile_co, t * tile_co + n_ct):
            wstamp[co] = sweep
        w_bits = n_ct * filter_bits
    new_vals = 0
    if cfg[CF_KIND] == KIND_SHIFT:
        pr0, pr1, pc0, pc1 = 0, -1, 0, -1
        if k > 0:
            _, _, _, _, pr0, pr1, pc0, pc1 = _window(k - 1, co_n, ho, wo, h, w, kh_n, kw_n, cfg)
        f, rnd = cfg[CF_F], cfg[CF_RND]
        for i in range(r0, r1 + 1):
            if not trow[i]:
                continue
            for j in range(c0, c1 + 1):
                if not tcol[j] or (pr0 <= i <= pr1 and pc0 <= j <= pc1):
                    continue  # not read, or still in the shift buffer
                for c in range(n_chan):
                    v = shl(lbuf[par, c, i, j], f)
                    for s in range(cfg[CF_S] + 1):
                        sbuf[par, c, i, j, s] = round_shr(v, s) if rnd else ashr(v, s)
                sstamp[par, i, j] = g
                new_vals += n_chan
    ct[CT_IN_W] += in_bits
    ct[CT_IN_R] += new_vals * cfg[CF_ACT_BITS]
    ct[CT_SH_W] += new_vals * cfg[CF_WORDS] * cfg[CF_WORD_BITS]
    ct[CT_SHIFT_INPUTS] += new_vals
    ct[CT_W_W] += w_bits
    nbytes = _cdiv(in_bits, 8) + _cdiv(w_bits, 8)
    ct[CT_DRAM_R] += nbytes
    return _cdiv(nbytes, cfg[CF_BW]), _cdiv(new_vals, cfg[CF_SHIFT_WIDTH])


@kernel
def _store(length, cfg, ct):
    """Write one chunk's outputs from the output buffer to DRAM; return its cycles."""
    bits = length * cfg[CF_ACC_BITS]
    ct[CT_O_R] += bits
    nbytes = _cdiv(bits, 8)
    ct[CT_DRAM_W] += nbytes
    return _cdiv(nbytes, cfg[CF_BW])


@kernel
def _compute(t, g, cfg, shifts, wq, bias, y, bufs, units, ct):
    """Cycle ``t`` of chunk ``g``: every unit selects/multiplies ``tree_width`` channels.

    Steps run n, kh, kw, channel block; the tree's partial sum spans the channel blocks and
    the register takes it (and wraps or saturates) at the last block. ``bufs`` as in
    :func:`_prepare`.
    """
    lbuf, rowstamp, sbuf, sstamp, wstamp = bufs
    kind = cfg[CF_KIND]
    if kind == KIND_LOG:
        return _compute_log(t, g, cfg, shifts, wq, bias, y, lbuf, rowstamp, wstamp, units, ct)
    co_n, cg, kh_n, kw_n, _ = wq.shape
    ho, wo = y.shape[2], y.shape[3]
    h, w = lbuf.shape[2], lbuf.shape[3]
    tw = cfg[CF_T]
    nb = _cdiv(cg, tw)
    steps = cfg[CF_N] * kh_n * kw_n * nb
    qb = _cdiv(co_n * ho * wo, cfg[CF_A])
    b = g // qb
    g0 = b * qb
    par = b % 2
    n_tiles = _cdiv(co_n, cfg[CF_TILE_CO])
    sweep = b * n_tiles + units[0, 6]
    cb = t % nb
    r = t // nb
    kwi = r % kw_n
    r //= kw_n
    khi = r % kh_n
    n = r // kh_n
    c_lo = cb * tw
    c_hi = min(cg, c_lo + tw)
    cog = co_n // cfg[CF_GROUPS]
    length = units.shape[0]
    for u in range(length):
        co, oh, ow = units[u, 0], units[u, 1], units[u, 2]
        if t == 0:
            units[u, 3] = bias[co]
        if cb == 0:
            units[u, 4] = 0
        if wstamp[co] < sweep:
            return STATUS_MISSING
        cbase = (co // cog) * cg
        i = oh * cfg[CF_SH] - cfg[CF_PH] + khi * cfg[CF_DH]
        j = ow * cfg[CF_SW] - cfg[CF_PW] + kwi * cfg[CF_DW]
        real = 0 <= i < h and 0 <= j < w
        part = units[u, 4]
        for cl in range(c_lo, c_hi):
            widx = wq[co, cl, khi, kwi, n]
            if kind == KIND_SHIFT:
                ct[CT_SELECTS] += 1
                if widx == 0:
                    ct[CT_ZERO_SELECTS] += 1
                elif real:
                    if sstamp[par, i, j] < g0:
                        return STATUS_MISSING
                    mag = sbuf[par, cbase + cl, i, j, abs(widx) + n - 1]
                    part += mag if widx > 0 else -mag
                    ct[CT_SH_R] += cfg[CF_WORD_BITS]
            else:
                ct[CT_MULTIPLIES] += 1
                if real:
                    if rowstamp[par, i] < b * n_tiles:
                        return STATUS_MISSING
                    part += widx * lbuf[par, cbase + cl, i, j]
                    ct[CT_IN_R] += cfg[CF_ACT_BITS]
        units[u, 4] = part
        ct[CT_ADDS] += c_hi - c_lo
        if cb == nb - 1:
            v = units[u, 3] + part
            fitted = apply_overflow(v, cfg[CF_ACC_BITS], True, cfg[CF_SAT] != 0)
            if fitted != v:
                ct[CT_OVERFLOWS] += 1
            units[u, 3] = fitted
            ct[CT_ACC_UPDATES] += 1
        if t == steps - 1:
            y[b, co, oh, ow] = units[u, 3]
    # one weight read per distinct output channel of the chunk (broadcast to its units)
    ct[CT_W_R] += units[0, 5] * (c_hi - c_lo) * cfg[CF_PASS_WEIGHT_BITS]
    if t == steps - 1:
        ct[CT_O_W] += length * cfg[CF_ACC_BITS]
    return STATUS_OK


@kernel(inline=True)
def _unpack(code):
    """A packed log code ``4*e + (sign + 1)`` as ``(e, sign)``; ``e`` may be negative."""
    return code >> 2, (code & 3) - 1


@kernel
def _log_term(cfg, shifts, state, p, neg, ct):
    """Merge one product (exponent ``p``, negative when ``neg``) into a unit's ``state``.

    ``state`` is the unit's row (``U_*`` columns). Linear accumulation: the shifter makes
    ``floor(2**(p/k + F))``, the accumulator adds it (odd base-sqrt2 terms: a second register,
    or the shift-add constant). Log accumulation: the term's register takes it as is when
    empty, else the log adder (compare, shift, add) merges it.
    """
    acc_bits, sat = cfg[CF_ACC_BITS], cfg[CF_SAT] != 0
    ct[CT_EXP_ADDS] += 1
    ct[CT_ACC_UPDATES] += 1
    if cfg[CF_LOG_ACC] == 0:
        odd = cfg[CF_LOG_K] == 2 and (p & 1) == 1
        octave = p >> 1 if cfg[CF_LOG_K] == 2 else p
        shift = octave + cfg[CF_FRAC]
        term = shl(1, shift) if shift >= 0 else 0
        ct[CT_SHIFT_OPS] += 1
        ct[CT_ADDS] += 1
        col = U_ACC
        if odd and cfg[CF_LOG_SPLIT]:
            col = U_ACC_ODD
        elif odd:  # the shift-add sqrt(2) constant: one shifter per nonzero shift, an adder each
            scaled = 0
            for j in range(shifts.shape[0]):
                scaled += ashr(term, shifts[j])
                if shifts[j] > 0:
                    ct[CT_SHIFT_OPS] += 1
                if j > 0:
                    ct[CT_ADDS] += 1
            term = scaled
        v = state[col] - term if neg else state[col] + term
        fitted = apply_overflow(v, acc_bits, True, sat)
        if fitted != v:
            ct[CT_OVERFLOWS] += 1
        state[col] = fitted
        return
    g = cfg[CF_LOG_G]
    big_p = shl(p, g - (cfg[CF_LOG_K] - 1))  # p/k in log2 units, g fractional bits
    reg, full = (U_LOG_NEG, U_FULL_NEG) if neg else (U_LOG_POS, U_FULL_POS)
    if state[full] == 0:
        state[reg] = big_p
        state[full] = 1
        return
    s = state[reg]
    hi = max(s, big_p)
    ct[CT_COMPARES] += 1
    ct[CT_SHIFT_OPS] += 1
    if cfg[CF_LOG_MITCHELL]:
        diff = abs(s - big_p)
        whole = diff >> g
        frac = diff - shl(whole, g)
        state[reg] = hi + ashr(shl(2, g) - frac, whole + 1)
        ct[CT_ADDS] += 2
    else:
        state[reg] = hi + ashr(shl(1, g), abs((s >> g) - (big_p >> g)))
        ct[CT_ADDS] += 1


@kernel
def _log_result(cfg, bias_co, state, ct):
    """A unit's output stage: the final add (sqrt2 split) or the log -> linear conversions."""
    acc_bits, sat = cfg[CF_ACC_BITS], cfg[CF_SAT] != 0
    if cfg[CF_LOG_ACC] == 0:
        if not cfg[CF_LOG_SPLIT]:
            return state[U_ACC]
        v = state[U_ACC] + ashr(state[U_ACC_ODD] * cfg[CF_SQRT2_C], cfg[CF_SQRT2_BITS])
        ct[CT_MULTIPLIES] += 1
        ct[CT_ADDS] += 1
        ct[CT_ACC_UPDATES] += 1
    else:
        lin_pos, lin_neg = 0, 0
        g, frac = cfg[CF_LOG_G], cfg[CF_FRAC]
        if state[U_FULL_POS]:
            lin_pos, o = log_to_linear(state[U_LOG_POS], g, frac, acc_bits, sat)
            ct[CT_OVERFLOWS] += o
            ct[CT_LOG_TO_LINEAR] += 1
            ct[CT_SHIFT_OPS] += 1
        if state[U_FULL_NEG]:
            lin_neg, o = log_to_linear(state[U_LOG_NEG], g, frac, acc_bits, sat)
            ct[CT_OVERFLOWS] += o
            ct[CT_LOG_TO_LINEAR] += 1
            ct[CT_SHIFT_OPS] += 1
        v = bias_co + lin_pos - lin_neg
        ct[CT_ADDS] += 2 if cfg[CF_HAS_BIAS] else 1
    fitted = apply_overflow(v, acc_bits, True, sat)
    if fitted != v:
        ct[CT_OVERFLOWS] += 1
    return fitted


@kernel
def _compute_log(t, g, cfg, shifts, wq, bias, y, lbuf, rowstamp, wstamp, units, ct):
    """Cycle ``t`` of chunk ``g`` on the log datapath: every lane merges one term.

    Each lane is a serial accumulator for one output and takes its terms one per cycle in
    the order c, kh, kw (``t = (c*Kh + kh)*Kw + kw``), reading the packed log codes of the
    input and weight buffers; its output stage converts the registers after the last term.
    """
    co_n, cg, kh_n, kw_n, _ = wq.shape
    ho, wo = y.shape[2], y.shape[3]
    h, w = lbuf.shape[2], lbuf.shape[3]
    steps = cg * kh_n * kw_n
    qb = _cdiv(co_n * ho * wo, cfg[CF_A])
    b = g // qb
    par = b % 2
    n_tiles = _cdiv(co_n, cfg[CF_TILE_CO])
    sweep = b * n_tiles + units[0, U_TILE]
    kwi = t % kw_n
    khi = (t // kw_n) % kh_n
    c = t // (kw_n * kh_n)
    cog = co_n // cfg[CF_GROUPS]
    length = units.shape[0]
    for u in range(length):
        state = units[u]
        co, oh, ow = state[U_CO], state[U_OH], state[U_OW]
        if t == 0:
            state[U_ACC] = bias[co] if cfg[CF_LOG_ACC] == 0 else 0
            state[U_ACC_ODD] = 0
            state[U_FULL_POS] = 0
            state[U_FULL_NEG] = 0
        if wstamp[co] < sweep:
            return STATUS_MISSING
        i = oh * cfg[CF_SH] - cfg[CF_PH] + khi * cfg[CF_DH]
        j = ow * cfg[CF_SW] - cfg[CF_PW] + kwi * cfg[CF_DW]
        if 0 <= i < h and 0 <= j < w:  # padding is a zero code: no read, no product
            if rowstamp[par, i] < b * n_tiles:
                return STATUS_MISSING
            ex, sx = _unpack(lbuf[par, (co // cog) * cg + c, i, j])
            ct[CT_IN_R] += cfg[CF_ACT_BITS]
            ew, sw = _unpack(wq[co, c, khi, kwi, 0])
            if sx * sw != 0:
                _log_term(cfg, shifts, state, ex + ew, sx * sw < 0, ct)
        if t == steps - 1:
            y[b, co, oh, ow] = _log_result(cfg, bias[co], state, ct)
    ct[CT_W_R] += units[0, U_DISTINCT_CO] * cfg[CF_PASS_WEIGHT_BITS]
    if t == steps - 1:
        ct[CT_O_W] += length * cfg[CF_ACC_BITS]
    return STATUS_OK


@kernel
def _record(trace, nrec, cycle, unit, action, address):
    if nrec < trace.shape[0]:
        trace[nrec, 0] = cycle
        trace[nrec, 1] = unit
        trace[nrec, 2] = action
        trace[nrec, 3] = address
    return nrec + 1


@kernel
def _units(g, co_n, ho, wo, h, w, kh_n, kw_n, cfg, units_all):
    """Fill the (co, oh, ow) of chunk ``g``'s units; return the view.

    Column 5 of row 0 holds the chunk's distinct output channels, column 6 its weight tile.
    """
    qb = _cdiv(co_n * ho * wo, cfg[CF_A])
    t, first, length, n_ct, _, _, _, _ = _window(g % qb, co_n, ho, wo, h, w, kh_n, kw_n, cfg)
    units = units_all[:length]
    for u in range(length):
        o = first + u
        pos = o // n_ct
        units[u, 0] = t * cfg[CF_TILE_CO] + o % n_ct
        units[u, 1] = pos // wo
        units[u, 2] = pos % wo
    units[0, 5] = min(length, n_ct)  # a run of consecutive co, cyclic: min(L, Ct) distinct
    units[0, 6] = t
    return units


@kernel
def run_schedule(cfg, shifts, x, wq, bias, y, ct, trace):
    """Step the schedule of one layer; return ``(status, trace rows wanted)``.

    Parameters
    ----------
    cfg : int64 array (N_CFG,)
        Configuration (``CF_*``); ``cfg[CF_MAX_CYCLES] < 0`` means no limit.
    shifts : int64 array (n,)
        The log datapath's ``sqrt2_shifts`` (unused by the others).
    x : int64 array (B, C, H, W)
        Raw inputs (MAC and shift datapaths), or packed log codes ``4*e + sign + 1`` (log).
    wq : int64 array (Co, C/groups, Kh, Kw, N)
        ShiftCNN indices, or raw MAC weights or packed log codes with N = 1.
    bias : int64 array (Co,)
        Initial accumulator values.
    y : int64 array (B, Co, Ho, Wo)
        Output.
    ct : int64 array (N_CT,)
        Counters, zero on entry.
    trace : int64 array (R, 4)
        Trace rows ``(cycle, unit, action, address)``; ``R = 0`` records nothing.
    """
    n_batch, n_chan, h, w = x.shape
    co_n, cg, kh_n, kw_n, _ = wq.shape
    ho, wo = y.shape[2], y.shape[3]
    a_units = cfg[CF_A]
    qb = _cdiv(co_n * ho * wo, a_units)
    n_chunks = n_batch * qb
    if cfg[CF_KIND] == KIND_LOG:  # serial accumulators: one term per cycle
        steps = cg * kh_n * kw_n
    else:
        steps = cfg[CF_N] * kh_n * kw_n * _cdiv(cg, cfg[CF_T])
    max_cycles = cfg[CF_MAX_CYCLES]
    shift = cfg[CF_KIND] == KIND_SHIFT
    lbuf = np.zeros((2, n_chan, h, w), dtype=np.int64)
    rowstamp = np.full((2, h), -1, dtype=np.int64)
    if shift:
        sbuf = np.zeros((2, n_chan, h, w, cfg[CF_S] + 1), dtype=np.int64)
    else:
        sbuf = np.zeros((1, 1, 1, 1, 1), dtype=np.int64)
    sstamp = np.full((2, h, w), -1, dtype=np.int64)
    wstamp = np.full(co_n, -10, dtype=np.int64)
    units_all = np.zeros((a_units, N_UNIT_COLS), dtype=np.int64)
    bufs = (lbuf, rowstamp, sbuf, sstamp, wstamp)
    dims = (co_n, ho, wo, kh_n, kw_n)
    trow = np.zeros(h, dtype=np.bool_)
    tcol = np.zeros(w, dtype=np.bool_)
    for oh in range(ho):
        for kh in range(kh_n):
            i = oh * cfg[CF_SH] - cfg[CF_PH] + kh * cfg[CF_DH]
            if 0 <= i < h:
                trow[i] = True
    for ow in range(wo):
        for kw in range(kw_n):
            j = ow * cfg[CF_SW] - cfg[CF_PW] + kw * cfg[CF_DW]
            if 0 <= j < w:
                tcol[j] = True
    if shift:
        ct[CT_SHIFT_OPS] = n_batch * n_chan * h * w * cfg[CF_S]
        ct[CT_NEG] = n_batch * n_chan * h * w * (cfg[CF_S] + 1)
    cycle = 0
    nrec = 0
    if cfg[CF_PIPELINED]:
        ld, shc = _prepare(0, cfg, x, dims, trow, tcol, bufs, ct)
        for t in range(ld + shc):
            nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_STALL, 0)
            if t < ld:
                nrec = _record(trace, nrec, cycle, UNIT_DMA, ACT_LOAD, 0)
            else:
                nrec = _record(trace, nrec, cycle, UNIT_SHIFT, ACT_SHIFT, 0)
            ct[CT_STALL] += 1
            cycle += 1
            if max_cycles >= 0 and cycle > max_cycles:
                return STATUS_MAX_CYCLES, nrec
        prev_len = 0
        for g in range(n_chunks):
            units = _units(g, co_n, ho, wo, h, w, kh_n, kw_n, cfg, units_all)
            ld, shc = 0, 0
            if g + 1 < n_chunks:
                ld, shc = _prepare(g + 1, cfg, x, dims, trow, tcol, bufs, ct)
            st = _store(prev_len, cfg, ct) if g > 0 else 0
            mem = ld + shc + st
            for t in range(max(steps, mem)):
                if t < steps:
                    status = _compute(t, g, cfg, shifts, wq, bias, y, bufs, units, ct)
                    if status != STATUS_OK:
                        return status, nrec
                    ct[CT_COMPUTE] += 1
                    nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_COMPUTE, g)
                else:
                    ct[CT_STALL] += 1
                    nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_STALL, g + 1)
                if t < ld:
                    nrec = _record(trace, nrec, cycle, UNIT_DMA, ACT_LOAD, g + 1)
                elif t < ld + shc:
                    nrec = _record(trace, nrec, cycle, UNIT_SHIFT, ACT_SHIFT, g + 1)
                elif t < mem:
                    nrec = _record(trace, nrec, cycle, UNIT_DMA, ACT_STORE, g - 1)
                cycle += 1
                if max_cycles >= 0 and cycle > max_cycles:
                    return STATUS_MAX_CYCLES, nrec
            prev_len = units.shape[0]
        st = _store(prev_len, cfg, ct)
        for _ in range(st):
            ct[CT_STALL] += 1
            nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_STALL, n_chunks)
            nrec = _record(trace, nrec, cycle, UNIT_DMA, ACT_STORE, n_chunks - 1)
            cycle += 1
            if max_cycles >= 0 and cycle > max_cycles:
                return STATUS_MAX_CYCLES, nrec
    else:
        for g in range(n_chunks):
            ld, shc = _prepare(g, cfg, x, dims, trow, tcol, bufs, ct)
            units = _units(g, co_n, ho, wo, h, w, kh_n, kw_n, cfg, units_all)
            st_len = units.shape[0]
            for t in range(ld + shc):
                ct[CT_STALL] += 1
                nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_STALL, g)
                if t < ld:
                    nrec = _record(trace, nrec, cycle, UNIT_DMA, ACT_LOAD, g)
                else:
                    nrec = _record(trace, nrec, cycle, UNIT_SHIFT, ACT_SHIFT, g)
                cycle += 1
                if max_cycles >= 0 and cycle > max_cycles:
                    return STATUS_MAX_CYCLES, nrec
            for t in range(steps):
                status = _compute(t, g, cfg, shifts, wq, bias, y, bufs, units, ct)
                if status != STATUS_OK:
                    return status, nrec
                ct[CT_COMPUTE] += 1
                nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_COMPUTE, g)
                cycle += 1
                if max_cycles >= 0 and cycle > max_cycles:
                    return STATUS_MAX_CYCLES, nrec
            st = _store(st_len, cfg, ct)
            for _ in range(st):
                ct[CT_STALL] += 1
                nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_STALL, g)
                nrec = _record(trace, nrec, cycle, UNIT_DMA, ACT_STORE, g)
                cycle += 1
                if max_cycles >= 0 and cycle > max_cycles:
                    return STATUS_MAX_CYCLES, nrec
    ct[CT_CYCLES] = cycle
    return STATUS_OK, nrec
