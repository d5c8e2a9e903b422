"""shiftsim: a bit-accurate, cycle-level simulator of multiplier-free CNN hardware."""

from shiftsim.counts import Counts
from shiftsim.datapath import LayerResult
from shiftsim.formats import FixedFormat, LogFormat, Overflow, Rounding
from shiftsim.layers import Conv2d, Linear
from shiftsim.quantize import (
    LinearCode,
    LogCode,
    ShiftCode,
    quantize_linear,
    quantize_log,
    quantize_shiftcnn,
)

__version__ = "0.1.0"

__all__ = [
    "Conv2d",
    "Counts",
    "FixedFormat",
    "LayerResult",
    "Linear",
    "LinearCode",
    "LogCode",
    "LogFormat",
    "Overflow",
    "Rounding",
    "ShiftCode",
    "quantize_linear",
    "quantize_log",
    "quantize_shiftcnn",
]
