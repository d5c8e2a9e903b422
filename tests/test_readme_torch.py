"""The README's *Bring your own model* flow with the real torch exporters.

torch is optional (not in the ``test`` extra): without it this test is skipped, with a reason,
unless ``SHIFTSIM_REQUIRE_TOOLS=1`` says the environment must have it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

if os.environ.get("SHIFTSIM_REQUIRE_TOOLS") == "1":
    import torch
else:
    torch = pytest.importorskip("torch", reason="torch is optional: pip install torch")


def _block(lang: str, needle: str) -> str:
    (block,) = [b for b in re.findall(rf"```{lang}\n(.*?)```", README, re.S) if needle in b]
    return block


@pytest.mark.jit_only
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_bring_your_own_model(tmp_path: Path, monkeypatch, dynamo: bool) -> None:
    from shiftsim.io.onnx_io import read_onnx

    monkeypatch.chdir(tmp_path)
    code = _block("python", "import torch")
    if not dynamo:
        code = code.replace("dynamo=True", "dynamo=False")
        assert "dynamo=False" in code
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    (tmp_path / "layers.toml").write_text(_block("toml", "# layers.toml"))
    # the float reference matches torch on the README's inputs, same top class
    net = read_onnx(tmp_path / "model.onnx")
    x = np.load(tmp_path / "x.npy")
    with torch.no_grad():
        want = namespace["model"](torch.from_numpy(x)).numpy().astype(np.float64)
    got = net.forward_float(x)[net.nodes[-1].name]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert (got.argmax(1) == want.argmax(1)).all()
    (line,) = [ln for ln in _block("bash", "--datapaths").splitlines() if "--datapaths" in ln]
    words = line.split()
    assert words[0] == "shiftsim"
    proc = subprocess.run(
        [sys.executable, "-m", "shiftsim", *words[1:]],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "input: 4 x (3, 16, 16), signed 9-bit" in out
    rows = [r.split() for r in out.splitlines() if r.split()[1:2] in (["conv"], ["hard_swish"])]
    # hard-swish can be negative: the last layer reads a signed input too
    assert [r[2] for r in rows] == ["mac(w8,a9)", "shift(N=2,B=4,a8)", "float", "mac(w8,a9)"]
