"""The operators torchvision's classifiers need, read from small onnx.helper models.

Every model's float reference must match onnxruntime tightly (float32 runtime against our
float64), and the model must run bit-accurately on all three datapaths with the operators the
datapaths do not compute marked in the table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.io.onnx_io import read_onnx

DATAPATHS = [ShiftAddDatapath(), FixedMacDatapath(), LogDatapath()]
RNG = np.random.default_rng(7)


def const(name: str, arr: np.ndarray, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr).astype(dtype), name)


def weight(name: str, *shape: int) -> onnx.TensorProto:
    return const(name, RNG.standard_normal(shape) * 0.5)


def build(nodes, inits, in_shape, opset: int = 17, out_shape=("n", "k")) -> onnx.ModelProto:
    """A model; the output shape is only declared (its rank is what the checker needs)."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def conv(x: str, y: str, w: str, **kw) -> onnx.NodeProto:
    return helper.make_node("Conv", [x, w], [y], name=y, **kw)


# ---------------------------------------------------------------- the models
def m_concat_squeeze_excite():
    """Two branches concatenated, then a squeeze-excite gate (Mul of two computed tensors)."""
    nodes = [
        conv("x", "a", "wa", pads=[1, 1, 1, 1]),
        conv("x", "b", "wb"),
        helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        conv("g", "s", "ws"),
        helper.make_node("Sigmoid", ["s"], ["sg"]),
        helper.make_node("Mul", ["r", "sg"], ["m"]),
        helper.make_node("ReduceMean", ["m"], ["p"], axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["p", "wf"], ["y"], transB=1),
    ]
    inits = [
        weight("wa", 3, 2, 3, 3),
        weight("wb", 2, 2, 1, 1),
        weight("ws", 5, 5, 1, 1),
        weight("wf", 4, 5),
    ]
    return build(nodes, inits, [2, 6, 6], opset=17)


