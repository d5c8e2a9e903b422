"""ONNX import: float agreement with ONNX's reference runtime, BN folding, bad models."""

from __future__ import annotations

import math
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.io.onnx_io import read_onnx
from shiftsim.network import Node
from tests.strategies import int_op as _int_op
from tests.strategies import pool_params


def init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr.astype(np.float32), name)


def save(tmp_path: Path, nodes, inits, in_shape, out_shape, name="m.onnx", opset=15) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
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
        (helper.make_node("LpNormalization", ["x"], ["y"]), "unsupported operator types: Lp"),
        (
            helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[2, 0, 0, 0]),
            "smaller than the window extent 2",
        ),
        (
            helper.make_node("ConvTranspose", ["x", "w"], ["y"], pads=[0, 1, 1, 0]),
            "asymmetric pads",
        ),
        (helper.make_node("MatMul", ["x", "x"], ["y"]), "product of two computed tensors"),
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


# ---------------------------------------------------------------- pooling with pads, ceil_mode
def _axis_taps(n: int, k: int, s: int, d: int, lo: int, hi: int, ceil: bool):
    """Input indices of the taps of every window along one axis (ONNX / PyTorch rule)."""
    length, ext = n + lo + hi, d * (k - 1) + 1
    if length < ext:
        return None
    wins, o = [], 0
    while True:
        p = o * s  # start in padded coordinates
        keep = (p < length - ext + s and p < n + lo) if ceil else p + ext <= length
        if not keep:
            return wins
        wins.append([p - lo + t * d for t in range(k)])
        o += 1


def oracle_pool(x: np.ndarray, op: str, p: dict, integer: bool):
    """Plain-Python pooling; None where the geometry is invalid (an error is expected)."""
    n_b, n_c, h, w = x.shape
    pt, pl, pb, pr = p["pads"]
    rows = _axis_taps(
        h, p["kernel_size"][0], p["stride"][0], p["dilation"][0], pt, pb, p["ceil_mode"]
    )
    cols = _axis_taps(
        w, p["kernel_size"][1], p["stride"][1], p["dilation"][1], pl, pr, p["ceil_mode"]
    )
    if rows is None or cols is None:
        return None
    out = np.zeros((n_b, n_c, len(rows), len(cols)), dtype=np.int64 if integer else np.float64)
    for b in range(n_b):
        for c in range(n_c):
            for i, rw in enumerate(rows):
                for j, cw in enumerate(cols):
                    vals = [
                        int(x[b, c, r, q]) if integer else float(x[b, c, r, q])
                        for r in rw
                        if 0 <= r < h
                        for q in cw
                        if 0 <= q < w
                    ]
                    if not vals:
                        return None
                    if op == "maxpool":
                        out[b, c, i, j] = max(vals)
                        continue
                    if p["count_include_pad"]:
                        q_r = sum(1 for r in rw if -pt <= r < h + pb)
                        q_c = sum(1 for q in cw if -pl <= q < w + pr)
                        div = q_r * q_c
                    else:
                        div = len(vals)
                    if integer:  # round half up, exactly
                        out[b, c, i, j] = math.floor(Fraction(sum(vals), div) + Fraction(1, 2))
                    else:
                        out[b, c, i, j] = sum(vals) / div
    return out


def pool_node(op: str, p: dict) -> Node:
    keys = ("kernel_size", "stride", "dilation", "pads", "ceil_mode", "count_include_pad")
    return Node(name="p", op=op, **{k: p[k] for k in keys})


def test_padded_pooling_hand_checked() -> None:
    raw = np.arange(16, dtype=np.int64).reshape(1, 1, 4, 4)
    p = dict(kernel_size=(3, 3), stride=(2, 2), dilation=(1, 1), pads=(1, 1, 1, 1))
    p.update(ceil_mode=False, count_include_pad=False)
    # windows: rows/cols {0,1} and {1,2,3}
    np.testing.assert_array_equal(_int_op(pool_node("maxpool", p), raw), [[[[5, 7], [13, 15]]]])
    np.testing.assert_array_equal(_int_op(pool_node("maxpool", p), -raw), [[[[0, -1], [-4, -5]]]])
    # sums 10, 24, 51, 90 over 4, 6, 6, 9 taps: 2.5 -> 3, 4, 8.5 -> 9, 10
    got = _int_op(pool_node("avgpool", p), raw)
    np.testing.assert_array_equal(got, [[[[3, 4], [9, 10]]]])
    assert got.dtype == np.int64
    # negated: -2.5 -> -2, -4, -8.5 -> -8, -10 (half up)
    np.testing.assert_array_equal(_int_op(pool_node("avgpool", p), -raw), [[[[-2, -4], [-8, -10]]]])
    # count_include_pad: all over 9: 1.11 -> 1, 2.67 -> 3, 5.67 -> 6, 10
    p["count_include_pad"] = True
    np.testing.assert_array_equal(_int_op(pool_node("avgpool", p), raw), [[[[1, 3], [6, 10]]]])
    # ceil_mode, 5 wide, k 2, s 2, no pads: windows {0,1} {2,3} {4}; the last divides by 1
    x5 = np.array([[[[1, 2, 3, 4, 9]]]], dtype=np.int64)
    q = dict(kernel_size=(1, 2), stride=(1, 2), dilation=(1, 1), pads=0, count_include_pad=True)
    np.testing.assert_array_equal(
        _int_op(pool_node("avgpool", {**q, "ceil_mode": False}), x5), [[[[2, 4]]]]
    )
    np.testing.assert_array_equal(
        _int_op(pool_node("avgpool", {**q, "ceil_mode": True}), x5), [[[[2, 4, 9]]]]
    )


