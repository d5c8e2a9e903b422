"""SCALE-Sim topology reader: packaged files, quirks, malformed files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shiftsim.io.topology import TOPOLOGIES, TopologyLayer, read_topology
from shiftsim.layers import Conv2d

HEADER = (
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
    "Channels, Num Filter, Strides,"
)
DATA = Path(__file__).resolve().parents[1] / "shiftsim" / "data" / "topologies"

# Hand-read from the published files: (name, rows, first layer, its (H, W)).
EXPECTED = {
    "resnet18": (21, ("Conv1", Conv2d(3, 64, 7, stride=2), (224, 224))),
    "alexnet": (5, ("Conv1", Conv2d(3, 96, 11, stride=4), (224, 224))),
    "googlenet": (58, ("Conv1", Conv2d(3, 64, 7, stride=2), (224, 224))),
    "mobilenet": (27, ("Conv1", Conv2d(3, 32, 3, stride=2), (224, 224))),
    "yolo_tiny": (9, ("Conv1", Conv2d(3, 4, 3), (416, 416))),
}


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
@pytest.mark.parametrize("padding", ["none", "same"])
def test_every_packaged_topology_loads(name: str, padding: str) -> None:
    layers = read_topology(name, padding)
    n_rows, (first, conv, hw) = EXPECTED[name]
    assert len(layers) == n_rows
    assert all(isinstance(t, TopologyLayer) for t in layers)
    assert layers[0].name == first
    assert layers[0].input_hw == hw
    assert layers[0].layer.weight_shape == conv.weight_shape
    assert layers[0].layer.stride == conv.stride
    for t in layers:
        kh, kw = t.layer.kernel_size
        expect = (kh // 2, kw // 2) if padding == "same" else (0, 0)
        assert t.layer.padding == expect
        assert t.macs() > 0
    assert len({t.name for t in layers}) == n_rows


def test_packaged_files_are_loadable_by_path_and_name_alike() -> None:
    for name, fname in TOPOLOGIES.items():
        by_name = read_topology(name.upper())
        by_path = read_topology(DATA / fname)
        assert by_name == by_path


def test_resnet18_fc_row_and_alexnet_spaces() -> None:
    fc = read_topology("resnet18")[-1]  # last row: no trailing newline in the file
    assert fc.name == "FC"
    assert fc.layer.weight_shape == (1000, 512, 1, 1)
    conv2 = read_topology("alexnet")[1]  # values padded with spaces
    assert conv2.name == "Conv2"
    assert conv2.input_hw == (27, 27)
    assert conv2.layer.weight_shape == (256, 96, 5, 5)
    # 27x27 input, 5x5 kernel, stride 1: 23x23 without padding, 27x27 with "same"
    assert conv2.output_shape() == (1, 256, 23, 23)
    assert read_topology("alexnet", "same")[1].output_shape() == (1, 256, 27, 27)


def test_mobilenet_depthwise_rows() -> None:
    dw = read_topology("mobilenet")[1]
    assert dw.layer.groups == 32
    assert dw.layer.weight_shape == (32, 1, 3, 3)
    # 112x112 input, 3x3 kernel, no padding -> 110x110; one 3x3 filter per channel
    assert dw.macs() == 32 * 110 * 110 * 9
    literal = read_topology("mobilenet", depthwise=False)[1]
    assert literal.layer.groups == 1
    assert literal.layer.weight_shape == (1, 32, 3, 3)
    pointwise = read_topology("mobilenet")[2]
    assert pointwise.layer.groups == 1


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topo.csv"
    path.write_text(text)
    return path


def test_quirky_file(tmp_path: Path) -> None:
    text = (
        "\n  " + HEADER + " Extra Col, \n\n"
        "  A , 8 , 9 , 3 , 1 , 4 , 5 , 2 , 17, junk,,\n"
        "\n , , ,\n"
        "B,5,5,1,1,5,7,1"  # no trailing comma, no newline
    )
    layers = read_topology(write(tmp_path, text))
    assert [t.name for t in layers] == ["A", "B"]
    assert layers[0].input_hw == (8, 9)
    assert layers[0].layer.kernel_size == (3, 1)
    assert layers[0].layer.stride == (2, 2)
    assert layers[0].layer.weight_shape == (5, 4, 3, 1)
    assert layers[0].output_shape() == (1, 5, 3, 5)  # (8-3)//2+1, (9-1)//2+1
    assert layers[1].layer.weight_shape == (7, 5, 1, 1)


def test_crlf_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(("\ufeff" + HEADER + "\r\nA,4,4,3,3,2,2,1,\r\n").encode("utf-8"))
    (layer,) = read_topology(path)
    assert layer.layer.weight_shape == (2, 2, 3, 3)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty topology file"),
        ("\n\n", "empty topology file"),
        (HEADER + "\n", "no layers"),
        ("Name,H,W,FH,FW,C,N,S,\nA,4,4,3,3,2,2,1\n", "row 1: expected the SCALE-Sim header"),
        (HEADER + "\nA,4,4,3,3,2,2\n", "row 2: expected 8 values, got 7"),
        (
            HEADER + "\n\nA,4,4,3,3,2,2,1\nB,4,x,3,3,2,2,1\n",
            "row 4: 'ifmap width' must be an integer",
        ),
        (HEADER + "\nA,4,4,3,3,2.5,2,1\n", "'channels' must be an integer, got '2.5'"),
        (HEADER + "\nA,4,4,3,3,2,0,1\n", "row 2: 'num filter' must be >= 1, got 0"),
        (HEADER + "\nA,4,4,3,3,2,2,-1\n", "'strides' must be >= 1, got -1"),
        (HEADER + "\nA,2,4,3,3,2,2,1\n", "row 2 (A): kernel_size (3, 3)"),
        (HEADER + "\nA,4,4,3,3,2,2,1\nA,4,4,3,3,2,2,1\n", "row 3: duplicate layer name 'A'"),
        (HEADER + "\n,4,4,3,3,2,2,1\n", "row 2: empty layer name"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=r"topo\.csv") as info:
        read_topology(path)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_same_padding_fixes_small_inputs(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "\nA,2,2,3,3,2,2,1\n")
    (layer,) = read_topology(path, padding="same")
    assert layer.output_shape() == (1, 2, 2, 2)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no topology named 'vgg99'"):
        read_topology("vgg99")
    with pytest.raises(ValueError, match="padding must be one of"):
        read_topology("alexnet", padding="valid")
    with pytest.raises(TypeError, match="path_or_name"):
        read_topology(3)  # type: ignore[arg-type]
    bad = tmp_path / "bin.csv"
    bad.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ValueError, match="cannot read topology file"):
        read_topology(bad)


SHA256 = {  # of the files as published (SCALE-Sim quirks included)
    "Googlenet.csv": "6a667904b99e96cdd8a9fe85e12a4b88a422ddaaf73c0d001e66bfaa94d11201",
    "Resnet18.csv": "2cbd20f7965d390b66277af13e6965b3b10de307312b563cf333158852808eab",
    "alexnet.csv": "14c77a27bad3cf35fa0f0a23736d09dfcdd33b3b62e88d30335b435a82d71e1b",
    "mobilenet.csv": "8ed5a76d0864d32114d03261bf8c1a00316f15429769e184aa22f9b817ec14bb",
    "yolo_tiny.csv": "41056566e03c32c2412ef0259e47c03447b9ea0b4a038f8abe5e48d5cb23a57c",
}


def test_packaged_copies_are_byte_identical_to_the_published_files() -> None:
    assert sorted(p.name for p in DATA.glob("*.csv")) == sorted(TOPOLOGIES.values())
    assert sorted(SHA256) == sorted(TOPOLOGIES.values())
    for fname, digest in SHA256.items():
        assert hashlib.sha256((DATA / fname).read_bytes()).hexdigest() == digest
