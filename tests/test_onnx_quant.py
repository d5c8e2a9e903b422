"""Quantized ONNX import: QDQ, QOperator and QONNX to a float graph plus integers.

The oracle for the integers is onnxruntime itself: each quantized convolution and matrix
product of onnxruntime's own quantised resnet18 (QOperator and QDQ) runs on the MAC datapath
with the file's integers and must give onnxruntime's output codes exactly, on onnxruntime's
own input codes for that node.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from shiftsim.affine import QuantParams, requantize
from shiftsim.io.onnx_quant import dequantize_onnx, is_quantized
from shiftsim.layers import Conv2d

FIXTURES = Path(__file__).parent / "fixtures" / "onnx"
ORT_FILES = [
    "resnet18_ort_qop",
    "resnet18_ort_qdq",
    "densenet121_ort_qop",  # QLinearConcat, QLinearAveragePool, BatchNormalization + ReLU
    "densenet121_ort_qdq",
    "efficientnet_b0_ort_qdq",  # Sigmoid and Mul (SiLU, squeeze-excite) between Q/DQ pairs
]


def _source(name: str) -> onnx.ModelProto:
    """The float model onnxruntime's quantiser was given."""
    return onnx.load(str(FIXTURES / f"{name.split('_ort_')[0]}_ts13.onnx"))


def _n_layers(name: str) -> int:
    return sum(n.op_type in ("Conv", "Gemm") for n in _source(name).graph.node)


def _session(model: onnx.ModelProto | Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    src = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _layer_io(model: onnx.ModelProto) -> dict[str, tuple[str, str]]:
    """Per quantized conv / gemm node: (its integer input tensor, its integer output tensor)."""
    nodes = list(model.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    pairs = {}
    for n in nodes:
        if n.op_type in ("QLinearConv", "QGemm", "QLinearMatMul"):
            pairs[n.name] = (n.input[0], n.output[0])
        elif n.op_type in ("Conv", "Gemm"):  # QDQ: DequantizeLinear -> Conv -> QuantizeLinear
            dq = producer[n.input[0]]
            q = [c for c in nodes if c.op_type == "QuantizeLinear" and n.output[0] in c.input]
            assert dq.op_type == "DequantizeLinear"
            # a float bias (onnxruntime leaves some, e.g. squeeze-excite's) is no integer layer
            int_bias = (
                len(n.input) < 3 or producer.get(n.input[2], dq).op_type == "DequantizeLinear"
            )
            if q and int_bias:
                pairs[n.name] = (dq.input[0], q[0].output[0])
    return pairs


@pytest.mark.parametrize("name", ORT_FILES)
def test_every_quantized_layer_is_bit_exact_with_onnxruntime(name):
    path = FIXTURES / f"{name}.onnx"
    qm = dequantize_onnx(path)
    model = onnx.load(str(path))
    pairs = _layer_io(model)
    # every convolution and the classifier, but the ten squeeze-excite convolutions of
    # efficientnet whose bias onnxruntime's quantiser leaves in float
    assert len(pairs) == _n_layers(name) - (10 if name.startswith("efficientnet") else 0)
    tensors = sorted({t for p in pairs.values() for t in p})
    for t in tensors:
        model.graph.output.append(helper.make_tensor_value_info(t, TensorProto.UINT8, None))
    sess = _session(model)
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))
    assert set(qm.layers) == set(pairs)
    for node, (t_in, t_out) in pairs.items():
        layer = qm.layers[node]
        acc, q = layer.run_mac(got[t_in])
        want = got[t_out].astype(np.int64)
        assert q.dtype == np.int64 and q.shape == want.shape
        np.testing.assert_array_equal(q, want, err_msg=node)
        assert acc.dtype == np.int64


