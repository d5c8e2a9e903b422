"""Linear accumulation of log products as exact matrix products (SPEC §5.2, linear mode).

Each term is ``±floor(2**(p/k + F))``. Split ``x = k*a + px`` and ``w = k*b + pw`` (``k = 1``:
``a = x``, ``b = w``, no parities): the term's shift is ``a + (b + F) + (px & pw)`` and, with
``k = 2``, its register is the odd one when ``px != pw``. So each register is a product of
integer matrices: ``X = ±2**(a - a_lo)`` (im2col columns, ``a_lo`` the smallest activation
exponent) and ``W = ±2**e`` with ``e = b + F + a_lo`` (``k = 2``: the even register is
``[W_b | 2 W_b] @ [X_0; X_1]``, the odd one ``[W_b | W_b] @ [X_0; X_1]``, ``X_i`` the
activations of parity ``i``, the weight halves masked by ``pw``; both registers are rows of
one product). A weight class ``e >= 0`` never floors; ``e < -span`` always floors to 0; each
class in between is a small product of the weights in it with the columns they reach, masked
to the activations ``>= 2**-e``, summed in int64.

:func:`log_linear_plan` proves, per output channel, that no register can overflow and that
the products are exact: the channel's terms are at most ``2**m_t`` each, so every partial sum
is at most ``S = sum_t 2**m_t`` in magnitude; float64 is exact up to ``S <= 2**53``. A register
row whose smallest weight is ``2**q`` holds multiples of ``2**q`` only, so float32 is exact
too when ``S <= 2**(24 + q)`` (the weights scaled by ``2**-q``, the result shifted back).

:class:`LinearWeights` is everything derived from the weights alone; a datapath keeps it with an
immutable weight code (:mod:`shiftsim.datapath.weight_cache`) and reuses it across runs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from shiftsim.kernels.conv import FLOAT32_EXACT, FLOAT64_EXACT, im2col_counted, sparse_rows_add

__all__ = [
    "LinearWeights",
    "Pow2Rows",
    "XRange",
    "float32_rows",
    "linear_gemm",
    "log_linear_plan",
    "plan_channels",
    "x_range",
]

#: Largest spread of the activations' exponents the exact-GEMM path takes (float64 range).
MAX_EXP_SPAN = 900
#: Most classes of weight exponents needing a floor-to-0 mask before a channel falls back.
MAX_MASKED = 4
#: Largest spread of the activations' exponents with float32 columns (a bound needs <= 24).
_F32_SPAN = 24
#: Most weights (a fraction of them) added one at a time beside a float32 product (:class:`Split`).
SPLIT_MAX_FRACTION = 0.05

T = TypeVar("T")
#: ``(max e_x, a_lo, span)`` of the nonzero activations, or None (:func:`x_range`).
XRange = tuple[int, int, int] | None


class LinearWeights:
    """What the exact-GEMM path derives from the weights alone, built lazily, kept per code.

    Parameters
    ----------
    w_exp, w_sign : ndarray of int64, shape (Co, Cg, Kh, Kw)
        Weight exponents in units of ``1/k`` (base-2 weights doubled when ``k == 2``), signs.
    k : int
        1 or 2.
    frac_bits : int
        ``F``.
    groups : int
        The convolution's groups.
    """

    def __init__(
        self,
        w_exp: NDArray[np.int64],
        w_sign: NDArray[np.int64],
        k: int,
        frac_bits: int,
        groups: int,
    ) -> None:
        n_co = w_exp.shape[0]
        self.k, self.frac_bits, self.groups = k, frac_bits, groups
        self.n_co, self.cog = n_co, n_co // groups
        self.exp = w_exp.reshape(n_co, -1)
        self.sign = w_sign.reshape(n_co, -1)
        self.nz = self.sign != 0
        self.n_k = self.exp.shape[1]
        self._memo: dict[Hashable, Any] = {}

    def _get(self, key: Hashable, build: Callable[[], T]) -> T:
        if key not in self._memo:
            self._memo[key] = build()
        value: T = self._memo[key]
        return value

    def totals(self, xe_max: int) -> list[int]:
        """``S`` per channel: the sum of ``2**m_t`` over its nonzero weights (exact ints)."""
        return self._get(("totals", xe_max), lambda: self._totals(xe_max))

    def _totals(self, xe_max: int) -> list[int]:
        k, n_co = self.k, self.n_co
        m = ((xe_max + self.exp) >> (k - 1)) + self.frac_bits
        # count the terms of each shift 0..63 per channel (one pass), then sum 2**m exactly
        counted = self.nz & (m >= 0)
        slot = np.where(counted, m + 64 * np.arange(n_co)[:, None], 64 * n_co)
        hist = np.bincount(slot.ravel(), minlength=64 * n_co + 1)[:-1].reshape(n_co, 64)
        top = int(np.flatnonzero(hist.any(axis=0)).max(initial=0))
        if hist.max(initial=0) * 2 <= 1 << (62 - top):
            total = (hist << np.arange(64, dtype=np.int64)).sum(axis=1)  # every sum < 2**63
            return [int(t) for t in total.tolist()]
        powers = np.array([1 << v for v in range(64)], dtype=object)
        return [int(t) for t in (hist.astype(object) * powers).sum(axis=1).tolist()]

    def exponents(self, a_lo: int) -> list[NDArray[np.int64]]:
        """The weight classes ``e`` in X's scale ``2**(a - a_lo)`` (k = 2: and ``e + pw``)."""
        return self._get(("exponents", a_lo), lambda: self._exponents(a_lo))

    def _exponents(self, a_lo: int) -> list[NDArray[np.int64]]:
        e = (self.exp >> (self.k - 1)) + self.frac_bits + a_lo
        if self.k == 1:
            return [e]
        return [e, e + (self.exp & 1)]

    def masked(self, a_lo: int, span: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """Per channel: any term that may or may not floor to 0; which such classes it has."""
        return self._get(("masked", a_lo, span), lambda: self._masked(a_lo, span))

    def _masked(self, a_lo: int, span: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        partials = [self.nz & (e < 0) & (e >= -span) for e in self.exponents(a_lo)]
        values = sorted(
            {v for e, p in zip(self.exponents(a_lo), partials) for v in np.unique(e[p]).tolist()}
        )
        hits = np.zeros((self.n_co, len(values)), dtype=bool)
        for e, p in zip(self.exponents(a_lo), partials):
            for j, v in enumerate(values):
                hits[:, j] |= (p & (e == v)).any(axis=1)
        masked_any = np.any(hits, axis=1)
        return masked_any, hits

    def products(self, a_lo: int, span: int) -> Pow2Rows:
        """The register rows as powers of two (:class:`Pow2Rows`) for this ``a_lo, span``."""
        return self._get(("products", a_lo, span), lambda: self._products(a_lo, span))

    def _products(self, a_lo: int, span: int) -> Pow2Rows:
        groups, cog = self.groups, self.cog
        if self.k == 1:
            (e,) = self.exponents(a_lo)
            return Pow2Rows(e, self.sign, span, groups, np.arange(self.n_co), 1)
        e, _ = self.exponents(a_lo)
        pw = (self.exp & 1) == 1
        w_even, w_odd = np.where(pw, 0, self.sign), np.where(pw, self.sign, 0)
        # rows (g, register, channel in group): the even register [W_b | 2 W_b], the odd one
        # [W_b | W_b], against the columns [X_0; X_1]
        e_rows = np.stack([np.hstack([e, e + 1]), np.hstack([e, e])])
        s_rows = np.stack([np.hstack([w_even, w_odd]), np.hstack([w_odd, w_even])])
        shape = (2, groups, cog, 2 * self.n_k)
        e_rows = e_rows.reshape(shape).transpose(1, 0, 2, 3).reshape(2 * self.n_co, -1)
        s_rows = s_rows.reshape(shape).transpose(1, 0, 2, 3).reshape(2 * self.n_co, -1)
        channel = (np.arange(groups)[:, None, None] * cog + np.arange(cog)[None, None, :]).repeat(
            2, axis=1
        )
        return Pow2Rows(e_rows, s_rows, span, groups, channel.reshape(-1), 2)

    def nonzero_per_tap(self, channels: NDArray[np.int64]) -> NDArray[np.int64]:
        """``(groups, Cg*Kh*Kw)``: the nonzero weights at each tap over the listed channels."""
        if len(channels) == self.n_co:
            return self._get("nz_all", lambda: self._nonzero_per_tap(channels))
        return self._nonzero_per_tap(channels)

    def _nonzero_per_tap(self, channels: NDArray[np.int64]) -> NDArray[np.int64]:
        out = np.zeros((self.groups, self.n_k), dtype=np.int64)
        np.add.at(out, channels // self.cog, self.nz[channels].astype(np.int64))
        return out


@dataclass(frozen=True, eq=False)
class Split:
    """Register rows in float32 above per-row thresholds, the weights below them apart.

    Attributes
    ----------
    w32 : ndarray of float32, shape (R, K')
        ``±2**(e - t_r)`` for the weights ``e >= t_r`` of row ``r``, else 0.
    t : ndarray of int64, shape (R,)
        Each row's threshold ``t_r`` (its float32 product is in units of ``2**t_r``).
    rows, taps : ndarray of int64
        Where the weights below their row's threshold sit.
    values : ndarray of float64
        Those weights, ``±2**e``.
    """

    w32: NDArray[np.float32]
    t: NDArray[np.int64]
    rows: NDArray[np.int64]
    taps: NDArray[np.int64]
    values: NDArray[np.float64]


class Pow2Rows:
    """Register rows ``sum_t sign_t * floor(2**(a + e_t))`` as products, built once.

    Parameters
    ----------
    e, sign : ndarray of int64, shape (R, K')
        Each row's weight exponents and signs (0: no term), rows ordered by group.
    span : int
        The activations' exponent spread: ``X`` holds ``±2**a`` with ``0 <= a <= span`` or 0.
    groups : int
        Groups of the convolution; rows ``g * R/groups ...`` multiply ``cols[g]``.
    channel : ndarray of int64, shape (R,)
        The output channel of each row.
    registers : int
        Rows per channel (2 with base sqrt(2)).
    """

    def __init__(
        self,
        e: NDArray[np.int64],
        sign: NDArray[np.int64],
        span: int,
        groups: int,
        channel: NDArray[np.int64],
        registers: int,
    ) -> None:
        self.groups, self.channel, self.registers = groups, channel, registers
        self._blocks: dict[Hashable, list[tuple[int, NDArray[np.bool_], NDArray[Any]]]] = {}
        self.n_rows = e.shape[0]
        self.rows_per_group = self.n_rows // groups
        keep = (sign != 0) & (e >= -span)
        whole = keep & (e >= 0)  # never floors: the main product
        big = np.iinfo(np.int64).max
        q = np.where(whole, e, big).min(axis=1, initial=big)
        self.q = np.where(q == big, 0, q)  # every term of the row is a multiple of 2**q
        sgn = sign.astype(np.float64)
        self.w64 = np.where(whole, np.ldexp(sgn, np.where(whole, e, 0)), 0.0)
        # float32 rows: 2**(e - q) (clipped where a row cannot take float32 anyway)
        shifted = np.minimum(np.where(whole, e - self.q[:, None], 0), 100)
        self.w32 = np.where(whole, np.ldexp(sgn, shifted), 0.0).astype(np.float32)
        self.split = self._split(e, sgn, whole, span)
        # the classes that partly floor: (row list, tap list, weights) per class and group
        self.classes: list[tuple[int, int, NDArray[np.int64], NDArray[np.int64], Any]] = []
        partial = keep & (e < 0)
        for v in np.unique(e[partial]).tolist():
            sel = partial & (e == v)
            for g in range(groups):
                lo = g * self.rows_per_group
                block = sel[lo : lo + self.rows_per_group]
                rows = np.flatnonzero(block.any(axis=1))
                if not len(rows):
                    continue
                taps = np.flatnonzero(block[rows].any(axis=0))
                w = np.where(block[rows][:, taps], np.ldexp(sgn[lo + rows][:, taps], v), 0.0)
                self.classes.append((v, g, lo + rows, taps, w))

    def _split(
        self, e: NDArray[np.int64], sgn: NDArray[np.float64], whole: NDArray[np.bool_], span: int
    ) -> Split | None:
        """Every row in float32 above a threshold ``t``, the few weights below it on the side.

        Row ``r``'s weights ``e >= t_r`` have terms that are multiples of ``2**t_r`` and at
        most ``2**(e + span)`` each, so the row is exact in float32 (scaled by ``2**-t_r``)
        when ``T(t_r) = sum over them of 2**(e + span - t_r) <= 2**24``; ``t_r`` is the
        smallest such threshold. The weights below it are added exactly in float64, one at a
        time. None when the activations spread too far or more than ``SPLIT_MAX_FRACTION``
        of the weights would fall below their row's threshold.
        """
        if span > _F32_SPAN or not whole.any():
            return None
        n_rows = e.shape[0]
        top = int(e[whole].max()) + 1
        slot = np.where(whole, e + top * np.arange(n_rows)[:, None], top * n_rows)
        hist = np.bincount(slot.ravel(), minlength=top * n_rows + 1)[:-1].reshape(n_rows, top)
        # T(t) for every t, in float64: sums of powers of two, exact while below 2**53 in
        # units of their smallest term (and a sum beyond that is far above 2**24 anyway)
        t_all = np.arange(top)
        scaled = hist * np.ldexp(1.0, t_all - (top - 1))
        tails = np.cumsum(scaled[:, ::-1], axis=1)[:, ::-1]  # sum over e >= t
        bound = tails * np.ldexp(1.0, span + top - 1 - t_all)
        fits = bound <= FLOAT32_EXACT
        t_row = np.where(fits.any(axis=1), fits.argmax(axis=1), top)
        below = whole & (e < t_row[:, None])
        if below.sum() > SPLIT_MAX_FRACTION * whole.sum():
            return None
        above = whole & ~below
        shifted = np.where(above, e - t_row[:, None], 0)
        w32 = np.where(above, np.ldexp(sgn, shifted), 0.0).astype(np.float32)
        r_lo, k_lo = np.nonzero(below)
        vals = np.ldexp(sgn[r_lo, k_lo], e[r_lo, k_lo])
        return Split(w32, t_row.astype(np.int64), r_lo.astype(np.int64), k_lo.astype(np.int64),
                     vals)  # fmt: skip

    def apply(
        self,
        cols: NDArray[np.floating[Any]],
        rows_on: NDArray[np.bool_],
        f32_rows: NDArray[np.bool_],
        use_split: bool = False,
    ) -> NDArray[np.int64]:
        """``(R, N)`` int64: the rows in ``rows_on`` (others 0), ``f32_rows`` in float32.

        ``cols`` is float32 when any row takes float32 (then the spread is at most 24 and
        the values are exact in it), else float64. With ``use_split`` every row goes through
        :attr:`split` (``cols`` float32).
        """
        rows32 = np.flatnonzero(rows_on & f32_rows)
        rows64 = np.flatnonzero(rows_on & ~f32_rows)
        split = self.split
        if use_split and split is not None:  # every row (cols float32)
            grouped = split.w32.reshape(self.groups, self.rows_per_group, -1)
            y = np.matmul(grouped, cols).reshape(self.n_rows, -1).astype(np.int64)
            y <<= split.t[:, None]
            on = rows_on[split.rows]  # the rows proved safe only: their sums stay exact
            if on.any():  # the weights below each row's threshold, exactly
                low = np.zeros((self.n_rows, cols.shape[2]), dtype=np.float64)
                r = split.rows[on]
                sparse_rows_add(r, r // self.rows_per_group, split.taps[on], split.values[on],
                                cols, low)  # fmt: skip
                y += low.astype(np.int64)
            y[~rows_on] = 0
        elif len(rows32) == self.n_rows:  # the common case: one float32 product, no copies
            y = self._matmul(self.w32, cols, rows32).astype(np.int64)
            y <<= self.q[:, None]
        elif len(rows64) == self.n_rows:
            y = self._matmul(self.w64, cols, rows64).astype(np.int64)
        else:
            y = np.zeros((self.n_rows, cols.shape[2]), dtype=np.int64)
            if len(rows32):
                part = self._matmul(self.w32, cols, rows32).astype(np.int64)
                y[rows32] = part << self.q[rows32, None]
            if len(rows64):
                c64 = cols if cols.dtype == np.float64 else cols.astype(np.float64)
                y[rows64] = self._matmul(self.w64, c64, rows64).astype(np.int64)
        for v, g, rows, taps, w in self.classes:
            on = rows_on[rows]
            if not on.any():
                continue
            sub = cols[g][taps].astype(np.float64)
            sub = np.where(np.abs(sub) >= np.ldexp(1.0, -v), sub, 0.0)
            y[rows[on]] += (w[on] @ sub).astype(np.int64)
        return y

    def _matmul(self, w: NDArray[Any], cols: NDArray[Any], rows: NDArray[np.int64]) -> NDArray[Any]:
        if len(rows) == self.n_rows:  # every row: one (batched) product
            grouped = w.astype(cols.dtype, copy=False).reshape(self.groups, self.rows_per_group, -1)
            out: NDArray[Any] = np.matmul(grouped, cols).reshape(self.n_rows, -1)
            return out
        out = np.empty((len(rows), cols.shape[2]), dtype=cols.dtype)
        for g, sel, w_sub in self._row_blocks(w, cols.dtype, rows):
            out[sel] = w_sub @ cols[g]
        return out

    def _row_blocks(
        self, w: NDArray[Any], dtype: Any, rows: NDArray[np.int64]
    ) -> list[tuple[int, NDArray[np.bool_], NDArray[Any]]]:
        """Per group: which of ``rows`` lie in it and their weights (kept per row set)."""
        key = (w is self.w32, np.dtype(dtype).char, rows.tobytes())
        if key not in self._blocks:
            group = rows // self.rows_per_group
            self._blocks[key] = [
                (g, group == g, w[rows[group == g]].astype(dtype))
                for g in np.unique(group).tolist()
            ]
        return self._blocks[key]


def log_linear_plan(
    x_exp: NDArray[np.int64],
    x_sign: NDArray[np.int64],
    w_exp: NDArray[np.int64],
    w_sign: NDArray[np.int64],
    bias: NDArray[np.int64],
    *,
    k: int,
    frac_bits: int,
    acc_bits: int,
    groups: int = 1,
) -> NDArray[np.bool_]:
    """Which output channels the linear-accumulation exact-GEMM path may compute.

    Exponents in units of ``1/k`` (base-2 operands already doubled when ``k == 2``). A term of
    channel ``co`` at tap ``t`` is at most ``2**m_t``, ``m_t = floor((max e_x + e_w[t]) / k) + F``
    (0 when ``m_t < 0``), so no partial sum of either register exceeds
    ``S = sum over nonzero weights of 2**m_t`` in magnitude. The channel qualifies when
    ``|bias| + S <= 2**(acc_bits-1) - 1`` (no register can overflow: WRAP and SAT equal the
    plain sum) and ``S <= 2**53`` (the float64 products are exact). Channels whose terms may
    floor to 0 through more than ``MAX_MASKED`` distinct weight exponents stay with the kernel
    too, as do all channels when the activations' exponents span more than float64 can scale.
    """
    weights = LinearWeights(w_exp, w_sign, k, frac_bits, groups)
    return plan_channels(weights, x_range(x_exp, x_sign, k), bias, acc_bits)[0]


def x_range(x_exp: NDArray[np.int64], x_sign: NDArray[np.int64], k: int) -> XRange:
    """``(max e_x, a_lo, span)`` over the nonzero activations (None when there are none)."""
    nz = x_sign != 0
    if not nz.any():
        return None
    # masked extremes without masked reductions: (x - ref) * nz is 0 where the sign is 0
    ref = int(x_exp.min())
    hi = ref + int(((x_exp - ref) * nz).max())
    lo = hi - int(((hi - x_exp) * nz).max())
    return hi, lo >> (k - 1), (hi >> (k - 1)) - (lo >> (k - 1))


def plan_channels(
    weights: LinearWeights, xr: XRange, bias: NDArray[np.int64], acc_bits: int
) -> tuple[NDArray[np.bool_], list[int]]:
    """:func:`log_linear_plan` on prepared weights and :func:`x_range`; also return ``S``."""
    limit = (1 << (acc_bits - 1)) - 1
    n_co = weights.n_co
    if xr is None:
        return np.abs(bias) <= limit, [0] * n_co
    xe_max, a_lo, span = xr
    if span > MAX_EXP_SPAN:
        return np.zeros(n_co, dtype=bool), [0] * n_co
    total = weights.totals(xe_max)
    safe = np.array(
        [abs(b) + t <= limit and t <= FLOAT64_EXACT for b, t in zip(bias.tolist(), total)],
        dtype=bool,
    )
    masked_any, hits = weights.masked(a_lo, span)
    if int((hits & safe[:, None]).any(axis=0).sum()) > MAX_MASKED:
        safe &= ~masked_any
    return safe, total


def float32_rows(rows: Pow2Rows, total: list[int], span: int) -> NDArray[np.bool_]:
    """Rows whose main product is exact in float32: ``S <= 2**(24 + q)``, spread <= 24.

    ``S`` (``total``, per channel) bounds every partial sum of the row, whose terms are all
    multiples of ``2**q``; in units of ``2**q`` they stay within float32's exact integers.
    """
    if span > _F32_SPAN:
        return np.zeros(rows.n_rows, dtype=bool)
    s_row = [total[c] for c in rows.channel.tolist()]
    return np.array([s <= FLOAT32_EXACT << q for s, q in zip(s_row, rows.q.tolist())], dtype=bool)


def linear_gemm(
    weights: LinearWeights,
    x_exp: NDArray[np.int64],
    x_sign: NDArray[np.int64],
    xr: XRange,
    total: list[int],
    channels: NDArray[np.int64],
    geometry: tuple[int, int, int, int, int, int, int],
    kernel_size: tuple[int, int],
    out_hw: tuple[int, int],
) -> tuple[NDArray[np.int64], NDArray[np.int64] | None, int]:
    """The registers of the listed channels (proved safe) as exact products.

    Returns
    -------
    acc : ndarray of int64, shape (B, len(channels), Ho, Wo)
        The (even) register without the bias.
    acc_odd : ndarray of int64 or None
        The odd register (``k == 2``), same shape.
    t_nz : int
        Terms with both operands nonzero over the listed channels.
    """
    k, n_b = weights.k, x_exp.shape[0]
    _, a_lo, span = (0, 0, 0) if xr is None else xr
    rows = weights.products(a_lo, span)
    on = np.zeros(weights.n_co, dtype=bool)
    on[channels] = True
    rows_on = on[rows.channel]
    f32_rows = float32_rows(rows, total, span)
    n32, n_on = int((rows_on & f32_rows).sum()), int(rows_on.sum())
    use_split = n32 < n_on and rows.split is not None
    if use_split:  # every row in float32 above its threshold, the few weights below apart
        f32_rows[:] = True
    elif n32 < n_on and (weights.groups > 1 or 2 * n32 < n_on):
        f32_rows[:] = False  # one float64 product beats a split (and grouped ones never split)
    dtype = np.float32 if (rows_on & f32_rows).any() else np.float64
    nz = x_sign != 0
    a = x_exp >> (k - 1)
    x_val = np.where(nz, np.ldexp(x_sign.astype(dtype), np.where(nz, a - a_lo, 0)), 0)
    if k == 1:
        parts = [x_val.astype(dtype, copy=False)]
    else:
        odd_x = (x_exp & 1) == 1
        parts = [np.where(odd_x, 0, x_val).astype(dtype), np.where(odd_x, x_val, 0).astype(dtype)]
    # [X_0; X_1] along the reduction axis (k = 2), written in place, counting each row's
    # nonzero inputs on the way: T_nz is the nonzero weights times the inputs each one meets
    n_k = weights.n_k
    cols = np.empty((weights.groups, k * n_k, n_b * out_hw[0] * out_hw[1]), dtype)
    nzc = np.zeros((weights.groups, n_k), dtype=np.int64)
    for i, part in enumerate(parts):
        half = cols[:, i * n_k : (i + 1) * n_k]
        im2col_counted(part, geometry, *kernel_size, *out_hw, half, nzc)
    y = rows.apply(cols, rows_on, f32_rows, use_split)
    t_nz = int((weights.nonzero_per_tap(channels) * nzc).sum())
    n_out = out_hw[0] * out_hw[1]
    y = y.reshape(weights.groups, rows.registers, weights.cog, n_b, n_out)
    y = y.transpose(1, 3, 0, 2, 4).reshape(rows.registers, n_b, weights.n_co, *out_hw)
    every = len(channels) == weights.n_co
    acc = y[0] if every else y[0][:, channels]
    acc_odd = None if k == 1 else y[1] if every else y[1][:, channels]
    return acc, acc_odd, t_nz
