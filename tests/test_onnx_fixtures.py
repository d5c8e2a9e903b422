"""Real exports in: the torchvision classifiers from both of torch's exporters, and quantized files.

The fixtures in ``tests/fixtures/onnx/`` are written by ``tests/fixtures/make_onnx_fixtures.py``
(reduced widths, random weights, small inputs; the same ONNX operator types as the full-size
exports, whose lists are in ``full_size_ops.json``). Every one must import, its float
reference must match onnxruntime on the same input, and ``shiftsim simulate --onnx`` must
run it on all three datapaths.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from shiftsim.cli import main
from shiftsim.io.onnx_io import read_onnx
from shiftsim.io.onnx_quant import dequantize_onnx, is_quantized

FIXTURES = Path(__file__).parent / "fixtures" / "onnx"
MODELS = (
    "resnet18",
    "resnet50",
    "regnet_x_400mf",
    "vgg11_bn",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "squeezenet1_1",
    "googlenet",
    "efficientnet_b0",
    "shufflenet_v2_x0_5",
    "densenet121",
)
EXPORTERS = ("ts13", "dynamo")
ZOO = [f"{m}_{e}" for m in MODELS for e in EXPORTERS]
QUANTIZED = [
    "resnet18_ort_qdq",
    "resnet18_ort_qop",
    "densenet121_ort_qdq",
    "densenet121_ort_qop",
    "efficientnet_b0_ort_qdq",
    "brevitas_cnn_qonnx",
    "brevitas_cnn_qcdq",
]


def _op_types(model: onnx.ModelProto) -> list[str]:
    return sorted(
        {
            n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
            for n in model.graph.node
        }
    )


def test_fixtures_have_the_op_types_of_the_full_size_exports():
    full = json.loads((FIXTURES / "full_size_ops.json").read_text())
    assert sorted(full) == sorted(MODELS)
    for name in ZOO:
        model, exporter = name.rsplit("_", 1)
        path = FIXTURES / f"{name}.onnx"
        assert path.stat().st_size < 1_500_000, name
        assert _op_types(onnx.load(str(path))) == full[model][exporter], name
    total = sum(p.stat().st_size for p in FIXTURES.glob("*.onnx"))
    assert total < 15_000_000


def _reference(name: str) -> onnx.ModelProto:
    """The model onnxruntime runs: the file, or for a quantized file its float graph."""
    model = onnx.load(str(FIXTURES / f"{name}.onnx"))
    return dequantize_onnx(model).float_model if is_quantized(model) else model


@pytest.mark.parametrize("name", ZOO + QUANTIZED)
def test_float_reference_matches_onnxruntime(name):
    net = read_onnx(FIXTURES / f"{name}.onnx")
    model = _reference(name)
    assert net.input_shape is not None
    x = np.random.default_rng(7).standard_normal((1, *net.input_shape))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0].astype(np.float64)
    got = net.forward_float(x)[net.nodes[-1].name]
    assert got.shape == want.shape
    tol = 1e-4 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    top2 = np.sort(want.ravel())[-2:]
    if top2[1] - top2[0] > 2 * tol:  # a clear winner: the same top class
        assert int(got.argmax()) == int(want.argmax())


@pytest.mark.jit_only
@pytest.mark.parametrize("datapath", ["shift", "log", "mac"])
@pytest.mark.parametrize("name", ZOO + QUANTIZED)
def test_cli_simulates_every_layer(name, datapath, capsys):
    path = FIXTURES / f"{name}.onnx"
    argv = ["simulate", "--onnx", str(path), "--datapath", datapath, "--max-size", "2"]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "total:" in out
    for node in read_onnx(path).conv_nodes:
        assert node.name in out, node.name