def _qlinear_conv_model(
    rng: np.random.Generator,
    *,
    c: int,
    co: int,
    k: int,
    stride: int,
    pad: int,
    group: int,
    per_channel: bool,
    y_scale: float | None = None,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    xs, xzp = np.float32(0.05), np.uint8(rng.integers(0, 256))
    ws = (rng.uniform(0.002, 0.02, co) if per_channel else np.array(0.01)).astype(np.float32)
    w = rng.integers(-128, 128, (co, c // group, k, k)).astype(np.int8)
    b = rng.integers(-5000, 5000, co).astype(np.int32)
    ys = np.float32(y_scale if y_scale is not None else 0.2)
    yzp = np.uint8(rng.integers(0, 256))
    inits = [
        numpy_helper.from_array(np.array(xs), "xs"),
        numpy_helper.from_array(np.array(xzp), "xzp"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(ws, "ws"),
        numpy_helper.from_array(np.zeros(ws.shape, np.int8), "wzp"),
        numpy_helper.from_array(np.array(ys), "ys"),
        numpy_helper.from_array(np.array(yzp), "yzp"),
        numpy_helper.from_array(b, "b"),
    ]
    node = helper.make_node(
        "QLinearConv",
        ["x", "xs", "xzp", "w", "ws", "wzp", "ys", "yzp", "b"],
        ["y"],
        name="qconv",
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[pad] * 4,
        group=group,
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [2, c, 7, 6])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model, {"w": w, "b": b}


@pytest.mark.parametrize(
    "geom",
    [
        {"c": 4, "co": 5, "k": 3, "stride": 1, "pad": 1, "group": 1, "per_channel": False},
        {"c": 6, "co": 4, "k": 3, "stride": 2, "pad": 1, "group": 2, "per_channel": True},
        {"c": 8, "co": 8, "k": 3, "stride": 1, "pad": 1, "group": 8, "per_channel": True},
        {"c": 3, "co": 2, "k": 1, "stride": 1, "pad": 0, "group": 1, "per_channel": False},
    ],
)
def test_qlinear_conv_matches_onnxruntime(geom):
    rng = np.random.default_rng(sum(geom.values()))
    model, _ = _qlinear_conv_model(rng, **geom)
    x = rng.integers(0, 256, (2, geom["c"], 7, 6)).astype(np.uint8)
    want = _session(model).run(None, {"x": x})[0].astype(np.int64)
    qm = dequantize_onnx(model)
    layer = qm.layers["qconv"]
    assert isinstance(layer.layer, Conv2d) and layer.layer.groups == geom["group"]
    _, q = layer.run_mac(x)
    np.testing.assert_array_equal(q, want)
    # the golden model of the MAC datapath gives the same accumulators
    acc_f, _ = layer.run_mac(x)
    acc_g, _ = layer.run_mac(x, level="golden")
    np.testing.assert_array_equal(acc_f, acc_g)


def test_requantisation_rounds_ties_to_even_like_onnxruntime():
    # y_scale = 2 * x_scale * w_scale: the factor is exactly 0.5, so every odd accumulator
    # is a tie; onnxruntime rounds ties to even (half up would differ on half of them).
    rng = np.random.default_rng(5)
    xs, ws = 0.05, 0.01
    model, _ = _qlinear_conv_model(
        rng, c=2, co=3, k=1, stride=1, pad=0, group=1, per_channel=False, y_scale=2 * xs * ws
    )
    for init in model.graph.initializer:  # exact binary scales: 0.5 is then exact in float32
        if init.name in ("xs", "ws", "ys"):
            v = {"xs": 0.5, "ws": 0.25, "ys": 0.25}[init.name]
            init.CopyFrom(numpy_helper.from_array(np.array(v, np.float32), init.name))
        if init.name == "b":
            init.CopyFrom(numpy_helper.from_array(np.zeros(3, np.int32), "b"))
    x = rng.integers(0, 256, (2, 2, 7, 6)).astype(np.uint8)
    want = _session(model).run(None, {"x": x})[0].astype(np.int64)
    acc, q = dequantize_onnx(model).layers["qconv"].run_mac(x)
    assert np.count_nonzero(acc % 2) > 10  # many ties
    np.testing.assert_array_equal(q, want)


def test_requantize_hand_checked():
    p = QuantParams(scale=np.array(1.0), zero_point=np.array(10), bits=8, signed=False)
    acc = np.array([[1, 3, 5, -7, -100, 1000]])
    # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -3.5 -> -4 (even); -50 clamps to -10; 500 to 245
    got = requantize(acc, np.float32(0.5), p, channel_axis=0)
    np.testing.assert_array_equal(got, [[10, 12, 12, 6, 0, 255]])


def test_quant_params_quantize_and_dequantize():
    p = QuantParams(scale=np.array(0.5), zero_point=np.array(0), bits=4, signed=True, narrow=True)
    assert (p.lo, p.hi) == (-7, 7)
    q = p.quantize([0.25, 0.75, -0.25, 100.0, -100.0, 1.0])
    np.testing.assert_array_equal(q, [0, 2, 0, 7, -7, 2])  # ties to even, clamp, narrow
    np.testing.assert_array_equal(p.dequantize(q), np.array([0, 1, 0, 3.5, -3.5, 1], np.float32))
    u = QuantParams(scale=np.array(1.0), zero_point=np.array(128), bits=8, signed=False)
    assert u.raw_format.bits == 8 and u.raw_format.signed  # [-128, 127]
    u0 = QuantParams(scale=np.array(1.0), zero_point=np.array(0), bits=8, signed=False)
    assert u0.raw_format.bits == 9  # [0, 255]
    s8 = QuantParams(scale=np.array(1.0), zero_point=np.array(0), bits=8, signed=True)
    assert s8.raw_format.bits == 8
    assert (
        QuantParams(
            scale=np.array(1.0), zero_point=np.array(0), bits=4, signed=True, narrow=True
        ).raw_format.bits
        == 4
    )
    assert not u.clamps_at_zero
    r = QuantParams(scale=np.array(1.0), zero_point=np.array(0), bits=8, signed=False)
    assert r.clamps_at_zero


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"scale": np.array(0.0), "zero_point": 0, "bits": 8, "signed": True}, "scale"),
        ({"scale": np.array(1.0), "zero_point": 0, "bits": 0, "signed": True}, "bits"),
        ({"scale": np.array(np.nan), "zero_point": 0, "bits": 8, "signed": True}, "scale"),
    ],
)
def test_quant_params_reject_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        QuantParams(**kw)


