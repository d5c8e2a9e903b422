"""Operators that move values without changing them: exact on raw integers.

Flatten, Reshape (to a computed shape), Transpose, Slice, Gather, Pad, Upsample (nearest).
Each applies the same rearrangement to float values and to raw integers; the format and the
scale are unchanged. None of them moves the batch axis 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from shiftsim.network.activations import Act
from shiftsim.network.node import Node, register
from shiftsim.network.runner import Step, StepContext

__all__ = ["Flatten", "Gather", "Pad", "Reshape", "Slice", "Transpose", "Upsample"]


@dataclass(frozen=True, kw_only=True, eq=False)
class _Exact(Node):
    """An operator applying the same rearrangement to floats and raw integers."""

    def apply(self, x: NDArray[Any]) -> NDArray[Any]:
        """The rearrangement."""
        raise NotImplementedError

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return tuple(self.apply(np.zeros(shapes[0], dtype=np.int8)).shape)

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        return np.asarray(self.apply(args[0]), dtype=np.float64)

    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        a = args[0]
        return Step(Act(np.asarray(self.apply(a.raw), dtype=np.int64), a.fmt, a.scale))


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Flatten(_Exact):
    """``(B, ...) -> (B, features)``."""

    op: ClassVar[str] = "flatten"

    def apply(self, x: NDArray[Any]) -> NDArray[Any]:
        return x.reshape(len(x), -1)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Reshape(_Exact):
    """Reshape every input to ``(B, *shape)``.

    Parameters
    ----------
    shape : tuple of int
        The output shape without the batch axis (positive sizes).
    """

    op: ClassVar[str] = "reshape"

    shape: tuple[int, ...]

    def validate(self) -> None:
        shape = tuple(int(v) for v in self.shape)
        if any(v < 1 for v in shape):
            raise ValueError(f"{self.name}.shape must hold positive sizes, got {shape}")
        self.set("shape", shape)

    def apply(self, x: NDArray[Any]) -> NDArray[Any]:
        if int(np.prod(x.shape[1:])) != int(np.prod(self.shape)):
            raise ValueError(
                f"node {self.name!r}: cannot reshape {x.shape[1:]} to {self.shape} per input"
            )
        return x.reshape(len(x), *self.shape)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Transpose(_Exact):
    """Permute the axes; ``perm[0]`` must be 0 (the batch stays first)."""

    op: ClassVar[str] = "transpose"

    perm: tuple[int, ...]

    def validate(self) -> None:
        perm = tuple(int(v) for v in self.perm)
        if sorted(perm) != list(range(len(perm))) or not perm or perm[0] != 0:
            raise ValueError(
                f"{self.name}.perm must be a permutation keeping axis 0 first, got {perm}"
            )
        self.set("perm", perm)

    def apply(self, x: NDArray[Any]) -> NDArray[Any]:
        return np.ascontiguousarray(x.transpose(self.perm))


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Slice(_Exact):
    """``x[..., start:end:step, ...]`` along each of ``axes`` (Python slice semantics)."""

    op: ClassVar[str] = "slice"

    axes: tuple[int, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    steps: tuple[int, ...] | None = None

    def validate(self) -> None:
        n = len(self.axes)
        steps = self.steps if self.steps is not None else (1,) * n
        for key, val in (
            ("axes", self.axes),
            ("starts", self.starts),
            ("ends", self.ends),
            ("steps", steps),
        ):
            if len(val) != n:
                raise ValueError(f"{self.name}.{key} must have {n} entries, got {val}")
            self.set(key, tuple(int(v) for v in val))
        if 0 in self.axes or 0 in (steps or ()):
            raise ValueError(f"{self.name}: cannot slice the batch axis or with step 0")

    def apply(self, x: NDArray[Any]) -> NDArray[Any]:
        idx: list[Any] = [slice(None)] * x.ndim
        assert self.steps is not None
        for a, s, e, st in zip(self.axes, self.starts, self.ends, self.steps):
            if a % x.ndim == 0:
                raise ValueError(f"node {self.name!r}: cannot slice the batch axis")
            idx[a % x.ndim] = slice(s, e, st)
        out = x[tuple(idx)]
        if out.size == 0:
            raise ValueError(f"node {self.name!r}: the slice of {x.shape} is empty")
        return out


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Gather(_Exact):
    """``np.take(x, indices, axis)`` with constant indices (a scalar index drops the axis)."""

    op: ClassVar[str] = "gather"

    axis: int
    indices: Any

    def validate(self) -> None:
        idx = np.asarray(self.indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"{self.name}.indices must be integers, got {idx.dtype}")
        self.set("indices", idx.astype(np.int64))
        if int(self.axis) == 0:
            raise ValueError(f"{self.name}: cannot gather along the batch axis")
        self.set("axis", int(self.axis))

    def apply(self, x: NDArray[Any]) -> NDArray[Any]:
        axis = self.axis % x.ndim
        n = x.shape[axis]
        idx = np.asarray(self.indices)
        if (idx.size and (idx.min() < -n or idx.max() >= n)) or axis == 0:
            raise ValueError(f"node {self.name!r}: indices out of range for axis size {n}")
        return np.take(x, np.where(idx < 0, idx + n, idx), axis=axis)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Pad(_Exact):
    """Pad the non-batch axes: ``pads`` as ``((before, after), ...)`` per axis from axis 1.

    Parameters
    ----------
    pads : tuple of (int, int)
        Non-negative counts, one pair per non-batch axis.
    mode : {"constant", "reflect", "edge"}, default "constant"
        Constant padding pads with zeros (exact: raw 0 is 0 in every format).
    """

    op: ClassVar[str] = "pad"

    pads: tuple[tuple[int, int], ...]
    mode: str = "constant"

    def validate(self) -> None:
        pads = tuple((int(a), int(b)) for a, b in self.pads)
        if any(min(p) < 0 for p in pads):
            raise ValueError(f"{self.name}.pads must be non-negative, got {pads}")
        self.set("pads", pads)
        if self.mode not in ("constant", "reflect", "edge"):
            raise ValueError(
                f"{self.name}.mode must be constant, reflect or edge, got {self.mode!r}"
            )

    def apply(self, x: NDArray[Any]) -> NDArray[Any]:
        if len(self.pads) != x.ndim - 1:
            raise ValueError(f"node {self.name!r}: pads {self.pads} for a {x.ndim}-D input")
        return np.pad(x, ((0, 0), *self.pads), mode=self.mode)  # type: ignore[call-overload]


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Upsample(_Exact):
    """Nearest-neighbour upsampling of the last two axes by integer factors."""

    op: ClassVar[str] = "upsample"

    factors: tuple[int, int]

    def validate(self) -> None:
        f = tuple(int(v) for v in self.factors)
        if len(f) != 2 or min(f) < 1:
            raise ValueError(f"{self.name}.factors must be two positive ints, got {self.factors}")
        self.set("factors", f)

    def apply(self, x: NDArray[Any]) -> NDArray[Any]:
        return np.repeat(np.repeat(x, self.factors[0], axis=-2), self.factors[1], axis=-1)
