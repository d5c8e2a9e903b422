"""The README's examples run as written."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_doctests() -> None:
    result = doctest.testfile(
        str(README), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.jit_only
def test_readme_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    # the torch export example runs in test_readme_torch.py (torch is optional)
    scripts = [b for b in blocks if not b.lstrip().startswith(">>>") and "import torch" not in b]
    assert len(scripts) >= 3
    namespace: dict[str, object] = {}
    exec(compile("\n".join(scripts), str(README), "exec"), namespace)
    sim, counts, res = namespace["sim"], namespace["counts"], namespace["res"]
    # the cycle-stepped run and the closed form agree, and both match the functional values
    assert (res.y_raw == sim.result.y_raw).all()
    assert counts.cycles == res.counts.cycles > 0