def test_run_mac_rejects_codes_outside_the_input_range():
    rng = np.random.default_rng(0)
    model, _ = _qlinear_conv_model(rng, c=2, co=2, k=1, stride=1, pad=0, group=1, per_channel=False)
    layer = dequantize_onnx(model).layers["qconv"]
    with pytest.raises(ValueError, match="x_q"):
        layer.run_mac(np.full((1, 2, 3, 3), 300))
    with pytest.raises(TypeError, match="x_q"):
        layer.run_mac(np.zeros((1, 2, 3, 3)))


@pytest.mark.parametrize("name", ORT_FILES)
def test_float_graph_is_the_source_model_with_quantized_weights(name):
    """Each dequantized weight lies within half a step of the float model that was quantised."""
    path = FIXTURES / f"{name}.onnx"
    model = onnx.load(str(path))
    assert is_quantized(model)
    qm = dequantize_onnx(path)
    onnx.checker.check_model(qm.float_model)
    assert not is_quantized(qm.float_model)
    assert qm.kind == ("qoperator" if "qop" in name else "qdq")
    source = _source(name)
    float_w = {t.name: numpy_helper.to_array(t) for t in source.graph.initializer}
    if qm.kind == "qdq":
        pairs = [
            (n.input[0], n.output[0]) for n in model.graph.node if n.op_type == "DequantizeLinear"
        ]
    else:
        pairs = [
            (n.input[3], f"{n.output[0]}_weight")
            for n in model.graph.node
            if n.op_type in ("QLinearConv", "QGemm")
        ]
    checked = 0
    for stored, ours in pairs:
        if not stored.endswith("_quantized") or stored[: -len("_quantized")] not in float_w:
            continue
        original = float_w[stored[: -len("_quantized")]].astype(np.float64)
        w = qm.weights[ours]
        assert w.raw.shape == original.shape
        step = w.params.scale
        if w.params.axis is not None:  # one step per slice along the axis
            shape = [1] * original.ndim
            shape[w.params.axis] = -1
            step = step.reshape(shape)
        err = np.abs(w.params.dequantize(w.raw).astype(np.float64) - original)
        assert np.all(err <= step / 2 * (1 + 1e-5) + 1e-12), ours
        checked += 1
    # every conv and classifier weight (and, read through DequantizeLinear in QDQ, bias)
    # every weight (and what else the file stores as integers: biases, BN parameters in QDQ)
    assert checked >= _n_layers(name)


