"""Pieces of the direct-convolution loops that the MAC and log-domain kernels share.

The kernels take the layer's geometry as one tuple ``(stride_h, stride_w, pad_h, pad_w,
dil_h, dil_w, groups)`` (:func:`shiftsim.datapath.base.conv_geometry` builds it) and split
their parallel loop over ``(batch item, output channel)`` rows with :func:`group_row`.
"""

from __future__ import annotations

from shiftsim.kernels._jit import kernel

__all__ = ["group_row", "tap"]


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
