"""What the cost models need to know about a datapath's hardware (SPEC §7).

Each datapath describes its hardware once, as a :class:`HardwareDesc`: what a lane reads,
writes and computes per term, and the widths the energy table prices. The cycle model, the
analytic model and the energy model consume this description without knowing the class.
This module imports no cost model (``datapath`` never imports ``cycle``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["KIND_LOG", "KIND_MAC", "KIND_SHIFT", "HardwareDesc", "describe"]

KIND_SHIFT = 0
KIND_MAC = 1
KIND_LOG = 2


@dataclass(frozen=True)
class HardwareDesc:
    """One datapath's hardware, as the schedule and the energy table see it.

    Attributes
    ----------
    kind : int
        ``KIND_SHIFT`` (shift unit, selectors, adder trees), ``KIND_MAC`` (multipliers,
        adder trees) or ``KIND_LOG`` (serial exponent-adder lanes).
    passes : int
        Passes over the receptive field: N codebooks for the shift datapath, else 1.
    weight_bits : int
        Bits stored per weight (``N*B`` for ShiftCNN indices).
    pass_weight_bits : int
        Bits of a weight read in one pass (``B`` for ShiftCNN, ``weight_bits`` otherwise).
    act_bits : int
        Bits per stored input value.
    word_bits : int
        Bits per shift-buffer word: ``act_bits + f``, plus a sign bit for unsigned inputs.
    words_per_input : int
        Shift-buffer words per input value, ``P - 1 = 2*(S+1)``; 0 without a shift unit.
    max_shift : int
        S (0 without a shift unit).
    acc_bits : int
        Accumulator (and output) width.
    mult_bits : int
        Multiplier width (MAC datapath), else 0.
    const_mult_bits : int
        Width of the log datapath's constant multiplier (``acc_bits`` in sqrt(2) split
        mode), else 0.
    serial_lanes : bool
        The accumulation is serial (one term per lane and cycle, ``A*T`` lanes): the log
        datapath. Else ``A`` units each sum ``T`` channels per cycle in an adder tree.
    """

    kind: int
    passes: int
    weight_bits: int
    pass_weight_bits: int
    act_bits: int
    word_bits: int
    words_per_input: int
    max_shift: int
    acc_bits: int
    mult_bits: int = 0
    const_mult_bits: int = 0
    serial_lanes: bool = False

    @property
    def has_shift_unit(self) -> bool:
        """Whether the datapath precomputes shifted copies into a shift buffer."""
        return self.words_per_input > 0


def describe(datapath: Any) -> HardwareDesc:
    """The :class:`HardwareDesc` of ``datapath`` (its ``hardware_desc()`` method).

    Raises
    ------
    TypeError
        If ``datapath`` does not describe its hardware.
    """
    method = getattr(datapath, "hardware_desc", None)
    if method is None or not callable(method):
        raise TypeError(
            "datapath must be a ShiftAddDatapath, FixedMacDatapath or LogDatapath (a datapath"
            f" with hardware_desc()), got {type(datapath).__name__}"
        )
    desc = method()
    if not isinstance(desc, HardwareDesc):  # pragma: no cover - a datapath bug
        raise TypeError(f"{type(datapath).__name__}.hardware_desc() must return a HardwareDesc")
    return desc


def shift_desc(dp: Any) -> HardwareDesc:
    """The shift-add datapath: shift unit, P-1 words per input, N passes of B-bit indices."""
    s = dp.max_shift
    act = dp.act
    return HardwareDesc(
        kind=KIND_SHIFT,
        passes=dp.n_codebooks,
        weight_bits=dp.n_codebooks * dp.bits,
        pass_weight_bits=dp.bits,
        act_bits=act.bits,
        word_bits=act.bits + dp.shift_frac_bits + (0 if act.signed else 1),
        words_per_input=2 * (s + 1),
        max_shift=s,
        acc_bits=dp.acc_bits,
    )


def mac_desc(dp: Any) -> HardwareDesc:
    """The MAC datapath: one multiplier per selector position, operands read directly."""
    wb, ab = dp.weight.bits, dp.act.bits
    return HardwareDesc(
        kind=KIND_MAC, passes=1, weight_bits=wb, pass_weight_bits=wb, act_bits=ab,
        word_bits=0, words_per_input=0, max_shift=0, acc_bits=dp.acc_bits,
        mult_bits=max(wb, ab),
    )  # fmt: skip


def log_desc(dp: Any) -> HardwareDesc:
    """The log datapath: serial lanes reading packed codes (exponent bits, sign bit)."""
    wb = dp.weight.bits + int(dp.weight.signed)
    ab = dp.act.bits + int(dp.act.signed)
    split = dp.k == 2 and dp.accumulate == "linear" and dp.sqrt2_mode == "split"
    return HardwareDesc(
        kind=KIND_LOG, passes=1, weight_bits=wb, pass_weight_bits=wb, act_bits=ab,
        word_bits=0, words_per_input=0, max_shift=0, acc_bits=dp.acc_bits,
        const_mult_bits=dp.acc_bits if split else 0, serial_lanes=True,
    )  # fmt: skip
