"""Kernels of the cycle-stepped model: the schedule of :mod:`shiftsim.cycle`, one cycle a step.

The public wrapper is :func:`shiftsim.cycle.run_cycle`; it validates everything and packs the
configuration into the ``cfg`` array (indices ``CF_*``). Counters go into ``counters``
(indices ``CT_*``), the optional trace into ``trace`` rows ``(cycle, unit, action, address)``.
The schedule is stepped pass by pass (a pass is one chunk of outputs over one input-channel
tile); the buffers hold real values with the pass that loaded them, and every read checks it.
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
# input-channel tile, weight placement (0 resident, 1 per sweep, 2 per pass), weight RF entries
CF_TILE_C, CF_WEIGHTS, CF_RF_ENTRIES = 37, 38, 39
N_CFG = 40

# counter slots
CT_CYCLES, CT_COMPUTE, CT_STALL = 0, 1, 2
CT_IN_R, CT_IN_W, CT_SH_R, CT_SH_W, CT_W_R, CT_W_W, CT_O_R, CT_O_W = 3, 4, 5, 6, 7, 8, 9, 10
CT_DRAM_R, CT_DRAM_W = 11, 12
CT_SHIFT_OPS, CT_NEG, CT_SELECTS, CT_ZERO_SELECTS, CT_ADDS = 13, 14, 15, 16, 17
CT_MULTIPLIES, CT_ACC_UPDATES, CT_OVERFLOWS, CT_SHIFT_INPUTS = 18, 19, 20, 21
CT_EXP_ADDS, CT_COMPARES, CT_LOG_TO_LINEAR = 22, 23, 24
CT_RF_R, CT_RF_W, CT_PSUM_R, CT_PSUM_W = 25, 26, 27, 28
N_CT = 29

# trace codes
UNIT_ADDERS, UNIT_DMA, UNIT_SHIFT = 0, 1, 2
ACT_COMPUTE, ACT_STALL, ACT_LOAD, ACT_SHIFT, ACT_STORE = 0, 1, 2, 3, 4

KIND_SHIFT, KIND_MAC, KIND_LOG = 0, 1, 2
W_RESIDENT, W_SWEEP, W_PASS = 0, 1, 2

# per-unit state (columns of ``units``): output, registers; row 0 also holds pass facts
U_CO, U_OH, U_OW, U_ACC, U_PART, U_DISTINCT_CO, U_TILE = 0, 1, 2, 3, 4, 5, 6
U_ACC_ODD, U_LOG_POS, U_LOG_NEG, U_FULL_POS, U_FULL_NEG = 7, 8, 9, 10, 11
U_CI, U_SWEEP0, U_HIT, U_RFKEY = 12, 13, 14, 15
N_UNIT_COLS = 16

STATUS_OK, STATUS_MAX_CYCLES, STATUS_MISSING = 0, 1, 2


@kernel(inline=True)
def _cdiv(a, b):
    return (a + b - 1) // b


@kernel
def _layout(co_n, ho, wo, cg, cfg):
    """``(chunks of a full tile, full tiles, chunks per element, input-channel tiles)``."""
    a_units, tile_co = cfg[CF_A], cfg[CF_TILE_CO]
    n_full = co_n // tile_co
    per_full = _cdiv(tile_co * ho * wo, a_units)
    rest = co_n - n_full * tile_co
    qb = n_full * per_full + _cdiv(rest * ho * wo, a_units)
    return per_full, n_full, qb, _cdiv(cg, cfg[CF_TILE_C])


@kernel
def _decode(gp, co_n, ho, wo, cg, cfg):
    """Pass ``gp`` of the batch: ``(b, t, k, ci, first pass of its sweep)``."""
    per_full, n_full, qb, m = _layout(co_n, ho, wo, cg, cfg)
    b = gp // (qb * m)
    r = gp % (qb * m)
    chunk, ci = r // m, r % m
    if chunk < n_full * per_full:
        t, k = chunk // per_full, chunk % per_full
    else:
        t, k = n_full, chunk - n_full * per_full
    return b, t, k, ci, b * qb * m + (chunk - k) * m


@kernel
def _window(t, k, co_n, ho, wo, h, w, kh_n, kw_n, cfg):
    """Chunk ``k`` of tile ``t``: ``(first, length, tile channels, r0, r1, c0, c1)``.

    ``first`` counts outputs within the tile, whose order is ``(oh*Wo + ow)*Ct + co``.
    """
    a_units = cfg[CF_A]
    tile_co = cfg[CF_TILE_CO]
    ct = min(tile_co, co_n - t * tile_co)
    first = k * a_units
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
    return first, length, ct, r0, r1, c0, c1


@kernel
def _load(lbuf, instamp, x, bank, b, c, i, j0, j1, gp, bits):
    """Copy input row ``i`` columns ``[j0, j1]`` of channel ``c`` into ``bank``; bits moved."""
    for j in range(j0, j1 + 1):
        lbuf[bank, c, i, j] = x[b, c, i, j]
        instamp[bank, c, i, j] = gp
    return (j1 - j0 + 1) * bits


@kernel
def _load_row(lbuf, instamp, x, tcol, bank, b, c, i, gp, bits):
    """Copy the tapped columns of input row ``i``, channel ``c``, into ``bank``; bits moved."""
    moved = 0
    for j in range(x.shape[3]):
        if tcol[j]:
            moved += _load(lbuf, instamp, x, bank, b, c, i, j, j, gp, bits)
    return moved


@kernel
def _prepare(gp, cfg, x, dims, trow, tcol, bufs, ct):
    """Move pass ``gp``'s new inputs, weights and shifted copies in; return its cycles.

    ``dims`` is ``(Co, Cg, Ho, Wo, Kh, Kw)``, ``bufs`` the buffers and their load stamps
    ``(lbuf, instamp, rowstamp, sbuf, sstamp, wstamp, readstamp)`` (see
    :func:`run_schedule`). Returns ``(load_cycles, shift_cycles)``: DRAM reads at
    ``dram_bytes_per_cycle``, then the shift unit at ``shift_width`` values per cycle.
    """
    co_n, cg, ho, wo, kh_n, kw_n = dims
    lbuf, instamp, rowstamp, sbuf, sstamp, wstamp, _ = bufs
    h, w = x.shape[2], x.shape[3]
    b, t, k, ci, sweep0 = _decode(gp, co_n, ho, wo, cg, cfg)
    first, length, n_ct, r0, r1, c0, c1 = _window(t, k, co_n, ho, wo, h, w, kh_n, kw_n, cfg)
    _, _, qb, m = _layout(co_n, ho, wo, cg, cfg)
    line = m == 1
    bank = b % 2 if line else gp % 2
    cog = co_n // cfg[CF_GROUPS]
    co_lo = t * cfg[CF_TILE_CO]
    grp_lo, grp_hi = co_lo // cog, (co_lo + n_ct - 1) // cog
    tc = cfg[CF_TILE_C]
    cl_lo, cl_hi = ci * tc, min(cg, ci * tc + tc)
    act = cfg[CF_ACT_BITS]
    in_bits = 0
    if line and cfg[CF_INPUT_RESIDENT]:
        if t == 0 and k == 0:  # the element's first pass loads every tapped row
            for i in range(h):
                if trow[i]:
                    rowstamp[bank, i] = gp
                    for c in range(x.shape[1]):
                        in_bits += _load_row(lbuf, instamp, x, tcol, bank, b, c, i, gp, act)
    elif line:
        for i in range(r0, r1 + 1):
            if trow[i] and rowstamp[bank, i] < sweep0:
                rowstamp[bank, i] = gp
                for grp in range(grp_lo, grp_hi + 1):
                    for c in range(grp * cg, grp * cg + cg):
                        in_bits += _load_row(lbuf, instamp, x, tcol, bank, b, c, i, gp, act)
    else:  # box mode: the pass's window, its channels
        for i in range(r0, r1 + 1):
            if not trow[i]:
                continue
            for j in range(c0, c1 + 1):
                if tcol[j]:
                    for grp in range(grp_lo, grp_hi + 1):
                        for c in range(grp * cg + cl_lo, grp * cg + cl_hi):
                            in_bits += _load(lbuf, instamp, x, bank, b, c, i, j, j, gp, act)
    slice_bits = (cl_hi - cl_lo) * kh_n * kw_n * cfg[CF_WEIGHT_BITS]
    w_bits = 0
    mode = cfg[CF_WEIGHTS]
    if mode == W_RESIDENT:
        if gp == 0:
            wstamp[:, :] = 0
            w_bits = co_n * cg * kh_n * kw_n * cfg[CF_WEIGHT_BITS]
    elif mode == W_SWEEP:
        if k == 0:  # the sweep's first chunk loads the tile's slice of this channel tile
            for co in range(co_lo, co_lo + n_ct):
                wstamp[co, ci] = gp
            w_bits = n_ct * slice_bits
    else:  # the chunk's output channels, every pass
        n_dist = min(length, n_ct)
        for d in range(n_dist):
            wstamp[co_lo + (first + d) % n_ct, ci] = gp
        w_bits = n_dist * slice_bits
    new_vals = 0
    if cfg[CF_KIND] == KIND_SHIFT:
        pr0, pr1, pc0, pc1 = 0, -1, 0, -1
        if line and k > 0:  # positions of the sweep's previous window are still shifted
            _, _, _, pr0, pr1, pc0, pc1 = _window(t, k - 1, co_n, ho, wo, h, w, kh_n, kw_n, cfg)
        f, rnd = cfg[CF_F], cfg[CF_RND]
        for i in range(r0, r1 + 1):
            if not trow[i]:
                continue
            for j in range(c0, c1 + 1):
                if not tcol[j] or (pr0 <= i <= pr1 and pc0 <= j <= pc1):
                    continue  # not read, or still in the shift buffer
                for grp in range(grp_lo, grp_hi + 1):
                    lo, hi = (0, cg) if line else (cl_lo, cl_hi)
                    for c in range(grp * cg + lo, grp * cg + hi):
                        if instamp[bank, c, i, j] < _input_floor(gp, b, sweep0, qb * m, line, cfg):
                            return -1, -1  # the shift unit read an input its buffer lacks
                        v = shl(lbuf[bank, c, i, j], f)
                        for s in range(cfg[CF_S] + 1):
                            sbuf[bank, c, i, j, s] = round_shr(v, s) if rnd else ashr(v, s)
                        sstamp[bank, c, i, j] = gp
                        new_vals += 1
    ct[CT_IN_W] += in_bits
    ct[CT_IN_R] += new_vals * act
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
def _input_floor(gp, b, sweep0, per_element, line, cfg):
    """The oldest load of the input buffer that pass ``gp`` may read."""
    if not line:
        return gp
    if cfg[CF_INPUT_RESIDENT]:
        return b * per_element
    return sweep0


@kernel
def _valid(stamp, gp, sweep0, mode):
    """Whether a weight slice loaded at pass ``stamp`` serves pass ``gp``."""
    if mode == W_RESIDENT:
        return stamp >= 0
    if mode == W_SWEEP:
        return stamp >= sweep0
    return stamp == gp


@kernel
def _weight_traffic(units, length, n_terms, cfg, ct):
    """One cycle's weight reads: from the units' register files, or the weight buffer.

    A unit whose register file already holds its slice (``U_HIT``) reads it there; else the
    weight buffer sends one word per distinct output channel (multicast to its units), and
    units with a register file big enough keep a copy.
    """
    pwb = cfg[CF_PASS_WEIGHT_BITS]
    if units[0, U_HIT] == 0:
        ct[CT_W_R] += units[0, U_DISTINCT_CO] * n_terms * pwb
    if units[0, U_RFKEY] >= 0:  # the slice fits the register files
        ct[CT_RF_R] += length * n_terms * pwb
        if units[0, U_HIT] == 0:
            ct[CT_RF_W] += length * n_terms * pwb


@kernel
def _compute(t, gp, cyc, cfg, shifts, wq, bias, y, bufs, units, psum, ct):
    """Cycle ``t`` of pass ``gp``: every unit selects/multiplies ``tree_width`` channels.

    Steps run n, kh, kw, channel block; the tree's partial sum spans the channel blocks of
    the pass. With one input-channel tile the register takes it (and wraps or saturates) at
    the last block; with several, the unit's partial-sum register of the step ``(n, kh, kw)``
    carries it to the next tile and the register takes the whole step's sum at the last.
    ``cyc`` is the global cycle (the multicast of an input word is counted once per cycle).
    """
    lbuf, instamp, _, sbuf, sstamp, wstamp, readstamp = bufs
    kind = cfg[CF_KIND]
    if kind == KIND_LOG:
        return _compute_log(t, gp, cyc, cfg, shifts, wq, bias, y, bufs, units, ct)
    co_n, cg, kh_n, kw_n, _ = wq.shape
    h, w = lbuf.shape[2], lbuf.shape[3]
    tw = cfg[CF_T]
    b, _, _, ci, sweep0 = _decode(gp, co_n, y.shape[2], y.shape[3], cg, cfg)
    m = _cdiv(cg, cfg[CF_TILE_C])
    line = m == 1
    bank = b % 2 if line else gp % 2
    cl0 = ci * cfg[CF_TILE_C]
    tcl = min(cg, cl0 + cfg[CF_TILE_C]) - cl0
    nb = _cdiv(tcl, tw)
    steps = cfg[CF_N] * kh_n * kw_n * nb
    cb = t % nb
    r = t // nb
    kwi = r % kw_n
    r //= kw_n
    khi = r % kh_n
    n = r // kh_n
    step = (n * kh_n + khi) * kw_n + kwi
    c_lo = cl0 + cb * tw
    c_hi = min(cl0 + tcl, c_lo + tw)
    cog = co_n // cfg[CF_GROUPS]
    length = units.shape[0]
    words = cfg[CF_WORDS] * cfg[CF_WORD_BITS]
    acc_bits = cfg[CF_ACC_BITS]
    _, _, qb, _ = _layout(co_n, y.shape[2], y.shape[3], cg, cfg)
    floor = _input_floor(gp, b, sweep0, qb * m, line, cfg)
    for u in range(length):
        co, oh, ow = units[u, U_CO], units[u, U_OH], units[u, U_OW]
        if t == 0 and ci == 0:
            units[u, U_ACC] = bias[co]
        if cb == 0:
            units[u, U_PART] = 0
        if not _valid(wstamp[co, ci], gp, sweep0, cfg[CF_WEIGHTS]):
            return STATUS_MISSING
        if units[0, U_HIT] == 1 and units[u, U_RFKEY] != co * m + ci:
            return STATUS_MISSING  # the register file does not hold this unit's weights
        cbase = (co // cog) * cg
        i = oh * cfg[CF_SH] - cfg[CF_PH] + khi * cfg[CF_DH]
        j = ow * cfg[CF_SW] - cfg[CF_PW] + kwi * cfg[CF_DW]
        real = 0 <= i < h and 0 <= j < w
        part = units[u, U_PART]
        for cl in range(c_lo, c_hi):
            c = cbase + cl
            if real:
                if kind == KIND_SHIFT:
                    if sstamp[bank, c, i, j] < (sweep0 if line else gp):
                        return STATUS_MISSING
                elif instamp[bank, c, i, j] < floor:
                    return STATUS_MISSING
                if readstamp[c, i, j] != cyc:  # one read per input word and cycle, multicast
                    readstamp[c, i, j] = cyc
                    if kind == KIND_SHIFT:
                        ct[CT_SH_R] += words
                    else:
                        ct[CT_IN_R] += cfg[CF_ACT_BITS]
            widx = wq[co, cl, khi, kwi, n]
            if kind == KIND_SHIFT:
                ct[CT_SELECTS] += 1
                if widx == 0:
                    ct[CT_ZERO_SELECTS] += 1
                elif real:
                    mag = sbuf[bank, c, i, j, abs(widx) + n - 1]
                    part += mag if widx > 0 else -mag
            else:
                ct[CT_MULTIPLIES] += 1
                if real:
                    part += widx * lbuf[bank, c, i, j]
        units[u, U_PART] = part
        ct[CT_ADDS] += c_hi - c_lo
        if cb == nb - 1:  # the step's last block of this channel tile
            if ci > 0:
                part += psum[u, step]
                ct[CT_PSUM_R] += acc_bits
            if ci < m - 1:
                psum[u, step] = part
                ct[CT_PSUM_W] += acc_bits
            else:
                v = units[u, U_ACC] + part
                fitted = apply_overflow(v, acc_bits, True, cfg[CF_SAT] != 0)
                if fitted != v:
                    ct[CT_OVERFLOWS] += 1
                units[u, U_ACC] = fitted
                ct[CT_ACC_UPDATES] += 1
                if t == steps - 1:
                    y[b, co, oh, ow] = units[u, U_ACC]
    _weight_traffic(units, length, c_hi - c_lo, cfg, ct)
    if t == steps - 1 and ci == m - 1:
        ct[CT_O_W] += length * acc_bits
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
def _compute_log(t, gp, cyc, cfg, shifts, wq, bias, y, bufs, units, ct):
    """Cycle ``t`` of pass ``gp`` on the log datapath: every lane merges one term.

    Each lane is a serial accumulator for one output and takes its terms one per cycle in
    the order c, kh, kw (``t = (c*Kh + kh)*Kw + kw`` within the pass's channel tile; the
    registers carry over from one channel tile to the next), reading the packed log codes
    of the input and weight buffers; its output stage converts the registers after the
    last term.
    """
    lbuf, instamp, _, _, _, wstamp, readstamp = bufs
    co_n, cg, kh_n, kw_n, _ = wq.shape
    h, w = lbuf.shape[2], lbuf.shape[3]
    b, _, _, ci, sweep0 = _decode(gp, co_n, y.shape[2], y.shape[3], cg, cfg)
    _, _, qb, m = _layout(co_n, y.shape[2], y.shape[3], cg, cfg)
    line = m == 1
    bank = b % 2 if line else gp % 2
    floor = _input_floor(gp, b, sweep0, qb * m, line, cfg)
    cl0 = ci * cfg[CF_TILE_C]
    steps = (min(cg, cl0 + cfg[CF_TILE_C]) - cl0) * kh_n * kw_n
    kwi = t % kw_n
    khi = (t // kw_n) % kh_n
    c = cl0 + t // (kw_n * kh_n)
    cog = co_n // cfg[CF_GROUPS]
    length = units.shape[0]
    last = t == steps - 1 and ci == m - 1
    for u in range(length):
        state = units[u]
        co, oh, ow = state[U_CO], state[U_OH], state[U_OW]
        if t == 0 and ci == 0:
            state[U_ACC] = bias[co] if cfg[CF_LOG_ACC] == 0 else 0
            state[U_ACC_ODD] = 0
            state[U_FULL_POS] = 0
            state[U_FULL_NEG] = 0
        if not _valid(wstamp[co, ci], gp, sweep0, cfg[CF_WEIGHTS]):
            return STATUS_MISSING
        if units[0, U_HIT] == 1 and state[U_RFKEY] != co * m + ci:
            return STATUS_MISSING
        i = oh * cfg[CF_SH] - cfg[CF_PH] + khi * cfg[CF_DH]
        j = ow * cfg[CF_SW] - cfg[CF_PW] + kwi * cfg[CF_DW]
        if 0 <= i < h and 0 <= j < w:  # padding is a zero code: no read, no product
            cc = (co // cog) * cg + c
            if instamp[bank, cc, i, j] < floor:
                return STATUS_MISSING
            if readstamp[cc, i, j] != cyc:  # one read per input word and cycle, multicast
                readstamp[cc, i, j] = cyc
                ct[CT_IN_R] += cfg[CF_ACT_BITS]
            ex, sx = _unpack(lbuf[bank, cc, i, j])
            ew, sw = _unpack(wq[co, c, khi, kwi, 0])
            if sx * sw != 0:
                _log_term(cfg, shifts, state, ex + ew, sx * sw < 0, ct)
        if last:
            y[b, co, oh, ow] = _log_result(cfg, bias[co], state, ct)
    _weight_traffic(units, length, 1, cfg, ct)
    if last:
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
def _units(gp, dims, h, w, cfg, units_all):
    """Fill the (co, oh, ow) of pass ``gp``'s units and the pass facts of row 0; the view.

    Row 0 holds the chunk's distinct output channels (``U_DISTINCT_CO``), its tile, its
    channel tile, and whether every unit's register file still holds its weights (``U_HIT``:
    the same output channel as in the sweep's previous chunk, one channel tile, the slice
    fits). ``U_RFKEY`` is the slice a unit's register file holds (-1: it does not fit).
    """
    co_n, cg, ho, wo, kh_n, kw_n = dims
    _, t, k, ci, _ = _decode(gp, co_n, ho, wo, cg, cfg)
    first, length, n_ct, _, _, _, _ = _window(t, k, co_n, ho, wo, h, w, kh_n, kw_n, cfg)
    m = _cdiv(cg, cfg[CF_TILE_C])
    cl0 = ci * cfg[CF_TILE_C]
    tcl = min(cg, cl0 + cfg[CF_TILE_C]) - cl0
    fits = tcl * kh_n * kw_n <= cfg[CF_RF_ENTRIES]  # entries hold whole weights (N indices)
    hit = fits and m == 1 and k > 0 and cfg[CF_A] % n_ct == 0
    units = units_all[:length]
    for u in range(length):
        o = first + u
        pos = o // n_ct
        co = t * cfg[CF_TILE_CO] + o % n_ct
        units[u, U_CO] = co
        units[u, U_OH] = pos // wo
        units[u, U_OW] = pos % wo
        if not fits:
            units[u, U_RFKEY] = -1
        elif not hit:  # the register file takes the slice as it streams by
            units[u, U_RFKEY] = co * m + ci
    units[0, U_DISTINCT_CO] = min(length, n_ct)  # consecutive co, cyclic: min(L, Ct) distinct
    units[0, U_TILE] = t
    units[0, U_CI] = ci
    units[0, U_HIT] = 1 if hit else 0
    return units


@kernel
def _tick(trace, nrec, cycle, max_cycles):
    """Advance the clock; ``(cycle, over the limit)``."""
    cycle += 1
    return cycle, max_cycles >= 0 and cycle > max_cycles


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
        Trace rows ``(cycle, unit, action, address)``; ``R = 0`` records nothing. The
        address is the pass (chunk and channel tile) the action serves.
    """
    n_batch, n_chan, h, w = x.shape
    co_n, cg, kh_n, kw_n, _ = wq.shape
    ho, wo = y.shape[2], y.shape[3]
    _, _, qb, m = _layout(co_n, ho, wo, cg, cfg)
    n_pass = n_batch * qb * m
    max_cycles = cfg[CF_MAX_CYCLES]
    shift = cfg[CF_KIND] == KIND_SHIFT
    lbuf = np.zeros((2, n_chan, h, w), dtype=np.int64)
    instamp = np.full((2, n_chan, h, w), -1, dtype=np.int64)
    rowstamp = np.full((2, h), -1, dtype=np.int64)
    if shift:
        sbuf = np.zeros((2, n_chan, h, w, cfg[CF_S] + 1), dtype=np.int64)
    else:
        sbuf = np.zeros((1, 1, 1, 1, 1), dtype=np.int64)
    sstamp = np.full((2, n_chan, h, w), -1, dtype=np.int64)
    wstamp = np.full((co_n, m), -10, dtype=np.int64)
    readstamp = np.full((n_chan, h, w), -1, dtype=np.int64)
    units_all = np.zeros((cfg[CF_A], N_UNIT_COLS), dtype=np.int64)
    units_all[:, U_RFKEY] = -1
    psum = np.zeros((cfg[CF_A], cfg[CF_N] * kh_n * kw_n), dtype=np.int64)
    bufs = (lbuf, instamp, rowstamp, sbuf, sstamp, wstamp, readstamp)
    dims = (co_n, cg, ho, wo, kh_n, kw_n)
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
    pipelined = cfg[CF_PIPELINED] != 0
    prev_len = 0  # outputs the previous pass left for the DMA to store (0: none)
    ld, shc = 0, 0
    if pipelined:
        ld, shc = _prepare(0, cfg, x, dims, trow, tcol, bufs, ct)
        if ld < 0:
            return STATUS_MISSING, nrec
        for t in range(ld + shc):
            nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_STALL, 0)
            act = ACT_LOAD if t < ld else ACT_SHIFT
            nrec = _record(trace, nrec, cycle, UNIT_DMA if t < ld else UNIT_SHIFT, act, 0)
            ct[CT_STALL] += 1
            cycle, over = _tick(trace, nrec, cycle, max_cycles)
            if over:
                return STATUS_MAX_CYCLES, nrec
    for gp in range(n_pass):
        units = _units(gp, dims, h, w, cfg, units_all)
        ci = units[0, U_CI]
        cl0 = ci * cfg[CF_TILE_C]
        tcl = min(cg, cl0 + cfg[CF_TILE_C]) - cl0
        if cfg[CF_KIND] == KIND_LOG:  # serial accumulators: one term per cycle
            steps = tcl * kh_n * kw_n
        else:
            steps = cfg[CF_N] * kh_n * kw_n * _cdiv(tcl, cfg[CF_T])
        if pipelined:  # prepare the next pass and store the previous one while computing
            ld, shc = 0, 0
            if gp + 1 < n_pass:
                ld, shc = _prepare(gp + 1, cfg, x, dims, trow, tcol, bufs, ct)
                if ld < 0:
                    return STATUS_MISSING, nrec
            st = _store(prev_len, cfg, ct) if prev_len > 0 else 0
            nxt, before = gp + 1, gp - 1
        else:
            ld, shc = _prepare(gp, cfg, x, dims, trow, tcol, bufs, ct)
            if ld < 0:
                return STATUS_MISSING, nrec
            for t in range(ld + shc):
                ct[CT_STALL] += 1
                nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_STALL, gp)
                act = ACT_LOAD if t < ld else ACT_SHIFT
                nrec = _record(trace, nrec, cycle, UNIT_DMA if t < ld else UNIT_SHIFT, act, gp)
                cycle, over = _tick(trace, nrec, cycle, max_cycles)
                if over:
                    return STATUS_MAX_CYCLES, nrec
            ld, shc, st = 0, 0, 0
            nxt, before = gp, gp
        mem = ld + shc + st
        for t in range(max(steps, mem)):
            if t < steps:
                status = _compute(t, gp, cycle, cfg, shifts, wq, bias, y, bufs, units, psum, ct)
                if status != STATUS_OK:
                    return status, nrec
                ct[CT_COMPUTE] += 1
                nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_COMPUTE, gp)
            else:
                ct[CT_STALL] += 1
                nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_STALL, nxt)
            if t < ld:
                nrec = _record(trace, nrec, cycle, UNIT_DMA, ACT_LOAD, nxt)
            elif t < ld + shc:
                nrec = _record(trace, nrec, cycle, UNIT_SHIFT, ACT_SHIFT, nxt)
            elif t < mem:
                nrec = _record(trace, nrec, cycle, UNIT_DMA, ACT_STORE, before)
            cycle, over = _tick(trace, nrec, cycle, max_cycles)
            if over:
                return STATUS_MAX_CYCLES, nrec
        prev_len = units.shape[0] if ci == m - 1 else 0
        if not pipelined and prev_len > 0:
            st = _store(prev_len, cfg, ct)
            for _ in range(st):
                ct[CT_STALL] += 1
                nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_STALL, gp)
                nrec = _record(trace, nrec, cycle, UNIT_DMA, ACT_STORE, gp)
                cycle, over = _tick(trace, nrec, cycle, max_cycles)
                if over:
                    return STATUS_MAX_CYCLES, nrec
            prev_len = 0
    if pipelined:
        st = _store(prev_len, cfg, ct) if prev_len > 0 else 0
        for _ in range(st):
            ct[CT_STALL] += 1
            nrec = _record(trace, nrec, cycle, UNIT_ADDERS, ACT_STALL, n_pass)
            nrec = _record(trace, nrec, cycle, UNIT_DMA, ACT_STORE, n_pass - 1)
            cycle, over = _tick(trace, nrec, cycle, max_cycles)
            if over:
                return STATUS_MAX_CYCLES, nrec
    ct[CT_CYCLES] = cycle
    return STATUS_OK, nrec
