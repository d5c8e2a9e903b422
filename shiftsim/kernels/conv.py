"""Pieces of the convolution loops that the MAC and log-domain kernels share.

The direct kernels take the layer's geometry as one tuple ``(stride_h, stride_w, pad_h, pad_w,
dil_h, dil_w, groups)`` (:func:`shiftsim.datapath.base.conv_geometry` builds it) and split
their parallel loop over ``(batch item, output channel)`` rows with :func:`group_row`.

The exact-GEMM fast paths lower a convolution to matrix products: :func:`im2col` lays out every
receptive field as a column, ``cols[g, (c, kh, kw), b * Ho * Wo + oh * Wo + ow]`` (zeros for
padding), so that group ``g``'s outputs are ``W_g @ cols[g]`` with ``W_g`` of shape
``(Co/groups, Cg*Kh*Kw)``. Products of integer-valued float64 matrices are exact whenever
every partial sum stays within ``2**53`` in magnitude, whatever order BLAS adds in.
"""

from __future__ import annotations

import numpy as np

from shiftsim.kernels._jit import kernel

__all__ = ["group_row", "im2col", "im2col_counted", "sparse_rows_add", "tap"]


@kernel(inline=True)
def group_row(row: int, n_co: int, co_per_group: int, n_cg: int) -> tuple[int, int, int]:
    """Row ``b * Co + co`` of an output as ``(b, co, c0)``, ``c0`` the group's first channel.

    ``co_per_group`` is ``Co / groups`` and ``n_cg`` the input channels per group.
    """
    co = row % n_co
    return row // n_co, co, (co // co_per_group) * n_cg


@kernel(inline=True)
def tap(o: int, k: int, stride: int, pad: int, dil: int) -> int:
    """Input coordinate that output coordinate ``o`` reads at kernel tap ``k`` (may be padding)."""
    return o * stride - pad + k * dil


@kernel
def im2col(
    x: np.ndarray,
    geometry: tuple[int, int, int, int, int, int, int],
    n_kh: int,
    n_kw: int,
    h_out: int,
    w_out: int,
    cols: np.ndarray,
) -> None:
    """Write every receptive field of ``x`` as a column of ``cols`` (padding as 0).

    Serial on purpose: a BLAS product follows at once, and the worker threads of a parallel
    region keep spinning for a while after it, taking cores from the BLAS threads.

    Parameters
    ----------
    x : ndarray, shape (B, C, H, W)
        Input values (any numeric dtype; converted to ``cols``'s dtype).
    geometry : tuple of 7 int
        ``(stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)``.
    n_kh, n_kw, h_out, w_out : int
        Kernel and output size.
    cols : ndarray, shape (groups, C/groups * Kh * Kw, B * Ho * Wo)
        Output: ``cols[g, (c * Kh + kh) * Kw + kw, (b * Ho + oh) * Wo + ow]`` is
        ``x[b, g * C/groups + c, ih, iw]`` (0 outside the image).
    """
    _fill_columns(x, geometry, n_kh, n_kw, h_out, w_out, cols, np.zeros((1, 1), np.int64), False)


@kernel
def im2col_counted(
    x: np.ndarray,
    geometry: tuple[int, int, int, int, int, int, int],
    n_kh: int,
    n_kw: int,
    h_out: int,
    w_out: int,
    cols: np.ndarray,
    nonzero: np.ndarray,
) -> None:
    """:func:`im2col`, also adding to ``nonzero[g, row]`` the nonzero values the row received.

    ``nonzero`` : int64 array (groups, C/groups * Kh * Kw), added to (padding counts 0).
    """
    _fill_columns(x, geometry, n_kh, n_kw, h_out, w_out, cols, nonzero, True)


