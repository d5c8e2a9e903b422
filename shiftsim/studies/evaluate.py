"""Top-1 of a network on a whole test set, bit-accurately, in batches of bounded size.

:func:`evaluate` streams a data set through :meth:`Network.run` batch by batch. Every batch
uses the same activation scales: they come from a fixed calibration set (images from the
training split), never from the test images themselves. Counts, clipped values and accumulator
overflows are summed over the batches per layer, and each layer's overflow rate (overflowed
accumulator updates per update) and clipping rate (requantised values clamped per output value)
are reported; :meth:`Evaluation.warnings` names every layer whose rate passes a threshold.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shiftsim.counts import Counts
from shiftsim.datapath.base import Datapath
from shiftsim.datasets import ImageSet, batches
from shiftsim.network import Network, Requant
from shiftsim.network.report import WARN_RATE, RangeWarning, range_warnings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["WARN_RATE", "Evaluation", "calibration_images", "evaluate"]


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Outcome of :func:`evaluate`.

    Attributes
    ----------
    images : int
        Test images run.
    correct, float_correct, agree : int
        Images the bit-accurate network classifies right, the float network classifies right,
        and on which both pick the same class.
    seconds : float
        Wall time of the bit-accurate runs (float reference and requantisation included).
    layers : pandas.DataFrame
        Per node: ``layer``, ``op``, ``values`` (output values over all images),
        ``acc_updates``, ``overflows``, ``clipped``, ``overflow_rate`` (overflows per
        accumulator update), ``clip_rate`` (clipped per output value), ``time_s``.
    totals : Counts
        Every layer's counts summed over all batches.
    """

    images: int
    correct: int
    float_correct: int
    agree: int
    seconds: float
    layers: pd.DataFrame
    totals: Counts

    @property
    def top1(self) -> float:
        """Top-1 accuracy of the bit-accurate network."""
        return self.correct / self.images

    @property
    def float_top1(self) -> float:
        """Top-1 accuracy of the float network on the same images."""
        return self.float_correct / self.images

    @property
    def drop_points(self) -> float:
        """Float top-1 minus bit-accurate top-1, in percentage points."""
        return 100.0 * (self.float_correct - self.correct) / self.images

    @property
    def images_per_s(self) -> float:
        """Images per second of the bit-accurate run."""
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    @property
    def max_overflow_rate(self) -> float:
        """Largest per-layer overflow rate."""
        return float(self.layers["overflow_rate"].max())

    @property
    def max_clip_rate(self) -> float:
        """Largest per-layer clipping rate."""
        return float(self.layers["clip_rate"].max())

    def warnings(self, threshold: float = WARN_RATE) -> list[str]:
        """One line per layer whose overflow or clipping rate exceeds ``threshold``."""
        return range_warnings(self.layers, threshold)


def calibration_images(data: ImageSet, n: int = 256, seed: int = 0) -> NDArray[np.float64]:
    """``n`` images drawn without replacement (seeded) as float ``pixels / 255``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(data):
        raise ValueError(f"n must be an int in [1, {len(data)}], got {n!r}")
    idx = np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False))
    return data.images[idx].astype(np.float64) / 255.0


def _values(shape: str, batch: int) -> int:
    return batch * int(np.prod([int(v) for v in shape.split("x")])) if shape else batch


def evaluate(
    network: Network,
    datapath: Datapath | Mapping[str, Datapath],
    data: ImageSet,
    *,
    calibration: NDArray[np.float64],
    batch_size: int = 250,
    requant: Requant = Requant(),  # noqa: B008 (frozen, immutable)
    hardware: Any = None,
    level: str = "functional",
    scaling: str = "calibrated",
) -> Evaluation:
    """Run ``network`` on every image of ``data`` on ``datapath``, ``batch_size`` at a time.

    Parameters
    ----------
    network : Network
        A network with an input shape of ``(1, 28, 28)``.
    datapath : Datapath or mapping of str to Datapath
        Runs every conv and linear layer (or per layer-name pattern, see :meth:`Network.run`).
    data : ImageSet
        The test images and labels.
    calibration : ndarray of float
        Inputs that fix the activation scales of every batch.
    batch_size : int, default 250
        Images per :meth:`Network.run` call: memory stays bounded by one batch.
    requant, hardware, level, scaling
        As for :meth:`Network.run` (its per-batch :class:`RangeWarning` is replaced by
        :meth:`Evaluation.warnings` over the whole set).

    Returns
    -------
    Evaluation
    """
    if not isinstance(data, ImageSet):
        raise TypeError(f"data must be an ImageSet, got {type(data).__name__}")
    correct = float_correct = agree = 0
    totals = Counts()
    per_layer: dict[str, dict[str, Any]] = {}
    seconds = 0.0
    for x, y in batches(data, batch_size):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RangeWarning)
            res = network.run(
                x,
                datapath,
                calibration=calibration,
                requant=requant,
                hardware=hardware,
                level=level,
                scaling=scaling,
            )
        seconds += time.perf_counter() - t0
        assert res.output is not None and res.float_output is not None
        got = res.output.reshape(len(y), -1).argmax(axis=1)
        ref = res.float_output.reshape(len(y), -1).argmax(axis=1)
        correct += int(np.sum(got == y))
        float_correct += int(np.sum(ref == y))
        agree += int(np.sum(got == ref))
        totals = totals + res.totals
        for row in res.table.to_dict("records"):
            acc = per_layer.setdefault(
                row["layer"],
                dict(layer=row["layer"], op=row["op"], values=0, acc_updates=0, overflows=0)
                | dict(clipped=0, time_s=0.0),
            )
            acc["values"] += _values(str(row["shape"]), len(y))
            for key in ("acc_updates", "overflows", "clipped"):
                acc[key] += int(row.get(key, 0) or 0)
            acc["time_s"] += float(row["time_s"])
    import pandas as pd

    layers = pd.DataFrame(list(per_layer.values()))
    layers["overflow_rate"] = layers["overflows"] / layers["acc_updates"].clip(lower=1)
    layers["clip_rate"] = layers["clipped"] / layers["values"].clip(lower=1)
    return Evaluation(
        images=len(data),
        correct=correct,
        float_correct=float_correct,
        agree=agree,
        seconds=seconds,
        layers=layers,
        totals=totals,
    )