@given(pool_params(), st.sampled_from(["maxpool", "avgpool"]), st.integers(0, 2**32 - 1))
def test_integer_pooling_matches_python_oracle(p: dict, op: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    raw = rng.integers(-40, 41, size=(2, 2, *p["hw"]), dtype=np.int64)
    want = oracle_pool(raw, op, p, integer=True)
    node = pool_node(op, p)
    if want is None:
        with pytest.raises(
            ValueError, match=r"larger than the padded input|entirely in the padding"
        ):
            _int_op(node, raw)
        return
    got = _int_op(node, raw)
    assert got.dtype == np.int64 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def _ceil_extra(p: dict) -> int:
    """How far ceil_mode's last window reaches past the bottom/right pad (at most stride - 1)."""
    extra = 0
    for a in range(2):
        n, k, s, d = p["hw"][a], p["kernel_size"][a], p["stride"][a], p["dilation"][a]
        lo, hi = p["pads"][a], p["pads"][a + 2]
        out = len(_axis_taps(n, k, s, d, lo, hi, p["ceil_mode"]))
        extra = max(extra, (out - 1) * s + d * (k - 1) + 1 - (n + lo + hi))
    return extra


@given(
    pool_params(max_size=6), st.sampled_from(["MaxPool", "AveragePool"]), st.integers(0, 2**32 - 1)
)
def test_float_pooling_matches_oracle_and_onnx_reference(p: dict, op: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 2, *p["hw"]))
    kind = "maxpool" if op == "MaxPool" else "avgpool"
    want = oracle_pool(x, kind, p, integer=False)
    assume(want is not None)  # the error cases: test_integer_pooling_matches_python_oracle
    attrs = dict(
        kernel_shape=list(p["kernel_size"]),
        strides=list(p["stride"]),
        dilations=list(p["dilation"]),
        pads=list(p["pads"]),
        ceil_mode=int(p["ceil_mode"]),
    )
    if op == "AveragePool":
        attrs["count_include_pad"] = int(p["count_include_pad"])
    with tempfile.TemporaryDirectory() as tmp:
        node = helper.make_node(op, ["x"], ["y"], **attrs)
        path = save(Path(tmp), [node], [], list(x.shape), None, opset=19)
        net = read_onnx(path)
        model = onnx.load(str(path))
    got = net.forward_float(x)[net.nodes[-1].name]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # float64 both
    # quirks of onnx's reference runtime (onnxruntime and PyTorch have none), avoided: it puts
    # half of ceil_mode's overhang before the input when that is 2 or more, shifting the
    # windows; its MaxPool at unit strides and dilations reads pads as (top, bottom, left,
    # right) and counts them twice in ceil_mode (the oracle above covers those cases)
    assume(_ceil_extra(p) <= 1)
    if op == "MaxPool" and p["stride"] == (1, 1) and p["dilation"] == (1, 1):
        assume(not any(p["pads"]))
    ref = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)  # float32 runtime


