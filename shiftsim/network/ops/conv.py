"""Layers with weights, run on a datapath: Conv (Conv2d or Linear) and ConvTranspose.

Integer semantics of a layer: its input (raw integers in the datapath's activation format,
signed with one more bit when the input can be negative) runs on the datapath at the level
asked for; the accumulator output ``y_raw`` (format ``F`` fractional bits, weight scale ``w``,
input scale ``s_in``) is requantised to the output activation (``fa`` fractional bits, scale
``s_out``) by ``m = 2**-F * w * s_in / (s_out * 2**-fa)`` (see
:mod:`shiftsim.network.requant`). The last layer of a network keeps its raw accumulators.

*ConvTranspose* (stride ``s``, padding ``p``, dilation ``d``, output padding ``op``) runs as
the convolution of the zero-inserted input with the flipped, transposed kernel: ``s - 1``
zeros between input samples, ``d*(k-1) - p`` zeros before and ``d*(k-1) - p + op`` after
along each axis, stride 1, the same dilation. The inserted zeros are real input values of
the datapath's convolution (they are counted like any other input).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from shiftsim.counts import Counts
from shiftsim.datapath.base import Datapath
from shiftsim.formats import as_float_array
from shiftsim.layers import Conv2d, Linear
from shiftsim.network.activations import Act, weight_gain, with_signed_input
from shiftsim.network.node import Node, register
from shiftsim.network.runner import Step, StepContext, datapath_label

__all__ = ["Conv", "ConvTranspose", "analytic_counts", "conv_float", "zero_insert"]


def conv_float(
    layer: Conv2d | Linear,
    w: NDArray[np.float64],
    x: NDArray[np.float64],
    bias: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Float64 convolution (im2col and matmul), for the float network and calibration."""
    conv = layer.as_conv()
    xc = layer.to_nchw(np.asarray(x, dtype=np.float64))
    wc = layer.to_nchw(np.asarray(w, dtype=np.float64))
    (ph, pw), (sh, sw), (dh, dw) = conv.padding, conv.stride, conv.dilation
    kh, kw = conv.kernel_size
    xp = np.pad(xc, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    b = xc.shape[0]
    ho, wo = conv.output_hw(xc.shape[2], xc.shape[3])
    g, cg, og = conv.groups, conv.channels_per_group, conv.out_channels // conv.groups
    cols = np.empty((b, conv.in_channels, kh, kw, ho, wo))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[
                :, :, i * dh : i * dh + sh * ho : sh, j * dw : j * dw + sw * wo : sw
            ][:, :, :ho, :wo]
    flat = cols.reshape(b, g, cg * kh * kw, ho * wo)
    wg = wc.reshape(g, og, cg * kh * kw)
    y = np.einsum("gok,bgkp->bgop", wg, flat, optimize=True)  # type: ignore[arg-type]
    y = y.reshape(b, conv.out_channels, ho, wo)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape(1, -1, 1, 1)
    return np.asarray(layer.from_nchw(y), dtype=np.float64)


def analytic_counts(layer: Any, datapath: Datapath, hardware: Any, code: Any, x: Any) -> Counts:
    """Hardware counts from the analytic model, arithmetic counts zeroed (no double count)."""
    from shiftsim.cost import estimate

    est = estimate(layer, datapath, hardware, code=code, input_shape=tuple(np.shape(x)))
    arith = (
        "shift_ops negations selects zero_selects adds multiplies exponent_adds compares "
        "acc_updates log_to_linear overflows"
    ).split()
    return dataclasses.replace(est, **{k: 0 for k in arith})


def _run_layer(
    node: Node,
    layer: Conv2d | Linear,
    weight: NDArray[np.float64],
    bias: NDArray[np.float64] | None,
    a: Act,
    ctx: StepContext,
    prepare_input: Any = None,
) -> Step:
    """Run one layer with weights on its datapath and requantise (see the module notes)."""
    dp = ctx.datapath
    assert dp is not None, f"layer {node.name!r} has no datapath"
    clipped = mults = 0
    if a.fmt.signed:
        dp = with_signed_input(dp)
    want = ctx.input_format(dp)
    if a.fmt.signed and not want.signed:  # a datapath that cannot take signed inputs
        raise ValueError(f"layer {node.name!r}: {datapath_label(dp)} takes no signed inputs")
    a, clipped, mults = ctx.to_format(a, want)
    x_units = a.fmt.to_float(a.raw)
    if prepare_input is not None:
        x_units = prepare_input(x_units)
    gain = weight_gain(dp, weight)
    b = None if bias is None else bias * gain / a.scale
    prep = dp.prepare(layer, weight * gain, x_units, b)
    res = dp.run(layer, prep.code, prep.x_in, prep.bias_raw, level=ctx.level, hardware=ctx.hardware)
    counts = res.counts
    if ctx.hardware is not None and ctx.level != "cycle":  # the cycle model counts them itself
        counts = counts + analytic_counts(layer, dp, ctx.hardware, prep.code, x_units)
    y_val = res.y * (a.scale / gain)
    columns: dict[str, Any] = {"macs": layer.macs(x_units.shape), "datapath": datapath_label(dp)}
    clipped += prep.clipped
    if ctx.last:
        return Step(Act(res.y_raw, res.out_format, 1.0), y_val, counts, clipped, {**columns})
    fmt = ctx.out_format()
    s_out = ctx.out_scale(fmt)
    w_scale = np.atleast_1d(np.asarray(res.scale, dtype=np.float64)) / gain
    m = res.out_format.lsb * w_scale * a.scale / (s_out * fmt.lsb)
    raw, n_clip, n_mult = ctx.requantise(res.y_raw, m, fmt)
    columns["requant_mults"] = n_mult + mults
    return Step(Act(raw, fmt, s_out), y_val, counts, clipped + n_clip, columns)


def _check_weights(node: Node, weight: Any, bias: Any, shape: tuple[int, ...], n_out: int) -> None:
    w = as_float_array(np.asarray(weight), f"{node.name}.weight").astype(np.float64)
    if w.shape != shape:
        raise ValueError(f"{node.name}.weight must have shape {shape}, got {w.shape}")
    node.set("weight", w)
    if bias is not None:
        b = as_float_array(bias, f"{node.name}.bias").astype(np.float64)
        if b.shape != (n_out,):
            raise ValueError(f"{node.name}.bias must have shape ({n_out},), got {b.shape}")
        node.set("bias", b)


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class Conv(Node):
    """A Conv2d or Linear layer with float weights, run on a datapath.

    Parameters
    ----------
    layer : Conv2d or Linear
        The geometry.
    weight : ndarray of float
        ``layer.weight_shape`` float weights.
    bias : ndarray of float, optional
        ``(out_channels,)`` float bias.
    input_hw : (int, int), optional
        The input size a topology layer runs on in :meth:`Network.run_layers`.
    """

    op: ClassVar[str] = "conv"

    layer: Conv2d | Linear
    weight: NDArray[np.float64]
    bias: NDArray[np.float64] | None = None
    input_hw: tuple[int, int] | None = None

    def validate(self) -> None:
        if not isinstance(self.layer, (Conv2d, Linear)):
            raise TypeError(f"node {self.name!r}: layer must be a Conv2d or Linear")
        shape = self.layer.weight_shape
        _check_weights(self, self.weight, self.bias, shape, shape[0])

    @property
    def has_weights(self) -> bool:
        return True

    @property
    def conv_weight(self) -> NDArray[np.float64]:
        """The weights the datapath runs (the layer's own)."""
        return self.weight

    def expand(self, x: NDArray[Any]) -> NDArray[Any]:
        """The input the datapath's layer reads (``x`` itself)."""
        return x

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return tuple(self.layer.output_shape(shapes[0]))

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        return conv_float(self.layer, self.weight, args[0], self.bias)

    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        return _run_layer(self, self.layer, self.weight, self.bias, args[0], ctx)


def zero_insert(
    x: NDArray[Any], stride: tuple[int, int], before: tuple[int, int], after: tuple[int, int]
) -> NDArray[Any]:
    """``stride - 1`` zeros between samples of the last two axes, then pads (may be < 0)."""
    b, c, h, w = x.shape
    sh, sw = stride
    up = np.zeros((b, c, (h - 1) * sh + 1, (w - 1) * sw + 1), dtype=x.dtype)
    up[:, :, ::sh, ::sw] = x
    pads = [(0, 0), (0, 0)]
    for lo, hi in zip(before, after):
        pads.append((max(lo, 0), max(hi, 0)))
    up = np.pad(up, pads)
    crop_h = slice(max(-before[0], 0), up.shape[2] - max(-after[0], 0))
    crop_w = slice(max(-before[1], 0), up.shape[3] - max(-after[1], 0))
    return up[:, :, crop_h, crop_w]


@register
@dataclass(frozen=True, kw_only=True, eq=False)
class ConvTranspose(Node):
    """A 2-D transposed convolution, run on a datapath as a convolution (see the notes).

    Parameters
    ----------
    weight : ndarray of float
        ``(in_channels, out_channels // groups, kh, kw)`` float weights (ONNX and PyTorch).
    bias : ndarray of float, optional
        ``(out_channels,)``.
    stride, padding, dilation, output_padding : (int, int)
        Geometry, as in PyTorch's ``ConvTranspose2d`` (symmetric padding).
    groups : int, default 1
    """

    op: ClassVar[str] = "conv_transpose"

    weight: NDArray[np.float64]
    bias: NDArray[np.float64] | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    output_padding: tuple[int, int] = (0, 0)
    groups: int = 1

    def validate(self) -> None:
        w = np.asarray(self.weight)
        if w.ndim != 4:
            raise ValueError(f"{self.name}.weight must be 4-D, got shape {w.shape}")
        ci, og, kh, kw = w.shape
        for key in ("stride", "padding", "dilation", "output_padding"):
            v = tuple(int(t) for t in getattr(self, key))
            low = 0 if key in ("padding", "output_padding") else 1
            if len(v) != 2 or min(v) < low:
                raise ValueError(f"{self.name}.{key} must be two ints >= {low}, got {v}")
            self.set(key, v)
        for axis in range(2):
            if self.output_padding[axis] >= max(self.stride[axis], self.dilation[axis]):
                raise ValueError(
                    f"{self.name}.output_padding {self.output_padding} must be smaller than "
                    "the stride or the dilation"
                )
        g = int(self.groups)
        if g < 1 or ci % g:
            raise ValueError(f"{self.name}.groups={g} must divide in_channels={ci}")
        self.set("groups", g)
        _check_weights(self, self.weight, self.bias, (ci, og, kh, kw), og * g)

    @property
    def has_weights(self) -> bool:
        return True

    @property
    def conv_layer(self) -> Conv2d:
        """The equivalent stride-1 convolution over the zero-inserted input."""
        ci, og, kh, kw = np.shape(self.weight)
        return Conv2d(ci, og * self.groups, (kh, kw), dilation=self.dilation, groups=self.groups)

    @property
    def layer(self) -> Conv2d:
        """The layer that runs on the datapath (:attr:`conv_layer`)."""
        return self.conv_layer

    @property
    def conv_weight(self) -> NDArray[np.float64]:
        """The equivalent convolution's weights: flipped, in/out channels swapped per group."""
        ci, og, kh, kw = self.weight.shape
        g = self.groups
        w = self.weight.reshape(g, ci // g, og, kh, kw).transpose(0, 2, 1, 3, 4)
        return np.ascontiguousarray(w.reshape(g * og, ci // g, kh, kw)[:, :, ::-1, ::-1])

    def _pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        kh, kw = self.weight.shape[2:]
        before = tuple(d * (k - 1) - p for d, k, p in zip(self.dilation, (kh, kw), self.padding))
        after = tuple(b + o for b, o in zip(before, self.output_padding))
        return (before[0], before[1]), (after[0], after[1])

    def expand(self, x: NDArray[Any]) -> NDArray[Any]:
        """The zero-inserted, padded input of the equivalent convolution."""
        before, after = self._pads()
        return zero_insert(x, self.stride, before, after)

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        b, _, h, w = shapes[0]
        kh, kw = self.weight.shape[2:]
        ho, wo = (
            (n - 1) * s - 2 * p + d * (k - 1) + o + 1
            for n, s, p, d, k, o in zip(
                (h, w), self.stride, self.padding, self.dilation, (kh, kw), self.output_padding
            )
        )
        return (b, self.weight.shape[1] * self.groups, ho, wo)

    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        return conv_float(self.conv_layer, self.conv_weight, self.expand(args[0]), self.bias)

    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        return _run_layer(
            self, self.conv_layer, self.conv_weight, self.bias, args[0], ctx, self.expand
        )
