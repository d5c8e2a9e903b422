"""Input and output: topology CSVs and ONNX models."""

from shiftsim.io.onnx_io import read_onnx
from shiftsim.io.topology import TOPOLOGIES, TopologyLayer, read_topology

__all__ = ["TOPOLOGIES", "TopologyLayer", "read_onnx", "read_topology"]
