"""shiftsim: a bit-accurate, cycle-level simulator of multiplier-free CNN hardware."""

from shiftsim import sweep
from shiftsim.cost import estimate
from shiftsim.counts import Counts
from shiftsim.cycle import CycleLimitError, run_cycle
from shiftsim.datapath import LayerResult
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath, MacCode
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.energy import EnergyTable, energy_breakdown, energy_pj
from shiftsim.formats import FixedFormat, LogFormat, Overflow, Rounding
from shiftsim.hardware import Hardware
from shiftsim.io import TopologyLayer, read_topology
from shiftsim.io.onnx_io import read_onnx
from shiftsim.layers import Conv2d, Linear
from shiftsim.models import digits_network, digits_test_split
from shiftsim.network import Network, NetworkResult, Node, Requant
from shiftsim.quantize import (
    LinearCode,
    LogCode,
    ShiftCode,
    log_from_fixed,
    log_mantissa_thresholds,
    quantize_linear,
    quantize_log,
    quantize_shiftcnn,
    shiftcnn_error_bound,
)
from shiftsim.sweep import LayerTarget, NetworkTarget
from shiftsim.sweep import sweep as run_sweep
from shiftsim.verify import ErrorStats, Simulation, simulate

__version__ = "0.1.0"

__all__ = [
    "Conv2d",
    "Counts",
    "CycleLimitError",
    "EnergyTable",
    "ErrorStats",
    "FixedFormat",
    "FixedMacDatapath",
    "Hardware",
    "LayerResult",
    "LayerTarget",
    "Linear",
    "LinearCode",
    "LogCode",
    "LogDatapath",
    "LogFormat",
    "MacCode",
    "Network",
    "NetworkResult",
    "NetworkTarget",
    "Node",
    "Overflow",
    "Requant",
    "Rounding",
    "ShiftAddDatapath",
    "ShiftCode",
    "Simulation",
    "TopologyLayer",
    "digits_network",
    "digits_test_split",
    "energy_breakdown",
    "energy_pj",
    "estimate",
    "log_from_fixed",
    "log_mantissa_thresholds",
    "quantize_linear",
    "quantize_log",
    "quantize_shiftcnn",
    "read_onnx",
    "read_topology",
    "run_cycle",
    "shiftcnn_error_bound",
    "run_sweep",
    "simulate",
    "sweep",
]
