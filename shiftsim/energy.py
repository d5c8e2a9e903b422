"""Energy from event counts: a replaceable per-event table (SPEC §7).

The default table (``shiftsim/data/energy_45nm.toml``) holds the 45 nm figures of Horowitz
(ISSCC 2014): int add 8-bit 0.03 pJ, 32-bit 0.1 pJ; int multiply 8-bit 0.2 pJ, 32-bit 3.1 pJ;
SRAM 64-bit access 10 / 20 / 100 pJ for 8 KB / 32 KB / 1 MB; DRAM 64-bit access 1.3-2.6 nJ
(1.95 nJ used). Adders scale linearly with their width; shifters and negations cost an adder
of the same width; multipliers follow the power law through their two points; an SRAM buffer
costs its size class (the smallest class that holds it, the largest class beyond it).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from shiftsim.counts import Counts
from shiftsim.cycle.schedule import KIND_LOG, KIND_SHIFT, datapath_params
from shiftsim.hardware import Hardware

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["COMPONENTS", "EnergyTable", "energy_breakdown", "energy_pj"]

#: Keys of :func:`energy_breakdown`, in report order.
COMPONENTS = (
    "add",
    "multiply",
    "shift",
    "negate",
    "select",
    "log_ops",
    "input_buffer",
    "shift_buffer",
    "weight_buffer",
    "output_buffer",
    "dram",
)


def _points(name: str, xs: Any, ys: Any) -> tuple[tuple[float, float], ...]:
    pts = tuple(sorted((float(x), float(y)) for x, y in zip(xs, ys, strict=True)))
    if not pts or any(x <= 0 or y < 0 or not math.isfinite(x + y) for x, y in pts):
        raise ValueError(f"{name} must hold positive sizes and non-negative energies, got {pts}")
    if len({x for x, _ in pts}) != len(pts):
        raise ValueError(f"{name} repeats a size: {pts}")
    return pts


@dataclass(frozen=True)
class EnergyTable:
    """Energy per event, in pJ.

    Parameters
    ----------
    name : str
        Named in every report.
    add : tuple of (bits, pJ)
        Integer adds; linear in the width between (and beyond) the points.
    multiply : tuple of (bits, pJ)
        Integer multiplies; power law between (and beyond) the points.
    sram : tuple of (bytes, pJ)
        One SRAM access of ``sram_access_bits`` by capacity class.
    dram_pj : float
        One DRAM access of ``dram_access_bits``.
    select_pj : float
        One multiplexer selection.
    sram_access_bits, dram_access_bits : int
        Access widths the figures are given for.

    Examples
    --------
    >>> t = EnergyTable.default()
    >>> round(t.add_pj(8), 4), round(t.add_pj(32), 4), t.sram_pj(16 * 1024)
    (0.03, 0.1, 20.0)
    """

    name: str
    add: tuple[tuple[float, float], ...]
    multiply: tuple[tuple[float, float], ...]
    sram: tuple[tuple[float, float], ...]
    dram_pj: float
    select_pj: float = 0.0
    sram_access_bits: int = 64
    dram_access_bits: int = 64

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnergyTable:
        """Build a table from a dict laid out like the TOML file.

        Raises
        ------
        ValueError
            If a section or key is missing or a value is out of range.
        """
        try:
            table = cls(
                name=str(data["name"]),
                add=_points("add", data["add"]["bits"], data["add"]["pj"]),
                multiply=_points("multiply", data["multiply"]["bits"], data["multiply"]["pj"]),
                sram=_points("sram", data["sram"]["bytes"], data["sram"]["pj"]),
                dram_pj=float(data["dram"]["pj"]),
                select_pj=float(data.get("select", {}).get("pj", 0.0)),
                sram_access_bits=int(data["sram"].get("access_bits", 64)),
                dram_access_bits=int(data["dram"].get("access_bits", 64)),
            )
        except KeyError as err:
            raise ValueError(f"energy table misses the key {err.args[0]!r}") from None
        if table.dram_pj < 0 or table.select_pj < 0:
            raise ValueError(f"energies must be >= 0, got dram {table.dram_pj}")
        if table.sram_access_bits < 1 or table.dram_access_bits < 1:
            raise ValueError("access_bits must be >= 1")
        return table

    @classmethod
    def from_toml(cls, path: str | Path) -> EnergyTable:
        """Read a table from a TOML file (see ``shiftsim/data/energy_45nm.toml``)."""
        with open(path, "rb") as fh:
            return cls.from_dict(tomllib.load(fh))

    @classmethod
    def default(cls) -> EnergyTable:
        """The 45 nm table of Horowitz (ISSCC 2014)."""
        return _default_table()

    def add_pj(self, bits: int) -> float:
        """One add of ``bits``: linear through the table's points (extrapolated, >= 0)."""
        pts = self.add
        if len(pts) == 1:
            return pts[0][1] * bits / pts[0][0]
        (x0, y0), (x1, y1) = (pts[0], pts[1]) if bits <= pts[0][0] else pts[-2:]
        for a, b in itertools.pairwise(pts):
            if a[0] <= bits <= b[0]:
                (x0, y0), (x1, y1) = a, b
        return max(0.0, y0 + (bits - x0) * (y1 - y0) / (x1 - x0))

    def multiply_pj(self, bits: int) -> float:
        """One multiply of ``bits`` x ``bits``: power law through the table's points."""
        pts = self.multiply
        if len(pts) == 1 or bits <= 0:
            return pts[0][1] * (bits / pts[0][0]) ** 2
        (x0, y0), (x1, y1) = (pts[0], pts[1]) if bits <= pts[0][0] else pts[-2:]
        for a, b in itertools.pairwise(pts):
            if a[0] <= bits <= b[0]:
                (x0, y0), (x1, y1) = a, b
        if y0 == 0 or y1 == 0:
            return y0 + (bits - x0) * (y1 - y0) / (x1 - x0)
        slope = math.log(y1 / y0) / math.log(x1 / x0)
        return y0 * (bits / x0) ** slope

    def sram_pj(self, capacity_bytes: int) -> float:
        """One access to a buffer of ``capacity_bytes``: its size class."""
        for size, pj in self.sram:
            if capacity_bytes <= size:
                return pj
        return self.sram[-1][1]


