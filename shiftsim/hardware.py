"""The machine a layer runs on: the ShiftCNN architecture made parametric (SPEC §7).

The schedule that runs on it is documented in :mod:`shiftsim.cycle`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shiftsim.formats import check_int

__all__ = ["DATAFLOWS", "INT_LIMIT", "Hardware"]

#: Dataflows a :class:`Hardware` runs: output-stationary, weight-stationary, or the lower-energy
#: of the two (SPEC §7, :mod:`shiftsim.cycle`).
DATAFLOWS = ("os", "ws", "auto")

#: Largest size or rate a Hardware field takes: the kernels count in int64, and a buffer of
#: ``2**40`` bytes (1 TiB) is far beyond any accelerator.
INT_LIMIT = 1 << 40


@dataclass(frozen=True, kw_only=True)
class Hardware:
    """An accelerator: shift unit, accumulation units with adder trees, buffers, DRAM port.

    Parameters
    ----------
    shift_width : int
        Input values the shift unit turns into their P-1 shifted copies per cycle.
    acc_units : int
        Accumulation units: outputs computed in parallel.
    tree_width : int
        Channels each unit's adder tree takes per cycle.
    input_buffer_bytes : int
        Line buffer of raw input rows.
    shift_buffer_bytes : int
        Buffer of precomputed shifted copies (the shift datapath only).
    weight_buffer_bytes : int
        Weight memory (ShiftCNN: N*B bits per weight).
    output_buffer_bytes : int
        Output buffer (double-buffered accumulator results).
    dram_bytes_per_cycle : int
        Bytes the DRAM port moves per cycle, reads and writes sharing it.
    clock_hz : float
        Clock frequency (time and power in reports).
    pipelined : bool, default True
        Whether DMA and shift unit prepare the next tile while the adders work on the current
        one (double-buffered shift and output buffers). When False every phase waits for the
        previous one.
    sram_access_bits : int, default 64
        Width of one SRAM access, for the energy table.
    dram_access_bits : int, default 64
        Width of one DRAM access, for the energy table.
    weight_rf_entries : int, default 1024
        Entries of each accumulation unit's weight register file, one weight each (all N
        ShiftCNN indices of a weight, a MAC weight, a log code). A unit keeps its filter slice there
        across the output positions it computes when the slice fits; 0 means no register
        file (every weight streams from the weight buffer).
    dataflow : {"os", "ws", "auto"}, default "auto"
        Output-stationary (the largest weight tiles, weights broadcast from the weight
        buffer every chunk), weight-stationary (each unit keeps one output channel's
        weights in its register file across the positions it computes), or whichever of
        the two costs less energy (the report says which).

    Examples
    --------
    >>> hw = Hardware.edge()
    >>> hw.acc_units, hw.tree_width
    (16, 8)
    >>> Hardware.paper().replace(acc_units=32).acc_units
    32
    """

    shift_width: int
    acc_units: int
    tree_width: int
    input_buffer_bytes: int
    shift_buffer_bytes: int
    weight_buffer_bytes: int
    output_buffer_bytes: int
    dram_bytes_per_cycle: int
    clock_hz: float
    pipelined: bool = True
    sram_access_bits: int = 64
    dram_access_bits: int = 64
    weight_rf_entries: int = 1024
    dataflow: str = "auto"

    def __post_init__(self) -> None:
        for name in ("shift_width", "acc_units", "tree_width", "dram_bytes_per_cycle"):
            check_int(name, getattr(self, name), 1, INT_LIMIT)
        for name in (
            "input_buffer_bytes",
            "shift_buffer_bytes",
            "weight_buffer_bytes",
            "output_buffer_bytes",
        ):
            check_int(name, getattr(self, name), 0, INT_LIMIT)
        for name in ("sram_access_bits", "dram_access_bits"):
            check_int(name, getattr(self, name), 1, 1 << 16)
        check_int("weight_rf_entries", self.weight_rf_entries, 0, 1 << 20)
        if not isinstance(self.dataflow, str) or self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow must be one of {DATAFLOWS}, got {self.dataflow!r}")
        clock = self.clock_hz
        if isinstance(clock, bool) or not isinstance(clock, (int, float, np.number)):
            raise TypeError(f"clock_hz must be a number, got {clock!r}")
        if not math.isfinite(clock) or clock <= 0:
            raise ValueError(f"clock_hz must be finite and > 0, got {clock!r}")
        if not isinstance(self.pipelined, (bool, np.bool_)):
            raise TypeError(f"pipelined must be a bool, got {self.pipelined!r}")

    def replace(self, **changes: object) -> Hardware:
        """A copy with some fields changed (validated again)."""
        from dataclasses import replace

        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def paper(cls) -> Hardware:
        """The paper's FPGA design, as far as its text pins it down.

        ShiftCNN (Gudovskiy & Rigazio, 2017, Fig. 2-3, Algorithm 2) describes a shift unit
        feeding a buffer of P-1 precomputed values per input, an array of adders selecting
        among them by weight index, and 8-bit activations, without giving every size.
        Assumed here: 64 accumulation units with 16-input adder trees (1,024 selectors),
        a 32-input shift unit, a 128-bit DRAM port, 200 MHz, and on-chip memory of the size
        of a mid-range FPGA's block RAM (128 KiB input, 512 KiB shift buffer, 1 MiB
        weights, 32 KiB output), 4608-entry weight register files per unit
        (a 3x3 filter of 512 channels).
        """
        kib = 1024
        return cls(
            shift_width=32,
            acc_units=64,
            tree_width=16,
            input_buffer_bytes=128 * kib,
            shift_buffer_bytes=512 * kib,
            weight_buffer_bytes=1024 * kib,
            output_buffer_bytes=32 * kib,
            dram_bytes_per_cycle=16,
            clock_hz=200e6,
            weight_rf_entries=4608,
        )

    @classmethod
    def tiny(cls) -> Hardware:
        """A microcontroller-class accelerator: 8-16 KiB per buffer.

        4 accumulation units with 4-input trees (16 selectors), a 4-input shift unit, a
        32-bit DRAM port at 50 MHz, 8 KiB input, 16 KiB shift, 16 KiB weight and 4 KiB
        output buffers, 288-entry weight register files. Every packaged topology maps onto
        it: layers that do not fit are cut into output-channel and input-channel tiles.
        """
        kib = 1024
        return cls(
            shift_width=4,
            acc_units=4,
            tree_width=4,
            input_buffer_bytes=8 * kib,
            shift_buffer_bytes=16 * kib,
            weight_buffer_bytes=16 * kib,
            output_buffer_bytes=4 * kib,
            dram_bytes_per_cycle=4,
            clock_hz=50e6,
            weight_rf_entries=288,
        )

    @classmethod
    def edge(cls) -> Hardware:
        """A small edge-FPGA-like machine (about the block RAM of a Zynq-7020).

        16 accumulation units with 8-input trees (128 selectors), an 8-input shift unit,
        a 64-bit DRAM port at 100 MHz, 32 KiB input, 128 KiB shift, 160 KiB weight and
        8 KiB output buffers, 1152-entry weight register files; layers that do not fit are
        tiled (:mod:`shiftsim.cycle`).
        """
        kib = 1024
        return cls(
            shift_width=8,
            acc_units=16,
            tree_width=8,
            input_buffer_bytes=32 * kib,
            shift_buffer_bytes=128 * kib,
            weight_buffer_bytes=160 * kib,
            output_buffer_bytes=8 * kib,
            dram_bytes_per_cycle=8,
            clock_hz=100e6,
            weight_rf_entries=1152,
        )
