"""The machine a layer runs on: the ShiftCNN architecture made parametric (SPEC §7).

The schedule that runs on it is documented in :mod:`shiftsim.cycle`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shiftsim.formats import check_int

__all__ = ["Hardware"]


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

    def __post_init__(self) -> None:
        for name in ("shift_width", "acc_units", "tree_width", "dram_bytes_per_cycle"):
            check_int(name, getattr(self, name), 1)
        for name in (
            "input_buffer_bytes",
            "shift_buffer_bytes",
            "weight_buffer_bytes",
            "output_buffer_bytes",
        ):
            check_int(name, getattr(self, name), 0)
        for name in ("sram_access_bits", "dram_access_bits"):
            check_int(name, getattr(self, name), 1)
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
        weights, 32 KiB output).
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
        )

    @classmethod
    def edge(cls) -> Hardware:
        """A small edge-FPGA-like machine (about the block RAM of a Zynq-7020).

        16 accumulation units with 8-input trees (128 selectors), an 8-input shift unit,
        a 64-bit DRAM port at 100 MHz, 32 KiB input, 128 KiB shift, 160 KiB weight and
        8 KiB output buffers: every ResNet-18 convolution fits; the deep layers' weights are
        cut into tiles.
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
        )
