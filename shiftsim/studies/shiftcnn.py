"""ShiftCNN's claim on trained networks: top-1 drop for N codebooks x B bits, no retraining.

Gudovskiy & Rigazio (2017) report "less than 1% top-1 drop without retraining" for N = 2-3
codebooks of B = 4 bits. Here every conv and fully connected layer of each network runs on
:class:`~shiftsim.datapath.shift_add.ShiftAddDatapath` (8-bit unsigned activations, 32-bit
accumulator, WRAP, every overflow counted) with one weight scale per tensor or one per output
channel; activations are requantised between layers in integers with scales from 256 training
images. The drop is float top-1 minus bit-accurate top-1 on the same test images, in points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.datasets import ImageSet, load_fashion_mnist, load_mnist
from shiftsim.formats import FixedFormat
from shiftsim.models.mnist_family import MODELS, load_model, model_test_set
from shiftsim.studies.evaluate import Evaluation, calibration_images, evaluate

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SCALES", "evaluation_row", "model_data", "pivot_markdown", "shiftcnn_study"]

SCALES = {"tensor": None, "channel": 0}
"""Scale granularity -> ``ShiftAddDatapath.weight_axis``."""


def model_data(name: str, images: int | None = None) -> tuple[Any, ImageSet, Any]:
    """``(network, test set (first images), calibration images from the training split)``."""
    train = load_mnist("train") if MODELS[name] == "mnist" else load_fashion_mnist("train")
    return load_model(name), model_test_set(name).head(images), calibration_images(train)


def evaluation_row(ev: Evaluation, **keys: Any) -> dict[str, Any]:
    """A table row: ``keys``, then images, top-1s, drop, images/s, worst rates, warnings."""
    return dict(keys) | {
        "images": ev.images,
        "float_top1": ev.float_top1,
        "top1": ev.top1,
        "drop_points": ev.drop_points,
        "images_per_s": ev.images_per_s,
        "max_overflow_rate": ev.max_overflow_rate,
        "max_clip_rate": ev.max_clip_rate,
        "warnings": len(ev.warnings()),
    }


def shiftcnn_study(
    models: Sequence[str] = tuple(MODELS),
    *,
    codebooks: Sequence[int] = (1, 2, 3),
    bits: Sequence[int] = (2, 3, 4, 5),
    scales: Sequence[str] = ("tensor", "channel"),
    images: int | None = None,
    batch_size: int = 250,
    log: Callable[[str], Any] = print,
) -> pd.DataFrame:
    """Top-1 drop of every model at every (scales, N, B), bit-accurate, on the test set.

    Parameters
    ----------
    models : sequence of str
        Names from :data:`shiftsim.models.mnist_family.MODELS`.
    codebooks, bits : sequence of int
        N and B values.
    scales : sequence of {"tensor", "channel"}
        Weight scale granularity.
    images : int, optional
        Use the first ``images`` test images (default: the full 10,000).
    batch_size : int, default 250
        Images per network run.
    log : callable
        Receives one line per finished cell (and any overflow or clipping warning).

    Returns
    -------
    pandas.DataFrame
        One row per cell (see :func:`evaluation_row`), keys ``model``, ``scales``, ``N``, ``B``.
    """
    import pandas as pd

    for s in scales:
        if s not in SCALES:
            raise ValueError(f"scales must be in {tuple(SCALES)}, got {s!r}")
    rows = []
    for name in models:
        net, data, cal = model_data(name, images)
        for s in scales:
            for n in codebooks:
                for b in bits:
                    dp = ShiftAddDatapath(
                        n_codebooks=n,
                        bits=b,
                        act=FixedFormat(8, 0, signed=False),
                        acc_bits=32,
                        weight_axis=SCALES[s],
                    )
                    ev = evaluate(net, dp, data, calibration=cal, batch_size=batch_size)
                    row = evaluation_row(ev, model=name, scales=s, N=n, B=b)
                    rows.append(row)
                    log(
                        f"{name} {s} N={n} B={b}: top-1 {ev.top1:.4f} (float "
                        f"{ev.float_top1:.4f}, drop {ev.drop_points:.2f} points) on {ev.images} "
                        f"images, {ev.images_per_s:.0f} images/s"
                    )
                    for w in ev.warnings():
                        log(f"  {w}")
    return pd.DataFrame(rows)


def pivot_markdown(
    frame: pd.DataFrame, row: str, col: str, value: str = "drop_points", fmt: str = "{:.2f}"
) -> str:
    """A markdown table of ``value`` with ``row`` values down and ``col`` values across."""
    table = frame.pivot_table(index=row, columns=col, values=value, aggfunc="first")
    head = f"| {row} \\ {col} | " + " | ".join(str(c) for c in table.columns) + " |"
    lines = [head, "|" + "---|" * (len(table.columns) + 1)]
    for idx, values in table.iterrows():
        lines.append(f"| {idx} | " + " | ".join(fmt.format(v) for v in values) + " |")
    return "\n".join(lines)
