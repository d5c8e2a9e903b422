"""SCALE-Sim topology CSVs: read them as found in the wild (SPEC §8).

A SCALE-Sim topology lists one convolution per row, after this header (one line in the file)::

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width,
    Channels, Num Filter, Strides,

Files in the wild carry trailing commas, blank rows, extra columns and spaces around values;
:func:`read_topology` tolerates all of those and rejects anything else with one ``ValueError``
line naming the file, the row and the problem.

Notes
-----
*Padding.* SCALE-Sim applies no padding (``padding="none"``, the default); ``padding="same"``
pads ``k // 2`` on each side, which keeps the spatial size for odd kernels at stride 1.

*Depthwise layers.* SCALE-Sim lists a depthwise convolution (MobileNet) as a layer with
``Num Filter`` 1 over ``Channels`` C. Read literally that is a single filter summing all C
channels, which is not what the network computes. By default (``depthwise=True``) a row with
``Num Filter == 1`` and ``Channels > 1`` is read as a depthwise convolution:
``Conv2d(C, C, k, groups=C)``, i.e. C filters of one channel each, so the MAC count is the
network's. Pass ``depthwise=False`` to read such rows literally.

*Rows are independent.* Each row carries its own input size and channel count; no consistency
between consecutive rows is assumed (the published files are not consistent: GoogLeNet
branches, typos such as ``Inc5a_3x3red`` with 532 channels). A topology is a list of layers,
each simulated on its own input.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from shiftsim.layers import Conv2d

__all__ = ["TOPOLOGIES", "TopologyLayer", "read_topology"]

TOPOLOGIES: dict[str, str] = {
    "alexnet": "alexnet.csv",
    "googlenet": "Googlenet.csv",
    "mobilenet": "mobilenet.csv",
    "resnet18": "Resnet18.csv",
    "yolo_tiny": "yolo_tiny.csv",
}
"""Packaged topologies: name -> file in ``shiftsim/data/topologies``."""

_COLUMNS = (
    "layer name",
    "ifmap height",
    "ifmap width",
    "filter height",
    "filter width",
    "channels",
    "num filter",
    "strides",
)
_PADDINGS = ("none", "same")


@dataclass(frozen=True, kw_only=True)
class TopologyLayer:
    """One row of a topology: a named convolution and the input size it runs on.

    Parameters
    ----------
    name : str
        The layer name from the file.
    layer : Conv2d
        The convolution (padding as requested from :func:`read_topology`).
    input_hw : (int, int)
        IFMAP height and width.

    Examples
    --------
    >>> t = read_topology("resnet18")[0]
    >>> t.name, t.input_hw, t.layer.weight_shape
    ('Conv1', (224, 224), (64, 3, 7, 7))
    >>> t.input_shape(2)
    (2, 3, 224, 224)
    """

    name: str
    layer: Conv2d
    input_hw: tuple[int, int]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"TopologyLayer.name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.layer, Conv2d):
            raise TypeError(f"TopologyLayer.layer must be a Conv2d, got {self.layer!r}")
        hw = self.input_hw
        if (
            not isinstance(hw, (tuple, list))
            or len(hw) != 2
            or any(
                isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) for v in hw
            )
            or min(hw) < 1
        ):
            raise ValueError(f"TopologyLayer.input_hw must be two positive ints (H, W), got {hw!r}")
        object.__setattr__(self, "input_hw", (int(hw[0]), int(hw[1])))
        try:
            self.layer.output_hw(*self.input_hw)
        except ValueError as exc:
            raise ValueError(f"TopologyLayer {self.name!r}: {exc}") from None

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """The NCHW input shape ``(batch, C, H, W)``."""
        return (batch, self.layer.in_channels, *self.input_hw)

    def output_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """The NCHW output shape ``(batch, Co, Ho, Wo)``."""
        return self.layer.output_shape(self.input_shape(batch))

    def macs(self, batch: int = 1) -> int:
        """Multiply-accumulates of one pass over ``batch`` inputs."""
        return self.layer.macs(self.input_shape(batch))

    def memory_bytes(self, batch: int = 1, max_hw: int | None = None) -> int:
        """A rough upper bound of the memory simulating this layer holds at once, in bytes.

        Four 8-byte copies of the input and of the output (float, raw, dequantized, reference)
        and three of the weights; the input cropped to at most ``max_hw x max_hw`` as
        ``Network.run_layers(max_hw=...)`` does. Python ints: no overflow, however large.

        Examples
        --------
        >>> t = TopologyLayer(name="c", layer=Conv2d(3, 8, 3), input_hw=(100_000, 100_000))
        >>> t.memory_bytes() > 10**12, t.memory_bytes(max_hw=32) < 10**6
        (True, True)
        """
        h, w = self.input_hw
        if max_hw is not None:
            h, w = min(h, max_hw), min(w, max_hw)
        try:
            ho, wo = self.layer.output_hw(h, w)
        except ValueError:  # cropped below the kernel: no output
            ho = wo = 0
        inputs = batch * self.layer.in_channels * h * w
        outputs = batch * self.layer.out_channels * ho * wo
        weights = 1
        for n in self.layer.weight_shape:
            weights *= n
        return 8 * (4 * inputs + 4 * outputs + 3 * weights)


def _norm(cell: str) -> str:
    return " ".join(cell.split()).lower()


def _resolve(path_or_name: str | Path) -> tuple[str, str]:
    """Return ``(label, text)`` for a packaged name or a file path."""
    if isinstance(path_or_name, str) and path_or_name.lower() in TOPOLOGIES:
        fname = TOPOLOGIES[path_or_name.lower()]
        ref = resources.files("shiftsim") / "data" / "topologies" / fname
        return fname, ref.read_text(encoding="utf-8")
    if not isinstance(path_or_name, (str, Path)):
        raise TypeError(f"path_or_name must be a str or a Path, got {path_or_name!r}")
    path = Path(path_or_name)
    if not path.is_file():
        known = ", ".join(sorted(TOPOLOGIES))
        raise ValueError(
            f"path_or_name: no topology named {str(path_or_name)!r} and no such file "
            f"(packaged topologies: {known})"
        )
    try:
        return str(path), path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read topology file: {exc}") from None


def read_topology(
    path_or_name: str | Path, padding: str = "none", *, depthwise: bool = True
) -> list[TopologyLayer]:
    """Read a SCALE-Sim topology CSV.

    Parameters
    ----------
    path_or_name : str or Path
        A packaged topology name (``"resnet18"``, ``"alexnet"``, ``"googlenet"``,
        ``"mobilenet"``, ``"yolo_tiny"``, case-insensitive) or the path of a CSV file.
    padding : {"none", "same"}, default "none"
        ``"none"`` as SCALE-Sim; ``"same"`` pads ``k // 2`` on each side.
    depthwise : bool, default True
        Read rows with ``Num Filter == 1`` and ``Channels > 1`` as depthwise convolutions
        (see the module notes).

    Returns
    -------
    list of TopologyLayer
        One per data row, in file order.

    Raises
    ------
    ValueError
        Unknown name or missing file; bad ``padding``; a malformed file (missing or wrong
        header, a row with too few values, a non-integer or non-positive value, a kernel larger
        than the input, a duplicate layer name, no layers): one line naming file, row, problem.

    Examples
    --------
    >>> [t.name for t in read_topology("alexnet")]
    ['Conv1', 'Conv2', 'Conv3', 'Conv4', 'Conv5']
    >>> read_topology("alexnet", padding="same")[1].layer.padding
    (2, 2)
    >>> dw = read_topology("mobilenet")[1].layer
    >>> dw.in_channels, dw.out_channels, dw.groups
    (32, 32, 32)
    """
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
    label, text = _resolve(path_or_name)
    rows = [(i, [c.strip() for c in r]) for i, r in enumerate(csv.reader(io.StringIO(text)), 1)]
    rows = [(i, r) for i, r in rows if any(r)]
    if not rows:
        raise ValueError(f"{label}: empty topology file (no header, no layers)")
    head_row, header = rows[0]
    got = tuple(_norm(c) for c in header[: len(_COLUMNS)])
    if got != _COLUMNS:
        raise ValueError(
            f"{label}: row {head_row}: expected the SCALE-Sim header "
            f"'{', '.join(_COLUMNS)}', got {', '.join(header)!r}"
        )
    out: list[TopologyLayer] = []
    seen: set[str] = set()
    for row_no, cells in rows[1:]:
        out.append(_parse_row(label, row_no, cells, padding, depthwise))
        if out[-1].name in seen:
            raise ValueError(f"{label}: row {row_no}: duplicate layer name {out[-1].name!r}")
        seen.add(out[-1].name)
    if not out:
        raise ValueError(f"{label}: no layers after the header")
    return out


def _parse_row(
    label: str, row_no: int, cells: list[str], padding: str, depthwise: bool
) -> TopologyLayer:
    where = f"{label}: row {row_no}"
    while cells and not cells[-1]:
        cells = cells[:-1]
    if len(cells) < len(_COLUMNS):
        raise ValueError(f"{where}: expected {len(_COLUMNS)} values, got {len(cells)}: {cells!r}")
    name = cells[0]
    if not name:
        raise ValueError(f"{where}: empty layer name")
    values = []
    for col, cell in zip(_COLUMNS[1:], cells[1 : len(_COLUMNS)]):
        try:
            v = int(cell)
        except ValueError:
            raise ValueError(f"{where}: {col!r} must be an integer, got {cell!r}") from None
        if v < 1:
            raise ValueError(f"{where}: {col!r} must be >= 1, got {v}")
        values.append(v)
    h, w, kh, kw, c, nf, s = values
    groups = 1
    if depthwise and nf == 1 and c > 1:
        nf, groups = c, c
    pad = (kh // 2, kw // 2) if padding == "same" else (0, 0)
    layer = Conv2d(c, nf, (kh, kw), stride=s, padding=pad, groups=groups)
    try:
        layer.output_hw(h, w)
    except ValueError as exc:
        raise ValueError(f"{where} ({name}): {exc}") from None
    return TopologyLayer(name=name, layer=layer, input_hw=(h, w))
