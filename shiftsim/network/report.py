"""The per-layer table and the result of a network run.

Every row of :attr:`NetworkResult.table` is one node: ``layer``, ``op``, ``datapath`` (the
datapath a layer with weights ran on, ``"float"`` for an operator run on dequantised values,
``"int"`` for the exact integer ones), ``shape`` (output, without the batch), ``macs``, the
datapath's :class:`~shiftsim.counts.Counts` fields (``overflows``: accumulator updates that
wrapped or saturated), ``clipped`` (values a quantiser or a requantisation clamped: to the
activation format, to a datapath's operand formats, the network input), ``requant_mults``,
``float_ops`` (output values computed in floating point), ``rmse``, ``max_abs_err``,
``sqnr_db`` (against float at the same point), ``time_s``, and two rates for chained runs:
``overflow_rate`` (``overflows`` per accumulator update) and ``clip_rate`` (``clipped`` per
output value). A layer whose rate exceeds :data:`WARN_RATE` is named by
:meth:`NetworkResult.warnings`, and :meth:`Network.run` issues a :class:`RangeWarning`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.counts import Counts

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "WARN_RATE",
    "NetworkResult",
    "RangeWarning",
    "add_rates",
    "finish_row",
    "frame",
    "range_warnings",
    "sqnr_db",
]

WARN_RATE = 1e-3
"""Overflow or clipping rate above which a layer is named in the warnings."""


class RangeWarning(UserWarning):
    """Layers of a network run overflowed their accumulator or clipped often."""


_INT_COLUMNS = ("macs", "requant_mults", "float_ops", "clipped")


@dataclass(frozen=True, eq=False)
class NetworkResult:
    """The outcome of :meth:`Network.run` or :meth:`Network.run_layers`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per node (see the module notes for the columns).
    totals : Counts
        Sum of the layers' counts.
    output : ndarray of float64 or None
        The network output, dequantized (chained runs).
    output_raw : ndarray of int64 or None
        The last layer's raw output (chained runs).
    float_output : ndarray of float64 or None
        The float network's output on the same inputs.
    extra : dict
        ``input_scale``, ``input_format`` and ``input_clipped`` of a chained run.
    """

    table: pd.DataFrame
    totals: Counts
    output: NDArray[np.float64] | None = None
    output_raw: NDArray[np.int64] | None = None
    float_output: NDArray[np.float64] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def top1(self, labels: ArrayLike) -> float:
        """Fraction of inputs whose largest output is the label."""
        return _top1(self.output, labels)

    def float_top1(self, labels: ArrayLike) -> float:
        """Top-1 accuracy of the float network."""
        return _top1(self.float_output, labels)

    def agreement(self) -> float:
        """Fraction of inputs where the simulated and float networks pick the same class."""
        if self.output is None or self.float_output is None:
            raise ValueError("agreement needs a chained run (Network.run)")
        a = self.output.reshape(len(self.output), -1).argmax(axis=1)
        b = self.float_output.reshape(len(self.float_output), -1).argmax(axis=1)
        return float(np.mean(a == b))

    def warnings(self, threshold: float = WARN_RATE) -> list[str]:
        """One line per layer whose overflow or clipping rate exceeds ``threshold``."""
        return range_warnings(self.table, threshold)


def add_rates(table: pd.DataFrame, batch: int) -> pd.DataFrame:
    """Add ``overflow_rate`` and ``clip_rate`` to a chained run's table of ``batch`` inputs."""
    values = [
        batch * int(np.prod([int(v) for v in str(s).split("x") if v])) for s in table["shape"]
    ]
    updates = table["acc_updates"] if "acc_updates" in table else 0 * table["clipped"]
    table["overflow_rate"] = table["overflows"] / updates.clip(lower=1)
    table["clip_rate"] = table["clipped"] / np.maximum(values, 1)
    return table


def range_warnings(table: pd.DataFrame, threshold: float = WARN_RATE) -> list[str]:
    """Warning lines for the rows of ``table`` whose ``overflow_rate`` or ``clip_rate`` is large.

    ``table`` needs the columns ``layer``, ``overflows``, ``clipped``, ``overflow_rate`` and
    ``clip_rate`` (a chained run's table, or rates summed over several runs).
    """
    out: list[str] = []
    if "overflow_rate" not in table:
        return out
    for row in table.itertuples():
        for what, rate, n, fix in (
            ("accumulator updates overflowed", row.overflow_rate, row.overflows,
             "widen the accumulator (acc_bits)"),
            ("values clipped", row.clip_rate, row.clipped,
             "check the activation format and its full-scale range"),
        ):  # fmt: skip
            if rate > threshold:
                out.append(
                    f"WARNING: layer {row.layer}: {100 * rate:.3g}% of {what} ({int(n):,}); {fix}"
                )
    return out


def _top1(out: NDArray[np.float64] | None, labels: ArrayLike) -> float:
    if out is None:
        raise ValueError("top1 needs a chained run (Network.run)")
    labels = np.asarray(labels)
    if labels.shape != (len(out),):
        raise ValueError(f"labels must have shape ({len(out)},), got {labels.shape}")
    return float(np.mean(out.reshape(len(out), -1).argmax(axis=1) == labels))


def sqnr_db(ref: NDArray[np.float64], got: NDArray[np.float64]) -> float:
    """Signal-to-quantisation-noise ratio of ``got`` against ``ref``, in dB.

    Both are divided by their largest magnitude first, so that the squares neither overflow
    nor underflow whatever the scale of the values.
    """
    peak = float(max(np.max(np.abs(ref), initial=0.0), np.max(np.abs(got), initial=0.0)))
    if peak > 0:
        ref, got = ref / peak, got / peak
    noise = float(np.sum((ref - got) ** 2))
    sig = float(np.sum(ref**2))
    if noise == 0:
        return math.inf
    if sig == 0:
        return -math.inf
    return 10 * math.log10(sig / noise)


def finish_row(
    row: dict[str, Any],
    counts: Counts,
    clipped: int,
    ref: NDArray[np.float64],
    got: NDArray[np.float64],
    t0: float,
) -> dict[str, Any]:
    """Complete a table row: counts, values clipped, errors against ``ref``, seconds taken."""
    row.update(dataclasses.asdict(counts))
    row["clipped"] = clipped
    diff = np.asarray(ref, dtype=np.float64) - np.asarray(got, dtype=np.float64)
    row["rmse"] = float(np.sqrt(np.mean(diff**2))) if diff.size else 0.0
    row["max_abs_err"] = float(np.max(np.abs(diff), initial=0.0))
    row["sqnr_db"] = sqnr_db(ref, got)
    row["time_s"] = time.perf_counter() - t0
    return row


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The table as a DataFrame, count columns as int64."""
    import pandas as pd

    out = pd.DataFrame(rows)
    for col in _INT_COLUMNS:
        out[col] = out[col].fillna(0).astype("int64") if col in out else 0
    return out
