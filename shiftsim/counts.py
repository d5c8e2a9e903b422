"""Event counts: an additive record of everything a datapath or a hardware model did."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

__all__ = ["Counts"]


@dataclass(frozen=True, kw_only=True)
class Counts:
    """Events of one simulation, additive across layers (``a + b``, ``sum(...)``).

    Notation: ``B`` batch, ``C`` input channels, ``H, W`` input size, ``Hp, Wp`` padded input
    size, ``Co, Ho, Wo`` output channels and size, ``Kh, Kw`` kernel, ``G`` groups,
    ``Cg = C/G`` channels per group, ``N`` codebooks, ``S = 2**(B_idx-1) + N - 3`` the largest
    shift, ``T = B*Co*Ho*Wo*Cg*Kh*Kw`` the terms of a layer (its MACs).

    Arithmetic counts (functional, golden and cycle models agree on these):

    shift_ops
        Shift datapath: shifted copies the shift unit makes, one per input value (padding
        excluded) and shift amount ``s = 1..S``: ``B*C*H*W*S`` (``B*in_features*S`` for
        Linear). ``x << f`` itself is wiring, not counted. Log datapath: shifts that turn
        a product exponent into a linear term, plus shifts of the log-domain adder.
        Log datapath, linear accumulation: ``T_nz`` (terms with both operands nonzero), plus
        ``#{s > 0 in sqrt2_shifts}`` per odd base-sqrt2 term with ``sqrt2_mode="shift_add"``;
        log accumulation: one per log-domain merge and one per log->linear conversion.
        MAC datapath: 0.
    negations
        Shift datapath: negated copies, ``B*C*H*W*(S+1)`` (every nonzero shifted value gets
        its signed twin).
    selects
        Shift datapath: multiplexer selections, ``B*Co*Ho*Wo*N*Kh*Kw*Cg = N*T``.
    zero_selects
        Selections whose index is 0 (they add a zero). Shift datapath:
        ``B*Ho*Wo * (number of zero indices in the code)``.
    adds
        Two-operand additions: adder-tree and accumulator adds, bias included. Shift
        datapath: ``N*T`` -- per output and step ``(n, kh, kw)``, ``Cg - 1`` adds in the adder
        tree and 1 into the accumulator (zero selections included: the adders run anyway);
        the bias is the accumulator's initial value and costs no add. Log datapath, linear
        accumulation: ``T_nz`` (+ ``len(sqrt2_shifts) - 1`` per odd term with shift_add, + 1
        per output with split); log accumulation: 1 per merge (floor) or 2 (mitchell), + 1 per
        output (positive minus negative register), + 1 per output with a bias. MAC datapath:
        ``T`` (``Cg - 1`` tree adds and 1 accumulator add per output and step).
    multiplies
        Real multiplications: ``T`` on the MAC datapath (padding included); on the log
        datapath, one constant multiplication (by ``c ~ sqrt(2)``) per output in sqrt2
        ``split`` mode, else 0.
    exponent_adds
        Log datapath: exponent additions forming products, one per term with both operands
        nonzero.
    compares
        Log datapath: comparisons in the log-domain adder (max and difference).
    acc_updates
        Accumulator register writes. Shift datapath: one per output and step,
        ``B*Co*Ho*Wo*N*Kh*Kw`` (loading the bias is not counted). MAC datapath:
        ``B*Co*Ho*Wo*Kh*Kw``. Log datapath: ``T_nz`` (one write per term; + 1 per output for
        the final add in sqrt2 split mode).
    log_to_linear
        Log datapath: conversions of a log-domain sum to linear, one per non-empty log
        register (at most two per output: positive and negative terms).
    overflows
        Accumulator updates whose value WRAP or SAT changed (never silent).

    Hardware counts (cycle and analytic models agree on these; zero from functional runs):

    cycles, compute_cycles, stall_cycles
        Total cycles, cycles in which the adders work, and cycles waiting for memory.
    *_read_bits, *_write_bits
        Traffic of each on-chip buffer, in bits.
    dram_read_bytes, dram_write_bytes
        Off-chip traffic.
    shift_unit_inputs
        Input values the shift unit processed (each makes S shifts and S+1 negations); more
        than ``B*C*H*W`` when overlapping input windows are shifted again.
    weight_rf_read_bits, weight_rf_write_bits
        Traffic of the units' weight register files.
    psum_read_bits, psum_write_bits
        Traffic of the units' partial-sum registers (input-channel tiles).
    energy_pj
        Total energy from the energy table in use.
    """

    shift_ops: int = 0
    negations: int = 0
    selects: int = 0
    zero_selects: int = 0
    adds: int = 0
    multiplies: int = 0
    exponent_adds: int = 0
    compares: int = 0
    acc_updates: int = 0
    log_to_linear: int = 0
    overflows: int = 0
    cycles: int = 0
    compute_cycles: int = 0
    stall_cycles: int = 0
    input_buffer_read_bits: int = 0
    input_buffer_write_bits: int = 0
    shift_buffer_read_bits: int = 0
    shift_buffer_write_bits: int = 0
    weight_buffer_read_bits: int = 0
    weight_buffer_write_bits: int = 0
    output_buffer_read_bits: int = 0
    output_buffer_write_bits: int = 0
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0
    shift_unit_inputs: int = 0
    weight_rf_read_bits: int = 0
    weight_rf_write_bits: int = 0
    psum_read_bits: int = 0
    psum_write_bits: int = 0
    energy_pj: float = 0.0

    def __post_init__(self) -> None:
        values = self.__dict__
        ints = [values[name] for name in _INT_FIELDS]
        # the common case, fast: every count already a plain non-negative int
        if set(map(type, ints)) != _INT_ONLY or min(ints) < 0:
            for name in _INT_FIELDS:
                object.__setattr__(self, name, _checked(name, values[name]))
        object.__setattr__(self, "energy_pj", _checked("energy_pj", self.energy_pj))

    def __add__(self, other: Counts) -> Counts:
        if not isinstance(other, Counts):
            return NotImplemented
        summed = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        return Counts(**summed)

    def __radd__(self, other: Any) -> Counts:
        if other == 0:  # lets sum() start from 0
            return self
        return self.__add__(other)

    def to_dict(self) -> dict[str, int | float]:
        """The counts as a plain dict, field order kept."""
        return asdict(self)

    def replace(self, **changes: int | float) -> Counts:
        """A copy with some fields changed (only those are validated again).

        Raises
        ------
        TypeError, ValueError
            If a name is not a field, or a value is not a non-negative int (a finite
            non-negative number for ``energy_pj``).
        """
        values = dict(self.__dict__)
        for name, v in changes.items():
            if name not in values:
                raise TypeError(f"Counts has no field {name!r}")
            values[name] = _checked(name, v)
        out = object.__new__(type(self))
        out.__dict__.update(values)
        return out

    def nonzero(self) -> dict[str, int | float]:
        """Only the fields that are not zero."""
        return {k: v for k, v in self.to_dict().items() if v}


#: The integer fields of :class:`Counts` (every field but ``energy_pj``).
_INT_FIELDS = tuple(f.name for f in fields(Counts) if f.name != "energy_pj")
_INT_ONLY = {int}


def _checked(name: str, v: Any) -> int | float:
    """``v`` as the field ``name`` holds it: a non-negative int, or a finite float (energy).

    Raises
    ------
    TypeError, ValueError
        If ``v`` has the wrong type or is negative (not finite).
    """
    if name == "energy_pj":
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
            raise TypeError(f"energy_pj must be a number, got {v!r}")
        if not math.isfinite(float(v)) or v < 0:
            raise ValueError(f"energy_pj must be finite and >= 0, got {v!r}")
        return float(v)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {v!r}")
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    return int(v)