def m_activations():
    """HardSwish, HardSigmoid, Clip (ReLU6), LeakyRelu, PRelu, Tanh, Softmax at the end."""
    nodes = [
        conv("x", "c", "w", pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c"], ["h"]),
        helper.make_node("Clip", ["h", "lo", "hi"], ["r6"]),
        conv("r6", "c2", "w2"),
        helper.make_node("LeakyRelu", ["c2"], ["l"], alpha=0.1),
        helper.make_node("PRelu", ["l", "slope"], ["pr"]),
        helper.make_node("HardSigmoid", ["pr"], ["hs"], alpha=0.3, beta=0.4),
        helper.make_node("Tanh", ["c2"], ["t"]),
        helper.make_node("Add", ["hs", "t"], ["s"]),
        helper.make_node("Flatten", ["s"], ["f"]),
        helper.make_node("Gemm", ["f", "wf"], ["g"], transB=1),
        helper.make_node("Softmax", ["g"], ["y"], axis=-1),
    ]
    inits = [
        weight("w", 3, 2, 3, 3),
        const("lo", 0.0),
        const("hi", 6.0),
        weight("w2", 3, 3, 1, 1),
        const("slope", RNG.random((3, 1, 1)) * 0.5),
        weight("wf", 5, 3 * 4 * 4),
    ]
    return build(nodes, inits, [2, 4, 4])


def m_identity_bn_anywhere():
    """TorchScript's Identity for a repeated initializer, Dropout, BN before a ReLU+Conv."""
    nodes = [
        helper.make_node("Identity", ["w"], ["w_copy"]),
        conv("x", "c1", "w", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["bn0"]),
        conv("bn0", "c2", "w_copy", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c1", "c2"], ["s"]),
        helper.make_node("BatchNormalization", ["s", "g2", "b2", "m2", "v2"], ["bn1"]),
        helper.make_node("Relu", ["bn1"], ["r"]),
        helper.make_node("Dropout", ["r"], ["d"]),
        helper.make_node("GlobalAveragePool", ["d"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["y"]),
    ]
    inits = [
        weight("w", 2, 2, 3, 3),
        const("g", RNG.random(2) + 0.5),
        const("b", [0.1, -0.2]),
        const("m", [0.3, -0.1]),
        const("v", RNG.random(2) + 0.5),
        const("g2", RNG.random(2) + 0.5),
        const("b2", [0.2, 0.1]),
        const("m2", [0.0, 0.5]),
        const("v2", RNG.random(2) + 0.5),
    ]
    return build(nodes, inits, [2, 5, 5])


def m_channel_shuffle():
    """ShuffleNet: Split, Reshape with a shape computed by Shape/Gather/Div, Transpose, Slice."""
    i64 = np.int64
    nodes = [
        conv("x", "c", "w", pads=[1, 1, 1, 1]),
        helper.make_node("Split", ["c", "split"], ["s1", "s2"], axis=1),
        conv("s2", "t", "w2"),
        helper.make_node("Concat", ["s1", "t"], ["cat"], axis=1),
        helper.make_node("Shape", ["cat"], ["shp"]),
        helper.make_node("Gather", ["shp", "i1"], ["ch"], axis=0),
        helper.make_node("Div", ["ch", "two"], ["half"]),
        helper.make_node("Gather", ["shp", "i0"], ["n"], axis=0),
        helper.make_node("Gather", ["shp", "i23"], ["hw"], axis=0),
        helper.make_node("Concat", ["n", "two", "half", "hw"], ["tgt"], axis=0),
        helper.make_node("Reshape", ["cat", "tgt"], ["r5"]),
        helper.make_node("Transpose", ["r5"], ["tr"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["tr", "back"], ["sh"]),
        helper.make_node("Slice", ["sh", "st", "en", "ax"], ["sl"]),
        helper.make_node("Gather", ["sl", "idx"], ["ga"], axis=1),
        helper.make_node("Unsqueeze", ["ga", "ax1"], ["un"]),
        helper.make_node("Squeeze", ["un", "ax1"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "ax23"], ["y"], keepdims=0),
    ]
    inits = [
        weight("w", 4, 2, 3, 3),
        const("split", [2, 2], i64),
        weight("w2", 2, 2, 1, 1),
        const("i0", [0], i64),
        const("i1", [1], i64),
        const("i23", [2, 3], i64),
        const("two", [2], i64),
        const("back", [1, 4, 4, 4], i64),
        const("st", [1, 0], i64),
        const("en", [4, 3], i64),
        const("ax", [1, 2], i64),
        const("idx", [2, 0], i64),
        const("ax1", [1], i64),
        const("ax23", [2, 3], i64),
    ]
    return build(nodes, inits, [2, 4, 4], opset=18)


def m_conv_transpose_resize_pad():
    """ConvTranspose (stride 2, pads, output padding, groups), Resize, Pad, asymmetric pads."""
    nodes = [
        conv("x", "c", "w", pads=[1, 0, 0, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node(
            "ConvTranspose",
            ["r", "wt", "bt"],
            ["ct"],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            output_padding=[1, 0],
            group=2,
        ),
        helper.make_node("Resize", ["ct", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Pad", ["up", "pads"], ["pd"], mode="reflect"),
        conv("pd", "c3", "w3", auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Neg", ["c3"], ["ng"]),
        helper.make_node("Max", ["ng", "c3"], ["mx"]),
        helper.make_node("Min", ["ng", "c3"], ["mn"]),
        helper.make_node("Sub", ["mx", "mn"], ["sb"]),
        helper.make_node("Mean", ["sb", "mx"], ["y"]),
    ]
    inits = [
        weight("w", 4, 1, 2, 2),
        weight("wt", 4, 1, 3, 3),
        const("bt", [0.1, -0.2]),
        const("scales", [1.0, 1.0, 2.0, 2.0]),
        const("pads", [0, 0, 1, 2, 0, 0, 2, 1], np.int64),
        weight("w3", 2, 2, 3, 3),
    ]
    return build(nodes, inits, [1, 4, 4], opset=17, out_shape=("n", "c", "h", "w"))


def m_constants():
    """Mul, Add, Sub and Div by constants (not a bias), a Constant node, opset 13."""
    nodes = [
        conv("x", "c", "w"),
        helper.make_node("Constant", [], ["k"], value=const("kv", RNG.random((1, 3, 1, 1)) + 0.5)),
        helper.make_node("Mul", ["c", "k"], ["m"]),
        helper.make_node("Add", ["m", "full"], ["a"]),
        helper.make_node("Sub", ["one", "a"], ["s"]),
        helper.make_node("Div", ["s", "three"], ["d"]),
        helper.make_node("Relu", ["d"], ["y"]),
    ]
    inits = [
        weight("w", 3, 2, 1, 1),
        const("full", RNG.standard_normal((3, 4, 4))),
        const("one", 1.0),
        const("three", 3.0),
    ]
    return build(nodes, inits, [2, 4, 4], opset=13, out_shape=("n", "c", "h", "w"))


def m_old_opsets():
    """Opset 9 attributes: Clip min/max, Pad pads, Upsample, Slice starts/ends, Softmax axis 1."""
    nodes = [
        conv("x", "c", "w"),
        helper.make_node("Clip", ["c"], ["r6"], min=0.0, max=6.0),
        helper.make_node("Pad", ["r6"], ["pd"], pads=[0, 0, 1, 0, 0, 0, 0, 1]),
        helper.make_node("Upsample", ["pd", "scales"], ["up"], mode="nearest"),
        helper.make_node("Slice", ["up"], ["sl"], starts=[1, 0], ends=[3, -1], axes=[1, 3]),
        helper.make_node("Cast", ["sl"], ["ca"], to=TensorProto.FLOAT),
        helper.make_node("Sum", ["ca", "ca"], ["su"]),
        helper.make_node("GlobalMaxPool", ["su"], ["gm"]),
        helper.make_node("Flatten", ["gm"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["g"], transB=1),
        helper.make_node("Softmax", ["g"], ["y"]),
    ]
    inits = [
        weight("w", 3, 2, 1, 1),
        const("scales", [1.0, 1.0, 2.0, 3.0]),
        weight("wf", 4, 2),
        weight("bf", 4),
    ]
    return build(nodes, inits, [2, 3, 3], opset=9)


MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "old_opsets": m_old_opsets,
    "concat_squeeze_excite": m_concat_squeeze_excite,
    "activations": m_activations,
    "identity_bn_anywhere": m_identity_bn_anywhere,
    "channel_shuffle": m_channel_shuffle,
    "conv_transpose_resize_pad": m_conv_transpose_resize_pad,
    "constants": m_constants,
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def zoo(request, tmp_path_factory) -> tuple[str, Path, onnx.ModelProto]:
    model = MODELS[request.param]()
    path = tmp_path_factory.mktemp("zoo") / f"{request.param}.onnx"
    onnx.save(model, str(path))
    return request.param, path, model


def onnxruntime_output(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"x": xi[None].astype(np.float32)})[0] for xi in x])


def test_float_reference_matches_onnxruntime(zoo) -> None:
    _name, path, model = zoo
    net = read_onnx(path)
    x = np.random.default_rng(1).standard_normal((3, *net.input_shape))
    x = x.astype(np.float32).astype(np.float64)  # the same input for both
    want = onnxruntime_output(model, x)
    got = net.forward_float(x)[net.nodes[-1].name]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    assert (got.reshape(3, -1).argmax(1) == want.reshape(3, -1).argmax(1)).all()


@pytest.mark.parametrize("dp", DATAPATHS, ids=["shift", "mac", "log"])
def test_every_model_runs_on_every_datapath(zoo, dp) -> None:
    name, path, _ = zoo
    net = read_onnx(path)
    x = np.random.default_rng(2).standard_normal((2, *net.input_shape))
    res = net.run(x, dp)
    assert res.output_raw.dtype == np.int64 and np.isfinite(res.output).all()
    table = res.table
    assert list(table["layer"]) == [n.name for n in net.nodes]
    floats = table[table["datapath"] == "float"]
    assert set(floats["op"]) <= {
        "sigmoid",
        "hard_swish",
        "clip",
        "leaky_relu",
        "prelu",
        "hard_sigmoid",
        "tanh",
        "softmax",
    }
    assert (floats["float_ops"] > 0).all()
    assert (table.loc[table["datapath"] != "float", "float_ops"] == 0).all()
    layers = table[table["op"].isin(["conv", "conv_transpose"])]
    assert layers["datapath"].str.startswith(("shift", "mac", "log")).all()
    assert (layers["macs"] > 0).all()
    if name == "concat_squeeze_excite":  # the gate's products are multiplies, never hidden
        mul = table[table["op"] == "mul"]
        assert int(mul["multiplies"].iloc[0]) == 2 * 5 * 6 * 6
    if name == "activations":
        assert set(floats["op"]) >= {"hard_swish", "clip", "softmax"}


def test_ops_that_torchscript_and_dynamo_emit_are_read(zoo) -> None:
    name, path, _ = zoo
    ops = {n.op for n in read_onnx(path).nodes}
    expected = {
        "concat_squeeze_excite": {"concat", "mul", "sigmoid", "reduce_mean"},
        "activations": {"hard_swish", "clip", "prelu", "leaky_relu", "softmax"},
        "identity_bn_anywhere": {"affine", "add"},  # the BN after the add is not foldable
        "channel_shuffle": {"slice", "reshape", "transpose", "gather", "concat"},
        "conv_transpose_resize_pad": {
            "conv_transpose",
            "upsample",
            "pad",
            "neg",
            "max",
            "min",
            "sub",
            "mean",
        },
        "constants": {"affine"},
        "old_opsets": {"clip", "pad", "upsample", "slice", "add", "maxpool", "softmax"},
    }[name]
    assert expected <= ops


def test_unsupported_operators_are_all_listed_at_once(tmp_path: Path) -> None:
    nodes = [
        conv("x", "c", "w"),
        helper.make_node("LpNormalization", ["c"], ["l"]),
        helper.make_node("Conv", ["l", "w"], ["n"], domain="com.microsoft.nchwc"),
        helper.make_node("Einsum", ["n"], ["e"], equation="bchw->bchw"),
        helper.make_node("LpNormalization", ["e"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[weight("w", 1, 1, 1, 1)],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft.nchwc", 1)],
    )
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError) as info:
        read_onnx(path)
    msg = str(info.value)
    assert "3 unsupported operator types" in msg
    assert "Conv (domain 'com.microsoft.nchwc'" in msg  # never read as a plain Conv
    assert "Einsum (domain 'ai.onnx'" in msg and "LpNormalization (domain 'ai.onnx', 2 nodes" in msg
    assert "\n" not in msg


def test_constant_scales_and_biases_fold_into_the_layer_before(tmp_path: Path) -> None:
    model = m_constants()  # conv, Mul by a per-channel constant, Add of a full tensor, ...
    onnx.save(model, str(tmp_path / "m.onnx"))
    ops = [n.op for n in read_onnx(tmp_path / "m.onnx").nodes]
    assert ops == ["conv", "affine", "affine", "affine", "relu"]  # the Mul is in the weights


def test_dead_nodes_are_left_out(tmp_path: Path) -> None:
    """A node nothing reads (an exporter's leftover, even of an unsupported op) is dropped."""
    nodes = [
        conv("x", "c", "w"),
        helper.make_node("Einsum", ["c"], ["dead"], equation="bchw->bchw"),
        helper.make_node("Relu", ["c"], ["y"]),
        helper.make_node("Sigmoid", ["c"], ["dead2"]),
    ]
    model = build(nodes, [weight("w", 2, 1, 1, 1)], [1, 2, 2], out_shape=("n", "c", "h", "w"))
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert [n.op for n in read_onnx(tmp_path / "m.onnx").nodes] == ["conv", "relu"]


def test_a_new_operator_is_one_class(tmp_path: Path) -> None:
    """An operator class that lists its ONNX op type is read from files with no converter."""
    from dataclasses import dataclass
    from typing import ClassVar

    from shiftsim.io.onnx_io import supported_ops
    from shiftsim.network.node import OPS, register
    from shiftsim.network.ops.nonlinear import FloatOp

    model = build(
        [
            conv("x", "c", "w", pads=[1, 1, 1, 1]),
            helper.make_node("Softsign", ["c"], ["s"]),
            helper.make_node("GlobalAveragePool", ["s"], ["g"]),
            helper.make_node("Flatten", ["g"], ["y"]),
        ],
        [weight("w", 4, 3, 3, 3)],
        (3, 6, 6),
    )
    path = tmp_path / "softsign.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="Softsign"):
        read_onnx(path)  # not an operator yet

    @register
    @dataclass(frozen=True, kw_only=True, eq=False)
    class Softsign(FloatOp):
        op: ClassVar[str] = "test_softsign"
        onnx_types: ClassVar[tuple[str, ...]] = ("Softsign",)

        def forward(self, args: list[np.ndarray]) -> np.ndarray:
            return args[0] / (1.0 + np.abs(args[0]))

    try:
        assert "Softsign" in supported_ops()
        net = read_onnx(path)
        assert [n.op for n in net.nodes].count("test_softsign") == 1
        x = np.random.default_rng(3).normal(size=(2, 3, 6, 6)).astype(np.float32)
        got = net.forward_float(x)[net.nodes[-1].name]
        np.testing.assert_allclose(got, onnxruntime_output(model, x), rtol=2e-5, atol=2e-6)
        res = net.run(x, ShiftAddDatapath())
        row = res.table[
            res.table["layer"] == next(n.name for n in net.nodes if n.op == "test_softsign")
        ]
        assert row["datapath"].tolist() == ["float"]
    finally:
        del OPS["test_softsign"]
