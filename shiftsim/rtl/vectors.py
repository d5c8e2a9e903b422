"""Golden test vectors for RTL: ``$readmemh`` hex files plus a JSON manifest (SPEC §5, §8).

:func:`write_vectors` runs one layer (or a tile of its output channels) on a datapath, step by
step in SPEC §5's order, and writes what a hardware testbench needs to check an
implementation of that datapath: the operands as the lanes see them, the expected
intermediate words (shifted words, selected terms, adder-tree sums, register values, overflow
flags) and the final outputs. The final outputs and the overflow count are checked against
the datapath's functional model before anything is written: vectors that disagree with
shiftsim are never written.

Layout
------
Every field is one hex file with one line per row and one word per line; a field with
``lanes > 1`` packs lane 0 in the least significant ``bits``. Negative values are two's
complement in ``bits``. Lines starting with ``//`` are comments (``$readmemh`` skips them).
Tables (all rows in order):

``steps``
    one row per accumulator update: outputs in the order ``b, co, oh, ow``; within an output
    the steps of SPEC §5 (shift-add: ``n, kh, kw``; MAC: ``kh, kw``; log: ``c, kh, kw``).
``outputs``
    one row per output, same order: the final value and its overflow flag.
``shift_unit`` (shift-add only)
    one row per input value ``(b, c, h, w)``: the S+1 shifted words of the shift unit.

The manifest (``manifest.json``) names every field: file, table, bits per lane, lanes,
signedness, the reference RTL port it maps to, its role (``in``: drive; ``comb``: expected
before the clock edge; ``reg``: expected after it; ``final``: expected after the output's
last step) and a description, plus the RTL parameters the vectors were made for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from shiftsim.datapath.log_domain import LogDatapath, LogOperands
from shiftsim.datapath.mac import FixedMacDatapath, MacOperands
from shiftsim.datapath.shift_add import ShiftAddDatapath, ShiftOperands
from shiftsim.formats import Overflow, Rounding
from shiftsim.layers import Conv2d, Linear

__all__ = [
    "MANIFEST",
    "Field",
    "Vectors",
    "mac_widths",
    "make_vectors",
    "read_vectors",
    "shift_widths",
    "write_vectors",
]

#: Name of the manifest file in a vectors directory.
MANIFEST = "manifest.json"
#: Format version written into every manifest.
VERSION = 1
#: Most rows :func:`write_vectors` writes per table (vectors are for small layers and tiles).
MAX_ROWS = 1 << 20
#: Terms per output the log lane's registers are sized for (``log_reg_bits``).
MAX_LOG_TERMS_BITS = 16


@dataclass(frozen=True)
class Field:
    """One column of a vectors table: a hex file of ``lanes`` x ``bits`` wide words.

    Attributes
    ----------
    name : str
        Field name (also the file stem).
    table : str
        ``steps``, ``outputs`` or ``shift_unit``.
    bits : int
        Bits per lane.
    lanes : int
        Lanes packed in one word, lane 0 in the least significant bits.
    signed : bool
        Two's complement (True) or unsigned.
    port : str or None
        The reference RTL port the field drives or is compared with.
    role : str
        ``in``, ``comb``, ``reg`` or ``final`` (see the module docstring).
    description : str
        What the value is, with the SPEC equation.
    """

    name: str
    table: str
    bits: int
    lanes: int
    signed: bool
    port: str | None
    role: str
    description: str

    @property
    def word_bits(self) -> int:
        """Width of one packed word: ``lanes * bits``."""
        return self.lanes * self.bits

    def to_json(self) -> dict[str, Any]:
        """The manifest entry of this field."""
        return {
            "name": self.name,
            "file": f"{self.name}.hex",
            "table": self.table,
            "bits": self.bits,
            "lanes": self.lanes,
            "signed": self.signed,
            "word_bits": self.word_bits,
            "port": self.port,
            "role": self.role,
            "description": self.description,
        }


@dataclass(frozen=True)
class Vectors:
    """Vectors in memory: the manifest and each field's rows (lists of per-lane ints).

    Attributes
    ----------
    manifest : dict
        As written to ``manifest.json``.
    data : dict of str to list of list of int
        ``data[field][row][lane]``.
    """

    manifest: dict[str, Any]
    data: dict[str, list[list[int]]]


def _bits_signed(lo: int, hi: int) -> int:
    """Width of the smallest two's-complement field that holds ``[lo, hi]``."""
    return max(lo.bit_length() if lo < 0 else 0, hi.bit_length()) + 1 if lo < 0 or hi > 0 else 1