@kernel
def _fill_columns(
    x: np.ndarray,
    geometry: tuple[int, int, int, int, int, int, int],
    n_kh: int,
    n_kw: int,
    h_out: int,
    w_out: int,
    cols: np.ndarray,
    nonzero: np.ndarray,
    count: bool,
) -> None:
    """The loop of :func:`im2col` and :func:`im2col_counted` (``count``: add to ``nonzero``)."""
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups = geometry
    n_b, n_c, h_in, w_in = x.shape
    n_cg = n_c // groups
    n_pix = h_out * w_out
    for task in range(n_b * n_c):
        b = task // n_c
        ci = task % n_c
        g = ci // n_cg
        c = ci % n_cg
        for kh in range(n_kh):
            for kw in range(n_kw):
                k = (c * n_kh + kh) * n_kw + kw
                row = cols[g, k, b * n_pix : (b + 1) * n_pix]
                off_w = kw * dil_w - pad_w
                # output columns whose input column lies inside the image: [lo, hi)
                lo = min(w_out, max(0, (stride_w - 1 - off_w) // stride_w))
                hi = max(lo, min(w_out, (w_in - 1 - off_w) // stride_w + 1))
                nz = 0
                for oh in range(h_out):
                    ih = oh * stride_h - pad_h + kh * dil_h
                    dst = row[oh * w_out : (oh + 1) * w_out]
                    if ih < 0 or ih >= h_in:
                        dst[:] = 0
                        continue
                    src = x[b, ci, ih]
                    dst[:lo] = 0
                    dst[hi:] = 0
                    for ow in range(lo, hi):
                        v = src[ow * stride_w + off_w]
                        dst[ow] = v
                        if count:
                            nz += v != 0
                if count:
                    nonzero[g, k] += nz


@kernel
def sparse_rows_add(
    rows: np.ndarray,
    groups: np.ndarray,
    taps: np.ndarray,
    values: np.ndarray,
    cols: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[rows[t]] += values[t] * cols[groups[t], taps[t]]`` for every ``t``, in order.

    Parameters
    ----------
    rows, groups, taps : int64 arrays (T,)
        Output row, group and reduction index of each weight.
    values : float64 array (T,)
        The weights.
    cols : float32 or float64 array (groups, K, N)
        Columns from :func:`im2col`.
    out : float64 array (R, N)
        Added to.
    """
    n = cols.shape[2]
    for t in range(rows.shape[0]):
        src = cols[groups[t], taps[t]]
        dst = out[rows[t]]
        v = values[t]
        for i in range(n):
            dst[i] += v * src[i]


#: The same for float32: every partial sum within ``2**24``.
FLOAT32_EXACT = 1 << 24
#: Every integer of magnitude up to ``2**53`` is a float64, and so is every sum of such
#: integers whose partial sums stay within it: a product of integer-valued float64 matrices is
#: exact when the sum of the magnitudes of each output's terms is at most this.
FLOAT64_EXACT = 1 << 53


def columns(
    x: np.ndarray,
    geometry: tuple[int, int, int, int, int, int, int],
    kernel_size: tuple[int, int],
    out_hw: tuple[int, int],
    dtype: type[np.floating] = np.float64,
) -> np.ndarray:
    """:func:`im2col` into a new array of ``dtype``, shape ``(groups, Cg*Kh*Kw, B*Ho*Wo)``."""
    groups = geometry[6]
    n_b, n_c = x.shape[0], x.shape[1]
    k = n_c // groups * kernel_size[0] * kernel_size[1]
    cols = np.empty((groups, k, n_b * out_hw[0] * out_hw[1]), dtype=dtype)
    im2col(x, geometry, kernel_size[0], kernel_size[1], out_hw[0], out_hw[1], cols)
    return cols


def gemm(
    w_mat: np.ndarray, cols: np.ndarray, channels: np.ndarray, n_b: int, out_hw: tuple[int, int]
) -> np.ndarray:
    """``W_g @ cols[g]`` for the listed output channels, as ``(B, Co, Ho, Wo)`` (others 0).

    Parameters
    ----------
    w_mat : ndarray, shape (Co, Cg*Kh*Kw)
        One row per output channel, in :func:`im2col`'s ``(c, kh, kw)`` order.
    cols : ndarray, shape (groups, Cg*Kh*Kw, B*Ho*Wo)
        From :func:`columns`, same dtype as ``w_mat``.
    channels : ndarray of int64
        Output channels to compute, increasing.
    n_b : int
        Batch size.
    out_hw : (int, int)
        Output size.
    """
    n_co = w_mat.shape[0]
    groups = cols.shape[0]
    cog = n_co // groups
    y = np.zeros((n_co, cols.shape[2]), dtype=cols.dtype)
    if channels.shape[0] == n_co:  # every channel: one (batched) product
        y = np.matmul(w_mat.reshape(groups, cog, -1), cols).reshape(n_co, -1)
    else:
        for g in np.unique(channels // cog).tolist():
            rows = channels[channels // cog == g]
            y[rows] = w_mat[rows] @ cols[g]
    return np.ascontiguousarray(y.reshape(n_co, n_b, *out_hw).transpose(1, 0, 2, 3))