def stem(
    tmp_path: Path, rng: np.random.Generator, reshape_shape, batch=1, const_node=False
) -> Path:
    """ResNet-like stem: conv 3x3 s2 p1, BN, ReLU, MaxPool k3 s2 p1, AveragePool with pads and
    ceil_mode, GlobalAveragePool, Reshape to (batch, features), Gemm."""
    c = 4
    inits = [
        init("w1", rng.standard_normal((c, 3, 3, 3)) * 0.5),
        init("gamma", rng.random(c) + 0.5),
        init("beta", rng.standard_normal(c) * 0.1),
        init("mean", rng.standard_normal(c) * 0.1),
        init("var", rng.random(c) + 0.5),
        init("wf", rng.standard_normal((5, c)) * 0.5),
        init("bf", rng.standard_normal(5) * 0.1),
    ]
    shape = np.array(reshape_shape, dtype=np.int64)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node(
            "MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node(
            "AveragePool",
            ["p1"],
            ["p2"],
            kernel_shape=[2, 2],
            strides=[2, 2],
            pads=[1, 1, 0, 0],
            ceil_mode=1,
            count_include_pad=0,
        ),
        helper.make_node("GlobalAveragePool", ["p2"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    if const_node:
        nodes.insert(0, helper.make_node("Constant", [], ["shape"], value_ints=list(shape)))
    else:
        inits.append(numpy_helper.from_array(shape, "shape"))
    return save(tmp_path, nodes, inits, [batch, 3, 14, 14], [batch, 5])


@pytest.mark.parametrize(
    ("target", "batch", "const_node"),
    [([0, -1], 1, False), ([1, -1], 1, True), ([-1, 4], "N", False), ([0, 4], "N", True)],
)
def test_stem_with_padded_pooling_and_reshape_matches_reference(
    tmp_path: Path, rng: np.random.Generator, target, batch, const_node: bool
) -> None:
    path = stem(tmp_path, rng, target, batch, const_node)
    net = read_onnx(path)
    assert [n.op for n in net.nodes] == [
        "conv",
        "relu",
        "maxpool",
        "avgpool",
        "global_avgpool",
        "flatten",
        "conv",
    ]
    mp, ap = net.nodes[2], net.nodes[3]
    assert (mp.kernel_size, mp.stride, mp.pads) == ((3, 3), (2, 2), (1, 1, 1, 1))
    assert (ap.pads, ap.ceil_mode, ap.count_include_pad) == ((1, 1, 0, 0), True, False)
    x = rng.random((3, 3, 14, 14))
    ref = ReferenceEvaluator(onnx.load(str(path)))
    want = np.concatenate([ref.run(None, {"x": xi[None].astype(np.float32)})[0] for xi in x])
    got = net.forward_float(x)[net.nodes[-1].name]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    res = net.run(x, ShiftAddDatapath(n_codebooks=2, bits=4))
    assert res.output.shape == (3, 5) and res.output_raw.dtype == np.int64
    assert list(res.table["shape"]) == ["4x7x7", "4x7x7", "4x4x4", "4x3x3", "4x1x1", "4", "5"]


@pytest.mark.parametrize(
    ("target", "batch", "needle"),
    [
        ([2, -1], 1, r"shape \[2, -1\] turns \(1, 4, 1, 1\) into \(2, 2\), which does not"),
        ([1, -1], "N", r"turns \(2, 4, 1, 1\) into \(1, 8\)"),  # open batch: [1, -1] is wrong
        ([0, 3], 1, "into no valid shape"),
        # a reshape to (1, 2, 2) is read; the Gemm after it refuses the 3-D input
        ([0, 2, 2], 1, r"Gemm.*must be \(batch, features\), got \(1, 2, 2\)"),
        ([0, -2], 1, "invalid target shape"),
    ],
)
def test_reshape_that_is_not_a_flatten_raises(
    tmp_path: Path, rng: np.random.Generator, target, batch, needle: str
) -> None:
    path = stem(tmp_path, rng, target, batch)
    with pytest.raises(ValueError, match=needle) as info:
        read_onnx(path)
    assert "m.onnx" in str(info.value) and ("Reshape" in str(info.value) or "Gemm" in needle)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("attrs", "needle"),
    [
        (dict(kernel_shape=[2, 2], pads=[1, 1]), "pads must have 4 entries"),
        (dict(kernel_shape=[2, 2], pads=[0, -1, 0, 0]), "pads must be at least 0"),
        (dict(kernel_shape=[3, 3], pads=[0, 0, 3, 0]), "smaller than the window extent 3"),
        (dict(kernel_shape=[2, 2], ceil_mode=2), "ceil_mode must be 0 or 1"),
        (dict(kernel_shape=[2, 2], count_include_pad=5), "count_include_pad must be 0 or 1"),
        (dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER"), "auto_pad=SAME_UPPER is not supported"),
        (dict(kernel_shape=[2]), "only 2-D pooling"),
        (dict(kernel_shape=[2, 2], dilations=[0, 1]), "dilations must be at least 1"),
        (dict(kernel_shape=[2, 2], strides=[1, 0]), "strides must be at least 1"),
        (dict(), "kernel_shape is missing"),
    ],
)
def test_bad_pooling_attributes_raise_one_clear_error(
    tmp_path: Path, attrs: dict, needle: str
) -> None:
    path = save(
        tmp_path, [helper.make_node("AveragePool", ["x"], ["y"], **attrs)], [], [1, 1, 4, 4], None
    )
    with pytest.raises(ValueError, match=needle) as info:
        read_onnx(path)
    assert "m.onnx" in str(info.value) and "AveragePool" in str(info.value)
    assert "\n" not in str(info.value)


def test_maxpool_indices_output_and_all_padding_windows_raise(tmp_path: Path) -> None:
    node = helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])
    with pytest.raises(ValueError, match="Indices output is not supported"):
        read_onnx(save(tmp_path, [node], [], [1, 1, 4, 4], None))
    # taps at -2 and 1 of a 1-wide input padded (2, 1): the window holds no input value
    p = dict(kernel_size=(1, 2), stride=1, dilation=(1, 3), pads=(0, 2, 0, 1))
    node = Node(name="p", op="maxpool", **p)
    with pytest.raises(ValueError, match="entirely in the padding"):
        _int_op(node, np.zeros((1, 1, 1, 1), np.int64))
    with pytest.raises(TypeError, match="ceil_mode must be a bool"):
        Node(name="p", op="avgpool", kernel_size=2, ceil_mode=1)
    with pytest.raises(ValueError, match="pads must be one, two or four"):
        Node(name="p", op="avgpool", kernel_size=2, pads=(1, 1, 1))