@functools.cache
def _default_table() -> EnergyTable:
    text = resources.files("shiftsim.data").joinpath("energy_45nm.toml").read_text()
    return EnergyTable.from_dict(tomllib.loads(text))


def energy_breakdown(
    counts: Counts, datapath: Any, hardware: Hardware, table: EnergyTable | None = None
) -> dict[str, float]:
    """Energy of each component, in pJ (keys: :data:`COMPONENTS`).

    Adds are accumulator-wide (``acc_bits``); the shift unit's shifts and negations are
    adders of the shift-buffer word width; the log datapath's exponent adds, compares,
    shifts and log-to-linear conversions are accumulator-wide adds (``log_ops``); buffer
    traffic is ``bits / access_bits`` accesses of its size class; DRAM the same per access.
    """
    t = EnergyTable.default() if table is None else table
    p = datapath_params(datapath)
    add = t.add_pj(p.acc_bits)
    word = t.add_pj(p.word_bits) if p.kind == KIND_SHIFT else 0.0

    def sram(read_bits: int, write_bits: int, capacity: int) -> float:
        return (read_bits + write_bits) / t.sram_access_bits * t.sram_pj(capacity)

    log_ops = 0
    if p.kind == KIND_LOG:
        log_ops = counts.exponent_adds + counts.compares + counts.shift_ops + counts.log_to_linear
    hw = hardware
    return {
        "add": counts.adds * add,
        "multiply": counts.multiplies * t.multiply_pj(p.mult_bits) if p.mult_bits else 0.0,
        "shift": counts.shift_unit_inputs * p.max_shift * word,
        "negate": counts.shift_unit_inputs * (p.max_shift + 1) * word,
        "select": counts.selects * t.select_pj,
        "log_ops": log_ops * add,
        "input_buffer": sram(
            counts.input_buffer_read_bits, counts.input_buffer_write_bits, hw.input_buffer_bytes
        ),
        "shift_buffer": sram(
            counts.shift_buffer_read_bits, counts.shift_buffer_write_bits, hw.shift_buffer_bytes
        ),
        "weight_buffer": sram(
            counts.weight_buffer_read_bits,
            counts.weight_buffer_write_bits,
            hw.weight_buffer_bytes,
        ),
        "output_buffer": sram(
            counts.output_buffer_read_bits,
            counts.output_buffer_write_bits,
            hw.output_buffer_bytes,
        ),
        "dram": (counts.dram_read_bytes + counts.dram_write_bytes)
        * 8
        / t.dram_access_bits
        * t.dram_pj,
    }


def energy_pj(
    counts: Counts, datapath: Any, hardware: Hardware, table: EnergyTable | None = None
) -> float:
    """Total energy in pJ: the sum of :func:`energy_breakdown`."""
    return float(sum(energy_breakdown(counts, datapath, hardware, table).values()))
