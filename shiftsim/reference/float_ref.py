"""Float64 reference of a layer: the exact-arithmetic answer the datapaths approximate (SPEC §6).

Plain numpy in float64, written for obviousness. It imports only :mod:`shiftsim.formats` and
:mod:`shiftsim.layers`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.formats import as_float_array
from shiftsim.layers import Conv2d, Linear

__all__ = ["conv_float"]


def conv_float(
    layer: Conv2d | Linear, w: ArrayLike, x: ArrayLike, bias: ArrayLike | None = None
) -> NDArray[np.float64]:
    """Float64 convolution (cross-correlation, as in PyTorch) or fully connected layer.

    Parameters
    ----------
    layer : Conv2d or Linear
        Layer geometry.
    w : array_like of float, shape ``layer.weight_shape``
        Weights.
    x : array_like of float, shape ``(B, C, H, W)`` or ``(B, in_features)``
        Inputs (zero padding as the layer says).
    bias : array_like of float, shape ``(Co,)``, optional
        Added to every output of each channel.

    Returns
    -------
    ndarray of float64
        ``(B, Co, Ho, Wo)`` or ``(B, out_features)``.

    Raises
    ------
    ValueError
        If a shape does not match the layer, or a value is NaN or Inf.

    Examples
    --------
    >>> conv_float(Linear(2, 1), [[1.0, -2.0]], [[3.0, 0.5]], bias=[0.25]).tolist()
    [[2.25]]
    """
    w_arr = as_float_array(w, "w").astype(np.float64)
    x_arr = as_float_array(x, "x").astype(np.float64)
    if w_arr.shape != layer.weight_shape:
        raise ValueError(f"w must have shape {layer.weight_shape}, got {w_arr.shape}")
    layer.check_input_shape(x_arr.shape, "x")
    n_out = layer.weight_shape[0]
    b_arr = np.zeros(n_out) if bias is None else as_float_array(bias, "bias").astype(np.float64)
    if b_arr.shape != (n_out,):
        raise ValueError(f"bias must have shape ({n_out},), got {b_arr.shape}")
    if isinstance(layer, Linear):
        return x_arr @ w_arr.T + b_arr

    n_batch, _, h, wd = x_arr.shape
    ho, wo = layer.output_hw(h, wd)
    (kh_n, kw_n), (sh, sw) = layer.kernel_size, layer.stride
    (ph, pw), (dh, dw) = layer.padding, layer.dilation
    g, cg = layer.groups, layer.channels_per_group
    xp = np.pad(x_arr, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    xg = xp.reshape(n_batch, g, cg, h + 2 * ph, wd + 2 * pw)
    wg = w_arr.reshape(g, n_out // g, cg, kh_n, kw_n)
    y = np.zeros((n_batch, g, n_out // g, ho, wo))
    for kh in range(kh_n):
        for kw in range(kw_n):
            i0, j0 = kh * dh, kw * dw
            patch = xg[:, :, :, i0 : i0 + sh * (ho - 1) + 1 : sh, j0 : j0 + sw * (wo - 1) + 1 : sw]
            y += np.einsum("bgchw,goc->bgohw", patch, wg[:, :, :, kh, kw])
    return y.reshape(n_batch, n_out, ho, wo) + b_arr[None, :, None, None]
