"""Figures (matplotlib, Agg): metrics against a parameter, Pareto fronts, per-layer costs.

Every function takes a pandas DataFrame (a :func:`shiftsim.sweep.sweep` result or a per-layer
table of :meth:`shiftsim.network.Network.run`) and returns a ``matplotlib.figure.Figure``
without showing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["layer_costs", "metric_vs", "pareto", "pareto_front"]


def _figure(size: tuple[float, float] = (6.0, 4.0)) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")  # Agg canvas, no pyplot state
    return fig, fig.add_subplot()


def _need(frame: pd.DataFrame, *columns: str | None) -> None:
    for c in columns:
        if c is not None and c not in frame.columns:
            raise ValueError(f"no column {c!r} (columns: {', '.join(map(str, frame.columns))})")


def metric_vs(
    frame: pd.DataFrame, x: str, y: str, hue: str | None = None, *, title: str | None = None
) -> Figure:
    """A metric against a parameter, one line per value of ``hue``.

    E.g. ``metric_vs(df, "bits", "top1", hue="n_codebooks")``: accuracy or SQNR vs bits.
    """
    _need(frame, x, y, hue)
    fig, ax = _figure()
    groups = [(None, frame)] if hue is None else list(frame.groupby(hue, sort=True))
    for value, part in groups:
        part = part.sort_values(x)
        label = None if hue is None else f"{hue}={value}"
        ax.plot(part[x], part[y], marker="o", label=label)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(True, alpha=0.3)
    if hue is not None:
        ax.legend()
    if title:
        ax.set_title(title)
    return fig


def pareto_front(frame: pd.DataFrame, cost: str, quality: str) -> pd.DataFrame:
    """Rows no other row beats: lower ``cost`` and higher ``quality``, sorted by cost.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"adds": [1, 2, 3, 4], "sqnr_db": [10, 9, 20, 20]})
    >>> pareto_front(df, "adds", "sqnr_db")["adds"].tolist()
    [1, 3]
    """
    _need(frame, cost, quality)
    data = frame.sort_values([cost, quality], ascending=[True, False])
    best = -np.inf
    keep = []
    for idx, q in zip(data.index, data[quality]):
        if q > best:
            keep.append(idx)
            best = q
    return data.loc[keep]


def pareto(
    frame: pd.DataFrame,
    x: str = "adds",
    y: str = "sqnr_db",
    label: str | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Quality ``y`` against cost ``x`` for every point, the Pareto front as a line."""
    _need(frame, x, y, label)
    fig, ax = _figure()
    ax.scatter(frame[x], frame[y], color="0.6", label="points", zorder=2)
    front = pareto_front(frame, x, y)
    ax.plot(front[x], front[y], color="C3", marker="o", label="Pareto front", zorder=3)
    if label is not None:
        for _, row in frame.iterrows():
            ax.annotate(
                str(row[label]),
                (row[x], row[y]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


def layer_costs(
    frame: pd.DataFrame, column: str = "adds", *, log: bool = False, title: str | None = None
) -> Figure:
    """Bars of one cost per layer (conv and linear layers of a per-layer table)."""
    _need(frame, "layer", column)
    rows = frame[frame["op"] == "conv"] if "op" in frame.columns else frame
    fig, ax = _figure((max(6.0, 0.3 * len(rows) + 2), 4.0))
    ax.bar(np.arange(len(rows)), rows[column], color="C0")
    ax.set_xticks(np.arange(len(rows)), [str(v) for v in rows["layer"]], rotation=90, fontsize=7)
    ax.set_ylabel(column)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    return fig
