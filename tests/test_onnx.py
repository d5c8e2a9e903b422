"""ONNX import: float agreement with ONNX's reference runtime, BN folding, bad models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.io.onnx_io import read_onnx


def init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr.astype(np.float32), name)


def save(tmp_path: Path, nodes, inits, in_shape, out_shape, name="m.onnx") -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    if out_shape is not None:  # the bad models below are not all valid ONNX
        onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def resnetish(tmp_path: Path, rng: np.random.Generator) -> Path:
    """conv-BN-relu, residual conv + add + relu, maxpool, avgpool, GAP, flatten, gemm."""
    c = 4
    inits = [
        init("w1", rng.standard_normal((c, 2, 3, 3)) * 0.5),
        init("b1", rng.standard_normal(c) * 0.1),
        init("gamma", rng.random(c) + 0.5),
        init("beta", rng.standard_normal(c) * 0.1),
        init("mean", rng.standard_normal(c) * 0.1),
        init("var", rng.random(c) + 0.5),
        init("w2", rng.standard_normal((c, 1, 3, 3)) * 0.5),  # depthwise
        init("wf", rng.standard_normal((3, c)) * 0.5),
        init("bf", rng.standard_normal(3) * 0.1),
        init("wm", rng.standard_normal((c, 5)) * 0.5),
        init("bm", rng.standard_normal(5) * 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn"], epsilon=1e-3
        ),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="dw", pads=[1, 1, 1, 1], group=c),
        helper.make_node("Add", ["r1", "c2"], ["s"]),
        helper.make_node("Relu", ["s"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["p1"], ["p2"], kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("GlobalAveragePool", ["p2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "wm"], ["mm"]),
        helper.make_node("Add", ["mm", "bm"], ["mmb"]),
        helper.make_node("Relu", ["mmb"], ["r3"]),
        helper.make_node("Dropout", ["r3"], ["d"]),
        helper.make_node("Gemm", ["d", "wf2", "bf"], ["y"], transB=1),
    ]
    inits.append(init("wf2", rng.standard_normal((3, 5)) * 0.5))
    return save(tmp_path, nodes, inits, [1, 2, 6, 6], [1, 3])


def test_float_network_matches_onnx_reference(tmp_path: Path, rng: np.random.Generator) -> None:
    path = resnetish(tmp_path, rng)
    net = read_onnx(path)
    assert net.input_shape == (2, 6, 6)
    ops = [n.op for n in net.nodes]
    assert ops == [
        "conv",
        "relu",
        "conv",
        "add",
        "relu",
        "maxpool",
        "avgpool",
        "global_avgpool",
        "flatten",
        "conv",
        "relu",
        "conv",
    ]  # BN and Add folded
    assert net.nodes[2].layer.groups == 4
    x = rng.random((3, 2, 6, 6))
    ref = ReferenceEvaluator(onnx.load(str(path)))
    want = np.concatenate([ref.run(None, {"x": xi[None].astype(np.float32)})[0] for xi in x])
    got = net.forward_float(x)[net.nodes[-1].name]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # float32 runtime
    res = net.run(x, ShiftAddDatapath(n_codebooks=3, bits=4))
    assert res.output.shape == (3, 3)
    assert res.output_raw.dtype == np.int64
    assert np.isfinite(res.table["sqnr_db"]).all()


def test_bn_folding_by_hand(tmp_path: Path) -> None:
    w = np.array([[[[2.0]]], [[[-1.0]]]])  # two 1x1 filters on one channel
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], epsilon=0.0),
    ]
    inits = [
        init("w", w),
        init("g", np.array([3.0, 1.0])),
        init("b", np.array([1.0, 0.0])),
        init("m", np.array([0.5, 2.0])),
        init("v", np.array([4.0, 1.0])),
    ]
    net = read_onnx(save(tmp_path, nodes, inits, [1, 1, 1, 1], [1, 2, 1, 1]))
    (conv,) = net.nodes
    # s = gamma / sqrt(var) = [1.5, 1]; w' = w * s; b' = (0 - mean) * s + beta
    np.testing.assert_allclose(conv.weight.ravel(), [3.0, -1.0])
    np.testing.assert_allclose(conv.bias, [0.25, -2.0])


@pytest.mark.parametrize(
    ("node", "needle"),
    [
        (helper.make_node("Softmax", ["x"], ["y"]), "unsupported operator"),
        (
            helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 1, 1]),
            "pooling pads",
        ),
        (helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 1, 1, 0]), "asymmetric pads"),
        (
            helper.make_node("BatchNormalization", ["x", "w", "w", "w", "w"], ["y"]),
            "only right after a Conv",
        ),
        (helper.make_node("Conv", ["x", "x"], ["y"]), "weight must be a constant"),
    ],
)
def test_unsupported_models_raise_one_clear_error(tmp_path: Path, node, needle: str) -> None:
    path = save(tmp_path, [node], [init("w", np.ones((1, 1, 1, 1)))], [1, 1, 4, 4], None)
    with pytest.raises(ValueError, match=needle) as info:
        read_onnx(path)
    assert "m.onnx" in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="cannot read ONNX model"):
        read_onnx(bad)
    with pytest.raises(ValueError, match="cannot read ONNX model"):
        read_onnx(tmp_path / "missing.onnx")