@pytest.mark.parametrize("name", ORT_FILES)
def test_float_graph_equals_the_source_model_with_dequantized_weights(name):
    """Same operators (the ReLUs the quantiser absorbed restored), same outputs."""
    path = FIXTURES / f"{name}.onnx"
    qm = dequantize_onnx(path)
    quantized = onnx.load(str(path))
    source = _source(name)
    ours = {t.name: numpy_helper.to_array(t) for t in qm.float_model.graph.initializer}
    # stored integer tensor -> our float initializer holding its dequantized values
    deq = {}
    for n in quantized.graph.node:
        if n.op_type == "DequantizeLinear" and n.output[0] in ours:
            deq[n.input[0]] = ours[n.output[0]]
        if n.op_type in ("QLinearConv", "QGemm"):
            deq[n.input[3]] = ours[f"{n.output[0]}_weight"]
            bias = n.input[8:9] if n.op_type == "QLinearConv" else n.input[6:7]
            if bias and bias[0]:
                deq[bias[0]] = ours[f"{n.output[0]}_bias"]
    replaced = 0
    for t in source.graph.initializer:
        if f"{t.name}_quantized" in deq:
            t.CopyFrom(numpy_helper.from_array(deq[f"{t.name}_quantized"], t.name))
            replaced += 1
    assert replaced >= _n_layers(name)  # every weight, and the integer biases
    relus = [n for n in qm.float_model.graph.node if n.op_type == "Relu"]
    assert len(relus) == sum(n.op_type == "Relu" for n in source.graph.node)
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    want = _session(source).run(None, {"input": x})[0]
    got = _session(qm.float_model).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_weights_dequantize_exactly_as_onnxruntime():
    """Each folded weight equals what onnxruntime's DequantizeLinear makes of the integers."""
    path = FIXTURES / "resnet18_ort_qdq.onnx"
    qm = dequantize_onnx(path)
    model = onnx.load(str(path))
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    const = {t.name for t in model.graph.initializer}
    weight_dq = [n for n in dq if n.input[0] in const]
    assert len(weight_dq) == 42
    for n in weight_dq:
        model.graph.output.append(
            helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None)
        )
    x = np.zeros((1, 3, 32, 32), np.float32)
    sess = _session(model)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))
    inits = {t.name: numpy_helper.to_array(t) for t in qm.float_model.graph.initializer}
    for n in weight_dq:
        w = qm.weights[n.output[0]]
        np.testing.assert_array_equal(inits[n.output[0]], got[n.output[0]])
        assert w.raw.dtype == np.int64
        assert w.params.lo <= w.raw.min() and w.raw.max() <= w.params.hi


