"""The README's "RTL in the loop" commands run as written (from a scratch directory)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from shiftsim.rtl.cosim import simulator_missing
from shiftsim.rtl.synth import yosys_command

ROOT = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("SHIFTSIM_REQUIRE_HDL", "0") not in ("", "0")


def _section_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## RTL in the loop", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


@pytest.mark.jit_only
def test_rtl_readme_commands_run(tmp_path):
    missing = simulator_missing() or (None if yosys_command() else "no Yosys")
    if missing:
        if REQUIRE:
            pytest.fail(f"SHIFTSIM_REQUIRE_HDL is set but {missing}")
        pytest.skip(f"README RTL COMMANDS NOT RUN: {missing}")
    commands = _section_commands()
    assert len(commands) >= 5
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    outputs = []
    for line in commands:
        argv = shlex.split(line)
        if argv[0] == "shiftsim":
            argv = [sys.executable, "-m", "shiftsim", *argv[1:]]
        elif argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        proc = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
        outputs.append(proc.stdout)
    checks = [out for line, out in zip(commands, outputs) if "--check" in line or "--plain" in line]
    assert len(checks) >= 3
    assert all(" 0 mismatches" in out for out in checks)
    assert (tmp_path / "vectors" / "mac" / "manifest.json").exists()
