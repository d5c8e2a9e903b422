"""Operators the multiplier-free datapaths do not compute: run in float, then requantised.

Sigmoid, HardSigmoid, HardSwish, Clip (ReLU6), LeakyRelu, PRelu, Tanh, Softmax, Exp-free
activations alike: the inputs are dequantised, the operator runs in float64, and the result
is requantised to the output format and scale (rounding half up, clamped and counted). Each
such row of the per-layer table says ``datapath = "float"`` and counts its output values in
``float_ops``: the work is marked, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from shiftsim.formats import as_float_array
from shiftsim.network.activations import Act
from shiftsim.network.node import Node, register
from shiftsim.network.runner import Step, StepContext

__all__ = [
    "Clip",
    "FloatOp",
    "HardSigmoid",
    "HardSwish",
    "LeakyRelu",
    "PRelu",
    "Sigmoid",
    "Softmax",
    "Tanh",
]


@dataclass(frozen=True, kw_only=True, eq=False)
class FloatOp(Node):
    """Base of the operators computed on dequantised values (see the module notes)."""

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return shapes[0]

    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        y = self.forward([a.value for a in args])
        act, clipped = ctx.quantise(y)
        return Step(act, clipped=clipped, columns={"datapath": "float", "float_ops": y.size})


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Sigmoid(FloatOp):
    """``1 / (1 + exp(-x))``."""

    op: ClassVar[str] = "sigmoid"
    onnx_types: ClassVar[tuple[str, ...]] = ("Sigmoid",)

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        x = args[0]
        return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=np.float64)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Tanh(FloatOp):
    """``tanh(x)``."""

    op: ClassVar[str] = "tanh"
    onnx_types: ClassVar[tuple[str, ...]] = ("Tanh",)

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        return np.tanh(args[0])


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class HardSigmoid(FloatOp):
    """``clip(alpha * x + beta, 0, 1)`` (ONNX defaults ``alpha = 0.2``, ``beta = 0.5``)."""

    op: ClassVar[str] = "hard_sigmoid"

    alpha: float = 0.2
    beta: float = 0.5

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        return np.clip(self.alpha * args[0] + self.beta, 0.0, 1.0)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class HardSwish(FloatOp):
    """``x * clip(x / 6 + 1 / 2, 0, 1)``."""

    op: ClassVar[str] = "hard_swish"
    onnx_types: ClassVar[tuple[str, ...]] = ("HardSwish",)

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        x = args[0]
        return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Clip(FloatOp):
    """``clip(x, low, high)`` (ReLU6 is ``low = 0``, ``high = 6``); None is unbounded."""

    op: ClassVar[str] = "clip"

    low: float | None = None
    high: float | None = None

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        lo = -np.inf if self.low is None else self.low
        hi = np.inf if self.high is None else self.high
        return np.clip(args[0], lo, hi)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class LeakyRelu(FloatOp):
    """``x`` if positive, else ``alpha * x``."""

    op: ClassVar[str] = "leaky_relu"

    alpha: float = 0.01

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        x = args[0]
        return np.where(x >= 0, x, self.alpha * x)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class PRelu(FloatOp):
    """``x`` if positive, else ``slope * x``; ``slope`` broadcastable to one input."""

    op: ClassVar[str] = "prelu"

    slope: Any

    def validate(self) -> None:
        s = as_float_array(np.asarray(self.slope), f"{self.name}.slope").astype(np.float64)
        self.set("slope", s)

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        x = args[0]
        return np.asarray(np.where(x >= 0, x, self.slope * x), dtype=np.float64)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Softmax(FloatOp):
    """``exp(x) / sum(exp(x))`` along ``axis`` (the last by default)."""

    op: ClassVar[str] = "softmax"

    axis: int = -1

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        x = args[0]
        e = np.exp(x - x.max(axis=self.axis, keepdims=True))
        return np.asarray(e / e.sum(axis=self.axis, keepdims=True), dtype=np.float64)
