"""Energy from event counts: a replaceable per-event table (SPEC §7).

The default table (``shiftsim/data/energy_45nm.toml``) holds the 45 nm figures of Horowitz
(ISSCC 2014): int add 8-bit 0.03 pJ, 32-bit 0.1 pJ (linear in the width); int multiply 8-bit
0.2 pJ, 32-bit 3.1 pJ (power law); DRAM 1.95 nJ per 64-bit access. Every storage level -- the
global buffers and the units' register files alike -- follows one continuous law of its
capacity ``C`` and access width ``w``::

    E(C, w) = max(floor_pj, pj * (C / ref_bytes) ** exponent) * (fixed + (1 - fixed) * w / ref_bits)

by default ``10 pJ * sqrt(C / 8 KiB)`` per 64-bit access (8 KB 10 pJ, 32 KB 20 pJ, 1 MB 113 pJ),
a quarter of it fixed per access (so wider accesses cost less per bit, which is what
``Hardware.sram_access_bits`` changes). A buffer's traffic of ``b`` bits is
``b / sram_access_bits`` accesses; a register file is accessed one entry at a time. The
selectors (per selected bit) and the multicast wires (per bit and unit served) are entries
of their own; the log datapath's constant multiplies (sqrt(2) split mode) are priced as
multiplies of their width.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from shiftsim.counts import Counts
from shiftsim.datapath.hardware_desc import KIND_LOG, KIND_SHIFT, HardwareDesc, describe
from shiftsim.hardware import Hardware

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["COMPONENTS", "STORAGE", "EnergyTable", "energy_breakdown", "energy_pj"]

#: Keys of :func:`energy_breakdown`, in report order.
COMPONENTS = (
    "add",
    "multiply",
    "shift",
    "negate",
    "select",
    "multicast",
    "log_ops",
    "weight_rf",
    "psum_rf",
    "input_buffer",
    "shift_buffer",
    "weight_buffer",
    "output_buffer",
    "dram",
)

#: The storage components, innermost first.
STORAGE = (
    "weight_rf",
    "psum_rf",
    "input_buffer",
    "shift_buffer",
    "weight_buffer",
    "output_buffer",
    "dram",
)


def _energy(name: str, value: Any) -> float:
    """A finite, non-negative energy (bools and non-numbers refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of pJ, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0 pJ, got {value!r}")
    return v


def _width(name: str, value: Any) -> int:
    """A positive integer width (floats such as 64.5, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 1 <= value <= 1 << 20:
        raise ValueError(f"{name} must be in [1, {1 << 20}], got {value!r}")
    return value


def _points(name: str, xs: Any, ys: Any) -> tuple[tuple[float, float], ...]:
    try:
        pairs = list(zip(xs, ys, strict=True))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold two equal-length lists, got {xs!r}, {ys!r}") from None
    pts = tuple(
        sorted((float(_width(f"{name}.bits", x)), _energy(f"{name}.pj", y)) for x, y in pairs)
    )
    if not pts:
        raise ValueError(f"{name} must hold at least one point")
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
    storage_pj : float
        One access of ``storage_ref_bits`` to a memory of ``storage_ref_bytes``.
    storage_ref_bytes, storage_ref_bits : int
        The reference capacity and access width.
    storage_exponent : float
        Energy grows as ``capacity ** storage_exponent``.
    storage_floor_pj : float
        The least a ``storage_ref_bits`` access costs (the smallest register files).
    storage_fixed : float
        Fraction of an access's energy that does not scale with its width, in [0, 1].
    dram_pj : float
        One DRAM access of ``dram_access_bits``.
    dram_access_bits : int
        Width of a DRAM access the figure is given for.
    select_pj_per_bit : float
        One selection, per bit of the selected word.
    multicast_pj_per_bit : float
        Moving one bit to one unit over the multicast wires.

    Examples
    --------
    >>> t = EnergyTable.default()
    >>> round(t.add_pj(8), 4), round(t.add_pj(32), 4), round(t.storage_access_pj(32768, 64), 3)
    (0.03, 0.1, 20.0)
    """

    name: str
    add: tuple[tuple[float, float], ...]
    multiply: tuple[tuple[float, float], ...]
    storage_pj: float = 10.0
    storage_ref_bytes: int = 8192
    storage_ref_bits: int = 64
    storage_exponent: float = 0.5
    storage_floor_pj: float = 0.1
    storage_fixed: float = 0.25
    dram_pj: float = 1950.0
    dram_access_bits: int = 64
    select_pj_per_bit: float = 0.0
    multicast_pj_per_bit: float = 0.0

    def __post_init__(self) -> None:
        for name in ("storage_pj", "storage_floor_pj", "dram_pj", "select_pj_per_bit",
                     "multicast_pj_per_bit", "storage_exponent"):  # fmt: skip
            _energy(name, getattr(self, name))
        for name in ("storage_ref_bytes", "storage_ref_bits", "dram_access_bits"):
            _width(name, getattr(self, name))
        if not 0.0 <= self.storage_fixed <= 1.0:
            raise ValueError(f"storage_fixed must be in [0, 1], got {self.storage_fixed!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnergyTable:
        """Build a table from a dict laid out like the TOML file.

        Raises
        ------
        ValueError
            If a section or key is missing, an energy is negative, NaN or infinite, or a
            width is not a positive integer; naming the key and the value.
        """
        try:
            st = data["storage"]
            table = cls(
                name=str(data["name"]),
                add=_points("add", data["add"]["bits"], data["add"]["pj"]),
                multiply=_points("multiply", data["multiply"]["bits"], data["multiply"]["pj"]),
                storage_pj=_energy("storage.pj", st["pj"]),
                storage_ref_bytes=_width("storage.ref_bytes", st.get("ref_bytes", 8192)),
                storage_ref_bits=_width("storage.ref_bits", st.get("ref_bits", 64)),
                storage_exponent=_energy("storage.exponent", st.get("exponent", 0.5)),
                storage_floor_pj=_energy("storage.floor_pj", st.get("floor_pj", 0.0)),
                storage_fixed=_energy("storage.fixed", st.get("fixed", 0.0)),
                dram_pj=_energy("dram.pj", data["dram"]["pj"]),
                dram_access_bits=_width("dram.access_bits", data["dram"].get("access_bits", 64)),
                select_pj_per_bit=_energy(
                    "select.pj_per_bit", data.get("select", {}).get("pj_per_bit", 0.0)
                ),
                multicast_pj_per_bit=_energy(
                    "multicast.pj_per_bit", data.get("multicast", {}).get("pj_per_bit", 0.0)
                ),
            )
        except KeyError as err:
            raise ValueError(f"energy table misses the key {err.args[0]!r}") from None
        except TypeError as err:
            raise ValueError(str(err)) from None
        return table

    def to_dict(self) -> dict[str, Any]:
        """The table laid out like the TOML file (``from_dict(to_dict())`` is the table)."""
        return {
            "name": self.name,
            "add": {"bits": [int(b) for b, _ in self.add], "pj": [p for _, p in self.add]},
            "multiply": {
                "bits": [int(b) for b, _ in self.multiply],
                "pj": [p for _, p in self.multiply],
            },
            "storage": {
                "ref_bytes": self.storage_ref_bytes,
                "ref_bits": self.storage_ref_bits,
                "pj": self.storage_pj,
                "exponent": self.storage_exponent,
                "floor_pj": self.storage_floor_pj,
                "fixed": self.storage_fixed,
            },
            "dram": {"access_bits": self.dram_access_bits, "pj": self.dram_pj},
            "select": {"pj_per_bit": self.select_pj_per_bit},
            "multicast": {"pj_per_bit": self.multicast_pj_per_bit},
        }

    @classmethod
    def from_toml(cls, path: str | Path) -> EnergyTable:
        """Read a table from a TOML file (see ``shiftsim/data/energy_45nm.toml``)."""
        with open(path, "rb") as fh:
            return cls.from_dict(tomllib.load(fh))

    @classmethod
    def default(cls) -> EnergyTable:
        """The 45 nm table of Horowitz (ISSCC 2014) with the sqrt-capacity storage law."""
        return _default_table()

    def replace(self, **changes: Any) -> EnergyTable:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

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

    def storage_access_pj(self, capacity_bytes: float, bits: int) -> float:
        """One access of ``bits`` to a memory of ``capacity_bytes`` (continuous in both)."""
        ref = self.storage_pj * (max(capacity_bytes, 0) / self.storage_ref_bytes) ** (
            self.storage_exponent
        )
        ref = max(self.storage_floor_pj, ref)
        return ref * (self.storage_fixed + (1 - self.storage_fixed) * bits / self.storage_ref_bits)

    def storage_pj_per_bit(self, capacity_bytes: float, access_bits: int) -> float:
        """Energy per bit moved in accesses of ``access_bits``."""
        return self.storage_access_pj(capacity_bytes, access_bits) / access_bits

    def dram_pj_per_byte(self) -> float:
        """Energy per DRAM byte."""
        return self.dram_pj * 8 / self.dram_access_bits

    def per_event(self, desc: HardwareDesc, hardware: Hardware) -> dict[str, float]:
        """Every per-event energy the breakdown uses, named (pJ; storage per bit).

        The entries a report lists: which number priced what.
        """
        hw = hardware
        p = desc
        sab = hw.sram_access_bits
        word = p.word_bits if p.kind == KIND_SHIFT else p.act_bits
        rf_bytes = hw.weight_rf_entries * p.weight_bits / 8
        # a unit reads the weights of its T selectors in one access (a lane: its own)
        rf_width = p.pass_weight_bits * (1 if p.serial_lanes else hw.tree_width)
        psum_bytes = p.passes * 9 * p.acc_bits / 8  # a 3x3 step's partial sums per unit
        return {
            "add_pj": self.add_pj(p.acc_bits),
            "multiply_pj": self.multiply_pj(p.mult_bits) if p.mult_bits else 0.0,
            "const_multiply_pj": self.multiply_pj(p.const_mult_bits) if p.const_mult_bits else 0.0,
            "shift_pj": self.add_pj(p.word_bits) if p.kind == KIND_SHIFT else 0.0,
            "select_pj": self.select_pj_per_bit * word,
            "multicast_pj_per_bit": self.multicast_pj_per_bit,
            "weight_rf_pj_per_bit": self.storage_pj_per_bit(rf_bytes, rf_width),
            "psum_rf_pj_per_bit": self.storage_pj_per_bit(psum_bytes, p.acc_bits),
            "input_buffer_pj_per_bit": self.storage_pj_per_bit(hw.input_buffer_bytes, sab),
            "shift_buffer_pj_per_bit": self.storage_pj_per_bit(hw.shift_buffer_bytes, sab),
            "weight_buffer_pj_per_bit": self.storage_pj_per_bit(hw.weight_buffer_bytes, sab),
            "output_buffer_pj_per_bit": self.storage_pj_per_bit(hw.output_buffer_bytes, sab),
            "dram_pj_per_byte": self.dram_pj_per_byte(),
        }

    def to_ert(self, datapath: Any, hardware: Hardware) -> dict[str, Any]:
        """Export the table for ``datapath`` on ``hardware`` as an Accelergy ERT.

        An energy reference table: ``{"ERT": {"version": 0.3, "tables": [{"name",
        "actions": [{"name", "arguments", "energy"}]}]}}``, one table per component,
        energies in pJ per action (storage: per access of its width).
        """
        p = describe(datapath)
        hw = hardware
        e = self.per_event(p, hw)
        sab = hw.sram_access_bits
        word = p.word_bits if p.kind == KIND_SHIFT else p.act_bits
        rf_width = p.pass_weight_bits * (1 if p.serial_lanes else hw.tree_width)

        def table(name: str, **actions: float) -> dict[str, Any]:
            acts = [{"name": k, "arguments": None, "energy": float(v)} for k, v in actions.items()]
            return {"name": f"shiftsim.{name}", "actions": acts}

        tables = [
            table("adder", add=e["add_pj"]),
            table("multiplier", multiply=e["multiply_pj"]),
            table("const_multiplier", multiply=e["const_multiply_pj"]),
            table("shifter", shift=e["shift_pj"]),
            table("selector", select=e["select_pj"]),
            table("multicast", transfer=e["multicast_pj_per_bit"] * word),
            table("weight_rf", access=e["weight_rf_pj_per_bit"] * rf_width),
            table("psum_rf", access=e["psum_rf_pj_per_bit"] * p.acc_bits),
        ]
        for buf in ("input_buffer", "shift_buffer", "weight_buffer", "output_buffer"):
            tables.append(table(buf, access=e[f"{buf}_pj_per_bit"] * sab))
        tables.append(table("dram", access=self.dram_pj))
        return {"ERT": {"version": 0.3, "tables": tables}}

    def from_ert(self, ert: dict[str, Any], datapath: Any, hardware: Hardware) -> EnergyTable:
        """A table whose per-event energies for ``datapath`` on ``hardware`` are an ERT's.

        Reads the tables :meth:`to_ert` writes (other names are ignored) and fits this
        table's entries to them: the adder and multiplier scale their points, storage
        levels become fixed per-level overrides.

        Raises
        ------
        ValueError
            If the ERT is malformed or an energy is negative, NaN or infinite.
        """
        try:
            tables = ert["ERT"]["tables"]
            got = {
                str(t["name"]).removeprefix("shiftsim."): {
                    str(a["name"]): _energy(f"{t['name']}.{a['name']}", a["energy"])
                    for a in t["actions"]
                }
                for t in tables
            }
        except (KeyError, TypeError) as err:
            raise ValueError(f"not an ERT: {err}") from None
        return ErtTable.build(self, got, describe(datapath), hardware)


@dataclass(frozen=True)
class ErtTable(EnergyTable):
    """An :class:`EnergyTable` with per-level storage energies fixed by an imported ERT."""

    overrides: tuple[tuple[str, float], ...] = ()

    @classmethod
    def build(
        cls, base: EnergyTable, got: dict[str, dict[str, float]], p: HardwareDesc, hw: Hardware
    ) -> ErtTable:
        """Fit ``base`` to the ERT actions ``got`` (see :meth:`EnergyTable.from_ert`)."""
        fields = {k: getattr(base, k) for k in base.__dataclass_fields__ if k != "overrides"}
        fields["name"] = f"{base.name} (ERT import)"
        e = base.per_event(p, hw)
        over: dict[str, float] = {}
        if "adder" in got and e["add_pj"] > 0:
            f = got["adder"]["add"] / e["add_pj"]
            fields["add"] = tuple((b, v * f) for b, v in base.add)
        if "multiplier" in got and e["multiply_pj"] > 0:
            f = got["multiplier"]["multiply"] / e["multiply_pj"]
            fields["multiply"] = tuple((b, v * f) for b, v in base.multiply)
        word = p.word_bits if p.kind == KIND_SHIFT else p.act_bits
        if "selector" in got:
            fields["select_pj_per_bit"] = got["selector"]["select"] / word
        if "multicast" in got:
            fields["multicast_pj_per_bit"] = got["multicast"]["transfer"] / word
        if "dram" in got:
            fields["dram_pj"] = got["dram"]["access"]
        rf_width = p.pass_weight_bits * (1 if p.serial_lanes else hw.tree_width)
        widths = {"weight_rf": rf_width, "psum_rf": p.acc_bits}
        for level in ("weight_rf", "psum_rf", "input_buffer", "shift_buffer", "weight_buffer",
                      "output_buffer"):  # fmt: skip
            if level in got:
                bits = widths.get(level, hw.sram_access_bits)
                over[f"{level}_pj_per_bit"] = got[level]["access"] / bits
        return cls(**fields, overrides=tuple(sorted(over.items())))

    def per_event(self, desc: HardwareDesc, hardware: Hardware) -> dict[str, float]:
        """The base table's entries with the ERT's storage levels in place."""
        e = super().per_event(desc, hardware)
        e.update(dict(self.overrides))
        return e


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
    shifts and log-to-linear conversions are accumulator-wide adds (``log_ops``) and its
    constant multiplies (sqrt(2) split mode) multiplies of ``acc_bits``; selections cost
    their word's bits, the multicast wires each bit delivered to a unit (a selected word,
    or an operand); every storage level its bits times :meth:`EnergyTable.per_event`'s
    energy per bit; DRAM per byte. ``datapath`` may be a :class:`HardwareDesc`.
    """
    t = EnergyTable.default() if table is None else table
    p = datapath if isinstance(datapath, HardwareDesc) else describe(datapath)
    e = t.per_event(p, hardware)
    c = counts
    mult = e["multiply_pj"] if p.mult_bits else e["const_multiply_pj"]
    log_ops = 0
    if p.kind == KIND_LOG:
        log_ops = c.exponent_adds + c.compares + c.shift_ops + c.log_to_linear
    if p.kind == KIND_SHIFT:
        delivered = c.selects * p.word_bits
    elif p.kind == KIND_LOG:
        delivered = c.exponent_adds * p.act_bits
    else:
        delivered = c.multiplies * p.act_bits
    return {
        "add": c.adds * e["add_pj"],
        "multiply": c.multiplies * mult,
        "shift": c.shift_unit_inputs * p.max_shift * e["shift_pj"],
        "negate": c.shift_unit_inputs * (p.max_shift + 1) * e["shift_pj"],
        "select": c.selects * e["select_pj"],
        "multicast": delivered * e["multicast_pj_per_bit"],
        "log_ops": log_ops * e["add_pj"],
        "weight_rf": (c.weight_rf_read_bits + c.weight_rf_write_bits) * e["weight_rf_pj_per_bit"],
        "psum_rf": (c.psum_read_bits + c.psum_write_bits) * e["psum_rf_pj_per_bit"],
        "input_buffer": (c.input_buffer_read_bits + c.input_buffer_write_bits)
        * e["input_buffer_pj_per_bit"],
        "shift_buffer": (c.shift_buffer_read_bits + c.shift_buffer_write_bits)
        * e["shift_buffer_pj_per_bit"],
        "weight_buffer": (c.weight_buffer_read_bits + c.weight_buffer_write_bits)
        * e["weight_buffer_pj_per_bit"],
        "output_buffer": (c.output_buffer_read_bits + c.output_buffer_write_bits)
        * e["output_buffer_pj_per_bit"],
        "dram": (c.dram_read_bytes + c.dram_write_bytes) * e["dram_pj_per_byte"],
    }


def energy_pj(
    counts: Counts, datapath: Any, hardware: Hardware, table: EnergyTable | None = None
) -> float:
    """Total energy in pJ: the sum of :func:`energy_breakdown`."""
    return float(sum(energy_breakdown(counts, datapath, hardware, table).values()))
