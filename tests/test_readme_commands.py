"""Every shell command in the README's ```bash blocks runs, in order, and exits 0.

Commands run from a scratch folder with ``shiftsim`` as ``python -m shiftsim`` and repository
paths (``benchmarks/...``) made absolute. A command that is too long for CI runs in the smaller
form given in ``SMALLER`` (every entry there must be used, so the table cannot go stale). Files
that a command reads and no earlier command writes are made by ``FIXTURES``. The two set-up
commands are checked against ``.ci/run`` (which runs the test command exactly), and the main
job's last step is run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
TIMEOUT_S = 600

# README text -> what the test runs instead (a smaller input); each must match some command.
SMALLER: list[tuple[str, str]] = [
    (
        r"bench_datapaths\.py --repeat 10\b",
        "bench_datapaths.py --repeat 1 --layers 1 --batch 1 --small-batch 4",
    ),
    (r"--repeat 10\b", "--repeat 1 --layers 2"),
    # the papers' studies: one model, 20 test images, a few cells (issue 13)
    (
        r"studies shiftcnn --out",
        "studies shiftcnn --models mnist_lenet --images 20 --codebooks 2 --bits 4 --scales "
        "channel --out",
    ),
    (
        r"studies miyashita --out",
        "studies miyashita --models mnist_lenet --images 20 --bits 3 --fsrs 4 --out",
    ),
    (r"studies weights --out", "studies weights --limit 3 --out"),
]


def _small_onnx(path: Path) -> None:
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(7)

    def init(name: str, shape: tuple[int, ...]) -> object:
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f"]),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "readme_model",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])],
        [init("w1", (4, 3, 3, 3)), init("b1", (4,)), init("w2", (10, 64)), init("b2", (10,))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))


def _inputs(path: Path) -> None:
    """Inputs for model.onnx, with negative values (the README's x.npy)."""
    np.save(path, np.random.default_rng(8).standard_normal((4, 3, 8, 8)))


def _layers_toml(path: Path) -> None:
    """The README's layers.toml, as the README shows it."""
    (block,) = [
        b
        for b in re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
        if b.startswith("# layers.toml")
    ]
    path.write_text(block)


# files the README's commands read that no earlier command writes
FIXTURES: dict[str, Callable[[Path], None]] = {
    "model.onnx": _small_onnx,
    "x.npy": _inputs,
    "layers.toml": _layers_toml,
}


def _bash_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for raw in block.splitlines():
            line = re.sub(r"\s+#.*$", "", raw).strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


SETUP = [line for line in _bash_lines() if line.startswith("python3 -m venv")]
COMMANDS = [line for line in _bash_lines() if not line.startswith("python3 -m venv")]


def _runnable(line: str) -> str:
    for pattern, repl in SMALLER:
        line = re.sub(pattern, repl, line)
    words = shlex.split(line)
    if words[0] in ("shiftsim", ".venv/bin/shiftsim"):
        words = [sys.executable, "-m", "shiftsim", *words[1:]]
    elif words[0] in ("python", "python3"):
        words = [sys.executable, *words[1:]]
    words = [str(ROOT / w) if (ROOT / w).is_file() and "/" in w else w for w in words]
    return shlex.join(words)


def test_setup_commands_are_what_ci_runs() -> None:
    assert len(SETUP) == 2, SETUP
    main_job, tests = SETUP
    assert tests.endswith("&& .venv/bin/python -m pytest -q")
    assert tests in CI_RUN.read_text(), ".ci/run must run the README's test command exactly"
    assert main_job.split("&&")[-1].strip().startswith(".venv/bin/shiftsim simulate")


def test_every_smaller_variant_is_used() -> None:
    for pattern, _ in SMALLER:
        assert any(re.search(pattern, c) for c in COMMANDS), f"SMALLER entry {pattern!r} unused"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("readme")
    for name, make in FIXTURES.items():
        make(path / name)
    return path


@pytest.mark.jit_only
@pytest.mark.parametrize(
    "line", [SETUP[0].split("&&")[-1].strip(), *COMMANDS], ids=lambda s: s[:60]
)
def test_readme_command_runs(line: str, workdir: Path) -> None:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        _runnable(line),
        shell=True,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, f"{line}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
