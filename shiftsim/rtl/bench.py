"""cocotb testbench: drive shiftsim's reference RTL from exported vectors and compare exactly.

It reads only the vectors (``manifest.json`` and the hex files), never shiftsim: the format
is self-describing. Environment:

``SHIFTSIM_VECTOR_DIRS``
    vectors directories (``os.pathsep``-separated), all made for the compiled parameters;
``SHIFTSIM_COSIM_SUMMARY``
    a JSON file to write the totals into (rows driven, values compared, mismatches).

Per step row: drive the ``in`` fields, settle, compare the ``comb`` fields, clock, compare the
``reg`` fields; after an output's last step compare its ``final`` fields. The shift-add
``shift_unit`` table drives lane 0 of ``x`` and compares ``xs0``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.triggers import Timer


def _load(vec_dir: Path) -> tuple[dict, dict[str, list[int]]]:
    """The manifest and each field's packed (unsigned) words, one per row."""
    manifest = json.loads((vec_dir / "manifest.json").read_text())
    words = {}
    for fld in manifest["fields"]:
        lines = (vec_dir / fld["file"]).read_text().splitlines()
        words[fld["name"]] = [int(s, 16) for s in lines if s.strip() and not s.startswith("//")]
    return manifest, words


def _read(handle) -> int | None:
    value = handle.value
    try:
        return int(value.to_unsigned() if hasattr(value, "to_unsigned") else value)
    except ValueError:  # X or Z bits
        return None


class _Checker:
    def __init__(self) -> None:
        self.checks = 0
        self.mismatches = 0
        self.first: list[str] = []

    def compare(self, dut, fld: dict, want: int, where: str) -> None:
        got = _read(getattr(dut, fld["port"]))
        self.checks += 1
        if got != want:
            self.mismatches += 1
            if len(self.first) < 20:
                self.first.append(f"{where} {fld['name']}: want {want:#x} got {got}")


async def _settle() -> None:
    await Timer(1, "ns")


@cocotb.test()
async def run_vectors(dut) -> None:
    """Drive every row of every vectors directory; fail on any mismatch."""
    dirs = [Path(d) for d in os.environ["SHIFTSIM_VECTOR_DIRS"].split(os.pathsep) if d]
    chk = _Checker()
    rows = 0
    dut.clk.value = 0
    dut.en.value = 1
    for vec_dir in dirs:
        manifest, words = _load(vec_dir)
        fields = manifest["fields"]
        steps = [f for f in fields if f["table"] == "steps"]
        ins = [f for f in steps if f["role"] == "in" and f["port"]]
        comb = [f for f in steps if f["role"] == "comb"]
        reg = [f for f in steps if f["role"] == "reg"]
        final = [f for f in fields if f["role"] == "final"]
        out_row = 0
        for r in range(manifest["tables"]["steps"]["rows"]):
            for f in ins:
                getattr(dut, f["port"]).value = words[f["name"]][r]
            await _settle()
            for f in comb:
                chk.compare(dut, f, words[f["name"]][r], f"{vec_dir.name} step {r}")
            dut.clk.value = 1
            await _settle()
            for f in reg:
                chk.compare(dut, f, words[f["name"]][r], f"{vec_dir.name} step {r}")
            if words["last"][r]:
                for f in final:
                    chk.compare(dut, f, words[f["name"]][out_row], f"{vec_dir.name} out {out_row}")
                out_row += 1
            dut.clk.value = 0
            await _settle()
            rows += 1
        if out_row != manifest["tables"]["outputs"]["rows"]:
            chk.mismatches += 1
            chk.first.append(f"{vec_dir.name}: {out_row} outputs seen")
        if "shift_unit" in manifest["tables"]:
            xs = next(f for f in fields if f["name"] == "xs")
            for r, word in enumerate(words["sx"]):
                dut.x.value = word  # lane 0; the other lanes 0
                await _settle()
                chk.compare(dut, xs, words["xs"][r], f"{vec_dir.name} shift {r}")
                rows += 1
    summary = {
        "dirs": len(dirs),
        "rows": rows,
        "checks": chk.checks,
        "mismatches": chk.mismatches,
        "first": chk.first,
    }
    Path(os.environ["SHIFTSIM_COSIM_SUMMARY"]).write_text(json.dumps(summary))
    assert chk.mismatches == 0, "\n".join(chk.first)
