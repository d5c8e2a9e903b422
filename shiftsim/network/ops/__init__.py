"""The operators, one small class each, registered by name (see :mod:`shiftsim.network.node`).

Importing this package registers every built-in operator.
"""

from shiftsim.network.ops.conv import Conv, ConvTranspose, conv_float
from shiftsim.network.ops.elementwise import (
    Add,
    Affine,
    Concat,
    Max,
    Mean,
    Min,
    Mul,
    Neg,
    Relu,
    Sub,
)
from shiftsim.network.ops.nonlinear import (
    Clip,
    FloatOp,
    HardSigmoid,
    HardSwish,
    LeakyRelu,
    PRelu,
    Sigmoid,
    Softmax,
    Tanh,
)
from shiftsim.network.ops.pool import AvgPool, GlobalAvgPool, MaxPool, ReduceMean
from shiftsim.network.ops.shape import Flatten, Gather, Pad, Reshape, Slice, Transpose, Upsample

__all__ = [
    "Add",
    "Affine",
    "AvgPool",
    "Clip",
    "Concat",
    "Conv",
    "ConvTranspose",
    "Flatten",
    "FloatOp",
    "Gather",
    "GlobalAvgPool",
    "HardSigmoid",
    "HardSwish",
    "LeakyRelu",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mul",
    "Neg",
    "PRelu",
    "Pad",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Sub",
    "Tanh",
    "Transpose",
    "Upsample",
    "conv_float",
]