def _clog2(n: int) -> int:
    return (n - 1).bit_length()


def _fit(value: int, bits: int, overflow: Overflow) -> int:
    """A signed ``bits``-wide register after ``value`` is written: wrapped or saturated."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if overflow == Overflow.SAT:
        return min(max(value, lo), hi)
    return ((value - lo) & ((1 << bits) - 1)) + lo


class _Tables:
    """Fields and rows under construction."""

    def __init__(self) -> None:
        self.fields: dict[str, Field] = {}
        self.data: dict[str, list[list[int]]] = {}

    def add(
        self,
        name: str,
        table: str,
        bits: int,
        signed: bool,
        port: str | None,
        role: str,
        description: str,
        lanes: int = 1,
    ) -> None:
        self.fields[name] = Field(name, table, bits, lanes, signed, port, role, description)
        self.data[name] = []

    def row(self, **values: int | Sequence[int]) -> None:
        for name, value in values.items():
            self.data[name].append(
                [int(v) for v in value] if isinstance(value, Sequence) else [int(value)]
            )


def _outputs_of(conv: Conv2d, x_shape: tuple[int, ...], co_range: range) -> list[tuple[int, ...]]:
    n_b, _, h, w = x_shape
    ho, wo = conv.output_hw(h, w)
    return [
        (b, co, oh, ow)
        for b in range(n_b)
        for co in co_range
        for oh in range(ho)
        for ow in range(wo)
    ]


def _tap(
    conv: Conv2d, x: Any, b: int, c: int, oh: int, ow: int, kh: int, kw: int, zero: int = 0
) -> int:
    """The input one tap sees: ``x[b, c, ih, iw]``, or ``zero`` in the padding."""
    ih = oh * conv.stride[0] + kh * conv.dilation[0] - conv.padding[0]
    iw = ow * conv.stride[1] + kw * conv.dilation[1] - conv.padding[1]
    if 0 <= ih < len(x[b][c]) and 0 <= iw < len(x[b][c][0]):
        return int(x[b][c][ih][iw])
    return zero


# ---------------------------------------------------------------------------- shift-add


def _shift_params(dp: ShiftAddDatapath, lanes: int) -> dict[str, int]:
    return {
        "XBITS": dp.act.bits,
        "XSIGNED": int(dp.act.signed),
        "F": dp.shift_frac_bits,
        "RND": int(dp.shift_rounding == Rounding.RND),
        "B": dp.bits,
        "N": dp.n_codebooks,
        "T": lanes,
        "ACC_BITS": dp.acc_bits,
        "SAT": int(dp.overflow == Overflow.SAT),
    }


def shift_widths(params: dict[str, int]) -> dict[str, int]:
    """Derived widths of the shift-add unit from its RTL parameters.

    ``XW`` signed input, ``RW`` shifted word ``(x << F) >> s``, ``TW`` selected term
    ``±xs[s]``, ``TREEW`` exact adder-tree sum of ``T`` terms, ``S`` largest shift,
    ``NBITS`` codebook number 1..N (all signed two's complement except ``NBITS``).
    """
    xw = params["XBITS"] + (0 if params["XSIGNED"] else 1)
    rw = xw + params["F"]
    tw = rw + 1
    return {
        "XW": xw,
        "RW": rw,
        "TW": tw,
        "TREEW": tw + _clog2(params["T"]),
        "S": (1 << (params["B"] - 1)) - 1 + params["N"] - 2,
        "NBITS": params["N"].bit_length(),
    }


def _shift_word(x: int, f: int, s: int, rnd: bool) -> int:
    """``xs[s]``: ``(x << f) >> s`` (TRN) or ``((x << f) + 2**(s-1)) >> s`` (RND, s >= 1)."""
    r = x << f
    return (r + (1 << (s - 1))) >> s if rnd and s >= 1 else r >> s


def _shift_trace(
    dp: ShiftAddDatapath, layer: Conv2d | Linear, op: ShiftOperands, lanes: int, co_range: range
) -> tuple[_Tables, dict[str, int], list[int], int]:
    conv = layer.as_conv()
    params = _shift_params(dp, lanes)
    wd = shift_widths(params)
    f, rnd, s_max = dp.shift_frac_bits, dp.shift_rounding == Rounding.RND, wd["S"]
    xb, xs_signed = dp.act.bits, dp.act.signed
    cg = conv.channels_per_group
    co_per_group = conv.out_channels // conv.groups
    kh_n, kw_n = conv.kernel_size
    x = op.x_raw.tolist()
    idx = op.index.tolist()
    bias = [0] * conv.out_channels if op.bias_raw is None else op.bias_raw.tolist()
    t = _Tables()
    t.add(
        "first",
        "steps",
        1,
        False,
        "first",
        "in",
        "1 on an output's first step: the accumulator starts from bias instead of its own value",
    )
    t.add("last", "steps", 1, False, None, "in", "1 on an output's last step (y is valid after it)")
    t.add(
        "bias",
        "steps",
        dp.acc_bits,
        True,
        "bias",
        "in",
        "initial accumulator value of the output (accumulator units), used when first = 1",
    )
    t.add("n", "steps", wd["NBITS"], False, "n", "in", "codebook number n = 1..N of this step")
    t.add(
        "x",
        "steps",
        xb,
        xs_signed,
        "x",
        "in",
        "raw input of each lane (channel c of the "
        "group) at tap (kh, kw); 0 in the padding and in unused lanes",
        lanes,
    )
    t.add(
        "idx",
        "steps",
        dp.bits,
        True,
        "idx",
        "in",
        "weight index j = idx[co, c, kh, kw, n] of each lane (0 in unused lanes)",
        lanes,
    )
    t.add(
        "term",
        "steps",
        wd["TW"],
        True,
        "term",
        "comb",
        "selected term: sign(j) * xs[|j| + n - 2] for j != 0, else 0 (SPEC 5.1 select)",
        lanes,
    )
    t.add(
        "tree",
        "steps",
        wd["TREEW"],
        True,
        "tree",
        "comb",
        "exact adder-tree sum of the lanes' terms",
    )
    t.add(
        "acc",
        "steps",
        dp.acc_bits,
        True,
        "acc",
        "reg",
        "accumulator after the step: "
        "OVERFLOW(acc + tree), acc = bias on the first step (SPEC 5.1 accumulate)",
    )
    t.add("ovf", "steps", 1, False, "ovf", "reg", "1 when WRAP/SAT changed this update")
    t.add(
        "y",
        "outputs",
        dp.acc_bits,
        True,
        "acc",
        "final",
        "final output y_raw (accumulator units, frac bits fa + f)",
    )
    t.add(
        "y_ovf",
        "outputs",
        1,
        False,
        "ovf_any",
        "final",
        "1 when any update of the output overflowed",
    )
    t.add(
        "sx",
        "shift_unit",
        xb,
        xs_signed,
        "x",
        "in",
        "raw input value x, order (b, c, h, w); drives lane 0 of port x (other lanes 0)",
    )
    t.add(
        "xs",
        "shift_unit",
        wd["RW"],
        True,
        "xs0",
        "comb",
        "shift unit words xs[s], "
        "s = 0..S: (x << f) >> s (TRN) or ((x << f) + 2^(s-1)) >> s (RND, s >= 1)",
        s_max + 1,
    )
    for b, c, i, j in np.ndindex(*op.x_raw.shape):
        v = x[b][c][i][j]
        t.row(sx=v, xs=[_shift_word(v, f, s, rnd) for s in range(s_max + 1)])
    finals, overflows = [], 0
    for b, co, oh, ow in _outputs_of(conv, op.x_raw.shape, co_range):
        c0 = (co // co_per_group) * cg
        acc, any_ovf = bias[co], 0
        steps = [
            (n, kh, kw)
            for n in range(1, dp.n_codebooks + 1)
            for kh in range(kh_n)
            for kw in range(kw_n)
        ]
        for k, (n, kh, kw) in enumerate(steps):
            xl = [_tap(conv, x, b, c0 + c, oh, ow, kh, kw) for c in range(cg)] + [0] * (lanes - cg)
            jl = [idx[co][c][kh][kw][n - 1] for c in range(cg)] + [0] * (lanes - cg)
            terms = []
            for xv, j in zip(xl, jl):
                mag = _shift_word(xv, f, abs(j) + n - 2, rnd) if j else 0
                terms.append(mag if j >= 0 else -mag)
            tree = sum(terms)
            exact = (bias[co] if k == 0 else acc) + tree
            acc = _fit(exact, dp.acc_bits, dp.overflow)
            ovf = int(acc != exact)
            overflows += ovf
            any_ovf |= ovf
            t.row(
                first=int(k == 0),
                last=int(k == len(steps) - 1),
                bias=bias[co],
                n=n,
                x=xl,
                idx=jl,
                term=terms,
                tree=tree,
                acc=acc,
                ovf=ovf,
            )
        t.row(y=acc, y_ovf=any_ovf)
        finals.append(acc)
    return t, params, finals, overflows


# ---------------------------------------------------------------------------- MAC


def _mac_params(dp: FixedMacDatapath, lanes: int) -> dict[str, int]:
    return {
        "XBITS": dp.act.bits,
        "XSIGNED": int(dp.act.signed),
        "WBITS": dp.weight.bits,
        "WSIGNED": int(dp.weight.signed),
        "T": lanes,
        "ACC_BITS": dp.acc_bits,
        "SAT": int(dp.overflow == Overflow.SAT),
    }


def mac_widths(params: dict[str, int]) -> dict[str, int]:
    """Derived widths of the MAC lane: signed ``XW``, ``WW``, product ``PW``, ``TREEW``."""
    xw = params["XBITS"] + (0 if params["XSIGNED"] else 1)
    ww = params["WBITS"] + (0 if params["WSIGNED"] else 1)
    return {"XW": xw, "WW": ww, "PW": xw + ww, "TREEW": xw + ww + _clog2(params["T"])}


def _mac_trace(
    dp: FixedMacDatapath, layer: Conv2d | Linear, op: MacOperands, lanes: int, co_range: range
) -> tuple[_Tables, dict[str, int], list[int], int]:
    conv = layer.as_conv()
    params = _mac_params(dp, lanes)
    wd = mac_widths(params)
    cg = conv.channels_per_group
    co_per_group = conv.out_channels // conv.groups
    kh_n, kw_n = conv.kernel_size
    x = op.x_raw.tolist()
    w = op.w_raw.tolist()
    bias = [0] * conv.out_channels if op.bias_raw is None else op.bias_raw.tolist()
    t = _Tables()
    t.add("first", "steps", 1, False, "first", "in", "1 on an output's first step")
    t.add("last", "steps", 1, False, None, "in", "1 on an output's last step")
    t.add("bias", "steps", dp.acc_bits, True, "bias", "in", "initial accumulator value")
    t.add(
        "x",
        "steps",
        dp.act.bits,
        dp.act.signed,
        "x",
        "in",
        "raw input of each lane at tap (kh, kw); 0 in the padding and unused lanes",
        lanes,
    )
    t.add(
        "w",
        "steps",
        dp.weight.bits,
        dp.weight.signed,
        "w",
        "in",
        "raw weight w[co, c, kh, kw] of each lane",
        lanes,
    )
    t.add("prod", "steps", wd["PW"], True, "prod", "comb", "product w * x of each lane", lanes)
    t.add("tree", "steps", wd["TREEW"], True, "tree", "comb", "exact adder-tree sum")
    t.add("acc", "steps", dp.acc_bits, True, "acc", "reg", "OVERFLOW(acc + tree) (SPEC 5.3)")
    t.add("ovf", "steps", 1, False, "ovf", "reg", "1 when WRAP/SAT changed this update")
    t.add("y", "outputs", dp.acc_bits, True, "acc", "final", "final output y_raw")
    t.add("y_ovf", "outputs", 1, False, "ovf_any", "final", "1 when any update overflowed")
    finals, overflows = [], 0
    for b, co, oh, ow in _outputs_of(conv, op.x_raw.shape, co_range):
        c0 = (co // co_per_group) * cg
        acc, any_ovf = bias[co], 0
        steps = [(kh, kw) for kh in range(kh_n) for kw in range(kw_n)]
        for k, (kh, kw) in enumerate(steps):
            xl = [_tap(conv, x, b, c0 + c, oh, ow, kh, kw) for c in range(cg)] + [0] * (lanes - cg)
            wl = [w[co][c][kh][kw] for c in range(cg)] + [0] * (lanes - cg)
            prods = [a * v for a, v in zip(xl, wl)]
            tree = sum(prods)
            exact = acc + tree
            acc = _fit(exact, dp.acc_bits, dp.overflow)
            ovf = int(acc != exact)
            overflows += ovf
            any_ovf |= ovf
            t.row(
                first=int(k == 0),
                last=int(k == len(steps) - 1),
                bias=bias[co],
                x=xl,
                w=wl,
                prod=prods,
                tree=tree,
                acc=acc,
                ovf=ovf,
            )
        t.row(y=acc, y_ovf=any_ovf)
        finals.append(acc)
    return t, params, finals, overflows


# ---------------------------------------------------------------------------- log domain


def _log_params(dp: LogDatapath) -> dict[str, int]:
    lo = min(dp.act.e_min, dp.weight.e_min)
    hi = max(dp.act.e_max, dp.weight.e_max)
    ebits = _bits_signed(min(lo, 0), max(hi, 0))
    p_lo, p_hi = dp.act.e_min + dp.weight.e_min, dp.max_product_exponent
    g = dp.log_frac_bits
    reach = max(abs(p_lo), abs(p_hi) + MAX_LOG_TERMS_BITS + 2) << g
    return {
        "EBITS": ebits,
        "F": dp.acc_frac_bits,
        "ACC_BITS": dp.acc_bits,
        "SAT": int(dp.overflow == Overflow.SAT),
        "LOGACC": int(dp.accumulate == "log"),
        "MITCHELL": int(dp.log_add == "mitchell"),
        "G": g,
        "SBITS": _bits_signed(-reach, reach),
    }


def _log_merge(s: int, big_p: int, g: int, mitchell: bool) -> int:
    """log2(2^S + 2^P) ~ max + correction (SPEC 5.2, floor or mitchell), ``g`` frac bits."""
    if mitchell:
        d = abs(s - big_p)
        return max(s, big_p) + (((2 << g) - (d & ((1 << g) - 1))) >> ((d >> g) + 1))
    d = abs((s >> g) - (big_p >> g))
    return max(s, big_p) + ((1 << g) >> d)


def _log_to_linear(s: int, g: int, f: int) -> int:
    """Mitchell: ``floor(2**I * (1 + phi) * 2**F)`` with ``S = (I + phi) * 2**g``."""
    m = (1 << g) + (s & ((1 << g) - 1))
    sh = (s >> g) + f - g
    return m << sh if sh >= 0 else m >> -sh


def _log_trace(
    dp: LogDatapath, layer: Conv2d | Linear, op: LogOperands, co_range: range
) -> tuple[_Tables, dict[str, int], list[int], int]:
    if dp.k != 1:
        raise ValueError(
            f"log vectors cover base-2 codes only, got act base {dp.act.base!r} and weight base "
            f"{dp.weight.base!r}"
        )
    conv = layer.as_conv()
    params = _log_params(dp)
    ebits, g, f, acc_bits = params["EBITS"], dp.log_frac_bits, dp.acc_frac_bits, dp.acc_bits
    sbits = params["SBITS"]
    ovf_mode, logacc, mitchell = dp.overflow, dp.accumulate == "log", dp.log_add == "mitchell"
    cg = conv.channels_per_group
    co_per_group = conv.out_channels // conv.groups
    kh_n, kw_n = conv.kernel_size
    xe, xsg = op.x_exp.tolist(), op.x_sign.tolist()
    bias = [0] * conv.out_channels if op.bias_raw is None else op.bias_raw.tolist()
    t = _Tables()
    t.add(
        "first",
        "steps",
        1,
        False,
        "first",
        "in",
        "1 on an output's first term: registers "
        "restart (linear: acc = bias; log: both log registers empty)",
    )
    t.add("last", "steps", 1, False, None, "in", "1 on an output's last term")
    t.add("bias", "steps", acc_bits, True, "bias", "in", "bias (accumulator units)")
    t.add("xe", "steps", ebits, True, "xe", "in", "activation exponent e_x (base 2)")
    t.add("xsign", "steps", 2, True, "xsign", "in", "activation sign -1/0/+1 (0: zero or padding)")
    t.add("we", "steps", ebits, True, "we", "in", "weight exponent e_w")
    t.add("wsign", "steps", 2, True, "wsign", "in", "weight sign -1/0/+1")
    t.add(
        "p",
        "steps",
        ebits + 1,
        True,
        "p",
        "comb",
        "product exponent p = e_x + e_w (exponent adder)",
    )
    if logacc:
        t.add(
            "s_pos",
            "steps",
            sbits,
            True,
            "s_pos",
            "reg",
            "positive log register S (g frac bits) after the term; 0 when empty",
        )
        t.add("s_neg", "steps", sbits, True, "s_neg", "reg", "negative log register S")
        t.add("pos_full", "steps", 1, False, "pos_full", "reg", "1 when S_pos is not empty")
        t.add("neg_full", "steps", 1, False, "neg_full", "reg", "1 when S_neg is not empty")
    else:
        t.add("acc", "steps", acc_bits, True, "acc", "reg", "OVERFLOW(acc +- floor(2^(p+F)))")
        t.add("ovf", "steps", 1, False, "ovf", "reg", "1 when WRAP/SAT changed this update")
    t.add(
        "y",
        "outputs",
        acc_bits,
        True,
        "y",
        "final",
        "final output y_raw (frac bits F); log mode: OVERFLOW(bias + lin(S_pos) - lin(S_neg))",
    )
    t.add(
        "y_ovf",
        "outputs",
        1,
        False,
        "ovf_any",
        "final",
        "1 when any register write of the output overflowed",
    )
    finals, overflows = [], 0
    for b, co, oh, ow in _outputs_of(conv, op.x_exp.shape, co_range):
        c0 = (co // co_per_group) * cg
        acc, any_ovf = bias[co], 0
        regs: dict[int, int | None] = {1: None, -1: None}  # None: empty
        w_exp, w_sign = op.w_exp[co].tolist(), op.w_sign[co].tolist()
        taps = [(c, kh, kw) for c in range(cg) for kh in range(kh_n) for kw in range(kw_n)]
        for k, (c, kh, kw) in enumerate(taps):
            sx = _tap(conv, xsg, b, c0 + c, oh, ow, kh, kw)
            ex = _tap(conv, xe, b, c0 + c, oh, ow, kh, kw) if sx else 0
            sw = w_sign[c][kh][kw]
            ew = w_exp[c][kh][kw] if sw else 0
            p = ex + ew
            row: dict[str, int] = {}
            if sx and sw:
                sign = sx * sw
                if logacc:
                    big_p = p << g
                    s = regs[sign]
                    regs[sign] = big_p if s is None else _log_merge(s, big_p, g, mitchell)
                else:
                    term = (1 << (p + f)) if p + f >= 0 else 0
                    exact = acc + sign * term
                    acc = _fit(exact, acc_bits, ovf_mode)
                    row["ovf"] = int(acc != exact)
            else:
                row["ovf"] = 0
            if logacc:
                row = {
                    "s_pos": regs[1] or 0,
                    "s_neg": regs[-1] or 0,
                    "pos_full": int(regs[1] is not None),
                    "neg_full": int(regs[-1] is not None),
                }
            else:
                row["acc"] = acc
                overflows += row["ovf"]
                any_ovf |= row["ovf"]
            t.row(
                first=int(k == 0),
                last=int(k == len(taps) - 1),
                bias=bias[co],
                xe=ex,
                xsign=sx,
                we=ew,
                wsign=sw,
                p=p,
                **row,
            )
        if logacc:
            lin = {}
            for sign, s in regs.items():
                exact = 0 if s is None else _log_to_linear(s, g, f)
                lin[sign] = _fit(exact, acc_bits, ovf_mode)
                overflows += int(lin[sign] != exact)
                any_ovf |= int(lin[sign] != exact)
            exact = bias[co] + lin[1] - lin[-1]
            acc = _fit(exact, acc_bits, ovf_mode)
            overflows += int(acc != exact)
            any_ovf |= int(acc != exact)
        t.row(y=acc, y_ovf=any_ovf)
        finals.append(acc)
    return t, params, finals, overflows


# ---------------------------------------------------------------------------- writer


def _layer_json(layer: Conv2d | Linear) -> dict[str, Any]:
    if isinstance(layer, Linear):
        return {
            "type": "Linear",
            "in_features": layer.in_features,
            "out_features": layer.out_features,
        }
    return {
        "type": "Conv2d",
        "in_channels": layer.in_channels,
        "out_channels": layer.out_channels,
        "kernel_size": list(layer.kernel_size),
        "stride": list(layer.stride),
        "padding": list(layer.padding),
        "dilation": list(layer.dilation),
        "groups": layer.groups,
    }


def _datapath_json(dp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in vars(dp).items():
        if isinstance(value, (Rounding, Overflow)):
            out[name] = value.name
        elif isinstance(value, (int, str, float)) or value is None:
            out[name] = value
        elif isinstance(value, tuple):
            out[name] = list(value)
        else:
            out[name] = repr(value)
    return out


def _hex_line(values: list[int], bits: int) -> str:
    mask = (1 << bits) - 1
    word = 0
    for lane, v in enumerate(values):
        word |= (v & mask) << (lane * bits)
    return f"{word:0{-(-len(values) * bits // 4)}x}"


def make_vectors(
    datapath: ShiftAddDatapath | FixedMacDatapath | LogDatapath,
    layer: Conv2d | Linear,
    code: Any,
    x: Any,
    bias_raw: ArrayLike | None = None,
    *,
    lanes: int | None = None,
    out_channels: tuple[int, int] | None = None,
) -> Vectors:
    """Build the vectors of :func:`write_vectors` in memory (same arguments, no directory)."""
    if not isinstance(datapath, (ShiftAddDatapath, FixedMacDatapath, LogDatapath)):
        raise TypeError(
            "datapath must be a ShiftAddDatapath, FixedMacDatapath or LogDatapath, got "
            f"{type(datapath).__name__}"
        )
    if not isinstance(layer, (Conv2d, Linear)):
        raise TypeError(f"layer must be a Conv2d or Linear, got {type(layer).__name__}")
    ops = datapath.check(layer, code, x, bias_raw)
    conv = layer.as_conv()
    cg = conv.channels_per_group
    if lanes is None:
        lanes = cg
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < cg:
        raise ValueError(
            f"lanes must be an int >= C/groups = {cg} (the adder tree sums a step's channels "
            f"in one cycle), got {lanes!r}"
        )
    co_n = conv.out_channels
    lo, hi = (0, co_n) if out_channels is None else out_channels
    if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < hi <= co_n):
        raise ValueError(
            f"out_channels must be (start, stop) within [0, {co_n}], got {out_channels!r}"
        )
    x_shape = ops.x_exp.shape if isinstance(ops, LogOperands) else ops.x_raw.shape
    ho, wo = conv.output_hw(x_shape[2], x_shape[3])
    kh, kw = conv.kernel_size
    per_out = kh * kw * (cg if isinstance(datapath, LogDatapath) else 1)
    if isinstance(datapath, ShiftAddDatapath):
        per_out *= datapath.n_codebooks
    rows = x_shape[0] * (hi - lo) * ho * wo * per_out
    if rows > MAX_ROWS:
        raise ValueError(
            f"the layer needs {rows} step rows, more than {MAX_ROWS}: export a "
            "tile (out_channels) or a smaller input"
        )
    if isinstance(datapath, ShiftAddDatapath):
        assert isinstance(ops, ShiftOperands)
        tables, params, finals, overflows = _shift_trace(datapath, layer, ops, lanes, range(lo, hi))
        family = "shift_add"
    elif isinstance(datapath, FixedMacDatapath):
        assert isinstance(ops, MacOperands)
        tables, params, finals, overflows = _mac_trace(datapath, layer, ops, lanes, range(lo, hi))
        family = "mac"
    else:
        assert isinstance(ops, LogOperands)
        tables, params, finals, overflows = _log_trace(datapath, layer, ops, range(lo, hi))
        family = "log"

    # Every value must fit its field (nothing is silently masked when packed into hex words).
    for fld in tables.fields.values():
        v_min = -(1 << (fld.bits - 1)) if fld.signed else 0
        v_max = (1 << (fld.bits - 1)) - 1 if fld.signed else (1 << fld.bits) - 1
        for row in tables.data[fld.name]:
            if len(row) != fld.lanes or not all(v_min <= v <= v_max for v in row):
                raise RuntimeError(f"field {fld.name} holds {row}, outside {fld.bits} bits (a bug)")
    # The vectors must agree with shiftsim's functional model: check before writing anything.
    result = datapath.run(layer, code, x, bias_raw)
    y = np.asarray(result.y_raw).reshape(x_shape[0], co_n, ho, wo)[:, lo:hi]
    if y.reshape(-1).tolist() != finals:
        raise RuntimeError("vector trace disagrees with the functional model's y_raw (a bug)")
    if (lo, hi) == (0, co_n) and overflows != result.counts.overflows:
        raise RuntimeError(
            f"vector trace counts {overflows} overflows, the functional model "
            f"{result.counts.overflows} (a bug)"
        )
    order = {
        "shift_add": "b, co, oh, ow, then n, kh, kw",
        "mac": "b, co, oh, ow, then kh, kw",
        "log": "b, co, oh, ow, then c, kh, kw",
    }[family]
    n_rows = {name: len(rows_) for name, rows_ in tables.data.items()}
    table_rows: dict[str, int] = {}
    for fld in tables.fields.values():
        table_rows[fld.table] = n_rows[fld.name]
    manifest = {
        "shiftsim_vectors": VERSION,
        "datapath": family,
        "config": _datapath_json(datapath),
        "layer": _layer_json(layer),
        "input_shape": list(x_shape),
        "out_channels": [lo, hi],
        "output_shape": [x_shape[0], hi - lo, ho, wo],
        "rtl_top": {"shift_add": "shiftcnn_lane", "mac": "mac_lane", "log": "log_lane"}[family],
        "params": params,
        "widths": (
            shift_widths(params)
            if family == "shift_add"
            else mac_widths(params)
            if family == "mac"
            else {"P": params["EBITS"] + 1}
        ),
        "tables": {
            "steps": {"rows": table_rows["steps"], "order": order},
            "outputs": {"rows": table_rows["outputs"], "order": "b, co, oh, ow"},
            **(
                {"shift_unit": {"rows": table_rows["shift_unit"], "order": "b, c, h, w"}}
                if "shift_unit" in table_rows
                else {}
            ),
        },
        "overflows": overflows,
        "fields": [fld.to_json() for fld in tables.fields.values()],
    }
    return Vectors(manifest=manifest, data=tables.data)


def write_vectors(
    out_dir: str | Path,
    datapath: ShiftAddDatapath | FixedMacDatapath | LogDatapath,
    layer: Conv2d | Linear,
    code: Any,
    x: Any,
    bias_raw: ArrayLike | None = None,
    *,
    lanes: int | None = None,
    out_channels: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Write golden RTL test vectors of one layer (or a tile) on a datapath.

    Parameters
    ----------
    out_dir : str or Path
        Directory to write ``manifest.json`` and one ``<field>.hex`` per field into (created).
    datapath : ShiftAddDatapath, FixedMacDatapath or LogDatapath
        The datapath (log: base-2 codes).
    layer : Conv2d or Linear
        The layer.
    code, x, bias_raw
        As for ``datapath.run`` (validated the same way).
    lanes : int, optional
        Lanes of the adder tree (shift-add and MAC): ``T >= C/groups``; unused lanes get zero
        operands. Default ``C/groups``.
    out_channels : (int, int), optional
        Export only output channels ``start..stop-1`` (a tile). Default: all.

    Returns
    -------
    dict
        The manifest (also written as ``manifest.json``).

    Raises
    ------
    TypeError, ValueError
        On bad arguments (before anything runs or is written).
    RuntimeError
        If the step trace disagrees with the datapath's functional model (a bug).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from shiftsim.datapath.shift_add import ShiftAddDatapath
    >>> from shiftsim.layers import Conv2d
    >>> from shiftsim.quantize import ShiftCode
    >>> index = np.array([1, -2, 3, 0], dtype=np.int8).reshape(1, 1, 2, 2, 1)
    >>> code = ShiftCode(index=index, scale=np.float64(1.0), n_codebooks=1, bits=3)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     m = write_vectors(d, ShiftAddDatapath(n_codebooks=1, bits=3), Conv2d(1, 1, 2),
    ...                       code, np.full((1, 1, 2, 2), 8))
    ...     print(m["params"]["T"], m["tables"]["steps"]["rows"], open(f"{d}/acc.hex").read())
    1 4 // acc: steps, 1 x 32 bits signed
    00000008
    00000004
    00000006
    00000006
    <BLANKLINE>
    """
    vec = make_vectors(datapath, layer, code, x, bias_raw, lanes=lanes, out_channels=out_channels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fld in vec.manifest["fields"]:
        sign = "signed" if fld["signed"] else "unsigned"
        lines = [f"// {fld['name']}: {fld['table']}, {fld['lanes']} x {fld['bits']} bits {sign}"]
        lines += [_hex_line(v, fld["bits"]) for v in vec.data[fld["name"]]]
        (out / fld["file"]).write_text("\n".join(lines) + "\n")
    (out / MANIFEST).write_text(json.dumps(vec.manifest, indent=1) + "\n")
    return vec.manifest


def read_vectors(vec_dir: str | Path) -> Vectors:
    """Read a vectors directory back: the manifest and every field's signed/unsigned lanes.

    Parameters
    ----------
    vec_dir : str or Path
        A directory written by :func:`write_vectors`.

    Returns
    -------
    Vectors
    """
    d = Path(vec_dir)
    manifest = json.loads((d / MANIFEST).read_text())
    data: dict[str, list[list[int]]] = {}
    for fld in manifest["fields"]:
        bits, lanes, signed = fld["bits"], fld["lanes"], fld["signed"]
        mask = (1 << bits) - 1
        rows = []
        for line in (d / fld["file"]).read_text().splitlines():
            if not line.strip() or line.startswith("//"):
                continue
            word = int(line, 16)
            vals = [(word >> (k * bits)) & mask for k in range(lanes)]
            if signed:
                vals = [v - (1 << bits) if v >> (bits - 1) else v for v in vals]
            rows.append(vals)
        data[fld["name"]] = rows
    return Vectors(manifest=manifest, data=data)
