"""Co-simulation: run the reference RTL on exported vectors in Icarus Verilog via cocotb.

:func:`run_cosim` compiles the lane a vectors directory names (``manifest["rtl_top"]``) once
with the directory's parameters, then drives every given directory through it in one
simulator run (:mod:`shiftsim.rtl.bench`). It needs ``iverilog`` on the PATH and the
``cocotb`` package; :func:`simulator_missing` says what is missing.

Command line: ``python -m shiftsim.rtl.cosim DIR [DIR ...]`` prints the totals and exits 1 on
any mismatch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["RTL_SOURCES", "run_cosim", "run_plain_testbench", "simulator_missing"]

#: The reference Verilog files, in the package directory.
RTL_SOURCES = (
    "shift_unit.v",
    "shift_select.v",
    "adder_tree.v",
    "accumulator.v",
    "shiftcnn_unit.v",
    "shiftcnn_lane.v",
    "mac_lane.v",
    "log_lane.v",
)


def simulator_missing() -> str | None:
    """Why co-simulation cannot run here (None when it can)."""
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        return (
            "Icarus Verilog (iverilog, vvp) is not on the PATH: install it "
            "(Debian/Ubuntu: apt-get install iverilog; macOS: brew install icarus-verilog)"
        )
    if importlib.util.find_spec("cocotb") is None:
        return "cocotb is not installed: pip install cocotb"
    return None


def run_cosim(
    vector_dirs: Sequence[str | Path], build_dir: str | Path | None = None
) -> dict[str, Any]:
    """Compile the reference RTL once and drive it with every vectors directory.

    Parameters
    ----------
    vector_dirs : sequence of str or Path
        Directories written by :func:`shiftsim.rtl.write_vectors`, all for one RTL top and one
        parameter set.
    build_dir : str or Path, optional
        Where to compile and run (a temporary directory when None).

    Returns
    -------
    dict
        ``dirs``, ``rows`` (rows driven), ``checks`` (values compared), ``mismatches`` and
        ``first`` (the first mismatches, described).

    Raises
    ------
    ValueError
        If no directory is given or they differ in RTL top or parameters.
    RuntimeError
        If the simulator or cocotb is missing, or the simulation did not finish.
    """
    dirs = [Path(d).resolve() for d in vector_dirs]
    if not dirs:
        raise ValueError("vector_dirs must name at least one vectors directory, got none")
    manifests = [json.loads((d / "manifest.json").read_text()) for d in dirs]
    top, params = manifests[0]["rtl_top"], manifests[0]["params"]
    for d, m in zip(dirs, manifests):
        if m["rtl_top"] != top or m["params"] != params:
            raise ValueError(
                f"vector_dirs must share one RTL top and parameter set: {d} has "
                f"{m['rtl_top']} {m['params']}, the first {top} {params}"
            )
    missing = simulator_missing()
    if missing:
        raise RuntimeError(missing)
    if build_dir is None:
        with tempfile.TemporaryDirectory(prefix="shiftsim-cosim-") as tmp:
            return _simulate(dirs, top, params, Path(tmp))
    return _simulate(dirs, top, params, Path(build_dir))


def _simulate(dirs: list[Path], top: str, params: dict[str, int], work: Path) -> dict[str, Any]:
    """Compile ``top`` with ``params`` in ``work`` and run the bench over ``dirs``."""
    from cocotb_tools.runner import get_runner

    here = Path(__file__).resolve().parent
    work.mkdir(parents=True, exist_ok=True)
    summary = work / "summary.json"
    summary.unlink(missing_ok=True)
    runner = get_runner("icarus")
    try:
        runner.build(
            sources=[here / name for name in RTL_SOURCES],
            hdl_toplevel=top,
            parameters=params,
            build_dir=work,
            always=True,
            timescale=("1ns", "1ps"),
            log_file=work / "build.log",
        )
    except (subprocess.CalledProcessError, SystemExit) as exc:
        raise RuntimeError(f"compiling {top} failed ({exc}); see {work / 'build.log'}") from None
    # the runner passes its own sys.path as PYTHONPATH: the bench is imported alone, as a
    # top-level module from this directory (not through the shiftsim package: no numba)
    sys.path.insert(0, str(here))
    try:
        runner.test(
            test_module="bench",
            hdl_toplevel=top,
            build_dir=work,
            test_dir=work,
            extra_env={
                "SHIFTSIM_VECTOR_DIRS": os.pathsep.join(str(d) for d in dirs),
                "SHIFTSIM_COSIM_SUMMARY": str(summary),
            },
            log_file=work / "sim.log",
        )
    except SystemExit:  # the runner exits on a failed test under pytest: the summary says why
        pass
    finally:
        sys.path.remove(str(here))
    if not summary.exists():
        raise RuntimeError(f"the simulation wrote no summary; see {work / 'sim.log'}")
    result: dict[str, Any] = json.loads(summary.read_text())
    return result


def run_plain_testbench(vec_dir: str | Path) -> dict[str, Any]:
    """Check shift-add vectors with the plain ``$readmemh`` testbench (no cocotb).

    Compiles ``tb_shiftcnn_readmemh.v`` and the reference RTL with ``iverilog``, the
    parameters taken from the manifest, and runs ``vvp`` in the vectors directory.

    Parameters
    ----------
    vec_dir : str or Path
        A shift-add vectors directory.

    Returns
    -------
    dict
        ``steps``, ``mismatches``, ``commands`` (the two command lines run) and ``output``.
    """
    d = Path(vec_dir).resolve()
    manifest = json.loads((d / "manifest.json").read_text())
    if manifest["rtl_top"] != "shiftcnn_lane":
        raise ValueError(f"vec_dir must hold shift-add vectors, got {manifest['rtl_top']!r}")
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise RuntimeError(simulator_missing() or "iverilog is not on the PATH")
    here = Path(__file__).resolve().parent
    tb = "tb_shiftcnn_readmemh"
    params = {**manifest["params"], "STEPS": manifest["tables"]["steps"]["rows"]}
    with tempfile.TemporaryDirectory(prefix="shiftsim-tb-") as tmp:
        vvp_file = str(Path(tmp) / "tb.vvp")
        compile_cmd = [
            "iverilog",
            "-g2005",
            "-s",
            tb,
            "-o",
            vvp_file,
            *[f"-P{tb}.{k}={v}" for k, v in params.items()],
            *[str(here / f) for f in (*RTL_SOURCES, f"{tb}.v")],
        ]
        proc = subprocess.run(compile_cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"iverilog failed: {proc.stderr[-2000:]}")
        run_cmd = ["vvp", "-n", vvp_file]
        proc = subprocess.run(run_cmd, cwd=d, capture_output=True, text=True, check=False)
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("shiftsim vectors:")]
    if not last:
        raise RuntimeError(f"the testbench printed no summary: {proc.stdout[-2000:]}")
    steps, mismatches = (int(w) for w in last[-1].split(":")[1].replace(",", "").split()[::2])
    return {
        "steps": steps,
        "mismatches": mismatches,
        "commands": [compile_cmd, run_cmd],
        "output": proc.stdout,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shiftsim.rtl.cosim [--plain] DIR [DIR ...]``: totals, 1 on any mismatch."""
    args = list(sys.argv[1:] if argv is None else argv)
    plain = "--plain" in args
    args = [a for a in args if a != "--plain"]
    if not args:
        print(
            "usage: python -m shiftsim.rtl.cosim [--plain] VECTORS_DIR [VECTORS_DIR ...]",
            file=sys.stderr,
        )
        return 2
    if plain:
        status = 0
        for d in args:
            res = run_plain_testbench(d)
            print(
                " ".join(res["commands"][0][:4])
                + " ... && "
                + " ".join(res["commands"][1][:2])
                + f" (in {d})"
            )
            print(f"{d}: {res['steps']} steps, {res['mismatches']} mismatches")
            status |= int(res["mismatches"] != 0)
        return status
    result = run_cosim(args)
    print(
        f"{result['dirs']} vector sets, {result['rows']} rows, {result['checks']} values "
        f"compared, {result['mismatches']} mismatches"
    )
    for line in result["first"]:
        print("  " + line)
    return 1 if result["mismatches"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
