"""Input and output: topology CSVs and ONNX models.

``read_onnx`` is imported on first use: :mod:`shiftsim.io.onnx_io` builds networks, and the
network package reads topologies from here, so importing it eagerly would make the two
import each other.
"""

from typing import Any

from shiftsim.io.topology import TOPOLOGIES, TopologyLayer, read_topology

__all__ = ["TOPOLOGIES", "TopologyLayer", "read_onnx", "read_topology"]


def __getattr__(name: str) -> Any:
    if name == "read_onnx":
        from shiftsim.io.onnx_io import read_onnx

        return read_onnx
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
