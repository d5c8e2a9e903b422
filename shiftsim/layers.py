"""Layer geometry: Conv2d and Linear, shape inference and loop bounds (SPEC §5)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shiftsim.formats import check_int

__all__ = ["Conv2d", "Linear", "Layer"]


def _pair(name: str, value: object, lo: int) -> tuple[int, int]:
    items = value if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if v < lo:
            raise ValueError(f"{name} must be >= {lo}, got {value!r}")
        out.append(int(v))
    return out[0], out[1]


@dataclass(frozen=True, init=False)
class Conv2d:
    """A 2-D convolution (cross-correlation, as in PyTorch) on NCHW raw integers.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts; both divisible by ``groups``.
    kernel_size, stride, padding, dilation : int or (int, int)
        Geometry, as (height, width) pairs; padding inserts raw zeros.
    groups : int, default 1
        ``groups == in_channels == out_channels`` is a depthwise convolution.

    Examples
    --------
    >>> conv = Conv2d(64, 128, 3, stride=2, padding=1)
    >>> conv.output_hw(56, 56)
    (28, 28)
    >>> conv.weight_shape
    (128, 64, 3, 3)
    """

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "in_channels", check_int("in_channels", in_channels, 1))
        set_(self, "out_channels", check_int("out_channels", out_channels, 1))
        set_(self, "kernel_size", _pair("kernel_size", kernel_size, 1))
        set_(self, "stride", _pair("stride", stride, 1))
        set_(self, "padding", _pair("padding", padding, 0))
        set_(self, "dilation", _pair("dilation", dilation, 1))
        set_(self, "groups", check_int("groups", groups, 1))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"groups={self.groups} must divide in_channels={self.in_channels} and "
                f"out_channels={self.out_channels}"
            )

    @property
    def channels_per_group(self) -> int:
        """Input channels each output channel reads, ``in_channels // groups``."""
        return self.in_channels // self.groups

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """``(out_channels, in_channels // groups, kh, kw)``."""
        return (self.out_channels, self.channels_per_group, *self.kernel_size)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        """Output height and width for an ``h`` x ``w`` input.

        Raises
        ------
        ValueError
            If the dilated kernel is larger than the padded input.
        """
        out = []
        for name, n, k, s, p, d in zip(
            ("height", "width"), (h, w), self.kernel_size, self.stride, self.padding, self.dilation
        ):
            span = d * (k - 1) + 1
            if n + 2 * p < span:
                raise ValueError(
                    f"kernel_size {self.kernel_size} (dilation {self.dilation}) spans {span} "
                    f"rows/cols, larger than the padded input {name} {n + 2 * p}"
                )
            out.append((n + 2 * p - span) // s + 1)
        return out[0], out[1]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """Output shape ``(B, Co, Ho, Wo)`` for an input of shape ``(B, C, H, W)``."""
        self.check_input_shape(input_shape)
        b, _, h, w = input_shape
        return (b, self.out_channels, *self.output_hw(h, w))

    def check_input_shape(self, shape: tuple[int, ...], name: str = "x_raw") -> None:
        """Raise ``ValueError`` unless ``shape`` is ``(B, in_channels, H, W)`` with ``B >= 1``."""
        if len(shape) != 4 or shape[1] != self.in_channels or min(shape) < 1:
            raise ValueError(
                f"{name} must have shape (B, {self.in_channels}, H, W), got {tuple(shape)}"
            )
        self.output_hw(shape[2], shape[3])

    def macs(self, input_shape: tuple[int, ...]) -> int:
        """Multiply-accumulates of one pass: ``B*Co*Ho*Wo * (C/groups)*Kh*Kw``."""
        b, co, ho, wo = self.output_shape(input_shape)
        kh, kw = self.kernel_size
        return b * co * ho * wo * self.channels_per_group * kh * kw

    def as_conv(self) -> Conv2d:
        """Return the layer itself (a Conv2d already)."""
        return self

    def to_nchw(self, x: NDArray[np.generic]) -> NDArray[np.generic]:
        """The input as NCHW (the identity for Conv2d)."""
        return x

    def from_nchw(self, y: NDArray[np.generic]) -> NDArray[np.generic]:
        """The output in this layer's own layout (the identity for Conv2d)."""
        return y


@dataclass(frozen=True, init=False)
class Linear:
    """A fully connected layer on ``(B, in_features)`` raw integers.

    It runs as a 1x1 convolution on a ``(B, in_features, 1, 1)`` input, so every datapath
    handles it with the convolution kernels.

    Examples
    --------
    >>> Linear(64, 10).weight_shape
    (10, 64)
    """

    in_features: int
    out_features: int

    def __init__(self, in_features: int, out_features: int) -> None:
        object.__setattr__(self, "in_features", check_int("in_features", in_features, 1))
        object.__setattr__(self, "out_features", check_int("out_features", out_features, 1))

    @property
    def weight_shape(self) -> tuple[int, int]:
        """``(out_features, in_features)``."""
        return (self.out_features, self.in_features)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        """Output shape ``(B, out_features)`` for an input of shape ``(B, in_features)``."""
        self.check_input_shape(input_shape)
        return (input_shape[0], self.out_features)

    def check_input_shape(self, shape: tuple[int, ...], name: str = "x_raw") -> None:
        """Raise ``ValueError`` unless ``shape`` is ``(B, in_features)`` with ``B >= 1``."""
        if len(shape) != 2 or shape[1] != self.in_features or shape[0] < 1:
            raise ValueError(f"{name} must have shape (B, {self.in_features}), got {tuple(shape)}")

    def macs(self, input_shape: tuple[int, ...]) -> int:
        """Multiply-accumulates of one pass: ``B * in_features * out_features``."""
        b, _ = self.output_shape(input_shape)
        return b * self.in_features * self.out_features

    def as_conv(self) -> Conv2d:
        """The equivalent 1x1 convolution."""
        return Conv2d(self.in_features, self.out_features, 1)

    def to_nchw(self, x: NDArray[np.generic]) -> NDArray[np.generic]:
        """Reshape ``(B, in_features, ...)`` to ``(B, in_features, 1, 1, ...)``.

        Works for inputs and for weights or indices ``(O, I, ...)`` alike.
        """
        return x.reshape(x.shape[0], x.shape[1], 1, 1, *x.shape[2:])

    def from_nchw(self, y: NDArray[np.generic]) -> NDArray[np.generic]:
        """``(B, out_features, 1, 1)`` -> ``(B, out_features)``."""
        return y.reshape(y.shape[0], y.shape[1])


Layer = Conv2d | Linear
