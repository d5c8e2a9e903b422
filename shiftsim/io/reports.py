"""Reports: per-layer tables (pandas, CSV, JSON), SCALE-Sim-style CSVs, Accelergy action counts.

Every table carries the name of the energy table its ``energy_*`` columns come from.
pandas is needed (the ``reports`` extra).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from shiftsim.counts import Counts
from shiftsim.energy import COMPONENTS, EnergyTable, energy_breakdown
from shiftsim.hardware import Hardware

__all__ = [
    "accelergy_action_counts",
    "layer_table",
    "read_table",
    "scalesim_reports",
    "write_accelergy_yaml",
    "write_scalesim_reports",
    "write_table",
]

COUNT_COLUMNS = tuple(f.name for f in fields(Counts))
#: Columns :func:`layer_table` adds from :func:`shiftsim.cost.mapping` reports.
MAPPING_COLUMNS = ("dataflow", "tile_co", "tile_c", "weights", "compulsory_dram_bytes",
                   "dram_ratio", "ideal_cycles", "weight_reuse", "input_reuse")  # fmt: skip


_REPORT_COLUMNS = (
    "cycles compute_cycles stall_cycles selects multiplies adds input_buffer_read_bits "
    "shift_buffer_read_bits weight_buffer_read_bits output_buffer_write_bits "
    "input_buffer_write_bits weight_buffer_write_bits dram_write_bytes"
).split()

Results = Mapping[str, Counts] | Iterable[tuple[str, Counts]]


def _need(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    """Raise ``TypeError`` naming the parameter unless ``value`` is of ``kind``."""
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{name} must be a {names}, got {type(value).__name__}")


def _need_frame(name: str, df: Any, columns: Iterable[str] = ()) -> None:
    import pandas as pd

    _need(name, df, pd.DataFrame)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing} (a layer_table() frame has them)")


def _pairs(results: Results) -> list[tuple[str, Counts]]:
    if isinstance(results, (str, bytes)) or not isinstance(results, (Mapping, Iterable)):
        raise TypeError(
            f"results must be a mapping or an iterable of (name, Counts), got "
            f"{type(results).__name__}"
        )
    items = list(results.items()) if isinstance(results, Mapping) else list(results)
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"results must hold (name, Counts) pairs, got {item!r}")
    for name, counts in items:
        if not isinstance(counts, Counts):
            raise TypeError(f"results[{name!r}] must be a Counts, got {type(counts).__name__}")
    return [(str(name), counts) for name, counts in items]


def _work(c: Counts) -> int:
    """Lane-operations of a layer: selections (shift), else multiplies, else adds."""
    return c.selects or c.multiplies or c.adds


def layer_table(
    results: Results,
    *,
    datapath: Any,
    hardware: Hardware,
    energy_table: EnergyTable | None = None,
    mappings: dict[str, dict[str, Any]] | None = None,
) -> Any:
    """One row per layer: every count, time, power, utilization and the energy breakdown.

    Parameters
    ----------
    results : mapping or iterable of (name, Counts)
        Per-layer counts from :func:`shiftsim.estimate` or the cycle model.
    datapath : Datapath
        The datapath the counts belong to (its widths price the events).
    hardware : Hardware
        The machine (clock, lanes, buffer sizes).
    energy_table : EnergyTable, optional
        Energy per event (the default 45 nm table when None).
    mappings : dict of str to dict, optional
        Per layer name, :func:`shiftsim.cost.mapping`'s report: adds the columns
        :data:`MAPPING_COLUMNS` (dataflow chosen, tiles, DRAM traffic over compulsory, reuse
        factors).

    Returns
    -------
    pandas.DataFrame
        Columns ``layer``, the :class:`~shiftsim.counts.Counts` fields, ``time_s``,
        ``power_w``, ``utilization``, ``energy_<component>_pj`` and ``energy_table``.
        ``energy_pj`` is recomputed from the table.
    """
    import pandas as pd

    _need("hardware", hardware, Hardware)
    if energy_table is not None:
        _need("energy_table", energy_table, EnergyTable)
    pairs = _pairs(results)
    table = EnergyTable.default() if energy_table is None else energy_table
    lanes = hardware.acc_units * hardware.tree_width
    rows = []
    for name, c in pairs:
        parts = energy_breakdown(c, datapath, hardware, table)
        row: dict[str, Any] = {"layer": name, **c.to_dict()}
        row["energy_pj"] = float(sum(parts.values()))
        row["time_s"] = c.cycles / hardware.clock_hz
        row["power_w"] = row["energy_pj"] * 1e-12 / row["time_s"] if c.cycles else 0.0
        row["utilization"] = _work(c) / (c.cycles * lanes) if c.cycles else 0.0
        row.update({f"energy_{k}_pj": v for k, v in parts.items()})
        row["energy_table"] = table.name
        if mappings is not None:
            row.update({k: mappings[name][k] for k in MAPPING_COLUMNS})
        rows.append(row)
    columns = ["layer", *COUNT_COLUMNS, "time_s", "power_w", "utilization"]
    columns += [f"energy_{k}_pj" for k in COMPONENTS] + ["energy_table"]
    if mappings is not None:
        columns += list(MAPPING_COLUMNS)
    return pd.DataFrame(rows, columns=columns)


def write_table(df: Any, path: str | Path) -> Path:
    """Write a layer table as CSV (``.csv``) or JSON records (``.json``)."""
    _need_frame("df", df)
    _need("path", path, (str, Path))
    path = Path(path)
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".json":
        path.write_text(json.dumps(df.to_dict(orient="records"), indent=1))
    else:
        raise ValueError(f"path must end in .csv or .json, got {str(path)!r}")
    return path


def read_table(path: str | Path) -> Any:
    """Read a table written by :func:`write_table` (integer columns stay int64)."""
    import pandas as pd

    _need("path", path, (str, Path))
    path = Path(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text()))
    raise ValueError(f"path must end in .csv or .json, got {str(path)!r}")


def scalesim_reports(df: Any, hardware: Hardware) -> dict[str, Any]:
    """SCALE-Sim's COMPUTE_REPORT, BANDWIDTH_REPORT and DETAILED_ACCESS_REPORT, from a table.

    Column names follow SCALE-Sim v2. Differences: accesses and bandwidths are in *bytes*
    (bytes per cycle), not words; IFMAP SRAM is the input and shift buffers together; the
    start/stop cycles span the whole layer (0 and ``cycles``), as tiles interleave.

    Returns
    -------
    dict of str to pandas.DataFrame
        Keys ``"COMPUTE_REPORT"``, ``"BANDWIDTH_REPORT"``, ``"DETAILED_ACCESS_REPORT"``.
    """
    import pandas as pd

    _need_frame("df", df, _REPORT_COLUMNS)
    _need("hardware", hardware, Hardware)
    lanes = hardware.acc_units * hardware.tree_width
    compute, bandwidth, detail = [], [], []
    for lid, r in enumerate(df.to_dict(orient="records")):
        cyc = max(int(r["cycles"]), 1)
        comp = max(int(r["compute_cycles"]), 1)
        work = int(r["selects"]) or int(r["multiplies"]) or int(r["adds"])
        ifmap_sram = (r["input_buffer_read_bits"] + r["shift_buffer_read_bits"]) / 8
        filt_sram = r["weight_buffer_read_bits"] / 8
        ofmap_sram = r["output_buffer_write_bits"] / 8
        ifmap_dram = r["input_buffer_write_bits"] / 8
        filt_dram = r["weight_buffer_write_bits"] / 8
        ofmap_dram = float(r["dram_write_bytes"])
        compute.append({
            "LayerID": lid,
            "Total Cycles": int(r["cycles"]),
            "Stall Cycles": int(r["stall_cycles"]),
            "Overall Util %": 100.0 * work / (cyc * lanes),
            "Mapping Efficiency %": 100.0 * work / (comp * lanes),
            "Compute Util %": 100.0 * work / (comp * lanes),
        })  # fmt: skip
        bandwidth.append({
            "LayerID": lid,
            "Avg IFMAP SRAM BW": ifmap_sram / cyc,
            "Avg FILTER SRAM BW": filt_sram / cyc,
            "Avg OFMAP SRAM BW": ofmap_sram / cyc,
            "Avg IFMAP DRAM BW": ifmap_dram / cyc,
            "Avg FILTER DRAM BW": filt_dram / cyc,
            "Avg OFMAP DRAM BW": ofmap_dram / cyc,
        })  # fmt: skip
        row: dict[str, Any] = {"LayerID": lid}
        for level, values in (
            ("SRAM", (("IFMAP", "Reads", ifmap_sram), ("Filter", "Reads", filt_sram),
                      ("OFMAP", "Writes", ofmap_sram))),
            ("DRAM", (("IFMAP", "Reads", ifmap_dram), ("Filter", "Reads", filt_dram),
                      ("OFMAP", "Writes", ofmap_dram))),
        ):  # fmt: skip
            for stream, verb, amount in values:
                row[f"{level} {stream} Start Cycle"] = 0
                row[f"{level} {stream} Stop Cycle"] = int(r["cycles"])
                row[f"{level} {stream} {verb}"] = amount
        detail.append(row)
    return {
        "COMPUTE_REPORT": pd.DataFrame(compute),
        "BANDWIDTH_REPORT": pd.DataFrame(bandwidth),
        "DETAILED_ACCESS_REPORT": pd.DataFrame(detail),
    }


def write_scalesim_reports(df: Any, hardware: Hardware, directory: str | Path) -> list[Path]:
    """Write :func:`scalesim_reports` as ``<directory>/<NAME>.csv``; return the paths."""
    _need("directory", directory, (str, Path))
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, report in scalesim_reports(df, hardware).items():
        path = out / f"{name}.csv"
        report.to_csv(path, index=False)
        paths.append(path)
    return paths


def accelergy_action_counts(
    counts: Counts, hardware: Hardware, prefix: str = "system.shiftsim"
) -> dict[str, Any]:
    """Action counts in Accelergy's format, to price with your own energy tables.

    Buffers count accesses of ``sram_access_bits`` (DRAM of ``dram_access_bits``), rounded
    up; arithmetic components count their events.

    Returns
    -------
    dict
        ``{"action_counts": {"version": 0.4, "local": [{"name": ..., "action_counts":
        [{"name": action, "counts": n}, ...]}, ...]}}``.
    """
    _need("counts", counts, Counts)
    _need("hardware", hardware, Hardware)
    _need("prefix", prefix, str)
    c = counts

    def acc(bits: int, width: int) -> int:
        return -(-int(bits) // width)

    sw, dw = hardware.sram_access_bits, hardware.dram_access_bits
    components = {
        "input_buffer": {
            "read": acc(c.input_buffer_read_bits, sw),
            "write": acc(c.input_buffer_write_bits, sw),
        },
        "shift_buffer": {
            "read": acc(c.shift_buffer_read_bits, sw),
            "write": acc(c.shift_buffer_write_bits, sw),
        },
        "weight_buffer": {
            "read": acc(c.weight_buffer_read_bits, sw),
            "write": acc(c.weight_buffer_write_bits, sw),
        },
        "output_buffer": {
            "read": acc(c.output_buffer_read_bits, sw),
            "write": acc(c.output_buffer_write_bits, sw),
        },
        "dram": {"read": acc(8 * c.dram_read_bytes, dw), "write": acc(8 * c.dram_write_bytes, dw)},
        # register files and partial sums: counted in bits (their access width is the
        # datapath's; EnergyTable.to_ert prices one access)
        "weight_rf": {"read_bits": c.weight_rf_read_bits, "write_bits": c.weight_rf_write_bits},
        "psum_rf": {"read_bits": c.psum_read_bits, "write_bits": c.psum_write_bits},
        "shift_unit": {"shift": c.shift_unit_inputs, "input": c.shift_unit_inputs},
        "selector": {"select": c.selects - c.zero_selects, "select_zero": c.zero_selects},
        "adder": {"add": c.adds},
        "multiplier": {"multiply": c.multiplies},
        "log_unit": {
            "exponent_add": c.exponent_adds,
            "compare": c.compares,
            "shift": c.shift_ops if c.exponent_adds else 0,
            "log_to_linear": c.log_to_linear,
        },
        "accumulator": {"update": c.acc_updates},
    }
    local = [
        {
            "name": f"{prefix}.{name}",
            "action_counts": [{"name": a, "counts": int(n)} for a, n in actions.items() if n],
        }
        for name, actions in components.items()
        if any(actions.values())
    ]
    return {"action_counts": {"version": 0.4, "local": local}}


def write_accelergy_yaml(action_counts: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`accelergy_action_counts` as Accelergy's ``action_counts.yaml``."""
    _need("action_counts", action_counts, dict)
    _need("path", path, (str, Path))
    ac = action_counts.get("action_counts")
    if not isinstance(ac, dict) or "version" not in ac or not isinstance(ac.get("local"), list):
        raise ValueError(
            "action_counts must be what accelergy_action_counts() returns: "
            "{'action_counts': {'version': ..., 'local': [...]}}"
        )
    lines = ["action_counts:", f"  version: {ac['version']}", "  local:"]
    for comp in ac["local"]:
        lines.append(f"  - name: {comp['name']}")
        lines.append("    action_counts:")
        for action in comp["action_counts"]:
            lines.append(f"    - name: {action['name']}")
            lines.append(f"      counts: {action['counts']}")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path
