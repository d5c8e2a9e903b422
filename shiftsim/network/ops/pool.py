"""Pooling and mean reductions: MaxPool, AveragePool, GlobalAveragePool, ReduceMean.

*Pooling* follows ONNX (and PyTorch). Along an axis of size ``n``, with kernel ``k``, stride
``s``, dilation ``d`` and pads ``lo``, ``hi``, the pooled size is
``floor((n + lo + hi - d*(k-1) - 1) / s) + 1``; with ``ceil_mode`` the division rounds up, and
a last window that would start at or beyond ``n + lo`` (in the bottom or right padding) is
dropped. Padding never wins a max. An average is the sum of the window's taps inside the
input divided by the window's divisor ``q``: by default the number of those taps (each window
has its own divisor: a corner window of a 3x3 pooling with pads 1 divides by 4); with
``count_include_pad``, the number of taps inside the padded input (pads count as zeros; what
``ceil_mode`` adds past the bottom or right pad does not count). A window lying entirely in
the padding is an error.

On raw integers max pooling is exact and an average (pooling or a mean over axes) rounds half
up, ``floor((sum + q // 2) / q)``; format and scale are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from shiftsim.network.activations import Act
from shiftsim.network.node import Node, register
from shiftsim.network.runner import Step, StepContext

__all__ = ["AvgPool", "GlobalAvgPool", "MaxPool", "ReduceMean", "pool_size"]


def _pair(name: str, value: object) -> tuple[int, int]:
    items = value if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in items
    ):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def _pads(name: str, value: object) -> tuple[int, int, int, int]:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(items) not in (1, 2, 4) or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in items
    ):
        raise ValueError(
            f"{name} must be one, two or four non-negative ints (top, left, bottom, right), "
            f"got {value!r}"
        )
    p = [int(v) for v in items]
    if len(p) == 1:
        return p[0], p[0], p[0], p[0]
    if len(p) == 2:
        return p[0], p[1], p[0], p[1]
    return p[0], p[1], p[2], p[3]


def pool_size(n: int, k: int, s: int, d: int, lo: int, hi: int, ceil: bool) -> int:
    """Pooled size along one axis: ONNX's (and PyTorch's) rule, see the module notes."""
    span = n + lo + hi - (d * (k - 1) + 1)
    if span < 0:
        raise ValueError(f"pooling window {k} (dilation {d}) larger than the padded input {n}")
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + lo:  # the last window must start inside the input
        out -= 1
    return out


def round_div(total: NDArray[np.int64], q: Any) -> NDArray[np.int64]:
    """``floor((total + q // 2) / q)``: integer division rounding half up."""
    q = np.asarray(q, dtype=np.int64)
    return np.asarray((total + q // 2) // q, dtype=np.int64)


@dataclass(frozen=True, kw_only=True, eq=False)
class _Pool(Node):
    """A 2-D pooling window (MaxPool or AvgPool).

    Parameters
    ----------
    kernel_size, stride : int or (int, int)
        The window (stride defaults to the kernel size).
    pads : int, (int, int) or (int, int, int, int), default 0
        One value for all sides, ``(rows, cols)`` on both sides, or ``(top, left, bottom,
        right)`` (ONNX's ``pads`` order). Each must be smaller than the window's extent
        ``dilation * (kernel - 1) + 1`` along its axis.
    dilation : (int, int), default (1, 1)
    ceil_mode : bool, default False
        Round the pooled size up rather than down (see the module notes).
    count_include_pad : bool, default False
        Average pooling divides by the taps inside the padded input rather than by the taps
        inside the input; max pooling ignores it.
    """

    takes_max: ClassVar[bool] = False  # a window's max, else its sum

    kernel_size: tuple[int, int]
    stride: tuple[int, int] | None = None
    pads: int | tuple[int, ...] = 0
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = False

    def validate(self) -> None:
        self.set("kernel_size", _pair(f"{self.name}.kernel_size", self.kernel_size))
        stride = self.kernel_size if self.stride is None else self.stride
        self.set("stride", _pair(f"{self.name}.stride", stride))
        self.set("dilation", _pair(f"{self.name}.dilation", self.dilation))
        pads = _pads(f"{self.name}.pads", self.pads)
        self.set("pads", pads)
        for flag in ("ceil_mode", "count_include_pad"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{self.name}.{flag} must be a bool, got {getattr(self, flag)!r}")
        for axis, (k, d) in enumerate(zip(self.kernel_size, self.dilation)):
            extent = d * (k - 1) + 1
            if max(pads[axis], pads[axis + 2]) >= extent:
                raise ValueError(
                    f"{self.name}.pads {pads} must be smaller than the window extent "
                    f"{extent} along axis {axis}"
                )

    def windows(self, x: NDArray[Any], fill: Any) -> tuple[NDArray[Any], NDArray[np.int64]]:
        """Reduce every window of ``x`` and give each window's divisor.

        The reduction is the window's max (``fill`` the smallest value) or its sum (``fill``
        0); the divisor, an ``(Ho, Wo)`` array, counts the taps inside the input, or inside
        the padded input with ``count_include_pad``.
        """
        assert self.stride is not None and isinstance(self.pads, tuple)
        pads = self.pads
        geo = []
        for axis in range(2):
            n, k = x.shape[2 + axis], self.kernel_size[axis]
            s, d = self.stride[axis], self.dilation[axis]
            lo, hi = pads[axis], pads[axis + 2]
            out = pool_size(n, k, s, d, lo, hi, self.ceil_mode)
            need = (out - 1) * s + d * (k - 1) + 1  # padded length the windows reach
            pos = np.arange(out)[:, None] * s + np.arange(k)[None, :] * d - lo
            inside = ((pos >= 0) & (pos < n)).sum(axis=1)
            if np.any(inside == 0):
                raise ValueError(
                    f"node {self.name!r}: a pooling window lies entirely in the padding"
                )
            in_pad = ((pos >= -lo) & (pos < n + hi)).sum(axis=1)
            geo.append((out, need, k, s, d, lo, inside, in_pad))
        (ho, need_h, kh, sh, dh, top, in_h, pad_h) = geo[0]
        (wo, need_w, kw, sw, dw, left, in_w, pad_w) = geo[1]
        h, w = x.shape[2:]
        xp = np.pad(
            x,
            ((0, 0), (0, 0), (top, max(0, need_h - top - h)), (left, max(0, need_w - left - w))),
            constant_values=fill,
        )
        acc: NDArray[Any] | None = None
        for i in range(kh):
            for j in range(kw):
                tap = xp[
                    :,
                    :,
                    i * dh : i * dh + (ho - 1) * sh + 1 : sh,
                    j * dw : j * dw + (wo - 1) * sw + 1 : sw,
                ]
                if acc is None:
                    acc = tap.copy()
                elif self.takes_max:
                    np.maximum(acc, tap, out=acc)
                else:
                    acc += tap
        assert acc is not None
        count = np.outer(pad_h, pad_w) if self.count_include_pad else np.outer(in_h, in_w)
        return acc, count.astype(np.int64)

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        assert self.stride is not None and isinstance(self.pads, tuple)
        b, c, h, w = shapes[0]
        hw = [
            pool_size(n, k, s, d, self.pads[a], self.pads[a + 2], self.ceil_mode)
            for a, (n, k, s, d) in enumerate(
                zip((h, w), self.kernel_size, self.stride, self.dilation)
            )
        ]
        return (b, c, hw[0], hw[1])

    def int_values(self, raw: NDArray[np.int64]) -> NDArray[np.int64]:
        """The pooling on raw integers (see the module notes for the rounding)."""
        raise NotImplementedError

    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        a = args[0]
        return Step(Act(self.int_values(a.raw), a.fmt, a.scale))


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class MaxPool(_Pool):
    """2-D max pooling (see :class:`_Pool` for the parameters); exact on raw integers."""

    op: ClassVar[str] = "maxpool"
    takes_max: ClassVar[bool] = True

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        return self.windows(args[0], -np.inf)[0]

    def int_values(self, raw: NDArray[np.int64]) -> NDArray[np.int64]:
        # padding never wins: every window holds an input value
        return self.windows(raw, np.iinfo(np.int64).min)[0]


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class AvgPool(_Pool):
    """2-D average pooling (see :class:`_Pool`); rounds half up on raw integers."""

    op: ClassVar[str] = "avgpool"

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        total, count = self.windows(args[0], 0.0)
        return total / count

    def int_values(self, raw: NDArray[np.int64]) -> NDArray[np.int64]:
        total, n = self.windows(raw, 0)
        return round_div(total, n)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class ReduceMean(Node):
    """The mean over ``axes`` (negative counts from the end); rounds half up on raw integers.

    Parameters
    ----------
    axes : tuple of int
        The axes averaged; never the batch axis 0.
    keepdims : bool, default True
    """

    op: ClassVar[str] = "reduce_mean"

    axes: tuple[int, ...] = (2, 3)
    keepdims: bool = True

    def validate(self) -> None:
        axes = tuple(int(a) for a in self.axes)
        if not axes or len(set(axes)) != len(axes) or 0 in axes:
            raise ValueError(f"{self.name}.axes must be distinct non-batch axes, got {axes}")
        self.set("axes", axes)
        if not isinstance(self.keepdims, bool):
            raise TypeError(f"{self.name}.keepdims must be a bool, got {self.keepdims!r}")

    def _axes(self, ndim: int) -> tuple[int, ...]:
        out = tuple(a % ndim for a in self.axes)
        if 0 in out or any(not -ndim <= a < ndim for a in self.axes):
            raise ValueError(f"node {self.name!r}: axes {self.axes} invalid for {ndim}-D input")
        return out

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        x = args[0]
        return np.asarray(x.mean(axis=self._axes(x.ndim), keepdims=self.keepdims))

    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        a = args[0]
        axes = self._axes(a.raw.ndim)
        n = int(np.prod([a.raw.shape[i] for i in axes]))
        total = a.raw.sum(axis=axes, keepdims=self.keepdims)
        return Step(Act(round_div(total, n), a.fmt, a.scale))


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class GlobalAvgPool(ReduceMean):
    """The mean over the spatial axes of an NCHW tensor, kept as ``1 x 1``."""

    op: ClassVar[str] = "global_avgpool"
