"""Elementwise operators on raw integers: Relu, Add, Sub, Neg, Max, Min, Mean, Concat, Mul.

Also the per-channel Affine (a BatchNormalization not folded into a layer, a Mul or Add by a
constant).

*Operands at one scale.* Add, Sub, Max, Min, Mean and Concat first rescale every operand to
the output format and scale (the multiplier-and-shift rule of
:mod:`shiftsim.network.requant`, no clamp), combine the integers exactly (Mean divides
rounding half up, like average pooling), then clamp once to the output format.

*Mul* of two computed tensors (a squeeze-excite gate) multiplies the raw integers exactly,
``raw_a * raw_b`` at scale ``s_a * s_b`` with ``fa + fb`` fractional bits, then requantises;
each product is counted as a multiply, never hidden.

*Affine* ``y = x * a + b`` with constant ``a`` and ``b`` (per channel, or broadcastable to the
input without its batch axis): ``|a|`` is folded into the requantisation multiplier (one per
distinct constant), the sign applied to the integer, and ``b`` added as the integer
``round(b / lsb_out)``; each output value costs one requantisation multiply.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from shiftsim.counts import Counts
from shiftsim.formats import FixedFormat, as_float_array
from shiftsim.network.activations import Act, signed_format
from shiftsim.network.node import Node, register
from shiftsim.network.ops.pool import round_div
from shiftsim.network.requant import clamp, fixed_multiplier, rescale
from shiftsim.network.runner import Step, StepContext

__all__ = ["Add", "Affine", "Concat", "Max", "Mean", "Min", "Mul", "Neg", "Relu", "Sub"]


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Relu(Node):
    """``max(x, 0)``: exact; an unsigned input passes unchanged (the ReLU was fused)."""

    op: ClassVar[str] = "relu"
    onnx_types: ClassVar[tuple[str, ...]] = ("Relu",)
    fuses_into_producer: ClassVar[bool] = True

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return shapes[0]

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        return np.maximum(args[0], 0.0)

    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        a = args[0]
        if not a.fmt.signed:
            return Step(a)
        fmt = FixedFormat(a.fmt.bits, a.fmt.frac_bits, signed=False)
        raw, clipped = clamp(np.maximum(a.raw, 0), fmt, True)
        return Step(Act(raw, fmt, a.scale), clipped=clipped)


def _aligned(
    args: list[Act], ctx: StepContext, fmt: FixedFormat, s_out: float
) -> tuple[list[NDArray[np.int64]], int]:
    """Every operand rescaled to ``fmt`` and ``s_out`` (no clamp); the multiplies spent."""
    out, mults = [], 0
    for a in args:
        mult, sh = fixed_multiplier(a.fmt.lsb * a.scale / (s_out * fmt.lsb), ctx.requant)
        out.append(rescale(a.raw, mult, sh, (1,)))
        mults += 0 if ctx.requant.power_of_two else a.raw.size
    return out, mults


@dataclass(frozen=True, kw_only=True, eq=False)
class _Combine(Node):
    """Operands rescaled to the output scale, combined exactly, clamped once."""

    arity: ClassVar[int | None] = 2

    def combine(self, xs: list[NDArray[Any]]) -> NDArray[Any]:
        """The operation, on floats or on aligned integers."""
        raise NotImplementedError

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        return np.asarray(self.combine(args), dtype=np.float64)

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return tuple(np.broadcast_shapes(*shapes))

    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        fmt = ctx.out_format()
        s_out = ctx.out_scale(fmt)
        xs, mults = _aligned(args, ctx, fmt, s_out)
        total = np.asarray(self.combine(xs), dtype=np.int64)
        raw, clipped = clamp(total, fmt, ctx.relu_fused)
        value = fmt.to_float(total) * s_out  # before the fused ReLU, like the reference
        return Step(Act(raw, fmt, s_out), value, clipped=clipped, columns={"requant_mults": mults})


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Add(_Combine):
    """Sum of two tensors (broadcasting)."""

    op: ClassVar[str] = "add"

    def validate(self) -> None:
        if len(self.inputs) != 2:
            raise ValueError(f"node {self.name!r}: add takes 2 inputs, got {self.inputs!r}")

    def combine(self, xs: list[NDArray[Any]]) -> NDArray[Any]:
        return xs[0] + xs[1]


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Sub(Add):
    """Difference of two tensors (broadcasting)."""

    op: ClassVar[str] = "sub"

    def combine(self, xs: list[NDArray[Any]]) -> NDArray[Any]:
        return xs[0] - xs[1]


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Max(_Combine):
    """Elementwise maximum of any number of tensors."""

    op: ClassVar[str] = "max"
    arity: ClassVar[int | None] = None

    def combine(self, xs: list[NDArray[Any]]) -> NDArray[Any]:
        return functools.reduce(np.maximum, xs)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Min(Max):
    """Elementwise minimum of any number of tensors."""

    op: ClassVar[str] = "min"

    def combine(self, xs: list[NDArray[Any]]) -> NDArray[Any]:
        return functools.reduce(np.minimum, xs)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Mean(Max):
    """Elementwise mean of any number of tensors (integers: rounding half up)."""

    op: ClassVar[str] = "mean"

    def combine(self, xs: list[NDArray[Any]]) -> NDArray[Any]:
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        if total.dtype.kind == "f":
            return total / len(xs)
        return round_div(total, len(xs))


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Concat(_Combine):
    """Concatenation along ``axis`` (not the batch axis)."""

    op: ClassVar[str] = "concat"
    arity: ClassVar[int | None] = None

    axis: int = 1

    def validate(self) -> None:
        if int(self.axis) == 0:
            raise ValueError(f"{self.name}.axis must not be the batch axis 0")
        self.set("axis", int(self.axis))

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return tuple(self.combine([np.zeros(s, np.int8) for s in shapes]).shape)

    def combine(self, xs: list[NDArray[Any]]) -> NDArray[Any]:
        return np.concatenate(xs, axis=self.axis)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Neg(Node):
    """``-x``: exact, in the signed counterpart of the input format."""

    op: ClassVar[str] = "neg"
    onnx_types: ClassVar[tuple[str, ...]] = ("Neg",)

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return shapes[0]

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        return -args[0]

    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        a = args[0]
        fmt = signed_format(a.fmt)
        raw, clipped = clamp(-a.raw, fmt, False)  # -min_raw of a signed format clips
        return Step(Act(raw, fmt, a.scale), clipped=clipped)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Mul(Node):
    """Product of two computed tensors (broadcasting); every product counted as a multiply."""

    op: ClassVar[str] = "mul"
    arity: ClassVar[int | None] = 2

    def validate(self) -> None:
        if len(self.inputs) != 2:
            raise ValueError(f"node {self.name!r}: mul takes 2 inputs, got {self.inputs!r}")

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return tuple(np.broadcast_shapes(*shapes))

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        return args[0] * args[1]

    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        a, b = args
        bits = int(np.abs(a.raw).max(initial=0)).bit_length()
        bits += int(np.abs(b.raw).max(initial=0)).bit_length()
        if bits > 62:
            raise ValueError(f"node {self.name!r}: the product of the raw operands overflows int64")
        prod = a.raw * b.raw
        fmt = ctx.out_format()
        s_out = ctx.out_scale(fmt)
        lsb_in = a.fmt.lsb * b.fmt.lsb * a.scale * b.scale
        raw, clipped, mults = ctx.requantise(prod, lsb_in / (s_out * fmt.lsb), fmt)
        value = np.asarray(prod * lsb_in, dtype=np.float64)
        return Step(
            Act(raw, fmt, s_out),
            value,
            Counts(multiplies=int(prod.size)),
            clipped,
            {"requant_mults": mults},
        )


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Affine(Node):
    """``y = x * mul + add`` with constants broadcastable to one input (without the batch).

    Parameters
    ----------
    mul, add : array_like of float
        E.g. ``(C, 1, 1)`` for per-channel constants of an NCHW tensor, or scalars.
    """

    op: ClassVar[str] = "affine"

    mul: Any = 1.0
    add: Any = 0.0

    def validate(self) -> None:
        self.set("mul", as_float_array(np.asarray(self.mul), f"{self.name}.mul").astype(np.float64))
        self.set("add", as_float_array(np.asarray(self.add), f"{self.name}.add").astype(np.float64))

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        one = np.broadcast_shapes(shapes[0][1:], np.shape(self.mul), np.shape(self.add))
        if tuple(one) != tuple(shapes[0][1:]):
            raise ValueError(f"node {self.name!r}: constants do not fit the input {shapes[0]}")
        return shapes[0]

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        return np.asarray(args[0] * self.mul + self.add, dtype=np.float64)

    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        a = args[0]
        fmt = ctx.out_format()
        s_out = ctx.out_scale(fmt)
        mul = np.broadcast_to(
            self.mul, np.broadcast_shapes(np.shape(self.mul), (1,) * (a.raw.ndim - 1))
        )
        mag = np.abs(mul) * a.fmt.lsb * a.scale / (s_out * fmt.lsb)
        safe = np.where(mag > 0, mag, 1.0)
        mult, sh = fixed_multiplier(safe, ctx.requant)
        mult = np.where(mag > 0, mult, 0) * np.where(mul < 0, -1, 1)
        v = rescale(a.raw, mult, sh, (1, *mul.shape))
        v = v + np.floor(np.asarray(self.add) / (s_out * fmt.lsb) + 0.5).astype(np.int64)
        raw, clipped = clamp(v, fmt, ctx.relu_fused)
        mults = 0 if ctx.requant.power_of_two else int(v.size)
        return Step(
            Act(raw, fmt, s_out),
            fmt.to_float(v) * s_out,
            clipped=clipped,
            columns={"requant_mults": mults},
        )