@pytest.mark.parametrize("name", ["brevitas_cnn_qonnx", "brevitas_cnn_qcdq"])
def test_brevitas_weights_keep_their_bit_widths(name):
    qm = dequantize_onnx(FIXTURES / f"{name}.onnx")
    inits = {t.name: numpy_helper.to_array(t) for t in qm.float_model.graph.initializer}
    convs = [n for n in qm.float_model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(convs) == 4
    widths = []
    for n in convs:
        w = qm.weights[n.input[1]]
        widths.append(2 if w.params.bipolar else len(np.unique(w.raw)).bit_length())
        np.testing.assert_array_equal(inits[n.input[1]], w.params.dequantize(w.raw))
        if w.params.bipolar:
            assert set(np.unique(w.raw)) <= {-1, 1}
        else:  # 4-bit narrow signed
            assert -7 <= w.raw.min() and w.raw.max() <= 7 and w.params.bits == 4
    assert qm.kind == ("qonnx" if "qonnx" in name else "qdq")
    assert any(qm.weights[n.input[1]].params.bipolar for n in convs) == (name.endswith("qonnx"))
    # every activation quantiser is recorded: the input and three ReLU outputs
    assert len(qm.activations) >= 4


def _graph_with(node: onnx.NodeProto, inits: list[onnx.TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", 13),
            helper.make_opsetid("qonnx.custom_op.general", 1),
        ],
    )


def test_bad_quantized_nodes_name_the_node():
    scale = numpy_helper.from_array(np.array(0.5, np.float32), "s")
    bip = helper.make_node(
        "BipolarQuant", ["x", "s"], ["y"], name="binact", domain="qonnx.custom_op.general"
    )
    with pytest.raises(ValueError, match=r"binact.*BipolarQuant"):
        dequantize_onnx(_graph_with(bip, [scale]))
    zp = numpy_helper.from_array(np.array(0.0, np.float32), "z")
    bw = numpy_helper.from_array(np.array(4.0, np.float32), "b")
    floor = helper.make_node(
        "Quant", ["x", "s", "z", "b"], ["y"], name="fq", domain="qonnx.custom_op.general",
        rounding_mode="FLOOR", signed=1, narrow=0,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"fq.*rounding_mode"):
        dequantize_onnx(_graph_with(floor, [scale, zp, bw]))
    dyn = helper.make_node("QuantizeLinear", ["x", "x"], ["y"], name="dynq")
    with pytest.raises(ValueError, match=r"dynq.*scale"):
        dequantize_onnx(_graph_with(dyn, []))
    with pytest.raises(ValueError, match="cannot read"):
        dequantize_onnx(FIXTURES / "no_such_file.onnx")


@pytest.mark.parametrize("per_column", [False, True])
def test_qlinear_matmul_matches_onnxruntime(per_column):
    rng = np.random.default_rng(11 + per_column)
    k, n = 24, 7
    b = rng.integers(-128, 128, (k, n)).astype(np.int8)
    bs = (rng.uniform(0.002, 0.02, n) if per_column else np.array(0.01)).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array(0.04, np.float32), "as"),
        numpy_helper.from_array(np.array(131, np.uint8), "azp"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(bs, "bs"),
        numpy_helper.from_array(np.zeros(bs.shape, np.int8), "bzp"),
        numpy_helper.from_array(np.array(0.07, np.float32), "ys"),
        numpy_helper.from_array(np.array(120, np.uint8), "yzp"),
    ]
    node = helper.make_node(
        "QLinearMatMul", ["a", "as", "azp", "b", "bs", "bzp", "ys", "yzp"], ["y"], name="qmm"
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [3, k])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    a = rng.integers(0, 256, (3, k)).astype(np.uint8)
    want = _session(model).run(None, {"a": a})[0].astype(np.int64)
    layer = dequantize_onnx(model).layers["qmm"]
    assert (layer.layer.in_features, layer.layer.out_features) == (k, n)
    _, q = layer.run_mac(a)
    np.testing.assert_array_equal(q, want)


def _qdq_after(op: str, top: float) -> onnx.ModelProto:
    """x -> op -> QuantizeLinear (uint8, zero point 0, range [0, top]) -> DequantizeLinear."""
    s = np.array(top / 255, np.float32)
    inits = [
        numpy_helper.from_array(np.full((2, 2, 1, 1), 0.5, np.float32), "w"),
        numpy_helper.from_array(s, "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "z"),
    ]
    first = (
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv")
        if op == "Conv"
        else helper.make_node("Mul", ["x", "x"], ["c"], name="mul")
    )
    nodes = [
        first,
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize(
    ("op", "top", "restored"),
    [("Conv", 6.0, "Clip"), ("Conv", 4.5, "Relu"), ("Mul", 6.0, None), ("Mul", 3.0, None)],
)
def test_absorbed_activations_come_back(op, top, restored):
    qm = dequantize_onnx(_qdq_after(op, top))
    ops = [n.op_type for n in qm.float_model.graph.node]
    assert ops == [op] + ([restored] if restored else [])
    assert qm.float_model.graph.output[0].name == ("c_relu" if restored else "c")
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3)).astype(np.float32) * 10
    y = _session(qm.float_model).run(None, {"x": x})[0]
    if restored:
        assert y.min() >= 0 and (restored == "Relu" or y.max() <= 6.0)


@pytest.mark.parametrize("name", ["resnet18_ort_qop", "resnet18_ort_qdq", "brevitas_cnn_qonnx"])
def test_read_onnx_reads_quantized_files_with_the_layer_names_of_their_integers(name):
    from shiftsim.io.onnx_io import read_onnx, supported_ops

    path = FIXTURES / f"{name}.onnx"
    net = read_onnx(path)
    qm = dequantize_onnx(path)
    convs = {n.name for n in net.conv_nodes}
    # Brevitas quantizes before the pooling: its classifier reads an unquantized average
    assert set(qm.layers) <= convs and len(qm.layers) == (3 if "brevitas" in name else 21)
    assert {"QLinearConv", "com.microsoft:QGemm", "qonnx.custom_op.general:Quant"} <= set(
        supported_ops()
    )
