"""The exact-GEMM lowering: im2col against a literal loop, and exact float64 products."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings

from shiftsim.kernels.conv import columns, gemm, im2col_counted
from tests.strategies import layer_and_input_shape


def literal_columns(layer, x):
    """cols[g, (c, kh, kw), (b, oh, ow)] by the definition, one value at a time."""
    n_b, n_c, h, w = x.shape
    (kh_n, kw_n), (sh, sw) = layer.kernel_size, layer.stride
    (ph, pw), (dh, dw) = layer.padding, layer.dilation
    ho, wo = layer.output_hw(h, w)
    g_n, cg = layer.groups, n_c // layer.groups
    ref = np.zeros((g_n, cg * kh_n * kw_n, n_b * ho * wo))
    for g, c, i, j, b, oh, ow in itertools.product(
        range(g_n), range(cg), range(kh_n), range(kw_n), range(n_b), range(ho), range(wo)
    ):
        ih, iw = oh * sh - ph + i * dh, ow * sw - pw + j * dw
        if 0 <= ih < h and 0 <= iw < w:
            ref[g, (c * kh_n + i) * kw_n + j, (b * ho + oh) * wo + ow] = x[b, g * cg + c, ih, iw]
    return ref


@settings(max_examples=60)
@given(shape=layer_and_input_shape(linear=False))
def test_im2col_equals_the_definition(shape):
    layer, x_shape = shape
    x = np.random.default_rng(sum(x_shape)).integers(-50, 50, size=x_shape)
    geometry = (*layer.stride, *layer.padding, *layer.dilation, layer.groups)
    out_hw = layer.output_hw(*x_shape[2:])
    cols = columns(x, geometry, layer.kernel_size, out_hw)
    assert cols.dtype == np.float64
    np.testing.assert_array_equal(cols, literal_columns(layer, x))
    # and the product of every channel, or of a subset, is the integer convolution
    w = np.random.default_rng(7).integers(-9, 10, size=layer.weight_shape)
    w_mat = w.reshape(w.shape[0], -1).astype(np.float64)
    every = gemm(w_mat, cols, np.arange(w.shape[0]), x_shape[0], out_hw)
    some = gemm(w_mat, cols, np.arange(0, w.shape[0], 2), x_shape[0], out_hw)
    cog = w.shape[0] // layer.groups
    for co in range(w.shape[0]):
        want = (w_mat[co] @ literal_columns(layer, x)[co // cog]).reshape(x_shape[0], *out_hw)
        np.testing.assert_array_equal(every[:, co], want)
        np.testing.assert_array_equal(some[:, co], want if co % 2 == 0 else 0 * want)


@settings(max_examples=60)
@given(shape=layer_and_input_shape(linear=False))
def test_im2col_counted_counts_each_rows_nonzero_inputs(shape):
    layer, x_shape = shape
    rng = np.random.default_rng(sum(x_shape))
    x = rng.integers(-2, 3, size=x_shape) * (rng.random(x_shape) < 0.6)
    geometry = (*layer.stride, *layer.padding, *layer.dilation, layer.groups)
    out_hw = layer.output_hw(*x_shape[2:])
    ref = literal_columns(layer, x)
    cols = np.full(ref.shape, 7.0, dtype=np.float32)
    nonzero = np.ones(ref.shape[:2], dtype=np.int64)  # added to
    im2col_counted(x, geometry, *layer.kernel_size, *out_hw, cols, nonzero)
    np.testing.assert_array_equal(cols, ref)
    np.testing.assert_array_equal(nonzero, 1 + (ref != 0).sum(axis=2))
