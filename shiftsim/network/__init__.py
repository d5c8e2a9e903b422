"""Whole networks: a graph of operators with float weights, run bit-accurately on datapaths.

The package, one concept per module:

=================  ============================================================================
``graph``          :class:`Network`: nodes, wiring, shape inference, the float model, entry points
``node``           :class:`Node`, the base of every operator, and the registry (:func:`register`)
``ops``            the operators, one small class each (``conv``, ``pool``, ``elementwise``,
                   ``shape``, ``nonlinear``)
``runner``         the bit-accurate chained run; per-layer datapaths
``requant``        :class:`Requant`: integer multiplier-and-shift rescaling
``activations``    raw activations, their formats and scales
``report``         :class:`NetworkResult` and the per-layer table
=================  ============================================================================

Adding an operator: one class deriving from :class:`Node` with a class attribute ``op``,
``forward`` (float64), ``run_int`` (raw integers, returns a :class:`~shiftsim.network.runner.Step`)
and, when cheap, ``infer_shape``; decorate it with :func:`register`. ONNX converters register
by domain and op type with :func:`shiftsim.io.onnx_io.converter`.
"""

from shiftsim.network import ops
from shiftsim.network.activations import Act, act_format, scale_of_input, weight_gain
from shiftsim.network.graph import Network
from shiftsim.network.node import OPS, Node, op_class, register
from shiftsim.network.ops import conv_float
from shiftsim.network.report import NetworkResult, RangeWarning
from shiftsim.network.requant import Requant, fixed_multiplier
from shiftsim.network.runner import Step, StepContext, resolve_datapaths

__all__ = [
    "OPS",
    "Act",
    "Network",
    "NetworkResult",
    "RangeWarning",
    "Node",
    "Requant",
    "Step",
    "StepContext",
    "act_format",
    "conv_float",
    "fixed_multiplier",
    "op_class",
    "ops",
    "register",
    "resolve_datapaths",
    "scale_of_input",
    "weight_gain",
]
