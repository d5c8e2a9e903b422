"""The one hook the hand-worked datapath tables run through: every level of modelling.

A hand-worked example states a layer's outputs and arithmetic counts; the golden, functional
and cycle models must all give them (the cycle model adds hardware counts, which the
examples leave to the cost-model tests).
"""

from __future__ import annotations

from dataclasses import fields

from shiftsim.counts import Counts

#: The levels every hand-worked table runs at (``analytic`` is checked in the cost tests).
LEVELS = ("golden", "functional", "cycle")

#: Counts only the cycle and analytic models produce.
HARDWARE_FIELDS = tuple(
    f.name
    for f in fields(Counts)
    if f.name.endswith(("_bits", "_bytes", "cycles", "energy_pj")) or f.name == "shift_unit_inputs"
)


def arithmetic(counts: Counts) -> Counts:
    """``counts`` with the hardware counts zeroed: what every level must agree on."""
    return counts.replace(**{name: 0 for name in HARDWARE_FIELDS})
