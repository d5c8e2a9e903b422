"""Kernels of the ShiftCNN shift-add datapath (SPEC §5.1): shift unit and adder array.

The shift unit's output is stored once per batch item as a flat *shift buffer* holding the
S+1 magnitudes ``xs[s]`` of every padded input value (the P-1 signed values are ``±xs[s]``;
the adders subtract instead of storing negated copies). To turn every convolution into
contiguous, stride-1 reads, the padded input is split into ``sh * sw`` stride phases and each
phase plane gets one spare row::

    buf[((((s * C + c) * sh + ph) * sw + pw) * hq1 + r) * wq + q]
        = xs[s] of padded input (r * sh + ph, q * sw + pw), 0 outside the image

Then output ``(oh, ow)`` reads tap ``(kh, kw)`` at phase plane row ``oh + (kh*dh)//sh``,
column ``ow + (kw*dw)//sw``, so for a fixed term the outputs of ``rows`` consecutive output
rows are the ``rows * wq`` contiguous values from the term's offset ("wide rows": columns
``ow >= wo`` are computed and dropped). A *term* is one nonzero weight index: its offset into
the buffer (plane, channel, phase, tap) and its sign, listed by the adder kernels themselves
for each output channel (no layer-sized term table).
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, get_thread_id, prange

from shiftsim.kernels._jit import kernel
from shiftsim.kernels.bitops import apply_overflow, ashr, round_shr, shl

__all__ = [
    "adder_array_checked",
    "adder_array_fast",
    "adder_array_steps",
    "scratch_slots_suffice",
    "shift_unit",
]


@kernel(parallel=True)
def shift_unit(
    x, b, n_items, item_stride, f, max_shift, rnd, pad_h, pad_w, sh, sw, hq1, wq, phase_used,
    row_proto, buf,
):  # fmt: skip
    """Fill the shift buffers of batch items ``b .. b + n_items - 1`` (module docstring).

    Item ``b + i`` has its buffer at ``buf[i * item_stride:]``: one kernel launch for a whole
    batch of small layers.

    Parameters
    ----------
    x : int64 array (B, C, H, W)
        Raw inputs; ``x << f`` fits the dtype of ``buf``.
    b, n_items, item_stride : int
        First batch item, number of items, buffer values per item.
    f, max_shift, pad_h, pad_w, sh, sw, hq1, wq : int
        shift_frac_bits, S, padding, stride, phase-plane rows (one spare) and width.
    rnd : bool
        RND (``((x << f) + 2**(s-1)) >> s``) instead of TRN (``(x << f) >> s``).
    phase_used : bool array (sh, sw)
        Phases some tap reads; the others are left as they are (zeros).
    row_proto : int32 or int64 array (1,)
        Its dtype holds ``x << f`` (int32 when it fits: twice the SIMD lanes).
    buf : int16 or int64 array (flat, (S+1)*C*sh*sw*hq1*wq values and spare ones)
        Output.
    """
    n_chan, h, w = x.shape[1], x.shape[2], x.shape[3]
    for task in prange(n_items * n_chan):
        item = task // n_chan
        c = task % n_chan
        base = item * item_stride
        shifted = np.empty(wq, row_proto.dtype)
        for ph in range(sh):
            for pw in range(sw):
                if not phase_used[ph, pw]:
                    continue
                # columns q whose input column q*sw + pw - pad_w lies inside the image
                q_lo = max(0, (pad_w - pw + sw - 1) // sw)
                q_hi = min(wq, (w - 1 + pad_w - pw) // sw + 1)
                for r in range(hq1):
                    i = r * sh + ph - pad_h
                    shifted[:] = 0
                    if 0 <= i < h:
                        for q in range(q_lo, q_hi):
                            shifted[q] = shl(x[b + item, c, i, q * sw + pw - pad_w], f)
                    for s in range(max_shift + 1):
                        k0 = base + ((((s * n_chan + c) * sh + ph) * sw + pw) * hq1 + r) * wq
                        dst = buf[k0 : k0 + wq]  # a slice: the loop vectorizes
                        if rnd:
                            for q in range(wq):
                                dst[q] = round_shr(shifted[q], s)
                        else:
                            for q in range(wq):
                                dst[q] = ashr(shifted[q], s)


@kernel
def _sum_terms(buf, offsets, count, n, group, part, acc, add):
    """``acc[:n] ±= Σ buf[o : o + n]`` over ``offsets[:count]``, ``group`` terms per partial.

    The partial sums are kept in ``buf``'s dtype (int16: twice the SIMD lanes of int32); the
    caller chooses ``group`` so that no partial can overflow it. Eight terms per pass (then
    four, then one).
    """
    for g0 in range(0, count, max(group, 1)):  # every loop has a constant, positive step
        g_end = min(g0 + max(group, 1), count)
        g8 = g0 + (g_end - g0) // 8 * 8
        g4 = g8 + (g_end - g8) // 4 * 4
        part[:] = 0
        for t in range(g0, g8, 8):
            a0 = buf[offsets[t] : offsets[t] + n]
            a1 = buf[offsets[t + 1] : offsets[t + 1] + n]
            a2 = buf[offsets[t + 2] : offsets[t + 2] + n]
            a3 = buf[offsets[t + 3] : offsets[t + 3] + n]
            a4 = buf[offsets[t + 4] : offsets[t + 4] + n]
            a5 = buf[offsets[t + 5] : offsets[t + 5] + n]
            a6 = buf[offsets[t + 6] : offsets[t + 6] + n]
            a7 = buf[offsets[t + 7] : offsets[t + 7] + n]
            for i in range(n):
                part[i] = (
                    part[i]
                    + ((a0[i] + a1[i]) + (a2[i] + a3[i]))
                    + ((a4[i] + a5[i]) + (a6[i] + a7[i]))
                )
        for t in range(g8, g4, 4):
            a0 = buf[offsets[t] : offsets[t] + n]
            a1 = buf[offsets[t + 1] : offsets[t + 1] + n]
            a2 = buf[offsets[t + 2] : offsets[t + 2] + n]
            a3 = buf[offsets[t + 3] : offsets[t + 3] + n]
            for i in range(n):
                part[i] = part[i] + a0[i] + a1[i] + a2[i] + a3[i]
        for t in range(g4, g_end):
            a0 = buf[offsets[t] : offsets[t] + n]
            for i in range(n):
                part[i] = part[i] + a0[i]
        if add:
            for i in range(n):
                acc[i] += part[i]
        else:
            for i in range(n):
                acc[i] -= part[i]


#: The fixed-width adder keeps one ``ROW``-lane scratch row per thread (thread id mod SLOTS) at
#: the start of the array it reads, and reads rows only from ``ROW_BASE`` on, at 32-bit
#: offsets: the compiler then proves that the scratch row never overlaps a row it reads, and
#: drops the run-time overlap checks that otherwise cost more than the additions on short rows.
ROW = 64
#: Wider rows (up to ``WIDE`` lanes, run-time width): :func:`_sum_signed_rows_wide`.
WIDE = 256
SLOTS = 256
ROW_BASE = SLOTS * WIDE
#: Steps of at most this many terms are summed and fitted in one pass (padded with zero rows).
FEW_TERMS = 4


def scratch_slots_suffice() -> bool:
    """Whether every numba thread gets its own scratch row (at most ``SLOTS`` threads)."""
    return get_num_threads() <= SLOTS


@kernel(inline=True)
def _eight_rows(offsets, t, base):
    """``offsets[t : t + 8] + base`` as eight uint64 scalars.

    Unsigned indices: the compiled loop then has no checks for negative indices, which cost
    as much as the additions on short rows.
    """
    t0 = np.uint64(t)
    return (
        np.uint64(offsets[t0]) + base,
        np.uint64(offsets[t0 + np.uint64(1)]) + base,
        np.uint64(offsets[t0 + np.uint64(2)]) + base,
        np.uint64(offsets[t0 + np.uint64(3)]) + base,
        np.uint64(offsets[t0 + np.uint64(4)]) + base,
        np.uint64(offsets[t0 + np.uint64(5)]) + base,
        np.uint64(offsets[t0 + np.uint64(6)]) + base,
        np.uint64(offsets[t0 + np.uint64(7)]) + base,
    )


@kernel(inline=True)
def _eight_masks(masks, t):
    """``masks[t : t + 8]`` as eight scalars (unsigned indices, as :func:`_eight_rows`)."""
    t0 = np.uint64(t)
    return (
        masks[t0],
        masks[t0 + np.uint64(1)],
        masks[t0 + np.uint64(2)],
        masks[t0 + np.uint64(3)],
        masks[t0 + np.uint64(4)],
        masks[t0 + np.uint64(5)],
        masks[t0 + np.uint64(6)],
        masks[t0 + np.uint64(7)],
    )


@kernel(inline=True)
def _negative_terms(masks, t0, t1):
    """How many of the terms ``t0 .. t1 - 1`` are negative (mask -1), in a loop of its own.

    Counted apart from the additions, the masks of a pass need no scalar registers there, and
    the compiler broadcasts them straight from memory.
    """
    n = 0
    for t in range(t0, t1):
        n -= np.int64(masks[np.uint64(t)])
    return n


@kernel
def _sum_signed_rows(w, tid, offsets, masks, count, group, acc):
    """``acc[:ROW] += Σ ±w[ROW_BASE + o : ROW_BASE + o + ROW]`` over ``offsets[:count]``.

    A term's sign is its mask ``m`` (0: +, -1: -): ``v ^ m`` is ``v`` or ``-v - 1``, so the
    masked sum plus the number of negative terms is the signed sum (no sorting by sign).
    Partial sums of ``group`` terms (``group * (max|v| + 1)`` fits ``w``'s dtype) are kept in
    thread ``tid``'s scratch row ``w[(tid % SLOTS) * WIDE :][:ROW]``; eight terms per pass.
    """
    pb = np.uint64(tid & (SLOTS - 1)) * np.uint64(WIDE)
    base = np.uint64(ROW_BASE)
    for g0 in range(0, count, max(group, 1)):  # every loop has a constant, positive step
        g_end = min(g0 + max(group, 1), count)
        g8 = g0 + (g_end - g0) // 8 * 8
        for i in range(ROW):
            w[pb + np.uint64(i)] = 0
        n_neg = _negative_terms(masks, g0, g_end)
        for t in range(g0, g8, 8):
            o0, o1, o2, o3, o4, o5, o6, o7 = _eight_rows(offsets, t, base)
            m0, m1, m2, m3, m4, m5, m6, m7 = _eight_masks(masks, t)
            for i in range(ROW):
                u = np.uint64(i)
                s03 = ((w[o0 + u] ^ m0) + (w[o1 + u] ^ m1)) + ((w[o2 + u] ^ m2) + (w[o3 + u] ^ m3))
                s47 = ((w[o4 + u] ^ m4) + (w[o5 + u] ^ m5)) + ((w[o6 + u] ^ m6) + (w[o7 + u] ^ m7))
                w[pb + u] = w[pb + u] + s03 + s47
        for t in range(g8, g_end):
            o0 = np.uint64(offsets[t]) + base
            m0 = masks[t]
            for i in range(ROW):
                u = np.uint64(i)
                w[pb + u] = w[pb + u] + (w[o0 + u] ^ m0)
        for i in range(ROW):
            acc[i] += w[pb + np.uint64(i)] + n_neg


@kernel
def _sum_signed_rows_wide(w, tid, offsets, masks, count, group, acc, width):
    """As :func:`_sum_signed_rows` on ``min(width, WIDE)`` lanes instead of ``ROW``.

    A separate copy on purpose: with the constant ``ROW`` trip count the compiler vectorises
    :func:`_sum_signed_rows` with no remainder loop, which is what the 7x7 and 14x14 layers need.
    """
    pb = np.uint64(tid & (SLOTS - 1)) * np.uint64(WIDE)
    lanes = min(width, WIDE)  # the bound lets the compiler drop the overlap checks
    base = np.uint64(ROW_BASE)
    for g0 in range(0, count, max(group, 1)):  # every loop has a constant, positive step
        g_end = min(g0 + max(group, 1), count)
        g8 = g0 + (g_end - g0) // 8 * 8
        for i in range(lanes):
            w[pb + np.uint64(i)] = 0
        n_neg = _negative_terms(masks, g0, g_end)
        for t in range(g0, g8, 8):
            o0, o1, o2, o3, o4, o5, o6, o7 = _eight_rows(offsets, t, base)
            m0, m1, m2, m3, m4, m5, m6, m7 = _eight_masks(masks, t)
            for i in range(lanes):
                u = np.uint64(i)
                s03 = ((w[o0 + u] ^ m0) + (w[o1 + u] ^ m1)) + ((w[o2 + u] ^ m2) + (w[o3 + u] ^ m3))
                s47 = ((w[o4 + u] ^ m4) + (w[o5 + u] ^ m5)) + ((w[o6 + u] ^ m6) + (w[o7 + u] ^ m7))
                w[pb + u] = w[pb + u] + s03 + s47
        for t in range(g8, g_end):
            o0 = np.uint64(offsets[t]) + base
            m0 = masks[t]
            for i in range(lanes):
                u = np.uint64(i)
                w[pb + u] = w[pb + u] + (w[o0 + u] ^ m0)
        for i in range(lanes):
            acc[i] += w[pb + np.uint64(i)] + n_neg


@kernel(parallel=True)
def adder_array_fast(
    buf, index, term_offset, co_list, bias, co_per_group, cg, chan_stride, plane_stride,
    tile_rows, ho, wo, wq, group, acc_proto, y, b, n_items, item_stride, short, zero_offset,
):  # fmt: skip
    """Sum every term of each listed output channel, with no overflow checks.

    Exact only when no partial sum can leave the accumulator's range (the datapath proves it
    per output channel): then WRAP and SAT both equal the plain integer sum, in any order.
    Each (channel, tile of output rows) first lists its terms' buffer offsets, positive and
    negative apart (branch-free); then the terms are summed eight per pass, in partial sums of
    ``group`` terms kept in ``buf``'s dtype, over wide rows rounded up to a multiple of 16
    lanes (``buf`` has 16 spare values at its end; the extra lanes are dropped).

    Parameters
    ----------
    buf : int16 or int64 array (flat)
        ``ROW_BASE`` scratch values, then the shift buffer of batch item ``b`` (offsets below
        are relative to it), then ``ROW`` spare values.
    index : int8 array (Co, Cg*Kh*Kw*N)
        Weight indices, each channel's flattened in (c, kh, kw, n) order.
    term_offset : int64 array (Cg*Kh*Kw*N,)
        Buffer offset of each flattened position for index magnitude 0 and the group's first
        channel: ``c * chan_stride + tap offset + (n - 2) * plane_stride``; index ``j`` adds
        ``|j| * plane_stride``.
    co_list : int64 array (n,)
        Output channels to compute.
    bias : int64 array (Co,)
        Bias (zeros when none).
    co_per_group, cg, chan_stride, plane_stride : int
        Output channels per group, input channels per group, buffer strides of one channel
        and of one shift amount.
    tile_rows, ho, wo, wq : int
        Output rows per tile, output size, phase-plane width.
    group : int
        Terms per partial sum: ``group * (max|buf| + 1)`` fits ``buf``'s dtype.
    acc_proto : int32 or int64 array (1,)
        Its dtype is the accumulator's (int32 when the bound allows it).
    y : int64 array (B, Co, Ho, Wo)
        Output, rows ``b .. b + n_items - 1`` written for the listed channels.
    b, n_items, item_stride : int
        First batch item, number of items, buffer values per item (item ``b + i``'s buffer
        starts ``i * item_stride`` after the first one's).
    short : bool
        Sum short wide rows with :func:`_sum_signed_rows` (at most ``ROW`` lanes) or
        :func:`_sum_signed_rows_wide` (``WIDE`` lanes at a time) instead of whole at once.
    zero_offset : int
        Offset of the zeros after the shift buffer (the short path's rows for index 0, as
        long as the short path's tiles).
    """
    n_pos_max = index.shape[1]
    n_tiles = (ho + tile_rows - 1) // tile_rows
    per_item = co_list.shape[0] * n_tiles
    for k_all in prange(n_items * per_item):
        item = k_all // per_item
        k = k_all % per_item
        co = co_list[k % co_list.shape[0]]  # tile-major: a tile's rows stay in cache
        r0 = (k // co_list.shape[0]) * tile_rows
        rows = min(tile_rows, ho - r0)
        n = (rows * wq + 15) // 16 * 16
        start = item * item_stride + (co // co_per_group) * cg * chan_stride + r0 * wq
        row = index[co]
        if short:  # ROW lanes at a time, signs by mask: no sorting, no overlap checks
            first = np.empty(n_pos_max, np.uint32)  # 32-bit row offsets (the caller's bound)
            masks = np.empty(n_pos_max, buf.dtype)
            for e in range(n_pos_max):  # vectorizes
                j = np.int64(row[e])
                o = abs(j) * plane_stride + term_offset[e] + start
                first[e] = o if j != 0 else zero_offset  # index 0: a row of zeros
                masks[e] = -1 if j < 0 else 0
            tid = get_thread_id()
            if rows * wq <= ROW:
                n = ROW
                acc = np.zeros(n, acc_proto.dtype)
                _sum_signed_rows(buf, tid, first, masks, n_pos_max, group, acc)
            else:
                acc = np.zeros(n, acc_proto.dtype)
                blk = np.empty(n_pos_max, np.uint32)
                for lane0 in range(0, n, WIDE):
                    width = min(WIDE, n - lane0)
                    for e in range(n_pos_max):
                        blk[e] = first[e] + np.uint32(lane0)
                    acc_blk = acc[lane0 : lane0 + width]
                    _sum_signed_rows_wide(buf, tid, blk, masks, n_pos_max, group, acc_blk, width)
        else:
            offsets = np.empty(n_pos_max, np.int64)
            for e in range(n_pos_max):  # vectorizes
                offsets[e] = abs(np.int64(row[e])) * plane_stride + term_offset[e] + start
            pos = np.empty(n_pos_max, np.int64)
            neg = np.empty(n_pos_max, np.int64)
            n_pos = 0
            n_neg = 0
            for e in range(n_pos_max):  # branch-free split by sign, zeros dropped
                j = row[e]
                pos[n_pos] = offsets[e]
                neg[n_neg] = offsets[e]
                n_pos += j > 0
                n_neg += j < 0
            acc = np.zeros(n, acc_proto.dtype)
            part = np.empty(n, buf.dtype)
            data = buf[ROW_BASE:]
            _sum_terms(data, pos, n_pos, n, group, part, acc, True)
            _sum_terms(data, neg, n_neg, n, group, part, acc, False)
        bc = bias[co]
        for r in range(rows):
            for ow in range(wo):
                y[b + item, co, r0 + r, ow] = np.int64(acc[r * wq + ow]) + bc


@kernel(parallel=True)
def adder_array_checked(
    buf, index, term_offset, term_step, n_steps, co_list, bias, co_per_group, cg, chan_stride,
    plane_stride, tile_rows, ho, wo, wq, group, tree_proto, acc_bits, sat, y, b, n_items,
    item_stride, overflows,
):  # fmt: skip
    """Accumulate in the contract order, fitting the register after every update.

    ``acc = bias``; for each step (n, kh, kw) with at least one nonzero term:
    ``acc = OVERFLOW(acc + Σ_c term)``, counting the updates OVERFLOW changed. Steps without
    a nonzero term add 0 and can neither change nor overflow the register.

    Parameters
    ----------
    buf, index, term_offset, co_list, bias : arrays
        As in :func:`adder_array_fast` (``bias`` within the accumulator's range).
    term_step : int64 array (Cg*Kh*Kw*N,)
        Step ``(n * Kh + kh) * Kw + kw`` of each flattened position.
    n_steps : int
        ``N * Kh * Kw``.
    co_per_group, cg, chan_stride, plane_stride, tile_rows, ho, wo, wq, group : int
        As in :func:`adder_array_fast`.
    tree_proto : int32 or int64 array (1,)
        Its dtype is the adder tree's (int32 when ``C/groups * max|buf|`` fits it).
    acc_bits : int
        Accumulator width (signed), 2..62.
    sat : bool
        SAT instead of WRAP.
    y : int64 array (B, Co, Ho, Wo)
        Output, rows ``b .. b + n_items - 1`` written for the listed channels.
    b, n_items, item_stride : int
        As in :func:`adder_array_fast`.
    overflows : int64 array (n_items * n * n_tiles,)
        Output: overflow events per (item, listed channel, tile), added to.
    """
    n_terms_max = index.shape[1]
    n_tiles = (ho + tile_rows - 1) // tile_rows
    per_item = co_list.shape[0] * n_tiles
    for k_all in prange(n_items * per_item):
        item = k_all // per_item
        k = k_all % per_item
        co = co_list[k % co_list.shape[0]]  # tile-major: a tile's rows stay in cache
        r0 = (k // co_list.shape[0]) * tile_rows
        rows = min(tile_rows, ho - r0)
        n = (rows * wq + 15) // 16 * 16
        start = item * item_stride + (co // co_per_group) * cg * chan_stride + r0 * wq
        # the terms in step order: count per step, then place
        step_ptr = np.zeros(n_steps + 1, np.int64)
        for e in range(n_terms_max):
            step_ptr[term_step[e] + 1] += index[co, e] != 0
        for st in range(n_steps):
            step_ptr[st + 1] += step_ptr[st]
        pos_fill = step_ptr[:n_steps].copy()  # positive terms from a step's start,
        neg_fill = step_ptr[1:].copy()  # negative ones from its end
        offsets = np.empty(step_ptr[n_steps], np.int64)
        for e in range(n_terms_max):
            j = np.int64(index[co, e])
            if j != 0:
                st = term_step[e]
                o = abs(j) * plane_stride + term_offset[e] + start
                if j > 0:
                    offsets[pos_fill[st]] = o
                    pos_fill[st] += 1
                else:
                    neg_fill[st] -= 1
                    offsets[neg_fill[st]] = o
        acc = np.full(n, bias[co], np.int64)
        tree = np.zeros(n, tree_proto.dtype)
        part = np.empty(n, buf.dtype)
        valid = np.zeros(n, np.int64)  # 1 on the lanes that are outputs
        for r in range(rows):
            valid[r * wq : r * wq + wo] = 1
        count = 0
        for st in range(n_steps):
            t0, t1 = step_ptr[st], step_ptr[st + 1]
            if t0 == t1:
                continue
            tree[:] = 0
            t_neg = pos_fill[st]
            _sum_terms(buf, offsets[t0:t_neg], t_neg - t0, n, group, part, tree, True)
            _sum_terms(buf, offsets[t_neg:t1], t1 - t_neg, n, group, part, tree, False)
            for i in range(n):  # branch-free: vectorizes
                v = acc[i] + tree[i]
                fitted = apply_overflow(v, acc_bits, True, sat)
                count += (fitted != v) * valid[i]
                acc[i] = fitted
        for r in range(rows):
            for ow in range(wo):
                y[b + item, co, r0 + r, ow] = acc[r * wq + ow]
        overflows[k_all] += count


@kernel(parallel=True)
def adder_array_steps(
    buf, index, term_offset, n_steps, co_list, bias, co_per_group, cg, chan_stride,
    plane_stride, tile_rows, ho, wo, wq, group, step_proto, acc_bits, sat, y, b, n_items,
    item_stride, zero_offset, lane_valid, overflows,
):  # fmt: skip
    """The checked accumulation (:func:`adder_array_checked`) on the fixed-width adders.

    The contract order, every update fitted and counted, ``WIDE`` lanes at a time. Each
    step's sum (its adder tree: exact, in any order) is computed like the unchecked kernel's,
    by :func:`_sum_signed_rows_wide` (signs by mask, no overlap checks); then the register is
    fitted lane by lane, ``acc = OVERFLOW(acc + step)``, the changes counted on the lanes that
    are outputs. Needs :func:`scratch_slots_suffice` and 32-bit buffer offsets.

    Parameters
    ----------
    buf : int16 or int64 array (flat)
        ``ROW_BASE`` scratch values, then the shift buffers (as :func:`adder_array_fast`).
    index : int8 array (Co, N*Kh*Kw*Cg)
        Weight indices, each channel's flattened step-major: ``(n, kh, kw, c)``, so step
        ``(n * Kh + kh) * Kw + kw`` holds the ``Cg`` positions from ``step * Cg`` on.
    term_offset : int64 array (N*Kh*Kw*Cg,)
        Buffer offset of each flattened position for index magnitude 0 (same order).
    n_steps : int
        ``N * Kh * Kw``.
    co_list, bias, co_per_group, cg, chan_stride, plane_stride, tile_rows, ho, wo, wq, group
        As in :func:`adder_array_fast`.
    step_proto : int32 or int64 array (1,)
        Its dtype holds a step's sum (int32 when ``Cg * max|buf|`` fits it).
    acc_bits, sat, y, b, n_items, item_stride, overflows
        As in :func:`adder_array_checked`.
    zero_offset : int
        Offset of at least ``WIDE`` zeros after the shift buffers (index 0's terms).
    lane_valid : int64 array (tile_rows * wq,)
        1 on the lanes of a tile that are outputs (``lane % wq < wo``), else 0.
    """
    n_tiles = (ho + tile_rows - 1) // tile_rows
    per_item = co_list.shape[0] * n_tiles
    for k_all in prange(n_items * per_item):
        item = k_all // per_item
        k = k_all % per_item
        co = co_list[k % co_list.shape[0]]  # tile-major: a tile's rows stay in cache
        r0 = (k // co_list.shape[0]) * tile_rows
        rows = min(tile_rows, ho - r0)
        n_lanes = rows * wq
        start = item * item_stride + (co // co_per_group) * cg * chan_stride + r0 * wq
        row = index[co]
        # every position is a term (index 0: a row of zeros that never moves), so each step
        # has its Cg terms side by side: no compaction, and the loops vectorize
        few = cg <= FEW_TERMS  # then each step padded to FEW_TERMS terms (zero rows)
        per_step = FEW_TERMS if few else cg
        n_slots = n_steps * per_step
        first = np.full(n_slots, zero_offset, np.int64)
        moves = np.zeros(n_slots, np.int64)
        masks = np.zeros(n_slots, buf.dtype)
        for st in range(n_steps):
            for c in range(cg):  # vectorizes
                e = st * cg + c
                d = st * per_step + c
                j = np.int64(row[e])
                first[d] = abs(j) * plane_stride + term_offset[e] + start if j != 0 else zero_offset
                moves[d] = j != 0
                masks[d] = -1 if j < 0 else 0
        tid = get_thread_id()
        blk = np.empty(n_slots, np.uint32)
        acc_tile = np.full(n_lanes, bias[co], np.int64)
        step = np.empty(WIDE, step_proto.dtype)
        count = 0
        for lane0 in range(0, n_lanes, WIDE):
            width = min(WIDE, n_lanes - lane0)
            for e in range(n_slots):  # vectorizes
                blk[e] = first[e] + lane0 * moves[e]
            acc = acc_tile[lane0 : lane0 + width]
            valid = lane_valid[lane0 : lane0 + width]
            for st in range(n_steps):
                t0 = st * per_step
                if few:  # sum and fit in one pass
                    m0, m1, m2, m3 = masks[t0], masks[t0 + 1], masks[t0 + 2], masks[t0 + 3]
                    n_neg = -(np.int64(m0) + m1 + m2 + m3)
                    s0 = buf[ROW_BASE + np.int64(blk[t0]) :][:width]
                    s1 = buf[ROW_BASE + np.int64(blk[t0 + 1]) :][:width]
                    s2 = buf[ROW_BASE + np.int64(blk[t0 + 2]) :][:width]
                    s3 = buf[ROW_BASE + np.int64(blk[t0 + 3]) :][:width]
                    for i in range(width):  # branch-free: vectorizes
                        tree = (np.int64(s0[i] ^ m0) + (s1[i] ^ m1)) + ((s2[i] ^ m2) + (s3[i] ^ m3))
                        v = acc[i] + tree + n_neg
                        fitted = apply_overflow(v, acc_bits, True, sat)
                        count += (fitted != v) * valid[i]
                        acc[i] = fitted
                    continue
                step[:] = 0
                if n_lanes <= ROW:  # a constant trip count: what the 7x7 layers need
                    _sum_signed_rows(buf, tid, blk[t0 : t0 + cg], masks[t0 : t0 + cg], cg, group,
                                     step)  # fmt: skip
                else:
                    _sum_signed_rows_wide(buf, tid, blk[t0 : t0 + cg], masks[t0 : t0 + cg], cg,
                                          group, step, width)  # fmt: skip
                for i in range(width):  # branch-free: vectorizes (a step of zeros changes nothing)
                    v = acc[i] + step[i]
                    fitted = apply_overflow(v, acc_bits, True, sat)
                    count += (fitted != v) * valid[i]
                    acc[i] = fitted
        for r in range(rows):
            for ow in range(wo):
                y[b + item, co, r0 + r, ow] = acc_tile[r * wq + ow]
        overflows[k_all] += count
